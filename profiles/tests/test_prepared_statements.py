"""A small batch's statements run prepared (profiles.services.execute_prepared): planned
once a session, yet seen and failing as Django's own statements do, so the retry loop
and the query log work the same for them."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from profiles.models import Event, Source
from profiles.services import Actor, event_push, execute_prepared, profile_push, sqlstate_of
from profiles.tests.factories import identified_profile

API = Actor(source=Source.API)
pytestmark = pytest.mark.django_db


def prepared_runs(fragment: str) -> int:
    """How often this session ran its prepared statements containing `fragment`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements"
            " WHERE strpos(statement, %s) > 0",
            [fragment],
        )
        return cursor.fetchone()[0]


def test_a_single_event_is_stored_by_prepared_statements_and_read_back_as_stored():
    stores = prepared_runs("INSERT INTO profiles_event")
    reads = prepared_runs("LEFT JOIN LATERAL (SELECT * FROM profiles_event")
    profile, event = event_push(identifiers={"identity": "ann"}, name="Charged",
                                properties={"Amount": 12, "Item": "Tea"}, actor=API)  # fmt: skip
    assert event == Event.objects.get(profile=profile)
    assert event.properties == {"Amount": 12, "Item": "Tea"}
    assert prepared_runs("INSERT INTO profiles_event") == stores + 1
    assert prepared_runs("LEFT JOIN LATERAL (SELECT * FROM profiles_event") == reads + 1


def test_a_big_batch_is_planned_for_its_size_not_prepared():
    from profiles.bulk import FEW_STAGE_ROWS, BulkProfileRow, profiles_bulk_upsert

    count = FEW_STAGE_ROWS + 1
    rows = [
        BulkProfileRow(ref=n, key_kind="identity", key_value=f"p{n}", profile_data={"Plan": "Gold"})
        for n in range(count)
    ]
    inserts = prepared_runs("INSERT INTO profiles_profile")
    with transaction.atomic():
        assert profiles_bulk_upsert(rows, actor=API).profiles_created == count
    assert prepared_runs("INSERT INTO profiles_profile") == inserts


def test_prepared_statements_are_in_djangos_query_log():
    identified_profile("bob")
    with CaptureQueriesContext(connection) as queries:
        profile_push(identifiers={"identity": "bob"}, profile_data={"Plan": "Gold"}, actor=API)
    assert any(q["sql"].startswith("UPDATE profiles_profile p SET") for q in queries)


def test_a_failing_prepared_statement_raises_djangos_error_with_its_sqlstate():
    identified_profile("carol")
    insert = (
        "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
        " SELECT profile_id, kind, value, now() FROM profiles_identifier WHERE value = %s"
    )
    with (
        pytest.raises(IntegrityError) as raised,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        execute_prepared(cursor, insert, ["carol"])
    assert sqlstate_of(raised.value) == "23505"  # what the retry loop reads
