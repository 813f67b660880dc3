"""`/a` as production serves it: config.wsgi answers it before Django's handler."""

from __future__ import annotations

import io
import json
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
from django.core import signals
from django.db import close_old_connections

from api.tests.test_sdk_endpoint import drain_now, encode
from config.wsgi import application
from profiles.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_transaction(monkeypatch):
    """As Django's test client does for its handler: the connection holds the test's
    transaction, so the per-request connection cleanup must not close it."""
    monkeypatch.setattr("api.sdk.close_old_connections", lambda: None)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def call(path: str, query: dict | None = None, method: str = "GET", **headers: str):
    environ: dict = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": urlencode(query or {}),
        "wsgi.input": io.BytesIO(),
    }
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    setup_testing_defaults(environ)
    started: dict = {}

    def start_response(status: str, response_headers: list) -> None:
        started["status"], started["headers"] = status, dict(response_headers)

    body = b"".join(application(environ, start_response))
    return int(started["status"].split()[0]), started["headers"], body


def test_a_page_view_is_answered_by_the_wsgi_app_and_stored(api):
    d = encode({"id": api.credential.account_id, "cpg": "https://shop.example/"})
    status, headers, body = call("/a", {"t": 96, "type": "page", "d": d, "rn": 3, "i": 1, "sn": 0})
    assert status == 200
    assert headers["Content-Type"].startswith("application/javascript")
    assert headers["X-Content-Type-Options"] == "nosniff"
    args = json.loads("[" + body.decode().removeprefix("$WZRK_WR.s(").removesuffix(");") + "]")
    guid, _session, resume, rn = args
    assert (resume, rn) == (True, 3)
    drain_now()
    assert Event.objects.filter(device__object_id=guid, name="Page Viewed").exists()


def test_fetch_mode_and_preflight_through_the_wsgi_app(api):
    status, headers, _ = call("/a", method="OPTIONS", origin="https://shop.example")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "X-CleverTap-Encryption-Enabled" in headers["Access-Control-Allow-Headers"]
    d = encode({"id": api.credential.account_id, "cpg": "https://shop.example/"})
    status, headers, body = call(
        "/a", {"type": "page", "d": d, "rn": 1}, origin="https://shop.example",
        accept="application/json", x_clevertap_encryption_enabled="true",
    )  # fmt: skip
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert json.loads(body)["meta"]["rn"] == 1


def test_refusals_through_the_wsgi_app(api):
    unknown = encode({"id": "NOPE-000-0000"})
    assert call("/a", {"type": "page", "d": unknown, "rn": 1})[0] == 403
    assert call("/a", {"type": "page", "d": "@@@", "rn": 1})[0] == 400
    assert call("/a", {"type": "page", "d": "A" * 20_000, "rn": 1})[0] == 413
    assert call("/a", {f"p{n}": n for n in range(300)})[0] == 400
    assert call("/a", method="POST")[0] == 405


def test_an_unexpected_error_is_a_503_the_sdk_retries_never_a_500(api, monkeypatch):
    def broken(_request):
        raise RuntimeError("a bug")

    monkeypatch.setattr("api.sdk.sdk_handle", broken)
    d = encode({"id": api.credential.account_id})
    status, _headers, body = call("/a", {"type": "page", "d": d, "rn": 1})
    assert status == 503
    assert b"$WZRK_WR" not in body


def test_other_paths_still_go_to_django():
    status, headers, body = call("/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    assert headers["X-Frame-Options"] == "DENY"  # the dashboard's middleware ran
