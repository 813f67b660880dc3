"""The home overview's figures: counted set-based by a periodic task, read by the page.

The page must stay fast at millions of profiles and events, so it never counts
anything itself: `overview_refresh` (beat, every OVERVIEW_REFRESH_SECONDS) writes
the totals (one pass over profiles) and the per-day rows of the last
OVERVIEW_DAYS days. A past day is counted again by each refresh until one refresh
ran after the day had ended (plus FINAL_AFTER, for events still in flight); from
then on it is final and never scanned again, so a refresh reads today's events
(through the BRIN index on event time) and one pass over profiles.

Days are calendar days in the dashboard's TIME_ZONE.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from profiles.models import OverviewDay, OverviewTotals, Profile
from profiles.rules.reachability import CHANNEL_KEYS

OVERVIEW_DAYS = 30
FINAL_AFTER = dt.timedelta(hours=1)


def overview_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a calendar day of the dashboard's time zone, as aware datetimes."""
    zone = overview_zone()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start, end


def overview_window(*, today: dt.date) -> list[dt.date]:
    return [today - dt.timedelta(days=offset) for offset in range(OVERVIEW_DAYS - 1, -1, -1)]


def _reachable_conditions() -> dict[str, Q]:
    """Each channel's condition from the segment compiler's "reachable" rule (itself
    profiles.rules.reachability), so the overview counts whom a campaign would reach."""
    from segments.compiler import compile_definition

    return {
        channel: compile_definition(
            {"system": "reachable", "op": "equals", "value": channel},
            property_types={},
            event_property_types={},
        )
        for channel in CHANNEL_KEYS
    }


def _totals_refresh(*, now: dt.datetime) -> OverviewTotals:
    from profiles.selectors import test_profiles_q

    started = time.perf_counter()
    # One pass over profiles: every figure is a FILTER of the same aggregate.
    figures = Profile.objects.aggregate(
        profiles=Count("pk"),
        identified=Count("pk", filter=Q(identified=True)),
        test_profiles=Count("pk", filter=test_profiles_q()),
        **{
            f"reach_{channel}": Count("pk", filter=condition)
            for channel, condition in _reachable_conditions().items()
        },
    )
    reachable = {channel: figures.pop(f"reach_{channel}") for channel in CHANNEL_KEYS}
    totals, _ = OverviewTotals.objects.update_or_create(
        id=1,
        defaults={
            **figures,
            "reachable": reachable,
            "computed_at": now,
            "duration_ms": int((time.perf_counter() - started) * 1000),
        },
    )
    return totals


def _days_to_count(*, today: dt.date) -> list[dt.date]:
    """Days of the window never counted, or last counted before they were final."""
    window = overview_window(today=today)
    final = {
        day
        for day, computed_at in OverviewDay.objects.filter(day__in=window).values_list(
            "day", "computed_at"
        )
        if computed_at >= day_bounds(day)[1] + FINAL_AFTER
    }
    return [day for day in window if day not in final]


def _days_refresh(*, days: list[dt.date], now: dt.datetime) -> int:
    """Count new profiles, active profiles and events for `days` in one statement per
    table, upserted (a second run rewrites the same rows)."""
    if not days:
        return 0
    low, high = day_bounds(min(days))[0], day_bounds(max(days))[1]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_overviewday (day, new_profiles, active_profiles, events,
                                              computed_at)
            SELECT d.day, COALESCE(n.new_profiles, 0), COALESCE(a.active_profiles, 0),
                   COALESCE(a.events, 0), %(now)s
              FROM unnest(%(days)s::date[]) AS d(day)
              LEFT JOIN (SELECT (created_at AT TIME ZONE %(zone)s)::date AS day,
                                count(*) AS new_profiles
                           FROM profiles_profile
                          WHERE created_at >= %(low)s AND created_at < %(high)s
                          GROUP BY 1) n ON n.day = d.day
              LEFT JOIN (SELECT (ts AT TIME ZONE %(zone)s)::date AS day,
                                count(DISTINCT profile_id) AS active_profiles,
                                count(*) AS events
                           FROM profiles_event
                          WHERE ts >= %(low)s AND ts < %(high)s
                          GROUP BY 1) a ON a.day = d.day
            ON CONFLICT (day) DO UPDATE
               SET new_profiles = EXCLUDED.new_profiles,
                   active_profiles = EXCLUDED.active_profiles,
                   events = EXCLUDED.events,
                   computed_at = EXCLUDED.computed_at
            """,
            {"days": days, "zone": settings.TIME_ZONE, "low": low, "high": high, "now": now},
        )
        return cursor.rowcount


def overview_refresh(*, now: dt.datetime | None = None) -> OverviewTotals:
    """Recount the overview: the totals, and every day of the window that is not final.

    Idempotent (upserts); old days beyond the window are deleted. Takes an advisory
    lock so two refreshes (beat, and one asked for by hand) never count at once."""
    now = now or timezone.now()
    today = timezone.localdate(now, overview_zone())
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('profiles.overview_refresh'))")
        _days_refresh(days=_days_to_count(today=today), now=now)
        OverviewDay.objects.filter(day__lt=overview_window(today=today)[0]).delete()
        return _totals_refresh(now=now)
