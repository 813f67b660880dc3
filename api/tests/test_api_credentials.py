"""Settings → API credentials (three people), the credential services and the command."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from api.credentials import (
    api_credential_authenticate,
    api_credential_create,
    api_usage_record,
)
from profiles.models import ApiCredential

pytestmark = pytest.mark.django_db
LIST = "/settings/api-credentials/"
NEW = "/settings/api-credentials/new/"


def revoke_url(credential: ApiCredential) -> str:
    return f"/settings/api-credentials/{credential.account_id}/revoke/"


def api_status(account_id: str, passcode: str) -> int:
    return (
        Client()
        .post(
            "/1/upload",
            json.dumps({"d": []}),
            content_type="application/json",
            HTTP_X_CLEVERTAP_ACCOUNT_ID=account_id,
            HTTP_X_CLEVERTAP_PASSCODE=passcode,
        )
        .status_code
    )


def test_passcodes_are_stored_hashed_and_checked(admin_user):
    credential, passcode = api_credential_create(name="Backend", created_by=admin_user)
    assert passcode not in credential.passcode_hash
    assert credential.passcode_hash.startswith("pbkdf2_sha256$")
    assert re.fullmatch(r"[A-Z0-9]{3}-[A-Z0-9]{3}-[A-Z0-9]{4}", credential.account_id)
    found = api_credential_authenticate(account_id=credential.account_id, passcode=passcode)
    assert found == credential
    assert api_credential_authenticate(account_id=credential.account_id, passcode="x") is None
    assert api_credential_authenticate(account_id=None, passcode=passcode) is None


def test_list_shows_credentials_and_usage_to_admins(admin_client_, admin_user,
                                                    django_assert_num_queries):  # fmt: skip
    used, _ = api_credential_create(name="Mobile <backend>", created_by=admin_user)
    api_credential_create(name="Warehouse")
    api_usage_record(credential_id=used.pk, endpoint="upload", status_code=200)
    api_usage_record(credential_id=used.pk, endpoint="upload", status_code=200)
    api_usage_record(credential_id=used.pk, endpoint="upload", status_code=400)
    # session, user, permissions (user + groups), credentials, usage
    with django_assert_num_queries(6):
        response = admin_client_.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Mobile &lt;backend&gt;" in html and "<backend>" not in html
    assert used.account_id in html and "Warehouse" in html and "never" in html
    assert "by admin" in html and "by command line" in html
    usage = html.split('id="usage"')[1]
    assert re.search(r"<code>upload</code></td>\s*<td>2</td>\s*<td>1</td>\s*<td>0</td>", usage)


def test_people_without_the_permission_get_403_and_anonymous_go_to_login(
    marketer_client, anonymous_client
):
    credential, _ = api_credential_create(name="x")
    for url in (LIST, NEW, revoke_url(credential)):
        assert marketer_client.get(url).status_code == 403
        response = anonymous_client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert marketer_client.post(NEW, {"name": "sneaky"}).status_code == 403
    assert marketer_client.post(revoke_url(credential)).status_code == 403
    assert ApiCredential.objects.count() == 1
    credential.refresh_from_db()
    assert credential.revoked_at is None


def test_create_shows_the_passcode_once_and_it_works(admin_client_, admin_user):
    assert "Name" in admin_client_.get(NEW).content.decode()
    response = admin_client_.post(NEW, {"name": "Mobile backend"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    passcode = re.search(r'id="passcode">([^<]+)<', html).group(1)
    credential = ApiCredential.objects.get()
    assert credential.created_by == admin_user and credential.name == "Mobile backend"
    assert credential.account_id in html and "shown only once" in html
    assert api_status(credential.account_id, passcode) == 200
    listing = admin_client_.get(LIST).content.decode()
    assert passcode not in listing


def test_create_needs_a_name(admin_client_):
    response = admin_client_.post(NEW, {"name": ""})
    assert response.status_code == 200 and "required" in response.content.decode()
    assert not ApiCredential.objects.exists()


def test_revoke_is_confirmed_then_refuses_the_api(admin_client_):
    credential, passcode = api_credential_create(name="Old")
    assert api_status(credential.account_id, passcode) == 200
    confirm = admin_client_.get(revoke_url(credential))
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    credential.refresh_from_db()
    assert credential.revoked_at is None  # a GET changes nothing
    response = admin_client_.post(revoke_url(credential), follow=True)
    assert "Revoked" in response.content.decode()
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert api_status(credential.account_id, passcode) == 401


def test_superuser_can_manage_credentials(superuser):
    client = Client()
    client.force_login(superuser)
    assert client.get(LIST).status_code == 200
    assert client.post(NEW, {"name": "root's"}).status_code == 200


def test_command_create_list_revoke():
    out = StringIO()
    call_command("api_credentials", "create", "--name", "CLI", stdout=out)
    match = re.fullmatch(r"account_id=(\S+) passcode=(\S+)\n", out.getvalue())
    assert match, out.getvalue()
    account_id, passcode = match.groups()
    assert api_status(account_id, passcode) == 200
    listing = StringIO()
    call_command("api_credentials", "list", stdout=listing)
    assert account_id in listing.getvalue() and "CLI" in listing.getvalue()
    assert passcode not in listing.getvalue()
    call_command("api_credentials", "revoke", "--account-id", account_id, stdout=StringIO())
    assert api_status(account_id, passcode) == 401
    with pytest.raises(CommandError, match="No credential"):
        call_command("api_credentials", "revoke", "--account-id", "NOPE")
