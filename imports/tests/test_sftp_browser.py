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
