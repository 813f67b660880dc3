"""The REST API's OpenAPI 3 schema, written by hand, and the docs page built from it.

Keep it in step with api/views.py: the API tests check that every route is
described here and that the documented limits match the code.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import escape
from django.utils.safestring import mark_safe

from api.views import (
    CURSOR_TTL,
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_DELETE_VALUES,
    MAX_SUBSCRIBE_ENTRIES,
    MAX_UPLOAD_RECORDS,
    UNAUTHORIZED,
)
from profiles.properties import RESERVED_EVENT_NAMES

ERROR_CODES = [
    (509, "Event name is mandatory."),
    (512, "Invalid event structure (evtData not an object, bad Items, bad evtId, …)."),
    (513, "Restricted system event name (see the list below)."),
    (514, "Gender needs to be M/F."),
    (515, "Email is not valid."),
    (516, "Phone is not valid (E.164, with + and the country code)."),
    (517, "Employed needs to be Y/N."),
    (518, "Education needs to be School/College/Graduate."),
    (519, "Married needs to be Y/N."),
    (520, "Age is invalid."),
    (522, "Too many event properties, or too many Charged Items."),
    (523, "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars."),
    (524, "The record is neither an event nor a profile (type must be event or profile)."),
    (525, "Timestamp should be present in the Unix Epoch format (seconds)."),
    (526, "objectId is invalid."),
    (555, "Anything else: a bad property name or value, an identifier held by another "
          "profile (profiles are never merged), a type clash with an existing property."),
]  # fmt: skip

HTTP_ERRORS = [
    (400, "Malformed JSON, a body of the wrong shape, more than 1000 records, a bad query, "
          "batch_size, cursor or an expired cursor."),
    (401, "Missing or wrong X-CleverTap-Account-Id / X-CleverTap-Passcode, or a revoked "
          "credential."),
    (404, "profile.json: no profile holds the identifier."),
    (405, "Wrong HTTP method."),
    (413, "The body is larger than the server accepts (API_MAX_BODY_BYTES, 10 MB by default); "
          "refused from Content-Length before reading."),
    (429, "Too many concurrent requests for the account (API_MAX_CONCURRENT_REQUESTS, 15)."),
]  # fmt: skip


def _fail(code: int, error: str) -> dict[str, Any]:
    return {"status": "fail", "error": error, "code": code}


def _json(example: Any, description: str = "", schema: dict | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"example": example}
    if schema is not None:
        content["schema"] = schema
    return {"description": description, "content": {"application/json": content}}


# Request-body schemas: complete enough for a client generator or a fuzzer to build
# valid calls. Property values stay open (any JSON): the server refuses what it cannot
# store record by record, with a code.
_TEXT = {"type": "string"}
_ANY_OBJECT = {"type": "object", "additionalProperties": True}


def _list_of(item: dict[str, Any], limit: int) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": 1, "maxItems": limit}


def _entries(entry: dict[str, Any], limit: int) -> dict[str, Any]:
    """One entry, or {"d": [entry, …]}."""
    batch = {"type": "object", "required": ["d"], "properties": {"d": _list_of(entry, limit)}}
    return {"oneOf": [entry, batch]}


QUERY_SCHEMA = {
    "type": "object",
    "properties": {
        "event_name": _TEXT,
        "from": {"type": "integer", "description": "YYYYMMDD"},
        "to": {"type": "integer", "description": "YYYYMMDD"},
    },
}
UPLOAD_RECORD_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["event", "profile"]},
        "identity": _TEXT,
        "objectId": _TEXT,
        "FBID": _TEXT,
        "GPID": _TEXT,
        "evtName": _TEXT,
        "evtData": _ANY_OBJECT,
        "profileData": _ANY_OBJECT,
        "ts": {"type": "integer", "description": "Unix seconds"},
    },
}
CONTACT_ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["type", "value"],
    "properties": {"type": {"type": "string", "enum": ["email", "phone"]}, "value": _TEXT},
}


QUERY_EXAMPLE = {"event_name": "Charged", "from": 20240101, "to": 20240131}
PROFILE_RECORD = {
    "ct_id": "__3f1c0e0c2b8d4a5f9e7d6c5b4a392817",
    "type": "identified",
    "identity": "u1",
    "identities": {"identity": ["u1"], "email": ["ann@example.com"]},
    "profileData": {"Name": "Ann", "Email": "ann@example.com", "DOB": "1990-01-01",
                    "MSG-sms": False, "Customer Type": "Platinum"},
    "systemProperties": {"Age": 34, "First seen": 1700000000, "Last seen": 1704067200,
                         "Event count": 12, "Platform": "Android", "Device": "Google Pixel 8",
                         "Location": None},
    "devices": [{"objectId": "__a1b2c3d4e5f60718293a4b5c6d7e8f90", "platform": "Android",
                 "make": "Google", "model": "Pixel 8", "push_token": True,
                 "push_enabled": True, "last_seen": 1704067200}],
    "test_profile": False,
    "linked_to": None,
}  # fmt: skip
EVENT_RECORD = {
    "evtName": "Charged",
    "ts": 1704067200,
    "evtData": {"Amount": 300},
    "evtId": "order-1234",
    "source": "api",
    "profile": {"ct_id": "__3f1c0e0c2b8d4a5f9e7d6c5b4a392817", "identity": "u1",
                "objectId": None},
}  # fmt: skip
UPLOAD_EXAMPLE = {
    "d": [
        {"type": "profile", "identity": "u1", "ts": 1700000000,
         "profileData": {"Name": "Ann", "Email": "ann@example.com", "Phone": "+14155551234",
                         "Gender": "F", "MSG-sms": False, "Customer Type": "Platinum",
                         "Interests": {"$add": ["shoes"]}, "DOB": "$D_631152000"}},
        {"type": "event", "identity": "u1", "ts": 1700000100, "evtName": "Charged",
         "evtId": "order-1234", "evtData": {"Amount": 300, "Items": [{"sku": "A1"}]}},
        {"type": "profile", "objectId": "__a1b2c3d4e5f60718293a4b5c6d7e8f90",
         "profileData": {"Identity": "u2", "Email": "bob@example.com"}},
    ]
}  # fmt: skip
PARTIAL_EXAMPLE = {
    "status": "partial",
    "processed": 1,
    "unprocessed": [
        {"status": "fail", "code": 515,
         "error": "Profile data is incorrect. Email is not valid.Skipped record number : 2",
         "record": {"type": "profile", "identity": "u2", "profileData": {"Email": "nope"}}}
    ],
}  # fmt: skip
BATCH_RESULT = {"status": "success", "processed": 1, "unprocessed": []}

AUTH_HEADERS = [
    {"name": "X-CleverTap-Account-Id", "in": "header", "required": True,
     "schema": {"type": "string"}, "example": "W9R-486-4W5Z"},
    {"name": "X-CleverTap-Passcode", "in": "header", "required": True,
     "schema": {"type": "string"}},
]  # fmt: skip
COMMON_ERRORS = {
    "400": _json(_fail(400, "Malformed JSON in the request body: …"), "Refused call"),
    "401": _json(UNAUTHORIZED, "Bad or revoked credentials"),
    "413": _json(_fail(413, "Request body too large (…); at most 10,485,760 bytes are accepted."),
                 "Body too large"),
    "429": _json(_fail(429, "Too many concurrent requests for this account: at most 15 at a "
                            "time. Retry shortly."), "Concurrency cap"),
}  # fmt: skip


def _query_operation(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    what = "profiles who did the event" if kind == "profiles" else "events"
    return {
        "get": {
            "summary": f"Start a {kind} query (query=<json>) or page with cursor=…",
            "description": (
                f"Two steps. 1: `GET /1/{kind}.json?batch_size=N&query=<json>` (or the POST "
                f"form) answers with a cursor. 2: `GET /1/{kind}.json?cursor=…` answers with "
                f"`records` and, while more remain, `next_cursor`; stop when it is absent. "
                f"The query selects {what} named `event_name` between the days `from` and `to` "
                f"(YYYYMMDD, inclusive, UTC); every field is optional and an empty query "
                f"selects all {kind}. batch_size is 1 to {MAX_BATCH_SIZE} (default "
                f"{DEFAULT_BATCH_SIZE}). Cursors are URL-safe (A-Za-z0-9_-), belong to the "
                f"credential that made them and expire "
                f"{int(CURSOR_TTL.total_seconds() // 60)} minutes after the query started. "
                f"Pages follow the record id (keyset), and the query sees only records that "
                f"existed when it started, so records added meanwhile never shift, repeat or "
                f"join pages. Retrying a cursor returns the same page."
            ),
            "parameters": [
                *AUTH_HEADERS,
                {
                    "name": "batch_size",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE},
                },
                {
                    "name": "query",
                    "in": "query",
                    "schema": {"type": "string"},
                    "example": json.dumps(QUERY_EXAMPLE),
                },
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json(
                    {"status": "success", "records": [record], "next_cursor": "k3J…_x"},
                    "A cursor (step 1) or a page of records (step 2)",
                ),
                **COMMON_ERRORS,
            },
        },
        "post": {
            "summary": f"Start a {kind} query with a JSON body",
            "description": f"`POST /1/{kind}.json?batch_size=N` with the query as the body.",
            "parameters": [
                *AUTH_HEADERS,
                {
                    "name": "batch_size",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE},
                },
            ],
            "requestBody": _json(QUERY_EXAMPLE, "The query", QUERY_SCHEMA),
            "responses": {
                "200": _json({"status": "success", "cursor": "Zq4b…Tx"}, "The first cursor"),
                **COMMON_ERRORS,
            },
        },
    }


def _count_operation(kind: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"Count {kind} matching a query",
            "description": (
                "Same query as the cursor API. Answered synchronously with the count (CleverTap "
                "answers with a request id to poll; this server counts at once)."
            ),
            "parameters": AUTH_HEADERS,
            "requestBody": _json(
                QUERY_EXAMPLE, "The query (an empty body counts all)", QUERY_SCHEMA
            ),
            "responses": {"200": _json({"status": "success", "count": 42}), **COMMON_ERRORS},
        }
    }


def openapi_schema() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "User profile platform — REST API (CleverTap dialect)",
            "version": "1",
            "description": (
                "Every call names the account with the headers X-CleverTap-Account-Id and "
                "X-CleverTap-Passcode (Settings → API credentials, or `python manage.py "
                "api_credentials create --name N`). Responses are JSON; a refused call "
                'answers {"status": "fail", "error": "…", "code": N}.'
            ),
        },
        "components": {
            "securitySchemes": {
                "accountId": {"type": "apiKey", "in": "header", "name": "X-CleverTap-Account-Id"},
                "passcode": {"type": "apiKey", "in": "header", "name": "X-CleverTap-Passcode"},
            }
        },
        "security": [{"accountId": [], "passcode": []}],
        "paths": {
            "/1/upload": {
                "post": {
                    "summary": "Upload profile and event records",
                    "description": (
                        f'Body `{{"d": [record, …]}}`, at most {MAX_UPLOAD_RECORDS} records '
                        "(more: HTTP 400, nothing stored). Each record names the person with "
                        "`identity`, `objectId`, `FBID` or `GPID` and has `type` `profile` "
                        "(with `profileData`) or `event` (with `evtName`, `evtData`). `ts` is "
                        "optional, UNIX epoch seconds (default now). Property operations: "
                        "`$add`, `$remove`, `$set` (lists), `$incr`, `$decr`, `$delete`; "
                        "dates as `$D_<epoch>`. A profile record with `objectId` and an "
                        "identifier (top level or Identity/Email/Phone in profileData) follows "
                        "onUserLogin: the device maps to the person, an anonymous profile is "
                        "identified or linked; without `objectId` it is a profilePush. An "
                        "event record may carry `evtId`, a client event id (≤ 128 chars): a "
                        "retried call with the same evtId for the same person stores nothing "
                        "new and still counts as processed. Records are independent: each is "
                        "stored or refused on its own; refused ones come back in "
                        "`unprocessed` with their code and the original record."
                    ),
                    "parameters": AUTH_HEADERS,
                    "requestBody": _json(
                        UPLOAD_EXAMPLE,
                        "Records",
                        {
                            "type": "object",
                            "required": ["d"],
                            "properties": {"d": _list_of(UPLOAD_RECORD_SCHEMA, MAX_UPLOAD_RECORDS)},
                        },
                    ),
                    "responses": {
                        "200": _json(PARTIAL_EXAMPLE, "Per-record results: success/partial/fail"),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/1/profile.json": {
                "get": {
                    "summary": "Get one profile by email, identity or objectId",
                    "description": (
                        "Exactly one of `email`, `identity`, `objectId` (a device id or the "
                        "profile's ct_id). Values may arrive un-encoded: a space in an email "
                        "is read as the `+` it was. Not found: HTTP 404."
                    ),
                    "parameters": [
                        *AUTH_HEADERS,
                        {"name": "email", "in": "query", "schema": {"type": "string"}},
                        {"name": "identity", "in": "query", "schema": {"type": "string"}},
                        {"name": "objectId", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json({"status": "success", "record": PROFILE_RECORD}),
                        "404": _json(_fail(404, "No profile found for the given identifier.")),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/1/profiles.json": _query_operation("profiles", PROFILE_RECORD),
            "/1/events.json": _query_operation("events", EVENT_RECORD),
            "/1/counts/profiles.json": _count_operation("profiles"),
            "/1/counts/events.json": _count_operation("events"),
            "/1/delete/profiles.json": {
                "post": {
                    "summary": "Delete profiles (GDPR erase)",
                    "description": (
                        f'`{{"identity": "u1"}}`, `{{"identity": ["u1", "u2"]}}` or `{{"guid": '
                        f"…}}` (a device id or ct_id), at most {MAX_DELETE_VALUES} values. "
                        "Deletes each person with their events, history and linked anonymous "
                        "profiles. Values with no profile come back in `unprocessed` (code 404)."
                    ),
                    "parameters": AUTH_HEADERS,
                    "requestBody": _json(
                        {"identity": ["u1", "u2"]},
                        "Who to delete",
                        {
                            "type": "object",
                            "properties": {
                                key: {"oneOf": [_TEXT, _list_of(_TEXT, MAX_DELETE_VALUES)]}
                                for key in ("identity", "guid")
                            },
                            "minProperties": 1,
                        },
                    ),
                    "responses": {"200": _json(BATCH_RESULT), **COMMON_ERRORS},
                }
            },
            "/1/subscribe": {
                "post": {
                    "summary": "Unsubscribe or resubscribe an email or phone",
                    "description": (
                        '`{"type": "email"|"phone", "value": "…", "status": "Unsubscribe"|'
                        f'"Resubscribe"}}`, or `{{"d": [entry, …]}}` with at most '
                        f"{MAX_SUBSCRIBE_ENTRIES} entries. Sets MSG-email (email) or MSG-sms "
                        "(phone) to false (Unsubscribe) or true (Resubscribe) on every profile "
                        "holding the value; the change is recorded in each profile's history "
                        "with the credential's name. An entry no profile holds comes back in "
                        "`unprocessed` (code 404); a bad email/phone with 515/516."
                    ),
                    "parameters": AUTH_HEADERS,
                    "requestBody": _json(
                        {"type": "email", "value": "ann@example.com", "status": "Unsubscribe"},
                        "One entry or a batch",
                        _entries(
                            {
                                **CONTACT_ENTRY,
                                "required": ["type", "value", "status"],
                                "properties": {
                                    **CONTACT_ENTRY["properties"],
                                    "status": {
                                        "type": "string",
                                        "enum": ["Unsubscribe", "Resubscribe"],
                                    },
                                },
                            },
                            MAX_SUBSCRIBE_ENTRIES,
                        ),
                    ),
                    "responses": {"200": _json(BATCH_RESULT), **COMMON_ERRORS},
                }
            },
            "/1/disassociate": {
                "post": {
                    "summary": "Detach a phone number from its profile",
                    "description": (
                        '`{"type": "phone", "value": "+14155551234"}` (or `{"d": [entry, …]}`): '
                        "removes the phone identifier and the Phone property from the profile "
                        "holding it; the profile stays (anonymous if that was its only "
                        "identifier)."
                    ),
                    "parameters": AUTH_HEADERS,
                    "requestBody": _json(
                        {"type": "phone", "value": "+14155551234"},
                        "One entry or a batch",
                        _entries(CONTACT_ENTRY, MAX_SUBSCRIBE_ENTRIES),
                    ),
                    "responses": {"200": _json(BATCH_RESULT), **COMMON_ERRORS},
                }
            },
        },
        "x-record-error-codes": {str(code): text for code, text in ERROR_CODES},
        "x-reserved-event-names": sorted(RESERVED_EVENT_NAMES),
    }


def _with_code_spans(text: str) -> str:
    """Markdown's `code` spans as <code>, everything else escaped."""
    parts = escape(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick stays as it was
        return mark_safe("`".join(parts))  # escaped above
    return mark_safe(  # every part escaped above
        "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))
    )


def _shell_quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _curl_example(method: str, path: str, operation: dict[str, Any]) -> str:
    """A copy-paste call; ACCOUNT_ID and PASSCODE come from Settings → API credentials."""
    lines = [
        f'curl -X {method.upper()} "$BASE_URL{path}"',
        '  -H "X-CleverTap-Account-Id: $ACCOUNT_ID"',
        '  -H "X-CleverTap-Passcode: $PASSCODE"',
    ]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        lines.append('  -H "Content-Type: application/json"')
        lines.append("  -d " + _shell_quoted(json.dumps(body["example"], ensure_ascii=False)))
    else:
        lines[0] = f'curl -G "$BASE_URL{path}"'
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and "example" in parameter:
                pair = f"{parameter['name']}={parameter['example']}"
                lines.append("  --data-urlencode " + _shell_quoted(pair))
    return " \\\n".join(lines)


def docs_context() -> dict[str, Any]:
    """The schema laid out for templates/api/docs.html (no JavaScript needed)."""
    schema = openapi_schema()
    operations = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            operations.append(
                {
                    "anchor": f"{method}-{path.strip('/').replace('/', '-').replace('.', '-')}",
                    "method": method.upper(),
                    "path": path,
                    "summary": operation["summary"],
                    "description": _with_code_spans(operation["description"]),
                    "curl": _curl_example(method, path, operation),
                    "parameters": [
                        p for p in operation.get("parameters", []) if p["in"] != "header"
                    ],
                    "body_example": json.dumps(body["example"], indent=2) if body else "",
                    "responses": [
                        {
                            "status": status,
                            "description": response.get("description", ""),
                            "example": json.dumps(
                                response["content"]["application/json"]["example"], indent=2
                            ),
                        }
                        for status, response in operation["responses"].items()
                    ],
                }
            )
    return {
        "info": {**schema["info"], "description": _with_code_spans(schema["info"]["description"])},
        "operations": operations,
        "error_codes": ERROR_CODES,
        "http_errors": HTTP_ERRORS,
        "reserved_event_names": sorted(RESERVED_EVENT_NAMES),
    }
