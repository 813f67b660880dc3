"""Web push registration through /a (`type=data`): the subscription becomes the device's
push token (compact JSON, the format campaigns' web push sender reads), unregister clears
it, and a subscription no push service would take is refused with a clear reason."""

from __future__ import annotations

import base64
import json

import pytest

from api.tests.test_sdk_endpoint import Browser
from profiles.models import Device
from profiles.rules.web_push import SubscriptionError, web_push_subscription

pytestmark = pytest.mark.django_db

P256DH = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode().rstrip("=")
AUTH = base64.urlsafe_b64encode(bytes(range(16))).decode().rstrip("=")
FCM_TAIL = "cXyZ_1-2:APA91bH" + "k" * 140


def register(sdk: Browser, **overrides):
    """What the SDK's registerToken sends: PushSubscription JSON with the endpoint cut to
    its tail and the browser named (Chrome), plus the system fields."""
    subscription = {"endpoint": FCM_TAIL, "expirationTime": None,
                    "keys": {"p256dh": P256DH, "auth": AUTH}, "browser": "Chrome"}  # fmt: skip
    refire = overrides.pop("refire", None)
    return sdk.call("data", {**subscription, **overrides}, refire=refire)


def device(guid: str) -> Device:
    return Device.objects.get(object_id=guid)


def test_registration_stores_the_subscription_as_the_push_token(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    response = register(browser)
    assert response.status_code == 200
    stored = device(browser.guid)
    assert stored.push_token == (
        '{"endpoint":"https://fcm.googleapis.com/fcm/send/' + FCM_TAIL + '",'
        '"keys":{"auth":"' + AUTH + '","p256dh":"' + P256DH + '"}}'
    )
    assert stored.platform == "Web" and stored.push_enabled is True
    record = api.get("/1/profile.json", {"objectId": browser.guid}).json()["record"]
    assert record["devices"][0]["push_token"] is True
    assert record["devices"][0]["push_enabled"] is True


def test_a_full_https_endpoint_is_kept_and_firefox_tails_get_mozillas_service(api):
    browser = Browser(api.credential.account_id)
    register(browser, endpoint="https://push.example.net/sub/abc", browser=None)
    assert json.loads(device(browser.guid).push_token)["endpoint"] == (
        "https://push.example.net/sub/abc"
    )
    register(browser, endpoint="gAAAAABk" + "x" * 100, browser="Firefox")
    assert json.loads(device(browser.guid).push_token)["endpoint"].startswith(
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk"
    )


def test_unregister_clears_the_token_and_turns_push_off(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    register(browser)
    response = browser.call("data", {"action": "unregister", "g": browser.guid})
    assert response.status_code == 200
    stored = device(browser.guid)
    assert stored.push_token == "" and stored.push_enabled is False


def test_registration_is_idempotent(api):
    browser = Browser(api.credential.account_id)
    register(browser)
    register(browser, refire=browser.last_query)
    assert Device.objects.filter(object_id=browser.guid).count() == 1
    assert device(browser.guid).push_enabled is True


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"endpoint": "http://push.example.net/x", "browser": None}, "https"),
        ({"endpoint": "javascript:alert(1)", "browser": None}, "https"),
        ({"endpoint": "a/b/c", "browser": "Chrome"}, "https"),
        ({"endpoint": FCM_TAIL, "browser": "Opera"}, "https"),
        ({"browser": "Safari"}, "Safari"),
        ({"endpoint": ""}, "no endpoint"),
        ({"keys": {"p256dh": P256DH}}, "auth"),
        ({"keys": {"p256dh": "not*base64", "auth": AUTH}}, "base64url"),
        ({"keys": {"p256dh": AUTH, "auth": AUTH}}, "65 bytes"),
        ({"keys": "nope"}, "keys"),
        ({"endpoint": "https://push.example.net/" + "x" * 900, "browser": None}, "at most"),
    ],
)
def test_bad_subscriptions_are_refused_with_the_reason(api, overrides, reason):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    response = register(browser, **overrides)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert device(browser.guid).push_token == ""


def test_the_rule_drops_extra_members_and_caps_the_size():
    keys = {"p256dh": P256DH, "auth": AUTH, "x": "y"}
    stored = web_push_subscription(
        {"endpoint": "https://push.example.net/a", "expirationTime": 1, "keys": keys}
    )
    assert json.loads(stored) == {
        "endpoint": "https://push.example.net/a",
        "keys": {"auth": AUTH, "p256dh": P256DH},
    }
    assert " " not in stored
    with pytest.raises(SubscriptionError):
        web_push_subscription({"endpoint": "https://push.example.net/a b", "keys": {}})
