"""The identity rules under real concurrency: threads, each with its own connection.

Every thread commits its own transactions against the real PostgreSQL test
database (transactional_db), so the constraints and retries in the services
are what keeps the data right, not luck.
"""

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from profiles.models import Event, Identifier, Profile, PropertyDefinition, Source
from profiles.properties import RecordError
from profiles.services import Actor, event_push, profile_login, profile_push

SDK = Actor(source=Source.SDK)
THREADS = 20
pytestmark = pytest.mark.django_db(transaction=True)


def in_parallel(work: Callable[[int], object], count: int = THREADS) -> list[object]:
    """Run work(0..count-1) in threads released at once; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as error:  # reported to the test, never swallowed
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return results


def device(index: int) -> str:
    return f"__{index:032x}"


def test_twenty_devices_log_the_same_new_identity_in_at_once():
    before = in_parallel(
        lambda i: event_push(
            device_id=device(i), name="Before", client_event_id=f"before-{i}", actor=SDK
        )
    )
    assert not [result for result in before if isinstance(result, BaseException)]

    def login_then_event(index: int) -> int:
        person = profile_login(
            device_id=device(index), identifiers={"identity": "new-person"}, actor=SDK
        )
        event_push(
            device_id=device(index), name="After", client_event_id=f"after-{index}", actor=SDK
        )
        return person.pk

    results = in_parallel(login_then_event)
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, errors

    person = Profile.objects.get(identifiers__kind="identity", identifiers__value="new-person")
    assert set(results) == {person.pk}, "every caller got the one person"
    assert Profile.objects.filter(identified=True).count() == 1
    anonymous = Profile.objects.filter(identified=False)
    assert anonymous.count() == THREADS - 1
    assert all(profile.linked_to_id == person.pk for profile in anonymous)
    # No event lost, none duplicated: one Before and one After per device.
    assert Event.objects.count() == 2 * THREADS
    for index in range(THREADS):
        names = sorted(
            Event.objects.filter(device__object_id=device(index)).values_list("name", flat=True)
        )
        assert names == ["After", "Before"], index
    assert set(Event.objects.filter(name="After").values_list("profile", flat=True)) == {person.pk}
    person.refresh_from_db()
    # The winner's anonymous history became the person's: 1 Before + 20 After.
    assert person.event_count == THREADS + 1
    assert person.devices.count() == THREADS


def test_twenty_events_with_the_same_new_identity_and_no_device_make_one_profile():
    results = in_parallel(
        lambda i: event_push(
            identifiers={"identity": "walk-in"}, name="Charged", properties={"n": i}, actor=SDK
        )
    )
    assert not [result for result in results if isinstance(result, BaseException)]
    person = Profile.objects.get()
    assert person.identified and person.event_count == THREADS
    assert Identifier.objects.get().profile == person
    assert sorted(Event.objects.values_list("properties__n", flat=True)) == list(range(THREADS))


def test_twenty_pushes_of_a_new_property_fix_one_type_and_refuse_the_others():
    def push(index: int) -> object:
        value = index if index % 2 else f"text {index}"
        return profile_push(
            identifiers={"identity": f"u{index}"}, profile_data={"Score": value}, actor=SDK
        )

    results = in_parallel(push)
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, RecordError)
    ]
    assert not unexpected, unexpected
    fixed = PropertyDefinition.objects.get(name="Score").type
    stored = {
        type(p.custom["Score"]).__name__ for p in Profile.objects.filter(custom__has_key="Score")
    }
    assert stored == {"int" if fixed == "number" else "str"}
    refused = [r for r in results if isinstance(r, RecordError)]
    assert len(refused) == THREADS // 2
    assert all("refused" in error.message for error in refused)
    # A refused record wrote nothing, not even its profile.
    assert Profile.objects.count() == THREADS // 2


def test_concurrent_logins_of_two_people_swapping_devices_do_not_deadlock():
    profile_login(device_id=device(1), identifiers={"identity": "a"}, actor=SDK)
    profile_login(device_id=device(2), identifiers={"identity": "b"}, actor=SDK)

    def swap(index: int) -> int:
        # Half the threads move device 1 to b, the other half device 2 to a, and back.
        who, where = ("b", device(1)) if index % 2 else ("a", device(2))
        for _ in range(3):
            profile_login(device_id=where, identifiers={"identity": who}, actor=SDK)
            event_push(device_id=where, name="Tick", actor=SDK)
        return 0

    results = in_parallel(swap)
    assert results == [0] * THREADS, [r for r in results if r]
    assert Profile.objects.count() == 2
    assert Event.objects.count() == 3 * THREADS


def test_concurrent_upload_batches_on_the_same_people_lose_no_count_nor_increment():
    from api.views import upload_records

    people = [f"known-{n}" for n in range(5)]
    for identity in people:
        profile_push(identifiers={"identity": identity}, profile_data={"Score": 0}, actor=SDK)

    def batch(index: int) -> int:
        # One call of profiles (known and new people) and one of events: each set-based.
        profiles, events = [], []
        for n, identity in enumerate(people * 4):
            profiles.append({"type": "profile", "identity": identity,
                             "profileData": {"Score": {"$incr": 1}}})  # fmt: skip
            profiles.append({"type": "profile", "identity": f"new-{index}-{n}",
                             "profileData": {"Name": "New"}})  # fmt: skip
            events.append({"type": "event", "identity": identity, "evtName": "Seen",
                           "evtId": f"{index}-{n}", "evtData": {}})  # fmt: skip
        processed = 0
        for records in (profiles, events):
            done, unprocessed = upload_records(records, actor=SDK)
            assert not unprocessed, unprocessed
            processed += done
        return processed

    results = in_parallel(batch, 8)
    assert results == [60] * 8
    for identity in people:
        person = Profile.objects.get(identifiers__kind="identity", identifiers__value=identity)
        assert person.custom["Score"] == 8 * 4
        assert person.event_count == 8 * 4 == person.events.count()
    assert Profile.objects.count() == 5 + 8 * 20
