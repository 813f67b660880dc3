"""Delivered/failed on the profile timeline: Twilio's signed status callback, and the
failures FCM and web push report when sending. Recorded through the ingest path."""

import pytest

from campaigns import selectors, services
from campaigns.delivery import providers
from campaigns.delivery.twilio import twilio_signature
from campaigns.models import AudienceKind, Campaign, Channel, Delivery, Outcome, RunKind
from campaigns.tests.servers import http_provider_server, push_service
from profiles.models import Event, Source
from profiles.tests.factories import DeviceFactory, IdentifierFactory, ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db
BASE = "http://testserver"
TOKEN = "auth-token-1"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(providers, "BACKOFF_SECONDS", 0.01)


def send_now(channel: str):
    segment = Segment.objects.create(name=f"all {Segment.objects.count()}", definition={"all": []})
    campaign = Campaign.objects.create(name=f"c {Campaign.objects.count()}", channel=channel,
                                       audience_kind=AudienceKind.SEGMENT, segment=segment,
                                       subject="Hi", body="Hello {{ Profile.Name }}")  # fmt: skip
    run = campaign.runs.create(kind=RunKind.SEND)
    return services.run_execute(run.pk)


def timeline(profile, name):
    return list(Event.objects.filter(profile=profile, name=name))


@pytest.fixture
def sms_sent(settings):
    """One SMS accepted by a Twilio-shaped server; yields (delivery, the callback URL)."""
    settings.CAMPAIGN_CALLBACK_BASE_URL = BASE
    ann = ProfileFactory(name="Ann", phone="+4915112345678")
    IdentifierFactory(profile=ann, value="ann-1")
    with http_provider_server([(201, {"sid": "SM1"})]) as server:
        settings.TWILIO_BASE_URL, settings.TWILIO_ACCOUNT_SID = server.base_url, "AC1"
        settings.TWILIO_AUTH_TOKEN, settings.TWILIO_SMS_FROM = TOKEN, "+15550000001"
        run = send_now(Channel.SMS)
    [request] = server.requests
    delivery = Delivery.objects.get(run=run)
    assert delivery.outcome == Outcome.SENT
    return delivery, request.form()["StatusCallback"]


def report(client, url, status, *, token=TOKEN, sid="SM1", **extra):
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1",
              "To": "+4915112345678", **extra}  # fmt: skip
    signature = twilio_signature(url=url, params=params.items(), auth_token=token)
    return client.post(url.removeprefix(BASE), params, headers={"X-Twilio-Signature": signature})


def test_delivered_report_lands_on_the_timeline_once(sms_sent, client):
    delivery, url = sms_sent
    assert url == f"{BASE}/campaigns/delivery/twilio/{delivery.pk}/status/"
    assert [e.source for e in timeline(delivery.profile, "Notification Sent")] == [Source.SYSTEM]
    assert report(client, url, "delivered").status_code == 204
    assert report(client, url, "delivered").status_code == 204  # Twilio retries a report
    [event] = timeline(delivery.profile, "Notification Delivered")
    assert event.source == Source.SYSTEM and event.properties["Channel"] == "SMS"
    # A late "sent" does not move the delivery back.
    assert report(client, url, "sent").status_code == 204
    delivery.refresh_from_db()
    assert delivery.provider_status == "delivered" and delivery.outcome == Outcome.SENT
    [_, row] = selectors.report_rows(delivery.run.campaign)
    assert row[4] == "Sent" and row[8] == "delivered"


def test_undelivered_report_is_notification_failed_with_the_code(sms_sent, client):
    delivery, url = sms_sent
    assert report(client, url, "undelivered", ErrorCode="30003").status_code == 204
    [event] = timeline(delivery.profile, "Notification Failed")
    assert event.properties["Reason"] == "provider reported undelivered (error 30003)"


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_report_not_signed_with_our_token_is_refused(sms_sent, client, token):
    delivery, url = sms_sent
    response = report(client, url, "delivered", token=token or "x")
    if not token:  # no signature header at all
        response = client.post(url.removeprefix(BASE), {"MessageSid": "SM1",
                                                        "MessageStatus": "delivered"})  # fmt: skip
    assert response.status_code == 403
    assert timeline(delivery.profile, "Notification Delivered") == []
    delivery.refresh_from_db()
    assert delivery.provider_status == ""


def test_a_signed_report_about_another_message_or_status_is_a_bad_request(sms_sent, client):
    delivery, url = sms_sent
    assert report(client, url, "delivered", sid="SM-other").status_code == 400
    assert report(client, url, "exploded").status_code == 400
    assert client.get(url.removeprefix(BASE)).status_code == 405
    assert timeline(delivery.profile, "Notification Delivered") == []


def test_no_callback_is_asked_for_without_a_public_address(settings):
    settings.CAMPAIGN_CALLBACK_BASE_URL = ""
    IdentifierFactory(profile=ProfileFactory(phone="+4915112345678"))
    with http_provider_server([(201, {"sid": "SM1"})]) as server:
        settings.TWILIO_BASE_URL, settings.TWILIO_ACCOUNT_SID = server.base_url, "AC1"
        send_now(Channel.SMS)
    assert "StatusCallback" not in server.requests[0].form()


def test_fcm_refusal_after_retries_is_notification_failed(settings):
    ann = ProfileFactory(name="Ann")
    IdentifierFactory(profile=ann)
    DeviceFactory(profile=ann, push_token="fcm-1", push_enabled=True)
    with http_provider_server([(503, {})] * 5) as server:
        settings.FCM_BASE_URL, settings.FCM_PROJECT_ID = server.base_url, "demo"
        run = send_now(Channel.PUSH)
    assert Delivery.objects.get(run=run).outcome == Outcome.FAILED
    [event] = timeline(ann, "Notification Failed")
    assert "HTTP 503" in event.properties["Reason"] and event.properties["Channel"] == "Mobile push"
    assert timeline(ann, "Notification Sent") == []


def test_a_gone_web_push_subscription_is_notification_failed():
    with push_service() as push:
        ann = ProfileFactory(name="Ann")
        DeviceFactory(profile=ann, platform="Web", push_enabled=True,
                      push_token=push.subscribe("ann").subscription_json())  # fmt: skip
        push.statuses["/push/ann"] = 410
        send_now(Channel.WEBPUSH)
    [event] = timeline(ann, "Notification Failed")  # named by its browser's objectId
    assert "subscription gone (HTTP 410)" in event.properties["Reason"]
