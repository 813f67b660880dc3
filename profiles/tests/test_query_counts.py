"""Set-based ingest, pinned: the statements an upload costs do not grow with its records.

The REST upload, the SDK endpoint's drain and imports hand ingest_records batches of
up to 1000 records; a batch of 200 must cost what a batch of 10 costs."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.ingest import ingest_records
from profiles.models import EventPropertyMapping, Source
from profiles.services import Actor

SDK = Actor(source=Source.SDK)
pytestmark = pytest.mark.django_db


def statements(records: list[dict]) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert ingest_records(records, actor=SDK).refusals == {}
    return len(queries)


def device(n: int, batch: str) -> str:
    return f"__{batch}{n:0{31 - len(batch)}d}"


def profiles(count: int, batch: str) -> list[dict]:
    return [{"type": "profile", "identity": f"{batch}-{n}", "profileData": {"Plan": "Gold",
             "Name": f"N{n}", "Email": f"{batch}{n}@x.co"}} for n in range(count)]  # fmt: skip


def events(count: int, batch: str, **named) -> list[dict]:
    return [{"type": "event", **(named or {"objectId": device(n, batch)}), "evtName": "Viewed",
             "evtData": {"page": n}} for n in range(count)]  # fmt: skip


def logins(count: int, batch: str) -> list[dict]:
    return [{"type": "profile", "objectId": device(n, batch),
             "profileData": {"Identity": f"{batch}-{n}"}} for n in range(count)]  # fmt: skip


@pytest.mark.parametrize(
    "shape",
    ["new people", "known people", "events from new devices", "events from known devices",
     "mapped events", "logins on anonymous devices", "logins on new devices"],
)  # fmt: skip
def test_a_batch_of_200_costs_the_statements_of_a_batch_of_10(shape):
    def batch(count: int, name: str) -> list[dict]:
        if shape == "new people":
            return profiles(count, name)
        if shape == "known people":
            ingest_records(profiles(count, name), actor=SDK)
            return [{**r, "profileData": {"Plan": "Silver"}} for r in profiles(count, name)]
        if shape in ("events from known devices", "logins on anonymous devices"):
            ingest_records(events(count, name), actor=SDK)
        if shape == "mapped events":
            EventPropertyMapping.objects.get_or_create(
                event_name="Viewed", event_property="page", profile_property="Page"
            )
        if shape.startswith("logins"):
            return logins(count, name)
        return events(count, name)

    statements(batch(3, "w"))  # new property types and event names, once
    assert statements(batch(200, "b")) == statements(batch(10, "a"))
