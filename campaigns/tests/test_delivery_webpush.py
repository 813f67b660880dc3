"""Web push through pywebpush to a push service on loopback that decrypts each payload
(http_ece) with the test subscription's private key."""

import json

import pytest
from py_vapid import Vapid

from campaigns import services
from campaigns.delivery.models import MessagingSettings
from campaigns.delivery.services import vapid_keys_ensure
from campaigns.models import AudienceKind, Campaign, Channel, Delivery, Outcome, RunKind
from campaigns.tests.servers import push_service
from profiles.models import Device
from profiles.tests.factories import DeviceFactory, ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db


def webpush_campaign(**fields) -> Campaign:
    segment = Segment.objects.create(name=f"all {Segment.objects.count()}", definition={"all": []})
    fields.setdefault("subject", "Hi {{ Profile.Name }}")
    fields.setdefault("body", "Your {{ Profile.Plan | default: 'free' }} plan ✓ <b>")
    return Campaign.objects.create(name=f"web {Campaign.objects.count()}",
                                   channel=Channel.WEBPUSH, audience_kind=AudienceKind.SEGMENT,
                                   segment=segment, **fields)  # fmt: skip


def send_now(campaign: Campaign):
    run = campaign.runs.create(kind=RunKind.SEND)
    return services.run_execute(run.pk)


def web_device(profile, subscriber, **fields):
    fields.setdefault("push_enabled", True)
    return DeviceFactory(profile=profile, platform="Web",
                         push_token=subscriber.subscription_json(), **fields)  # fmt: skip


def test_each_browser_receives_its_personalised_encrypted_message():
    with push_service() as push:
        ann = ProfileFactory(name="Ann", custom={"Plan": "Gold"})
        bob = ProfileFactory(name="Bob")
        web_device(ann, push.subscribe("ann"))
        web_device(bob, push.subscribe("bob"))
        DeviceFactory(profile=ProfileFactory(name="Android only"), push_token="fcm-1",
                      push_enabled=True)  # fmt: skip
        run = send_now(webpush_campaign())
    assert push.errors == []
    payloads = {push.subscriber: push.payload for push in push.received}
    assert payloads["/push/ann"]["title"] == "Hi Ann"
    assert payloads["/push/ann"]["body"] == "Your Gold plan ✓ <b>"
    assert payloads["/push/bob"]["body"] == "Your free plan ✓ <b>"
    outcomes = dict(Delivery.objects.filter(run=run).values_list("profile__name", "outcome"))
    assert outcomes == {"Ann": Outcome.SENT, "Bob": Outcome.SENT,
                        "Android only": Outcome.PROFILE_NOT_REACHABLE}  # fmt: skip
    # The push service's message address (its Location header) is the provider id.
    assert Delivery.objects.get(run=run, profile=ann).provider_id.startswith(push.base_url)


def test_the_push_is_signed_with_the_stored_vapid_key():
    with push_service() as push:
        web_device(ProfileFactory(name="Ann"), push.subscribe("ann"))
        send_now(webpush_campaign())
    [received] = push.received
    authorization = received.headers["authorization"]
    public_key = MessagingSettings.objects.get().webpush_vapid_public_key
    assert authorization.endswith(f",k={public_key}")
    assert Vapid.verify(authorization)
    assert int(received.headers["ttl"]) > 0


def test_vapid_keys_are_generated_once_and_stored_encrypted():
    first = vapid_keys_ensure()
    assert first == vapid_keys_ensure()
    row = MessagingSettings.objects.get()
    assert row.webpush_vapid_public_key == first
    assert "PRIVATE KEY" not in row.webpush_vapid_private_key_encrypted
    assert row.webpush_vapid_private_key_encrypted.startswith("gAAAA")  # a Fernet token


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_fails_and_its_token_is_cleared(status):
    with push_service() as push:
        ann, bob = ProfileFactory(name="Ann"), ProfileFactory(name="Bob")
        gone = web_device(ann, push.subscribe("ann"))
        kept = web_device(bob, push.subscribe("bob"))
        push.statuses["/push/ann"] = status
        campaign = webpush_campaign()
        run = send_now(campaign)
        row = Delivery.objects.get(run=run, profile=ann)
        assert row.outcome == Outcome.FAILED
        assert f"subscription gone (HTTP {status})" in row.error
        gone.refresh_from_db()
        assert gone.push_token == "" and gone.push_enabled is True  # permission untouched
        kept.refresh_from_db()
        assert kept.push_token != ""
        # The next send no longer tries the dead subscription.
        again = send_now(Campaign.objects.get(pk=campaign.pk))
    assert Delivery.objects.get(run=again, profile=ann).outcome == Outcome.PROFILE_NOT_REACHABLE
    assert Delivery.objects.get(run=again, profile=bob).outcome == Outcome.SENT


def test_push_permission_off_is_profile_not_reachable():
    with push_service() as push:
        web_device(ProfileFactory(name="Ann"), push.subscribe("ann"), push_enabled=False)
        run = send_now(webpush_campaign())
    assert push.received == []
    assert Delivery.objects.get(run=run).outcome == Outcome.PROFILE_NOT_REACHABLE


def test_an_unusable_subscription_fails_with_a_reason_and_nothing_is_sent():
    with push_service() as push:
        DeviceFactory(profile=ProfileFactory(name="Ann"), platform="Web", push_enabled=True,
                      push_token='{"endpoint": "x"}')  # fmt: skip
        run = send_now(webpush_campaign())
    row = Delivery.objects.get(run=run)
    assert row.outcome == Outcome.FAILED and "unusable" in row.error
    assert push.received == []
    assert json.loads(Device.objects.get().push_token) == {"endpoint": "x"}  # not "gone"
