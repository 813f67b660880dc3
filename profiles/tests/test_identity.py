"""The identity rules of DESIGN.md and the seed page's scenarios."""

import pytest

from profiles.models import Device, Event, Identifier, Profile, Source
from profiles.properties import RecordError
from profiles.services import Actor, event_push, profile_login, profile_push

SDK = Actor(source=Source.SDK)
DESKTOP_A = "__" + "a" * 32
BROWSER_B = "__" + "b" * 32

pytestmark = pytest.mark.django_db


def test_a_device_never_seen_gets_an_anonymous_profile():
    profile, event = event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    assert not profile.identified
    assert event.profile == profile
    assert Device.objects.get(object_id=DESKTOP_A).profile == profile


def test_scenario_1_login_on_anonymous_device_identifies_the_same_profile():
    anonymous, _ = event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    person = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    event_push(device_id=DESKTOP_A, name="Event B", actor=SDK)

    assert person.pk == anonymous.pk
    person.refresh_from_db()
    assert person.identified
    assert list(person.events.order_by("ts").values_list("name", flat=True)) == [
        "Event A",
        "Event B",
    ]
    assert person.event_count == 2


def test_scenario_2_anonymous_profile_is_kept_linked_and_later_events_go_to_the_person():
    profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    person = Profile.objects.get(identifiers__value="x")
    anonymous, _ = event_push(device_id=BROWSER_B, name="Event A", actor=SDK)

    logged_in = profile_login(device_id=BROWSER_B, identifiers={"identity": "x"}, actor=SDK)
    event_push(device_id=BROWSER_B, name="Event B", actor=SDK)

    assert logged_in.pk == person.pk
    anonymous.refresh_from_db()
    assert anonymous.linked_to == person and not anonymous.identified
    assert list(person.events.values_list("name", flat=True)) == ["Event B"]
    assert list(anonymous.events.values_list("name", flat=True)) == ["Event A"]
    assert Device.objects.get(object_id=BROWSER_B).profile == person


def test_new_identity_on_a_device_of_an_identified_profile_creates_a_new_profile():
    first = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    second = profile_login(device_id=DESKTOP_A, identifiers={"identity": "y"}, actor=SDK)
    assert second.pk != first.pk
    assert second.identified
    assert Device.objects.get(object_id=DESKTOP_A).profile == second
    first.refresh_from_db()
    assert first.linked_to is None and first.identified


def test_two_identified_profiles_are_never_merged():
    profile_login(identifiers={"identity": "x", "email": "x@example.com"}, actor=SDK)
    profile_login(identifiers={"identity": "y"}, actor=SDK)
    with pytest.raises(RecordError, match="never merged"):
        profile_push(identifiers={"identity": "y"}, profile_data={"Email": "X@example.com"},
                     actor=SDK)  # fmt: skip
    with pytest.raises(RecordError, match="different profiles"):
        profile_login(identifiers={"identity": "y", "email": "x@example.com"}, actor=SDK)
    assert Identifier.objects.get(kind="email").profile.identifiers.filter(value="x").exists()


def test_push_with_unknown_identity_creates_a_profile_and_sets_properties():
    profile = profile_push(
        identifiers={"identity": "u1"},
        profile_data={"Name": "Ann", "Email": " Ann@Example.COM ", "Customer Type": "Platinum"},
        actor=SDK,
    )
    profile.refresh_from_db()
    assert profile.name == "Ann"
    assert profile.email == "ann@example.com"
    assert profile.custom == {"Customer Type": "Platinum"}
    assert set(profile.identifiers.values_list("kind", "value")) == {
        ("identity", "u1"),
        ("email", "ann@example.com"),
    }
    assert profile.changes.count() == 3


def test_same_client_event_id_twice_stores_one_event():
    for _ in range(2):
        event_push(identifiers={"identity": "u1"}, name="Charged", client_event_id="evt-1",
                   properties={"Amount": 10}, actor=SDK)  # fmt: skip
    assert Event.objects.filter(name="Charged").count() == 1
    assert Profile.objects.get().event_count == 1
