"""The dashboard's navigation in a real Chromium: an Importer lands on a page they may use,
sees only their sections, and a refused page leads back to one that opens."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conftest import browser_login
from profiles.tests.roles import ensure_role_groups

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db) -> None:
    ensure_role_groups()  # an earlier transactional test may have flushed them


def test_importer_lands_on_the_overview_and_finds_the_way_back_from_a_403(page, importer):
    browser_login(page, "importer")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Overview", "Find People", "Imports"])
    page.goto("/settings/api-credentials/")
    expect(page.get_by_role("heading", name="Permission needed")).to_be_visible()
    expect(page.get_by_text("group that has it: Admins.")).to_be_visible()
    page.get_by_role("link", name="Back to Overview").click()
    expect(page.get_by_role("heading", name="Permission needed")).to_have_count(0)
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def test_overview_shows_totals_trend_reachability_and_imports(page, importer):
    from imports.models import ImportKind, ImportRun, ImportStatus
    from profiles.overview import overview_refresh
    from profiles.tests.factories import EventFactory, ProfileFactory, identified_profile

    ada = identified_profile("ada", email="ada@example.com")
    ProfileFactory(custom={"ct_is_test_user": "Yes"})
    for _ in range(3):
        EventFactory(profile=ada)
    run = ImportRun.objects.create(
        kind=ImportKind.PROFILES, file_name="crm.csv", status=ImportStatus.DONE,
        profiles_created=2, rows_rejected=1, uploaded_by=importer,
    )  # fmt: skip
    overview_refresh()
    browser_login(page, "importer")
    expect(page.get_by_test_id("stat-profiles")).to_have_text("2")
    expect(page.get_by_text("1 identified · 1 anonymous")).to_be_visible()
    expect(page.get_by_test_id("stat-test")).to_have_text("1")
    expect(page.get_by_test_id("stat-events-today")).to_have_text("3")
    expect(page.locator('td[data-channel="Email"]')).to_have_text("1")
    expect(page.get_by_test_id("as-of")).to_contain_text("UTC")
    # The chart: one bar of new profiles (2 today) and one of active ones (1 today).
    chart = page.get_by_role("img", name=re.compile("New and active profiles per day"))
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar-new")).to_have_count(1)
    expect(chart.locator("rect.bar-active")).to_have_count(1)
    page.get_by_role("link", name="crm.csv").click()
    page.wait_for_url(f"**/imports/{run.pk}/")
