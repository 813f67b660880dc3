"""Guessing passcodes is throttled per account id and per client address, and an unknown
account id costs the same hash work as a wrong passcode (no timing oracle)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from api import credentials
from api.tests.test_api_support import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api: ApiClient) -> ApiClient:
    """The shared client, with the unknown-account hash made for this test's hasher."""
    credentials._unknown_account_hash.cache_clear()
    return api


def _upload(account_id: str, passcode: str, address: str = "198.51.100.7"):
    return Client().post(
        "/1/upload",
        json.dumps({"d": []}),
        content_type="application/json",
        HTTP_X_CLEVERTAP_ACCOUNT_ID=account_id,
        HTTP_X_CLEVERTAP_PASSCODE=passcode,
        REMOTE_ADDR=address,
    )


def test_wrong_passcode_and_unknown_account_get_the_same_answer(api):
    wrong = _upload(api.credential.account_id, "wrong")
    unknown = _upload("NOP-NOP-0000", "wrong")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {
        "status": "fail", "error": "Account ID or passcode is not valid", "code": 401,
    }  # fmt: skip


def test_an_account_id_is_locked_after_repeated_wrong_passcodes(api, settings):
    settings.API_AUTH_FAILURES_PER_ACCOUNT = 3
    for attempt in range(3):
        assert _upload(api.credential.account_id, f"guess-{attempt}").status_code == 401
    locked = _upload(api.credential.account_id, api.passcode)  # even the right one, for now
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert "Too many failed authentications" in locked.json()["error"]
    # Another account is not affected by this one's guesses.
    other = ApiClient(name="other")
    assert _upload(other.credential.account_id, other.passcode).status_code == 200


def test_a_client_address_is_locked_after_guessing_many_account_ids(api, settings):
    settings.API_AUTH_FAILURES_PER_ADDRESS = 5
    for attempt in range(5):
        assert _upload(f"NOP-NOP-{attempt:04}", "x", address="203.0.113.9").status_code == 401
    assert (
        _upload(api.credential.account_id, api.passcode, address="203.0.113.9").status_code == 429
    )
    assert (
        _upload(api.credential.account_id, api.passcode, address="203.0.113.10").status_code == 200
    )


def test_unknown_and_revoked_account_ids_cost_the_same_hash_work(api, monkeypatch):
    checked: list[str] = []
    real_check = credentials.check_password

    def counting_check(password: str, encoded: str, *args, **kwargs) -> bool:
        checked.append(encoded)
        return real_check(password, encoded, *args, **kwargs)

    monkeypatch.setattr(credentials, "check_password", counting_check)
    _upload("NOP-NOP-0000", "guess")
    assert checked == [credentials._unknown_account_hash()]
    credentials.api_credential_revoke(credential=api.credential)
    _upload(api.credential.account_id, "guess")
    assert len(checked) == 2


def test_api_answers_are_never_cached(api):
    assert api.post("/1/upload", {"d": []})["Cache-Control"] == "no-store"
    assert _upload("NOP-NOP-0000", "x")["Cache-Control"] == "no-store"
    assert api.get("/1/profile.json", {"identity": "nobody"})["Cache-Control"] == "no-store"
