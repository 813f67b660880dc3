"""Writes to the profile store: the identity rules and property operations.

Every channel (SDK-style calls, REST API, CSV and SFTP imports, dashboard)
goes through these functions, so each rule has one implementation:

- `profile_login`   — CleverTap's onUserLogin (the four identity rules).
- `profile_push`    — profilePush: update the current profile only.
- `event_push`      — record an event and refresh the profile's system properties.
- `profile_mark_test`, `profile_delete`.

Safety under concurrency comes from the database: identifiers are unique per
(kind, value), devices per object id, client event ids per profile. A race
shows up as a conflict on insert; the affected step is retried from the top
against the now-committed state, never resolved by luck.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Q
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
from profiles.operations import ProfileUpdate, plan_profile_update
from profiles.properties import (
    IDENTIFIER_KEYS,
    MAX_CHARGED_ITEMS,
    MAX_CUSTOM_PROFILE_KEYS,
    MAX_EVENT_NAMES,
    MAX_EVENT_PROPERTIES,
    RESERVED_EVENT_NAMES,
    ErrorCode,
    RecordError,
    coerce_scalar,
    format_date,
    normalize_device_id,
    normalize_identifier,
    validate_key,
)

logger = logging.getLogger(__name__)

IDENTIFIER_PRIORITY = ("identity", "email", "phone", "fbid", "gpid")
# A profile holds one email, one phone, one FBID and one GPID (they mirror its
# default properties); it may hold several customer identities.
SINGLE_VALUED_KINDS = {"email", "phone", "fbid", "gpid"}
MAX_IDENTITY_ATTEMPTS = 8
TEST_MARKED_EVENT = "Marked as test profile"
TEST_UNMARKED_EVENT = "Unmarked as test profile"


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
    """Another transaction took an identifier first; resolve again."""


def identifying_kinds() -> frozenset[str]:
    return frozenset(settings.PROFILE_IDENTIFYING_KINDS)


def identifiers_normalize(raw: dict[str, Any] | None) -> dict[str, str]:
    """{"identity": "u1", "Email": " A@B.com "} -> {"identity": "u1", "email": "a@b.com"}."""
    normalized: dict[str, str] = {}
    for key, value in (raw or {}).items():
        kind = IDENTIFIER_KEYS.get(key.lower())
        if kind is None or value is None or value == "":
            continue
        if kind in {"email", "phone"} and kind not in identifying_kinds():
            continue
        normalized[kind] = normalize_identifier(kind, value)
    return normalized


def _identifiers_from_profile_data(profile_data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        key: value
        for key, value in (profile_data or {}).items()
        if key.lower() in IDENTIFIER_KEYS and not isinstance(value, dict)
    }


# --- low-level steps -------------------------------------------------------


def _profile_create() -> Profile:
    return Profile.objects.create()


def _device_for_update(object_id: str, now: dt.datetime) -> Device:
    """The device row, locked; a never-seen (or orphaned) device gets an anonymous profile."""
    device = Device.objects.select_for_update().filter(object_id=object_id).first()
    if device is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO profiles_device (object_id, platform, make, model, push_token,"
                " first_seen) VALUES (%s, '', '', '', '', %s) ON CONFLICT (object_id) DO NOTHING",
                [object_id, now],
            )
        device = Device.objects.select_for_update().get(object_id=object_id)
    if device.profile_id is None:
        device.profile = _profile_create()
        device.save(update_fields=["profile"])
    return device


def _holder(identifiers: dict[str, str]) -> Profile | None:
    """The one profile holding any of `identifiers`, locked; refuses if several do."""
    if not identifiers:
        return None
    matches = Q()
    for kind, value in identifiers.items():
        matches |= Q(kind=kind, value=value)
    holders = {row.profile_id: row for row in Identifier.objects.filter(matches)}
    if not holders:
        return None
    if len(holders) > 1:
        held = ", ".join(sorted(f"{row.kind} '{row.value}'" for row in holders.values()))
        raise RecordError(
            ErrorCode.MISC,
            f"Identifiers {held} belong to different profiles; profiles are never merged.",
        )
    return Profile.objects.select_for_update().get(pk=next(iter(holders)))


def _identifiers_attach(profile: Profile, identifiers: dict[str, str], *, racing: bool) -> None:
    """Give `profile` these identifiers. A conflict means another profile holds one:
    in a login (`racing`) that is a race to retry; in an update it is refused."""
    if not identifiers:
        return
    held = set(Identifier.objects.filter(profile=profile).values_list("kind", "value"))
    missing = {kind: value for kind, value in identifiers.items() if (kind, value) not in held}
    if not missing:
        return
    now = timezone.now()
    with connection.cursor() as cursor:
        for kind, value in missing.items():
            cursor.execute(
                "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (kind, value) DO NOTHING RETURNING id",
                [profile.pk, kind, value, now],
            )
            if cursor.fetchone() is None:
                if racing:
                    raise _IdentityRace
                raise RecordError(
                    ErrorCode.MISC,
                    f"{kind.capitalize()} '{value}' belongs to another profile; "
                    "profiles are never merged.",
                )
            if kind in SINGLE_VALUED_KINDS:
                Identifier.objects.filter(profile=profile, kind=kind).exclude(value=value).delete()
    profile.identified = True


def _with_identity_retries(step, *args, **kwargs):
    """Run `step` in a savepoint, again from the top when it lost an identity race."""
    for _ in range(MAX_IDENTITY_ATTEMPTS):
        try:
            with transaction.atomic():
                return step(*args, **kwargs)
        except _IdentityRace:
            continue
    raise RecordError(ErrorCode.MISC, "The profile changed concurrently too often; retry the call.")


# --- properties --------------------------------------------------------------


def _default_field_values(profile: Profile) -> dict[str, Any]:
    from profiles.properties import DEFAULT_PROPERTIES

    return {prop.field: getattr(profile, prop.field) for prop in DEFAULT_PROPERTIES.values()}


def _profile_update_plan(profile: Profile, profile_data: dict[str, Any]) -> ProfileUpdate:
    keys = [key for key in profile_data if isinstance(key, str)]
    known_types = dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE, name__in=keys).values_list(
            "name", "type"
        )
    )
    unknown = [k for k in keys if k not in known_types]
    total = (
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE).count() if unknown else None
    )
    return plan_profile_update(
        profile_data,
        current_fields=_default_field_values(profile),
        current_custom=profile.custom,
        known_types=known_types,
        identifying_kinds=identifying_kinds(),
        current_custom_keys_total=total,
        max_custom_keys=MAX_CUSTOM_PROFILE_KEYS,
    )


def _property_types_record(types: dict[str, str]) -> None:
    for name, type_ in types.items():
        definition, created = PropertyDefinition.objects.get_or_create(
            scope=PropertyScope.PROFILE, name=name, defaults={"type": type_}
        )
        if not created and definition.type != type_:
            # Only string -> list (the first multi-value operation) gets here.
            PropertyDefinition.objects.filter(pk=definition.pk, type="string").update(type=type_)


def _profile_update_apply(
    profile: Profile, update: ProfileUpdate, *, actor: Actor, at: dt.datetime, racing: bool
) -> None:
    if update.is_empty:
        return
    if update.remove_identifier_kinds:
        Identifier.objects.filter(profile=profile, kind__in=update.remove_identifier_kinds).delete()
    _identifiers_attach(profile, update.add_identifiers, racing=racing)
    _property_types_record(update.types)
    values: dict[str, Any] = dict(update.fields)
    if update.custom_changed:
        values["custom"] = update.custom
    if values:
        for name, value in values.items():
            setattr(profile, name, value)
        Profile.objects.filter(pk=profile.pk).update(**values, updated_at=timezone.now())
    PropertyChange.objects.bulk_create(
        PropertyChange(
            profile=profile, property=key, old_value=old, new_value=new, source=actor.source,
            actor=actor.user, actor_label=actor.label, changed_at=at,
        )
        for key, old, new in update.changes
    )  # fmt: skip
    profile.refresh_from_db(fields=["identified"])


def _properties_apply(
    profile: Profile, profile_data: dict[str, Any] | None, *, actor: Actor, at: dt.datetime,
    racing: bool = False,
) -> None:  # fmt: skip
    if profile_data:
        _profile_update_apply(
            profile, _profile_update_plan(profile, profile_data), actor=actor, at=at, racing=racing
        )


# --- the identity rules --------------------------------------------------------


def _login_once(
    device_id: str | None, identifiers: dict[str, str], profile_data: dict[str, Any] | None,
    actor: Actor, at: dt.datetime,
) -> Profile:  # fmt: skip
    device = _device_for_update(device_id, at) if device_id else None
    holder = _holder(identifiers)
    current = (
        Profile.objects.select_for_update().get(pk=device.profile_id)
        if device is not None
        else None
    )
    if holder is None:
        if current is not None and not current.identified:
            target = current  # rule 1: the anonymous profile becomes identified
        else:
            target = _profile_create()  # shared device, or no device at all
    elif current is None or holder.pk == current.pk:
        target = holder
    else:
        if not current.identified and current.linked_to_id is None:
            # Rule 2: keep the anonymous profile, linked to the person it turned out to be.
            Profile.objects.filter(pk=current.pk).update(linked_to=holder)
        target = holder
    _identifiers_attach(target, identifiers, racing=True)
    if device is not None and device.profile_id != target.pk:
        device.profile = target
        device.save(update_fields=["profile"])
    _properties_apply(target, profile_data, actor=actor, at=at, racing=True)
    return target


def profile_login(
    *,
    device_id: str | None = None,
    identifiers: dict[str, Any] | None = None,
    profile_data: dict[str, Any] | None = None,
    actor: Actor,
    at: dt.datetime | None = None,
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
    Two identified profiles are never merged: identifiers held by two
    different profiles refuse the record. Safe under concurrency: a lost race
    on an identifier retries against the winner's committed state.
    Raises RecordError for invalid input; writes nothing then.
    """
    at = at or timezone.now()
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize({**(identifiers or {}),
                                    **_identifiers_from_profile_data(profile_data)})  # fmt: skip
    if not wanted and device_id is None:
        raise RecordError(
            ErrorCode.IDENTITY_MISSING,
            "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars to "
            "identify the user.",
        )
    with transaction.atomic():
        return _with_identity_retries(_login_once, device_id, wanted, profile_data, actor, at)


def _profile_for_call(
    device_id: str | None, identifiers: dict[str, str], actor: Actor, at: dt.datetime
) -> tuple[Profile, Device | None]:
    """The profile a push or an event is about, creating it when never seen."""
    if device_id is not None and identifiers:
        profile = _login_once(device_id, identifiers, None, actor, at)
        return profile, Device.objects.get(object_id=device_id)
    if device_id is not None:
        device = _device_for_update(device_id, at)
        return Profile.objects.select_for_update().get(pk=device.profile_id), device
    holder = _holder(identifiers)
    if holder is not None:
        return holder, None
    profile = _profile_create()  # an unknown identity creates a new profile
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
    it; one held by another profile refuses the whole record.
    """
    at = at or timezone.now()
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(identifiers)
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, _identity_missing_message())

    def push_once() -> Profile:
        profile, _ = _profile_for_call(device_id, wanted, actor, at)
        # The identifiers in profile_data are updates: refused, not raced, on conflict.
        _properties_apply(profile, profile_data, actor=actor, at=at)
        return profile

    with transaction.atomic():
        return _with_identity_retries(push_once)


def _identity_missing_message() -> str:
    from profiles.properties import IDENTITY_MISSING_MESSAGE

    return IDENTITY_MISSING_MESSAGE


def event_validate(name: object, properties: object, *, system: bool = False) -> dict[str, Any]:
    """Check an event's name and properties; return the properties as stored."""
    if not isinstance(name, str) or not name.strip():
        raise RecordError(ErrorCode.EVENT_NAME_MANDATORY, "Event name is mandatory.")
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
            stored[key] = raw
            continue
        try:
            value = coerce_scalar(key, raw)
        except RecordError as error:
            raise RecordError(ErrorCode.EVENT_STRUCTURE, error.message) from None
        stored[key] = format_date(value) if isinstance(value, dt.datetime) else value
    return stored


def _event_name_register(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM profiles_eventname WHERE name = %s", [name])
        if cursor.fetchone():
            return
        cursor.execute("SELECT count(*) FROM profiles_eventname")
        if cursor.fetchone()[0] >= MAX_EVENT_NAMES:
            raise RecordError(
                ErrorCode.MISC, f"At most {MAX_EVENT_NAMES} different event names may exist."
            )
        cursor.execute(
            "INSERT INTO profiles_eventname (name, first_seen) VALUES (%s, now())"
            " ON CONFLICT (name) DO NOTHING",
            [name],
        )


def _event_store(
    profile: Profile, device: Device | None, name: str, properties: dict[str, Any],
    ts: dt.datetime, source: str, client_event_id: str | None,
) -> Event | None:  # fmt: skip
    """Insert the event; None when its client id was stored before (a retry)."""
    if client_event_id is None:
        return Event.objects.create(
            profile=profile, device=device, name=name, ts=ts, properties=properties,
            source=source,
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_event (profile_id, device_id, name, ts, properties, source,"
            " client_event_id, received_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, now())"
            " ON CONFLICT (profile_id, client_event_id) WHERE client_event_id IS NOT NULL"
            " DO NOTHING RETURNING id",
            [profile.pk, device.pk if device else None, name, ts, _json(properties), source,
             client_event_id],
        )  # fmt: skip
        row = cursor.fetchone()
    return Event.objects.get(pk=row[0]) if row else None


def _json(value: Any) -> str:
    import json

    from django.core.serializers.json import DjangoJSONEncoder

    return json.dumps(value, cls=DjangoJSONEncoder)


def _system_properties_refresh(
    profile: Profile, device: Device | None, ts: dt.datetime, info: DeviceInfo | None
) -> None:
    from django.db.models.functions import Greatest, Least

    values: dict[str, Any] = {
        "event_count": F("event_count") + 1,
        "first_seen": Least(F("first_seen"), ts) if profile.first_seen else ts,
        "last_seen": Greatest(F("last_seen"), ts) if profile.last_seen else ts,
    }
    if info is not None:
        if info.platform:
            values["last_platform"] = info.platform[:32]
        if info.make or info.model:
            values["last_device"] = " ".join(filter(None, [info.make, info.model]))[:128]
        if info.location:
            values["last_location"] = info.location[:128]
    Profile.objects.filter(pk=profile.pk).update(**values)
    if device is not None:
        device_values: dict[str, Any] = {"last_seen": Greatest(F("last_seen"), ts)
                                         if device.last_seen else ts}  # fmt: skip
        if info is not None:
            for name in ("platform", "make", "model", "push_token"):
                if getattr(info, name):
                    device_values[name] = getattr(info, name)
            if info.push_enabled is not None:
                device_values["push_enabled"] = info.push_enabled
        Device.objects.filter(pk=device.pk).update(**device_values)


def _mapped_profile_data(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """Event -> profile mapping rules, e.g. "Plan Purchased".plan -> Plan."""
    mapped: dict[str, Any] = {}
    for rule in EventPropertyMapping.objects.filter(event_name=name, enabled=True):
        if rule.event_property in properties:
            mapped[rule.profile_property] = properties[rule.event_property]
    return mapped


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
    Every stored event refreshes the profile's last seen, event count and
    device/location properties, and applies the event->profile mapping rules.
    A repeated `client_event_id` for the same profile stores nothing (returns
    the profile and None). Invalid input raises RecordError and writes nothing.
    """
    stored_properties = event_validate(name, properties, system=system)
    ts = ts or timezone.now()
    if device_id is not None:
        device_id = normalize_device_id(device_id)
    wanted = identifiers_normalize(identifiers)
    if not wanted and device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, _identity_missing_message())

    def push_once() -> tuple[Profile, Event | None]:
        profile, device = _profile_for_call(device_id, wanted, actor, ts)
        _event_name_register(name)
        event = _event_store(
            profile, device, name, stored_properties, ts, actor.source, client_event_id
        )
        if event is not None:
            _system_properties_refresh(profile, device, ts, device_info)
            mapped = _mapped_profile_data(name, stored_properties)
            if mapped:
                profile.refresh_from_db()
                _properties_apply(profile, mapped, actor=actor, at=ts)
        return profile, event

    with transaction.atomic():
        return _with_identity_retries(push_once)


# --- dashboard actions -------------------------------------------------------------


@transaction.atomic
def profile_mark_test(*, profile: Profile, user: AbstractBaseUser, is_test: bool = True) -> Profile:
    """Mark (or unmark) a test profile: sets ct_is_test_user = "Yes" (a string)
    or removes it, records who did it as a system event on the profile and a
    PropertyChange row. Marking a marked profile changes nothing."""
    profile = Profile.objects.select_for_update().get(pk=profile.pk)
    if profile.is_test == is_test:
        return profile
    actor = Actor(source=Source.DASHBOARD, user=user, label=user.get_username())
    now = timezone.now()
    data = {TEST_PROFILE_PROPERTY: TEST_PROFILE_VALUE if is_test else {"$delete": True}}
    _properties_apply(profile, data, actor=actor, at=now)
    Event.objects.create(
        profile=profile,
        name=TEST_MARKED_EVENT if is_test else TEST_UNMARKED_EVENT,
        ts=now,
        properties={"by": user.get_username()},
        source=Source.SYSTEM,
    )
    return profile


@transaction.atomic
def profile_delete(*, profile: Profile, user: AbstractBaseUser | None = None) -> int:
    """Erase a person (GDPR): the profile, the anonymous profiles linked to it,
    their identifiers, events and history. Their devices stay but map to
    nothing, so a later call from one starts a new anonymous profile.
    Returns the number of profiles deleted."""
    ids = [profile.pk, *Profile.objects.filter(linked_to=profile).values_list("pk", flat=True)]
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
