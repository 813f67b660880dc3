"""Reads of the profile store, shared by the API, the pages and segments."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate
from django.db.models.lookups import StartsWith
from django.utils import timezone

from profiles.models import (
    TEST_PROFILE_PROPERTY,
    TEST_PROFILE_VALUE,
    Device,
    Event,
    Identifier,
    OverviewDay,
    OverviewTotals,
    Profile,
    PropertyChange,
    PropertyDefinition,
    PropertyScope,
)
from profiles.properties import DEFAULT_PROPERTIES, YES_NO, RecordError, normalize_identifier
from profiles.rules.reachability import ADDRESS_CHANNELS, CHANNEL_KEYS, PUSH_FLAG, push_verdict


def years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` earlier; 29 February falls back to the 28th."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def age_on(dob: dt.date, day: dt.date) -> int:
    """Completed years on `day` (PostgreSQL's age(): a 29 February birthday turns on 1 March)."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def age_q(*, minimum: int | None = None, maximum: int | None = None,
          today: dt.date | None = None) -> Q:  # fmt: skip
    """A filter on DOB meaning "age between minimum and maximum", both inclusive.

    Age is never stored: the bounds become a DOB range, which uses the DOB
    index. age >= n  <=>  dob <= today - n years;  age <= n  <=>  dob > today - (n+1) years.
    """
    today = today or timezone.localdate()
    condition = Q(dob__isnull=False)
    if minimum is not None:
        condition &= Q(dob__lte=years_before(today, minimum))
    if maximum is not None:
        condition &= Q(dob__gt=years_before(today, maximum + 1))
    return condition


def test_profiles_q() -> Q:
    return Q(custom__contains={TEST_PROFILE_PROPERTY: TEST_PROFILE_VALUE})


def profile_get_by_identifier(*, kind: str, value: str) -> Profile | None:
    """The profile holding an identifier given in any accepted format."""
    try:
        normalized = normalize_identifier(kind, value)
    except RecordError:
        return None
    identifier = (
        Identifier.objects.select_related("profile").filter(kind=kind, value=normalized).first()
    )
    return identifier.profile if identifier else None


# --- one profile with its identifiers and devices, in three plain queries --------------
# (GET /1/profile.json: the ORM's query building cost more than the queries themselves.)


def _columns(model: type, alias: str) -> str:
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)


def _instances(model: type, rows: list[tuple]) -> list:
    """Model instances from raw rows holding the model's concrete fields in order."""
    fields = model._meta.concrete_fields
    names = [field.attname for field in fields]
    converters = [
        (index, field.from_db_value)
        for index, field in enumerate(fields)
        if hasattr(field, "from_db_value")
    ]
    instances = []
    for row in rows:
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index], None, connection)
        instances.append(model.from_db(connection.alias, names, values))
    return instances


def profile_with_relations(
    *, kind: str, value: str
) -> tuple[Profile, list[Identifier], list[Device]] | None:
    """The profile an identifier (kind identity/email/…) or an objectId names, with its
    identifiers and devices (unordered), as profile_get_by_identifier and a device lookup
    (then the ct_id) find it. Three queries; a merged profile's `linked_to` loads lazily."""
    profile_columns = _columns(Profile, "p")
    with connection.cursor() as cursor:
        if kind == "objectId":
            cursor.execute(
                f"SELECT {profile_columns} FROM profiles_device d"
                " JOIN profiles_profile p ON p.id = d.profile_id"
                " WHERE d.object_id = %s ORDER BY d.id LIMIT 1",
                [value],
            )
            row = cursor.fetchone()
            if row is None:
                cursor.execute(
                    f"SELECT {profile_columns} FROM profiles_profile p"
                    " WHERE p.ct_id = %s ORDER BY p.id LIMIT 1",
                    [value],
                )
                row = cursor.fetchone()
        else:
            try:
                normalized = normalize_identifier(kind, value)
            except RecordError:
                return None
            cursor.execute(
                f"SELECT {profile_columns} FROM profiles_identifier i"
                " JOIN profiles_profile p ON p.id = i.profile_id"
                " WHERE i.kind = %s AND i.value = %s ORDER BY i.id LIMIT 1",
                [kind, normalized],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        (profile,) = _instances(Profile, [row])
        cursor.execute(
            f"SELECT {_columns(Identifier, 'i')} FROM profiles_identifier i"
            " WHERE i.profile_id = %s",
            [profile.pk],
        )
        identifiers = _instances(Identifier, cursor.fetchall())
        cursor.execute(
            f"SELECT {_columns(Device, 'd')} FROM profiles_device d WHERE d.profile_id = %s",
            [profile.pk],
        )
        devices = _instances(Device, cursor.fetchall())
    return profile, identifiers, devices


def profile_property_types() -> dict[str, str]:
    return dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE).values_list("name", "type")
    )


# --- Find People and the profile page --------------------------------------------
# (Reads for profiles/views.py; every function runs a fixed number of queries.)

PEOPLE_ORDER = (F("last_seen").desc(nulls_last=True), F("id").desc())  # index profile_last_seen


def people_list() -> QuerySet[Profile]:
    """Everyone, most recently seen first, with their identifiers prefetched."""
    return Profile.objects.order_by(*PEOPLE_ORDER).prefetch_related(
        Prefetch("identifiers", queryset=Identifier.objects.order_by("kind", "value"))
    )


def people_exact_match_ids(*, query: str) -> list[int]:
    """Ids of the profiles that hold `query` exactly, in one indexed query: as an
    identity/FBID/GPID, an email or phone (in any accepted format), a CleverTap ID
    or a device objectId."""
    query = query.strip()
    if not query:
        return []
    held = Q(kind__in=["identity", "fbid", "gpid"], value=query)
    for kind in ("email", "phone"):
        if kind == "email" and "@" not in query:
            continue
        try:
            held |= Q(kind=kind, value=normalize_identifier(kind, query))
        except RecordError:
            continue
    by_identifier = Identifier.objects.filter(held).values_list("profile_id")
    by_device = Device.objects.filter(object_id=query, profile__isnull=False).values_list(
        "profile_id"
    )
    by_ct_id = Profile.objects.filter(ct_id=query).values_list("id")
    return sorted({row[0] for row in by_identifier.union(by_device, by_ct_id)})


def people_search_q(*, query: str) -> Q:
    """Exact identifier matches, or a case-insensitive name prefix (index on UPPER(name)).
    The prefix says the name is not empty, which no prefix matches anyway: listed in
    last-seen order, the search then walks only the people with a name or an identifier
    (index profile_known_last_seen), not the nameless visitors of a site's SDK."""
    query = query.strip()
    named = Q(name__istartswith=query) & ~Q(name="")
    return Q(pk__in=people_exact_match_ids(query=query)) | named


def has_push_q() -> Q:
    """At least one device with a push token (the platform ID)."""
    return Q(Exists(Device.objects.filter(profile=OuterRef("pk")).exclude(push_token="")))


def profile_property_condition(*, name: str, value: str) -> Q:
    """`name` = `value` for a default property (value cleaned like ingestion) or a
    custom one (typed by its PropertyDefinition). Raises RecordError for a value
    the property cannot hold."""

    name, value = name.strip(), value.strip()
    default = DEFAULT_PROPERTIES.get(name.lower())
    if default is not None:
        return Q(**{default.field: default.clean(value)})
    type_ = profile_property_types_for([name]).get(name, "")
    if type_ == "number":
        try:
            number = float(value)
        except ValueError:
            raise RecordError(555, f"{name} holds numbers: “{value}” is not one.") from None
        if not math.isfinite(number):
            raise RecordError(555, f"{name} holds finite numbers: “{value}” is not one.")
        return Q(custom__contains={name: int(number) if number.is_integer() else number})
    if type_ == "boolean":
        if value.lower() not in YES_NO:
            raise RecordError(555, f"{name} is true or false: “{value}” is neither.")
        return Q(custom__contains={name: YES_NO[value.lower()]})
    if type_ == "list":
        return Q(custom__contains={name: [value]})
    if type_ == "date":
        # Dates are ISO-8601 UTC text: "2024-01-31" matches that whole day.
        return Q(StartsWith(KeyTextTransform(name, "custom"), value))
    return Q(custom__contains={name: value})


def profile_property_types_for(names: list[str]) -> dict[str, str]:
    return dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE, name__in=names).values_list(
            "name", "type"
        )
    )


def profile_property_names() -> list[str]:
    """Custom profile property names, for the filter's suggestions."""
    return list(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE)
        .order_by("name")
        .values_list("name", flat=True)[:300]
    )


def profile_get_for_page(*, ct_id: str) -> Profile | None:
    """The profile (with the person it is linked to) and its identifiers and devices
    (three queries)."""
    return (
        Profile.objects.filter(ct_id=ct_id)
        .select_related("linked_to")
        .prefetch_related(
            Prefetch("identifiers", queryset=Identifier.objects.order_by("kind", "value")),
            Prefetch(
                "devices", queryset=Device.objects.order_by(F("last_seen").desc(nulls_last=True))
            ),
        )
        .first()
    )


def profile_linked_anonymous_ids(*, profile: Profile, limit: int = 50) -> list[int]:
    """Anonymous profiles left behind by scenario 2, linked to `profile`."""
    return [pk for pk, _ in profile_linked_anonymous_refs(profile=profile, limit=limit)]


def profile_linked_anonymous_refs(*, profile: Profile, limit: int = 50) -> list[tuple[int, str]]:
    """(id, ct_id) of the anonymous profiles linked to `profile`, for its timeline and
    the links to them."""
    return list(
        Profile.objects.filter(linked_to=profile).order_by("id").values_list("id", "ct_id")[:limit]
    )


# The event-name picker reads the names of this many latest events at most (besides
# the activity chart's names), so a profile with millions of events costs no more than
# one with a thousand.
EVENT_NAMES_SCANNED = 1_000


def profile_event_names(*, profile_ids: list[int]) -> list[str]:
    """Distinct names among the latest EVENT_NAMES_SCANNED events of these profiles
    (one index range scan of the timeline index, cut short). The profile page adds
    the names of its activity chart (the last 90 days), which it has read anyway."""
    if not profile_ids:
        return []
    with connection.cursor() as cursor:
        # One LATERAL index range scan per profile (= ANY over the array would lose the
        # index order and sort every event of the profile).
        cursor.execute(
            """
            SELECT DISTINCT latest.name
              FROM unnest(%s::bigint[]) AS p(id)
             CROSS JOIN LATERAL (
                   SELECT e.name FROM profiles_event e WHERE e.profile_id = p.id
                    ORDER BY e.ts DESC, e.id DESC LIMIT %s
             ) latest
             ORDER BY 1
            """,
            [profile_ids, EVENT_NAMES_SCANNED],
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class TimelineCursor:
    """A keyset position in a timeline: events strictly older than (ts, id)."""

    ts: dt.datetime
    id: int

    # Whole microseconds since the epoch: exact, unlike float seconds.
    EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

    def encode(self) -> str:
        return f"{(self.ts - self.EPOCH) // dt.timedelta(microseconds=1)}_{self.id}"

    @classmethod
    def decode(cls, raw: str | None) -> TimelineCursor | None:
        try:
            micros, _, event_id = (raw or "").partition("_")
            moment = cls.EPOCH + dt.timedelta(microseconds=int(micros))
            return cls(ts=moment, id=int(event_id))
        except (ValueError, OverflowError):
            return None


def profile_timeline(
    *,
    profile_ids: list[int],
    before: TimelineCursor | None = None,
    limit: int = 50,
    name: str = "",
) -> tuple[list[Event], TimelineCursor | None]:
    """One page of events of these profiles (only those called `name`, when given),
    newest first, and the cursor of the next page (None at the end). One query: a
    UNION ALL of one index range scan (profile, ts, id) per profile, merged and cut
    to `limit` + 1."""
    parts = []
    for profile_id in profile_ids:
        events = Event.objects.filter(profile_id=profile_id)
        if name:
            events = events.filter(name=name)
        if before is not None:
            events = events.filter(
                Q(ts__lt=before.ts) | Q(ts=before.ts, id__lt=before.id), ts__lte=before.ts
            )
        parts.append(events.order_by("-ts", "-id")[: limit + 1])
    if not parts:
        return [], None
    if len(parts) == 1:
        rows = list(parts[0])
    else:
        rows = list(parts[0].union(*parts[1:], all=True).order_by("-ts", "-id")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, TimelineCursor(ts=rows[-1].ts, id=rows[-1].id)


def profile_activity(
    *, profile: Profile, days: int = 90, today: dt.date | None = None
) -> list[tuple[dt.date, str, int]]:
    """(day, event name, count) over the last `days` days, UTC, for the profile's
    own events only (linked anonymous events never count). One GROUP BY over an
    index range scan on (profile, ts)."""
    today = today or timezone.now().date()
    start = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time.min, tzinfo=dt.UTC)
    rows = (
        Event.objects.filter(profile=profile, ts__gte=start)
        .annotate(day=TruncDate("ts", tzinfo=dt.UTC))
        .values_list("day", "name")
        .annotate(count=Count("*"))
        .order_by()  # a hash aggregate; sorting the few groups here is cheaper
    )
    return sorted(rows)


def profile_changes(*, profile: Profile, limit: int = 50) -> list[PropertyChange]:
    return list(
        PropertyChange.objects.filter(profile=profile)
        .select_related("actor")
        .order_by("-changed_at", "-id")[:limit]
    )


@dataclass(frozen=True)
class Reachability:
    channel: str
    reachable: bool
    reason: str  # why not, or how


def profile_reachability(*, profile: Profile, devices: list[Device]) -> list[Reachability]:
    """Can a campaign reach the person on each channel, and if not, why not
    (the rule: profiles.rules.reachability, shared with segments)."""
    rows = [
        Reachability(
            channel.label,
            *channel.verdict(getattr(profile, channel.address), getattr(profile, channel.flag)),
        )
        for channel in ADDRESS_CHANNELS
    ]
    push = push_verdict(
        getattr(profile, PUSH_FLAG),
        ((bool(device.push_token), device.push_enabled) for device in devices),
    )
    return [*rows, Reachability("Push", *push)]


def profile_property_groups(
    *, profile: Profile, today: dt.date | None = None
) -> dict[str, list[tuple[str, object]]]:
    """Default, Custom and System properties as (label, value) pairs, in display order.
    Age is computed from DOB here, never stored."""

    today = today or timezone.localdate()
    default = [(prop.key, getattr(profile, prop.field)) for prop in DEFAULT_PROPERTIES.values()]
    custom = sorted(profile.custom.items(), key=lambda item: item[0].lower())
    system = [
        ("Age", age_on(profile.dob, today) if profile.dob else None),
        ("Profile type", profile.profile_type.capitalize()),
        ("First seen", profile.first_seen),
        ("Last seen", profile.last_seen),
        ("Events", profile.event_count),
        ("Last platform", profile.last_platform),
        ("Last device", profile.last_device),
        ("Last location", profile.last_location),
        ("Created", profile.created_at),
    ]
    return {"Default": default, "Custom": custom, "System": system}


def profile_export_events(*, profile_ids: list[int]) -> Iterator[Event]:
    """Every event of these profiles, oldest first, streamed from the database."""
    return (
        Event.objects.filter(profile_id__in=profile_ids)
        .select_related("device")
        .order_by("profile_id", "ts", "id")
        .iterator(chunk_size=2000)
    )


def profile_export_changes(*, profile_ids: list[int]) -> Iterator[PropertyChange]:
    return (
        PropertyChange.objects.filter(profile_id__in=profile_ids)
        .select_related("actor")
        .order_by("changed_at", "id")
        .iterator(chunk_size=2000)
    )


def profile_linked_anonymous(*, profile: Profile) -> list[Profile]:
    """All anonymous profiles linked to `profile`, with their devices (for the export)."""
    return list(
        Profile.objects.filter(linked_to=profile).prefetch_related("devices").order_by("id")
    )


# --- the home overview ---------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    totals: OverviewTotals | None  # None until the first refresh ran
    profiles_estimate: int  # the planner's row estimate, for the page before that
    days: list[OverviewDay]  # the window, oldest first, a zero row for a missing day
    events_today: int
    events_7_days: int
    reachable: list[tuple[str, int]]  # (channel label, profiles)
    days_as_of: dt.datetime | None


def table_row_estimate(table: str) -> int:
    """PostgreSQL's own estimate of a table's rows (pg_class.reltuples, kept by
    autovacuum/ANALYZE): instant, and labelled "about" wherever it is shown."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return max(int(row[0]), 0) if row else 0


def overview_get(*, today: dt.date) -> Overview:
    """The overview as last counted by profiles.overview.overview_refresh: three small
    queries whatever the number of profiles and events."""
    from profiles.overview import overview_window

    window = overview_window(today=today)
    totals = OverviewTotals.objects.filter(id=1).first()
    stored = {row.day: row for row in OverviewDay.objects.filter(day__in=window)}
    days = [stored.get(day) or OverviewDay(day=day, computed_at=timezone.now()) for day in window]
    labels = {channel.key: channel.label for channel in ADDRESS_CHANNELS} | {"push": "Push"}
    counted = totals.reachable if totals else {}
    reachable = [(labels[key], counted[key]) for key in CHANNEL_KEYS if key in counted]
    return Overview(
        totals=totals,
        profiles_estimate=0 if totals else table_row_estimate("profiles_profile"),
        days=days,
        events_today=days[-1].events,
        events_7_days=sum(day.events for day in days[-7:]),
        reachable=reachable,
        days_as_of=max((row.computed_at for row in stored.values()), default=None),
    )


# --- Find People's match count -----------------------------------------------------------


@dataclass(frozen=True)
class MatchCount:
    value: int
    exact: bool  # False: the planner's estimate, shown as "about N"


def queryset_row_estimate(queryset: QuerySet) -> int:
    """The planner's estimate of the rows a query returns (EXPLAIN, not run)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(int(plan[0]["Plan"]["Plan Rows"]), 0)


ESTIMATE_ONLY_OVER = 5  # times the cap


def people_match_count(
    *, queryset: QuerySet[Profile], exact_up_to: int, timeout_ms: int
) -> MatchCount:
    """How many profiles a search finds: exact when counting is cheap (at most
    `exact_up_to` rows, within `timeout_ms`), the planner's estimate otherwise.

    A search the planner expects to match over ESTIMATE_ONLY_OVER times the cap is
    not counted at all (EXPLAIN only). The capped count reads at most `exact_up_to` + 1
    rows; a statement timeout in a savepoint stops a count that would scan too far (a
    rare filter over a million
    profiles), and the estimate answers instead."""
    # Far more than the cap by the planner's own estimate: counting would only confirm
    # "more than exact_up_to" after reading that many rows, so the estimate answers.
    estimate = queryset_row_estimate(queryset)
    if estimate > ESTIMATE_ONLY_OVER * exact_up_to:
        return MatchCount(value=estimate, exact=False)
    capped = queryset.order_by().values("pk")[: exact_up_to + 1]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Local to this transaction (or savepoint): put back before leaving it, for
            # a caller's outer transaction.
            cursor.execute(
                "SELECT current_setting('statement_timeout'),"
                " set_config('statement_timeout', %s, true)",
                [f"{int(timeout_ms)}ms"],
            )
            previous = cursor.fetchone()[0]
            counted = capped.count()
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError as error:
        if not isinstance(error.__cause__, psycopg.errors.QueryCanceled):
            raise
        counted = exact_up_to + 1
    if counted <= exact_up_to:
        return MatchCount(value=counted, exact=True)
    return MatchCount(value=max(estimate, exact_up_to + 1), exact=False)
