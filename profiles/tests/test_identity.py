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
        profile_push(
            identifiers={"identity": "y"}, profile_data={"Email": "X@example.com"}, actor=SDK
        )
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
    # A created profile: one history row holding what it was created with.
    assert list(profile.changes.values_list("property", "new_value")) == [
        (
            "Profile created",
            {"Name": "Ann", "Email": "ann@example.com", "Customer Type": "Platinum"},
        )
    ]


def test_same_client_event_id_twice_stores_one_event():
    for _ in range(2):
        event_push(
            identifiers={"identity": "u1"},
            name="Charged",
            client_event_id="evt-1",
            properties={"Amount": 10},
            actor=SDK,
        )
    assert Event.objects.filter(name="Charged").count() == 1
    assert Profile.objects.get().event_count == 1


def test_scenario_2_anonymous_events_do_not_count_for_the_person():
    profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    event_push(device_id=BROWSER_B, name="Event A", actor=SDK)
    person = profile_login(device_id=BROWSER_B, identifiers={"identity": "x"}, actor=SDK)
    event_push(device_id=BROWSER_B, name="Event B", actor=SDK)
    person.refresh_from_db()
    assert person.event_count == 2  # its own Event A and Event B; not the anonymous Event A
    anonymous = person.linked_anonymous.get()
    assert anonymous.event_count == 1 and anonymous.devices.count() == 0


def test_login_again_with_the_devices_own_identity_keeps_the_profile():
    person = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    again = profile_login(
        device_id=DESKTOP_A, identifiers={"identity": "x"}, profile_data={"Name": "X"}, actor=SDK
    )
    assert again.pk == person.pk
    assert Profile.objects.count() == 1
    assert Profile.objects.get().name == "X"


def test_a_person_on_two_devices_has_one_profile():
    person = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    profile_login(device_id=BROWSER_B, identifiers={"identity": "x"}, actor=SDK)
    assert set(Device.objects.values_list("profile", flat=True)) == {person.pk}
    # A login as browser B's first call makes no anonymous profile on the way.
    assert list(Profile.objects.all()) == [person]


def test_login_without_identifiers_on_an_identified_device_updates_that_person():
    person = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    again = profile_login(device_id=DESKTOP_A, profile_data={"Name": "X"}, actor=SDK)
    assert again.pk == person.pk and Profile.objects.count() == 1


def test_shared_device_switching_between_two_known_people_links_nobody():
    first = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    second = profile_login(device_id=DESKTOP_A, identifiers={"identity": "y"}, actor=SDK)
    back = profile_login(device_id=DESKTOP_A, identifiers={"identity": "x"}, actor=SDK)
    assert back.pk == first.pk
    assert Device.objects.get().profile == first
    assert not Profile.objects.filter(linked_to__isnull=False).exists()
    assert {p.pk for p in Profile.objects.filter(identified=True)} == {first.pk, second.pk}


def test_login_without_a_device_finds_or_creates_the_person():
    created = profile_login(identifiers={"identity": "x"}, actor=SDK)
    found = profile_login(identifiers={"Identity": "x"}, profile_data={"Plan": "A"}, actor=SDK)
    assert created.pk == found.pk and created.identified


def test_login_identifiers_may_come_from_profile_data():
    anonymous, _ = event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    person = profile_login(
        device_id=DESKTOP_A,
        profile_data={"Identity": "x", "Email": "X@Example.com", "Name": "Xavier"},
        actor=SDK,
    )
    assert person.pk == anonymous.pk
    assert set(Identifier.objects.values_list("kind", "value")) == {
        ("identity", "x"),
        ("email", "x@example.com"),
    }
    # Logging in by email from another device finds the same person.
    other = profile_login(device_id=BROWSER_B, profile_data={"Email": "x@example.com"}, actor=SDK)
    assert other.pk == person.pk


def test_profile_push_only_updates_the_current_profile():
    profile_login(identifiers={"identity": "x"}, actor=SDK)
    anonymous, _ = event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    with pytest.raises(RecordError, match="belongs to another profile"):
        profile_push(device_id=DESKTOP_A, profile_data={"Identity": "x"}, actor=SDK)
    assert Device.objects.get().profile == anonymous
    # A new identity given in a push identifies the current (anonymous) profile.
    pushed = profile_push(device_id=DESKTOP_A, profile_data={"Identity": "z"}, actor=SDK)
    assert pushed.pk == anonymous.pk and pushed.identified


def test_a_new_email_replaces_the_old_email_identifier():
    profile_push(
        identifiers={"identity": "x"}, profile_data={"Email": "old@example.com"}, actor=SDK
    )
    profile_push(
        identifiers={"identity": "x"}, profile_data={"Email": "new@example.com"}, actor=SDK
    )
    assert set(Identifier.objects.values_list("kind", "value")) == {
        ("identity", "x"),
        ("email", "new@example.com"),
    }
    # The old email is free for someone else now.
    profile_push(
        identifiers={"identity": "y"}, profile_data={"Email": "old@example.com"}, actor=SDK
    )


def test_an_identified_profile_cannot_lose_its_last_identifier():
    person = profile_push(
        identifiers={"identity": "x"}, profile_data={"Email": "x@example.com"}, actor=SDK
    )
    profile_push(
        identifiers={"identity": "x"}, profile_data={"Email": {"$delete": True}}, actor=SDK
    )
    person.refresh_from_db()
    assert person.email == "" and person.identified
    with pytest.raises(RecordError, match="without any identifier"):
        profile_push(
            identifiers={"identity": "x"}, profile_data={"Identity": {"$delete": True}}, actor=SDK
        )
    assert Identifier.objects.get().value == "x"


def test_identifiers_named_by_a_call_join_the_person_they_name():
    person = profile_push(identifiers={"identity": "x"}, profile_data={}, actor=SDK)
    again = profile_push(
        identifiers={"identity": "x", "email": "x@example.com"}, profile_data={}, actor=SDK
    )
    assert again.pk == person.pk
    assert Identifier.objects.filter(profile=person).count() == 2


def test_an_event_with_device_and_identity_follows_the_login_rules():
    anonymous, _ = event_push(device_id=DESKTOP_A, name="Event A", actor=SDK)
    profile, event = event_push(
        device_id=DESKTOP_A, identifiers={"identity": "x"}, name="Event B", actor=SDK
    )
    assert profile.pk == anonymous.pk and event.profile.identified
