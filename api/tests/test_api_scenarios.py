"""The seed page's onUserLogin scenarios, replayed through POST /1/upload only."""

from __future__ import annotations

import pytest

from api.tests.test_api_support import ApiClient
from profiles.models import Profile

pytestmark = pytest.mark.django_db
DESKTOP_A = "__" + "a" * 32
BROWSER_B = "__" + "b" * 32


def event(device: str, name: str, ts: int) -> dict:
    return {"type": "event", "objectId": device, "evtName": name, "ts": ts}


def login(device: str, identity: str) -> dict:
    return {"type": "profile", "objectId": device, "profileData": {"Identity": identity}}


def person(identity: str) -> Profile:
    return Profile.objects.get(identifiers__kind="identity", identifiers__value=identity)


def fetched(api: ApiClient, **lookup) -> dict:
    response = api.get("/1/profile.json", lookup)
    assert response.status_code == 200
    return response.json()["record"]


def test_scenario_1_anonymous_events_then_login_stay_with_the_same_person(api):
    assert api.upload(event(DESKTOP_A, "Event A", 1_700_000_000))["status"] == "success"
    assert api.upload(login(DESKTOP_A, "x"))["status"] == "success"
    assert api.upload(event(DESKTOP_A, "Event B", 1_700_000_100))["status"] == "success"

    x = person("x")
    assert sorted(x.events.values_list("name", flat=True)) == ["Event A", "Event B"]
    assert Profile.objects.count() == 1
    record = fetched(api, identity="x")
    assert record["type"] == "identified"
    assert record["systemProperties"]["Event count"] == 2
    assert [d["objectId"] for d in record["devices"]] == [DESKTOP_A]


def test_scenario_1_in_a_single_call_keeps_the_order(api):
    body = api.upload(
        event(DESKTOP_A, "Event A", 1_700_000_000),
        login(DESKTOP_A, "x"),
        event(DESKTOP_A, "Event B", 1_700_000_100),
    )
    assert body == {"status": "success", "processed": 3, "unprocessed": []}
    assert sorted(person("x").events.values_list("name", flat=True)) == ["Event A", "Event B"]
    assert Profile.objects.count() == 1


def test_scenario_2_second_browser_events_before_login_stay_anonymous_and_linked(api):
    api.upload(event(DESKTOP_A, "Event A", 1_700_000_000), login(DESKTOP_A, "x"))
    api.upload(event(BROWSER_B, "Event A", 1_700_001_000))
    anonymous_ct_id = fetched(api, objectId=BROWSER_B)["ct_id"]
    api.upload(login(BROWSER_B, "x"))
    api.upload(event(BROWSER_B, "Event B", 1_700_001_100))

    x = person("x")
    assert sorted(x.events.values_list("name", flat=True)) == ["Event A", "Event B"]
    anonymous = Profile.objects.get(ct_id=anonymous_ct_id)
    assert not anonymous.identified and anonymous.linked_to == x
    assert list(anonymous.events.values_list("name", flat=True)) == ["Event A"]
    assert fetched(api, objectId=BROWSER_B)["ct_id"] == x.ct_id  # the device maps to X now
    assert fetched(api, objectId=anonymous_ct_id)["linked_to"] == x.ct_id


def test_new_identity_on_an_identified_device_creates_a_new_profile(api):
    api.upload(login(DESKTOP_A, "x"))
    api.upload(login(DESKTOP_A, "y"))
    assert person("x").pk != person("y").pk
    assert fetched(api, objectId=DESKTOP_A)["identity"] == "y"
    assert person("x").linked_to is None


def test_identified_profiles_are_never_merged(api):
    api.upload(
        {"type": "profile", "identity": "x", "profileData": {"Email": "x@example.com"}},
        {"type": "profile", "identity": "y", "profileData": {}},
    )
    body = api.upload(
        {"type": "profile", "objectId": DESKTOP_A,
         "profileData": {"Identity": "y", "Email": "x@example.com"}},
    )  # fmt: skip
    assert body["status"] == "fail" and body["unprocessed"][0]["code"] == 555
    assert Profile.objects.filter(identified=True).count() == 2
