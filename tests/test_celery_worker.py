"""A CSV uploaded in the dashboard is imported by a REAL Celery worker through the
REAL Redis broker (nothing eager): the page's upload -> mapping -> queued task ->
worker -> totals."""

from __future__ import annotations

import pytest

from imports.models import ImportRun
from imports.tests.csv_fixtures import ensure_role_groups, use_temporary_media, wait_for_run
from profiles.models import Event, Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _setup(transactional_db, settings, tmp_path) -> None:
    ensure_role_groups()  # a transactional test elsewhere may have flushed them
    use_temporary_media(settings, tmp_path)


def test_an_uploaded_profiles_file_is_imported_by_the_worker(
    celery_worker_real, importer_client, tmp_path
):
    path = tmp_path / "people.csv"
    path.write_bytes(b"identity,Name,Plan\r\nw1,Ann,gold\r\nw2,Bob,free\r\nw3,,\r\nw1,Ann B,\r\n")
    with path.open("rb") as handle:
        response = importer_client.post("/imports/", {"kind": "profiles", "file": handle})
    run = ImportRun.objects.get()
    assert response["Location"] == f"/imports/{run.pk}/mapping/"

    mapping = {"role_0": "identity", "role_1": "property", "role_2": "property",
               "type_2": "string"}  # fmt: skip
    response = importer_client.post(f"/imports/{run.pk}/mapping/", mapping)
    assert response["Location"] == f"/imports/{run.pk}/"

    run = wait_for_run(run.pk)
    assert run.status == "done", run.error
    assert (run.rows_done, run.profiles_created, run.rows_rejected) == (4, 3, 0)
    assert Profile.objects.get(identifiers__value="w1").name == "Ann B"  # the last row wins
    poll = importer_client.get(f"/imports/{run.pk}/", headers={"HX-Request": "true"})
    assert poll.status_code == 286 and 'data-total="created">3<' in poll.content.decode()


def test_an_uploaded_events_file_is_imported_by_the_worker(
    celery_worker_real, importer_client, tmp_path
):
    path = tmp_path / "charged.csv"
    path.write_bytes(b"identity;ts;Amount\nw1;1700000000;10\nw1;1700000060;12.5\n")
    with path.open("rb") as handle:
        importer_client.post(
            "/imports/", {"kind": "events", "event_name": "Charged", "file": handle}
        )
    run = ImportRun.objects.get()
    importer_client.post(
        f"/imports/{run.pk}/mapping/",
        {"role_0": "identity", "role_1": "ts", "role_2": "property", "type_2": "float"},
    )
    run = wait_for_run(run.pk)
    assert (run.status, run.events_stored, run.profiles_created) == ("done", 2, 1)
    assert sorted(Event.objects.values_list("properties__Amount", flat=True)) == [10, 12.5]
