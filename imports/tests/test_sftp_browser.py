"""An Importer sets up an SFTP source in a real Chromium: fills the form, tests
the connection (htmx, no reload), compares and trusts the host key."""

import pytest
from playwright.sync_api import expect

from conftest import browser_login
from imports.models import SftpSource
from imports.tests.sftp_server import PASSWORD, USERNAME

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sftp_role_groups"),
]


def test_importer_adds_a_source_and_trusts_its_host_key(page, importer, sftp_server):
    sftp_server.put("incoming/people.csv", "identity,Name\nu-1,Ann\n")
    browser_login(page, "importer")
    page.goto("/imports/sftp/")
    page.click("text=Add source")
    page.fill("#id_name", "Acme drop")
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", str(sftp_server.port))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_remote_dir", "/incoming")
    page.click("form.sftp-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Acme drop")
    expect(page.get_by_text("not trusted yet")).to_be_visible()

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection")).to_contain_text(sftp_server.fingerprint)
    page.get_by_role("button", name="Trust this key").click()
    expect(page.locator(".messages")).to_contain_text("is now trusted")

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection")).to_contain_text("1 file(s) in /incoming")
    source = SftpSource.objects.get()
    assert source.host_key_fingerprint == sftp_server.fingerprint
    assert PASSWORD not in page.content()


def test_a_retried_poll_says_retrying_and_the_page_shows_what_comes_next(
    page, importer, sftp_server, make_sftp_source, celery_worker_real
):
    """A real worker polls a port that refuses: the attempt failed but the task will try
    again, so the page says "Retrying (1 of 4)", not "Failed"."""
    import time

    from imports.models import SftpRun
    from imports.sftp.tasks import MAX_RETRIES, sftp_poll_source_task
    from imports.tests.sftp_server import closed_port

    source = make_sftp_source(sftp_server, port=closed_port(), every_minutes=20)
    sftp_poll_source_task.delay(source.pk, "manual")
    deadline = time.monotonic() + 60
    while not SftpRun.objects.filter(source=source, retry_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the worker never failed the first attempt"
        time.sleep(0.2)

    browser_login(page, "importer")
    page.goto(f"/imports/sftp/{source.pk}/")
    status = page.locator(".sftp-runs .sftp-run-status").first
    expect(status).to_have_text(f"Retrying (1 of {MAX_RETRIES})")
    expect(page.locator(".sftp-runs")).to_contain_text("Connection refused")
    expect(page.locator("#next-run")).to_contain_text("due now")  # beat has not sent one yet
    page.goto("/imports/sftp/")
    expect(page.locator("tr", has_text="drop")).to_contain_text(f"Retrying (1 of {MAX_RETRIES})")


def test_run_now_waits_for_a_trusted_key_and_rejected_rows_are_named(
    page, importer, sftp_server, make_sftp_source
):
    from imports.models import SftpFile, SftpRun
    from imports.services import import_run_create, import_run_execute

    source = make_sftp_source(sftp_server, host_key_fingerprint="")
    import_run = import_run_create(kind="profiles", file_name="people.csv", origin="sftp",
                                   content=b"identity,N\nu-1,a\n,b\n,c\n")  # fmt: skip
    import_run_execute(import_run_id=import_run.pk)
    run = SftpRun.objects.create(source=source, status="done", files_seen=1, files_imported=1)
    SftpFile.objects.create(source=source, path="/incoming/people.csv", size=13, mtime=1,
                            run=run, status="imported", import_run=import_run)  # fmt: skip

    browser_login(page, "importer")
    page.goto(f"/imports/sftp/{source.pk}/")
    expect(page.get_by_role("button", name="Run now")).to_be_disabled()
    expect(page.locator("#run-now-why")).to_have_text("Trust the host key first (Test connection).")
    expect(page.locator(".sftp-files .sftp-file-status")).to_have_text(
        "Imported with 2 rejected rows")  # fmt: skip
    expect(page.locator(".sftp-runs")).to_contain_text("Imported with 2 rejected rows")
    expect(page.locator("#next-run")).to_contain_text("due now")
