"""The dashboard's navigation in a real Chromium: an Importer lands on a page they may use,
sees only their sections, and a refused page leads back to one that opens."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import browser_login
from profiles.tests.roles import ensure_role_groups

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db) -> None:
    ensure_role_groups()  # an earlier transactional test may have flushed them


def test_importer_lands_on_find_people_and_finds_the_way_back_from_a_403(page, importer):
    browser_login(page, "importer")
    assert page.url.endswith("/people/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Find People", "Imports"])
    page.goto("/settings/api-credentials/")
    expect(page.get_by_role("heading", name="Permission needed")).to_be_visible()
    expect(page.get_by_text("group that has it: Admins.")).to_be_visible()
    page.get_by_role("link", name="Back to Find People").click()
    expect(page.get_by_role("heading", name="Permission needed")).to_have_count(0)
    assert page.url.endswith("/people/")
