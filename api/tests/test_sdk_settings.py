"""Settings → SDK (three people): account ids, snippet, allowed origins, last traffic."""

from __future__ import annotations

import pytest

from api.credentials import api_credential_create
from api.models import SdkSettings
from api.sdk_services import sdk_settings_update

pytestmark = pytest.mark.django_db
PAGE = "/settings/sdk/"


def origins_url(account_id: str) -> str:
    return f"/settings/sdk/{account_id}/origins/"


def test_admins_see_account_snippet_and_that_any_origin_is_accepted(admin_client_):
    credential, _ = api_credential_create(name="Shop <site>")
    response = admin_client_.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert credential.account_id in html and "Shop &lt;site&gt;" in html
    assert f'clevertap.init("{credential.account_id}", "", "testserver")' in html
    assert "Any origin may send" in html and "never" in html


def test_admins_save_origins_and_bad_ones_change_nothing(admin_client_):
    credential, _ = api_credential_create(name="Shop")
    url = origins_url(credential.account_id)
    response = admin_client_.post(
        url, {"origins": "https://Shop.example:443/path\nhttp://a.test:8000"}
    )
    assert response.status_code == 302
    assert SdkSettings.objects.get().allowed_origins == [
        "http://a.test:8000",
        "https://shop.example",
    ]
    response = admin_client_.post(url, {"origins": "javascript:alert(1)"}, follow=True)
    assert "Not an http(s) origin" in response.content.decode()
    assert SdkSettings.objects.get().allowed_origins == [
        "http://a.test:8000",
        "https://shop.example",
    ]
    assert "https://shop.example" in admin_client_.get(PAGE).content.decode()


def test_people_without_the_permission_get_403_and_anonymous_go_to_login(
    marketer_client, anonymous_client
):
    credential, _ = api_credential_create(name="Shop")
    sdk_settings_update(credential=credential, origins=["https://shop.example"])
    url = origins_url(credential.account_id)
    assert marketer_client.get(PAGE).status_code == 403
    assert marketer_client.post(url, {"origins": ""}).status_code == 403
    for response in (anonymous_client.get(PAGE), anonymous_client.post(url, {"origins": ""})):
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert SdkSettings.objects.get().allowed_origins == ["https://shop.example"]


def test_the_page_says_whether_web_push_is_on(admin_client_):
    from campaigns.delivery.services import vapid_keys_ensure

    html = admin_client_.get(PAGE).content.decode()
    assert "Off: there is no web push key yet" in html and "/settings/messaging/" in html
    assert "clevertap.notifications.push" not in html
    vapid_keys_ensure()
    html = admin_client_.get(PAGE).content.decode()
    assert "On: every reply gives the SDK" in html
    assert "clevertap.notifications.push({skipDialog: true});" in html
    assert "Off:" not in html
