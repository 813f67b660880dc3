"""Schemathesis generates calls from /api/openapi.json and sends them to a live server:
no answer may be a 5xx, and every answer must be one the schema describes.

Bounded (a few examples per operation) so that it runs in well under two minutes.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import content_type_conformance

from api.credentials import api_credential_create

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def credential_headers(live_server, settings) -> dict[str, str]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    credential, passcode = api_credential_create(name="fuzz")
    return {"X-CleverTap-Account-Id": credential.account_id, "X-CleverTap-Passcode": passcode}


def test_generated_calls_get_no_server_error_and_conform(live_server, credential_headers):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every /1/ route is described
    statuses: set[int] = set()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case):
            case.headers = {**(case.headers or {}), **credential_headers}
            response = case.call_and_validate(base_url=live_server.url, checks=CHECKS)
            statuses.add(response.status_code)

        call()
    assert 200 in statuses  # the schemas let the fuzzer build calls the server accepts
