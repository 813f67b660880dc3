"""CleverTap's web SDK endpoint `/a`: decode a request, check it, store it through ingest.

Each SDK call is one GET whose `d` parameter is LZString-compressed JSON. This
module turns it into /1/upload-shaped records named by the browser's guid (the
SDK's device id, our objectId) and queues them (api.sdk_queue) for a worker that
hands them to `profiles.ingest.ingest_records` in batches, so logins follow the same
identity rules as /1/upload logins. The reply is sent once the records are queued.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from api.models import SdkSettings
from api.sdk_lzstring import LzTextTooLong, lz_decompress_from_base64
from api.sdk_queue import RateBudget, SdkRateLimited, sdk_queue_append
from campaigns.delivery.selectors import vapid_public_key
from profiles.models import ApiCredential
from profiles.rules.web_push import SubscriptionError, web_push_subscription

logger = logging.getLogger(__name__)

REQUEST_TYPES = ("page", "push", "ping", "data")
OPTED_OUT_SUFFIX = ":OO"
# Events the SDK sends for its own bookkeeping, never shown as user events.
INTERNAL_EVENTS = frozenset({"wzrk_fetch"})
PAGE_VIEW_EVENT = "Page Viewed"
GUID_MAX_LENGTH = 64


class SdkRefusal(Exception):
    """A request stored nothing; `status` is the HTTP status, `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SdkReply:
    """What `$WZRK_WR.s(guid, session, resume, rn)` receives."""

    guid: str
    session: int
    resume: bool
    request_number: int
    opted_out: bool | None = None
    queued: bool = False  # False: nothing to store, or a re-fire of a queued request
    # The VAPID public key the SDK subscribes browsers with ("": web push not set up), and
    # whether this call opened the session (it carried none): see api.sdk for the reply.
    web_push_key: str = ""
    new_session: bool = False


def _limit(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def sdk_decode_payload(raw: str | None) -> dict[str, Any]:
    """The JSON object in `d` (LZString compressToBase64); SdkRefusal when it is not one.

    The size is checked before decompressing, and the decompressed text is capped
    too, so a small `d` cannot expand into a huge string.
    """
    if not raw:
        raise SdkRefusal(400, "The request has no `d` parameter.")
    if len(raw) > _limit("SDK_MAX_D_CHARS", 16_384):
        raise SdkRefusal(413, "The `d` parameter is too large.")
    # A `+` sent unescaped arrives as a space after query-string decoding.
    raw = raw.replace(" ", "+")
    max_chars = _limit("SDK_MAX_PAYLOAD_CHARS", 65_536)
    try:
        text = lz_decompress_from_base64(raw, max_chars=max_chars)
    except LzTextTooLong:
        raise SdkRefusal(413, "The decoded payload is too large.") from None
    if not text:
        raise SdkRefusal(400, "The `d` parameter is not LZString base64.")
    try:
        payload = json.loads(text)
    except ValueError:
        raise SdkRefusal(400, "The `d` parameter does not hold JSON.") from None
    if not isinstance(payload, dict):
        raise SdkRefusal(400, "The `d` parameter must hold a JSON object.")
    if _ESCAPED_SURROGATE.search(text):
        payload = _without_lone_surrogates(payload)
    return payload


# JSON.stringify writes a lone surrogate as an escape; json.loads turns it back into a
# character PostgreSQL cannot store, and ingest would refuse the whole record for it.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _without_lone_surrogates(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with escaped surrogate pairs joined and lone surrogates as U+FFFD."""
    text = json.dumps(payload, ensure_ascii=False)
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return json.loads(text)


def sdk_account(account_id: object) -> ApiCredential:
    """The active credential for this account id; SdkRefusal when unknown or revoked."""
    if not isinstance(account_id, str) or not account_id or len(account_id) > 32:
        raise SdkRefusal(403, "Unknown account id.")
    credential = ApiCredential.objects.filter(
        account_id=account_id, revoked_at__isnull=True
    ).first()
    if credential is None:
        raise SdkRefusal(403, "Unknown account id.")
    return credential


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` lowercased, or None when `value` is not an http(s) URL."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def sdk_settings_for(credential: ApiCredential) -> SdkSettings:
    settings_row, _ = SdkSettings.objects.get_or_create(credential=credential)
    return settings_row


def sdk_settings_update(*, credential: ApiCredential, origins: list[str]) -> SdkSettings:
    """Replace the account's allowed origins (already normalized by the form)."""
    settings_row = sdk_settings_for(credential)
    settings_row.allowed_origins = sorted(set(origins))
    settings_row.save(update_fields=["allowed_origins"])
    _account_cache.pop(credential.account_id, None)  # other processes: within the cache time
    return settings_row


def sdk_request_origin(*, header: str | None, param: str | None, referer: str | None) -> str | None:
    """Where the page runs: the Origin header, else the SDK's `origin` parameter, else Referer."""
    for candidate in (header, param, referer):
        if candidate and candidate != "null":
            origin = normalize_origin(candidate)
            if origin:
                return origin
    return None


def sdk_origin_allowed(settings_row: SdkSettings, origin: str | None) -> bool:
    allowed = settings_row.allowed_origins or []
    if not allowed:
        return True
    return origin is not None and origin in allowed


def sdk_rate_budget(*, account_id: str, guid: str | None, client_ip: str) -> RateBudget:
    """The per-IP and per-device requests-per-minute counters a call counts against
    (checked in Redis together with the append: api.sdk_queue; 429 over either).
    Without Redis the limits are not enforced (logged): the SDK stays available."""
    minute = int(timezone.now().timestamp() // 60)
    ip_key = f"sdk:rate:ip:{client_ip}:{minute}"
    ip_limit = _limit("SDK_RATE_PER_IP_PER_MINUTE", 600)
    if not guid:
        return RateBudget(ip_key=ip_key, ip_limit=ip_limit)
    return RateBudget(
        ip_key=ip_key,
        ip_limit=ip_limit,
        device_key=f"sdk:rate:dev:{account_id}:{guid}:{minute}",
        device_limit=_limit("SDK_RATE_PER_DEVICE_PER_MINUTE", 120),
    )


def _clean_guid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().strip('"')
    if not value or len(value) > GUID_MAX_LENGTH or not value.isprintable():
        return None
    return value


def new_guid() -> str:
    return secrets.token_hex(16)


def client_event_id(*, account_id: str, guid: str, rn: str, i: str, sn: str, index: int) -> str:
    """The same request fired again (same device, rn, i, sn) gets the same event ids."""
    key = f"{account_id}|{guid}|{rn}|{i}|{sn}|{index}"
    return "sdk-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _browser_and_os(user_agent: str) -> tuple[str, str]:
    ua = user_agent or ""
    if "Edg/" in ua:
        browser = "Edge"
    elif "Chrome/" in ua or "Chromium/" in ua or "HeadlessChrome/" in ua:
        browser = "Chrome"
    elif "Firefox/" in ua:
        browser = "Firefox"
    elif "Safari/" in ua:
        browser = "Safari"
    else:
        browser = "Other"
    if "Windows" in ua:
        os_name = "Windows"
    elif "Android" in ua:
        os_name = "Android"
    elif "iPhone" in ua or "iPad" in ua:
        os_name = "iOS"
    elif "Mac OS X" in ua:
        os_name = "macOS"
    elif "Linux" in ua:
        os_name = "Linux"
    else:
        os_name = "Other"
    return browser, os_name


def _sdk_profile_data(profile: dict[str, Any]) -> dict[str, Any]:
    """Undo the SDK's encodings: Phone is sent as a number without its `+`."""
    data = dict(profile)
    for key in list(data):
        if key.lower() == "phone" and isinstance(data[key], int | float) and data[key] > 0:
            data[key] = f"+{int(data[key])}"
    return data


def _is_opted_out(guid: str) -> bool:
    return guid.endswith(OPTED_OUT_SUFFIX)


@dataclass(frozen=True)
class SdkRequest:
    """The parts of one `/a` call this module reads (query parameters and headers)."""

    type: str
    d: str | None
    rn: str
    i: str
    sn: str
    gc: str | None
    opt_out: str | None
    origin_param: str | None
    origin_header: str | None
    referer: str | None
    user_agent: str
    client_ip: str


def _request_number(value: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SdkRefusal(400, "The `rn` parameter must be a number.") from None
    if not 0 <= number < 2**31:
        raise SdkRefusal(400, "The `rn` parameter is out of range.")
    return number


def _records(
    request: SdkRequest, payload: dict[str, Any], guid: str, account_id: str
) -> tuple[list[dict[str, Any]], bool | None]:
    """Upload records for this call, and the opt-out choice it carries (None: none)."""
    now = int(timezone.now().timestamp())
    records: list[dict[str, Any]] = []
    opted_out: bool | None = None

    def event(name: Any, data: dict[str, Any]) -> None:
        records.append(
            {
                "type": "event",
                "objectId": guid,
                "evtName": name,
                "evtData": data,
                "ts": now,
                "evtId": client_event_id(
                    account_id=account_id,
                    guid=guid,
                    rn=request.rn,
                    i=request.i,
                    sn=request.sn,
                    index=len(records),
                ),
            }
        )

    if request.type == "page":
        browser, os_name = _browser_and_os(request.user_agent)
        data: dict[str, Any] = {"Platform": "Web", "Browser": browser, "OS": os_name}
        for source_key, name in (
            ("cpg", "url"),
            ("referrer", "referrer"),
            ("us", "utm_source"),
            ("um", "utm_medium"),
            ("uc", "utm_campaign"),
        ):
            value = payload.get(source_key)
            if isinstance(value, str) and value:
                data[name] = value[:1024]
        event(PAGE_VIEW_EVENT, data)
    elif request.type == "push":
        kind = payload.get("type")
        if kind == "event":
            event_name = payload.get("evtName")  # ingest refuses a missing or bad name
            if event_name not in INTERNAL_EVENTS:
                evt_data = payload.get("evtData")
                event(event_name, evt_data if isinstance(evt_data, dict) else {})
        elif kind == "profile":
            profile = payload.get("profile")
            if not isinstance(profile, dict):
                raise SdkRefusal(400, "A profile push needs a `profile` object.")
            if "ct_optout" in profile:
                opted_out = bool(profile.get("ct_optout"))
            if request.opt_out in ("true", "false"):
                opted_out = request.opt_out == "true"
            profile_data = _sdk_profile_data(profile)
            if profile_data:
                # The SDK sends a login on an anonymous browser and a profile push alike;
                # only a user switch carries isOUL. Ingest's login rule reads this flag.
                new_user = payload.get("isOUL") is True or payload.get("rc") is True
                records.append(
                    {"type": "profile", "objectId": guid, "profileData": profile_data,
                     "ts": now, "isOUL": new_user}
                )  # fmt: skip
        else:
            raise SdkRefusal(400, "A push must be of type event or profile.")
    elif request.type == "data":
        records.append(_push_token_record(payload, guid))
    # ping: keeps the session alive, stores nothing.
    return records, opted_out


# The SDK keeps only the tail of Chrome's and Firefox's endpoints (`endpoint.split('/').pop()`)
# and names the browser; these are the push services those browsers subscribe with (Firefox
# with a VAPID key, which the SDK always passes). Other browsers' endpoints arrive whole.
PUSH_SERVICE_PREFIXES = {
    "Chrome": "https://fcm.googleapis.com/fcm/send/",
    "Firefox": "https://updates.push.services.mozilla.com/wpush/v2/",
}
_ENDPOINT_TAIL = re.compile(r"^[A-Za-z0-9_:.=-]{8,600}$")


def sdk_push_endpoint(endpoint: object, browser: object) -> str:
    """The subscription's full endpoint URL from what the SDK sends; SdkRefusal if unusable."""
    if not isinstance(endpoint, str) or not endpoint:
        raise SdkRefusal(400, "The web push subscription has no endpoint.")
    if endpoint.startswith("https://"):
        return endpoint
    if browser == "Safari":
        raise SdkRefusal(400, "Safari's APNs web push is not supported; use standard Web Push.")
    prefix = PUSH_SERVICE_PREFIXES.get(browser) if isinstance(browser, str) else None
    if prefix is None or not _ENDPOINT_TAIL.match(endpoint):
        raise SdkRefusal(400, "The web push endpoint must be an https URL.")
    return prefix + endpoint


def _push_token_record(payload: dict[str, Any], guid: str) -> dict[str, Any]:
    """An ingest token record for a `type=data` call: the SDK's registration (the
    PushSubscription JSON) or its `action: unregister`. Checked here, so a bad
    subscription is refused in the reply (profiles.rules.web_push is the rule)."""
    if payload.get("action") == "unregister":
        return {"type": "token", "objectId": guid,
                "tokenData": {"type": "webpush", "action": "unregister"}}  # fmt: skip
    endpoint = sdk_push_endpoint(payload.get("endpoint"), payload.get("browser"))
    try:
        web_push_subscription({"endpoint": endpoint, "keys": payload.get("keys")})
    except SubscriptionError as error:
        raise SdkRefusal(400, str(error)) from None
    return {"type": "token", "objectId": guid,
            "tokenData": {"type": "webpush", "id": endpoint, "keys": payload["keys"]}}  # fmt: skip


# Each web process keeps an account's credential and SDK settings this long, so a
# request makes no database query: a revocation or an origin change applies within it.
ACCOUNT_CACHE_SECONDS = 5.0
_account_cache: dict[str, tuple[float, ApiCredential, SdkSettings]] = {}


def _account_with_settings(account_id: object) -> tuple[ApiCredential, SdkSettings]:
    now = time.monotonic()
    cached = _account_cache.get(account_id) if isinstance(account_id, str) else None
    if cached and now - cached[0] < ACCOUNT_CACHE_SECONDS:
        return cached[1], cached[2]
    credential = sdk_account(account_id)
    settings_row = sdk_settings_for(credential)
    if len(_account_cache) > 1000:  # unknown ids are never cached; this bounds the rest
        _account_cache.clear()
    _account_cache[credential.account_id] = (now, credential, settings_row)
    return credential, settings_row


# The web push key is kept the same way (one for the installation): a key generated in
# Settings → Messaging reaches browsers within the cache time, and a call makes no query.
_web_push_key_cache: dict[str, tuple[float, str]] = {}


def sdk_web_push_key() -> str:
    now = time.monotonic()
    cached = _web_push_key_cache.get("key")
    if cached and now - cached[0] < ACCOUNT_CACHE_SECONDS:
        return cached[1]
    key = vapid_public_key()
    _web_push_key_cache["key"] = (now, key)
    return key


def sdk_handle(request: SdkRequest) -> SdkReply:
    """Check and store one SDK call; the reply the SDK needs. SdkRefusal when refused."""
    if request.type not in REQUEST_TYPES:
        raise SdkRefusal(400, "Unknown request type.")
    request_number = _request_number(request.rn)
    payload = sdk_decode_payload(request.d)
    credential, settings_row = _account_with_settings(payload.get("id"))
    origin = sdk_request_origin(
        header=request.origin_header, param=request.origin_param, referer=request.referer
    )
    if not sdk_origin_allowed(settings_row, origin):
        raise SdkRefusal(403, "This origin may not send data for this account.")

    given_guid = _clean_guid(payload.get("g")) or _clean_guid(request.gc)
    # A login of a different user (rc) drops the browser's guid: it gets a new one.
    if payload.get("rc") is True and payload.get("isOUL") is True:
        given_guid = None
    rate = sdk_rate_budget(
        account_id=credential.account_id, guid=given_guid, client_ip=request.client_ip
    )
    guid = given_guid or new_guid()
    session = payload.get("s")
    # No session given: this call opens one (the SDK sends none on a first visit or after
    # its session cookie expired), and the reply names it.
    new_session = not isinstance(session, int) or isinstance(session, bool) or session <= 0
    if new_session or not isinstance(session, int):  # (the second test is for the type checker)
        session = int(timezone.now().timestamp())
    reply = SdkReply(
        guid=guid,
        session=session,
        resume=given_guid is None,
        request_number=request_number,
        new_session=new_session,
    )

    _touch(settings_row, origin)
    records: list[dict[str, Any]] = []
    opted_out: bool | None = None
    refusal: SdkRefusal | None = None
    if not _is_opted_out(guid):
        try:
            records, opted_out = _records(request, payload, guid, credential.account_id)
        except SdkRefusal as error:  # still counted: a flood of bad calls is limited too
            refusal = error
    try:
        # Checked here, written by the queue's worker through ingest (api.sdk_queue): the
        # reply carries the guid before its device row exists. The rate limits are
        # checked in the same round trip; a call storing nothing still counts.
        reply.queued = sdk_queue_append(
            guid=guid,
            records=records,
            actor_label=f"SDK: {credential.name}",
            dedupe_key=_refire_key(request, credential.account_id, guid)
            if any(record["type"] != "event" for record in records)
            else None,
            rate=rate,
        )
    except SdkRateLimited:
        raise SdkRefusal(429, "Too many requests; try again in a minute.") from None
    if refusal is not None:
        raise refusal
    if _is_opted_out(guid):
        reply.opted_out = True
        return reply
    if opted_out is not None:
        reply.opted_out = opted_out
        if opted_out:
            reply.guid = guid + OPTED_OUT_SUFFIX
            return reply
    reply.web_push_key = sdk_web_push_key()  # an opted-out browser is not offered web push
    return reply


def _refire_key(request: SdkRequest, account_id: str, guid: str) -> str | None:
    """The same request fired again (the SDK's retry queue) has the same key; None when
    the call lacks the SDK's request stamp (rn, i, sn) and cannot be told apart.

    Only a call with a profile push or a token record takes one: an event's id comes from
    the same stamp (client_event_id), and PostgreSQL stores an event id once per profile,
    so a re-fired page view or event is queued again and stored once. A key for every call,
    kept a week, was most of Redis's memory (a week at 100 calls/s: ~60 million keys)."""
    if not request.i or not request.sn:
        return None
    body = hashlib.sha256((request.d or "").encode()).hexdigest()[:24]
    return f"{account_id}:{guid}:{request.type}:{request.rn}:{request.i}:{request.sn}:{body}"


def _touch(settings_row: SdkSettings, origin: str | None) -> None:
    """Remember the last traffic seen, at most once a minute per account (one UPDATE)."""
    now = timezone.now()
    last = settings_row.last_seen_at
    if (
        last
        and now - last < dt.timedelta(minutes=1)
        and settings_row.last_seen_origin == (origin or "")
    ):
        return
    SdkSettings.objects.filter(pk=settings_row.pk).update(
        last_seen_at=now, last_seen_origin=(origin or "")[:300]
    )
    settings_row.last_seen_at, settings_row.last_seen_origin = now, (origin or "")[:300]


def sdk_accounts() -> list[tuple[ApiCredential, SdkSettings | None]]:
    """Active credentials, newest first, each with its SDK settings (None: never set)."""
    credentials = ApiCredential.objects.filter(revoked_at__isnull=True).order_by("-created_at")
    by_credential = {
        row.credential_id: row
        for row in SdkSettings.objects.filter(credential__revoked_at__isnull=True)
    }
    return [(credential, by_credential.get(credential.pk)) for credential in credentials]
