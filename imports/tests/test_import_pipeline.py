"""The CSV import pipeline on real files and real PostgreSQL."""

import functools
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from conftest import test_database_url
from imports.models import ImportRun
from imports.services import import_run_execute, import_run_start
from imports.tests.csv_fixtures import csv_path, import_file, use_temporary_media
from profiles.models import Device, Event, Identifier, Profile, PropertyChange, PropertyDefinition
from profiles.properties import RecordError
from profiles.services import Actor, profile_push
from profiles.tests.factories import identified_profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    return use_temporary_media(settings, tmp_path)


@pytest.fixture
def write_csv(tmp_path):
    return functools.partial(csv_path, tmp_path)


@pytest.fixture
def run_file():
    return import_file


def profile(identity: str) -> Profile:
    return Profile.objects.get(identifiers__kind="identity", identifiers__value=identity)


def rejected(run: ImportRun) -> list[tuple[int, str, str, int, str]]:
    return list(
        run.rejected_rows.order_by("row_number").values_list(
            "row_number", "column", "value", "code", "reason"
        )
    )


def test_excel_style_file_with_bom_crlf_quoted_newlines_and_blank_lines(write_csv, run_file):
    path = write_csv(
        b"\xef\xbb\xbfidentity,Name,Email,Address,Score<Float>,Tags<String[]>,"
        b"Joined<dd/MM/yyyy HH:mm:ss>\r\n"
        b'u1,"Smith, Ann",ANN@example.com,"1 Main St\r\nSpringfield",4.5,"vip,beta",25/12/2023\r\n'
        b"\r\n"
        b",,,,,,\r\n"
        b"u2,Bob,,,3,,\r\n"
    )
    run = run_file(path)
    assert (run.status, run.rows_total, run.rows_done) == ("done", 2, 2)
    assert (run.profiles_created, run.profiles_updated, run.rows_rejected) == (2, 0, 0)
    ann = profile("u1")
    assert ann.identified and ann.name == "Smith, Ann" and ann.email == "ann@example.com"
    assert ann.custom == {
        "Address": "1 Main St\r\nSpringfield", "Score": 4.5, "Tags": ["vip", "beta"],
        "Joined": "2023-12-25T12:00:00Z",
    }  # fmt: skip
    assert Identifier.objects.filter(profile=ann, kind="email", value="ann@example.com").exists()
    assert dict(PropertyDefinition.objects.filter(scope="profile").values_list("name", "type")) == {
        "Address": "string", "Score": "number", "Tags": "list", "Joined": "date",
    }  # fmt: skip
    created = PropertyChange.objects.get(profile=ann, source="csv")
    assert created.property == "Profile created" and created.new_value["Name"] == "Smith, Ann"
    assert created.actor_label == "import: upload.csv"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_separated_files(write_csv, run_file, delimiter):
    path = write_csv(
        f"identity{delimiter}City{delimiter}Gender\nu1{delimiter}Paris, FR{delimiter}F\n"
    )
    run = run_file(path)
    assert run.status == "done" and run.delimiter == delimiter
    person = profile("u1")
    assert person.custom == {"City": "Paris, FR"} and person.gender == "F"


def test_extra_and_missing_columns_are_reported_per_row_and_good_rows_kept(write_csv, run_file):
    path = write_csv("identity,Name,City\nu1,Ann,Paris\nu2,Bob,Rome,EXTRA\nu3,Cy\nu4,Di,Oslo\n")
    run = run_file(path)
    assert (run.status, run.profiles_created, run.rows_rejected) == ("done", 2, 2)
    assert rejected(run) == [
        (3, "", "EXTRA", 555, "The row has 4 values but the header names 3 columns."),
        (4, "City", "", 555,
         "The row has 2 values but the header names 3 columns (no value for 'City')."),
    ]  # fmt: skip
    assert {p.name for p in Profile.objects.all()} == {"Ann", "Di"}


def test_duplicate_identities_in_one_file_the_last_row_wins(write_csv, run_file, settings):
    settings.IMPORT_CHUNK_ROWS = 2  # the duplicates straddle two chunks too
    path = write_csv("identity,Name,Plan\nu1,First,free\nu2,Other,\nu1,Second,\nu1,Third,gold\n")
    run = run_file(path)
    assert (run.status, run.rows_rejected) == ("done", 0)
    assert Profile.objects.count() == 2
    person = profile("u1")
    assert person.name == "Third" and person.custom == {"Plan": "gold"}
    # Chunk 1 created u1 with "First"; chunk 2 applied "Second", then "Third".
    assert list(
        PropertyChange.objects.filter(profile=person).order_by("id").values_list(
            "property", "new_value"
        )
    ) == [("Profile created", {"Name": "First", "Plan": "free"}), ("Name", "Second"),
          ("Name", "Third"), ("Plan", "gold")]  # fmt: skip


def test_leading_formula_characters_are_imported_as_data_and_neutralised_in_exports(
    write_csv, run_file
):
    path = write_csv(
        "identity,Name,Note,Phone\nu1,=1+1,@SUM(A1),+14155552671\n"
        'u2,-5 degrees,"=HYPERLINK(""x"")",not-a-phone\n'
    )
    run = run_file(path)
    assert run.rows_rejected == 1
    person = profile("u1")
    assert person.name == "=1+1" and person.custom == {"Note": "@SUM(A1)"}
    assert person.phone == "+14155552671"
    report = run.rejected_rows_csv().decode("utf-8-sig").splitlines()
    assert report[0] == "Error row,Error column,Error value,Error reason,identity,Name,Note,Phone"
    assert report[1] == (
        "2,Phone,not-a-phone,Profile data is incorrect. Phone is not valid.,"
        'u2,\'-5 degrees,"\'=HYPERLINK(""x"")",not-a-phone'
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it looks like a PNG image"),
        (b"\x00\x10\x00binary\x00\xff", "not a text file"),
        (b"identity,Name\nu1,Andr\xe9\n", "not UTF-8 text"),
    ],
)
def test_binary_and_non_utf8_files_fail_with_a_clear_error(write_csv, run_file, content, message):
    run = run_file(write_csv(content))
    assert run.status == "failed" and message in run.error
    assert Profile.objects.count() == 0


def test_text_that_is_not_a_profile_csv_fails_with_the_reason(write_csv, run_file):
    run = run_file(write_csv('{"d": [{"identity": "u1", "type": "profile"}]}\n', "data.json"))
    assert run.status == "failed"
    assert "Choose the column that names the person" in run.error
    assert "contains characters not allowed" in run.error
    assert Profile.objects.count() == 0


def test_starting_a_run_whose_mapping_cannot_import_fails_it(write_csv):
    from django.core.files import File

    from imports.services import import_run_create

    path = write_csv("name,city\nAnn,Paris\n")
    with path.open("rb") as handle:
        run = import_run_create(kind="profiles", file_name="x.csv", content=File(handle, "x.csv"))
    assert run.status == "pending"
    import_run_start(import_run=run)
    assert run.status == "failed" and "names the person" in run.error


def test_rejected_rows_carry_the_api_codes_and_messages(write_csv, run_file):
    identified_profile("holder", email="")
    Identifier.objects.create(profile=profile("holder"), kind="email", value="taken@example.com")
    path = write_csv(
        "identity,Email,Gender,Education,Visits<Integer>\n"
        "u1,not-an-email,,,\n"
        "u2,,X,,\n"
        "u3,,,Kindergarten,\n"
        "u4,taken@example.com,,,\n"
        "u5,,,,many\n"
        ",,F,,\n"
        "u7,,,,\n"
        "u8,ok@example.com,M,College,3\n"
    )
    run = run_file(path)
    assert rejected(run) == [
        (2, "Email", "not-an-email", 515, "Profile data is incorrect. Email is not valid."),
        (3, "Gender", "X", 514, "Profile data is incorrect. Gender needs to be M/F."),
        (4, "Education", "Kindergarten", 518,
         "Profile data is incorrect. Education needs to be School/College/Graduate."),
        (5, "Email", "taken@example.com", 555,
         "Email 'taken@example.com' belongs to another profile; profiles are never merged."),
        (6, "Visits<Integer>", "many", 555, "Value of 'Visits': 'many' is not a whole number."),
        (7, "identity", "", 523, "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary"
         " under 120 chars to identify the user."),
    ]  # fmt: skip
    assert run.profiles_created == 2  # u7 and u8
    # The same record through the API's service gives the same code and message.
    with pytest.raises(RecordError) as caught:
        profile_push(identifiers={"identity": "u1"}, profile_data={"Email": "not-an-email"},
                     actor=Actor(source="api"))  # fmt: skip
    assert (caught.value.code, caught.value.message) == rejected(run)[0][3:]


def test_a_row_reports_all_its_errors_at_once(write_csv, run_file):
    path = write_csv(
        "identity,Email,Phone,Gender,Score<Float>\n"
        "u1,not-an-email,12,X,high\n"
        "u2,ok@example.com,+14155550123,F,1.5\n"
    )
    run = run_file(path)
    assert (run.rows_rejected, run.profiles_created) == (1, 1)
    [(row, column, value, code, reason)] = rejected(run)
    assert (row, column, value, code) == (2, "Email · Phone · Gender · Score<Float>",
                                          "not-an-email · 12 · X · high", 515)  # fmt: skip
    assert reason.split(" · ") == [
        "Profile data is incorrect. Email is not valid.",
        "Profile data is incorrect. Phone is not valid.",
        "Profile data is incorrect. Gender needs to be M/F.",
        "Value of 'Score': 'high' is not a number.",
    ]
    assert not Identifier.objects.filter(value="u1").exists()  # nothing of it was written


def test_a_property_keeps_its_first_type(write_csv, run_file):
    PropertyDefinition.objects.create(scope="profile", name="Score", type="number")
    run = run_file(write_csv("identity,Score\nu1,12\n"))
    assert profile("u1").custom == {"Score": 12}  # detected from the recorded type
    path = write_csv("identity,Score\nu2,high\n", "second.csv")
    run = run_file(path, mapping={"columns": [{"role": "identity", "type": ""},
                                              {"role": "property", "type": "string"}]})  # fmt: skip
    assert rejected(run) == [
        (2, "Score", "high", 555, "Property 'Score' holds a number; refused a string.")
    ]


def test_reimporting_the_same_profiles_changes_nothing(write_csv, run_file):
    path = write_csv("identity,Name,Tags<String[]>\nu1,Ann,a\nu2,Bob,b\n")
    first = run_file(path)
    changes = PropertyChange.objects.count()
    second = run_file(path)
    assert (first.profiles_created, second.profiles_created, second.profiles_updated) == (2, 0, 0)
    assert PropertyChange.objects.count() == changes
    assert Profile.objects.count() == 2


def test_reimporting_the_same_events_stores_no_duplicates(write_csv, run_file):
    existing = identified_profile("u1", first_seen=None, last_seen=None)
    path = write_csv(
        "identity,ts,Amount,Plan\nu1,1700000000,10,gold\nnew-person,1700000100,5.5,free\n"
        "u1,1700000200,10,gold\nu1,yesterday,1,x\n"
    )
    first = run_file(path, kind="events", event_name="Charged")
    assert (first.events_stored, first.profiles_created, first.rows_rejected) == (3, 1, 1)
    assert rejected(first) == [
        (5, "ts", "yesterday", 525, "Timestamp should be present in the Unix Epoch format.")
    ]
    second = run_file(path, kind="events", event_name="Charged")
    assert (second.status, second.events_stored, second.profiles_created) == ("done", 0, 0)
    assert Event.objects.count() == 3
    existing.refresh_from_db()
    assert existing.event_count == 2
    assert existing.first_seen.timestamp() == 1700000000
    assert existing.last_seen.timestamp() == 1700000200
    event = Event.objects.get(profile=existing, ts__second=20)
    assert event.properties == {"Amount": 10, "Plan": "gold"} and event.source == "csv"
    assert event.client_event_id.startswith("csv:")


def test_events_by_object_id_create_anonymous_profiles_with_their_device(write_csv, run_file):
    known = Device.objects.create(object_id="__" + "a" * 32, profile=identified_profile("u1"))
    path = write_csv(f"objectId,ts\n{known.object_id}\t,1700000000\n__{'b' * 32},1700000000\n")
    run = run_file(path, kind="events", event_name="Viewed")
    assert (run.events_stored, run.profiles_created, run.rows_rejected) == (2, 1, 0)
    new_device = Device.objects.get(object_id="__" + "b" * 32)
    assert not new_device.profile.identified
    assert Event.objects.get(profile=known.profile).device == known


def test_an_unknown_event_name_fails_the_run(write_csv, run_file):
    run = run_file(write_csv("identity\nu1\n"), kind="events", event_name="App Launched")
    assert run.status == "failed"
    assert run.error == "'App Launched' is a restricted system event name."


def test_import_csv_command_prints_the_summary(write_csv, tmp_path):
    path = write_csv("identity,Name,Gender\nu1,Ann,F\nu2,Bob,X\n")
    out = io.StringIO()
    report = tmp_path / "rejected.csv"
    call_command("import_csv", str(path), "--rejected-out", str(report), stdout=out)
    run = ImportRun.objects.get()
    assert out.getvalue().splitlines() == [
        f"import {run.pk} done: 2 rows, 1 profiles created, 0 updated, 0 events stored, "
        "1 rows rejected",
        f"rejected rows: 1, in the dashboard at /imports/{run.pk}/rejected.csv",
        f"rejected rows written to {report}",
    ]
    assert "Gender needs to be M/F." in report.read_text(encoding="utf-8-sig")
    assert run.origin == "cli"


def test_import_csv_command_for_events(write_csv):
    path = write_csv("identity,ts\nu1,1700000000\n")
    out = io.StringIO()
    call_command("import_csv", str(path), "--events", "--event-name", "Signed Up", stdout=out)
    assert "1 events stored" in out.getvalue()
    assert Event.objects.get().name == "Signed Up"


# --- a worker killed mid-file ------------------------------------------------------------

KILLER = """
import os, signal, sys, threading
import django
django.setup()
from django.conf import settings
import imports.services as pipeline
settings.IMPORT_CHUNK_ROWS = 3
if sys.argv[3] == "reader-process":  # chunks read in a process of their own (big files)
    settings.IMPORT_READER_PROCESS_MIN_ROWS = 0
settings.STORAGES = {**settings.STORAGES, "default": {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": sys.argv[2]},
}}


# The worker dies right after its first chunk committed, before the next may write.
class DiesOnceItsChunkCommitted(pipeline._Turn):

    def __init__(self):
        super().__init__()
        turn = self

        class Done(threading.Event):
            def set(self):
                if turn.committed:
                    os.kill(os.getpid(), signal.SIGKILL)
                super().set()

        self.done = Done()


pipeline._Turn = DiesOnceItsChunkCommitted
pipeline.import_run_execute(import_run_id=int(sys.argv[1]))
"""


def _worker_killed_after_first_chunk(
    run: ImportRun, media: Path, reading: str
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(run.pk), str(media), reading],
        env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=120,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "kind,reading",
    [("profiles", "in-process"), ("events", "in-process"), ("profiles", "reader-process")],
)
def test_a_worker_killed_mid_import_resumes_without_duplicates(
    write_csv, settings, media, kind, reading
):
    from django.core.files import File

    from imports.services import import_run_create

    rows = "".join(f"u{n},{1700000000 + n},Name {n},{n}\n" for n in range(10))
    path = write_csv("identity,ts,Name,Visits<Integer>\n" + rows)
    with path.open("rb") as handle:
        run = import_run_create(kind=kind, file_name=path.name, content=File(handle, path.name),
                                event_name="Visited" if kind == "events" else "")  # fmt: skip
    run.status = "queued"
    run.save()

    killed = _worker_killed_after_first_chunk(run, media, reading)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    run.refresh_from_db()
    assert (run.status, run.rows_done, run.last_committed_row) == ("running", 3, 4)

    # The run's heartbeat is fresh: a second delivery leaves it to its (dead) worker...
    assert import_run_execute(import_run_id=run.pk).status == "running"
    # ...until the heartbeat is stale; then it resumes after the checkpoint.
    settings.IMPORT_HEARTBEAT_STALE_SECONDS = 0
    settings.IMPORT_CHUNK_ROWS = 3
    run = import_run_execute(import_run_id=run.pk)
    assert (run.status, run.rows_done, run.rows_rejected, run.attempts) == ("done", 10, 0, 2)
    assert run.profiles_created == 10
    assert Profile.objects.count() == 10
    assert Identifier.objects.filter(kind="identity").count() == 10
    if kind == "events":
        assert run.events_stored == 10
        assert Event.objects.count() == 10
        assert sorted(Profile.objects.values_list("event_count", flat=True)) == [1] * 10
    else:
        # Every property change was recorded exactly once.
        assert PropertyChange.objects.filter(property="Profile created").count() == 10
    # Running it again does nothing.
    assert import_run_execute(import_run_id=run.pk).rows_done == 10


def test_the_task_is_idempotent_and_waits_for_a_live_worker(write_csv, run_file):
    from celery.exceptions import Retry

    from imports.tasks import import_run_task

    run = run_file(write_csv("identity,Name\nu1,Ann\n"))
    assert import_run_task.apply(args=[run.pk]).get() == "done: 1 rows, 0 rejected"
    assert Profile.objects.count() == 1

    ImportRun.objects.filter(pk=run.pk).update(status="running")  # held by a live worker
    with pytest.raises(Retry):  # looked at again once its heartbeat could be stale
        import_run_task(run.pk)
    run.refresh_from_db()
    assert (run.status, run.rows_done) == ("running", 1)
