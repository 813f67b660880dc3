"""The REST API in CleverTap's dialect (/1/…). Schema and docs: profiles/openapi.py, /api/docs/.

These views parse requests and call the profile services; every identity and
validation rule lives in profiles/services.py and profiles/properties.py.
Every response is JSON shaped like CleverTap's: `{"status": "success", …}` or
`{"status": "fail", "error": "…", "code": N}`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from profiles.bulk import (
    BulkEventRow,
    BulkProfileRow,
    events_bulk_insert,
    profile_data_identifiers,
    profiles_bulk_upsert,
)
from profiles.credentials import (
    TooManyConcurrentRequests,
    api_credential_authenticate,
    api_request_slot,
    api_usage_record,
)
from profiles.models import (
    ApiCredential,
    ApiQueryCursor,
    ApiQueryKind,
    Device,
    Event,
    Identifier,
    Profile,
    Source,
)
from profiles.properties import (
    DEFAULT_PROPERTIES,
    IDENTIFIER_KEYS,
    ErrorCode,
    RecordError,
    normalize_email,
    normalize_identifier,
    normalize_phone,
)
from profiles.selectors import age_on, profile_get_by_identifier, profile_with_relations
from profiles.services import (
    Actor,
    event_push,
    event_validate,
    profile_delete,
    profile_login,
    profile_push,
    service_batch,
)

logger = logging.getLogger(__name__)

MAX_UPLOAD_RECORDS = 1000
MAX_BATCH_SIZE = 5000
DEFAULT_BATCH_SIZE = 100
MAX_DELETE_VALUES = 100
MAX_SUBSCRIBE_ENTRIES = 100
CURSOR_TTL = dt.timedelta(hours=1)
# Plausible epoch seconds: 1970-01-01 .. 2286-11-20. Milliseconds (13 digits) are refused.
MAX_EPOCH_SECONDS = 9_999_999_999
TOP_LEVEL_IDENTIFIERS = {"identity": "identity", "fbid": "fbid", "gpid": "gpid"}


class ApiError(Exception):
    """The whole call is refused: HTTP `status` with CleverTap's fail body."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def fail(status: int, error: str) -> JsonResponse:
    return JsonResponse({"status": "fail", "error": error, "code": status}, status=status)


UNAUTHORIZED = {"status": "fail", "error": "Account ID is not valid", "code": 401}


def api_view(endpoint: str, methods: tuple[str, ...]) -> Callable:
    """Authenticate by CleverTap's headers, cap concurrency, count usage, map errors.

    The view gets (request, credential) and may raise ApiError.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        @login_not_required
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest) -> HttpResponse:
            credential = api_credential_authenticate(
                account_id=request.headers.get("X-CleverTap-Account-Id"),
                passcode=request.headers.get("X-CleverTap-Passcode"),
            )
            if credential is None:
                return JsonResponse(UNAUTHORIZED, status=401)
            try:
                response = _serve(view, request, credential, methods)
            except Exception:
                logger.exception("API %s failed", endpoint)
                response = fail(500, "Internal server error; the call may be retried.")
            api_usage_record(
                credential_id=credential.pk, endpoint=endpoint, status_code=response.status_code
            )
            return response

        return wrapped

    return decorator


def _serve(
    view: Callable[..., HttpResponse],
    request: HttpRequest,
    credential: ApiCredential,
    methods: tuple[str, ...],
) -> HttpResponse:
    if request.method not in methods:
        response = fail(405, f"Method {request.method} not allowed; use {' or '.join(methods)}.")
        response["Allow"] = ", ".join(methods)
        return response
    if any("\x00" in value for values in request.GET.lists() for value in values[1]):
        return fail(400, "A query parameter contains a NUL character (%00); remove it.")
    try:
        _check_body_size(request)
        with api_request_slot(credential.account_id):
            return view(request, credential)
    except TooManyConcurrentRequests:
        return fail(
            429,
            f"Too many concurrent requests for this account: at most "
            f"{settings.API_MAX_CONCURRENT_REQUESTS} at a time. Retry shortly.",
        )
    except ApiError as error:
        return fail(error.status, error.error)


def _check_body_size(request: HttpRequest) -> None:
    """Refuse a too-large body by its Content-Length, before reading it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "Content-Length is not a number.") from None
    if limit is not None and length > limit:
        raise ApiError(413, _too_large_message(length, limit))


def _too_large_message(length: int | None, limit: int) -> str:
    size = f"{length:,} bytes" if length is not None else "larger than allowed"
    return (
        f"Request body too large ({size}); at most {limit:,} bytes are accepted. "
        f"Send at most {MAX_UPLOAD_RECORDS} records per call, in smaller batches."
    )


def _json_body(request: HttpRequest, *, nul_per_record: bool = False) -> Any:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413, _too_large_message(None, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        ) from None
    if not body.strip():
        raise ApiError(400, "The request body is empty; send JSON.")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"Malformed JSON in the request body: {error}.") from None
    except RecursionError:
        raise ApiError(400, "The JSON in the request body is nested too deeply.") from None
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    # Upload reports it per record instead (the other records are kept).
    if not nul_per_record and b"\\u0000" in body and contains_nul(data):
        raise ApiError(400, NUL_MESSAGE)
    return data


NUL_MESSAGE = "Values must not contain the NUL character (\\u0000)."


def contains_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL in any key or string."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def _actor(credential: ApiCredential) -> Actor:
    return Actor(source=Source.API, label=f"API: {credential.name}")


def _epoch(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


# --- POST /1/upload ------------------------------------------------------------------


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


def upload_record(record: object, *, actor: Actor) -> None:
    """Store one upload record through the services; RecordError when refused."""
    if not isinstance(record, dict):
        raise RecordError(ErrorCode.NOT_EVENT_OR_PROFILE, "Record must be a JSON object.")
    kind = record.get("type")
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
        )
    else:
        profile_push(
            device_id=device_id,
            identifiers=identifiers,
            profile_data=profile_data,
            actor=actor,
            at=ts,
        )


def _record_fail(number: int, record: object, code: int, message: str) -> dict[str, Any]:
    return {
        "status": "fail",
        "code": code,
        "error": f"{message}Skipped record number : {number}",
        "record": record,
    }


def _batch_status(processed: int, unprocessed: list) -> str:
    if not unprocessed:
        return "success"
    return "partial" if processed else "fail"


# The set-based path. Records naming their person by one key (a top-level
# identity, or an event's objectId) go through profiles.bulk in one call per
# kind (per event name for events); everything else (onUserLogin records,
# FBID/GPID) goes record by record through the services. A person named by
# records of more than one of those groups is handled record by record, in
# order, so the order of one person's records is always kept. If a bulk call
# fails as a whole, its records are retried one by one.


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
        if set(identifiers) != {"identity"} or not isinstance(data, dict):
            return single
        if device_id is not None and _has_profile_identifier(data):
            return single  # a login naming more identifiers: one by one
        # With an objectId this is a login: profiles.bulk takes its plain cases (by the
        # same rule, services.login_decision) and defers the others back to us.
        row = BulkProfileRow(ref=number, key_kind="identity", key_value=identifiers["identity"],
                             profile_data=data, device_id=device_id)  # fmt: skip
        return _Planned(number, record, "profiles", keys, row)
    name = record.get("evtName")
    named_by = [("objectId", device_id)] if device_id is not None else list(identifiers.items())
    if len(named_by) != 1 or named_by[0][0] not in ("identity", "objectId"):
        return single
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
    from django.db import transaction

    if not items:
        return []
    try:
        with transaction.atomic():
            if items[0].group == "profiles":
                result = profiles_bulk_upsert([item.row for item in items], actor=actor)
            else:
                refused: dict[str, RecordError] = {}
                for name in {item.event_name for item in items}:
                    try:
                        event_validate(name, {})
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
    except Exception:
        logger.warning("set-based upload failed; storing %d records one by one", len(items),
                       exc_info=True)  # fmt: skip
        return items
    for rejection in result.rejected:
        errors[rejection.ref] = RecordError(rejection.code, rejection.message)
    deferred = set(result.deferred)
    return [item for item in items if item.number in deferred]


def upload_records(
    records: list[Any], *, actor: Actor, may_hold_nul: bool = True
) -> tuple[int, list[dict[str, Any]]]:
    """Store upload records; (processed, unprocessed in CleverTap's shape).

    `may_hold_nul=False` (the JSON body has no \\u0000 escape) skips the per-record scan.
    """
    errors: dict[int, RecordError] = {}
    planned: list[_Planned] = []
    for number, record in enumerate(records, start=1):
        if may_hold_nul and contains_nul(record):
            errors[number] = RecordError(ErrorCode.MISC, f"{NUL_MESSAGE} ")
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
    singles = sorted([p for p in planned if p.group == "single"] + retry, key=lambda p: p.number)
    with service_batch():  # property types etc. read once for the batch's records
        for item in singles:
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
    unprocessed = [
        _record_fail(number, records[number - 1], errors[number].code, errors[number].message)
        for number in sorted(errors)
    ]
    return len(records) - len(unprocessed), unprocessed


@api_view("upload", ("POST",))
def upload(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    body = _json_body(request, nul_per_record=True)
    records = body.get("d") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise ApiError(400, 'The body must be {"d": [record, …]}.')
    if len(records) > MAX_UPLOAD_RECORDS:
        raise ApiError(
            400,
            f"Too many records: {len(records)} in one call; at most {MAX_UPLOAD_RECORDS} "
            "are accepted. Nothing was stored: split the records into smaller calls.",
        )
    # JSON can carry a NUL only as the escape \u0000 (a raw one is malformed JSON).
    processed, unprocessed = upload_records(
        records, actor=_actor(credential), may_hold_nul=b"\\u0000" in request.body
    )
    return JsonResponse(
        {
            "status": _batch_status(processed, unprocessed),
            "processed": processed,
            "unprocessed": unprocessed,
        }
    )


# --- GET /1/profile.json ----------------------------------------------------------------


def _default_properties(profile: Profile) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for prop in DEFAULT_PROPERTIES.values():
        value = getattr(profile, prop.field)
        if value in (None, ""):
            continue
        if prop.field in ("employed", "married"):
            value = "Y" if value else "N"
        elif isinstance(value, dt.date):
            value = value.isoformat()
        values[prop.key] = value
    return values


def profile_record(
    profile: Profile, identifiers: list[Identifier], devices: list[Device], today: dt.date
) -> dict[str, Any]:
    """A profile as the API returns it (profile.json and profiles.json)."""
    by_kind: dict[str, list[str]] = {}
    for identifier in sorted(identifiers, key=lambda row: row.pk):
        by_kind.setdefault(identifier.kind, []).append(identifier.value)
    return {
        "ct_id": profile.ct_id,
        "type": profile.profile_type,
        "identity": by_kind.get("identity", [None])[0],
        "identities": by_kind,
        "profileData": {**_default_properties(profile), **profile.custom},
        "systemProperties": {
            "Age": age_on(profile.dob, today) if profile.dob else None,
            "First seen": _epoch(profile.first_seen),
            "Last seen": _epoch(profile.last_seen),
            "Event count": profile.event_count,
            "Platform": profile.last_platform or None,
            "Device": profile.last_device or None,
            "Location": profile.last_location or None,
        },
        "devices": [
            {
                "objectId": device.object_id,
                "platform": device.platform or None,
                "make": device.make or None,
                "model": device.model or None,
                "push_token": bool(device.push_token),
                "push_enabled": device.push_enabled,
                "last_seen": _epoch(device.last_seen),
            }
            for device in sorted(devices, key=lambda row: row.pk)
        ],
        "test_profile": profile.is_test,
        "linked_to": profile.linked_to.ct_id if profile.linked_to_id else None,
    }


def _profiles_with_relations(profiles: QuerySet[Profile]) -> list[Profile]:
    return list(profiles.select_related("linked_to").prefetch_related("identifiers", "devices"))


def _profile_lookup(request: HttpRequest) -> tuple[Profile, list[Identifier], list[Device]] | None:
    params = request.GET
    if "email" in params:
        # An un-encoded "+" arrives as a space: no email holds a space, so it was a "+".
        email = params["email"].strip().replace(" ", "+")
        return profile_with_relations(kind="email", value=email)
    if "identity" in params:
        return profile_with_relations(kind="identity", value=params["identity"])
    object_id = params.get("objectId") or params.get("guid")
    if object_id:
        return profile_with_relations(kind="objectId", value=object_id)
    raise ApiError(400, "Give one of email, identity or objectId.")


@api_view("profile", ("GET",))
def profile_get(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    found = _profile_lookup(request)
    if found is None:
        return fail(404, "No profile found for the given identifier.")
    profile, identifiers, devices = found
    record = profile_record(profile, identifiers, devices, timezone.localdate())
    return JsonResponse({"status": "success", "record": record})


# --- queries: /1/profiles.json, /1/events.json, /1/counts/… ---------------------------------


@dataclass(frozen=True)
class ApiQuery:
    event_name: str | None
    start: dt.datetime | None  # inclusive
    end: dt.datetime | None  # exclusive (the day after "to")


def _query_day(value: object, field: str) -> dt.date:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ApiError(400, f'Query "{field}" must be a date as YYYYMMDD, e.g. 20240131.') from None


def query_parse(raw: object) -> dict[str, Any]:
    """Validate a query and return it as stored: {"event_name"?, "from"?, "to"?}."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, 'The query must be a JSON object, e.g. {"event_name": "Charged"}.')
    unknown = sorted(set(raw) - {"event_name", "from", "to"})
    if unknown:
        raise ApiError(
            400, f"Unknown query field(s): {', '.join(unknown)}. Known: event_name, from, to."
        )
    query: dict[str, Any] = {}
    if raw.get("event_name") not in (None, ""):
        if not isinstance(raw["event_name"], str):
            raise ApiError(400, 'Query "event_name" must be a string.')
        query["event_name"] = raw["event_name"]
    for field in ("from", "to"):
        if raw.get(field) not in (None, ""):
            query[field] = int(_query_day(raw[field], field).strftime("%Y%m%d"))
    if "from" in query and "to" in query and query["from"] > query["to"]:
        raise ApiError(400, 'Query "from" is after "to".')
    return query


def _api_query(query: dict[str, Any]) -> ApiQuery:
    def midnight(day: int, plus_days: int = 0) -> dt.datetime:
        date = _query_day(day, "date") + dt.timedelta(days=plus_days)
        return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)

    return ApiQuery(
        event_name=query.get("event_name"),
        start=midnight(query["from"]) if "from" in query else None,
        end=midnight(query["to"], 1) if "to" in query else None,
    )


def _events(query: ApiQuery) -> QuerySet[Event]:
    events = Event.objects.all()
    if query.event_name is not None:
        events = events.filter(name=query.event_name)
    if query.start is not None:
        events = events.filter(ts__gte=query.start)
    if query.end is not None:
        events = events.filter(ts__lt=query.end)
    return events


def _profiles(query: ApiQuery) -> QuerySet[Profile]:
    if query.event_name is None and query.start is None and query.end is None:
        return Profile.objects.all()
    return Profile.objects.filter(pk__in=_events(query).values("profile_id"))


def _matching(kind: str, query: dict[str, Any]) -> QuerySet:
    parsed = _api_query(query)
    return _profiles(parsed) if kind == ApiQueryKind.PROFILES else _events(parsed)


def _batch_size(request: HttpRequest) -> int:
    raw = request.GET.get("batch_size")
    if raw in (None, ""):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise ApiError(
            400, f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}."
        ) from None
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ApiError(400, f"batch_size must be from 1 to {MAX_BATCH_SIZE}; got {size}.")
    return size


def _request_query(request: HttpRequest) -> dict[str, Any]:
    if request.method == "POST":
        body = request.body
        return query_parse(_json_body(request) if body.strip() else None)
    raw = request.GET.get("query")
    if raw in (None, ""):
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"Malformed JSON in the query parameter: {error}.") from None
    except RecursionError:
        raise ApiError(400, "The JSON in the query parameter is nested too deeply.") from None
    if contains_nul(data):
        raise ApiError(400, NUL_MESSAGE)
    return query_parse(data)


def _cursor_create(
    *, credential: ApiCredential, kind: str, query: dict[str, Any], batch_size: int,
    position: int, max_id: int, expires_at: dt.datetime,
) -> ApiQueryCursor:  # fmt: skip
    return ApiQueryCursor.objects.create(
        token=secrets.token_urlsafe(24),  # A-Za-z0-9_- only: safe to append to a URL as is
        credential=credential,
        kind=kind,
        query=query,
        batch_size=batch_size,
        position=position,
        max_id=max_id,
        expires_at=expires_at,
    )


def _query_start(request: HttpRequest, credential: ApiCredential, kind: str) -> HttpResponse:
    batch_size = _batch_size(request)
    query = _request_query(request)
    now = timezone.now()
    ApiQueryCursor.objects.filter(expires_at__lt=now - CURSOR_TTL).delete()
    model = Profile if kind == ApiQueryKind.PROFILES else Event
    max_id = model.objects.aggregate(top=Max("id"))["top"] or 0
    cursor = _cursor_create(
        credential=credential, kind=kind, query=query, batch_size=batch_size, position=0,
        max_id=max_id, expires_at=now + CURSOR_TTL,
    )  # fmt: skip
    return JsonResponse({"status": "success", "cursor": cursor.token})


def _event_records(events: list[Event]) -> list[dict[str, Any]]:
    identities: dict[int, str] = {}
    for profile_id, value in (
        Identifier.objects.filter(profile_id__in={e.profile_id for e in events}, kind="identity")
        .order_by("-id")
        .values_list("profile_id", "value")
    ):
        identities[profile_id] = value  # the oldest identity wins (ordered newest first)
    return [
        {
            "evtName": event.name,
            "ts": _epoch(event.ts),
            "evtData": event.properties,
            "evtId": event.client_event_id,
            "source": event.source,
            "profile": {
                "ct_id": event.profile.ct_id,
                "identity": identities.get(event.profile_id),
                "objectId": event.device.object_id if event.device_id else None,
            },
        }
        for event in events
    ]


def _query_page(request: HttpRequest, credential: ApiCredential, kind: str) -> HttpResponse:
    token = request.GET["cursor"].strip()
    cursor = ApiQueryCursor.objects.filter(token=token, credential=credential, kind=kind).first()
    if cursor is None:
        raise ApiError(400, "The cursor is not valid for this account and endpoint.")
    if cursor.expires_at <= timezone.now():
        raise ApiError(
            400,
            f"The cursor has expired (cursors last {int(CURSOR_TTL.total_seconds() // 60)} "
            "minutes); start the query again.",
        )
    page = (
        _matching(kind, cursor.query)
        .filter(pk__gt=cursor.position, pk__lte=cursor.max_id)
        .order_by("pk")
    )
    if kind == ApiQueryKind.PROFILES:
        rows = _profiles_with_relations(page[: cursor.batch_size + 1])
    else:
        rows = list(page.select_related("profile", "device")[: cursor.batch_size + 1])
    more = len(rows) > cursor.batch_size
    rows = rows[: cursor.batch_size]
    if kind == ApiQueryKind.PROFILES:
        today = timezone.localdate()
        records = [
            profile_record(p, list(p.identifiers.all()), list(p.devices.all()), today) for p in rows
        ]
    else:
        records = _event_records(rows)
    payload: dict[str, Any] = {"status": "success", "records": records}
    if more:
        payload["next_cursor"] = _cursor_create(
            credential=credential, kind=kind, query=cursor.query, batch_size=cursor.batch_size,
            position=rows[-1].pk, max_id=cursor.max_id, expires_at=cursor.expires_at,
        ).token  # fmt: skip
    return JsonResponse(payload)


def _query_view(request: HttpRequest, credential: ApiCredential, kind: str) -> HttpResponse:
    if request.method == "GET" and request.GET.get("cursor"):
        return _query_page(request, credential, kind)
    return _query_start(request, credential, kind)


@api_view("profiles", ("GET", "POST"))
def profiles_query(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    return _query_view(request, credential, ApiQueryKind.PROFILES)


@api_view("events", ("GET", "POST"))
def events_query(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    return _query_view(request, credential, ApiQueryKind.EVENTS)


def _count(request: HttpRequest, kind: str) -> HttpResponse:
    query = _request_query(request)
    return JsonResponse({"status": "success", "count": _matching(kind, query).count()})


@api_view("counts/profiles", ("POST",))
def profiles_count(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    return _count(request, ApiQueryKind.PROFILES)


@api_view("counts/events", ("POST",))
def events_count(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    return _count(request, ApiQueryKind.EVENTS)


# --- POST /1/delete/profiles.json ----------------------------------------------------------


def _values(body: dict[str, Any], key: str) -> list[Any]:
    raw = body[key]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ApiError(400, f'"{key}" is empty.')
    if len(values) > MAX_DELETE_VALUES:
        raise ApiError(
            400, f"At most {MAX_DELETE_VALUES} values per call; this call has {len(values)}."
        )
    return values


def _batch_response(processed: int, unprocessed: list[dict[str, Any]]) -> JsonResponse:
    return JsonResponse(
        {
            "status": _batch_status(processed, unprocessed),
            "processed": processed,
            "unprocessed": unprocessed,
        }
    )


@api_view("delete/profiles", ("POST",))
def profiles_delete(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    body = _json_body(request)
    keys = [key for key in ("identity", "guid") if isinstance(body, dict) and key in body]
    if len(keys) != 1:
        raise ApiError(400, 'The body must be {"identity": value or [values]} or {"guid": …}.')
    key = keys[0]
    processed = 0
    unprocessed: list[dict[str, Any]] = []
    for value in _values(body, key):
        if key == "identity":
            profile = (
                profile_get_by_identifier(kind="identity", value=value)
                if isinstance(value, str | int) and not isinstance(value, bool)
                else None
            )
        else:
            profile = (
                (
                    Profile.objects.filter(devices__object_id=value).first()
                    or Profile.objects.filter(ct_id=value).first()
                )
                if isinstance(value, str)
                else None
            )
        if profile is None:
            unprocessed.append(
                {"status": "fail", "code": 404, "error": "No profile found.", "record": value}
            )
            continue
        profile_delete(profile=profile)
        processed += 1
    return _batch_response(processed, unprocessed)


# --- POST /1/subscribe, /1/disassociate ------------------------------------------------------


def _entries(body: object) -> list[Any]:
    if isinstance(body, dict) and "d" in body:
        entries = body["d"]
        if not isinstance(entries, list) or not entries:
            raise ApiError(400, '"d" must be a non-empty list of entries.')
    else:
        entries = [body]
    if len(entries) > MAX_SUBSCRIBE_ENTRIES:
        raise ApiError(400, f"At most {MAX_SUBSCRIBE_ENTRIES} entries per call.")
    return entries


def _holders(kind: str, value: str) -> list[tuple[dict[str, str], str | None]]:
    """Every profile holding this email/phone, as (identifiers, device) that address it."""
    ids = set(
        Identifier.objects.filter(kind=kind, value=value).values_list("profile_id", flat=True)
    )
    ids |= set(Profile.objects.filter(**{kind: value}).values_list("pk", flat=True))
    addresses: list[tuple[dict[str, str], str | None]] = []
    for profile_id in sorted(ids):
        identifier = (
            Identifier.objects.filter(profile_id=profile_id, kind=kind, value=value).first()
            or Identifier.objects.filter(profile_id=profile_id).order_by("pk").first()
        )
        if identifier is not None:
            addresses.append(({identifier.kind: identifier.value}, None))
            continue
        device = Device.objects.filter(profile_id=profile_id).order_by("pk").first()
        if device is not None:
            addresses.append(({}, device.object_id))
    return addresses


def _entry(entry: object, *, statuses: bool) -> tuple[str, str, str | None]:
    """(kind, normalized value, status) of a subscribe/disassociate entry."""

    if not isinstance(entry, dict):
        raise RecordError(ErrorCode.MISC, "Each entry must be an object.")
    kind = entry.get("type")
    allowed = ("email", "phone") if statuses else ("phone",)
    if kind not in allowed:
        raise RecordError(ErrorCode.MISC, f'"type" must be {" or ".join(allowed)}.')
    value = (
        normalize_email(entry.get("value"))
        if kind == "email"
        else normalize_phone(entry.get("value"))
    )
    status = None
    if statuses:
        status = entry.get("status")
        if status not in ("Unsubscribe", "Resubscribe"):
            raise RecordError(ErrorCode.MISC, '"status" must be Unsubscribe or Resubscribe.')
    return kind, value, status


def _entry_fail(entry: object, code: int, message: str) -> dict[str, Any]:
    return {"status": "fail", "code": code, "error": message, "record": entry}


def _entries_apply(
    request: HttpRequest,
    credential: ApiCredential,
    *,
    statuses: bool,
    change: Callable[[str, str | None], dict[str, Any]],
) -> HttpResponse:
    """Apply `change(kind, status)` as profile data to every profile holding each entry's
    email/phone; per-entry results in the upload's shape."""
    actor = _actor(credential)
    processed = 0
    unprocessed: list[dict[str, Any]] = []
    for entry in _entries(_json_body(request)):
        try:
            kind, value, status = _entry(entry, statuses=statuses)
            holders = _holders(kind, value)
            if not holders:
                raise RecordError(404, f"No profile holds this {kind}.")
            for identifiers, device_id in holders:
                profile_push(
                    identifiers=identifiers, device_id=device_id,
                    profile_data=change(kind, status), actor=actor,
                )  # fmt: skip
        except RecordError as error:
            unprocessed.append(_entry_fail(entry, error.code, error.message))
            continue
        processed += 1
    return _batch_response(processed, unprocessed)


@api_view("subscribe", ("POST",))
def subscribe(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    def change(kind: str, status: str | None) -> dict[str, Any]:
        channel = "MSG-email" if kind == "email" else "MSG-sms"
        return {channel: status == "Resubscribe"}

    return _entries_apply(request, credential, statuses=True, change=change)


@api_view("disassociate", ("POST",))
def disassociate(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    return _entries_apply(
        request,
        credential,
        statuses=False,
        change=lambda kind, status: {"Phone": {"$delete": True}},
    )


# --- the schema and its docs page (public) ------------------------------------------------------


@login_not_required
@require_GET
def openapi_json(request: HttpRequest) -> HttpResponse:
    from profiles.openapi import openapi_schema  # openapi.py reads this module's limits

    return JsonResponse(openapi_schema(), json_dumps_params={"indent": 2})


@login_not_required
@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    from profiles.openapi import docs_context  # openapi.py reads this module's limits

    return render(request, "api/docs.html", docs_context())
