"""Input that JSON allows but nothing can store — lone surrogates, NUL, numbers beyond any
range, NaN — is refused with a clear 400 (or, in an upload, a per-record refusal that
keeps the good records). Never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from profiles.models import Profile
from segments.models import Segment

pytestmark = pytest.mark.django_db

SURROGATE = '"\\ud800"'
HUGE_INTEGER = "9" * 5000
ODD_VALUES = {
    "lone surrogate": (SURROGATE, "lone surrogate"),
    "5,000-digit integer": (HUGE_INTEGER, "out of range"),
    "float overflowing to infinity": ("1e400", "out of range"),
    "NaN": ("NaN", "out of range"),
}


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
def test_upload_refuses_only_the_record_holding_the_value(api, odd):
    value, reason = odd
    body = (
        '{"d": ['
        '{"type": "profile", "identity": "good-1", "profileData": {"Name": "Ann"}},'
        f'{{"type": "profile", "identity": "bad", "profileData": {{"Note": {value}}}}},'
        '{"type": "event", "identity": "good-2", "evtName": "Opened", "evtData": {}}'
        "]}"
    )
    response = api.post("/1/upload", raw=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "partial" and answer["processed"] == 2
    [refusal] = answer["unprocessed"]
    assert reason in refusal["error"] and refusal["error"].endswith("Skipped record number : 2")
    assert sorted(Profile.objects.values_list("name", flat=True)) == ["", "Ann"]


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize(
    "path, template",
    [
        ("/1/delete/profiles.json", '{{"identity": {value}}}'),
        ("/1/counts/profiles.json", '{{"event_name": "App Launched", "from": {value}}}'),
        ("/1/counts/events.json", '{{"event_name": {value}, "from": 20240101, "to": 20240102}}'),
        ("/1/profiles.json", '{{"event_name": {value}, "from": 20240101, "to": 20240102}}'),
        ("/1/events.json", '{{"event_name": {value}, "from": 20240101, "to": 20240102}}'),
        ("/1/subscribe", '[{{"type": "email", "value": {value}, "status": "Unsubscribe"}}]'),
    ],
)
def test_other_endpoints_refuse_the_call_with_a_clear_400(api, path, template, odd):
    value, reason = odd
    response = api.post(path, raw=template.format(value=value))
    assert response.status_code == 400
    assert response.json()["status"] == "fail" and reason in response.json()["error"]


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize("path", ["/1/profiles.json", "/1/events.json"])
def test_query_parameter_refuses_the_call_with_a_clear_400(api, path, odd):
    value, reason = odd
    query = f'{{"event_name": {value}, "from": 20240101, "to": 20240102}}'
    response = api.get(path, {"query": query})
    assert response.status_code == 400 and reason in response.json()["error"]


def test_surrogate_encoded_as_raw_bytes_is_not_valid_utf8(api):
    body = b'{"d": [{"type": "profile", "identity": "\xed\xa0\x80", "profileData": {}}]}'
    response = api.post("/1/upload", raw=body)
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]


@pytest.mark.parametrize("odd", ODD_VALUES.values(), ids=ODD_VALUES.keys())
@pytest.mark.parametrize("path, status", [("/segments/count/", 200), ("/segments/new/", 400)])
def test_segment_definition_with_odd_values_is_refused_on_the_page(
    marketer_client: Client, path, status, odd
):
    value, reason = odd
    definition = f'{{"property": "Name", "op": "equals", "value": {value}}}'
    response = marketer_client.post(path, {"name": "Odd", "definition": definition})
    assert response.status_code == status  # the live count answers 200 with its message
    assert reason in response.content.decode()
    assert not Segment.objects.filter(name="Odd").exists()
