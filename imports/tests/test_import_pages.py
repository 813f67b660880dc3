"""The import pages: three people each, htmx with and without HX-Request."""

import functools

import pytest
from django.urls import reverse

from imports.models import ImportRun, ImportStatus
from imports.services import import_run_create, import_run_execute
from imports.tests.csv_fixtures import csv_path, ensure_role_groups, use_temporary_media

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path) -> None:
    ensure_role_groups()  # a transactional test elsewhere may have flushed them
    use_temporary_media(settings, tmp_path)


@pytest.fixture
def write_csv(tmp_path):
    return functools.partial(csv_path, tmp_path)


PROFILES_CSV = "identity,Name,Score\nu1,Ann,1.5\nu2,=Bob,x\n"


@pytest.fixture
def run(importer) -> ImportRun:
    return import_run_create(kind="profiles", file_name="people.csv",
                             content=PROFILES_CSV.encode(), uploaded_by=importer)  # fmt: skip


@pytest.fixture
def finished_run(run) -> ImportRun:
    run.mapping["columns"][2]["type"] = "float"
    run.save()
    return import_run_execute(import_run_id=run.pk)


def assert_login_redirect(response):
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- upload and history -------------------------------------------------------------------


def test_importer_sees_history_and_upload_form(importer_client, finished_run):
    response = importer_client.get(reverse("imports:list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Upload a CSV file" in html and "the last row wins" in html
    assert "people.csv" in html and "importer" in html and "Done" in html


def test_history_needs_the_permission(marketer_client, outsider_client, anonymous_client):
    assert marketer_client.get(reverse("imports:list")).status_code == 403
    assert outsider_client.get(reverse("imports:list")).status_code == 403
    assert_login_redirect(anonymous_client.get(reverse("imports:list")))


def test_history_query_count_does_not_grow_with_runs(importer_client, importer,
                                                     django_assert_num_queries):  # fmt: skip
    for n in range(30):
        import_run_create(kind="profiles", file_name=f"f{n}.csv", content=b"identity\nu1\n",
                          uploaded_by=importer)  # fmt: skip
    with django_assert_num_queries(5):  # session, user, 2 permission lookups, the page
        response = importer_client.get(reverse("imports:list"))
    assert response.content.decode().count("<tr") == 26  # header + 25 rows per page


def test_upload_goes_to_the_mapping_page(importer_client, write_csv):
    path = write_csv(PROFILES_CSV, "people.csv")
    with path.open("rb") as handle:
        response = importer_client.post(reverse("imports:list"),
                                        {"kind": "profiles", "file": handle})  # fmt: skip
    run = ImportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{run.pk}/mapping/"
    assert (run.status, run.uploaded_by.username, run.origin) == ("pending", "importer", "web")
    assert run.rows_total == 2


def test_superuser_can_upload(superuser, client, write_csv):
    client.force_login(superuser)
    with write_csv(PROFILES_CSV).open("rb") as handle:
        response = client.post(reverse("imports:list"), {"kind": "profiles", "file": handle})
    assert response.status_code == 302


def test_upload_needs_the_permission(marketer_client, outsider_client, anonymous_client,
                                     write_csv):  # fmt: skip
    path = write_csv(PROFILES_CSV)
    for client in (marketer_client, outsider_client):
        with path.open("rb") as handle:
            response = client.post(reverse("imports:list"), {"kind": "profiles", "file": handle})
        assert response.status_code == 403
    with path.open("rb") as handle:
        assert_login_redirect(
            anonymous_client.post(reverse("imports:list"), {"kind": "profiles", "file": handle})
        )
    assert not ImportRun.objects.exists()


def test_a_file_over_the_size_limit_gets_a_clear_message(importer_client, write_csv, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 20
    with write_csv(PROFILES_CSV).open("rb") as handle:
        response = importer_client.post(reverse("imports:list"),
                                        {"kind": "profiles", "file": handle})  # fmt: skip
    assert response.status_code == 400
    html = response.content.decode()
    assert "This file is 41\xa0bytes; files up to 20\xa0bytes can be uploaded." in html
    assert not ImportRun.objects.exists()


def test_a_binary_file_is_refused_with_the_reason(importer_client, write_csv):
    with write_csv(b"PK\x03\x04\x00\x00binary", "book.xlsx").open("rb") as handle:
        response = importer_client.post(reverse("imports:list"),
                                        {"kind": "profiles", "file": handle})  # fmt: skip
    assert response.status_code == 400
    assert "it looks like an Excel workbook" in response.content.decode()


def test_events_need_a_valid_event_name(importer_client, write_csv):
    with write_csv("identity\nu1\n").open("rb") as handle:
        response = importer_client.post(
            reverse("imports:list"), {"kind": "events", "event_name": "", "file": handle}
        )
    assert response.status_code == 400 and "Event name is mandatory." in response.content.decode()


# --- mapping --------------------------------------------------------------------------------


def test_mapping_page_previews_rows_and_detected_types(importer_client, run):
    response = importer_client.get(reverse("imports:mapping", args=[run.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "=Bob" in html and "Text" in html
    assert 'name="role_0"' in html and 'name="type_2"' in html


# In a test transaction: the on-commit callbacks are captured, not run.
@pytest.mark.django_db
def test_mapping_then_import_queues_the_task(importer_client, run,
                                             django_capture_on_commit_callbacks):  # fmt: skip
    form = {"role_0": "identity", "type_0": "", "role_1": "property", "type_1": "",
            "role_2": "property", "type_2": "string"}  # fmt: skip
    with django_capture_on_commit_callbacks() as callbacks:
        response = importer_client.post(reverse("imports:mapping", args=[run.pk]), form)
    assert response.status_code == 302 and response["Location"] == f"/imports/{run.pk}/"
    run.refresh_from_db()
    assert run.status == "queued" and run.mapping["columns"][2]["type"] == "string"
    assert len(callbacks) == 1  # the Celery task, sent when the transaction commits


def test_a_mapping_without_identifier_is_refused(importer_client, run):
    form = {"role_0": "property", "role_1": "property", "role_2": "property"}
    response = importer_client.post(reverse("imports:mapping", args=[run.pk]), form)
    assert response.status_code == 400
    assert "Choose the column that names the person" in response.content.decode()
    run.refresh_from_db()
    assert run.status == "pending"


def test_mapping_needs_the_upload_permission(marketer_client, outsider_client, anonymous_client,
                                             run):  # fmt: skip
    url = reverse("imports:mapping", args=[run.pk])
    assert marketer_client.get(url).status_code == 403
    assert outsider_client.post(url, {"role_0": "identity"}).status_code == 403
    assert_login_redirect(anonymous_client.get(url))


# --- progress and results ----------------------------------------------------------------


def test_detail_page_polls_while_running(importer_client, run):
    ImportRun.objects.filter(pk=run.pk).update(status="running", rows_done=1)
    url = reverse("imports:detail", args=[run.pk])
    page = importer_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and f'hx-get="{url}"' in html and 'aria-valuenow="50"' in html

    fragment = importer_client.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html and 'hx-trigger="every 1s"' in html and "1 of 2 rows" in html


def test_progress_fragment_stops_polling_with_the_totals_when_done(importer_client, finished_run):
    url = reverse("imports:detail", args=[finished_run.pk])
    fragment = importer_client.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 286  # htmx: stop polling
    html = fragment.content.decode()
    assert "<html" not in html and "hx-trigger" not in html
    assert 'data-total="created">1<' in html and 'data-total="rejected">1<' in html
    assert "Download rejected rows" in html

    page = importer_client.get(url)
    assert page.status_code == 200 and "Download rejected rows" in page.content.decode()


def test_rejected_rows_download_is_formula_safe(importer_client, finished_run):
    response = importer_client.get(reverse("imports:rejected", args=[finished_run.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="people-rejected-rows.csv"'
    assert response.content.decode("utf-8-sig").splitlines() == [
        "Error row,Error column,Error value,Error reason,identity,Name,Score",
        "2,Score,x,Value of 'Score': 'x' is not a number.,u2,'=Bob,x",
    ]


def test_results_need_the_permission(marketer_client, outsider_client, anonymous_client,
                                     finished_run):  # fmt: skip
    for name in ("imports:detail", "imports:rejected"):
        url = reverse(name, args=[finished_run.pk])
        assert marketer_client.get(url).status_code == 403
        assert outsider_client.get(url, headers={"HX-Request": "true"}).status_code == 403
        assert_login_redirect(anonymous_client.get(url))


def test_a_header_of_100000_columns_is_refused_at_upload(importer_client, write_csv):
    header = ",".join(["identity", *(f"c{i}" for i in range(100_000))])
    with write_csv(f"{header}\nu1\n").open("rb") as handle:
        response = importer_client.post(reverse("imports:list"),
                                        {"kind": "profiles", "file": handle})  # fmt: skip
    assert response.status_code == 400
    assert "The header row has 100,001 columns; at most 500 are accepted." in (
        response.content.decode())  # fmt: skip
    assert ImportRun.objects.get().status == ImportStatus.FAILED  # kept in the history


# --- cancel -------------------------------------------------------------------------------


@pytest.fixture
def queued_run(run) -> ImportRun:
    run.mapping["columns"][2]["type"] = "float"
    run.status = ImportStatus.QUEUED
    run.save()
    return run


def test_running_page_shows_counters_and_the_cancel_button(importer_client, queued_run):
    ImportRun.objects.filter(pk=queued_run.pk).update(
        status=ImportStatus.RUNNING, rows_done=5000, profiles_created=4000, profiles_updated=990,
        rows_rejected=10,
    )  # fmt: skip
    url = reverse("imports:detail", args=[queued_run.pk])
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = importer_client.get(url, **headers)
        assert response.status_code == 200  # still polling
        html = response.content.decode()
        assert 'data-running="created">4,000<' in html and 'data-running="rejected">10<' in html
        assert "Cancel import" in html


def test_cancel_stops_the_run_and_execute_does_not_take_it_again(importer_client, queued_run):
    response = importer_client.post(reverse("imports:cancel", args=[queued_run.pk]))
    assert response.status_code == 302
    queued_run.refresh_from_db()
    assert queued_run.status == ImportStatus.CANCELLED
    assert queued_run.error == "Cancelled by importer."
    assert import_run_execute(import_run_id=queued_run.pk).status == ImportStatus.CANCELLED
    assert queued_run.rows_done == 0
    page = importer_client.get(reverse("imports:detail", args=[queued_run.pk]))
    assert "Cancel import" not in page.content.decode()


def test_cancel_of_a_finished_or_sftp_run_is_refused_with_a_message(
    importer_client, finished_run, importer
):
    response = importer_client.post(reverse("imports:cancel", args=[finished_run.pk]), follow=True)
    assert "only a queued or running import" in response.content.decode()
    assert ImportRun.objects.get(pk=finished_run.pk).status == ImportStatus.DONE
    queued_run = import_run_create(kind="profiles", file_name="drop.csv",
                                   content=PROFILES_CSV.encode(), uploaded_by=importer)  # fmt: skip
    ImportRun.objects.filter(pk=queued_run.pk).update(origin="sftp", status=ImportStatus.QUEUED)
    importer_client.post(reverse("imports:cancel", args=[queued_run.pk]))
    assert ImportRun.objects.get(pk=queued_run.pk).status == ImportStatus.QUEUED


def test_cancel_needs_the_permission_and_a_post(
    marketer_client, outsider_client, anonymous_client, importer_client, queued_run
):
    url = reverse("imports:cancel", args=[queued_run.pk])
    assert marketer_client.post(url).status_code == 403
    assert outsider_client.post(url).status_code == 403
    assert_login_redirect(anonymous_client.post(url))
    assert importer_client.get(url).status_code == 405
    assert ImportRun.objects.get(pk=queued_run.pk).status == ImportStatus.QUEUED
