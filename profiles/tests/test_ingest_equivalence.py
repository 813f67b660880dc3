"""The same records through every channel leave the same database state.

Each channel is a parametrised case on a fresh database; every case must reach
the one expected state, so two channels that diverge fail here.
"""

import unicodedata

import pytest

from imports.tests.csv_fixtures import csv_path, import_file, use_temporary_media
from profiles.ingest import ingest_records
from profiles.models import (
    Event,
    EventPropertyMapping,
    Identifier,
    Profile,
    PropertyChange,
    PropertyDefinition,
    Source,
)
from profiles.services import Actor

API = Actor(source=Source.API)
TS = 1700000000

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    return use_temporary_media(settings, tmp_path)


def state() -> dict:
    """What a user can see of the store, without ids, sources and receive times."""
    return {
        "profiles": sorted(
            (p.identified, p.event_count, sorted(p.custom.items()), p.email, p.gender)
            for p in Profile.objects.all()
        ),
        "identifiers": sorted(Identifier.objects.values_list("kind", "value")),
        "events": [
            (name, properties, ts.timestamp())
            for name, properties, ts in Event.objects.order_by("ts").values_list(
                "name", "properties", "ts"
            )
        ],
        "profile types": sorted(
            PropertyDefinition.objects.filter(scope="profile").values_list("name", "type")
        ),
        # Each profile's history in order, profiles by their identifiers (ids and the
        # order of different people's rows depend on how a batch was split).
        "history": [
            row
            for profile in sorted(
                Profile.objects.all(),
                key=lambda p: sorted(p.identifiers.values_list("kind", "value")),
            )
            for row in PropertyChange.objects.filter(profile=profile)
            .order_by("id")
            .values_list("property", "old_value", "new_value")
        ],
    }


def person_with_a_plan() -> None:
    result = ingest_records(
        [{"type": "profile", "identity": "u1", "FBID": "fb1", "profileData": {"Plan": "Gold"}}],
        actor=API,
    )
    assert result.refusals == {}


def by_api(key: str, value: str, events: list[tuple[int, dict]]) -> None:
    records = [
        {"type": "event", key: value, "evtName": "Plan Purchased", "evtData": data, "ts": ts}
        for ts, data in events
    ]
    assert ingest_records(records, actor=API).refusals == {}


def by_csv(tmp_path, events: list[tuple[int, dict]]) -> None:
    lines = ["identity,ts,gender", *(f"u1,{ts},{data['gender']}" for ts, data in events)]
    run = import_file(
        csv_path(tmp_path, "\n".join(lines) + "\n"), kind="events", event_name="Plan Purchased"
    )
    assert (run.status, run.rows_rejected) == ("done", 0)


CHANNELS = {
    "api by identity": lambda tmp_path, events: by_api("identity", "u1", events),
    "api by FBID": lambda tmp_path, events: by_api("FBID", "fb1", events),
    "csv import": by_csv,
}


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refused_mapped_value_keeps_the_event_and_skips_only_the_mapping(channel, tmp_path):
    EventPropertyMapping.objects.create(
        event_name="Plan Purchased", event_property="gender", profile_property="Gender"
    )
    person_with_a_plan()
    # Gender takes M/F/O/U: "X" cannot be mapped onto it (514), "F" can.
    CHANNELS[channel](tmp_path, [(TS, {"gender": "X"}), (TS + 60, {"gender": "F"})])
    assert state() == {
        "profiles": [(True, 2, [("Plan", "Gold")], "", "F")],
        "identifiers": [("fbid", "fb1"), ("identity", "u1")],
        "events": [
            ("Plan Purchased", {"gender": "X"}, TS),
            ("Plan Purchased", {"gender": "F"}, TS + 60),
        ],
        "profile types": [("Plan", "string")],
        "history": [("Profile created", None, {"Plan": "Gold"}), ("Gender", "", "F")],
    }


IDENTITY_NFD = unicodedata.normalize("NFD", "josé")


def test_nfd_and_nfc_identities_are_one_person_through_the_api_and_csv(tmp_path):
    ingest_records(
        [{"type": "profile", "identity": IDENTITY_NFD, "profileData": {"Plan": "Gold"}}],
        actor=API,
    )
    path = csv_path(tmp_path, f"identity,Tier\n{unicodedata.normalize('NFC', 'josé')},2\n")
    run = import_file(path)
    assert (run.status, run.rows_rejected, run.profiles_created) == ("done", 0, 0)
    assert Profile.objects.get().custom == {"Plan": "Gold", "Tier": 2}


def by_csv_email(tmp_path, events: list[tuple[int, dict]]) -> None:
    lines = ["identity,ts,contact", *(f"u1,{ts},{data['contact']}" for ts, data in events)]
    run = import_file(
        csv_path(tmp_path, "\n".join(lines) + "\n"), kind="events", event_name="Plan Purchased"
    )
    assert (run.status, run.rows_rejected) == ("done", 0)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_mapped_email_another_profile_holds_keeps_the_event(channel, tmp_path):
    EventPropertyMapping.objects.create(
        event_name="Plan Purchased", event_property="contact", profile_property="Email"
    )
    person_with_a_plan()
    ingest_records(
        [{"type": "profile", "identity": "u2", "profileData": {"Email": "taken@example.com"}}],
        actor=API,
    )
    send = by_csv_email if channel == "csv import" else CHANNELS[channel]
    send(
        tmp_path,
        [(TS, {"contact": "taken@example.com"}), (TS + 60, {"contact": "free@example.com"})],
    )
    emails = {
        identity: email
        for identity, email in Profile.objects.filter(identifiers__kind="identity").values_list(
            "identifiers__value", "email"
        )
    }
    assert emails == {"u1": "free@example.com", "u2": "taken@example.com"}
    assert sorted(Identifier.objects.filter(kind="email").values_list("value", flat=True)) == [
        "free@example.com",
        "taken@example.com",
    ]
    assert Event.objects.filter(name="Plan Purchased").count() == 2
    assert Profile.objects.get(identifiers__value="u1").event_count == 2


def new_person_by_api(**names: str) -> None:
    record = {"type": "profile", **names, "profileData": {"Name": "Ann", "Plan": "Gold"}}
    assert ingest_records([record], actor=API).refusals == {}


def new_person_by_csv(tmp_path) -> None:
    run = import_file(csv_path(tmp_path, "identity,Name,Plan\nu1,Ann,Gold\n"))
    assert (run.status, run.rows_rejected, run.profiles_created) == ("done", 0, 1)


NEW_PERSON_CHANNELS = {
    "api by identity": lambda tmp_path: new_person_by_api(identity="u1"),
    "api by FBID": lambda tmp_path: new_person_by_api(FBID="fb1"),
    "api by objectId": lambda tmp_path: new_person_by_api(objectId="device-1"),
    "api login (objectId and identity)": lambda tmp_path: new_person_by_api(
        objectId="device-1", identity="u1"
    ),
    "csv import": new_person_by_csv,
}


@pytest.mark.parametrize("channel", NEW_PERSON_CHANNELS)
def test_a_new_profile_has_one_created_row_in_its_history_whatever_the_channel(channel, tmp_path):
    NEW_PERSON_CHANNELS[channel](tmp_path)
    profile = Profile.objects.get()
    assert list(
        PropertyChange.objects.filter(profile=profile).values_list(
            "property", "old_value", "new_value"
        )
    ) == [("Profile created", None, {"Name": "Ann", "Plan": "Gold"})]


# One person's records of every shape, in one upload or one upload each: the
# store ends the same (the batch takes some set-based, some one by one, in order).
MIXED_RECORDS = [
    {"type": "profile", "FBID": "fb1", "profileData": {"Plan": "Silver"}, "ts": TS},
    {"type": "event", "FBID": "fb1", "evtName": "Viewed", "evtData": {"n": 1}, "ts": TS + 1},
    {"type": "profile", "objectId": "dev1", "profileData": {"Lang": "en"}, "ts": TS + 2},
    {"type": "event", "objectId": "dev1", "evtName": "Viewed", "evtData": {"n": 2}, "ts": TS + 3},
    {"type": "profile", "objectId": "dev1", "FBID": "fb1", "profileData": {"Name": "Ann"},
     "ts": TS + 4},
    {"type": "profile", "GPID": "gp1", "profileData": {"Plan": "Gold"}, "ts": TS + 5},
    {"type": "profile", "FBID": "fb1", "profileData": {"Plan": "Gold", "Email": "a@b.co"},
     "ts": TS + 6},
    {"type": "event", "GPID": "gp1", "evtName": "Viewed", "evtData": {"n": 3}, "ts": TS + 7},
]  # fmt: skip


@pytest.mark.parametrize("calls", ["one upload", "one upload per record"])
def test_one_persons_records_of_every_shape_leave_the_same_store_in_one_upload_or_many(calls):
    batches = [MIXED_RECORDS] if calls == "one upload" else [[r] for r in MIXED_RECORDS]
    for batch in batches:
        assert ingest_records(batch, actor=API).refusals == {}
    fb_person = Identifier.objects.get(kind="fbid", value="fb1").profile
    assert (fb_person.custom["Plan"], fb_person.name, fb_person.event_count) == ("Gold", "Ann", 1)
    # The login moved the device to the FBID person; its anonymous profile kept its history.
    assert fb_person.devices.get().object_id == "dev1"
    assert state() == {
        "profiles": [
            (False, 1, [("Lang", "en")], "", ""),
            (True, 1, [("Plan", "Gold")], "", ""),
            (True, 1, [("Plan", "Gold")], "a@b.co", ""),
        ],
        "identifiers": [("email", "a@b.co"), ("fbid", "fb1"), ("gpid", "gp1")],
        "events": [
            ("Viewed", {"n": 1}, TS + 1.0),
            ("Viewed", {"n": 2}, TS + 3.0),
            ("Viewed", {"n": 3}, TS + 7.0),
        ],
        "profile types": [("Lang", "string"), ("Plan", "string")],
        "history": [
            ("Profile created", None, {"Lang": "en"}),  # the anonymous profile
            ("Profile created", None, {"Plan": "Silver"}),  # the FBID person
            ("Name", "", "Ann"),
            ("Plan", "Silver", "Gold"),
            ("Email", "", "a@b.co"),
            ("Profile created", None, {"Plan": "Gold"}),  # the GPID person
        ],
    }
