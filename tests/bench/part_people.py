"""Part 3: Find People and the profile page, server time in-process.

Django's test Client, logged in as a superuser, calls the views against the
bench database (no network, no browser): the figures are the time to run the
view, its queries and its template. Each case is requested several times after
a warm-up; p50 and p95 are printed.

- Find People: an exact identity lookup (random seeded identities), a name
  prefix (three letters of random seeded names), a filter (identified, has email,
  seen within 30 days, Customer Type = Gold);
- the profile page of a profile with 100,000 events (given here once, through ingest,
  when no profile has that many), and the
  htmx page of its older events (the inline load-more);
- the home overview `/` (after one run of the beat task that counts it, timed too);
- Find People's match count: a search that matches more than a page loads its count
  after the results (htmx, `/people/count/`, exact up to 10,000), timed on its own; a
  broad filter (has email) matches far more and gets the estimate.
"""

from __future__ import annotations

import html
import re
import statistics
import time
from urllib.parse import urlencode

from tests.bench import BenchContext, Figure

PART = "people"
HEAVY_EVENTS = 100_000
HEAVY_DAYS = 365
TARGET = "p95 ≤ 100 ms"
EVENT_NAMES = ["Product Viewed", "Added To Cart", "Charged", "Searched", "Screen Viewed",
               "Video Watched", "Article Read", "Shared"]  # fmt: skip


def _heavy_profile_ct_id() -> str:
    """A profile with ≥ 100,000 events; gives an identified profile that many when none has
    (through ingest, as an app's uploads would)."""
    from django.db import connection

    from profiles.ingest import ingest_records
    from profiles.models import Source
    from profiles.services import Actor

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ct_id FROM profiles_profile WHERE event_count >= %s ORDER BY id LIMIT 1",
            [HEAVY_EVENTS],
        )
        row = cursor.fetchone()
        if row:
            return row[0]
        cursor.execute(
            "SELECT p.ct_id, p.event_count, i.value FROM profiles_profile p"
            " JOIN profiles_identifier i ON i.profile_id = p.id AND i.kind = 'identity'"
            " WHERE p.identified ORDER BY p.id LIMIT 1"
        )
        ct_id, have, identity = cursor.fetchone()
    missing = HEAVY_EVENTS - have
    started = time.perf_counter()
    # The events are spread over the past year, newest now.
    now, step = time.time(), HEAVY_DAYS * 86400 / missing
    actor = Actor(Source.SYSTEM, label="Benchmark")
    for first in range(0, missing, 5000):
        records = [{"type": "event", "identity": identity, "ts": int(now - n * step),
                    "evtName": EVENT_NAMES[n % len(EVENT_NAMES)],
                    "evtData": {"sku": f"SKU-{n % 997}", "n": n}}
                   for n in range(first, min(first + 5000, missing))]  # fmt: skip
        refused = ingest_records(records, actor=actor, may_hold_unstorable=False).refusals
        if refused:
            reason = next(iter(refused.values()))
            raise RuntimeError(f"the heavy profile's events were refused: {reason}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_event")
    print(
        f"{PART:<10} gave profile {ct_id} {missing:,} more events "
        f"in {time.perf_counter() - started:,.1f} s",
        flush=True,
    )
    return ct_id


def _samples(sql: str, count: int) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, [count])
        return [row[0] for row in cursor.fetchall()]


def _client():
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.filter(username="bench-people").first() or User.objects.create_superuser(
        "bench-people", "bench-people@example.com", None
    )
    client = Client()
    client.force_login(user)
    return client


def _time(client, urls: list[str], headers: dict[str, str] | None = None) -> list[float]:
    """Milliseconds per request; the first requests warm caches and are not kept."""
    for url in urls[:3]:
        client.get(url, headers=headers or {})
    timings = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    return timings


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _figures(label: str, timings: list[float]) -> list[Figure]:
    return [
        Figure(PART, f"{label}: p50", statistics.median(timings), "ms"),
        Figure(PART, f"{label}: p95 ({len(timings)} requests)", _p95(timings), "ms", TARGET),
    ]


def _count_figures(client, label: str, urls: list[str]) -> list[Figure]:
    """The match count a search's page loads after its results (htmx), when more than a
    page matches; a page that shows its last page has counted its rows already."""
    count_urls = []
    for url in urls:
        found = re.search(r'hx-get="(/people/count/\?[^"]*)"', client.get(url).content.decode())
        if found:
            count_urls.append(html.unescape(found.group(1)))
    if not count_urls:
        return [
            Figure(PART, f"Find People, {label}: counted on the page (one page of matches)", 0, "")
        ]
    return _figures(
        f"Find People, {label}: its count (htmx, {len(count_urls)} of {len(urls)} searches)",
        _time(client, count_urls, headers={"HX-Request": "true"}),
    )


def run(ctx: BenchContext) -> list[Figure]:
    requests = 15 if ctx.quick else 30
    client = _client()
    people = "/people/?"
    # TABLESAMPLE keeps the picking cheap on a million rows.
    identities = _samples(
        "SELECT value FROM profiles_identifier TABLESAMPLE SYSTEM (5)"
        " WHERE kind = 'identity' LIMIT %s",
        requests,
    )
    names = _samples(
        "SELECT name FROM profiles_profile TABLESAMPLE SYSTEM (5) WHERE length(name) >= 3 LIMIT %s",
        requests,
    )
    if not identities or not names:
        return [Figure(PART, "no seeded identities or names to search for", 0, "")]
    identity_urls = [people + urlencode({"q": value}) for value in identities]
    prefix_urls = [people + urlencode({"q": name[:3].lower()}) for name in names]
    filters = {"type": "identified", "has_email": "on", "seen_within": "30",
               "prop": "Customer Type", "value": "Gold"}  # fmt: skip
    filter_urls = [people + urlencode(filters)] * requests

    figures: list[Figure] = []
    figures += _figures("Find People, identity lookup", _time(client, identity_urls))
    figures += _figures(
        "Find People, identity lookup (htmx partial)",
        _time(client, identity_urls, headers={"HX-Request": "true"}),
    )
    figures += _figures("Find People, name prefix (3 letters)", _time(client, prefix_urls))
    figures += _count_figures(client, "name prefix", prefix_urls)
    figures += _figures("Find People, filter (4 conditions)", _time(client, filter_urls))
    figures += _count_figures(client, "filter", filter_urls)
    broad_urls = ["/people/count/?" + urlencode({"has_email": "on"})] * requests
    counted = client.get(broad_urls[0], headers={"HX-Request": "true"}).content.decode()
    kind = "estimated" if "About " in counted else "exact"
    figures += _figures(
        f"Find People count, has email ({kind}, > 10,000)",
        _time(client, broad_urls, headers={"HX-Request": "true"}),
    )

    from profiles.overview import overview_refresh

    started = time.perf_counter()
    overview_refresh()
    figures.append(
        Figure(PART, "overview refresh (the beat task), once", time.perf_counter() - started, "s")
    )
    figures += _figures("home overview /", _time(client, ["/"] * requests))

    ct_id = _heavy_profile_ct_id()
    profile_url = f"/people/{ct_id}/"
    figures += _figures(
        f"profile page, {HEAVY_EVENTS:,} events", _time(client, [profile_url] * requests)
    )
    html = client.get(profile_url).content.decode()
    older = re.search(r'href="(/people/[^"]+/events/\?before=[0-9_]+)"', html)
    if older:
        figures += _figures(
            "profile page, older events (htmx, 50)",
            _time(client, [older.group(1)] * requests, headers={"HX-Request": "true"}),
        )
    return figures
