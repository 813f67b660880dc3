"""The one way records enter the profile store.

`ingest_records` takes records in CleverTap's upload shape (`type` profile,
event or token, named by `identity`, `FBID`, `GPID` or `objectId`) and stores them set-based
through profiles.bulk, falling back to the per-record services for the shapes the
set-based path does not take yet. It returns each refused record's reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from config.safejson import unstorable_reason
from profiles.bulk import (
    BulkConflict,
    BulkEventRow,
    BulkProfileRow,
    events_bulk_insert,
    profile_data_identifiers,
    profiles_bulk_upsert,
)
from profiles.models import Device, Identifier, Source
from profiles.properties import (
    IDENTIFIER_KEYS,
    ErrorCode,
    RecordError,
    normalize_identifier,
)
from profiles.rules.web_push import SubscriptionError, web_push_subscription
from profiles.services import (
    Actor,
    device_push_token_set,
    event_push,
    event_validate,
    profile_login,
    profile_push,
    service_batch,
)

logger = logging.getLogger(__name__)

# Plausible epoch seconds: 1970-01-01 .. 2286-11-20. Milliseconds (13 digits) are refused.
MAX_EPOCH_SECONDS = 9_999_999_999
TOP_LEVEL_IDENTIFIERS = {"identity": "identity", "fbid": "fbid", "gpid": "gpid"}
WEB_PLATFORM = "Web"  # Device.platform of a browser (campaigns' web push reads it)


@dataclass(frozen=True)
class IngestResult:
    """What happened to a batch: `refusals` maps a record's 1-based number to its reason."""

    total: int
    refusals: dict[int, RecordError] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.total - len(self.refusals)


def _record_ts(record: dict[str, Any]) -> dt.datetime | None:
    raw = record.get("ts")
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_EPOCH_SECONDS:
        raise RecordError(
            ErrorCode.TIMESTAMP, "Timestamp should be present in the Unix Epoch format."
        )
    return dt.datetime.fromtimestamp(raw, tz=dt.UTC)


def _record_identifiers(record: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(objectId, {"identity": …, "fbid": …, "gpid": …}) as the record names them."""
    device_id = None
    identifiers: dict[str, Any] = {}
    for key, value in record.items():
        lowered = key.lower() if isinstance(key, str) else ""
        if lowered == "objectid" and value not in (None, ""):
            device_id = value
        elif lowered in TOP_LEVEL_IDENTIFIERS and value not in (None, ""):
            identifiers[TOP_LEVEL_IDENTIFIERS[lowered]] = value
    return device_id, identifiers


def _client_event_id(record: dict[str, Any]) -> str | None:
    raw = record.get("evtId")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "evtId must be a non-empty string.")
    value = str(raw).strip()
    if len(value) > 128:
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "evtId is longer than 128 characters.")
    return value


def _has_profile_identifier(profile_data: dict[str, Any]) -> bool:

    return any(
        isinstance(key, str) and key.lower() in IDENTIFIER_KEYS and not isinstance(value, dict)
        for key, value in profile_data.items()
    )


def _new_user(record: dict[str, Any]) -> bool:
    """False when the record says its device's person has not changed (`"isOUL": false`,
    as the web SDK endpoint marks a profile record the SDK sent without its isOUL flag):
    an identified device then keeps its profile (services.login_decision)."""
    return record.get("isOUL") is not False


def _token_record(record: dict[str, Any]) -> None:
    """A device token record (CleverTap's `type: token`), web push only for now:
    `tokenData` `{"type": "webpush", "id": <endpoint>, "keys": {"p256dh", "auth"}}` sets the
    objectId's subscription with push permission on; `{"type": "webpush", "action":
    "unregister"}` clears it and turns the permission off."""
    device_id, _identifiers = _record_identifiers(record)
    if device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, "A token record needs its objectId.")
    data = record.get("tokenData")
    if not isinstance(data, dict) or data.get("type") != "webpush":
        raise RecordError(ErrorCode.MISC, "tokenData must be an object of type webpush.")
    if data.get("action") == "unregister":
        device_push_token_set(device_id=device_id, platform=WEB_PLATFORM, push_token="",
                              push_enabled=False, at=_record_ts(record))  # fmt: skip
        return
    try:
        token = web_push_subscription({"endpoint": data.get("id"), "keys": data.get("keys")})
    except SubscriptionError as error:
        raise RecordError(ErrorCode.MISC, str(error)) from None
    device_push_token_set(device_id=device_id, platform=WEB_PLATFORM, push_token=token,
                          push_enabled=True, at=_record_ts(record))  # fmt: skip


def upload_record(record: object, *, actor: Actor) -> None:
    """Store one upload record through the services; RecordError when refused."""
    if not isinstance(record, dict):
        raise RecordError(ErrorCode.NOT_EVENT_OR_PROFILE, "Record must be a JSON object.")
    kind = record.get("type")
    if kind == "token":
        _token_record(record)
        return
    if kind not in ("profile", "event"):
        raise RecordError(
            ErrorCode.NOT_EVENT_OR_PROFILE, "Record type needs to be either event or profile."
        )
    device_id, identifiers = _record_identifiers(record)
    if device_id is None and not identifiers:
        raise RecordError(
            ErrorCode.IDENTITY_MISSING,
            "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars to "
            "identify the user.",
        )
    ts = _record_ts(record)
    if kind == "event":
        event_push(
            device_id=device_id,
            identifiers=identifiers,
            name=record.get("evtName"),
            properties=record.get("evtData"),
            ts=ts,
            actor=actor,
            client_event_id=_client_event_id(record),
            # Only the system itself (never an API client) may record reserved events
            # such as "Notification Sent".
            system=actor.source == Source.SYSTEM,
        )
        return
    profile_data = record.get("profileData", {})
    if not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    if device_id is not None and (identifiers or _has_profile_identifier(profile_data)):
        # An SDK-style login: the onUserLogin rules decide which profile the device maps to.
        profile_login(
            device_id=device_id,
            identifiers=identifiers,
            profile_data=profile_data,
            actor=actor,
            at=ts,
            new_user=_new_user(record),
        )
    else:
        profile_push(
            device_id=device_id,
            identifiers=identifiers,
            profile_data=profile_data,
            actor=actor,
            at=ts,
        )


# The set-based path. Records naming their person by one key (identity, FBID,
# GPID, or a device's objectId), and onUserLogin records naming one identifier,
# go through profiles.bulk: one call for the profile records, one for the events.
# What it does not take (logins naming several identifiers, logins it defers:
# a device's profile to identify, link or leave; device tokens) goes record by
# record through the services. A person named by records of more than one of
# those groups is handled record by record, in order (each record the set-based
# path takes as a batch of one), so one person's records always keep their order.
# If a set-based call fails as a whole, its records are retried one by one.


@dataclass
class _Planned:
    number: int
    record: Any
    group: str  # "profiles", "events" or "single"
    keys: frozenset[tuple[str, str]]
    row: Any = None  # the BulkProfileRow / BulkEventRow of the set-based path
    event_name: str = ""


def _record_keys(device_id: Any, identifiers: dict[str, Any]) -> frozenset[tuple[str, str]]:
    keys = {(kind, str(value).strip()) for kind, value in identifiers.items()}
    if device_id is not None:
        keys.add(("objectId", str(device_id)))
    return frozenset(keys)


def _plan(number: int, record: object) -> _Planned:
    """Which path a record takes; RecordError for what is refused before any write."""

    if not isinstance(record, dict):
        return _Planned(number, record, "single", frozenset())
    device_id, identifiers = _record_identifiers(record)
    keys = _record_keys(device_id, identifiers)
    single = _Planned(number, record, "single", keys)
    if record.get("type") not in ("profile", "event"):
        return single
    if device_id is None and not identifiers:
        return single  # refused with 523 by upload_record
    ts = _record_ts(record)
    if record["type"] == "profile":
        data = record.get("profileData", {})
        if not isinstance(data, dict) or len(identifiers) > 1:
            return single  # refused, or a record naming several identifiers: one by one
        login = device_id is not None and (identifiers or _has_profile_identifier(data))
        if login and (not identifiers or _has_profile_identifier(data) or not _new_user(record)):
            return single  # a login naming more identifiers, or an unflagged one: one by one
        if identifiers:
            # With an objectId this is a login: profiles.bulk takes its plain cases (by the
            # same rule, services.login_decision) and defers the others back to us.
            ((key_kind, key_value),) = identifiers.items()
            row = BulkProfileRow(ref=number, key_kind=key_kind, key_value=key_value,
                                 profile_data=data, device_id=device_id)  # fmt: skip
        else:  # a push from a device: its current profile (a new device: a new profile)
            row = BulkProfileRow(ref=number, key_kind="objectId", key_value=device_id,
                                 profile_data=data)  # fmt: skip
        return _Planned(number, record, "profiles", keys, row)
    name = record.get("evtName")
    named_by = [("objectId", device_id)] if device_id is not None else list(identifiers.items())
    if len(named_by) != 1 or (device_id is not None and identifiers):
        return single  # named by several identifiers, or a login: one by one
    if not isinstance(name, str) or not isinstance(record.get("evtData", {}), dict):
        return single
    row = BulkEventRow(
        ref=number, key_kind=named_by[0][0], key_value=named_by[0][1],
        properties=record.get("evtData") or {}, ts=ts or timezone.now(),
        client_event_id=_client_event_id(record), name=name,
    )  # fmt: skip
    return _Planned(number, record, "events", keys, row, event_name=name)


def _keep_person_order(planned: list[_Planned]) -> None:
    """Send every record of a person named by several groups down the single path."""
    while True:
        groups: dict[tuple[str, str], set[str]] = {}
        for item in planned:
            for key in item.keys:
                groups.setdefault(key, set()).add(item.group)
        mixed = {key for key, names in groups.items() if len(names) > 1}
        demote = [p for p in planned if p.group != "single" and p.keys & mixed]
        if not demote:
            return
        for item in demote:
            item.group = "single"


def _split_known(items: list[_Planned]) -> tuple[list[_Planned], list[_Planned]]:
    """Profile records about brand-new people, and the others (known people, and
    records claiming identifiers in their data or sharing a key with such a record).

    The two parts share no identifier or device, so storing them in two transactions
    keeps every person's order and every identifier claim's order; the first part
    locks no existing profile, so the second holds its row locks for less time.
    """

    names: list[set[tuple[str, str]]] = []
    claims: list[bool] = []
    for item in items:
        row = item.row
        keys = set(profile_data_identifiers(row.profile_data))
        claims.append(bool(keys))
        with contextlib.suppress(RecordError):
            keys.add((row.key_kind, normalize_identifier(row.key_kind, row.key_value)))
        if row.device_id is not None:
            keys.add(("objectId", str(row.device_id)))
        names.append(keys)
    everything = set().union(*names) if names else set()
    by_kind: dict[str, list[str]] = {}
    for kind, value in everything:
        by_kind.setdefault(kind, []).append(value)
    known: set[tuple[str, str]] = set()
    for kind, values in by_kind.items():
        if kind == "objectId":
            found = Device.objects.filter(object_id__in=values).values_list("object_id", flat=True)
        else:
            found = Identifier.objects.filter(kind=kind, value__in=values).values_list(
                "value", flat=True
            )
        known.update((kind, value) for value in found)
    locked = [claim or bool(keys & known) for claim, keys in zip(claims, names, strict=True)]
    while True:  # whoever shares a name with a record of the second part joins it
        held = set().union(*(keys for keys, lock in zip(names, locked, strict=True) if lock))
        grown = [lock or bool(keys & held) for keys, lock in zip(names, locked, strict=True)]
        if grown == locked:
            break
        locked = grown
    fresh = [item for item, lock in zip(items, locked, strict=True) if not lock]
    rest = [item for item, lock in zip(items, locked, strict=True) if lock]
    return fresh, rest


def _bulk(items: list[_Planned], actor: Actor, errors: dict[int, RecordError]) -> list[_Planned]:
    """Store `items` set-based; return those to retry one by one (the call failed)."""
    if not items:
        return []
    try:
        with transaction.atomic():
            if isinstance(items[0].row, BulkProfileRow):
                result = profiles_bulk_upsert([item.row for item in items], actor=actor)
            else:
                refused: dict[str, RecordError] = {}
                for name in {item.event_name for item in items}:
                    try:
                        event_validate(name, {}, system=actor.source == Source.SYSTEM)
                    except RecordError as error:
                        refused[name] = error
                for item in items:
                    if item.event_name in refused:
                        errors[item.number] = refused[item.event_name]
                items = [item for item in items if item.event_name not in refused]
                if not items:
                    return []
                # One call for every event name: one transaction and one commit.
                result = events_bulk_insert([item.row for item in items], actor=actor)
    except (BulkConflict, DatabaseError):
        # Still racing after the batch's own retries (or a value the database refused
        # that no check caught): one by one, each record gets its own retries and answer.
        logger.warning("set-based upload failed; storing %d records one by one", len(items),
                       exc_info=True)  # fmt: skip
        return items
    for rejection in result.rejected:
        errors[rejection.ref] = RecordError(rejection.code, rejection.message)
    deferred = set(result.deferred)
    return [item for item in items if item.number in deferred]


def ingest_records(
    records: list[Any], *, actor: Actor, may_hold_unstorable: bool = True
) -> IngestResult:
    """Store records in CleverTap's upload shape; each refused one is reported, the others kept.

    Every channel hands its records here (REST upload, the web SDK endpoint, imports,
    dashboard actions). Records about one person are applied in their order.
    A record holding a value that cannot be stored (NUL, a lone surrogate, a number out of
    range: config.safejson) is refused on its own; `may_hold_unstorable=False` (the caller
    parsed the text and knows none is there) skips that scan.
    """
    errors: dict[int, RecordError] = {}
    planned: list[_Planned] = []
    for number, record in enumerate(records, start=1):
        unstorable = may_hold_unstorable and unstorable_reason(record)
        if unstorable:
            errors[number] = RecordError(ErrorCode.MISC, f"{unstorable} ")
            continue
        try:
            planned.append(_plan(number, record))
        except RecordError as error:
            errors[number] = error
    _keep_person_order(planned)
    fresh, rest = _split_known([p for p in planned if p.group == "profiles"])
    retry = _bulk(fresh, actor, errors)
    retry += _bulk(rest, actor, errors)
    retry += _bulk([p for p in planned if p.group == "events"], actor, errors)
    retried = {item.number for item in retry}
    singles = sorted([p for p in planned if p.group == "single"] + retry, key=lambda p: p.number)
    with service_batch():  # property types etc. read once for the batch's records
        for item in singles:
            # A person named by records of several groups: each record the set-based
            # path takes is a batch of one, in the batch's order.
            set_based = item.row is not None and item.number not in retried
            if set_based and not _bulk([item], actor, errors):
                continue
            # Each record commits on its own (the services are atomic): a bad or
            # failing record never undoes or blocks the others.
            try:
                upload_record(item.record, actor=actor)
            except RecordError as error:
                errors[item.number] = error
            except Exception:
                logger.exception("upload record %d failed", item.number)
                errors[item.number] = RecordError(
                    ErrorCode.MISC, "Internal error storing the record. "
                )
    return IngestResult(total=len(records), refusals=dict(sorted(errors.items())))
