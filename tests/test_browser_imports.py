"""An Importer imports a CSV in a real Chromium: upload, map a column, watch the
progress bar finish (the task runs in a real Celery worker), download the report of
the rejected row."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import browser_login
from imports.tests.csv_fixtures import ensure_role_groups, use_temporary_media
from profiles.models import Profile

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _setup(transactional_db, settings, tmp_path) -> None:
    ensure_role_groups()  # a transactional test elsewhere may have flushed them
    use_temporary_media(settings, tmp_path)


ROWS = 40


def test_importer_uploads_maps_watches_progress_and_downloads_rejected_rows(
    celery_worker_real, importer, page, tmp_path, settings
):
    settings.IMPORT_CHUNK_ROWS = 10  # several chunks: the bar moves
    lines = ["identity,Name,Score,Comment"]
    lines += [f"b{n},Person {n},{n}.5,hello" for n in range(ROWS)]
    lines[8] = "b7,=Mallory,lots,@evil"  # the one bad row (data row 8)
    path = tmp_path / "customers.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")

    browser_login(page, "importer")
    page.goto("/imports/")
    page.get_by_label("Profiles").check()
    page.locator("#id_file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_role("heading", name="Map the columns of “customers.csv”")).to_be_visible()
    expect(page.locator(".import-preview tbody tr")).to_have_count(15)  # the preview
    page.get_by_label("Score: type").select_option("float")
    page.get_by_label("Comment: holds").select_option("ignore")
    page.get_by_role("button", name="Import").click()

    progress = page.locator("#import-progress")
    expect(progress.locator(".progress")).to_be_visible()
    expect(progress.locator(".import-status")).to_have_text("Done", timeout=60_000)
    expect(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(progress.locator('[data-total="created"]')).to_have_text(str(ROWS - 1))
    expect(progress.locator('[data-total="rejected"]')).to_have_text("1")

    with page.expect_download() as download_info:
        progress.get_by_role("link", name="Download rejected rows").click()
    download = download_info.value
    assert download.suggested_filename == "customers-rejected-rows.csv"
    report = Path(download.path()).read_text(encoding="utf-8-sig").splitlines()
    assert report == [
        "Error row,Error column,Error value,Error reason,identity,Name,Score,Comment",
        "8,Score,lots,Value of 'Score': 'lots' is not a number.,b7,'=Mallory,lots,'@evil",
    ]
    assert Profile.objects.count() == ROWS - 1
    assert "Comment" not in Profile.objects.get(identifiers__value="b1").custom


def test_event_name_only_for_events_and_the_mapping_fits_a_phone(importer, page, tmp_path):
    path = tmp_path / "wide.csv"
    header = ["identity"] + [f"A rather long column name {n}<Float>" for n in range(12)]
    path.write_text(",".join(header) + "\n" + ",".join(["u1"] + ["1.5"] * 12) + "\n")
    page.set_viewport_size({"width": 390, "height": 800})

    browser_login(page, "importer")
    page.goto("/imports/")
    page.get_by_label("Profiles").check()
    expect(page.get_by_label("Event name (for an events file)")).to_be_hidden()
    page.get_by_role("radio", name="Events").check()
    expect(page.get_by_label("Event name (for an events file)")).to_be_visible()
    page.get_by_label("Profiles").check()
    page.locator("#id_file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.locator(".mapping-column")).to_have_count(13)  # one card per column
    expect(page.get_by_label("A rather long column name 3<Float>: save as")).to_be_visible()
    expect(page.locator(".mapping-column").nth(1)).to_contain_text("Detected: Float")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # the wide preview scrolls inside its card, not the page


def _worker_idle(seconds: float = 60) -> None:
    """Wait until the in-process worker runs no task (celery.worker.state)."""
    import time

    from celery.worker import state

    deadline = time.monotonic() + seconds
    while state.active_requests and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not state.active_requests, "the worker is still running a task"


def test_running_counters_and_cancel_keep_what_committed(
    celery_worker_real, importer, page, tmp_path, settings
):
    import datetime as dt

    from config.jobs import jobs_recover
    from imports.models import ImportRun
    from imports.services import import_run_create, import_run_start

    settings.IMPORT_CHUNK_ROWS = 50  # many chunk boundaries to stop at
    rows = 20_000
    content = "identity,Name\n" + "".join(f"c{n},Person {n}\n" for n in range(rows))
    run = import_run_create(kind="profiles", file_name="big.csv", content=content.encode(),
                            uploaded_by=importer, origin="web")  # fmt: skip
    browser_login(page, "importer")
    import_run_start(import_run=run)
    page.goto(f"/imports/{run.pk}/")

    progress = page.locator("#import-progress")
    done = progress.locator('[data-running="done"]')
    expect(done).not_to_have_text("0", timeout=60_000)  # counters move while it runs
    assert progress.locator('[data-running="created"]').inner_text() != ""
    page.once("dialog", lambda dialog: dialog.accept())
    progress.get_by_role("button", name="Cancel import").click()
    expect(page.locator(".import-status")).to_have_text("Cancelled", timeout=30_000)
    expect(page.locator(".messages")).to_contain_text("Cancelled “big.csv”")

    _worker_idle()
    run = ImportRun.objects.get(pk=run.pk)
    assert run.status == "cancelled"
    assert 0 < run.rows_done < rows  # stopped at a chunk boundary, before the end
    assert run.rows_done % 50 == 0
    assert Profile.objects.count() == run.profiles_created == run.rows_done  # what committed stays
    expect(page.locator(".import-cancelled")).to_contain_text(f"of {rows:,} rows")

    # Not resumed by the recovery sweep, not claimable again.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert run.pk not in jobs_recover(now=later).get("import run", [])
    page.reload()
    expect(page.locator(".import-status")).to_have_text("Cancelled")
    assert ImportRun.objects.get(pk=run.pk).rows_done == run.rows_done


def test_the_fix_and_retry_loop_in_the_browser(celery_worker_real, importer, page, tmp_path):
    # Data row 2 has two bad values; data row 4 repeats u1 (merged into row 1).
    path = tmp_path / "people.csv"
    path.write_text(
        "identity,Name,Score,Visits,Favourite colour\n"
        "u1,Ann,1.5,3,red\nu2,Bob,high,many,blue\nu3,Cid,2,4,green\nu1,Ann B,2.5,5,red\n",
        encoding="utf-8",
    )
    browser_login(page, "importer")
    page.goto("/imports/")
    page.get_by_label("Profiles").check()
    page.locator("#id_file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and preview").click()

    # The preview numbers data rows from 1, as the report will.
    preview = page.locator(".import-preview tbody tr")
    expect(preview.nth(1).locator("th")).to_have_text("2")
    expect(preview.nth(1)).to_contain_text("Bob")
    page.get_by_label("Score: type").select_option("float")
    page.get_by_label("Visits: type").select_option("integer")
    page.get_by_label("Favourite colour: save as").fill("Colour")  # another property name
    page.get_by_role("button", name="Import").click()

    progress = page.locator("#import-progress")
    expect(progress.locator(".import-status")).to_have_text("Done", timeout=60_000)
    summary = progress.locator(".import-summary")
    expect(summary).to_contain_text("2 created")
    expect(summary).to_contain_text("1 rejected")
    expect(summary).to_contain_text("1 merged into an earlier row of the same person")
    bob = progress.locator(".rejected-rows tr[data-row='2']")  # shown on the page
    expect(bob).to_contain_text("'high' is not a number")
    expect(bob).to_contain_text("'many' is not a whole number")  # both errors at once
    assert Profile.objects.get(identifiers__value="u3").custom["Colour"] == "green"

    with page.expect_download() as first:
        progress.get_by_role("link", name="Download rejected rows").click()
    report = tmp_path / "report.csv"
    report.write_bytes(Path(first.value.path()).read_bytes())

    page.goto("/imports/")  # upload the report as downloaded: still all wrong
    page.get_by_label("Profiles").check()
    page.locator("#id_file").set_input_files(str(report))
    page.get_by_role("button", name="Upload and preview").click()
    page.get_by_label("Score: type").select_option("float")
    page.get_by_label("Visits: type").select_option("integer")
    page.get_by_role("button", name="Import").click()
    expect(progress.locator(".import-status")).to_have_text("Done", timeout=60_000)
    with page.expect_download() as second:
        progress.get_by_role("link", name="Download rejected rows").click()
    header = Path(second.value.path()).read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.count("Error reason") == 1  # the Error columns are not duplicated
    assert header.endswith("identity,Name,Score,Visits,Favourite colour")
