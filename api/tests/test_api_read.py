"""GET /1/profile.json, the cursor flow of /1/profiles.json and /1/events.json, counts."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from api.tests.test_api_support import ApiClient
from profiles.models import ApiQueryCursor, Device, Event, Profile
from profiles.tests.factories import DeviceFactory, EventFactory, identified_profile

pytestmark = pytest.mark.django_db
URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def at(day: str) -> dt.datetime:
    return dt.datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=dt.UTC)


# --- profile.json -------------------------------------------------------------------------


def test_profile_by_identity_with_properties_system_properties_and_devices(api):
    api.upload(
        {
            "type": "profile",
            "identity": "u1",
            "profileData": {"Name": "Ann", "Email": "ann+shop@example.com", "DOB": "1990-06-15",
                            "Employed": "Y", "MSG-sms": False, "Plan": "Gold"},
        },
        {"type": "event", "identity": "u1", "evtName": "Charged", "ts": 1704067200},
    )  # fmt: skip
    person = Profile.objects.get()
    DeviceFactory(profile=person, object_id="__" + "c" * 32, platform="iOS", push_token="tok")
    response = api.get("/1/profile.json", {"identity": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    record = body["record"]
    assert record["ct_id"] == person.ct_id and record["type"] == "identified"
    assert record["identity"] == "u1"
    assert record["identities"] == {"identity": ["u1"], "email": ["ann+shop@example.com"]}
    assert record["profileData"] == {
        "Name": "Ann", "Email": "ann+shop@example.com", "DOB": "1990-06-15", "Employed": "Y",
        "MSG-sms": False, "Plan": "Gold",
    }  # fmt: skip
    today = timezone.localdate()
    age = today.year - 1990 - ((today.month, today.day) < (6, 15))
    assert record["systemProperties"]["Age"] == age
    assert record["systemProperties"]["Event count"] == 1
    assert record["systemProperties"]["First seen"] == 1704067200
    assert record["devices"] == [
        {"objectId": "__" + "c" * 32, "platform": "iOS", "make": None, "model": None,
         "push_token": True, "push_enabled": None, "last_seen": None},
    ]  # fmt: skip
    assert record["test_profile"] is False and record["linked_to"] is None


def test_profile_by_unencoded_email_reads_a_space_as_plus(api):
    identified_profile("u1")
    api.upload({"type": "profile", "identity": "u1", "profileData": {"Email": "a+b@example.com"}})
    # What a client sends as ?email=a+b@example.com without encoding it:
    response = api.client.get("/1/profile.json?email=a+b@example.com")
    assert response.status_code == 200
    assert response.json()["record"]["identity"] == "u1"
    assert api.get("/1/profile.json", {"email": "A+B@Example.com"}).status_code == 200


def test_profile_by_object_id_of_a_device_or_the_ct_id(api):
    device = DeviceFactory()
    by_device = api.get("/1/profile.json", {"objectId": device.object_id}).json()
    assert by_device["record"]["ct_id"] == device.profile.ct_id
    by_ct_id = api.get("/1/profile.json", {"objectId": device.profile.ct_id}).json()
    assert by_ct_id["record"]["ct_id"] == device.profile.ct_id


def test_profile_not_found_is_404_and_no_identifier_is_400(api):
    missing = api.get("/1/profile.json", {"identity": "nobody"})
    assert missing.status_code == 404
    assert missing.json() == {
        "status": "fail", "error": "No profile found for the given identifier.", "code": 404,
    }  # fmt: skip
    assert api.get("/1/profile.json", {"email": "not-an-email"}).status_code == 404
    nothing = api.get("/1/profile.json")
    assert nothing.status_code == 400 and nothing.json()["status"] == "fail"


def test_profile_lookup_query_count(api, django_assert_num_queries):
    identified_profile("u1")
    # credential, identifier+profile, identifiers, devices, usage
    with django_assert_num_queries(5):
        assert api.get("/1/profile.json", {"identity": "u1"}).status_code == 200


def test_profile_json_needs_credentials(client):
    identified_profile("u1")
    response = client.get("/1/profile.json", {"identity": "u1"})
    assert response.status_code == 401


# --- cursors ----------


def drain(api: ApiClient, path: str, first: dict) -> list[dict]:
    assert first["status"] == "success", first
    cursor = first["cursor"]
    records: list[dict] = []
    while cursor:
        assert set(cursor) <= URL_SAFE
        # Clients append the cursor without encoding it.
        page = api.client.get(f"{path}?cursor={cursor}").json()
        assert page["status"] == "success", page
        records += page["records"]
        cursor = page.get("next_cursor")
    return records


def charged_people() -> tuple[list[Profile], Profile]:
    people = [identified_profile(f"u{i}") for i in range(7)]
    for person in people:
        EventFactory(profile=person, name="Charged", ts=at("20240115"), properties={"A": 1})
    outside = identified_profile("late")
    EventFactory(profile=outside, name="Charged", ts=at("20240201"))
    EventFactory(profile=people[0], name="Viewed", ts=at("20240110"))
    return people, outside


QUERY = {"event_name": "Charged", "from": 20240101, "to": 20240131}


def test_profiles_cursor_flow_with_post_body(api):
    people, _ = charged_people()
    first = api.post("/1/profiles.json?batch_size=3", QUERY).json()
    assert set(first) == {"status", "cursor"}
    records = drain(api, "/1/profiles.json", first)
    assert [r["identity"] for r in records] == [p.identifiers.get().value for p in people]


def test_profiles_cursor_flow_with_get_query_parameter(api):
    people, _ = charged_people()
    first = api.get("/1/profiles.json", {"batch_size": 2, "query": json.dumps(QUERY)}).json()
    assert len(drain(api, "/1/profiles.json", first)) == len(people)


def test_pages_have_batch_size_records_and_the_last_has_no_next_cursor(api):
    charged_people()
    first = api.post("/1/profiles.json?batch_size=3", QUERY).json()
    page1 = api.get("/1/profiles.json", {"cursor": first["cursor"]}).json()
    assert len(page1["records"]) == 3 and "next_cursor" in page1
    page2 = api.get("/1/profiles.json", {"cursor": page1["next_cursor"]}).json()
    page3 = api.get("/1/profiles.json", {"cursor": page2["next_cursor"]}).json()
    assert len(page3["records"]) == 1 and "next_cursor" not in page3
    again = api.get("/1/profiles.json", {"cursor": page1["next_cursor"]}).json()
    assert again["records"] == page2["records"]  # a retried cursor returns the same page


def test_empty_query_selects_everything(api):
    charged_people()
    first = api.post("/1/profiles.json?batch_size=100", {}).json()
    assert len(drain(api, "/1/profiles.json", first)) == Profile.objects.count()
    get_first = api.get("/1/events.json").json()
    assert len(drain(api, "/1/events.json", get_first)) == Event.objects.count()


def test_events_cursor_flow(api):
    people, _ = charged_people()
    device = DeviceFactory(profile=people[1])
    Event.objects.filter(profile=people[1]).update(device=device, client_event_id="o-1")
    first = api.post("/1/events.json?batch_size=4", QUERY).json()
    records = drain(api, "/1/events.json", first)
    assert len(records) == 7
    assert records[1] == {
        "evtName": "Charged",
        "ts": int(at("20240115").timestamp()),
        "evtData": {"A": 1},
        "evtId": "o-1",
        "source": "sdk",
        "profile": {"ct_id": people[1].ct_id, "identity": "u1", "objectId": device.object_id},
    }


def test_cursor_pages_are_stable_under_concurrent_inserts(api):
    charged_people()
    first = api.post("/1/profiles.json?batch_size=2", {"event_name": "Charged"}).json()
    page1 = api.get("/1/profiles.json", {"cursor": first["cursor"]}).json()
    # Meanwhile new people do the event: they are not part of this query.
    for i in range(5):
        EventFactory(profile=identified_profile(f"new{i}"), name="Charged", ts=at("20240116"))
    cursor = page1["next_cursor"]
    seen = [r["identity"] for r in page1["records"]]
    while cursor:
        page = api.get("/1/profiles.json", {"cursor": cursor}).json()
        seen += [r["identity"] for r in page["records"]]
        cursor = page.get("next_cursor")
    assert seen == [*(f"u{i}" for i in range(7)), "late"]  # no duplicates, no newcomers


def test_expired_and_unknown_cursors_are_refused_clearly(api):
    charged_people()
    first = api.post("/1/profiles.json?batch_size=2", QUERY).json()
    ApiQueryCursor.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    expired = api.get("/1/profiles.json", {"cursor": first["cursor"]})
    assert expired.status_code == 400
    assert "expired" in expired.json()["error"] and expired.json()["status"] == "fail"
    unknown = api.get("/1/profiles.json", {"cursor": "nope"})
    assert unknown.status_code == 400 and "not valid" in unknown.json()["error"]


def test_a_cursor_belongs_to_its_credential_and_endpoint(api):
    charged_people()
    first = api.post("/1/profiles.json?batch_size=2", QUERY).json()
    other = ApiClient(name="other")
    assert other.get("/1/profiles.json", {"cursor": first["cursor"]}).status_code == 400
    assert api.get("/1/events.json", {"cursor": first["cursor"]}).status_code == 400


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/1/profiles.json?batch_size=5001", "batch_size must be from 1 to 5000"),
        ("/1/profiles.json?batch_size=0", "batch_size must be from 1 to 5000"),
        ("/1/profiles.json?batch_size=ten", "batch_size must be a whole number"),
        ("/1/profiles.json?query={bad", "not valid JSON"),
        ('/1/profiles.json?query={"from":"2024-01-01"}', "YYYYMMDD"),
        ('/1/profiles.json?query={"from":20240230}', "YYYYMMDD"),
        ('/1/profiles.json?query={"when":1}', "Unknown query field"),
        ('/1/events.json?query={"from":20240201,"to":20240101}', '"from" is after "to"'),
    ],
)
def test_bad_query_parameters_are_refused_clearly(api, path, expected):
    response = api.client.get(path)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert response.json()["code"] == 400


def test_batch_size_5000_is_accepted(api):
    assert api.post("/1/events.json?batch_size=5000", {}).status_code == 200


# --- counts ----------


def test_counts_are_answered_synchronously(api):
    charged_people()
    profiles = api.post("/1/counts/profiles.json", QUERY)
    assert profiles.status_code == 200
    assert profiles.json() == {"status": "success", "count": 7}
    events = api.post("/1/counts/events.json", {"event_name": "Charged"})
    assert events.json() == {"status": "success", "count": 8}
    everything = api.post("/1/counts/profiles.json", raw="")
    assert everything.json()["count"] == Profile.objects.count()
    assert api.post("/1/counts/events.json", raw="{oops").status_code == 400
    assert api.get("/1/counts/events.json").status_code == 405


def test_anonymous_device_events_count_for_the_anonymous_profile(api):
    device = DeviceFactory(object_id="__" + "d" * 32)
    EventFactory(profile=device.profile, device=device, name="Charged", ts=at("20240105"))
    assert api.post("/1/counts/profiles.json", QUERY).json()["count"] == 1
    assert Device.objects.count() == 1
