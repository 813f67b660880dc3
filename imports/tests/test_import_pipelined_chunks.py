"""Chunks in flight side by side: outside a transaction an import plans one chunk
while the chunk before it is still writing (two connections). These tests run
committed (transaction=True), as a worker does, so the pipeline is what runs;
the other import tests run inside a test transaction, one chunk after the other.
"""

import functools
import threading
import time

import pytest

from imports.models import ImportRejectedRow
from imports.services import PIPELINE_DEPTH
from imports.tests.csv_fixtures import csv_path, import_file, use_temporary_media
from profiles.models import Identifier, Profile, PropertyChange

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.IMPORT_CHUNK_ROWS = 2
    return use_temporary_media(settings, tmp_path)


@pytest.fixture
def write_csv(tmp_path):
    return functools.partial(csv_path, tmp_path)


@pytest.fixture
def chunk_threads(monkeypatch):
    """The names of the threads that imported chunks (proof the pipeline ran)."""
    from imports import services

    names: set[str] = set()
    original = services._chunk_import

    def recording(*args, **kwargs):
        names.add(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "_chunk_import", recording)
    return names


@pytest.fixture
def slow_writes(monkeypatch):
    """Each chunk takes a while to write, so the next one surely reads and plans
    before it commits (the case the pipeline must get right)."""
    from profiles import bulk

    original = bulk._profiles_apply

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(bulk, "_profiles_apply", slow)


def holder(kind: str, value: str) -> str:
    identifier = Identifier.objects.select_related("profile").get(kind=kind, value=value)
    return identifier.profile.identifiers.get(kind="identity").value


def test_rows_about_one_person_in_consecutive_chunks_apply_in_file_order(
    write_csv, chunk_threads, slow_writes
):
    # u1 is created by chunk 1 and updated by chunks 2 and 3, each planned while
    # the chunk before it had not committed yet.
    path = write_csv(
        "identity,Name,Plan\nu1,First,free\nu2,Other,\nu1,Second,\nu3,Third,\nu1,Last,gold\n"
    )
    run = import_file(path)
    assert (run.status, run.rows_done, run.rows_rejected) == ("done", 5, 0)
    assert (run.profiles_created, run.profiles_updated) == (3, 2)
    assert len(chunk_threads) == PIPELINE_DEPTH
    assert Profile.objects.count() == 3
    person = Profile.objects.get(identifiers__kind="identity", identifiers__value="u1")
    assert (person.name, person.custom) == ("Last", {"Plan": "gold"})
    # Each change saw the value the row before it left (never a stale read).
    assert list(
        PropertyChange.objects.filter(profile=person).order_by("id").values_list(
            "property", "old_value", "new_value"
        )
    ) == [("Profile created", None, {"Name": "First", "Plan": "free"}),
          ("Name", "First", "Second"), ("Name", "Second", "Last"),
          ("Plan", "free", "gold")]  # fmt: skip


def test_an_email_given_up_in_one_chunk_can_be_taken_in_the_next(
    write_csv, chunk_threads, slow_writes
):
    # Chunk 2 moves Ann to a new address; chunk 3 (planned before chunk 2 committed,
    # when ann@ still looked taken) gives the old one to Bea. In file order that is
    # allowed, so it must not be refused as "belongs to another profile".
    path = write_csv(
        "identity,Email\nann,ann@example.com\nbea,bea@example.com\n"
        "ann,ann.new@example.com\nx,\nbea,ann@example.com\ny,\n"
    )
    run = import_file(path)
    assert (run.status, run.rows_rejected) == ("done", 0), list(
        ImportRejectedRow.objects.values_list("reason", flat=True)
    )
    assert len(chunk_threads) == PIPELINE_DEPTH
    assert holder("email", "ann.new@example.com") == "ann"
    assert holder("email", "ann@example.com") == "bea"
    assert not Identifier.objects.filter(value="bea@example.com").exists()


def test_an_email_taken_in_one_chunk_is_refused_in_the_next(write_csv, slow_writes):
    path = write_csv("identity,Email\nann,a@example.com\nx,\nbea,a@example.com\n")
    run = import_file(path)
    assert (run.status, run.rows_rejected) == ("done", 1)
    refusal = ImportRejectedRow.objects.get()
    assert (refusal.row_number, refusal.column) == (4, "Email")
    assert "belongs to another profile" in refusal.reason
    assert holder("email", "a@example.com") == "ann"


def test_events_in_consecutive_chunks_create_one_profile_per_person(
    write_csv, chunk_threads, slow_writes
):
    rows = "".join(f"p{n % 3},{1700000000 + n}\n" for n in range(9))
    run = import_file(write_csv("identity,ts\n" + rows), kind="events", event_name="Opened")
    assert (run.status, run.events_stored, run.rows_rejected) == ("done", 9, 0)
    assert len(chunk_threads) == PIPELINE_DEPTH
    assert sorted(Profile.objects.values_list("event_count", flat=True)) == [3, 3, 3]


def _other_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_import_closes_the_connections_it_opened(write_csv, chunk_threads):
    run = import_file(write_csv("identity,Name\n" + "".join(f"u{n},N\n" for n in range(7))))
    assert (run.status, run.profiles_created) == ("done", 7)
    assert len(chunk_threads) == PIPELINE_DEPTH
    deadline = time.monotonic() + 10  # a closed connection's server process exits soon after
    while (others := _other_connections()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert others == 0


@pytest.fixture
def reader_process(settings, monkeypatch):
    """Chunks are read and checked in the reader process (as a big file's are)."""
    from imports import services

    settings.IMPORT_READER_PROCESS_MIN_ROWS = 0
    started: list[bool] = []
    original = services._reader_process

    def recording():
        started.append(True)
        return original()

    monkeypatch.setattr(services, "_reader_process", recording)
    return started


def test_one_person_in_many_chunks_read_in_another_process_ends_as_the_last_row(
    write_csv, chunk_threads, slow_writes, reader_process
):
    # u1 has a row in nearly every chunk (2 rows each), between other people; it is read
    # in the reader process while earlier chunks write: the last row in file order wins.
    rows = []
    for n in range(12):
        rows.append(f"u1,Name {n},+4420794600{n:02d},{n}\n")
        rows.append(f"p{n},Other {n},,\n")
    rows.append("u2,Bad,not a phone,x\n")
    run = import_file(write_csv("identity,Name,Phone,Visits<Integer>\n" + "".join(rows)))
    assert reader_process and len(chunk_threads) == PIPELINE_DEPTH
    assert (run.status, run.rows_done, run.profiles_created) == ("done", 25, 13)
    person = Profile.objects.get(identifiers__kind="identity", identifiers__value="u1")
    assert (person.name, person.phone, person.custom) == (
        "Name 11",
        "+442079460011",
        {"Visits": 11},
    )
    assert holder("phone", "+442079460011") == "u1"
    assert Identifier.objects.filter(profile=person, kind="phone").count() == 1
    assert list(
        PropertyChange.objects.filter(profile=person, property="Name")
        .order_by("id").values_list("new_value", flat=True)
    ) == [f"Name {n}" for n in range(1, 12)]  # fmt: skip
    # A row refused while reading (in the other process) reports all its problems.
    refusal = ImportRejectedRow.objects.get()
    assert (refusal.row_number, refusal.column) == (26, "Phone · Visits<Integer>")
    assert "Phone is not valid." in refusal.reason and "'x' is not a whole number" in refusal.reason
