"""Per-record cost of the services, pinned: the REST upload and imports call them
1000 times per batch. Counts include the SAVEPOINT/RELEASE pair each call makes
inside the test's transaction (and inside a caller's batch transaction)."""

import pytest

from profiles.models import EventPropertyMapping, Source
from profiles.services import Actor, event_push, profile_login, profile_push, service_batch

SDK = Actor(source=Source.SDK)
PHONE = "__" + "d" * 32
pytestmark = pytest.mark.django_db


@pytest.fixture
def known():
    """A known person on a known device, a known event name and property type."""
    profile_login(device_id=PHONE, identifiers={"identity": "u1"}, actor=SDK)
    event_push(device_id=PHONE, name="Viewed", actor=SDK)
    profile_push(identifiers={"identity": "u1"}, profile_data={"Plan": "Gold"}, actor=SDK)


def test_an_event_on_a_known_device(known, django_assert_num_queries):
    # savepoint, device+profile, event name, insert, profile+device, mapping rules, release
    with django_assert_num_queries(7):
        event_push(device_id=PHONE, name="Viewed", properties={"Page": "home"}, actor=SDK)


def test_an_event_on_a_known_device_within_a_batch(known, django_assert_num_queries):
    with service_batch():
        event_push(device_id=PHONE, name="Viewed", actor=SDK)
        # savepoint, device+profile, insert, profile+device, release
        with django_assert_num_queries(5):
            event_push(device_id=PHONE, name="Viewed", properties={"Page": "home"}, actor=SDK)


def test_an_event_by_a_known_identity(known, django_assert_num_queries):
    # savepoint, identifier+profile (locked), event name, insert, profile, mapping, release
    with django_assert_num_queries(7):
        event_push(identifiers={"identity": "u1"}, name="Viewed", actor=SDK)


def test_an_event_with_a_client_event_id(known, django_assert_num_queries):
    with django_assert_num_queries(7):
        event_push(device_id=PHONE, name="Viewed", client_event_id="e1", actor=SDK)
    # A retry stops after the insert finds the id taken.
    with django_assert_num_queries(5):
        event_push(device_id=PHONE, name="Viewed", client_event_id="e1", actor=SDK)


def test_a_mapped_event_updates_the_profile(known, django_assert_num_queries):
    EventPropertyMapping.objects.create(
        event_name="Viewed", event_property="plan", profile_property="Plan"
    )
    # + lock the profile, property types, and in a savepoint (a refused mapped value undoes
    # only the mapping, never the event): profile update, change row
    with django_assert_num_queries(13):
        event_push(device_id=PHONE, name="Viewed", properties={"plan": "Silver"}, actor=SDK)


def test_a_profile_push_by_a_known_identity(known, django_assert_num_queries):
    # savepoint, identifier+profile (locked), property types, profile, change rows, release
    with django_assert_num_queries(6):
        profile_push(
            identifiers={"identity": "u1"}, profile_data={"Plan": "Silver", "Name": "A"}, actor=SDK
        )
    with service_batch():
        profile_push(identifiers={"identity": "u1"}, profile_data={"Plan": "Bronze"}, actor=SDK)
        with django_assert_num_queries(5):
            profile_push(identifiers={"identity": "u1"}, profile_data={"Plan": "Gold"}, actor=SDK)


def test_an_event_from_a_new_device(django_assert_num_queries):
    # savepoint, device (none), new profile, device insert, event name (+insert), event,
    # profile+device, mapping rules, release
    with django_assert_num_queries(10):
        event_push(device_id=PHONE, name="First", actor=SDK)


def test_a_login_on_a_known_anonymous_device(django_assert_num_queries):
    event_push(device_id=PHONE, name="First", actor=SDK)
    # savepoint, device+profile, identifiers held, lock profile, identifier insert, release
    with django_assert_num_queries(6):
        profile_login(device_id=PHONE, identifiers={"identity": "u9"}, actor=SDK)
