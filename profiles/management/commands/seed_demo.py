"""`python manage.py seed_demo --profiles N --events-per-profile M`: realistic demo data.

The data is what the SDKs and uploads of a real app would send: each person's
logins, profile pushes, device tokens and events as CleverTap upload records,
stored through `profiles.ingest.ingest_records` like every other channel's, so
the demo obeys every rule (identity, history, property types, first and last
seen) by construction. See `HELP` for what the data looks like.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from profiles.ingest import ingest_records
from profiles.management import demo_data as data
from profiles.models import TEST_PROFILE_PROPERTY, TEST_PROFILE_VALUE, Source
from profiles.services import Actor

HELP = """\
Generate realistic demo data through ingest, the one way records enter the
store (appendable: every run adds --profiles more people, never colliding with
what is there).

What it makes, per run of N people:
  * ~70% identified profiles. Each holds an identity "user-<n>" (n counts on
    from the highest one in the database), most an e-mail
    "<name-ish><n>@example.com|org|net" and a phone number (valid E.164 mobiles
    in US, GB, IN, DE, BR, MX, ES, NG; unique by construction while n stays
    below 10,000,000).
  * ~30% anonymous profiles (a device that never logged in); about one in six
    of them later logs in as an identified person (scenario 2: the device now
    maps to that person and the anonymous profile, with its own events, is
    linked to them).
  * A few test profiles (custom ct_is_test_user = "Yes").
  * Default properties (name, gender, DOB for ages 13-80 incl. some
    29 February birthdays, language, tz, employed/education/married, MSG-*) and
    custom properties of every type ("Customer Type", "Score", "Premium",
    "Signup Date", "Interests").
  * Devices (Android/iOS/Web, CleverTap-style object ids, push tokens, some
    with push turned off) and about M events per profile (long-tailed) of 13
    kinds over the past year ("Product Viewed", "Charged" with Amount and
    Items, "Plan Purchased" with plan, …).

How: batches of --batch-size people, each a list of upload records (logins,
pushes, token records, events, in the order the apps would send them) handed
to ingest, which commits each set-based step on its own; the records are
stored as the system ("Demo data"). Ends with VACUUM (ANALYZE).
"""

DEMO_ACTOR = Actor(Source.SYSTEM, label="Demo data")
IDENTIFIED_SHARE = 0.70
LINKED_SHARE_OF_ANONYMOUS = 1 / 6
TEST_PROFILE_SHARE = 0.001
SECOND_DEVICE_SHARE = 0.2
NO_EVENTS_SHARE = 0.03  # identified people known only from an upload: no device, no events
HISTORY_DAYS = 365
EDUCATION = ("School", "College", "Graduate")
TOKEN_TYPES = {"Android": "fcm", "iOS": "apns", "Web": "webpush"}
SEEDED_TABLES = ("profiles_profile", "profiles_identifier", "profiles_device", "profiles_event")


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _date(moment: dt.datetime | dt.date) -> str:
    """CleverTap's date encoding (`$D_<epoch seconds>`), as the SDKs send dates."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)
    return f"$D_{_epoch(moment)}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Batch:
    """One batch's upload records, in the order they are sent, and what they add up to."""

    profiles: list[list[dict[str, Any]]] = field(default_factory=list)  # logins and pushes
    tokens: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # scenario 2's later logins
    people: int = 0
    identified: int = 0
    linked: int = 0
    test: int = 0
    devices: int = 0
    identifiers: int = 0

    def records(self) -> list[dict[str, Any]]:
        # Each person's records keep their order: profiles and logins, then tokens, then
        # events, then the logins of anonymous devices that turned out to be someone.
        return [record for person in self.profiles for record in person] + (
            self.tokens + self.events + self.links
        )


class Generator:
    """Builds batches of upload records from a seeded random source (pure Python, no I/O)."""

    def __init__(self, *, rng: random.Random, events_per_profile: int, now: dt.datetime) -> None:
        self.rng = rng
        # Opaque ids (object ids, push tokens) come from an unseeded source: two runs
        # with the same --seed must still never collide.
        self.id_rng = random.Random()
        self.events_per_profile = events_per_profile
        self.now = now
        self.today = now.date()
        self.countries = list(data.COUNTRIES)
        self.country_weights = [country.weight for country in data.COUNTRIES]
        # Profiles with events get slightly more so the total stays ~N*M.
        self.mean_events = events_per_profile / (1 - IDENTIFIED_SHARE * NO_EVENTS_SHARE)
        self.events = EventMaker(rng)

    def _event_count(self) -> int:
        if self.events_per_profile <= 0:
            return 0
        if self.mean_events <= 1:
            return 1
        # Long-tailed (exponential) like real usage, capped.
        count = 1 + int(self.rng.expovariate(1 / (self.mean_events - 0.5)))
        return min(count, 50 * self.events_per_profile)

    def _seen(self, count: int) -> tuple[dt.datetime, dt.datetime]:
        rng = self.rng
        first = self.now - dt.timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
        if count <= 1:
            return first, first
        # Recent activity is more likely than old.
        span = (self.now - first).total_seconds()
        last = self.now - dt.timedelta(seconds=int(span * rng.random() ** 2))
        return first, max(last, first + dt.timedelta(seconds=count))

    def _device(self, out: Batch, platform: str | None = None) -> str:
        """A new device's object id; its token record (or its refusal of push) goes out."""
        rng = self.rng
        platform = platform or rng.choice(data.PLATFORMS)
        object_id = data.device_object_id(self.id_rng, platform)
        out.devices += 1
        token: dict[str, Any] = {"type": TOKEN_TYPES[platform]}
        if rng.random() < (0.5 if platform == "Web" else 0.9) and rng.random() < 0.85:
            if platform == "Web":
                token["id"] = data.push_token(self.id_rng, platform)
                token["keys"] = {"p256dh": _b64url(b"\x04" + self.id_rng.randbytes(64)),
                                 "auth": _b64url(self.id_rng.randbytes(16))}  # fmt: skip
            else:
                token["id"] = data.push_token(self.id_rng, platform)
        else:  # never granted, or turned off later: the platform is known, push is off
            token["action"] = "unregister"
        out.tokens.append({"type": "token", "objectId": object_id, "tokenData": token})
        return object_id

    def _events(self, out: Batch, devices: list[str], count: int, first, last) -> None:
        rng = self.rng
        span = (last - first).total_seconds()
        for index in range(count):
            if index == 0:
                moment = first
            elif index == count - 1:
                moment = last
            else:
                moment = first + dt.timedelta(seconds=span * rng.random())
            device = devices[1] if len(devices) > 1 and rng.random() < 0.3 else devices[0]
            name, properties = self.events.make()
            out.events.append({"type": "event", "objectId": device, "ts": _epoch(moment),
                               "evtName": name, "evtData": properties})  # fmt: skip

    def batch(self, first_number: int, size: int) -> Batch:
        """Records for `size` people; identified people are numbered from `first_number`."""
        rng = self.rng
        out = Batch(people=size)
        identified_numbers: list[int] = []
        number = first_number
        for _ in range(size):
            identified = rng.random() < IDENTIFIED_SHARE
            country = rng.choices(self.countries, self.country_weights)[0]
            culture_name = (country.cultures[0] if rng.random() < 0.75
                            else rng.choice(country.cultures))  # fmt: skip
            culture = data.CULTURES[culture_name]
            count = self._event_count()
            if identified and rng.random() < NO_EVENTS_SHARE:
                count = 0
            first, last = self._seen(count)
            gender = rng.choices("MFOU", (48, 48, 2, 2))[0]
            first_name = rng.choice(
                culture.female if gender == "F" or (gender in "OU" and rng.random() < 0.5)
                else culture.male
            )  # fmt: skip
            last_name = rng.choice(culture.last)
            profile: dict[str, Any] = {"Language": rng.choice(country.languages),
                                       "tz": rng.choice(country.time_zones)}  # fmt: skip
            if identified:
                profile.update(self._identified_data(out, number, country.code, gender,
                                                     first_name, last_name))  # fmt: skip
            else:
                if rng.random() < 0.1:
                    profile["Gender"] = gender
                if rng.random() < 0.05:
                    profile["DOB"] = _date(data.birth_date(rng, self.today))
                if rng.random() < 0.5:
                    profile["MSG-push"] = rng.random() < 0.6
            signup = first if count else self.now - dt.timedelta(
                seconds=rng.randrange(HISTORY_DAYS * 86400))  # fmt: skip
            custom = data.custom_properties(rng, signup, identified=identified)
            if "Signup Date" in custom:
                custom["Signup Date"] = _date(signup)
            profile.update(custom)
            if identified and (not identified_numbers or rng.random() < TEST_PROFILE_SHARE):
                profile[TEST_PROFILE_PROPERTY] = TEST_PROFILE_VALUE
                out.test += 1

            records: list[dict[str, Any]] = []
            if identified:
                out.identified += 1
                identity = f"user-{number}"
                identified_numbers.append(number)
                number += 1
                if count:  # the app's first launch logged them in on their device
                    devices = [self._device(out)]
                    records.append({"type": "profile", "identity": identity,
                                    "objectId": devices[0], "profileData": profile})  # fmt: skip
                    if count > 1 and rng.random() < SECOND_DEVICE_SHARE:
                        devices.append(self._device(out))
                        records.append({"type": "profile", "identity": identity,
                                        "objectId": devices[1], "profileData": {}})  # fmt: skip
                    self._events(out, devices, count, first, last)
                else:  # known from an upload only
                    records.append({"type": "profile", "identity": identity,
                                    "profileData": profile})  # fmt: skip
            else:
                device = self._device(out)
                records.append({"type": "profile", "objectId": device, "profileData": profile})
                self._events(out, [device], count, first, last)
                if identified_numbers and count and rng.random() < LINKED_SHARE_OF_ANONYMOUS:
                    # Scenario 2: this device later logs in as someone already known.
                    holder = f"user-{rng.choice(identified_numbers)}"
                    out.links.append({"type": "profile", "identity": holder, "objectId": device,
                                      "profileData": {}})  # fmt: skip
                    out.linked += 1
            out.profiles.append(records)
        return out

    def _identified_data(self, out: Batch, number: int, country: str, gender: str,
                         first_name: str, last_name: str) -> dict[str, Any]:  # fmt: skip
        rng = self.rng
        profile: dict[str, Any] = {"Name": f"{first_name} {last_name}", "Gender": gender}
        out.identifiers += 1
        email = phone = ""
        if rng.random() < 0.95:
            email = data.email_for(first_name, last_name, number, rng.randrange(12))
            profile["Email"] = email
            out.identifiers += 1
        if rng.random() < 0.8 and number < data.PHONE_ID_LIMIT:
            phone = data.phone_for(number, country)
            profile["Phone"] = phone
            out.identifiers += 1
        if rng.random() < 0.85:
            profile["DOB"] = _date(data.birth_date(rng, self.today))
        for key, choices in (("Employed", (True, True, False, None)),
                             ("Married", (True, False, None)),
                             ("Education", (*EDUCATION, None))):  # fmt: skip
            value = rng.choice(choices)
            if value is not None:
                profile[key] = value
        subscriptions = {"MSG-email": rng.random() < 0.8 if email else None,
                         "MSG-push": rng.random() < 0.7,
                         "MSG-sms": rng.random() < 0.6 if phone else None,
                         "MSG-whatsapp": rng.random() < 0.5 if phone else None}  # fmt: skip
        profile.update({key: value for key, value in subscriptions.items() if value is not None})
        return profile


class EventMaker:
    """An event's name and properties, as the demo app's SDK would send them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.makers: dict[str, Callable[[], dict[str, Any]]] = {
            "App Launched": lambda: {"App Version": rng.choice(data.APP_VERSIONS),
                                     "Network": rng.choice(data.NETWORKS)},
            "Product Viewed": lambda: self._product(),
            "Added To Cart": lambda: {**self._product(), "Quantity": rng.randint(1, 3)},
            "Added To Wishlist": lambda: self._product(price=False),
            "Charged": self._charged,
            "Searched": lambda: {"Query": rng.choice(data.SEARCH_TERMS),
                                 "Results": rng.randrange(240)},
            "Video Watched": lambda: {"Title": rng.choice(data.VIDEO_TITLES),
                                      "Duration": rng.randint(30, 1830),
                                      "Completed": rng.random() < 0.4},
            "Screen Viewed": lambda: {"Screen": rng.choice(data.SCREENS)},
            "Article Read": lambda: {"Title": rng.choice(data.ARTICLES),
                                     "Minutes": rng.randint(1, 15)},
            "Rated": lambda: {"Product": rng.choice(data.PRODUCTS)[0],
                              "Rating": rng.choice((5, 5, 4, 4, 3, 2, 1))},
            "Shared": lambda: {"Product": rng.choice(data.PRODUCTS)[0],
                               "Channel": rng.choice(data.SHARE_CHANNELS)},
            "Coupon Applied": self._coupon,
            "Plan Purchased": self._plan,
        }  # fmt: skip

    def make(self) -> tuple[str, dict[str, Any]]:
        name = self.rng.choice(data.WEIGHTED_EVENT_NAMES)
        return name, self.makers[name]()

    def _product(self, *, price: bool = True) -> dict[str, Any]:
        product, category, amount = self.rng.choice(data.PRODUCTS)
        found: dict[str, Any] = {"Product": product, "Category": category}
        if price:
            found["Price"] = amount
        return found

    def _charged(self) -> dict[str, Any]:
        rng = self.rng
        picked = rng.sample(data.PRODUCTS, rng.randint(1, 3))
        items = [{"Product": product, "Category": category, "Price": price,
                  "Quantity": rng.randint(1, 3)}
                 for product, category, price in picked]  # fmt: skip
        amount = round(sum(item["Price"] * item["Quantity"] for item in items), 2)
        return {"Amount": amount, "Payment Mode": rng.choice(data.PAYMENT_MODES), "Items": items}

    def _coupon(self) -> dict[str, Any]:
        code, discount = self.rng.choice(data.COUPONS)
        return {"Code": code, "Discount": discount}

    def _plan(self) -> dict[str, Any]:
        plan, price = self.rng.choice(data.PLANS)
        yearly = self.rng.random() >= 0.75
        return {"plan": plan, "Billing": "Yearly" if yearly else "Monthly",
                "Amount": round(price * (10 if yearly else 1), 2)}  # fmt: skip


@dataclass
class Totals:
    profiles: int = 0
    identified: int = 0
    linked: int = 0
    test: int = 0
    devices: int = 0
    identifiers: int = 0
    events: int = 0
    records: int = 0
    refused: int = 0
    first_refusal: str = ""

    def add(self, batch: Batch, records: int, refusals: dict) -> None:
        self.profiles += batch.people
        self.identified += batch.identified
        self.linked += batch.linked
        self.test += batch.test
        self.devices += batch.devices
        self.identifiers += batch.identifiers
        self.events += len(batch.events)
        self.records += records
        self.refused += len(refusals)
        if refusals and not self.first_refusal:
            self.first_refusal = str(next(iter(refusals.values())))


def _next_identity_number() -> int:
    """One more than the highest `user-<n>` identity held, so runs append."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(substring(value FROM 6)::bigint) FROM profiles_identifier"
            " WHERE kind = 'identity' AND value ~ '^user-[0-9]{1,15}$'"
        )
        highest = cursor.fetchone()[0]
    return (highest or 0) + 1


def demo_seed(
    *,
    profiles: int,
    events_per_profile: int,
    batch_size: int = 2_000,
    rng: random.Random | None = None,
    progress: Callable[[Totals], None] | None = None,
) -> Totals:
    """Add `profiles` demo people with ~`events_per_profile` events each, through ingest.

    Each batch's records are stored by `ingest_records`, which commits as it goes: a
    failure keeps everything before it. A refused record is counted (Totals.refused).
    """
    generator = Generator(
        rng=rng or random.Random(), events_per_profile=events_per_profile, now=timezone.now()
    )
    totals = Totals()
    number = _next_identity_number()
    while totals.profiles < profiles:
        batch = generator.batch(number, min(batch_size, profiles - totals.profiles))
        number += batch.identified
        records = batch.records()
        result = ingest_records(records, actor=DEMO_ACTOR, may_hold_unstorable=False)
        totals.add(batch, len(records), result.refusals)
        if progress:
            progress(totals)
    if profiles and not connection.in_atomic_block:
        # Fresh statistics and visibility maps (index-only scans), so a benchmark that
        # follows does not race autovacuum.
        with connection.cursor() as cursor:
            for table in SEEDED_TABLES:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
    return totals


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
        parser.add_argument("--batch-size", type=int, default=2_000, help="people per batch")

    def handle(self, *args, profiles: int, events_per_profile: int, seed: int | None = None,
               batch_size: int = 2_000, **options) -> None:  # fmt: skip
        if profiles < 0 or events_per_profile < 0 or batch_size < 1:
            raise CommandError("--profiles and --events-per-profile must be ≥ 0, batches ≥ 1.")
        started = time.perf_counter()
        verbose = options.get("verbosity", 1) >= 1

        last_report = started

        def progress(totals: Totals) -> None:
            nonlocal last_report
            now = time.perf_counter()
            # A line every ten seconds, and the last batch's (a million people: ~150 lines).
            if verbose and (now - last_report >= 10 or totals.profiles == profiles):
                last_report = now
                elapsed = now - started
                self.stdout.write(
                    f"  {totals.profiles:>11,} / {profiles:,} profiles, {totals.events:>13,} events"
                    f"  ({elapsed:,.1f} s, {totals.records / elapsed:,.0f} records/s)"
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
            progress=progress,
        )
        elapsed = time.perf_counter() - started
        anonymous = totals.profiles - totals.identified
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {totals.profiles:,} profiles ({totals.identified:,} identified, "
            f"{anonymous:,} anonymous of which {totals.linked:,} linked, {totals.test:,} test), "
            f"{totals.identifiers:,} identifiers, {totals.devices:,} devices, "
            f"{totals.events:,} events in {elapsed:,.1f} s."
        ))  # fmt: skip
        if totals.refused:
            self.stderr.write(self.style.WARNING(
                f"{totals.refused:,} of {totals.records:,} records were refused, e.g.: "
                f"{totals.first_refusal}"
            ))  # fmt: skip
