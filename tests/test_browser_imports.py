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
