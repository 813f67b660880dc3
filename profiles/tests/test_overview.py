"""The home overview: counted set-based by overview_refresh, read by `/` in a few queries."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from imports.models import ImportKind, ImportRun, ImportStatus
from profiles.models import OverviewDay, OverviewTotals, Profile
from profiles.overview import day_bounds, overview_refresh
from profiles.tests.factories import DeviceFactory, EventFactory, ProfileFactory, identified_profile
from profiles.tests.roles import ensure_role_groups
from segments.selectors import segment_count

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _role_groups(db) -> None:
    ensure_role_groups()


def _created(profile: Profile, moment: dt.datetime) -> Profile:
    Profile.objects.filter(pk=profile.pk).update(created_at=moment)
    return profile


@pytest.fixture
def population():
    """Four people: identified with email (opted out of email), identified with phone,
    an anonymous one with a push device, and a test profile."""
    alice = _created(identified_profile("alice", email="alice@example.com", msg_email=False), NOW)
    bob = _created(identified_profile("bob", phone="+14155550100"), NOW - dt.timedelta(days=1))
    anon = _created(ProfileFactory(), NOW - dt.timedelta(days=1))
    DeviceFactory(profile=anon, push_token="tok-1")
    tester = _created(
        ProfileFactory(email="t@example.com", custom={"ct_is_test_user": "Yes"}),
        NOW - dt.timedelta(days=40),
    )
    for hours in (1, 2, 3):
        EventFactory(profile=alice, ts=NOW - dt.timedelta(hours=hours))
    EventFactory(profile=bob, ts=NOW - dt.timedelta(hours=1))
    EventFactory(profile=bob, ts=NOW - dt.timedelta(days=3))
    EventFactory(profile=anon, ts=NOW - dt.timedelta(days=8))  # outside the 7 days
    return {"alice": alice, "bob": bob, "anon": anon, "tester": tester}


def test_refresh_counts_totals_reachability_and_days(population):
    totals = overview_refresh(now=NOW)
    assert (totals.profiles, totals.identified, totals.anonymous, totals.test_profiles) == (
        4, 2, 2, 1)  # fmt: skip
    # The same rule as a segment's "reachable" condition, channel by channel.
    for channel in ("email", "sms", "whatsapp", "push"):
        expected = segment_count({"system": "reachable", "op": "equals", "value": channel})
        assert totals.reachable[channel] == expected
    assert totals.reachable == {"email": 1, "sms": 1, "whatsapp": 0, "push": 1}
    days = {row.day: row for row in OverviewDay.objects.all()}
    assert len(days) == 30 and max(days) == NOW.date()
    today, yesterday = days[NOW.date()], days[NOW.date() - dt.timedelta(days=1)]
    assert (today.new_profiles, today.active_profiles, today.events) == (1, 2, 4)
    assert (yesterday.new_profiles, yesterday.active_profiles, yesterday.events) == (2, 0, 0)
    assert days[NOW.date() - dt.timedelta(days=3)].events == 1


def test_refresh_twice_gives_the_same_rows(population):
    overview_refresh(now=NOW)
    first = list(OverviewDay.objects.order_by("day").values_list("day", "events", "new_profiles"))
    overview_refresh(now=NOW + dt.timedelta(minutes=5))
    again = list(OverviewDay.objects.order_by("day").values_list("day", "events", "new_profiles"))
    assert first == again and OverviewTotals.objects.count() == 1


def test_a_final_day_is_not_scanned_again_but_today_is(population):
    overview_refresh(now=NOW)
    later = NOW + dt.timedelta(days=1, hours=2)  # yesterday (NOW's day) is final from here on
    overview_refresh(now=later)
    EventFactory(profile=population["bob"], ts=NOW - dt.timedelta(hours=4))  # a late arrival
    EventFactory(profile=population["bob"], ts=later - dt.timedelta(minutes=5))
    overview_refresh(now=later + dt.timedelta(minutes=5))
    assert OverviewDay.objects.get(day=NOW.date()).events == 4  # final: kept as counted
    assert OverviewDay.objects.get(day=later.date()).events == 1  # today: recounted
    # Days that left the window are gone.
    assert not OverviewDay.objects.filter(day__lt=later.date() - dt.timedelta(days=29)).exists()


def test_days_follow_the_dashboard_time_zone(settings, population):
    settings.TIME_ZONE = "America/New_York"
    start, end = day_bounds(dt.date(2026, 6, 15))
    assert start.utcoffset() == dt.timedelta(hours=-4) and end - start == dt.timedelta(days=1)
    # 11:00 UTC on the 15th is 07:00 in New York: still the 15th; 02:00 UTC is the 14th there.
    EventFactory(profile=population["bob"], ts=dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.UTC))
    overview_refresh(now=NOW)
    assert OverviewDay.objects.get(day=dt.date(2026, 6, 14)).events == 1


# --- the page ---------------------------------------------------------------------------


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_marketer_sees_the_overview_without_imports(marketer_client, population):
    Profile.objects.filter(pk=population["tester"].pk).update(created_at=timezone.now())
    overview_refresh()
    response = marketer_client.get("/")
    assert response.status_code == 200
    text = _text(response)
    assert "Overview" in text and "Profiles 4 2 identified · 2 anonymous" in text
    assert "Test profiles 1" in text and "New profiles 1" in text
    assert "Reachable by channel" in text and "Recent imports" not in text
    assert "Counted at" in text and "not live" in text
    assert "<svg" in response.content.decode()


def test_importer_sees_recent_imports_with_links(importer_client, importer, population):
    run = ImportRun.objects.create(
        kind=ImportKind.PROFILES, file_name="crm=1.csv", status=ImportStatus.DONE,
        profiles_created=7, profiles_updated=2, rows_rejected=3, uploaded_by=importer,
    )  # fmt: skip
    response = importer_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/imports/{run.pk}/"' in html
    assert "7 created, 2 updated, 3 rejected" in _text(response)


def test_before_the_first_count_the_page_says_so_with_an_estimate(marketer_client, population):
    response = marketer_client.get("/")
    assert response.status_code == 200
    assert "Not counted yet" in _text(response) and "about" in _text(response)


def test_outsider_and_anonymous(outsider_client, anonymous_client):
    response = outsider_client.get("/")
    assert response.status_code == 200 and "No access yet" in response.content.decode()
    response = anonymous_client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_page_reads_a_fixed_number_of_queries(
    admin_client_, population, django_assert_max_num_queries
):
    overview_refresh()
    for number in range(30):
        EventFactory(profile=population["alice"], ts=timezone.now())
        ProfileFactory(name=f"more {number}")
    # Session, user, permissions, totals, days, imports: never a count over profiles or events.
    with django_assert_max_num_queries(8) as queries:
        assert admin_client_.get("/").status_code == 200
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "profiles_event" not in sql and "COUNT(" not in sql.upper()
