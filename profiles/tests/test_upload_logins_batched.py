"""Logins (objectId + identity) sent many per /1/upload call: profiles.bulk takes the
plain cases set-based and defers the others to profile_login. Whatever path a record
takes, the outcome is the one of sending each record in its own call."""

from __future__ import annotations

import pytest

from api.tests.test_api_support import ApiClient
from profiles.models import Device, Event, Identifier, Profile, PropertyChange
from profiles.services import LOGIN_CURRENT, LOGIN_HOLDER, LOGIN_NEW, login_decision

pytestmark = pytest.mark.django_db


def device(letter: str) -> str:
    return "__" + letter * 32


def login(object_id: str, identity: str, **data) -> dict:
    return {"type": "profile", "objectId": object_id, "identity": identity, "profileData": data}


def setup_people(api: ApiClient) -> None:
    """K holds identity "known"; device a maps to an anonymous profile; device s maps
    to identified profile "sharer"; device k already maps to K."""
    assert (
        api.upload(
            {"type": "profile", "identity": "known", "profileData": {"Name": "K"}},
            {"type": "event", "objectId": device("a"), "evtName": "Browse"},
            login(device("s"), "sharer", Name="S"),
            login(device("k"), "known"),
            {"type": "event", "objectId": device("b"), "evtName": "Browse"},
        )["status"]
        == "success"
    )


BATCH = [
    login(device("1"), "new-1", Name="One", Score=1),  # new device, new person
    login(device("2"), "known", Score=2),  # new device, known person
    login(device("k"), "known", **{"Customer Type": "Gold"}),  # device already maps to K
    login(device("a"), "anon-becomes"),  # rule 1: the anonymous profile is identified
    {"type": "profile", "identity": "anon-becomes", "profileData": {"Name": "Was anonymous"}},
    login(device("b"), "known"),  # rule 2: the anonymous profile is linked to K
    login(device("s"), "second-user", Name="Second"),  # shared device: a new profile
    login(device("3"), "new-3", Name="Three"),  # the same new person on two new devices
    login(device("4"), "new-3", Score=3),
    login(device("5"), "first-on-5"),  # a new device, then another person on it
    login(device("5"), "second-on-5"),
    login(device("6"), "bad-data", **{"MSG-sms": "maybe"}),  # refused: nothing stored
    login("not a device id", "bad-device"),  # refused: nothing stored
    {"type": "profile", "identity": "new-1", "profileData": {"Name": "One again"}},
]


def snapshot() -> list[tuple]:
    """Every profile by what a user sees: identifiers, devices, properties, link."""

    def names(profile: Profile | None) -> tuple:
        if profile is None:
            return ()
        return tuple(sorted(profile.identifiers.values_list("value", flat=True)))

    people = []
    for person in Profile.objects.all():
        people.append((
            names(person),
            tuple(sorted(person.devices.values_list("object_id", flat=True))),
            person.name,
            tuple(sorted(person.custom.items())),
            person.identified,
            names(person.linked_to),
            person.events.count(),
        ))  # fmt: skip
    return sorted(people)


def test_a_batch_of_logins_ends_as_the_same_logins_one_by_one(api):
    setup_people(api)
    body = api.upload(*BATCH)
    assert body["processed"] == len(BATCH) - 2
    assert [item["record"] for item in body["unprocessed"]] == [BATCH[11], BATCH[12]]
    batched, batched_errors = snapshot(), body["unprocessed"]

    for model in (Event, PropertyChange, Identifier, Device, Profile):
        model.objects.all().delete()
    setup_people(api)
    one_by_one_errors = []
    for number, record in enumerate(BATCH, start=1):
        answer = api.upload(record)
        for item in answer["unprocessed"]:
            item["error"] = item["error"].replace(
                "Skipped record number : 1", f"Skipped record number : {number}"
            )
            one_by_one_errors.append(item)

    assert batched == snapshot()
    assert batched_errors == one_by_one_errors


def test_the_batch_outcome_a_user_sees(api):
    setup_people(api)
    api.upload(*BATCH)
    known = Profile.objects.get(identifiers__value="known")
    assert set(known.devices.values_list("object_id", flat=True)) == {
        device("2"), device("k"), device("b")
    }  # fmt: skip
    assert known.custom == {"Score": 2, "Customer Type": "Gold"}
    became = Profile.objects.get(identifiers__value="anon-becomes")
    assert became.name == "Was anonymous" and became.events.count() == 1
    assert Device.objects.get(object_id=device("a")).profile == became
    left = Event.objects.get(device__object_id=device("b")).profile
    assert left.linked_to == known and not left.identified
    second = Profile.objects.get(identifiers__value="second-user")
    assert Device.objects.get(object_id=device("s")).profile == second
    assert Profile.objects.get(identifiers__value="sharer").name == "S"
    three = Profile.objects.get(identifiers__value="new-3")
    assert set(three.devices.values_list("object_id", flat=True)) == {device("3"), device("4")}
    assert Device.objects.get(object_id=device("5")).profile == Profile.objects.get(
        identifiers__value="second-on-5"
    )
    assert Profile.objects.get(identifiers__value="new-1").name == "One again"
    assert not Identifier.objects.filter(value__in=["bad-data", "bad-device"]).exists()
    assert not Device.objects.filter(object_id=device("6")).exists()


@pytest.mark.parametrize(
    ("current", "holder", "named", "expected"),
    [
        (None, None, True, (LOGIN_NEW, False)),
        ((1, False, False), None, False, (LOGIN_CURRENT, False)),
        ((1, False, False), None, True, (LOGIN_CURRENT, False)),  # rule 1
        ((1, True, False), None, True, (LOGIN_NEW, False)),  # shared device
        ((1, False, True), None, True, (LOGIN_NEW, False)),  # linked anonymous profile
        ((1, False, False), 2, True, (LOGIN_HOLDER, True)),  # rule 2
        ((1, True, False), 2, True, (LOGIN_HOLDER, False)),
        ((2, True, False), 2, True, (LOGIN_HOLDER, False)),
        (None, 2, True, (LOGIN_HOLDER, False)),
    ],
)
def test_login_decision(current, holder, named, expected):
    decision = login_decision(
        current_id=current[0] if current else None,
        current_identified=bool(current and current[1]),
        current_linked=bool(current and current[2]),
        holder_id=holder,
        named=named,
    )
    assert (decision.target, decision.link_current) == expected


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_logging_the_same_new_people_in_make_one_profile_each():
    """Eight uploads at once, each logging the same 50 new people in on its own new
    devices: one profile per person, holding every device."""
    from api.views import upload_records
    from profiles.services import Actor
    from profiles.tests.test_concurrency import in_parallel

    def batch(index: int) -> tuple:
        records = [login(f"__{index:02x}{n:030x}", f"person-{n}", Score=index) for n in range(50)]
        return upload_records(records, actor=Actor(source="api", label="t"))

    results = in_parallel(batch, count=8)
    assert [result for result in results if isinstance(result, BaseException)] == []
    assert [result[1] for result in results] == [[]] * 8  # nothing refused
    assert Profile.objects.count() == 50
    assert Device.objects.count() == 400
    for person in Profile.objects.all():
        assert person.identified and person.devices.count() == 8
