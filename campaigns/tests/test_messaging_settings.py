"""Settings → Messaging: Admins only, secrets write-only and encrypted, and delivery
using the saved settings over the environment's."""

import pytest
from django.test import Client

from campaigns.delivery import OutgoingMessage, deliver_many
from campaigns.delivery.models import MessagingSettings
from campaigns.tests.servers import http_provider_server
from config.secrets import secret_decrypt

pytestmark = pytest.mark.django_db
URL = "/settings/messaging/"
FIELDS = {"twilio_base_url": "", "twilio_account_sid": "", "twilio_sms_from": "",
          "twilio_whatsapp_from": "", "fcm_base_url": "", "fcm_project_id": "",
          "webpush_subject": "", "twilio_auth_token": "", "fcm_access_token": ""}  # fmt: skip


def save(client, **values):
    return client.post(URL, {**FIELDS, **values})


class TestWhoMayOpenIt:
    def test_admin_sees_every_provider_and_email_read_only(self, admin_client_, settings):
        settings.EMAIL_HOST, settings.EMAIL_HOST_PASSWORD = "mail.example.com", "hunter2"
        response = admin_client_.get(URL)
        page = response.content.decode()
        assert response.status_code == 200
        for heading in ("SMS and WhatsApp", "Mobile push", "Web push", "Email"):
            assert heading in page
        assert "mail.example.com" in page and "cannot be changed here" in page
        assert "hunter2" not in page
        assert 'href="/settings/messaging/"' in page  # in the Settings navigation

    def test_superuser_may_open_it(self, superuser):
        client = Client()
        client.force_login(superuser)
        assert client.get(URL).status_code == 200

    @pytest.mark.parametrize("fixture", ["marketer_client", "importer_client", "outsider_client"])
    def test_others_are_refused_and_change_nothing(self, request, fixture):
        client = request.getfixturevalue(fixture)
        assert client.get(URL).status_code == 403
        assert save(client, twilio_account_sid="AC1", twilio_auth_token="t").status_code == 403
        assert client.post(f"{URL}vapid/").status_code == 403
        assert not MessagingSettings.objects.exists()

    def test_anonymous_goes_to_login(self, anonymous_client):
        for response in (anonymous_client.get(URL), save(anonymous_client, twilio_account_sid="A")):
            assert response.status_code == 302
            assert response["Location"].startswith("/accounts/login/")
        assert not MessagingSettings.objects.exists()

    def test_a_post_without_csrf_token_is_refused(self, admin_user):
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        assert save(client, twilio_account_sid="AC1").status_code == 403
        assert not MessagingSettings.objects.exists()


class TestSecrets:
    def test_a_saved_token_is_encrypted_and_never_shown_back(self, admin_client_):
        response = save(admin_client_, twilio_account_sid="AC9", twilio_auth_token="s3cret-tok",
                        fcm_project_id="demo", fcm_access_token="ya29.bearer")  # fmt: skip
        assert response.status_code == 302
        row = MessagingSettings.objects.get()
        assert "s3cret-tok" not in row.twilio_auth_token_encrypted
        assert secret_decrypt(row.twilio_auth_token_encrypted) == "s3cret-tok"
        assert secret_decrypt(row.fcm_access_token_encrypted) == "ya29.bearer"
        page = admin_client_.get(URL).content.decode()
        assert "s3cret-tok" not in page and "ya29.bearer" not in page
        assert page.count("set (saved here)") == 2

    def test_an_empty_field_keeps_the_token_and_the_box_removes_it(self, admin_client_):
        save(admin_client_, twilio_account_sid="AC9", twilio_auth_token="first")
        save(admin_client_, twilio_account_sid="AC10")
        row = MessagingSettings.objects.get()
        assert row.twilio_account_sid == "AC10"
        assert secret_decrypt(row.twilio_auth_token_encrypted) == "first"
        save(admin_client_, twilio_account_sid="AC10", twilio_auth_token_clear="on")
        assert MessagingSettings.objects.get().twilio_auth_token_encrypted == ""
        assert "not set" in admin_client_.get(URL).content.decode()

    def test_bad_values_are_refused_with_the_reason_and_nothing_is_saved(self, admin_client_):
        response = save(admin_client_, webpush_subject="bob", twilio_base_url="not a url",
                        twilio_auth_token="kept-out")  # fmt: skip
        page = response.content.decode()
        assert response.status_code == 200
        assert "mailto:someone@example.com" in page and "Enter a valid URL" in page
        assert "Nothing was saved" in page and "kept-out" not in page
        assert not MessagingSettings.objects.exists()

    def test_vapid_public_key_is_shown_once_generated(self, admin_client_):
        assert "not generated yet" in admin_client_.get(URL).content.decode()
        assert admin_client_.post(f"{URL}vapid/").status_code == 302
        key = MessagingSettings.objects.get().webpush_vapid_public_key
        assert len(key) == 87  # a base64url P-256 point
        page = admin_client_.get(URL).content.decode()
        assert key in page and "Generate web push keys" not in page
        save(admin_client_, webpush_subject="mailto:ops@example.com")
        assert MessagingSettings.objects.get().webpush_vapid_public_key == key  # kept


def test_delivery_uses_the_saved_settings_over_the_environment(admin_client_, settings):
    with (
        http_provider_server([(201, {"sid": "ENV"})]) as environment,
        http_provider_server([(201, {"sid": "SAVED"})]) as dashboard,
    ):
        settings.TWILIO_BASE_URL, settings.TWILIO_ACCOUNT_SID = environment.base_url, "ACenv"
        settings.TWILIO_AUTH_TOKEN, settings.TWILIO_SMS_FROM = "env-token", "+15550000001"
        message = OutgoingMessage(channel="sms", to="+4915112345678", subject="", body="Hi",
                                  html=None, reference="run-1-profile-1")  # fmt: skip
        [before] = deliver_many([message])
        save(admin_client_, twilio_base_url=dashboard.base_url, twilio_account_sid="ACsaved",
             twilio_auth_token="saved-token")  # fmt: skip
        [after] = deliver_many([message])
    assert (before.provider_id, after.provider_id) == ("ENV", "SAVED")
    [request] = dashboard.requests
    assert request.path == "/2010-04-01/Accounts/ACsaved/Messages.json"
    assert request.basic_auth() == ("ACsaved", "saved-token")
    assert request.form()["From"] == "+15550000001"  # blank here: the environment's sender
