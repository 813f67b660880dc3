"""Deleting a profile (GDPR): the person and everything about them goes; devices stay."""

import pytest

from profiles.models import Device, Event, Identifier, Profile, PropertyChange, Source
from profiles.services import Actor, event_push, profile_delete, profile_login, profile_push

SDK = Actor(source=Source.SDK)
PHONE = "__" + "1" * 32
LAPTOP = "__" + "2" * 32
pytestmark = pytest.mark.django_db


def test_deleting_removes_profile_identifiers_events_history_and_linked_anonymous_profiles():
    person = profile_login(
        device_id=PHONE,
        identifiers={"identity": "u1"},
        profile_data={"Email": "ann@example.com", "Plan": "Gold"},
        actor=SDK,
    )
    event_push(device_id=PHONE, name="Viewed", actor=SDK)
    anonymous, _ = event_push(device_id=LAPTOP, name="Browsed", actor=SDK)
    profile_login(device_id=LAPTOP, identifiers={"identity": "u1"}, actor=SDK)
    bystander = profile_push(identifiers={"identity": "u2"}, profile_data={"Plan": "x"}, actor=SDK)

    assert profile_delete(profile=person) == 2

    assert list(Profile.objects.all()) == [bystander]
    assert list(Identifier.objects.values_list("value", flat=True)) == ["u2"]
    assert not Event.objects.exists()
    assert list(PropertyChange.objects.values_list("profile_id", flat=True)) == [bystander.pk]
    # Devices are kept, mapped to nobody.
    assert set(Device.objects.values_list("object_id", "profile")) == {
        (PHONE, None),
        (LAPTOP, None),
    }
    assert not Profile.objects.filter(pk=anonymous.pk).exists()


def test_the_next_call_from_the_same_device_makes_a_new_anonymous_profile():
    person = profile_login(device_id=PHONE, identifiers={"identity": "u1"}, actor=SDK)
    profile_delete(profile=person)

    fresh, event = event_push(device_id=PHONE, name="App Opened", actor=SDK)
    assert fresh.pk != person.pk
    assert not fresh.identified
    assert Device.objects.get(object_id=PHONE).profile == fresh
    assert event.profile == fresh and event.device.object_id == PHONE
    # The deleted identity is free again: logging in makes this profile identified.
    again = profile_login(device_id=PHONE, identifiers={"identity": "u1"}, actor=SDK)
    assert again.pk == fresh.pk


def test_deleting_a_linked_anonymous_profile_leaves_the_person():
    person = profile_login(device_id=PHONE, identifiers={"identity": "u1"}, actor=SDK)
    anonymous, _ = event_push(device_id=LAPTOP, name="Browsed", actor=SDK)
    profile_login(device_id=LAPTOP, identifiers={"identity": "u1"}, actor=SDK)
    assert profile_delete(profile=anonymous) == 1
    assert list(Profile.objects.all()) == [person]
    assert Device.objects.get(object_id=LAPTOP).profile == person


def test_deleting_an_already_deleted_profile_is_harmless():
    person = profile_login(identifiers={"identity": "u1"}, actor=SDK)
    profile_delete(profile=person)
    assert profile_delete(profile=person) == 0
