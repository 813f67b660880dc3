"""The web push offer in /a replies: with a VAPID key, `enableWebPush(true, key)` (fetch
mode: `wpe`) so the SDK subscribes browsers with our key, and on a session's first reply
the `webPushConfig` the SDK waits for before `notifications.push` prompts."""

from __future__ import annotations

import json
import re

import pytest

from api import sdk_services
from api.tests.test_sdk_endpoint import Browser, encode
from campaigns.delivery.models import MessagingSettings
from campaigns.delivery.selectors import vapid_public_key
from campaigns.delivery.services import vapid_keys_ensure

pytestmark = pytest.mark.django_db
CALL = re.compile(r"\$WZRK_WR\.(\w+)\((.*?)\);")


def calls(response) -> list[tuple[str, list]]:
    """The JSONP reply as the calls it makes, in order, with their arguments."""
    body = response.content.decode()
    found = [(name, json.loads(f"[{args}]")) for name, args in CALL.findall(body)]
    assert "".join(m[0] for m in CALL.finditer(body)) == body, body  # nothing else in it
    return found


def page_view(browser: Browser):
    return browser.call("page", {"cpg": "https://shop.example/"})


def ping(browser: Browser):
    """A ping of this browser's session, sent alone (Browser.call also drains the queue)."""
    body = {"id": browser.account_id, "g": browser.guid, "s": browser.session}
    query = {"type": "ping", "d": encode(body), "rn": "9", "origin": browser.origin}
    return browser.client.get("/a", query)


def test_without_a_key_replies_are_unchanged(api):
    browser = Browser(api.credential.account_id)
    assert [name for name, _ in calls(page_view(browser))] == ["s"]
    fetch = Browser(api.credential.account_id).call("page", {}, fetch=True).json()
    assert set(fetch) == {"meta"}


def test_jsonp_offers_the_key_first_and_the_config_once_a_session(api):
    key = vapid_keys_ensure()
    browser = Browser(api.credential.account_id)
    first = calls(page_view(browser))
    assert first[0] == ("enableWebPush", [True, key])
    assert first[1] == ("tr", [{"webPushConfig": {}}])
    assert first[2][0] == "s" and first[2][1][0] == browser.guid
    # The next call carries the session: the key again, the config not (the SDK would
    # register its subscription again after each reply).
    second = calls(browser.call("push", {"type": "event", "evtName": "Viewed", "evtData": {}}))
    assert [name for name, _ in second] == ["enableWebPush", "s"]
    assert second[0][1] == [True, key]


def test_fetch_mode_offers_the_key_as_wpe(api):
    key = vapid_keys_ensure()
    browser = Browser(api.credential.account_id)
    first = browser.call("page", {}, fetch=True).json()
    assert first["wpe"] == {"enabled": True, "key": key}
    assert first["tr"] == {"webPushConfig": {}}
    assert first["meta"]["g"] == browser.guid
    second = browser.call("push", {"type": "event", "evtName": "Viewed"}, fetch=True).json()
    assert second["wpe"] == {"enabled": True, "key": key} and "tr" not in second


def test_the_key_is_the_browsers_application_server_key():
    """base64url of the uncompressed P-256 point: what the SDK's urlBase64ToUint8Array
    turns into PushManager.subscribe's applicationServerKey."""
    import base64

    key = vapid_keys_ensure()
    point = base64.urlsafe_b64decode(key + "=")
    assert len(point) == 65 and point[0] == 4


def test_an_opted_out_browser_is_not_offered_web_push(api):
    vapid_keys_ensure()
    browser = Browser(api.credential.account_id)
    page_view(browser)
    reply = calls(browser.call("push", {"type": "profile", "profile": {"ct_optout": True}}))
    assert [name for name, _ in reply] == ["s"] and reply[0][1][0].endswith(":OO")


def test_a_generated_key_applies_within_the_cache_time_without_a_query_per_call(
    api, monkeypatch, django_assert_num_queries
):
    clock = [1000.0]
    monkeypatch.setattr(sdk_services.time, "monotonic", lambda: clock[0])
    browser = Browser(api.credential.account_id)
    page_view(browser)  # caches the account and "no key"
    key = vapid_keys_ensure()
    with django_assert_num_queries(0):
        assert [name for name, _ in calls(ping(browser))] == ["s"]  # still cached
    clock[0] += sdk_services.ACCOUNT_CACHE_SECONDS
    assert calls(ping(browser))[0] == ("enableWebPush", [True, key])
    with django_assert_num_queries(0):
        assert calls(ping(browser))[0] == ("enableWebPush", [True, key])


def test_a_stored_key_not_of_the_expected_shape_is_never_sent(api):
    MessagingSettings.objects.create(webpush_vapid_public_key='x");alert(1);//</script>')
    assert vapid_public_key() == ""
    browser = Browser(api.credential.account_id)
    assert [name for name, _ in calls(page_view(browser))] == ["s"]
