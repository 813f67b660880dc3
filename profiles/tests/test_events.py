"""Events: retries, system properties refreshed by events, event->profile mapping rules."""

import datetime as dt

import pytest
from django.utils import timezone

from profiles.ingest import ingest_records
from profiles.models import (
    Device,
    Event,
    EventName,
    EventPropertyMapping,
    PropertyChange,
    PropertyDefinition,
    Source,
)
from profiles.services import Actor, event_push, profile_login, profile_push

SDK = Actor(source=Source.SDK)
PHONE = "__" + "c" * 32
pytestmark = pytest.mark.django_db
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_a_retried_client_event_id_stores_one_event_and_counts_once():
    first = event_push(
        device_id=PHONE,
        name="Charged",
        client_event_id="e-1",
        properties={"Amount": 5},
        ts=T0,
        actor=SDK,
    )
    retry = event_push(
        device_id=PHONE,
        name="Charged",
        client_event_id="e-1",
        properties={"Amount": 5},
        ts=T0,
        actor=SDK,
    )
    assert first[1] is not None and first[1].pk
    assert retry == (first[0], None) or (retry[0].pk, retry[1]) == (first[0].pk, None)
    assert Event.objects.count() == 1
    profile = first[0]
    profile.refresh_from_db()
    assert profile.event_count == 1
    # Another id is another event.
    event_push(device_id=PHONE, name="Charged", client_event_id="e-2", actor=SDK)
    assert Event.objects.count() == 2


def test_events_refresh_first_seen_last_seen_count_and_last_platform():
    TABLET = "__" + "t" * 32
    profile, event = event_push(device_id=PHONE, name="App Opened", ts=T0, actor=SDK)
    profile.refresh_from_db()
    assert (profile.first_seen, profile.last_seen, profile.event_count) == (T0, T0, 1)
    assert profile.last_platform == ""  # the device has said nothing about itself yet
    assert event.source == "sdk" and EventName.objects.filter(name="App Opened").exists()
    assert Device.objects.get(object_id=PHONE).last_seen == T0
    profile_login(device_id=TABLET, identifiers={"identity": "u1"}, actor=SDK)
    profile_login(device_id=PHONE, identifiers={"identity": "u1"}, actor=SDK)
    Device.objects.filter(object_id=PHONE).update(platform="Android")
    Device.objects.filter(object_id=TABLET).update(platform="iOS")

    later = T0 + dt.timedelta(days=1)
    person, _ = event_push(device_id=PHONE, name="Viewed", ts=later, actor=SDK)
    # A back-filled older event moves first seen but changes no "last" property.
    earlier = T0 - dt.timedelta(days=1)
    event_push(device_id=TABLET, name="Viewed", ts=earlier, actor=SDK)
    person.refresh_from_db()
    assert (person.first_seen, person.last_seen, person.event_count) == (earlier, later, 2)
    assert person.last_platform == "Android"
    assert Device.objects.get(object_id=PHONE).last_seen == later
    # The newest of one upload's events decides.
    newest = int(later.timestamp())
    ingest_records([
        {"type": "event", "objectId": PHONE, "evtName": "Viewed", "ts": newest + 5},
        {"type": "event", "objectId": TABLET, "evtName": "Viewed", "ts": newest + 9},
    ], actor=SDK)  # fmt: skip
    person.refresh_from_db()
    assert (person.last_platform, person.event_count) == ("iOS", 4)


def test_an_event_without_a_device_still_counts():
    profile, event = event_push(identifiers={"identity": "u1"}, name="Charged", ts=T0, actor=SDK)
    profile.refresh_from_db()
    assert (profile.event_count, profile.last_seen, event.device) == (1, T0, None)
    assert profile.identified


def test_mapping_rules_copy_an_event_property_to_the_profile():
    EventPropertyMapping.objects.create(
        event_name="Plan Purchased", event_property="plan", profile_property="Plan"
    )
    EventPropertyMapping.objects.create(
        event_name="Plan Purchased",
        event_property="seats",
        profile_property="Seats",
        enabled=False,
    )
    received = timezone.now()
    profile, _ = event_push(
        identifiers={"identity": "u1"},
        name="Plan Purchased",
        ts=T0,
        actor=SDK,
        properties={"plan": "Gold", "seats": 3},
    )
    profile.refresh_from_db()
    assert profile.custom == {"Plan": "Gold"}
    change = PropertyChange.objects.get()  # the event created the profile
    assert (change.property, change.new_value, change.source) == (
        "Profile created",
        {"Plan": "Gold"},
        "sdk",
    )
    # History says when the store changed (the event's own time is on the event).
    assert change.changed_at >= received
    # Other events and events without the property leave the profile alone.
    event_push(identifiers={"identity": "u1"}, name="Plan Purchased", actor=SDK)
    event_push(identifiers={"identity": "u1"}, name="Other", properties={"plan": "x"}, actor=SDK)
    profile.refresh_from_db()
    assert profile.custom == {"Plan": "Gold"} and profile.event_count == 3


def test_a_mapped_value_of_the_wrong_type_is_skipped_but_the_event_is_kept():
    EventPropertyMapping.objects.create(
        event_name="Plan Purchased", event_property="plan", profile_property="Plan"
    )
    profile_push(identifiers={"identity": "u1"}, profile_data={"Plan": "Gold"}, actor=SDK)
    profile, event = event_push(
        identifiers={"identity": "u1"}, name="Plan Purchased", properties={"plan": 7}, actor=SDK
    )
    assert event is not None
    profile.refresh_from_db()
    assert profile.custom == {"Plan": "Gold"} and profile.event_count == 1
    assert PropertyDefinition.objects.get(name="Plan").type == "string"


def test_event_properties_are_stored_with_dates_converted_and_items_kept():
    _, event = event_push(
        identifiers={"identity": "u1"},
        name="Charged",
        actor=SDK,
        properties={
            "Amount": 300,
            "When": "$D_1700000000",
            "Items": [{"sku": "a", "Price": 1.5}, {"sku": "b"}],
        },
    )
    event.refresh_from_db()
    assert event.properties == {
        "Amount": 300,
        "When": "2023-11-14T22:13:20Z",
        "Items": [{"sku": "a", "Price": 1.5}, {"sku": "b"}],
    }


def test_past_the_cap_on_event_names_only_the_events_of_a_new_name_are_refused():
    EventName.objects.bulk_create(EventName(name=f"Known {n}") for n in range(511))
    records = [
        {"type": "event", "identity": "cap-1", "evtName": "Known 7", "evtData": {}},
        {"type": "event", "identity": "cap-1", "evtName": "Second New", "evtData": {}},
        {"type": "event", "identity": "cap-2", "evtName": "First New", "evtData": {}},
        {"type": "event", "identity": "cap-3", "evtName": "Second New", "evtData": {}},
    ]
    result = ingest_records(records, actor=SDK)

    # The 512th name fits; the next new one refuses its records, each with the reason.
    assert {number: (error.code, error.message) for number, error in result.refusals.items()} == {
        2: (555, "At most 512 different event names may exist."),
        4: (555, "At most 512 different event names may exist."),
    }
    assert sorted(Event.objects.values_list("profile__identifiers__value", "name")) == [
        ("cap-1", "Known 7"),
        ("cap-2", "First New"),
    ]
    assert EventName.objects.count() == 512
    assert not EventName.objects.filter(name="Second New").exists()
