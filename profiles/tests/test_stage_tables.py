"""The staging tables every set-based write goes through (profiles.bulk).

Each connection creates its temporary staging tables once (and analyzes them empty, so
the planner sizes them by what a batch put in them); later batches only empty them. A
rolled-back transaction takes tables it created with it: the next batch must create
them again, not fail on a missing table."""

import pytest
from django.db import connection, transaction

from profiles.ingest import ingest_records
from profiles.models import Event, Profile, Source
from profiles.services import Actor

SDK = Actor(source=Source.SDK)
pytestmark = pytest.mark.django_db(transaction=True)


def device(n: int) -> str:
    return f"__{n:032d}"


def event(n: int) -> dict:
    return {"type": "event", "objectId": device(n), "evtName": "Viewed", "evtData": {"n": n}}


def stored(records: list[dict]) -> None:
    assert ingest_records(records, actor=SDK).refusals == {}


def stage_tables_exist() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('pg_temp.bulk_event_stage') IS NOT NULL")
        return cursor.fetchone()[0]


def test_a_rolled_back_first_batch_takes_the_tables_and_the_next_batch_makes_them_again():
    with transaction.atomic():
        stored([event(1)])
        transaction.set_rollback(True)
    assert not stage_tables_exist()  # gone with the transaction that made them
    stored([event(2)])  # creates them again, and a commit keeps them
    assert stage_tables_exist()
    stored([event(3)])  # reuses them
    with transaction.atomic():  # two batches in one transaction: the second empties them
        stored([event(4)])
        stored([event(5)])
    connection.close()
    stored([event(6)])  # a new connection has none yet
    assert sorted(Event.objects.values_list("properties__n", flat=True)) == [2, 3, 4, 5, 6]
    assert Profile.objects.count() == 5
