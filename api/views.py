"""The REST API in CleverTap's dialect (/1/…). Schema and docs: api/openapi.py, /api/docs/.

These views parse requests and call the profile services; every identity and
validation rule lives in profiles/services.py and profiles/properties.py.
Every response is JSON shaped like CleverTap's: `{"status": "success", …}` or
`{"status": "fail", "error": "…", "code": N}`.
"""

from __future__ import annotations

import datetime as dt
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

from api.credentials import (
    TooManyConcurrentRequests,
    TooManyFailedAttempts,
    api_credential_authenticate,
    api_request_slot,
    api_usage_record,
)
from config import safejson
from profiles.ingest import ingest_records
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
    ErrorCode,
    RecordError,
    normalize_email,
    normalize_phone,
)
from profiles.selectors import age_on, profile_get_by_identifier, profile_with_relations
from profiles.services import (
    Actor,
    profile_delete,
    profiles_update,
)

logger = logging.getLogger(__name__)

MAX_UPLOAD_RECORDS = 1000
MAX_BATCH_SIZE = 5000
DEFAULT_BATCH_SIZE = 100
MAX_DELETE_VALUES = 100
MAX_SUBSCRIBE_ENTRIES = 100
CURSOR_TTL = dt.timedelta(hours=1)


class ApiError(Exception):
    """The whole call is refused: HTTP `status` with CleverTap's fail body."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def fail(status: int, error: str) -> JsonResponse:
    return JsonResponse({"status": "fail", "error": error, "code": status}, status=status)


# The same answer for an unknown account id and a wrong passcode: which account ids exist
# is no one's business.
UNAUTHORIZED = {"status": "fail", "error": "Account ID or passcode is not valid", "code": 401}


def api_view(endpoint: str, methods: tuple[str, ...]) -> Callable:
    """Authenticate by CleverTap's headers, cap concurrency, count usage, map errors.

    The view gets (request, credential) and may raise ApiError.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        @login_not_required
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest) -> HttpResponse:
            try:
                credential = api_credential_authenticate(
                    account_id=request.headers.get("X-CleverTap-Account-Id"),
                    passcode=request.headers.get("X-CleverTap-Passcode"),
                    client_address=request.META.get("REMOTE_ADDR", ""),
                )
            except TooManyFailedAttempts as refused:
                response = fail(
                    429,
                    "Too many failed authentications for this account id or from this address; "
                    f"retry in {refused.retry_after} seconds.",
                )
                response["Retry-After"] = str(refused.retry_after)
                return _no_store(response)
            if credential is None:
                return _no_store(JsonResponse(UNAUTHORIZED, status=401))
            try:
                response = _serve(view, request, credential, methods)
            except Exception:
                logger.exception("API %s failed", endpoint)
                response = fail(500, "Internal server error; the call may be retried.")
            api_usage_record(
                credential_id=credential.pk, endpoint=endpoint, status_code=response.status_code
            )
            return _no_store(response)

        return wrapped

    return decorator


def _no_store(response: HttpResponse) -> HttpResponse:
    """API answers hold people's data: no cache or proxy may keep them."""
    response["Cache-Control"] = "no-store"
    return response


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


def _json_body(request: HttpRequest, *, per_record: bool = False) -> Any:
    """The body's JSON. Values that cannot be stored (NUL, lone surrogates, numbers out of
    range) refuse the whole call, or with `per_record` (upload) only their own records."""
    return _parsed_body(request, per_record=per_record).data


def _parsed_body(request: HttpRequest, *, per_record: bool = False) -> safejson.Parsed:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413, _too_large_message(None, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        ) from None
    if not body.strip():
        raise ApiError(400, "The request body is empty; send JSON.")
    try:
        if per_record:
            return safejson.parse(body)
        return safejson.Parsed(safejson.loads(body), may_hold_unstorable=False)
    except safejson.JsonInputError as error:
        raise ApiError(400, error.message) from None


def _actor(credential: ApiCredential) -> Actor:
    return Actor(source=Source.API, label=f"API: {credential.name}")


def _epoch(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


# --- POST /1/upload ------------------------------------------------------------------


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


def upload_records(
    records: list[Any], *, actor: Actor, may_hold_unstorable: bool = True
) -> tuple[int, list[dict[str, Any]]]:
    """Ingest upload records; (processed, unprocessed in CleverTap's shape)."""
    result = ingest_records(records, actor=actor, may_hold_unstorable=may_hold_unstorable)
    unprocessed = [
        _record_fail(number, records[number - 1], error.code, error.message)
        for number, error in result.refusals.items()
    ]
    return result.processed, unprocessed


@api_view("upload", ("POST",))
def upload(request: HttpRequest, credential: ApiCredential) -> HttpResponse:
    parsed = _parsed_body(request, per_record=True)
    body = parsed.data
    records = body.get("d") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise ApiError(400, 'The body must be {"d": [record, …]}.')
    if len(records) > MAX_UPLOAD_RECORDS:
        raise ApiError(
            400,
            f"Too many records: {len(records)} in one call; at most {MAX_UPLOAD_RECORDS} "
            "are accepted. Nothing was stored: split the records into smaller calls.",
        )
    processed, unprocessed = upload_records(
        records, actor=_actor(credential), may_hold_unstorable=parsed.may_hold_unstorable
    )
    return JsonResponse(
        {
            "status": _batch_status(processed, unprocessed),
            "processed": processed,
            "unprocessed": unprocessed,
        },
        encoder=safejson.EchoEncoder,
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
        return query_parse(safejson.loads(raw, what="the query parameter"))
    except safejson.JsonInputError as error:
        raise ApiError(400, error.message) from None


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


def _holders(kind: str, value: str) -> list[int]:
    """Every profile holding this email/phone (as an identifier or a property)."""
    ids = set(
        Identifier.objects.filter(kind=kind, value=value).values_list("profile_id", flat=True)
    )
    ids |= set(Profile.objects.filter(**{kind: value}).values_list("pk", flat=True))
    return sorted(ids)


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
            _changed, refused = profiles_update(holders, change(kind, status), actor=actor)
            if refused:
                raise next(iter(refused.values()))
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


# --- the schema (public: API clients fetch it) and its docs page (login) ---------------------


@login_not_required
@require_GET
def openapi_json(request: HttpRequest) -> HttpResponse:
    from api.openapi import openapi_schema  # openapi.py reads this module's limits

    return JsonResponse(openapi_schema(), json_dumps_params={"indent": 2})


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    from api.openapi import docs_context  # openapi.py reads this module's limits

    return render(request, "api/docs.html", docs_context())
