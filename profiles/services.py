"""Writes to the profile store: the identity rules and property operations.

Every channel (SDK-style calls, REST API, CSV and SFTP imports, dashboard)
goes through these functions, so each rule has one implementation:

- `profile_login`   — CleverTap's onUserLogin (the four identity rules).
- `profile_push`    — profilePush: update the current profile only.
- `event_push`      — record an event and refresh the profile's system properties.
- `profile_mark_test`, `profile_delete`.
- `service_batch`   — cache lookups across the many records of one upload or import.

Safety under concurrency comes from the database: identifiers are unique per
(kind, value), devices per object id, client event ids per profile, property
definitions per name. A race shows up as a conflict on insert; the record is
retried from the top against the now-committed state, never resolved by luck.

Locks are always taken in one order — the device row, then profile rows in
primary-key order — so single-record calls cannot deadlock each other; a
deadlock or serialization failure that still happens (e.g. against a
hand-written transaction) is retried when the service owns the transaction.
Profiles are locked FOR NO KEY UPDATE so events and identifiers referencing
them can still be inserted meanwhile.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from profiles.models import (
    TEST_PROFILE_PROPERTY,
    TEST_PROFILE_VALUE,
    Device,
    Event,
    EventPropertyMapping,
    Identifier,
    Profile,
    PropertyChange,
    PropertyDefinition,
    PropertyScope,
    Source,
)
from profiles.operations import COMPATIBLE_TYPES, ProfileUpdate, plan_profile_update
from profiles.properties import (
    DEFAULT_PROPERTIES,
    DERIVED_KEYS,
    IDENTIFIER_KEYS,
    IDENTITY_MISSING_MESSAGE,
    MAX_CHARGED_ITEMS,
    MAX_CLIENT_EVENT_ID_CHARS,
    MAX_CUSTOM_PROFILE_KEYS,
    MAX_EVENT_NAMES,
    MAX_EVENT_PROPERTIES,
    RESERVED_EVENT_NAMES,
    ErrorCode,
    IdentifierHeldByAnother,
    RecordError,
    coerce_scalar,
    format_date,
    normalize_device_id,
    normalize_identifier,
    validate_key,
)
from profiles.rules.history import history_rows
from profiles.rules.mapping import mapped_profile_data
from profiles.rules.single_valued import SINGLE_VALUED_KINDS

__all__ = [
    "Actor",
    "DeviceInfo",
    "RecordError",
    "device_push_token_set",
    "event_push",
    "event_validate",
    "identifiers_normalize",
    "login_decision",
    "profile_delete",
    "profile_login",
    "profile_mark_test",
    "profile_push",
    "service_batch",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

IDENTIFIER_PRIORITY = ("identity", "email", "phone", "fbid", "gpid")
# (Which kinds are single-valued: profiles.rules.single_valued.)
MAX_IDENTITY_ATTEMPTS = 8
TEST_MARKED_EVENT = "Marked as test profile"
TEST_UNMARKED_EVENT = "Unmarked as test profile"
# What a lost race looks like, for every writer of the profile store (one record here,
# a batch in profiles.bulk), retried from the top in a fresh savepoint:
# foreign_key_violation, unique_violation (a row we relied on changed under us),
# deadlock_detected, serialization_failure (our statement was the one cancelled).
RETRY_SQLSTATES = frozenset({"23503", "23505", "40P01", "40001"})
PROFILE_KEYS_WITHOUT_TYPE = {*DEFAULT_PROPERTIES, *IDENTIFIER_KEYS, *DERIVED_KEYS}


@dataclass(frozen=True)
class Actor:
    """Who made a change: a dashboard user, or a label (API credential, file)."""

    source: str
    user: AbstractBaseUser | None = None
    label: str = ""

    @classmethod
    def system(cls) -> Actor:
        return cls(source=Source.SYSTEM)


@dataclass
class DeviceInfo:
    """What an SDK says about the device with a call (all optional)."""

    platform: str = ""
    make: str = ""
    model: str = ""
    push_token: str = ""
    push_enabled: bool | None = None
    location: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _IdentityRace(Exception):
    """Another transaction took an identifier (or a device) first; resolve again."""


# --- lookups cached across the records of one batch ---------------------------


@dataclass
class _Lookups:
    """Rows that rarely change, read once per call or once per `service_batch`."""

    profile_types: dict[str, str] = field(default_factory=dict)  # custom key -> type
    profile_types_total: int | None = None  # profile property definitions that exist
    event_names: set[str] = field(default_factory=set)
    mappings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # Profiles the record being stored created: their history is one "Profile
    # created" row (profiles.rules.history). Per record, never shared by a batch.
    created_profiles: set[int] = field(default_factory=set)

    def clear(self) -> None:
        self.profile_types.clear()
        self.profile_types_total = None
        self.event_names.clear()
        self.mappings.clear()


_batch_lookups: contextvars.ContextVar[_Lookups | None] = contextvars.ContextVar(
    "profile_service_lookups", default=None
)


@contextlib.contextmanager
def service_batch() -> Iterator[None]:
    """Share lookups (property types, event names, event->profile mapping rules)
    across the service calls made inside the block, e.g. the 1000 records of one
    upload: per record, an event on a known device then costs ~4 queries.

    Safe because a service call that fails forgets everything cached (its own
    writes are rolled back). The one contract for the caller: do not roll back a
    service call that returned while the block is open (wrap a whole batch in
    one transaction and retry the whole batch, or let each call commit).
    """
    token = _batch_lookups.set(_Lookups())
    try:
        yield
    finally:
        _batch_lookups.reset(token)


def _lookups() -> _Lookups:
    return _batch_lookups.get() or _Lookups()


def sqlstate_of(error: BaseException) -> str | None:
    return getattr(error.__cause__, "sqlstate", None) or getattr(error, "sqlstate", None)


def _run_record(step: Callable[[_Lookups], T]) -> T:
    """Run one record's `step` atomically (a transaction, or a savepoint inside a
    caller's), again from the top after a lost race (RETRY_SQLSTATES), at most
    MAX_IDENTITY_ATTEMPTS times."""
    lookups = _lookups()
    for attempt in range(1, MAX_IDENTITY_ATTEMPTS + 1):
        lookups.created_profiles.clear()
        try:
            with transaction.atomic():
                return step(lookups)
        except _IdentityRace:
            lookups.clear()
            logger.debug("lost a race on an identifier or device; attempt %d", attempt)
            continue
        except DatabaseError as error:
            lookups.clear()
            state = sqlstate_of(error)
            if state not in RETRY_SQLSTATES or attempt == MAX_IDENTITY_ATTEMPTS:
                raise
            logger.info("retrying a record after %s (attempt %d)", state, attempt)
        except BaseException:
            lookups.clear()
            raise
    raise RecordError(ErrorCode.MISC, "The profile changed concurrently too often; retry the call.")


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


def _identifiers_from_profile_data(profile_data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        key: value
        for key, value in (profile_data or {}).items()
        if isinstance(key, str) and key.lower() in IDENTIFIER_KEYS and not isinstance(value, dict)
    }


def _identifiers_q(pairs: Iterable[tuple[str, str]]) -> Q:
    matches = Q(pk__in=[])
    for kind, value in pairs:
        matches |= Q(kind=kind, value=value)
    return matches


def _single_holder(holders: dict[tuple[str, str], int]) -> int | None:
    """The one profile holding the wanted identifiers; refuses when several do."""
    profile_ids = set(holders.values())
    if len(profile_ids) > 1:
        held = ", ".join(sorted(f"{kind} '{value}'" for kind, value in holders))
        raise RecordError(
            ErrorCode.MISC,
            f"Identifiers {held} belong to different profiles; profiles are never merged.",
        )
    return next(iter(profile_ids), None)


def _identifiers_attach(
    profile: Profile,
    identifiers: dict[str, str],
    *,
    racing: bool,
    held: Iterable[tuple[str, str]] = (),
) -> None:
    """Give `profile` these identifiers (one INSERT). A conflict means another
    profile holds one: in a login (`racing`) that is a race to retry against
    the winner; in a property update it refuses the record (never merged)."""
    held = set(held)
    missing = [(kind, value) for kind, value in identifiers.items() if (kind, value) not in held]
    if not missing:
        return
    # One email / phone / FBID / GPID per profile is a database constraint: drop the
    # value being replaced first. A conflict below rolls this back with the record.
    replacing = {kind for kind, _value in missing if kind in SINGLE_VALUED_KINDS}
    if replacing:
        Identifier.objects.filter(profile=profile, kind__in=replacing).delete()
    now = timezone.now()
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(missing))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
            f" VALUES {rows} ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value",
            [item for kind, value in missing for item in (profile.pk, kind, value, now)],
        )
        inserted = {(kind, value) for kind, value in cursor.fetchall()}
    conflicts = [pair for pair in missing if pair not in inserted]
    if conflicts:
        owners = dict(
            ((kind, value), owner)
            for kind, value, owner in Identifier.objects.filter(
                _identifiers_q(conflicts)
            ).values_list("kind", "value", "profile_id")
        )
        for kind, value in conflicts:
            owner = owners.get((kind, value))
            if owner == profile.pk:
                continue
            if racing or owner is None:
                raise _IdentityRace
            raise IdentifierHeldByAnother(kind, value)
    if inserted:
        profile.identified = True  # the trigger set the column


# --- devices and profiles ---------------------------------------------------------


def _profiles_locked(ids: Iterable[int]) -> dict[int, Profile]:
    """Lock these profiles in primary-key order (the one lock order) and read them fresh."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {
        profile.pk: profile
        for profile in Profile.objects.select_for_update(no_key=True)
        .filter(pk__in=wanted)
        .order_by("pk")
    }


def _profile_locked(pk: int) -> Profile:
    profile = _profiles_locked([pk]).get(pk)
    if profile is None:  # deleted meanwhile
        raise _IdentityRace
    return profile


def _columns(model: type, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def _instance(model: type, values: Sequence[Any]) -> Any:
    """A model instance from a raw row of its concrete fields (in _meta order).

    The hot paths select with hand-written SQL (one round trip, no ORM
    compilation per record); JSON columns still go through their field's decoder.
    """
    fields = model._meta.concrete_fields
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


DEVICE_PROFILE_SQL = (
    f"SELECT {_columns(Device, 'd')}, {_columns(Profile, 'p')} FROM profiles_device d"
    " LEFT JOIN profiles_profile p ON p.id = d.profile_id WHERE d.object_id = %s FOR UPDATE OF d"
)


def _profile_create(lookups: _Lookups) -> Profile:
    profile = Profile.objects.create()
    lookups.created_profiles.add(profile.pk)
    return profile


def _device_resolve(
    object_id: str, at: dt.datetime, lookups: _Lookups, *, create_profile: bool = True
) -> tuple[Device, Profile | None, bool]:
    """The device row (locked) and the profile it maps to (read, not locked).

    A never-seen device, or one whose profile was deleted, gets a new
    anonymous profile (or none, without `create_profile`: a login decides).
    Returns (device, profile, profile_was_created).
    """
    device = None
    with connection.cursor() as cursor:
        cursor.execute(DEVICE_PROFILE_SQL, [object_id])
        row = cursor.fetchone()
    if row is not None:
        width = len(Device._meta.concrete_fields)
        device = _instance(Device, row[:width])
        if device.profile_id is not None:
            device.profile = _instance(Profile, row[width:])
    if device is not None and (device.profile_id is not None or not create_profile):
        return device, device.profile if device.profile_id else None, False
    profile = _profile_create(lookups) if create_profile else None
    if device is not None:
        Device.objects.filter(pk=device.pk).update(profile=profile)
        device.profile = profile
        return device, profile, True
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_device (object_id, profile_id, platform, make, model,"
            " push_token, first_seen) VALUES (%s, %s, '', '', '', '', %s)"
            " ON CONFLICT (object_id) DO NOTHING RETURNING id",
            [object_id, profile.pk if profile else None, at],
        )
        row = cursor.fetchone()
    if row is None:
        raise _IdentityRace  # another call registered the device meanwhile
    device = Device(pk=row[0], object_id=object_id, profile=profile, first_seen=at)
    device._state.adding, device._state.db = False, "default"
    return device, profile, profile is not None


# --- properties --------------------------------------------------------------------


def _profile_types(keys: Iterable[str], lookups: _Lookups) -> dict[str, str]:
    """Known types of these custom keys (default and identifier keys have none)."""
    custom_keys = [
        key for key in keys if isinstance(key, str) and key.lower() not in PROFILE_KEYS_WITHOUT_TYPE
    ]
    unknown = [key for key in custom_keys if key not in lookups.profile_types]
    if unknown:
        lookups.profile_types.update(
            PropertyDefinition.objects.filter(
                scope=PropertyScope.PROFILE, name__in=unknown
            ).values_list("name", "type")
        )
    return {key: lookups.profile_types[key] for key in custom_keys if key in lookups.profile_types}


def _default_field_values(profile: Profile) -> dict[str, Any]:
    return {prop.field: getattr(profile, prop.field) for prop in DEFAULT_PROPERTIES.values()}


def _profile_update_plan(
    profile: Profile, profile_data: dict[str, Any], lookups: _Lookups
) -> ProfileUpdate:
    if not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    for key in profile_data:
        validate_key(key)  # before any key reaches a query
    known_types = _profile_types(profile_data, lookups)
    total = None
    if any(
        isinstance(key, str)
        and key not in known_types
        and key.lower() not in PROFILE_KEYS_WITHOUT_TYPE
        for key in profile_data
    ):
        if lookups.profile_types_total is None:
            lookups.profile_types_total = PropertyDefinition.objects.filter(
                scope=PropertyScope.PROFILE
            ).count()
        total = lookups.profile_types_total
    return plan_profile_update(
        profile_data,
        current_fields=_default_field_values(profile),
        current_custom=profile.custom,
        known_types=known_types,
        identifying_kinds=identifying_kinds(),
        current_custom_keys_total=total,
        max_custom_keys=MAX_CUSTOM_PROFILE_KEYS,
    )


def _property_types_record(types: dict[str, str], lookups: _Lookups) -> None:
    """Record first-seen types (and string -> list upgrades) in one upsert.

    A concurrent writer may have fixed the type first: the definition that
    wins is returned, and a value of another type is refused, never coerced.
    Names are sorted so concurrent upserts lock definitions in one order.
    """
    if not types:
        return
    names = sorted(types)
    rows = ", ".join(["(%s, %s, %s, false, now())"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_propertydefinition AS d (scope, name, type, declared,"
            f" created_at) VALUES {rows} ON CONFLICT (scope, name) DO UPDATE SET type ="
            " CASE WHEN d.type = 'string' AND EXCLUDED.type = 'list' THEN 'list' ELSE d.type END"
            " RETURNING d.name, d.type, (xmax = 0)",
            [item for name in names for item in (PropertyScope.PROFILE, name, types[name])],
        )
        recorded = cursor.fetchall()
    for name, stored, inserted in recorded:
        wanted = types[name]
        if stored != wanted and (stored, wanted) not in COMPATIBLE_TYPES:
            raise RecordError(
                ErrorCode.MISC, f"Property '{name}' holds a {stored}; refused a {wanted}."
            )
        lookups.profile_types[name] = stored
        if inserted and lookups.profile_types_total is not None:
            lookups.profile_types_total += 1


def _profile_update_apply(
    profile: Profile,
    update: ProfileUpdate,
    *,
    actor: Actor,
    at: dt.datetime,
    racing: bool,
    lookups: _Lookups,
    held: Iterable[tuple[str, str]] = (),
) -> None:
    """Write a planned update. `held`: identifiers the profile is known to hold."""
    if update.is_empty:
        return
    if update.remove_identifier_kinds:
        Identifier.objects.filter(profile=profile, kind__in=update.remove_identifier_kinds).delete()
        held = ()
    _identifiers_attach(profile, update.add_identifiers, racing=racing, held=held)
    if (
        update.remove_identifier_kinds
        and profile.identified
        and not update.add_identifiers
        and not Identifier.objects.filter(profile=profile).exists()
    ):
        # An identified profile stays identified: anonymous profiles may be linked to it.
        removed = ", ".join(sorted(update.remove_identifier_kinds))
        raise RecordError(
            ErrorCode.MISC,
            f"Removing {removed} would leave the profile without any identifier; "
            "delete the profile instead.",
        )
    _property_types_record(update.types, lookups)
    values: dict[str, Any] = dict(update.fields)
    if update.custom_changed:
        values["custom"] = update.custom
    if values:
        for name, value in values.items():
            setattr(profile, name, value)
        Profile.objects.filter(pk=profile.pk).update(**values, updated_at=timezone.now())
    history = history_rows(update.changes, created=profile.pk in lookups.created_profiles)
    if history:
        PropertyChange.objects.bulk_create(
            PropertyChange(
                profile=profile, property=key, old_value=old, new_value=new,
                source=actor.source, actor=actor.user, actor_label=actor.label, changed_at=at,
            )
            for key, old, new in history
        )  # fmt: skip


def _properties_apply(
    profile: Profile,
    profile_data: dict[str, Any] | None,
    *,
    actor: Actor,
    at: dt.datetime,
    lookups: _Lookups,
    racing: bool = False,
    held: Iterable[tuple[str, str]] = (),
) -> None:
    """`profile` must be locked and fresh (the plan reads its current values)."""
    if profile_data:
        update = _profile_update_plan(profile, profile_data, lookups)
        _profile_update_apply(
            profile, update, actor=actor, at=at, racing=racing, lookups=lookups, held=held
        )


def _profile_data_check(profile_data: object) -> dict[str, Any] | None:
    if profile_data is not None and not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    return profile_data


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


def _login_once(
    device_id: str | None,
    identifiers: dict[str, str],
    profile_data: dict[str, Any] | None,
    actor: Actor,
    at: dt.datetime,
    lookups: _Lookups,
    new_user: bool = True,
) -> tuple[Profile, Device | None]:
    device: Device | None = None
    current: Profile | None = None
    if device_id is not None:
        # A login as a device's first call maps it straight to the person.
        device, current, _ = _device_resolve(device_id, at, lookups, create_profile=False)
    holders = dict(
        ((kind, value), owner)
        for kind, value, owner in Identifier.objects.filter(
            _identifiers_q(identifiers.items())
        ).values_list("kind", "value", "profile_id")
    )
    holder_id = _single_holder(holders)
    to_lock = [holder_id] if holder_id is not None else []
    if current is not None:
        to_lock.append(current.pk)
    locked = _profiles_locked(to_lock)
    if any(pk not in locked for pk in to_lock):
        raise _IdentityRace  # deleted meanwhile
    if current is not None:
        current = locked[current.pk]

    decision = login_decision(
        current_id=current.pk if current is not None else None,
        current_identified=current is not None and current.identified,
        current_linked=current is not None and current.linked_to_id is not None,
        holder_id=holder_id,
        named=bool(identifiers),
        new_user=new_user,
    )
    if decision.target == LOGIN_REFUSED:
        mine = current.pk if current is not None else None
        kind, value = min(pair for pair, owner in holders.items() if owner != mine)
        raise IdentifierHeldByAnother(kind, value)
    if decision.target == LOGIN_CURRENT:
        target = current
    elif decision.target == LOGIN_NEW:
        target = _profile_create(lookups)
    else:
        target = locked[holder_id]
        if decision.link_current:
            Profile.objects.filter(pk=current.pk).update(linked_to=target)
    held = {pair for pair, owner in holders.items() if owner == target.pk}
    _identifiers_attach(target, identifiers, racing=True, held=held)
    if device is not None and device.profile_id != target.pk:
        Device.objects.filter(pk=device.pk).update(profile=target)
        device.profile = target
    _properties_apply(
        target, profile_data, actor=actor, at=at, lookups=lookups, racing=True,
        held=identifiers.items(),
    )  # fmt: skip
    return target, device


def profile_login(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    profile_data: dict[str, Any] | None = None,
    actor: Actor,
    at: dt.datetime | None = None,
    new_user: bool = True,
) -> Profile:
    """CleverTap's onUserLogin.

    Identifiers come from `identifiers` and from the identifier keys of
    `profile_data` (Identity, Email, Phone, FBID, GPID). Then, for device D:
    - no profile holds them, D's profile is anonymous: that profile becomes
      identified (its earlier events stay and count);
    - no profile holds them, D's profile is identified (shared device) or there
      is no device: a new profile is created (and D switches to it);
    - profile X holds them: D switches to X; an anonymous profile D left
      behind is kept and linked to X.
    With `new_user=False` (the sender says D's person has not changed: the web
    SDK's unflagged profile record) an identified D keeps its profile, which
    takes the identifiers as profilePush would (see `login_decision`).
    Two identified profiles are never merged: identifiers held by two
    different profiles refuse the record. Safe under concurrency: a lost race
    on an identifier retries against the winner's committed state.
    Raises RecordError for invalid input; writes nothing then.
    """
    at = at or timezone.now()
    profile_data = _profile_data_check(profile_data)
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(
        {**(identifiers or {}), **_identifiers_from_profile_data(profile_data)}
    )
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)

    def login(lookups: _Lookups) -> Profile:
        return _login_once(device_id, wanted, profile_data, actor, at, lookups, new_user)[0]

    return _run_record(login)


def _profile_for_call(
    device_id: str | None,
    identifiers: dict[str, str],
    actor: Actor,
    at: dt.datetime,
    lookups: _Lookups,
    *,
    lock: bool,
) -> tuple[Profile, Device | None]:
    """The profile a push or an event is about, creating it when never seen.

    With `lock` the profile is locked and fresh (needed to change properties);
    a profile found by its identifiers is always locked.
    """
    if device_id is not None and identifiers:
        return _login_once(device_id, identifiers, None, actor, at, lookups)
    if device_id is not None:
        device, profile, created = _device_resolve(device_id, at, lookups)
        if lock and not created:
            profile = _profile_locked(profile.pk)
        return profile, device
    matches = " OR ".join(["(i.kind = %s AND i.value = %s)"] * len(identifiers))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.kind, i.value, {_columns(Profile, 'p')} FROM profiles_identifier i"
            f" JOIN profiles_profile p ON p.id = i.profile_id WHERE {matches}"
            " ORDER BY p.id FOR NO KEY UPDATE OF p",
            [item for pair in identifiers.items() for item in pair],
        )
        rows = cursor.fetchall()
    holders = {(row[0], row[1]): _instance(Profile, row[2:]) for row in rows}
    holder_id = _single_holder({pair: profile.pk for pair, profile in holders.items()})
    if holder_id is not None:
        holder = next(iter(holders.values()))
        # Identifiers the call names but the person does not hold yet join them.
        _identifiers_attach(holder, identifiers, racing=True, held=holders)
        return holder, None
    profile = _profile_create(lookups)  # an unknown identity creates a new profile
    _identifiers_attach(profile, identifiers, racing=True)
    return profile, None


def profile_push(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    profile_data: dict[str, Any],
    actor: Actor,
    at: dt.datetime | None = None,
) -> Profile:
    """CleverTap's profilePush: update the profile the call names, only that one.

    The profile is found by `identifiers` (created when unknown) or by the
    device's current profile. Identifier keys in `profile_data` are added to
    it; one held by another profile refuses the whole record. Removing a
    profile's last identifier is refused (delete the profile instead).
    """
    at = at or timezone.now()
    profile_data = _profile_data_check(profile_data)
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(identifiers)
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)

    def push(lookups: _Lookups) -> Profile:
        profile, _ = _profile_for_call(device_id, wanted, actor, at, lookups, lock=True)
        # The identifiers in profile_data are updates: refused, not raced, on conflict.
        _properties_apply(profile, profile_data, actor=actor, at=at, lookups=lookups)
        return profile

    return _run_record(push)


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


def event_name_register(name: str) -> None:
    """Remember the name (for pickers); refuse a new name past the per-account cap."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM profiles_eventname WHERE name = %s),"
            " (SELECT count(*) FROM profiles_eventname)",
            [name],
        )
        known, total = cursor.fetchone()
        if known:
            return
        if total >= MAX_EVENT_NAMES:
            raise RecordError(
                ErrorCode.MISC, f"At most {MAX_EVENT_NAMES} different event names may exist."
            )
        cursor.execute(
            "INSERT INTO profiles_eventname (name, first_seen) VALUES (%s, now())"
            " ON CONFLICT (name) DO NOTHING",
            [name],
        )


def _event_name_register(name: str, lookups: _Lookups) -> None:
    if name not in lookups.event_names:
        event_name_register(name)
        lookups.event_names.add(name)


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


def _event_store(
    profile: Profile, device: Device | None, name: str, properties: dict[str, Any],
    ts: dt.datetime, source: str, client_event_id: str | None,
) -> Event | None:  # fmt: skip
    """Insert the event; None when its client id was stored before (a retry)."""
    received_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_event (profile_id, device_id, name, ts, properties, source,"
            " client_event_id, received_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
            " ON CONFLICT (profile_id, client_event_id) WHERE client_event_id IS NOT NULL"
            " DO NOTHING RETURNING id",
            [profile.pk, device.pk if device else None, name, ts, _json(properties), source,
             client_event_id, received_at],
        )  # fmt: skip
        row = cursor.fetchone()
    if row is None:
        return None
    return Event(
        pk=row[0], profile=profile, device=device, name=name, ts=ts, properties=properties,
        source=source, client_event_id=client_event_id, received_at=received_at,
    )  # fmt: skip


# Both rows in one round trip. "last_*" change only when the event is the
# profile's newest (a back-filled event changes no "last" property).
SYSTEM_PROPERTIES_SQL = """
WITH profile AS (
    UPDATE profiles_profile SET
        event_count = event_count + 1,
        first_seen = LEAST(first_seen, %(ts)s),
        last_seen = GREATEST(last_seen, %(ts)s),
        last_platform = CASE WHEN %(platform)s <> '' AND (last_seen IS NULL OR last_seen <= %(ts)s)
                        THEN %(platform)s ELSE last_platform END,
        last_device = CASE WHEN %(device_name)s <> '' AND (last_seen IS NULL OR last_seen <= %(ts)s)
                      THEN %(device_name)s ELSE last_device END,
        last_location = CASE WHEN %(location)s <> '' AND (last_seen IS NULL OR last_seen <= %(ts)s)
                        THEN %(location)s ELSE last_location END
    WHERE id = %(profile)s
)
UPDATE profiles_device SET
    last_seen = GREATEST(last_seen, %(ts)s),
    platform = COALESCE(NULLIF(%(device_platform)s, ''), platform),
    make = COALESCE(NULLIF(%(make)s, ''), make),
    model = COALESCE(NULLIF(%(model)s, ''), model),
    push_token = COALESCE(NULLIF(%(push_token)s, ''), push_token),
    push_enabled = COALESCE(%(push_enabled)s, push_enabled)
WHERE id = %(device)s
"""


def _clip(value: str, model: type, field_name: str) -> str:
    return value[: model._meta.get_field(field_name).max_length]


def _system_properties_refresh(
    profile: Profile, device: Device | None, ts: dt.datetime, info: DeviceInfo | None
) -> None:
    """Event count, first/last seen; last platform/device/location; the device's
    last seen and what the SDK said about it (PostgreSQL's LEAST/GREATEST skip NULLs)."""
    info = info or DeviceInfo()
    with connection.cursor() as cursor:
        cursor.execute(
            SYSTEM_PROPERTIES_SQL,
            {
                "ts": ts,
                "profile": profile.pk,
                "platform": _clip(
                    info.platform or (device.platform if device else ""), Profile, "last_platform"
                ),
                "device_name": _clip(
                    " ".join(filter(None, [info.make, info.model])), Profile, "last_device"
                ),
                "location": _clip(info.location, Profile, "last_location"),
                "device": device.pk if device else None,
                "device_platform": _clip(info.platform, Device, "platform"),
                "make": _clip(info.make, Device, "make"),
                "model": _clip(info.model, Device, "model"),
                "push_token": _clip(info.push_token, Device, "push_token"),
                "push_enabled": info.push_enabled,
            },
        )


def _mapped_profile_data(
    name: str, properties: dict[str, Any], lookups: _Lookups
) -> dict[str, Any]:
    """Event -> profile mapping rules, e.g. "Plan Purchased".plan -> Plan."""
    rules = lookups.mappings.get(name)
    if rules is None:
        rules = list(
            EventPropertyMapping.objects.filter(event_name=name, enabled=True)
            .order_by("pk")
            .values_list("event_property", "profile_property")
        )
        lookups.mappings[name] = rules
    return mapped_profile_data(rules, properties)


def event_push(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    name: str,
    properties: dict[str, Any] | None = None,
    ts: dt.datetime | None = None,
    actor: Actor,
    client_event_id: str | None = None,
    device_info: DeviceInfo | None = None,
    system: bool = False,
) -> tuple[Profile, Event | None]:
    """Record an event for the person the call names, creating them when never seen.

    With a device and identifiers the onUserLogin rules decide the profile.
    Every stored event refreshes the profile's first/last seen, event count and
    last platform/device/location, and applies the event->profile mapping
    rules. A mapped value the profile property refuses (e.g. a wrong type) is
    skipped and logged: the event itself is kept. A repeated `client_event_id`
    for the same profile stores nothing (returns the profile and None).
    Invalid input raises RecordError and writes nothing.
    """
    stored_properties = event_validate(name, properties, system=system)
    if client_event_id is not None:
        client_event_id = str(client_event_id)
        if not client_event_id or len(client_event_id) > MAX_CLIENT_EVENT_ID_CHARS:
            raise RecordError(
                ErrorCode.EVENT_STRUCTURE,
                f"The client event id must be 1 to {MAX_CLIENT_EVENT_ID_CHARS} characters.",
            )
    ts = ts or timezone.now()
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(identifiers)
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)

    def push(lookups: _Lookups) -> tuple[Profile, Event | None]:
        profile, device = _profile_for_call(device_id, wanted, actor, ts, lookups, lock=False)
        _event_name_register(name, lookups)
        event = _event_store(
            profile, device, name, stored_properties, ts, actor.source, client_event_id
        )
        if event is None:
            return profile, None
        _system_properties_refresh(profile, device, ts, device_info)
        mapped = _mapped_profile_data(name, stored_properties, lookups)
        if mapped:
            profile = _profile_locked(profile.pk)
            try:  # the event is kept whatever its mapping meets (rules.mapping)
                update = _profile_update_plan(profile, mapped, lookups)
                with transaction.atomic():  # e.g. a mapped Email another profile holds
                    _profile_update_apply(
                        profile, update, actor=actor, at=ts, racing=False, lookups=lookups
                    )
            except RecordError as error:
                logger.warning(
                    "event %r: mapping to profile %s skipped: %s", name, profile.ct_id, error
                )
                profile = _profile_locked(profile.pk)
            event.profile = profile
        return profile, event

    return _run_record(push)


# --- devices ---------------------------------------------------------------------------


def device_push_token_set(
    *,
    device_id: str,
    platform: str,
    push_token: str,
    push_enabled: bool,
    at: dt.datetime | None = None,
) -> Device:
    """Set (or, with an empty `push_token`, clear) the device's push token ("platform ID")
    and push permission; the device's platform becomes `platform`.

    A never-seen device is registered with a new anonymous profile, as its first
    event would be. Does not touch last seen: a registration is not activity.
    The token's format is the caller's rule (profiles.rules.web_push for web push).
    """
    device_id = normalize_device_id(device_id)
    at = at or timezone.now()

    def store(lookups: _Lookups) -> Device:
        device, _profile, _created = _device_resolve(device_id, at, lookups)
        Device.objects.filter(pk=device.pk).update(
            platform=_clip(platform, Device, "platform"),
            push_token=push_token,
            push_enabled=push_enabled,
        )
        device.platform, device.push_token, device.push_enabled = platform, push_token, push_enabled
        return device

    return _run_record(store)


# --- dashboard actions -------------------------------------------------------------


def profile_mark_test(*, profile: Profile, user: AbstractBaseUser, is_test: bool = True) -> Profile:
    """Mark (or unmark) a test profile: sets ct_is_test_user = "Yes" (a string)
    or removes it, records who did it as a system event on the profile and a
    PropertyChange row. Marking a marked profile changes nothing. The system
    event does not count as activity (no last seen, no event count)."""
    actor = Actor(source=Source.DASHBOARD, user=user, label=user.get_username())

    def mark(lookups: _Lookups) -> Profile:
        locked = _profiles_locked([profile.pk]).get(profile.pk)
        if locked is None:
            raise Profile.DoesNotExist(f"profile {profile.ct_id} was deleted")
        if locked.is_test == is_test:
            return locked
        now = timezone.now()
        data = {TEST_PROFILE_PROPERTY: TEST_PROFILE_VALUE if is_test else {"$delete": True}}
        update = _profile_update_plan(locked, data, lookups)
        _profile_update_apply(locked, update, actor=actor, at=now, racing=False, lookups=lookups)
        Event.objects.create(
            profile=locked,
            name=TEST_MARKED_EVENT if is_test else TEST_UNMARKED_EVENT,
            ts=now,
            properties={"by": user.get_username()},
            source=Source.SYSTEM,
        )
        return locked

    return _run_record(mark)


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
