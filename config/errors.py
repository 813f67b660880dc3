"""The server error page, and the clear 503 when a backing service is down.

Django calls the 500 handler inside its `except` block, whatever layer raised
(a view, the session or auth middleware), so the exception is still at hand:
a refused or dropped database or broker connection is an outage the client
should retry, not a bug. Nothing here touches the database or renders a
template (context processors would).
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerError

OUTAGE_ERRORS = (OperationalError, InterfaceError, BrokerError)
RETRY_AFTER_SECONDS = "10"
API_PREFIXES = ("/1/", "/api/")


def _is_outage(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OUTAGE_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    outage = _is_outage(sys.exc_info()[1])
    status = 503 if outage else 500
    message = (
        "Service temporarily unavailable: the database or queue cannot be reached. "
        "Try again shortly."
        if outage
        else "Internal server error."
    )
    if request.path.startswith(API_PREFIXES):
        response: HttpResponse = JsonResponse(
            {"status": "fail", "error": message, "code": status}, status=status
        )
    else:
        response = HttpResponse(
            f"<!doctype html><title>{status}</title><h1>{message}</h1>",
            status=status,
            content_type="text/html; charset=utf-8",
        )
    if outage:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    response["Cache-Control"] = "no-store"
    return response
