"""Marking and unmarking a test profile (the seed page's "Mark as test profile")."""

import pytest

from profiles import selectors
from profiles.models import Event, Profile, PropertyChange, PropertyDefinition
from profiles.services import TEST_MARKED_EVENT, TEST_UNMARKED_EVENT, profile_mark_test
from profiles.tests.factories import identified_profile

pytestmark = pytest.mark.django_db


# Plain users: marking is a service; who may call it is the view's business (tested there).
@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(username="admin")


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_user(username="root")


def test_marking_sets_ct_is_test_user_to_the_string_yes_with_event_and_history(admin_user):
    person = identified_profile("u1", name="Ann")
    marked = profile_mark_test(profile=person, user=admin_user)

    person.refresh_from_db()
    assert person.custom["ct_is_test_user"] == "Yes"
    assert isinstance(person.custom["ct_is_test_user"], str)
    assert person.is_test and marked.is_test
    assert PropertyDefinition.objects.get(name="ct_is_test_user").type == "string"
    event = Event.objects.get(profile=person)
    assert (event.name, event.source, event.properties) == (
        TEST_MARKED_EVENT,
        "system",
        {"by": "admin"},
    )
    change = PropertyChange.objects.get(profile=person)
    assert (change.property, change.old_value, change.new_value) == ("ct_is_test_user", None, "Yes")
    assert (change.source, change.actor, change.actor_label) == ("dashboard", admin_user, "admin")
    assert list(Profile.objects.filter(selectors.test_profiles_q())) == [person]
    # A system event is not activity: it neither counts nor moves last seen.
    assert (person.event_count, person.last_seen) == (0, marked.last_seen)


def test_marking_twice_changes_nothing(admin_user):
    person = identified_profile("u1")
    profile_mark_test(profile=person, user=admin_user)
    profile_mark_test(profile=person, user=admin_user)
    assert Event.objects.count() == 1
    assert PropertyChange.objects.count() == 1


def test_unmarking_removes_the_property_and_records_who_did_it(admin_user, superuser):
    person = identified_profile("u1", custom={"Plan": "Gold"})
    profile_mark_test(profile=person, user=admin_user)
    profile_mark_test(profile=person, user=superuser, is_test=False)

    person.refresh_from_db()
    assert person.custom == {"Plan": "Gold"}
    assert not person.is_test
    assert not Profile.objects.filter(selectors.test_profiles_q()).exists()
    last = Event.objects.filter(profile=person).latest("pk")
    assert (last.name, last.properties) == (TEST_UNMARKED_EVENT, {"by": "root"})
    change = PropertyChange.objects.filter(profile=person).latest("pk")
    assert (change.old_value, change.new_value, change.actor) == ("Yes", None, superuser)


def test_unmarking_a_profile_that_is_not_marked_changes_nothing(admin_user):
    person = identified_profile("u1")
    profile_mark_test(profile=person, user=admin_user, is_test=False)
    assert not Event.objects.exists() and not PropertyChange.objects.exists()


def test_an_anonymous_profile_can_be_marked_too(admin_user):
    from profiles.tests.factories import ProfileFactory

    anonymous = ProfileFactory()
    profile_mark_test(profile=anonymous, user=admin_user)
    anonymous.refresh_from_db()
    assert anonymous.is_test and not anonymous.identified
