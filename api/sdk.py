"""GET /a: CleverTap's web SDK endpoint, answered as JSONP or, in fetch mode, JSON with CORS."""

from __future__ import annotations

import json
import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from api.sdk_services import SdkRefusal, SdkRequest, normalize_origin, sdk_handle

logger = logging.getLogger(__name__)

# The SDK's fetch mode sends this non-safelisted header, which forces a preflight.
FETCH_HEADER = "X-CleverTap-Encryption-Enabled"
MAX_QUERY_CHARS = 24_576


def _fetch_mode(request: HttpRequest) -> bool:
    return FETCH_HEADER in request.headers or "application/json" in request.headers.get(
        "Accept", ""
    )


def _cors(response: HttpResponse, request: HttpRequest) -> HttpResponse:
    # No credentials are sent by the SDK, so echoing the origin exposes nothing;
    # which origins may store data is decided per account when the data arrives.
    origin = normalize_origin(request.headers.get("Origin", "") or "")
    response["Access-Control-Allow-Origin"] = origin or "*"
    response["Vary"] = "Origin"
    return response


def _js_string(value: object) -> str:
    # json.dumps escapes quotes; `<` too, so no `</script>` can appear in the reply.
    return json.dumps(value).replace("<", "\\u003c")


def _script(body: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/javascript")
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


# Anonymous browsers call this: the account id in `d` names the account, the
# allowed origins and rate limits guard it.
@login_not_required
@csrf_exempt
def sdk_endpoint(request: HttpRequest) -> HttpResponse:
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response["Access-Control-Allow-Headers"] = f"{FETCH_HEADER}, Content-Type, Accept"
        response["Access-Control-Max-Age"] = "86400"
        return _cors(response, request)
    fetch = _fetch_mode(request)
    if request.method != "GET":
        return _refused(request, fetch, SdkRefusal(405, "Only GET is accepted."))
    if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY_CHARS:
        return _refused(request, fetch, SdkRefusal(413, "The request is too large."))
    params = request.GET
    sdk_request = SdkRequest(
        type=params.get("type", ""),
        d=params.get("d"),
        rn=params.get("rn", "0"),
        i=params.get("i", ""),
        sn=params.get("sn", ""),
        gc=params.get("gc"),
        opt_out=params.get("optOut"),
        origin_param=params.get("origin"),
        origin_header=request.headers.get("Origin"),
        referer=request.headers.get("Referer"),
        user_agent=request.headers.get("User-Agent", "")[:512],
        client_ip=_client_ip(request),
    )
    try:
        reply = sdk_handle(sdk_request)
    except SdkRefusal as refusal:
        return _refused(request, fetch, refusal)
    if fetch:
        meta = {
            "g": reply.guid,
            "sid": reply.session,
            "rf": reply.resume,
            "rn": reply.request_number,
        }
        if reply.opted_out is not None:
            meta["optOut"] = reply.opted_out
        response = JsonResponse({"meta": meta})
        response["Cache-Control"] = "no-store"
        return _cors(response, request)
    args = [reply.guid, reply.session, reply.resume, reply.request_number]
    if reply.opted_out is not None:
        args.append(reply.opted_out)
    return _script(f"$WZRK_WR.s({', '.join(_js_string(arg) for arg in args)});")


def _refused(request: HttpRequest, fetch: bool, refusal: SdkRefusal) -> HttpResponse:
    """A reply the SDK tolerates: it calls nothing, so the SDK keeps the request queued."""
    logger.info("SDK request refused (%s): %s", refusal.status, refusal.message)
    if fetch:
        return _cors(JsonResponse({"error": refusal.message}, status=refusal.status), request)
    # A script that does nothing: a JSONP tag with an error status would only log noise.
    return _script(f"/* {refusal.message} */", status=refusal.status)
