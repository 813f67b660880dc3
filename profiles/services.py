"""Writes to the profile store that are not set-based ingest, and the rules ingest uses.

Every record (REST upload, the web SDK endpoint, CSV and SFTP imports, dashboard
actions) is stored by `profiles.ingest.ingest_records` through the set-based
`profiles.bulk`. What is here:

- the identity rule of onUserLogin (`login_decision`) and event validation
  (`event_validate`), used by profiles.bulk;
- `profile_push`, `profile_login`, `event_push`: one record through profiles.bulk
  (a batch of one), for code that stores a single record and wants its profile;
- `device_push_tokens_set` (set-based), `profile_mark_test`, `profile_delete`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from profiles.models import (
    TEST_PROFILE_PROPERTY,
    TEST_PROFILE_VALUE,
    Device,
    Event,
    Identifier,
    Profile,
    PropertyChange,
    Source,
)
from profiles.properties import (
    IDENTIFIER_KEYS,
    IDENTITY_MISSING_MESSAGE,
    MAX_CHARGED_ITEMS,
    MAX_EVENT_PROPERTIES,
    RESERVED_EVENT_NAMES,
    ErrorCode,
    RecordError,
    client_event_id_check,
    coerce_scalar,
    format_date,
    normalize_device_id,
    normalize_identifier,
    validate_key,
)
from profiles.rules.single_valued import SINGLE_VALUED_KINDS

__all__ = [
    "SINGLE_VALUED_KINDS",
    "Actor",
    "DevicePushToken",
    "RecordError",
    "device_push_tokens_set",
    "event_push",
    "event_validate",
    "identifiers_normalize",
    "login_decision",
    "profile_delete",
    "profile_login",
    "profile_mark_test",
    "profile_push",
    "profiles_update",
]

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=models.Model)

TEST_MARKED_EVENT = "Marked as test profile"
TEST_UNMARKED_EVENT = "Unmarked as test profile"
# What a lost race looks like, retried from the top in a fresh savepoint (profiles.bulk):
# foreign_key_violation, unique_violation (a row we relied on changed under us),
# deadlock_detected, serialization_failure (our statement was the one cancelled).
RETRY_SQLSTATES = frozenset({"23503", "23505", "40P01", "40001"})


@dataclass(frozen=True)
class Actor:
    """Who made a change: a dashboard user, or a label (API credential, file)."""

    source: str
    user: AbstractBaseUser | None = None
    label: str = ""

    @classmethod
    def system(cls) -> Actor:
        return cls(source=Source.SYSTEM)


def sqlstate_of(error: BaseException) -> str | None:
    return getattr(error.__cause__, "sqlstate", None) or getattr(error, "sqlstate", None)


def execute_prepared(
    cursor, sql: str, params: Sequence[Any] = (), *, prepare: bool = True
) -> tuple[int, list[Any]]:
    """Run one statement of fixed text as a prepared statement of this session (parsed
    and planned once, then only executed); returns its row count and rows. Without
    `prepare`, through Django's cursor as any statement.

    Django's cursors bind parameters client-side and never prepare. For a batch of one,
    parsing and planning the statements that write it cost about as much as the writing
    (the one storing events: 0.9 of its 1.5 ms). A big batch is planned for its own size
    instead (a prepared statement's plan is soon a generic one, blind to it: an import of
    all-new people was ~9% slower prepared). Errors come out as Django's either way, so
    lost races are retried the same. (A connection pooler between here and PostgreSQL
    must keep prepared statements: PgBouncer 1.21+ does.)"""
    if not prepare:
        cursor.execute(sql, params)
        return cursor.rowcount, cursor.fetchall() if cursor.description else []
    started = time.monotonic()
    try:
        with cursor.db.wrap_database_errors, psycopg.Cursor(cursor.db.connection) as prepared:
            prepared.execute(sql, params, prepare=True)
            return prepared.rowcount, prepared.fetchall() if prepared.description else []
    finally:
        if cursor.db.queries_logged:  # in Django's query log as its cursors' statements are
            cursor.db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


# --- identifiers -----------------------------------------------------------------


def identifying_kinds() -> frozenset[str]:
    return frozenset(settings.PROFILE_IDENTIFYING_KINDS)


def identifiers_normalize(raw: dict[str, Any] | None) -> dict[str, str]:
    """{"identity": "u1", "Email": " A@B.com "} -> {"identity": "u1", "email": "a@b.com"}.

    Email and phone count only when they identify (settings.PROFILE_IDENTIFYING_KINDS).
    Raises RecordError (515, 516, 523) for an invalid value.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
    kinds = identifying_kinds()
    normalized: dict[str, str] = {}
    for key, value in raw.items():
        kind = IDENTIFIER_KEYS.get(key.lower()) if isinstance(key, str) else None
        if kind is None or value is None or value == "":
            continue
        if kind in {"email", "phone"} and kind not in kinds:
            continue
        normalized[kind] = normalize_identifier(kind, value)
    return normalized


# --- the identity rules --------------------------------------------------------


LOGIN_CURRENT = "current"  # the profile the device maps to
LOGIN_HOLDER = "holder"  # the profile holding the named identifiers
LOGIN_NEW = "new"  # a new profile
LOGIN_REFUSED = "refused"  # a push claims another profile's identifiers: refuse the record


@dataclass(frozen=True)
class LoginDecision:
    target: str  # LOGIN_CURRENT, LOGIN_HOLDER or LOGIN_NEW
    link_current: bool = False  # rule 2: link the anonymous profile left behind to the holder


def login_decision(
    *,
    current_id: object | None,
    current_identified: bool,
    current_linked: bool,
    holder_id: object | None,
    named: bool,
    new_user: bool = True,
) -> LoginDecision:
    """Which profile an onUserLogin lands on: the one rule, used by `profile_login`
    record by record and by profiles.bulk for logins sent in a batch.

    `current_*` describe the profile the device maps to (`current_id` None: no
    device, or a device without a profile); `holder_id` the one profile holding
    the named identifiers (None: nobody); `named`: the login names identifiers.
    `new_user` False: the sender says the device's person has not changed
    (CleverTap's web SDK flags a user switch with `isOUL`, and sends a login on an
    anonymous browser and a profile push in the same unflagged shape), so an
    identified device keeps its profile, which takes the identifiers as a profile
    push would; one held by another profile refuses the record (LOGIN_REFUSED).
    Ids are compared for equality only, so a batch may use its own tokens.
    """
    if not new_user and current_id is not None and current_identified:
        if holder_id is not None and holder_id != current_id:
            return LoginDecision(LOGIN_REFUSED)  # never merged, never switched by a push
        return LoginDecision(LOGIN_CURRENT)
    if holder_id is None:
        if current_id is not None and not named:
            return LoginDecision(LOGIN_CURRENT)  # nobody named: as a push would
        if current_id is not None and not current_identified and not current_linked:
            return LoginDecision(LOGIN_CURRENT)  # rule 1: the anonymous profile is identified
        return LoginDecision(LOGIN_NEW)  # shared device, or no device at all
    left_behind = current_id is not None and current_id != holder_id
    # Rule 2: keep the anonymous profile left behind, linked to the person it turned out to be.
    return LoginDecision(
        LOGIN_HOLDER, link_current=left_behind and not current_identified and not current_linked
    )


# --- events ---------------------------------------------------------------------------


def _event_value(key: str, raw: object) -> Any:
    try:
        value = coerce_scalar(key, raw)
    except RecordError as error:
        raise RecordError(ErrorCode.EVENT_STRUCTURE, error.message) from None
    return format_date(value) if isinstance(value, dt.datetime) else value


def event_validate(name: object, properties: object, *, system: bool = False) -> dict[str, Any]:
    """Check an event's name and properties; return the properties as stored.

    509 no name, 513 a reserved system event name, 512 a bad structure or
    value, 522 too many properties (or Charged items), 555 a bad key name.
    """
    if not isinstance(name, str) or not name.strip():
        raise RecordError(ErrorCode.EVENT_NAME_MANDATORY, "Event name is mandatory.")
    if "\x00" in name:
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "Event name contains a NUL character.")
    if not system and name in RESERVED_EVENT_NAMES:
        raise RecordError(
            ErrorCode.RESTRICTED_EVENT_NAME, f"'{name}' is a restricted system event name."
        )
    if len(name.encode()) > 512:
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "Event name is longer than 512 bytes.")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "evtData must be an object.")
    if len(properties) > MAX_EVENT_PROPERTIES:
        raise RecordError(
            ErrorCode.EVENT_PROPERTIES_LIMIT,
            f"An event may have at most {MAX_EVENT_PROPERTIES} properties.",
        )
    stored: dict[str, Any] = {}
    for key, raw in properties.items():
        validate_key(key, what="Event property")
        if key == "Items" and isinstance(raw, list):
            if len(raw) > MAX_CHARGED_ITEMS:
                raise RecordError(
                    ErrorCode.EVENT_PROPERTIES_LIMIT,
                    f"'Items' may hold at most {MAX_CHARGED_ITEMS} entries.",
                )
            if not all(isinstance(item, dict) for item in raw):
                raise RecordError(ErrorCode.EVENT_STRUCTURE, "'Items' must be a list of objects.")
            stored[key] = [
                {
                    validate_key(item_key, what="Item property"): _event_value(item_key, value)
                    for item_key, value in item.items()
                }
                for item in raw
            ]
            continue
        stored[key] = _event_value(key, raw)
    return stored


# --- one record: a batch of one through profiles.bulk ------------------------------


def _one(row: Any, *, actor: Actor, at: dt.datetime | None = None) -> tuple[Profile, Event | None]:
    """Store one bulk row (atomically): its profile and, for an event row, the event
    stored (None: a repeated client event id). RecordError when it is refused."""
    from profiles import bulk  # bulk builds on the rules above

    # Each bulk call is its own savepoint (and retries itself): no second one here.
    if isinstance(row, bulk.BulkProfileRow):
        result = bulk.profiles_bulk_upsert([row], actor=actor, at=at, report_profiles=True)
    else:
        result = bulk.events_bulk_insert([row], actor=actor, report_profiles=True)
    if result.rejected:
        raise RecordError(result.rejected[0].code, result.rejected[0].message)
    # Both rows in one prepared statement, without the ORM's query compilation: for one
    # record, each costs about as much as a statement of its write.
    profile_id = result.profile_ids[row.ref]
    with connection.cursor() as cursor:
        if result.events_stored:
            _count, rows = execute_prepared(
                cursor, _PROFILE_AND_EVENT_READ, [row.name, row.ts, profile_id]
            )
            values = rows[0]
            event = _instance(Event, values[len(_PROFILE_COLUMNS) :])
        else:
            _count, rows = execute_prepared(cursor, _PROFILE_READ, [profile_id])
            values, event = rows[0], None
    profile = _instance(Profile, values[: len(_PROFILE_COLUMNS)])
    assert profile is not None
    return profile, event


def _columns(model: type[models.Model]) -> list[models.Field]:
    return list(model._meta.concrete_fields)


_PROFILE_COLUMNS = _columns(Profile)
_PROFILE_READ = (
    f"SELECT {', '.join(f'p.{field.column}' for field in _PROFILE_COLUMNS)}"
    " FROM profiles_profile p WHERE p.id = %s"
)
# The event just stored: the newest of that name and time (a repeated client event id
# stores none, and then the call reads the profile alone).
_PROFILE_AND_EVENT_READ = (
    f"SELECT {', '.join(f'p.{field.column}' for field in _PROFILE_COLUMNS)},"
    f" {', '.join(f'e.{field.column}' for field in _columns(Event))}"
    " FROM profiles_profile p LEFT JOIN LATERAL (SELECT * FROM profiles_event"
    "  WHERE profile_id = p.id AND name = %s AND ts = %s ORDER BY id DESC LIMIT 1) e ON TRUE"
    " WHERE p.id = %s"
)


def _instance(model: type[ModelT], row: Sequence[Any]) -> ModelT | None:
    """The model instance of `row`: its concrete fields' columns, in the model's order
    (None when its primary key is NULL: the outer join found nothing)."""
    fields = model._meta.concrete_fields
    if row[fields.index(model._meta.pk)] is None:
        return None
    values = []
    for field, value in zip(fields, row, strict=True):
        if value is not None and hasattr(field, "from_db_value"):
            value = field.from_db_value(value, None, connection)
        values.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], values)


def _row_names(
    device_id: str | None, identifiers: dict[str, Any] | None
) -> tuple[str | None, dict[str, str]]:
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(identifiers)
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
    return device_id, wanted


def _named_by(wanted: dict[str, str], device_id: str | None) -> dict[str, Any]:
    """Key and other names of a bulk row: the first identifier, else the device."""
    if not wanted:
        return {"key_kind": "objectId", "key_value": device_id}
    (kind, value), *others = wanted.items()
    return {"key_kind": kind, "key_value": value, "also_named": dict(others)}


def profile_push(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    profile_data: dict[str, Any],
    actor: Actor,
    at: dt.datetime | None = None,
) -> Profile:
    """CleverTap's profilePush for one record: update the profile the call names (by
    `identifiers`, created when unknown; else the device's current profile). Identifier
    keys in `profile_data` are added to it; one held by another profile refuses the
    record. RecordError when refused."""
    from profiles.bulk import BulkProfileRow

    if profile_data is not None and not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    device_id, wanted = _row_names(device_id, identifiers)
    row = BulkProfileRow(ref=1, profile_data=profile_data or {}, **_named_by(wanted, device_id))
    return _one(row, actor=actor, at=at)[0]


def profile_login(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    profile_data: dict[str, Any] | None = None,
    actor: Actor,
    at: dt.datetime | None = None,
    new_user: bool = True,
) -> Profile:
    """CleverTap's onUserLogin for one record (the rules: `login_decision`). The
    identifier keys of `profile_data` name the person too. RecordError when refused."""
    from profiles.bulk import BulkProfileRow

    if profile_data is not None and not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    profile_data = profile_data or {}
    data_identifiers = {
        key: value
        for key, value in profile_data.items()
        if isinstance(key, str) and key.lower() in IDENTIFIER_KEYS and not isinstance(value, dict)
    }
    device_id, wanted = _row_names(device_id, {**(identifiers or {}), **data_identifiers})
    if device_id is not None and not wanted:  # names nobody: a push from the device
        return profile_push(device_id=device_id, profile_data=profile_data, actor=actor, at=at)
    row = BulkProfileRow(ref=1, profile_data=profile_data, device_id=device_id,
                         new_user=new_user, **_named_by(wanted, None))  # fmt: skip
    return _one(row, actor=actor, at=at)[0]


def event_push(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    name: str,
    properties: dict[str, Any] | None = None,
    ts: dt.datetime | None = None,
    actor: Actor,
    client_event_id: str | None = None,
    system: bool = False,
) -> tuple[Profile, Event | None]:
    """Record one event for the person the call names, creating them when never seen
    (with a device and identifiers: an onUserLogin first). Returns the profile and the
    event (None: a repeated `client_event_id`, nothing stored). RecordError when refused."""
    from profiles.bulk import BulkEventRow

    event_validate(name, properties, system=system)
    client_event_id = client_event_id_check(client_event_id)
    device_id, wanted = _row_names(device_id, identifiers)
    ts = ts or timezone.now()
    row = BulkEventRow(ref=1, properties=properties or {}, ts=ts, client_event_id=client_event_id,
                       name=name, device_id=device_id if wanted else None,
                       **_named_by(wanted, device_id))  # fmt: skip
    if system:  # only the system records reserved events such as "Notification Sent"
        actor = Actor(Source.SYSTEM, actor.user, actor.label)
    return _one(row, actor=actor)


# --- devices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DevicePushToken:
    """A device's push token ("platform ID") and permission to set; an empty `push_token`
    clears it. The token's format is the caller's rule (ingest's token records)."""

    device_id: str
    platform: str
    push_token: str
    push_enabled: bool


def device_push_tokens_set(tokens: list[DevicePushToken]) -> dict[str, RecordError]:
    """Set (or clear) the push tokens and permissions of devices, set-based; each device's
    platform becomes its token's. For a device named more than once, the last one wins.

    A never-seen device is registered with a new anonymous profile, as its first
    event would be (one batch through profiles.bulk). Does not touch last seen: a
    registration is not activity. Returns the devices refused, with the reason.
    Call inside a transaction: all or nothing.
    """
    from profiles.bulk import BulkProfileRow, profiles_bulk_upsert

    latest = {token.device_id: token for token in tokens}
    devices = list(latest)
    rows = [BulkProfileRow(ref=number, key_kind="objectId", key_value=device, profile_data={})
            for number, device in enumerate(devices, start=1)]  # fmt: skip
    # The devices' rows stay locked (FOR NO KEY UPDATE) to the end of the transaction.
    result = profiles_bulk_upsert(rows, actor=Actor.system())
    refused = {devices[rejection.ref - 1]: RecordError(rejection.code, rejection.message)
               for rejection in result.rejected}  # fmt: skip
    kept = [token for device, token in latest.items() if device not in refused]
    if kept:
        platform_length = Device._meta.get_field("platform").max_length
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE profiles_device d SET platform = t.platform, push_token = t.token,"
                "  push_enabled = t.enabled"
                " FROM unnest(%s::text[], %s::text[], %s::text[], %s::boolean[])"
                "  AS t(object_id, platform, token, enabled)"
                " WHERE d.object_id = t.object_id",
                [[token.device_id for token in kept],
                 [token.platform[:platform_length] for token in kept],
                 [token.push_token for token in kept],
                 [token.push_enabled for token in kept]],
            )  # fmt: skip
    return refused


# --- dashboard actions -------------------------------------------------------------


def profiles_update(
    profile_ids: list[int], profile_data: dict[str, Any], *, actor: Actor
) -> tuple[int, dict[int, RecordError]]:
    """Apply `profile_data` to these known profiles, set-based (a dashboard or API action
    on profiles found by the caller): (profiles changed, {profile id: refusal}). A
    deleted profile is refused."""
    from profiles.bulk import PROFILE_KEY, BulkProfileRow, profiles_bulk_upsert

    rows = [BulkProfileRow(ref=pk, key_kind=PROFILE_KEY, key_value=pk, profile_data=profile_data)
            for pk in profile_ids]  # fmt: skip
    with transaction.atomic():
        result = profiles_bulk_upsert(rows, actor=actor)
    refused = {r.ref: RecordError(r.code, r.message) for r in result.rejected}
    return result.profiles_updated, refused


def profile_mark_test(*, profile: Profile, user: AbstractBaseUser, is_test: bool = True) -> Profile:
    """Mark (or unmark) a test profile: sets ct_is_test_user = "Yes" (a string) or
    removes it, through profiles.bulk (the change is in the history, by `user`), and
    records who did it as a system event on the profile. Marking a marked profile
    changes nothing. The system event does not count as activity (no last seen, no
    event count)."""
    actor = Actor(source=Source.DASHBOARD, user=user, label=user.get_username())
    data = {TEST_PROFILE_PROPERTY: TEST_PROFILE_VALUE if is_test else {"$delete": True}}
    with transaction.atomic():
        changed, refused = profiles_update([profile.pk], data, actor=actor)
        if refused:
            raise Profile.DoesNotExist(f"profile {profile.ct_id} was deleted")
        if changed:
            Event.objects.create(
                profile_id=profile.pk,
                name=TEST_MARKED_EVENT if is_test else TEST_UNMARKED_EVENT,
                ts=timezone.now(),
                properties={"by": user.get_username()},
                source=Source.SYSTEM,
            )
    return Profile.objects.get(pk=profile.pk)


@transaction.atomic
def profile_delete(*, profile: Profile, user: AbstractBaseUser | None = None) -> int:
    """Erase a person (GDPR): the profile, the anonymous profiles linked to it,
    their identifiers, events and history. Their devices stay but map to
    nothing, so a later call from one starts a new anonymous profile.
    Returns the number of profiles deleted (0 when it was already gone)."""
    family = Q(pk=profile.pk) | Q(linked_to_id=profile.pk)
    # The one lock order: devices, then profiles (by primary key).
    list(
        Device.objects.select_for_update()
        .filter(profile__in=Profile.objects.filter(family).values("pk"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ids = list(
        Profile.objects.select_for_update()
        .filter(family)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    Device.objects.filter(profile_id__in=ids).update(profile=None)
    Event.objects.filter(profile_id__in=ids).delete()
    PropertyChange.objects.filter(profile_id__in=ids).delete()
    Identifier.objects.filter(profile_id__in=ids).delete()
    Profile.objects.filter(pk__in=ids).delete()
    logger.info(
        "profile %s deleted by %s (%d profiles)", profile.ct_id,
        user.get_username() if user else "system", len(ids),
    )  # fmt: skip
    return len(ids)
