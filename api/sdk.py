"""GET /a: CleverTap's web SDK endpoint, answered as JSONP or, in fetch mode, JSON with CORS.

`sdk_answer` reads a WSGI environ and returns the whole reply. Production serves it
before Django's handler (`sdk_wsgi`, dispatched in config.wsgi): the SDK's many small
anonymous calls need none of the dashboard's middleware (sessions, CSRF, login, messages,
CSP), which was a fifth of a call's time. The Django view (`sdk_endpoint`, the URL `/a`,
what the test client and the live test server reach) answers through the same function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from django.contrib.auth.decorators import login_not_required
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from api.sdk_services import SdkRefusal, SdkRequest, normalize_origin, sdk_handle

logger = logging.getLogger(__name__)

# The SDK's fetch mode sends this non-safelisted header, which forces a preflight.
FETCH_HEADER = "X-CleverTap-Encryption-Enabled"
MAX_QUERY_CHARS = 24_576
MAX_QUERY_FIELDS = 100  # the SDK sends about 15
# With a web push key, a reply carries `enableWebPush(true, key)` (fetch mode: `wpe`), and
# the first reply of a session also `tr({webPushConfig: {}})`: SDK 2.5.2 starts the prompt
# of `clevertap.notifications.push(...)` only once it has received both. An empty config
# means no dashboard-designed prompt: the page's own arguments (texts, skipDialog,
# serviceWorkerPath) are used. Only once a session: the SDK would otherwise register its
# subscription again after every reply.
WEB_PUSH_CONFIG: dict[str, Any] = {"webPushConfig": {}}


@dataclass
class SdkAnswer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _fetch_mode(environ: Mapping[str, Any]) -> bool:
    return "HTTP_X_CLEVERTAP_ENCRYPTION_ENABLED" in environ or "application/json" in environ.get(
        "HTTP_ACCEPT", ""
    )


def _cors(answer: SdkAnswer, environ: Mapping[str, Any]) -> SdkAnswer:
    # No credentials are sent by the SDK, so echoing the origin exposes nothing;
    # which origins may store data is decided per account when the data arrives.
    origin = normalize_origin(environ.get("HTTP_ORIGIN", "") or "")
    answer.headers += [("Access-Control-Allow-Origin", origin or "*"), ("Vary", "Origin")]
    return answer


def _js_string(value: object) -> str:
    # json.dumps escapes quotes; `<` too, so no `</script>` can appear in the reply.
    return json.dumps(value).replace("<", "\\u003c")


def _script(body: str, status: int = 200) -> SdkAnswer:
    return SdkAnswer(
        status,
        body.encode(),
        [
            ("Content-Type", "application/javascript; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )


def _json(data: object, status: int = 200) -> SdkAnswer:
    body = json.dumps(data, separators=(",", ":")).encode()
    return SdkAnswer(
        status,
        body,
        [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )


def sdk_answer(environ: Mapping[str, Any]) -> SdkAnswer:
    """The reply to one `/a` call; never raises (an unexpected error is logged and
    answered 503, which the SDK retries from its queue)."""
    try:
        return _answer(environ)
    except Exception:
        logger.exception("SDK request failed")
        return _refused(environ, _fetch_mode(environ), SdkRefusal(503, "Try again later."))


def _answer(environ: Mapping[str, Any]) -> SdkAnswer:
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "OPTIONS":
        preflight = SdkAnswer(
            204,
            b"",
            [
                ("Access-Control-Allow-Methods", "GET, OPTIONS"),
                ("Access-Control-Allow-Headers", f"{FETCH_HEADER}, Content-Type, Accept"),
                ("Access-Control-Max-Age", "86400"),
            ],
        )
        return _cors(preflight, environ)
    fetch = _fetch_mode(environ)
    if method != "GET":
        return _refused(environ, fetch, SdkRefusal(405, "Only GET is accepted."))
    query = environ.get("QUERY_STRING", "")
    if len(query) > MAX_QUERY_CHARS:
        return _refused(environ, fetch, SdkRefusal(413, "The request is too large."))
    try:
        fields = parse_qsl(
            query, keep_blank_values=True, errors="replace", max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        return _refused(environ, fetch, SdkRefusal(400, "The request has too many parameters."))
    params = dict(fields)  # a repeated parameter: the last one, as Django's QueryDict.get
    sdk_request = SdkRequest(
        type=params.get("type", ""),
        d=params.get("d"),
        rn=params.get("rn", "0"),
        i=params.get("i", ""),
        sn=params.get("sn", ""),
        gc=params.get("gc"),
        opt_out=params.get("optOut"),
        origin_param=params.get("origin"),
        origin_header=environ.get("HTTP_ORIGIN"),
        referer=environ.get("HTTP_REFERER"),
        user_agent=environ.get("HTTP_USER_AGENT", "")[:512],
        client_ip=environ.get("REMOTE_ADDR", "") or "unknown",
    )
    try:
        reply = sdk_handle(sdk_request)
    except SdkRefusal as refusal:
        return _refused(environ, fetch, refusal)
    if fetch:
        meta: dict[str, Any] = {
            "g": reply.guid,
            "sid": reply.session,
            "rf": reply.resume,
            "rn": reply.request_number,
        }
        if reply.opted_out is not None:
            meta["optOut"] = reply.opted_out
        data: dict[str, Any] = {"meta": meta}
        if reply.web_push_key:
            data["wpe"] = {"enabled": True, "key": reply.web_push_key}
            if reply.new_session:
                data["tr"] = WEB_PUSH_CONFIG
        return _cors(_json(data), environ)
    args: list[object] = [reply.guid, reply.session, reply.resume, reply.request_number]
    if reply.opted_out is not None:
        args.append(reply.opted_out)
    calls = []
    if reply.web_push_key:
        # The key first: the SDK's prompt reads it when tr's webPushConfig starts it.
        calls.append(f"$WZRK_WR.enableWebPush(true, {_js_string(reply.web_push_key)});")
        if reply.new_session:
            calls.append(f"$WZRK_WR.tr({_js_string(WEB_PUSH_CONFIG)});")
    calls.append(f"$WZRK_WR.s({', '.join(_js_string(arg) for arg in args)});")
    return _script("".join(calls))


def _refused(environ: Mapping[str, Any], fetch: bool, refusal: SdkRefusal) -> SdkAnswer:
    """A reply the SDK tolerates: it calls nothing, so the SDK keeps the request queued."""
    logger.info("SDK request refused (%s): %s", refusal.status, refusal.message)
    if fetch:
        return _cors(_json({"error": refusal.message}, status=refusal.status), environ)
    # A script that does nothing: a JSONP tag with an error status would only log noise.
    return _script(f"/* {refusal.message} */", status=refusal.status)


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def sdk_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """`/a` as a WSGI application of its own (config.wsgi dispatches to it). A call makes a
    database query only when its account is not cached: connections are looked after as
    Django's handler would (closed when broken or past CONN_MAX_AGE)."""
    close_old_connections()
    try:
        answer = sdk_answer(environ)
    finally:
        close_old_connections()
    status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
    start_response(status, [*answer.headers, ("Content-Length", str(len(answer.body)))])
    return [answer.body]


# Anonymous browsers call this: the account id in `d` names the account, the
# allowed origins and rate limits guard it.
@login_not_required
@csrf_exempt
def sdk_endpoint(request: HttpRequest) -> HttpResponse:
    answer = sdk_answer(request.META)
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response
