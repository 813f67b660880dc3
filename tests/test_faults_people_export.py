"""A Find People export whose worker is SIGKILLed mid-file: another worker and the
recovery sweep (config.jobs, as beat invokes it) finish it from its checkpoint, with
every person in the file exactly once."""

from __future__ import annotations

import csv
import io

import pytest

from imports.tests.csv_fixtures import ensure_role_groups, use_temporary_media
from profiles.exports import people_export_start
from profiles.ingest import ingest_records
from profiles.models import PeopleExport
from tests.test_faults import TEST_ACTOR, _recover_until, _wait, worker_processes  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _export_of_people(people: int, settings, tmp_path) -> PeopleExport:
    """`people` people named "Person n", and an export of them waiting for a worker."""
    ensure_role_groups()
    use_temporary_media(settings, tmp_path)
    result = ingest_records(
        [{"type": "profile", "identity": f"p{n}", "profileData": {"Name": f"Person {n}"}}
         for n in range(people)],
        actor=TEST_ACTOR,
    )  # fmt: skip
    assert not result.refusals
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("exporter", password="x")
    return people_export_start(filters={"q": "person"}, user=user)


def test_a_people_export_cut_off_by_a_killed_worker_resumes_and_finishes(
    worker_processes,  # noqa: F811 -- the fixture imported above
    settings,
    tmp_path,
):
    people = 1500
    export = _export_of_people(people, settings, tmp_path)

    first = worker_processes(PEOPLE_EXPORT_BATCH="3")
    _wait(
        lambda: PeopleExport.objects.get(pk=export.pk).rows_done >= 60,
        seconds=120,
        what="the first batches",
    )
    first.kill()
    cut = PeopleExport.objects.get(pk=export.pk)
    assert cut.status == "running" and cut.rows_done < people

    worker_processes(PEOPLE_EXPORT_BATCH="500")
    _recover_until(lambda: PeopleExport.objects.get(pk=export.pk).status in {"done", "failed"})

    export = PeopleExport.objects.get(pk=export.pk)
    assert export.status == "done", export.error
    assert export.attempts >= 2 and export.rows_done == people
    with export.file.open("rb") as handle:
        rows = list(csv.reader(io.StringIO(handle.read().decode("utf-8-sig"))))
    assert rows[0][0] == "CleverTap ID"
    names = [row[1] for row in rows[1:]]
    assert len(names) == people and set(names) == {f"Person {n}" for n in range(people)}


def test_a_people_export_stopped_by_a_stopping_worker_resumes_on_the_next_start(
    worker_processes,  # noqa: F811 -- the fixture imported above
    settings,
    tmp_path,
):
    people = 1500
    export = _export_of_people(people, settings, tmp_path)

    first = worker_processes(PEOPLE_EXPORT_BATCH="3")
    _wait(
        lambda: PeopleExport.objects.get(pk=export.pk).rows_done >= 60,
        seconds=120,
        what="the first batches",
    )
    assert first.terminate() == 0  # a warm shutdown, as make run stops its worker
    stopped = PeopleExport.objects.get(pk=export.pk)
    # Stopped at a batch boundary and handed back, not run to the end.
    assert stopped.status == "running" and stopped.rows_done < people

    worker_processes(PEOPLE_EXPORT_BATCH="500")  # no sweep: the task was queued again
    _wait(
        lambda: PeopleExport.objects.get(pk=export.pk).status in {"done", "failed"},
        seconds=120,
        what="the export after the restart",
    )
    export = PeopleExport.objects.get(pk=export.pk)
    assert export.status == "done", export.error
    assert export.rows_done == people
    with export.file.open("rb") as handle:
        rows = list(csv.reader(io.StringIO(handle.read().decode("utf-8-sig"))))
    names = [row[1] for row in rows[1:]]
    assert len(names) == people and set(names) == {f"Person {n}" for n in range(people)}
