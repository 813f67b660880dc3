"""The one way records enter the profile store.

`ingest_records` takes records in CleverTap's upload shape (`type` profile,
event or token, named by `identity`, `FBID`, `GPID` or `objectId`) and stores them set-based
through profiles.bulk (device token records: services.device_push_tokens_set). It
returns each refused record's reason.
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
    client_event_id_check,
    normalize_device_id,
    normalize_identifier,
)
from profiles.rules.web_push import SubscriptionError, web_push_subscription
from profiles.services import (
    Actor,
    DevicePushToken,
    device_push_tokens_set,
    event_validate,
    identifying_kinds,
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
    return client_event_id_check(record.get("evtId"))


def _new_user(record: dict[str, Any]) -> bool:
    """False when the record says its device's person has not changed (`"isOUL": false`,
    as the web SDK endpoint marks a profile record the SDK sent without its isOUL flag):
    an identified device then keeps its profile (services.login_decision)."""
    return record.get("isOUL") is not False


# CleverTap's token types (Upload Device Tokens) and the platform each belongs to.
TOKEN_PLATFORMS = {"webpush": WEB_PLATFORM, "fcm": "Android", "gcm": "Android", "apns": "iOS"}
MAX_NATIVE_TOKEN_CHARS = Device._meta.get_field("push_token").max_length


def _token_setting(record: dict[str, Any]) -> DevicePushToken:
    """What a device token record (CleverTap's `type: token`) sets on its objectId.

    `tokenData` `{"type": "fcm"|"gcm"|"apns", "id": <token>}` stores an Android or iOS
    push token; `{"type": "webpush", "id": <endpoint>, "keys": {"p256dh", "auth"}}` a
    browser's subscription; either with push permission on. `{"type": …, "action":
    "unregister"}` clears the token and turns the permission off. RecordError when refused.
    """
    device_id, _identifiers = _record_identifiers(record)
    if device_id is None:
        raise RecordError(ErrorCode.IDENTITY_MISSING, "A token record needs its objectId.")
    device_id = normalize_device_id(device_id)
    _record_ts(record)  # a bad `ts` refuses the record, as for the other kinds
    data = record.get("tokenData")
    platform = TOKEN_PLATFORMS.get(data.get("type")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or platform is None:
        raise RecordError(
            ErrorCode.MISC, "tokenData must be an object of type fcm, gcm, apns or webpush."
        )
    if data.get("action") == "unregister":
        return DevicePushToken(device_id, platform, push_token="", push_enabled=False)
    if platform == WEB_PLATFORM:
        try:
            token = web_push_subscription({"endpoint": data.get("id"), "keys": data.get("keys")})
        except SubscriptionError as error:
            raise RecordError(ErrorCode.MISC, str(error)) from None
    else:
        token = data.get("id")
        if (
            not isinstance(token, str)
            or not 0 < len(token) <= MAX_NATIVE_TOKEN_CHARS
            or not token.isprintable()
            or any(char.isspace() for char in token)
        ):
            raise RecordError(
                ErrorCode.MISC,
                f"tokenData.id must be the device token: 1 to {MAX_NATIVE_TOKEN_CHARS} "
                "characters without spaces.",
            )
    return DevicePushToken(device_id, platform, push_token=token, push_enabled=True)


def _tokens(items: list[_Planned], errors: dict[int, RecordError]) -> list[_Planned]:
    """Store device token records set-based; return them all if the call failed as a whole."""
    settings: list[tuple[_Planned, DevicePushToken]] = []
    for item in items:
        try:
            settings.append((item, _token_setting(item.record)))
        except RecordError as error:
            errors[item.number] = error
    if not settings:
        return []
    try:
        with transaction.atomic():
            refused = device_push_tokens_set([token for _item, token in settings])
    except (BulkConflict, DatabaseError):
        logger.warning("set-based token records failed; storing %d one by one", len(settings),
                       exc_info=True)  # fmt: skip
        return [item for item, _token in settings]
    for item, token in settings:
        if token.device_id in refused:
            errors[item.number] = refused[token.device_id]
    return []


IDENTITY_MISSING = (
    "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars to "
    "identify the user."
)


# Every profile and event record is stored set-based, through profiles.bulk: one
# call for the batch's profile records, one for its events. A person named by
# records of both kinds (or by device token records) has their records split in
# runs of one kind, stored in rounds (`_rounds`), so one person's records always
# keep their order. If a set-based call fails as a whole, its records are stored
# again one at a time.


@dataclass
class _Planned:
    number: int
    record: Any
    group: str  # "profiles", "events" or "token" (a device token record)
    keys: frozenset[tuple[str, str]]
    row: BulkProfileRow | BulkEventRow | None = None  # None: a device token record
    event_name: str = ""


def _record_keys(
    device_id: Any, identifiers: dict[str, Any], profile_data: dict[str, Any]
) -> frozenset[tuple[str, str]]:
    keys = {(kind, str(value).strip()) for kind, value in identifiers.items()}
    keys.update(profile_data_identifiers(profile_data))
    if device_id is not None:
        keys.add(("objectId", str(device_id)))
    return frozenset(keys)


def _login_key(identifiers: dict[str, Any], profile_data: dict[str, Any]) -> tuple[str, Any] | None:
    """The identifier an onUserLogin names its person by: a top-level one, else the
    first identifying key of its data (None: it names nobody, a profile push)."""
    if identifiers:
        return next(iter(identifiers.items()))
    identifying = identifying_kinds()
    for key, value in profile_data.items():
        kind = IDENTIFIER_KEYS.get(key.lower()) if isinstance(key, str) else None
        if not kind or value in (None, "") or isinstance(value, dict):
            continue
        if kind not in {"email", "phone"} or kind in identifying:
            return kind, value
    return None


def _plan(number: int, record: object, *, system: bool) -> _Planned:
    """The set-based row a record becomes; RecordError for what is refused before any write."""
    if not isinstance(record, dict):
        raise RecordError(ErrorCode.NOT_EVENT_OR_PROFILE, "Record must be a JSON object.")
    kind = record.get("type")
    device_id, identifiers = _record_identifiers(record)
    if kind == "token":
        return _Planned(number, record, "token", _record_keys(device_id, {}, {}))
    if kind not in ("profile", "event"):
        raise RecordError(
            ErrorCode.NOT_EVENT_OR_PROFILE, "Record type needs to be either event or profile."
        )
    if device_id is None and not identifiers:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING)
    ts = _record_ts(record)
    named = list(identifiers.items())
    if kind == "profile":
        data = record.get("profileData")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RecordError(ErrorCode.MISC, "profileData must be an object.")
        keys = _record_keys(device_id, identifiers, data)
        login = _login_key(identifiers, data) if device_id is not None else None
        if login is not None:
            # An onUserLogin: the rules (services.login_decision) pick the profile.
            row = BulkProfileRow(ref=number, key_kind=login[0], key_value=login[1],
                                 also_named=dict(named[1:]), profile_data=data,
                                 device_id=device_id, new_user=_new_user(record))  # fmt: skip
        elif named:
            row = BulkProfileRow(ref=number, key_kind=named[0][0], key_value=named[0][1],
                                 also_named=dict(named[1:]), profile_data=data)  # fmt: skip
        else:  # a push from a device: its current profile (a new device: a new profile)
            row = BulkProfileRow(ref=number, key_kind="objectId", key_value=device_id,
                                 profile_data=data)  # fmt: skip
        return _Planned(number, record, "profiles", keys, row)
    name = record.get("evtName")
    properties = record.get("evtData")
    # Only the system itself (never an API client) may record reserved events such as
    # "Notification Sent"; a bad name refuses the record before it joins a batch.
    event_validate(name, properties if not isinstance(properties, dict) else {}, system=system)
    assert isinstance(name, str)
    if named:  # with a device too: an onUserLogin first, the event on its profile
        key, also, device = named[0], dict(named[1:]), device_id
    else:
        key, also, device = ("objectId", device_id), {}, None
    row = BulkEventRow(
        ref=number, key_kind=key[0], key_value=key[1], also_named=also, device_id=device,
        properties=properties or {}, ts=ts or timezone.now(),
        client_event_id=_client_event_id(record), name=name,
    )  # fmt: skip
    return _Planned(number, record, "events", _record_keys(device_id, identifiers, {}), row, name)


def _rounds(planned: list[_Planned]) -> list[list[_Planned]]:
    """Split the batch into rounds in which each person's records are of one group.

    A person is every record sharing a key with another (transitively). Each person's
    records, in order, form runs of one group; round n holds every person's n-th run.
    Storing the rounds one after the other, each set-based, keeps every person's order.
    """
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(key: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item in planned:
        first, *others = item.keys or [("record", str(item.number))]
        for key in others:
            parent[find(key)] = find(first)
    runs: dict[tuple[str, str], tuple[str, int]] = {}  # person -> (group, run number)
    rounds: list[list[_Planned]] = []
    for item in planned:
        person = find(next(iter(item.keys), ("record", str(item.number))))
        group, run = runs.get(person, (item.group, 0))
        if group != item.group:
            run += 1
        runs[person] = (item.group, run)
        if run == len(rounds):
            rounds.append([])
        rounds[run].append(item)
    return rounds


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
        for kind, value in [(row.key_kind, row.key_value), *row.also_named.items()]:
            with contextlib.suppress(RecordError):
                keys.add((kind, normalize_identifier(kind, value)))
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
    """Store `items` set-based; return them all if the call failed as a whole."""
    rows = [item.row for item in items if item.row is not None]
    if not rows:
        return []
    try:
        with transaction.atomic():
            if isinstance(rows[0], BulkProfileRow):
                result = profiles_bulk_upsert(rows, actor=actor)
            else:
                # One call for every event name: one transaction and one commit.
                result = events_bulk_insert(rows, actor=actor)
    except (BulkConflict, DatabaseError):
        # Still racing after the batch's own retries (or a value the database refused
        # that no check caught): one by one, each record gets its own retries and answer.
        logger.warning("set-based upload failed; storing %d records one by one", len(items),
                       exc_info=True)  # fmt: skip
        return items
    for rejection in result.rejected:
        errors[rejection.ref] = RecordError(rejection.code, rejection.message)
    return []


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
    system = actor.source == Source.SYSTEM
    for number, record in enumerate(records, start=1):
        unstorable = may_hold_unstorable and unstorable_reason(record)
        if unstorable:
            errors[number] = RecordError(ErrorCode.MISC, f"{unstorable} ")
            continue
        try:
            planned.append(_plan(number, record, system=system))
        except RecordError as error:
            errors[number] = error
    for round_ in _rounds(planned):
        fresh, rest = _split_known([p for p in round_ if p.group == "profiles"])
        retry = _bulk(fresh, actor, errors)
        retry += _bulk(rest, actor, errors)
        retry += _bulk([p for p in round_ if p.group == "events"], actor, errors)
        retry += _tokens([p for p in round_ if p.group == "token"], errors)
        for item in sorted(retry, key=lambda p: p.number):
            # Each commits on its own: a bad or failing record never undoes or blocks the others.
            try:
                alone = [item]
                failed = _tokens(alone, errors) if item.row is None else _bulk(alone, actor, errors)
                if failed:  # the set-based call failed again: its answer is the error below
                    raise BulkConflict
            except RecordError as error:
                errors[item.number] = error
            except Exception:
                logger.exception("upload record %d failed again, alone", item.number)
                errors[item.number] = RecordError(
                    ErrorCode.MISC, "Internal error storing the record. "
                )
    return IngestResult(total=len(records), refusals=dict(sorted(errors.items())))
