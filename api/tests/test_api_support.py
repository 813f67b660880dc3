"""Helpers for the REST API tests (no tests here): a client speaking CleverTap's headers."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from api.credentials import api_credential_create


class ApiClient:
    def __init__(self, name: str = "tests") -> None:
        self.credential, self.passcode = api_credential_create(name=name)
        self.client = Client(
            HTTP_X_CLEVERTAP_ACCOUNT_ID=self.credential.account_id,
            HTTP_X_CLEVERTAP_PASSCODE=self.passcode,
        )

    def post(self, path: str, body: Any = None, raw: str | bytes | None = None, **extra):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data, content_type="application/json", **extra)

    def get(self, path: str, params: dict | None = None, **extra):
        return self.client.get(path, params or {}, **extra)

    def upload(self, *records: dict) -> dict:
        response = self.post("/1/upload", {"d": list(records)})
        assert response.status_code == 200, response.content
        return response.json()
