"""`python manage.py seed_demo --profiles N --events-per-profile M`: realistic demo data, fast.

Set-based: each batch of profiles is generated in Python and written with
COPY (profiles, devices, identifiers), then its events are generated inside
PostgreSQL by one INSERT … SELECT over generate_series, so 10,000,000 events
never cross the wire. See `Command.help` for what the data looks like.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from profiles.management import demo_data as data
from profiles.models import TEST_PROFILE_PROPERTY, TEST_PROFILE_VALUE

HELP = """\
Generate realistic demo data (set-based with COPY; appendable: every run adds
--profiles more, never colliding with what is there).

What it makes, per run of N profiles:
  * ~70% identified profiles. Each holds the identity "user-<profile id>"
    (predictable: pick any identified profile's id to address it), most an
    e-mail "<name-ish><profile id>@example.com|org|net" and a phone number
    (valid E.164 mobiles in US, GB, IN, DE, BR, MX, ES, NG; unique by
    construction while profile ids stay below 10,000,000). An identity that
    someone already holds is skipped for that profile, not an error.
  * ~30% anonymous profiles (no identifiers); about one in six of them is
    linked to an identified profile (scenario 2: its device now maps to that
    profile; its own events stay on the anonymous profile).
  * A few test profiles (custom ct_is_test_user = "Yes").
  * Default properties (name, gender, DOB for ages 13-80 incl. some
    29 February birthdays, language, tz, employed/education/married, MSG-*),
    custom properties of every type ("Customer Type", "Score", "Premium",
    "Signup Date", "Interests") and their PropertyDefinition rows.
  * Devices (Android/iOS/Web, random CleverTap-style object ids, push tokens,
    some with push disabled) and about M events per profile (long-tailed) of
    13 kinds over the past year ("Product Viewed", "Charged" with Amount and
    Items, "Plan Purchased" with plan, …), with EventName rows.
    event_count / first_seen / last_seen match the events exactly.

How: batches of --batch-size profiles, each one transaction. Profiles, devices
and identifiers are written with COPY; events by one INSERT ... SELECT over
generate_series inside PostgreSQL. When the role may (superuser) and no
unknown trigger exists, each batch runs with session_replication_role =
replica: foreign-key checks and the `identified` trigger are skipped because
rows only reference ids the batch reserved and the seed sets `identified`
itself (--checked keeps them on). Ends with VACUUM (ANALYZE).
"""

PROFILE_COLUMNS = (
    "id", "ct_id", "identified", "linked_to_id", "name", "email", "phone", "gender", "dob",
    "language", "tz", "photo", "employed", "education", "married", "msg_email", "msg_push",
    "msg_sms", "msg_whatsapp", "custom", "first_seen", "last_seen", "event_count",
    "last_platform", "last_device", "last_location", "created_at", "updated_at",
)  # fmt: skip
DEVICE_COLUMNS = (
    "id", "object_id", "profile_id", "platform", "make", "model", "push_token", "push_enabled",
    "first_seen", "last_seen",
)  # fmt: skip

IDENTIFIED_SHARE = 0.70
LINKED_SHARE_OF_ANONYMOUS = 1 / 6
TEST_PROFILE_SHARE = 0.001
SECOND_DEVICE_SHARE = 0.2
NO_EVENTS_SHARE = 0.03  # identified people known only from an upload: no device, no events
HISTORY_DAYS = 365
EDUCATION = ("School", "College", "Graduate")


@dataclass
class Batch:
    """One batch's rows, ready for COPY."""

    profiles: list[tuple] = field(default_factory=list)
    devices: list[tuple] = field(default_factory=list)
    identifiers: list[tuple] = field(default_factory=list)
    # (profile_id, device_id, second_device_id, events, first_seen, last_seen)
    event_plan: list[tuple] = field(default_factory=list)
    identified: int = 0
    linked: int = 0
    test: int = 0
    phones: int = 0
    events: int = 0


class Generator:
    """Builds batches of rows from a seeded random source (pure Python, no I/O)."""

    def __init__(self, *, rng: random.Random, events_per_profile: int, now: dt.datetime) -> None:
        self.rng = rng
        # Opaque ids (ct_id, object ids, push tokens) come from an unseeded source:
        # two runs with the same --seed must still never collide.
        self.id_rng = random.Random()
        self.events_per_profile = events_per_profile
        self.now = now
        self.today = now.date()
        self.countries = list(data.COUNTRIES)
        self.country_weights = [country.weight for country in data.COUNTRIES]
        # Profiles with events get slightly more so the total stays ~N*M.
        self.mean_events = events_per_profile / (1 - IDENTIFIED_SHARE * NO_EVENTS_SHARE)

    def _event_count(self) -> int:
        if self.events_per_profile <= 0:
            return 0
        if self.mean_events <= 1:
            return 1
        # Long-tailed (exponential) like real usage, capped.
        count = 1 + int(self.rng.expovariate(1 / (self.mean_events - 0.5)))
        return min(count, 50 * self.events_per_profile)

    def _seen(self, count: int) -> tuple[dt.datetime | None, dt.datetime | None]:
        if count == 0:
            return None, None
        rng = self.rng
        first = self.now - dt.timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
        if count == 1:
            return first, first
        # Recent activity is more likely than old.
        span = (self.now - first).total_seconds()
        last = self.now - dt.timedelta(seconds=int(span * rng.random() ** 2))
        return first, max(last, first + dt.timedelta(seconds=count))

    def _device(self, device_id: int, profile_id: int, first, last) -> tuple[tuple, str, str]:
        rng = self.rng
        platform = rng.choice(data.PLATFORMS)
        make, model = rng.choice(data.DEVICE_MODELS[platform])
        has_token = rng.random() < (0.5 if platform == "Web" else 0.9)
        token = data.push_token(self.id_rng, platform) if has_token else ""
        enabled = (rng.random() < 0.85) if has_token else (False if rng.random() < 0.5 else None)
        object_id = data.device_object_id(self.id_rng, platform)
        row = (device_id, object_id, profile_id, platform, make, model, token, enabled, first, last)
        return row, platform, " ".join(filter(None, (make, model)))

    def batch(self, profile_ids: list[int], next_device_id: Callable[[], int]) -> Batch:
        """Rows for these (already reserved) profile ids; devices take ids from the callable."""
        rng = self.rng
        out = Batch()
        kinds = ["identified" if rng.random() < IDENTIFIED_SHARE else "anonymous"
                 for _ in profile_ids]  # fmt: skip
        identified_ids = [pid for pid, kind in zip(profile_ids, kinds, strict=True)
                          if kind == "identified"]  # fmt: skip
        first_identified = identified_ids[0] if identified_ids else None
        for profile_id, kind in zip(profile_ids, kinds, strict=True):
            identified = kind == "identified"
            country = rng.choices(self.countries, self.country_weights)[0]
            culture_name = (country.cultures[0] if rng.random() < 0.75
                            else rng.choice(country.cultures))  # fmt: skip
            culture = data.CULTURES[culture_name]
            count = self._event_count()
            if identified and rng.random() < NO_EVENTS_SHARE:
                count = 0
            first, last = self._seen(count)
            linked_to = None
            if not identified and identified_ids and rng.random() < LINKED_SHARE_OF_ANONYMOUS:
                linked_to = rng.choice(identified_ids)
                out.linked += 1

            platform = device_label = ""
            device_id = second_device_id = None
            if count:
                device_id = next_device_id()
                # Scenario 2: the anonymous profile's device logged in as the
                # linked person, so the device now maps to that profile.
                row, platform, device_label = self._device(
                    device_id, linked_to or profile_id, first, last
                )
                out.devices.append(row)
                if identified and count > 1 and rng.random() < SECOND_DEVICE_SHARE:
                    second_device_id = next_device_id()
                    second_last = first + (last - first) * rng.random()
                    out.devices.append(
                        self._device(second_device_id, profile_id, first, second_last)[0]
                    )
                out.event_plan.append((profile_id, device_id, second_device_id, count, first, last))
                out.events += count

            gender = rng.choices("MFOU", (48, 48, 2, 2))[0]
            first_name = rng.choice(
                culture.female if gender == "F" or (gender in "OU" and rng.random() < 0.5)
                else culture.male
            )  # fmt: skip
            last_name = rng.choice(culture.last)
            created = first or self.now - dt.timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
            name = email = phone = ""
            dob = employed = married = None
            education = ""
            msg = [None, None, None, None]
            if identified:
                out.identified += 1
                name = f"{first_name} {last_name}"
                out.identifiers.append((profile_id, "identity", f"user-{profile_id}", created))
                if rng.random() < 0.95:
                    email = data.email_for(first_name, last_name, profile_id, rng.randrange(12))
                    out.identifiers.append((profile_id, "email", email, created))
                if rng.random() < 0.8 and profile_id < data.PHONE_ID_LIMIT:
                    phone = data.phone_for(profile_id, country.code)
                    out.identifiers.append((profile_id, "phone", phone, created))
                    out.phones += 1
                if rng.random() < 0.85:
                    dob = data.birth_date(rng, self.today)
                employed = rng.choice((True, True, False, None))
                married = rng.choice((True, False, None))
                education = rng.choice((*EDUCATION, ""))
                msg = [rng.random() < 0.8 if email else None, rng.random() < 0.7,
                       rng.random() < 0.6 if phone else None,
                       rng.random() < 0.5 if phone else None]  # fmt: skip
            else:
                gender = gender if rng.random() < 0.1 else ""
                if rng.random() < 0.05:
                    dob = data.birth_date(rng, self.today)
                msg[1] = rng.random() < 0.6 if rng.random() < 0.5 else None
            custom = data.custom_properties(rng, created, identified=identified)
            if identified and (profile_id == first_identified or rng.random() < TEST_PROFILE_SHARE):
                custom[TEST_PROFILE_PROPERTY] = TEST_PROFILE_VALUE
                out.test += 1
            location = f"{rng.choice(country.cities)}, {country.code}" if count else ""
            out.profiles.append((
                profile_id, f"__{self.id_rng.getrandbits(128):032x}", identified, linked_to, name,
                email, phone, gender, dob, rng.choice(country.languages),
                rng.choice(country.time_zones), "", employed, education, married, *msg,
                json.dumps(custom, ensure_ascii=False),
                first, last, count, platform, device_label, location, created, last or created,
            ))  # fmt: skip
        return out


EVENTS_SQL = """
INSERT INTO profiles_event
    (profile_id, device_id, name, ts, properties, source, client_event_id, received_at)
WITH v AS (
    SELECT %(names)s::text[] AS names, %(versions)s::text[] AS versions,
           %(networks)s::text[] AS networks, %(products)s::text[] AS products,
           %(categories)s::text[] AS categories, %(prices)s::numeric[] AS prices,
           %(payment_modes)s::text[] AS payment_modes, %(search_terms)s::text[] AS terms,
           %(videos)s::text[] AS videos, %(screens)s::text[] AS screens,
           %(articles)s::text[] AS articles, %(channels)s::text[] AS channels,
           %(coupon_codes)s::text[] AS coupons, %(coupon_discounts)s::int[] AS discounts,
           %(plans)s::text[] AS plans, %(plan_prices)s::numeric[] AS plan_prices
)
SELECT p.profile_id,
       CASE WHEN p.second_device_id IS NOT NULL AND e.u < 0.3
            THEN p.second_device_id ELSE p.device_id END,
       e.name,
       e.ts,
       CASE e.name
         WHEN 'App Launched' THEN jsonb_build_object(
            'App Version', v.versions[1 + mod(e.k, cardinality(v.versions))],
            'Network', v.networks[1 + mod(e.k / 7, cardinality(v.networks))])
         WHEN 'Product Viewed' THEN jsonb_build_object(
            'Product', v.products[e.product], 'Category', v.categories[e.product],
            'Price', v.prices[e.product])
         WHEN 'Added To Cart' THEN jsonb_build_object(
            'Product', v.products[e.product], 'Category', v.categories[e.product],
            'Price', v.prices[e.product], 'Quantity', 1 + mod(e.k / 7, 3))
         WHEN 'Added To Wishlist' THEN jsonb_build_object(
            'Product', v.products[e.product], 'Category', v.categories[e.product])
         WHEN 'Charged' THEN (
            SELECT jsonb_build_object(
                'Amount', round(sum(item.price * item.quantity), 2),
                'Payment Mode', v.payment_modes[1 + mod(e.k / 11, cardinality(v.payment_modes))],
                'Items', jsonb_agg(jsonb_build_object(
                    'Product', item.product, 'Category', item.category,
                    'Price', item.price, 'Quantity', item.quantity)))
              FROM (SELECT v.products[pick.ix] AS product, v.categories[pick.ix] AS category,
                           v.prices[pick.ix] AS price, 1 + mod(e.k / (pick.j * 13), 3) AS quantity
                      FROM (SELECT j, 1 + mod(e.k + j * 7, cardinality(v.products)) AS ix
                              FROM generate_series(1, 1 + mod(e.k / 3, 3)) AS s(j)) AS pick
                   ) AS item)
         WHEN 'Searched' THEN jsonb_build_object(
            'Query', v.terms[1 + mod(e.k, cardinality(v.terms))],
            'Results', mod(e.k / 17, 240))
         WHEN 'Video Watched' THEN jsonb_build_object(
            'Title', v.videos[1 + mod(e.k, cardinality(v.videos))],
            'Duration', 30 + mod(e.k / 5, 1800), 'Completed', e.w < 0.4)
         WHEN 'Screen Viewed' THEN jsonb_build_object(
            'Screen', v.screens[1 + mod(e.k, cardinality(v.screens))])
         WHEN 'Article Read' THEN jsonb_build_object(
            'Title', v.articles[1 + mod(e.k, cardinality(v.articles))],
            'Minutes', 1 + mod(e.k / 3, 15))
         WHEN 'Rated' THEN jsonb_build_object(
            'Product', v.products[e.product], 'Rating', 5 - mod(e.k / 3, 5) / 2)
         WHEN 'Shared' THEN jsonb_build_object(
            'Product', v.products[e.product],
            'Channel', v.channels[1 + mod(e.k / 3, cardinality(v.channels))])
         WHEN 'Coupon Applied' THEN jsonb_build_object(
            'Code', v.coupons[1 + mod(e.k, cardinality(v.coupons))],
            'Discount', v.discounts[1 + mod(e.k, cardinality(v.coupons))])
         WHEN 'Plan Purchased' THEN jsonb_build_object(
            'plan', v.plans[1 + mod(e.k, cardinality(v.plans))],
            'Billing', CASE WHEN e.w < 0.75 THEN 'Monthly' ELSE 'Yearly' END,
            'Amount', v.plan_prices[1 + mod(e.k, cardinality(v.plans))]
                      * CASE WHEN e.w < 0.75 THEN 1 ELSE 10 END)
         ELSE '{}'::jsonb
       END,
       CASE WHEN e.name IN ('App Launched', 'Screen Viewed', 'Video Watched') OR e.u < 0.85
            THEN 'sdk' WHEN e.u < 0.97 THEN 'api' ELSE 'csv' END,
       NULL,
       e.ts + make_interval(secs => 1 + e.w * 20)
  FROM v
 CROSS JOIN seed_event_plan AS p
 CROSS JOIN LATERAL generate_series(1, p.events) AS g(i)
 CROSS JOIN LATERAL (
       -- random() in the select list keeps this subquery per row (never pulled up).
       SELECT v.names[1 + floor(random() * cardinality(v.names))::int] AS name,
              CASE WHEN g.i = 1 THEN p.first_seen
                   WHEN g.i = p.events THEN p.last_seen
                   ELSE p.first_seen + random() * (p.last_seen - p.first_seen) END AS ts,
              floor(random() * 1000000)::int AS k,
              1 + floor(random() * cardinality(v.products))::int AS product,
              random() AS u,
              random() AS w
       ) AS e
"""


def _events_sql_params() -> dict[str, list]:
    return {
        "names": data.WEIGHTED_EVENT_NAMES,
        "versions": list(data.APP_VERSIONS),
        "networks": list(data.NETWORKS),
        "products": [product for product, _, _ in data.PRODUCTS],
        "categories": [category for _, category, _ in data.PRODUCTS],
        "prices": [str(price) for _, _, price in data.PRODUCTS],
        "payment_modes": list(data.PAYMENT_MODES),
        "search_terms": list(data.SEARCH_TERMS),
        "videos": list(data.VIDEO_TITLES),
        "screens": list(data.SCREENS),
        "articles": list(data.ARTICLES),
        "channels": list(data.SHARE_CHANNELS),
        "coupon_codes": [code for code, _ in data.COUPONS],
        "coupon_discounts": [discount for _, discount in data.COUPONS],
        "plans": [plan for plan, _ in data.PLANS],
        "plan_prices": [str(price) for _, price in data.PLANS],
    }


def _reserve_ids(cursor, table: str, count: int) -> list[int]:
    """Take `count` ids from the table's identity sequence (safe beside other writers)."""
    if count <= 0:
        return []
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        [table, count],
    )
    return sorted(row[0] for row in cursor.fetchall())


class _IdBlock:
    """Hands out ids reserved from a sequence in blocks (unused ones are a harmless gap)."""

    def __init__(self, cursor, table: str, first_block: int) -> None:
        self.cursor, self.table = cursor, table
        # ~1.12 devices per profile: one block almost always suffices.
        self.ids = _reserve_ids(cursor, table, int(first_block * 1.15) + 10)[::-1]

    def take(self) -> int:
        if not self.ids:
            self.ids = _reserve_ids(self.cursor, self.table, 1000)[::-1]
        return self.ids.pop()


def _copy(cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _definitions_ensure(cursor) -> None:
    rows = [("profile", name, type_) for name, type_ in data.PROFILE_PROPERTY_TYPES.items()]
    rows += [("event", name, type_) for name, type_ in data.EVENT_PROPERTY_TYPES.items()]
    for scope, name, type_ in rows:
        cursor.execute(
            "INSERT INTO profiles_propertydefinition (scope, name, type, declared, created_at)"
            " VALUES (%s, %s, %s, false, now()) ON CONFLICT (scope, name) DO NOTHING",
            [scope, name, type_],
        )
    for name in data.EVENT_NAMES:
        cursor.execute(
            "INSERT INTO profiles_eventname (name, first_seen) VALUES (%s, now())"
            " ON CONFLICT (name) DO NOTHING",
            [name],
        )


@dataclass
class Totals:
    profiles: int = 0
    identified: int = 0
    linked: int = 0
    test: int = 0
    devices: int = 0
    identifiers: int = 0
    events: int = 0
    checked: bool = True  # False when triggers / foreign-key checks were skipped


SEEDED_TABLES = ("profiles_profile", "profiles_identifier", "profiles_device", "profiles_event")
# Triggers whose effect the seed writes itself: the `identified` flag
# (per-row in migration 0002, per-statement since 0006).
TRIGGERS_THE_SEED_REPLACES = {
    "profiles_identifier_identified",
    "profiles_identifier_inserted",
    "profiles_identifier_deleted",
    "profiles_identifier_updated",
}


def _triggers_skippable(cursor) -> bool:
    """True when every user trigger on the seeded tables is one the seed replaces."""
    cursor.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = ANY(%s::regclass[])",
        [list(SEEDED_TABLES)],
    )
    return {row[0] for row in cursor.fetchall()} <= TRIGGERS_THE_SEED_REPLACES


def _skip_triggers(cursor) -> bool:
    """Turn off triggers and foreign-key checks for this transaction, when allowed.

    Safe here: every reference points at a row written by the same batch from
    ids it reserved itself, and the one trigger (identified flag) is replaced by
    the seed setting the flag. Needs a superuser (or GRANT SET); else False.
    """
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        return False
    return True


def demo_seed(
    *,
    profiles: int,
    events_per_profile: int,
    batch_size: int = 50_000,
    rng: random.Random | None = None,
    checked: bool = False,
    progress=None,
) -> Totals:
    """Add `profiles` demo profiles with ~`events_per_profile` events each.

    Each batch commits on its own (a failure keeps the batches before it, all
    consistent). Ids come from the tables' sequences, so runs append. Unless
    `checked`, triggers and deferred foreign-key checks are skipped when the
    database allows it and no unknown trigger exists (a third of the time at
    10 events per profile); the rows are consistent by construction.
    """
    generator = Generator(
        rng=rng or random.Random(), events_per_profile=events_per_profile, now=timezone.now()
    )
    totals = Totals(checked=True)
    params = _events_sql_params()
    with transaction.atomic(), connection.cursor() as cursor:
        _definitions_ensure(cursor)
        fast = not checked and _triggers_skippable(cursor)
    while totals.profiles < profiles:
        size = min(batch_size, profiles - totals.profiles)
        with transaction.atomic(), connection.cursor() as cursor:
            if fast and _skip_triggers(cursor):
                totals.checked = False
            profile_ids = _reserve_ids(cursor, "profiles_profile", size)
            batch = generator.batch(profile_ids, _IdBlock(cursor, "profiles_device", size).take)
            _copy(cursor, "profiles_profile", PROFILE_COLUMNS, batch.profiles)
            _copy(cursor, "profiles_device", DEVICE_COLUMNS, batch.devices)
            identifiers = _identifiers_insert(cursor, batch)
            _events_insert(cursor, batch, params)
            # SET LOCAL would otherwise last to the end of an enclosing transaction.
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")
        totals.profiles += size
        totals.identified += batch.identified
        totals.linked += batch.linked
        totals.test += batch.test
        totals.devices += len(batch.devices)
        totals.identifiers += identifiers
        totals.events += batch.events
        if progress:
            progress(totals)
    with connection.cursor() as cursor:
        # Fresh statistics for the planner; outside a transaction also the
        # visibility map (index-only scans), so benchmarks don't race autovacuum.
        command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        for table in SEEDED_TABLES:
            cursor.execute(f"{command} {table}")
    return totals


def _identifiers_insert(cursor, batch: Batch) -> int:
    """Identifiers via a staging table: one that someone else already holds is skipped
    (and the profile's `identified` flag corrected), never an error."""
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS seed_identifier"
        " (profile_id bigint, kind text, value text, created_at timestamptz)"
    )
    cursor.execute("TRUNCATE seed_identifier")
    _copy(cursor, "seed_identifier", ("profile_id", "kind", "value", "created_at"),
          batch.identifiers)  # fmt: skip
    cursor.execute(
        "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
        " SELECT profile_id, kind, value, created_at FROM seed_identifier"
        " ON CONFLICT (kind, value) DO NOTHING"
    )
    inserted = cursor.rowcount
    if inserted < len(batch.identifiers):
        cursor.execute(
            "UPDATE profiles_profile p SET identified = false"
            " FROM (SELECT DISTINCT profile_id FROM seed_identifier) s"
            " WHERE p.id = s.profile_id AND NOT EXISTS"
            " (SELECT 1 FROM profiles_identifier i WHERE i.profile_id = p.id)"
        )
    return inserted


def _events_insert(cursor, batch: Batch, params: dict[str, list]) -> None:
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS seed_event_plan (profile_id bigint, device_id bigint,"
        " second_device_id bigint, events int, first_seen timestamptz, last_seen timestamptz)"
    )
    cursor.execute("TRUNCATE seed_event_plan")
    _copy(cursor, "seed_event_plan",
          ("profile_id", "device_id", "second_device_id", "events", "first_seen", "last_seen"),
          batch.event_plan)  # fmt: skip
    cursor.execute(EVENTS_SQL, params)


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument("--profiles", type=int, default=1000, help="profiles to add")
        parser.add_argument(
            "--events-per-profile", type=int, default=10, help="mean events per profile"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable)")
        parser.add_argument("--batch-size", type=int, default=50_000, help="profiles per commit")
        parser.add_argument(
            "--checked",
            action="store_true",
            help="keep triggers and foreign-key checks on (slower; the default skips them "
            "when allowed, as the rows are consistent by construction)",
        )

    def handle(self, *args, profiles: int, events_per_profile: int, seed: int | None = None,
               batch_size: int = 50_000, checked: bool = False, **options) -> None:  # fmt: skip
        if profiles < 0 or events_per_profile < 0 or batch_size < 1:
            raise CommandError("--profiles and --events-per-profile must be ≥ 0, batches ≥ 1.")
        started = time.perf_counter()
        verbose = options.get("verbosity", 1) >= 1

        def progress(totals: Totals) -> None:
            if verbose:
                elapsed = time.perf_counter() - started
                self.stdout.write(
                    f"  {totals.profiles:>11,} / {profiles:,} profiles, {totals.events:>13,} events"
                    f"  ({elapsed:,.1f} s)"
                )
                self.stdout.flush()  # visible progress when piped (make bench | tee)

        if verbose:
            self.stdout.write(
                f"Seeding {profiles:,} profiles with ~{events_per_profile} events each…"
            )
        totals = demo_seed(
            profiles=profiles,
            events_per_profile=events_per_profile,
            batch_size=batch_size,
            rng=random.Random(seed),
            checked=checked,
            progress=progress,
        )
        elapsed = time.perf_counter() - started
        anonymous = totals.profiles - totals.identified
        mode = "" if totals.checked else " (fast path: triggers and FK checks skipped)"
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {totals.profiles:,} profiles ({totals.identified:,} identified, "
            f"{anonymous:,} anonymous of which {totals.linked:,} linked, {totals.test:,} test), "
            f"{totals.identifiers:,} identifiers, {totals.devices:,} devices, "
            f"{totals.events:,} events in {elapsed:,.1f} s{mode}."
        ))  # fmt: skip
