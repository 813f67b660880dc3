"""deliver_many against real servers on loopback: SMTP, a Twilio-shaped and an FCM-shaped API."""

import pytest

from campaigns.delivery import OutgoingMessage, deliver_many, providers
from campaigns.tests.servers import http_provider_server, smtp_server


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    # The retry schedule is under test, not its length.
    monkeypatch.setattr(providers, "BACKOFF_SECONDS", 0.01)


@pytest.fixture(autouse=True)
def real_smtp_backend(settings):
    # pytest-django swaps in the in-memory backend; these tests talk to a real server.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _message(channel, to, **extra):
    fields = {"subject": "", "body": "Hello there", "html": None, "reference": f"run-1-{to}"}
    fields.update(extra)
    return OutgoingMessage(channel=channel, to=to, **fields)


def test_emails_arrive_with_subject_body_html_and_from(settings):
    with smtp_server() as (port, received):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.DEFAULT_FROM_EMAIL = "news@example.com"
        results = deliver_many(
            [
                _message("email", "ann@example.com", subject="Spring sale", html="<b>20% off</b>"),
                _message("email", "bob@example.com", subject="Plain only", body="Just text"),
            ]
        )
    assert [r.accepted for r in results] == [True, True]
    assert all(r.provider_id for r in results)
    first, second = received
    assert first.rcpt_tos == ["ann@example.com"]
    assert first.message["From"] == "news@example.com"
    assert first.message["Subject"] == "Spring sale"
    assert first.message.get_body(("plain",)).get_content().strip() == "Hello there"
    assert first.message.get_body(("html",)).get_content().strip() == "<b>20% off</b>"
    assert first.message["X-Message-Reference"] == "run-1-ann@example.com"
    assert second.message.get_body(("html",)) is None  # no HTML part when none was given
    assert second.message.get_content().strip() == "Just text"


def test_a_big_batch_goes_out_over_a_few_reused_connections_each_mail_once(settings):
    settings.CAMPAIGN_SMTP_CONNECTIONS = 3
    addresses = [f"p{n}@example.com" for n in range(120)]
    with smtp_server() as (port, received):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        results = deliver_many([_message("email", to, subject=to) for to in addresses])
    assert all(r.accepted for r in results)
    # Results stay in the order of the messages, whichever connection sent them.
    assert [r.provider_id for r in results] == [
        next(m.message["Message-ID"] for m in received if m.rcpt_tos == [to]) for to in addresses
    ]
    assert sorted(m.rcpt_tos[0] for m in received) == sorted(addresses)
    assert len({m.peer for m in received}) == 3


def test_unreachable_mail_server_is_reported_transient(settings):
    from campaigns.delivery.sink import _free_port

    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()  # nobody listens
    [result] = deliver_many([_message("email", "ann@example.com", subject="Hi")])
    assert not result.accepted and result.transient
    assert "unreachable" in result.error


@pytest.fixture
def twilio(settings):
    def configure(server):
        settings.TWILIO_BASE_URL = server.base_url
        settings.TWILIO_ACCOUNT_SID = "AC123"
        settings.TWILIO_AUTH_TOKEN = "secret-token"
        settings.TWILIO_SMS_FROM = "+15550000001"
        settings.TWILIO_WHATSAPP_FROM = "+15550000002"

    return configure


def test_sms_and_whatsapp_use_twilio_messages_shape(twilio):
    replies = [(201, {"sid": "SM1"}), (201, {"sid": "SM2"})]
    with http_provider_server(replies) as server:
        twilio(server)
        results = deliver_many(
            [_message("sms", "+4915112345678"), _message("whatsapp", "+4915187654321")]
        )
    assert [(r.accepted, r.provider_id) for r in results] == [(True, "SM1"), (True, "SM2")]
    sms, whatsapp = server.requests
    assert sms.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert sms.basic_auth() == ("AC123", "secret-token")
    assert sms.form() == {"To": "+4915112345678", "From": "+15550000001", "Body": "Hello there"}
    assert whatsapp.form()["To"] == "whatsapp:+4915187654321"
    assert whatsapp.form()["From"] == "whatsapp:+15550000002"


def test_refused_sms_is_not_retried(twilio):
    with http_provider_server([(400, {"message": "invalid To number"})]) as server:
        twilio(server)
        [result] = deliver_many([_message("sms", "+1")])
    assert not result.accepted and not result.transient
    assert "400" in result.error and "invalid To number" in result.error
    assert len(server.requests) == 1


def test_transient_failure_is_retried_until_accepted(twilio):
    replies = [(503, {}), (500, {}), (201, {"sid": "SM9"})]
    with http_provider_server(replies) as server:
        twilio(server)
        [result] = deliver_many([_message("sms", "+4915112345678")])
    assert result.accepted and result.provider_id == "SM9"
    assert len(server.requests) == 3


def test_transient_failure_gives_up_after_bounded_attempts(twilio):
    with http_provider_server([(503, {})] * 10) as server:
        twilio(server)
        [result] = deliver_many([_message("sms", "+4915112345678")])
    assert not result.accepted and result.transient
    assert len(server.requests) == providers.ATTEMPTS


def test_mobile_push_uses_fcm_v1_shape(settings):
    with http_provider_server([(200, {"name": "projects/demo/messages/42"})]) as server:
        settings.FCM_BASE_URL = server.base_url
        settings.FCM_PROJECT_ID = "demo"
        settings.FCM_ACCESS_TOKEN = "bearer-abc"
        [result] = deliver_many([_message("push", "device-token-1", subject="Title")])
    assert result.accepted and result.provider_id == "projects/demo/messages/42"
    [request] = server.requests
    assert request.path == "/v1/projects/demo/messages:send"
    assert request.headers["Authorization"] == "Bearer bearer-abc"
    assert request.json() == {
        "message": {
            "token": "device-token-1",
            "notification": {"title": "Title", "body": "Hello there"},
        }
    }


def test_unconfigured_provider_and_unknown_channel_are_refused(settings):
    settings.TWILIO_ACCOUNT_SID = ""
    results = deliver_many([_message("sms", "+1"), _message("fax", "+1")])
    assert [r.accepted for r in results] == [False, False]
    assert "not configured" in results[0].error
    assert "not supported" in results[1].error
