"""Find People and the profile page in a real Chromium: a marketer finds Mark by a phone
number typed the local way, an admin marks him as a test profile without a reload, and the
events of his linked anonymous profile are shown greyed."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conftest import browser_login
from profiles.models import Profile, Source
from profiles.services import TEST_MARKED_EVENT, Actor, event_push, profile_login
from profiles.tests.factories import ProfileFactory
from profiles.tests.test_views_people import ensure_role_groups

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db) -> None:
    ensure_role_groups()  # an earlier transactional test may have flushed them


@pytest.fixture
def mark(transactional_db) -> Profile:
    """Mark browsed anonymously on a laptop, then logged in on his phone and on the laptop."""
    sdk = Actor(source=Source.SDK)
    now = timezone.now()
    event_push(
        device_id="__laptop", name="Guest Browsed", actor=sdk, ts=now - dt.timedelta(hours=3)
    )
    profile_login(
        device_id="__phone",
        identifiers={"identity": "mark-1"},
        profile_data={"Name": "Mark Twain", "Phone": "+14155551234", "Email": "mark@example.com"},
        actor=sdk,
    )
    event_push(device_id="__phone", name="Charged", properties={"Amount": 30}, actor=sdk,
               ts=now - dt.timedelta(hours=1))  # fmt: skip
    profile_login(device_id="__laptop", identifiers={"identity": "mark-1"}, actor=sdk)
    for index in range(3):  # others, so the search has something to narrow
        ProfileFactory(name=f"Other Person {index}", phone=f"+1415555000{index}")
    return Profile.objects.get(identifiers__value="mark-1")


def test_marketer_finds_mark_by_a_local_phone_number_and_opens_him(page, marketer, mark):
    browser_login(page, "marketer")
    page.goto("/people/")
    expect(page.get_by_text("No search yet")).to_be_visible()
    # Typed like people write it: no country code, punctuation. No Enter: results follow typing.
    page.get_by_label("Search").press_sequentially("(415) 555-1234", delay=20)
    results = page.locator("#results table.people tbody tr")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Mark Twain")
    # The address bar holds the search (shareable, back button) and nothing more.
    expect(page).to_have_url(re.compile(r"/people/\?q=[^&]*555-1234$"))
    page.get_by_role("link", name="Mark Twain").click()
    expect(page).to_have_url(re.compile(rf"/people/{mark.ct_id}/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Mark Twain")
    expect(page.get_by_role("button", name="Mark as test profile")).to_have_count(0)
    page.go_back()  # the back button returns to the search
    expect(page).to_have_url(re.compile(r"/people/\?q="))
    expect(page.locator("#results")).to_contain_text("Mark Twain")


def test_admin_marks_mark_as_test_profile_without_a_reload(page, admin_user, mark):
    browser_login(page, "admin")
    page.goto(f"/people/{mark.ct_id}/")
    expect(page.get_by_test_id("test-badge")).to_have_count(0)
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__still_the_same_page = true")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.get_by_role("button", name="Mark as test profile").click()

    expect(page.get_by_test_id("test-badge")).to_have_text("Test profile")
    custom = page.locator('dl.props[data-group="custom"]')
    expect(custom.locator("dt", has_text="ct_is_test_user")).to_be_visible()
    expect(custom.locator("dt:text-is('ct_is_test_user') + dd")).to_have_text("Yes")
    expect(page.locator("#timeline li.event").first).to_contain_text(TEST_MARKED_EVENT)
    expect(page.get_by_role("button", name="Unmark test profile")).to_be_visible()
    assert page.evaluate("window.__still_the_same_page") is True
    assert navigations == []
    assert Profile.objects.get(pk=mark.pk).is_test


def test_admin_who_cancels_the_confirmation_changes_nothing(page, admin_user, mark):
    browser_login(page, "admin")
    page.goto(f"/people/{mark.ct_id}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Mark as test profile").click()
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("test-badge")).to_have_count(0)
    assert not Profile.objects.get(pk=mark.pk).is_test


def test_events_of_the_linked_anonymous_profile_are_greyed(page, marketer, mark):
    browser_login(page, "marketer")
    page.goto(f"/people/{mark.ct_id}/")
    greyed = page.locator("#timeline li.event.greyed")
    expect(greyed).to_have_count(1)
    expect(greyed).to_contain_text("Guest Browsed")
    expect(greyed).to_contain_text("not counted")
    expect(page.get_by_text("1 linked anonymous profile")).to_be_visible()
    counted = page.locator("#timeline li.event:not(.greyed)")
    expect(counted.first).to_contain_text("Charged")
    grey = greyed.evaluate("element => getComputedStyle(element).color")
    normal = counted.first.evaluate("element => getComputedStyle(element).color")
    assert grey != normal
    expect(page.locator("svg.activity rect")).to_have_count(1)  # only Mark's own Charged


def test_marketer_sees_the_match_count_and_exports_the_search(
    page, marketer, celery_worker_real, settings, tmp_path
):
    from imports.tests.csv_fixtures import use_temporary_media

    use_temporary_media(settings, tmp_path)
    for number in range(3):
        ProfileFactory(name=f"Zoe Export {number}", email=f"zoe{number}@example.com")
    ProfileFactory(name="Zoltan", phone="+14155550100")  # "+…" would start a formula
    ProfileFactory(name="Someone Else")
    browser_login(page, "marketer")
    page.goto("/people/")
    page.get_by_label("Search").press_sequentially("zo", delay=20)
    expect(page.get_by_test_id("match-count")).to_have_text("4 people match")
    page.get_by_label("Search").press_sequentially("e", delay=20)
    expect(page.get_by_test_id("match-count")).to_have_text("3 people match")
    page.get_by_label("Search").fill("")
    page.get_by_label("Search").press_sequentially("zo", delay=20)
    expect(page.get_by_test_id("match-count")).to_have_text("4 people match")

    page.get_by_role("button", name="Export these people (CSV)").click()
    expect(page.get_by_role("heading", name="Export of people")).to_be_visible()
    # The page follows the worker by itself (htmx polling), then offers the file.
    download_link = page.get_by_role("link", name="Download CSV")
    expect(download_link).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("export-status")).to_have_text("Done")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    with page.expect_download() as download_info:
        download_link.click()
    content = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    lines = content.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("CleverTap ID,Name,")
    assert "Someone Else" not in content
    assert ",'+14155550100," in content  # neutralised: a spreadsheet shows it as text


def test_more_than_a_page_shows_the_results_then_their_count(page, marketer):
    for number in range(30):
        ProfileFactory(name=f"Zeno {number}")
    browser_login(page, "marketer")
    page.goto("/people/")
    page.get_by_label("Search").press_sequentially("zen", delay=20)
    expect(page.locator("table.people tbody tr")).to_have_count(25)
    # Loaded after the results (htmx), in place of "Counting…".
    expect(page.get_by_test_id("match-count")).to_have_text("30 people match")
    expect(page.get_by_test_id("match-count-pending")).to_have_count(0)
    page.get_by_label("Search").press_sequentially("o 2", delay=20)  # Zeno 2, Zeno 20 to 29
    expect(page.get_by_test_id("match-count")).to_have_text("11 people match")


def test_timeline_filter_and_inline_older_events(page, marketer):
    from profiles.models import Event

    busy = ProfileFactory(name="Busy Bee")
    start = timezone.now() - dt.timedelta(days=1)
    Event.objects.bulk_create(
        [Event(profile=busy, name="Viewed" if n % 2 else "Charged",
               ts=start + dt.timedelta(minutes=n), source=Source.SDK) for n in range(130)]
    )  # fmt: skip
    browser_login(page, "marketer")
    page.goto(f"/people/{busy.ct_id}/")
    events = page.locator("#timeline li.event")
    expect(events).to_have_count(50)
    expect(events.first.locator("time")).to_contain_text(" UTC")
    page.evaluate("window.__still_the_same_page = true")
    # Older events load in place: same page, more rows.
    page.get_by_role("link", name="Older events").click()
    expect(events).to_have_count(100)
    page.get_by_role("link", name="Older events").click()
    expect(events).to_have_count(130)
    expect(page.get_by_role("link", name="Older events")).to_have_count(0)
    # The filter replaces the timeline with Charged events only, and its load-more keeps it.
    page.get_by_label("Show").select_option("Charged")
    expect(events).to_have_count(50)
    expect(page.locator("#timeline li.event strong", has_text="Viewed")).to_have_count(0)
    page.get_by_role("link", name="Older events").click()
    expect(events).to_have_count(65)
    expect(page.locator("#timeline li.event strong", has_text="Viewed")).to_have_count(0)
    assert page.evaluate("window.__still_the_same_page") is True
    page.get_by_label("Show").select_option("")
    expect(events).to_have_count(50)
    expect(page.locator("#timeline li.event strong", has_text="Viewed")).to_have_count(25)


def test_linked_profiles_link_both_ways_and_dates_read_as_dates(page, marketer, mark):
    from profiles.models import PropertyDefinition

    PropertyDefinition.objects.get_or_create(
        scope="profile", name="Signup Date", defaults={"type": "date"}
    )
    Profile.objects.filter(pk=mark.pk).update(
        custom={**mark.custom, "Signup Date": "2024-01-31T12:00:00Z"}
    )
    browser_login(page, "marketer")
    page.goto(f"/people/{mark.ct_id}/")
    custom = page.locator('dl.props[data-group="custom"]')
    expect(custom.locator("dt:text-is('Signup Date') + dd")).to_have_text("2024-01-31")
    page.get_by_test_id("linked-anonymous").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Unnamed profile")
    expect(page.get_by_test_id("linked-person")).to_contain_text("later logged in as")
    page.get_by_test_id("linked-person").get_by_role("link", name="Mark Twain").click()
    expect(page).to_have_url(re.compile(rf"/people/{mark.ct_id}/$"))
