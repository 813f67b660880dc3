"""Delete, subscribe, disassociate, usage counting, and the public schema and docs."""

from __future__ import annotations

import json

import pytest

from api.urls import urlpatterns
from profiles.models import ApiUsageDay, Device, Event, Identifier, Profile, PropertyChange
from profiles.tests.factories import DeviceFactory, EventFactory, identified_profile

pytestmark = pytest.mark.django_db


# --- delete ----------


def test_delete_by_identity_list_reports_processed_and_unprocessed(api):
    for identity in ("u1", "u2", "u3"):
        EventFactory(profile=identified_profile(identity))
    response = api.post("/1/delete/profiles.json", {"identity": ["u1", "u2", "ghost"]})
    assert response.status_code == 200
    assert response.json() == {
        "status": "partial",
        "processed": 2,
        "unprocessed": [{"status": "fail", "code": 404, "error": "No profile found.",
                         "record": "ghost"}],
    }  # fmt: skip
    assert list(Identifier.objects.values_list("value", flat=True)) == ["u3"]
    assert Event.objects.count() == 1


def test_delete_by_single_identity_and_by_guid(api):
    identified_profile("u1")
    device = DeviceFactory()
    assert api.post("/1/delete/profiles.json", {"identity": "u1"}).json()["status"] == "success"
    body = api.post("/1/delete/profiles.json", {"guid": device.object_id}).json()
    assert body == {"status": "success", "processed": 1, "unprocessed": []}
    assert not Profile.objects.exists()
    assert Device.objects.get().profile is None  # a later call starts a new anonymous profile


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"identity": []},
        {"identity": "a", "guid": "b"},
        {"identity": [str(i) for i in range(101)]},
    ],
)
def test_delete_refuses_bad_bodies(api, body):
    identified_profile("1")
    response = api.post("/1/delete/profiles.json", body)
    assert response.status_code == 400 and response.json()["status"] == "fail"
    assert Profile.objects.count() == 1


def test_delete_by_guid_reports_values_that_are_not_strings(api):
    device = DeviceFactory()
    response = api.post("/1/delete/profiles.json", {"guid": [device.object_id, 5, None, {}]})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial" and body["processed"] == 1
    assert [entry["record"] for entry in body["unprocessed"]] == [5, None, {}]
    assert {entry["code"] for entry in body["unprocessed"]} == {404}


def test_nul_characters_are_refused_with_400_not_stored(api):
    identified_profile("u1")
    response = api.post("/1/delete/profiles.json", {"identity": "u\u00001"})
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    response = api.get("/1/profile.json", {"identity": "u\x001"})
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    query = json.dumps({"event_name": "a\u0000"})
    response = api.get("/1/events.json", {"query": query})
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    assert Profile.objects.count() == 1


# --- subscribe / disassociate ----------


def test_unsubscribe_and_resubscribe_an_email(api):
    api.upload({"type": "profile", "identity": "u1", "profileData": {"Email": "ann@example.com"}})
    body = api.post(
        "/1/subscribe", {"type": "email", "value": "Ann@Example.com", "status": "Unsubscribe"}
    ).json()
    assert body == {"status": "success", "processed": 1, "unprocessed": []}
    person = Profile.objects.get()
    assert person.msg_email is False
    change = PropertyChange.objects.filter(property="MSG-email").get()
    assert change.source == "api" and change.actor_label == "API: tests"
    api.post("/1/subscribe", {"d": [{"type": "email", "value": "ann@example.com",
                                     "status": "Resubscribe"}]})  # fmt: skip
    person.refresh_from_db()
    assert person.msg_email is True


def test_unsubscribe_a_phone_sets_msg_sms(api):
    api.upload({"type": "profile", "identity": "u1", "profileData": {"Phone": "+14155552671"}})
    body = api.post(
        "/1/subscribe", {"type": "phone", "value": "+14155552671", "status": "Unsubscribe"}
    ).json()
    assert body["status"] == "success"
    assert Profile.objects.get().msg_sms is False


def test_subscribe_reports_bad_and_unknown_entries(api):
    body = api.post(
        "/1/subscribe",
        {"d": [
            {"type": "email", "value": "nobody@example.com", "status": "Unsubscribe"},
            {"type": "email", "value": "bad", "status": "Unsubscribe"},
            {"type": "push", "value": "x", "status": "Unsubscribe"},
            {"type": "email", "value": "a@example.com", "status": "Maybe"},
        ]},
    ).json()  # fmt: skip
    assert body["status"] == "fail" and body["processed"] == 0
    assert [entry["code"] for entry in body["unprocessed"]] == [404, 515, 555, 555]


def test_disassociate_removes_the_phone_from_its_profile(api):
    api.upload({"type": "profile", "identity": "u1", "profileData": {"Phone": "+14155552671"}})
    body = api.post("/1/disassociate", {"type": "phone", "value": "+14155552671"}).json()
    assert body == {"status": "success", "processed": 1, "unprocessed": []}
    person = Profile.objects.get()
    assert person.phone == ""
    assert list(person.identifiers.values_list("kind", flat=True)) == ["identity"]
    again = api.post("/1/disassociate", {"type": "phone", "value": "+14155552671"}).json()
    assert again["status"] == "fail" and again["unprocessed"][0]["code"] == 404
    wrong = api.post("/1/disassociate", {"type": "email", "value": "a@example.com"}).json()
    assert wrong["unprocessed"][0]["code"] == 555


# --- usage ----------


def test_every_request_is_counted_per_credential_endpoint_and_outcome(api):
    api.upload({"type": "profile", "identity": "u1", "profileData": {}})
    api.get("/1/profile.json", {"identity": "u1"})
    api.get("/1/profile.json", {"identity": "nobody"})
    api.post("/1/upload", raw="{broken")
    rows = {
        (row.endpoint, row.outcome): row.count
        for row in ApiUsageDay.objects.filter(credential=api.credential)
    }
    assert rows == {("upload", "2xx"): 1, ("upload", "4xx"): 1, ("profile", "2xx"): 1,
                    ("profile", "4xx"): 1}  # fmt: skip
    api.credential.refresh_from_db()
    assert api.credential.last_used_at is not None


# --- schema and docs ----------


def test_openapi_schema_describes_every_api_route(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    routes = {"/" + str(p.pattern) for p in urlpatterns if str(p.pattern).startswith("1/")}
    assert routes == set(schema["paths"])
    assert schema["x-record-error-codes"]["513"]


def test_docs_page_shows_paths_examples_and_codes(outsider_client):
    response = outsider_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("/1/upload", "/1/profiles.json", "next_cursor", "Skipped record number",
                 "525", "Notification Clicked", "/1/disassociate", "evtId"):  # fmt: skip
        assert text in html
    assert '<script src="http' not in html  # no CDN
