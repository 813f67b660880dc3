"""The real CleverTap web SDK (npm clevertap-web-sdk@2.5.2, unmodified) in Chromium,
talking to /a on the live server: page view, events, login, profile push, two browsers
logging in as one person, fetch mode with CORS, opt-out. Read back through /1/profile.json.

Chromium is routed: https://shop.test/ is a test page that loads the SDK from
node_modules, and https://sdk.test/ (the SDK's target domain; it only speaks https)
is forwarded to the live server.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from api.tests.test_api_support import ApiClient
from profiles.models import Event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SENT: list = []
FORWARDED_HEADERS = {
    "origin",
    "referer",
    "accept",
    "user-agent",
    "x-clevertap-encryption-enabled",
    "access-control-request-method",
    "access-control-request-headers",
}
SDK_JS = Path(__file__).resolve().parent.parent / "node_modules/clevertap-web-sdk/clevertap.js"
PAGE = """<!doctype html><html><head><title>Shop</title>{before_sdk}
<script src="https://shop.test/clevertap.js"></script></head>
<body><h1>Shop</h1><script>
window.clevertap.init("{account}", "", "sdk.test", "", {{enableFetchApi: {fetch}}});
</script></body></html>"""
SERVICE_WORKER = "self.addEventListener('push', () => {});"


@pytest.fixture
def api(settings) -> ApiClient:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return ApiClient()


@pytest.fixture
def queue_worker(transactional_db):
    """What the Celery worker does for /a (api.sdk_queue), in a thread of this process:
    the live server only queues the SDK's records."""
    from django.conf import settings
    from django.db import connection

    from api.credentials import _redis
    from api.sdk_queue import sdk_queue_drain_shard

    keys = list(_redis().scan_iter("sdk:*"))
    if keys:
        _redis().delete(*keys)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                shards = range(settings.SDK_QUEUE_SHARDS)
                if not sum(sdk_queue_drain_shard(shard) for shard in shards):
                    stop.wait(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


@pytest.fixture
def open_shop(browser, live_server, api, queue_worker):
    if not SDK_JS.exists():
        pytest.fail(f"{SDK_JS} is missing: run `npm ci` at the repository root")
    contexts = []

    def open_page(*, fetch: bool = False, context=None, before_sdk: str = ""):
        if context is None:
            context = browser.new_context()
            contexts.append(context)
        account, fetch_flag = api.credential.account_id, "true" if fetch else "false"
        html = PAGE.format(account=account, fetch=fetch_flag, before_sdk=before_sdk)

        def shop(route):
            if route.request.url.endswith("/clevertap.js"):
                route.fulfill(body=SDK_JS.read_text(), content_type="application/javascript")
            elif route.request.url.endswith("/clevertap_sw.js"):  # the SDK's default path
                route.fulfill(body=SERVICE_WORKER, content_type="application/javascript")
            else:
                route.fulfill(body=html, content_type="text/html")

        def to_live_server(route):
            # Forwarded with urllib (not route.fetch): the live server is plain http.
            request = route.request
            target = live_server.url + request.url.removeprefix("https://sdk.test")
            headers = {
                key: value
                for key, value in request.headers.items()
                if key.lower() in FORWARDED_HEADERS
            }
            forwarded = urllib.request.Request(target, method=request.method, headers=headers)
            try:
                with urllib.request.urlopen(forwarded) as reply:
                    status, reply_headers, body = reply.status, dict(reply.headers), reply.read()
            except urllib.error.HTTPError as error:
                status, reply_headers, body = error.code, dict(error.headers), error.read()
            SENT.append((request.url, body.decode(errors="replace")))
            route.fulfill(status=status, headers=reply_headers, body=body)

        context.route("https://shop.test/**", shop)
        context.route("https://sdk.test/**", to_live_server)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("https://shop.test/")
        page.wait_for_function("() => window.clevertap.getCleverTapID()")
        return page

    yield open_page
    for context in contexts:
        context.close()


def wait_until(page, check, what: str, seconds: float = 20) -> None:
    """Poll the database: the SDK sends from timers and queues, not at once. Waiting in
    Playwright (not time.sleep) lets the routes forward the SDK's requests meanwhile."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what}")
        page.wait_for_timeout(200)


def names(guid: str) -> list[str]:
    return list(
        Event.objects.filter(device__object_id=guid).order_by("id").values_list("name", flat=True)
    )


def events_read(api: ApiClient, name: str) -> list[dict]:
    """Today's events of one name, as /1/events.json gives them (the cursor flow)."""
    today = int(time.strftime("%Y%m%d", time.gmtime()))
    first = api.post("/1/events.json", {"event_name": name, "from": today, "to": today}).json()
    assert first["status"] == "success", first
    records, cursor = [], first["cursor"]
    while cursor:
        page = api.get("/1/events.json", {"cursor": cursor}).json()
        assert page["status"] == "success", page
        records += page["records"]
        cursor = page.get("next_cursor")
    return records


def profile(api: ApiClient, **lookup) -> dict:
    response = api.get("/1/profile.json", lookup)
    assert response.status_code == 200, response.content
    return response.json()["record"]


@pytest.mark.parametrize("fetch", [False, True], ids=["jsonp", "fetch"])
def test_page_view_event_and_login_are_stored(open_shop, api, fetch):
    page = open_shop(fetch=fetch)
    guid = page.evaluate("() => window.clevertap.getCleverTapID()")
    wait_until(page, lambda: "Page Viewed" in names(guid), "the page view")
    page.evaluate(
        """() => {
        clevertap.event.push("Product Viewed", {"Product": "Book", "Price": 12});
        clevertap.onUserLogin.push({"Site": {"Identity": "reader-1", "Email": "r1@example.com"}});
    }"""
    )
    wait_until(page, lambda: "Product Viewed" in names(guid), "the event")
    wait_until(page, lambda: profile_exists(api, "reader-1"), "the login")
    record = profile(api, identity="reader-1")
    assert record["profileData"]["Email"] == "r1@example.com"
    assert record["systemProperties"]["Event count"] == 2  # the page view and the event
    assert record["ct_id"] == profile(api, objectId=guid)["ct_id"]
    assert "wzrk_fetch" not in names(guid)
    [viewed] = events_read(api, "Product Viewed")
    assert viewed["evtData"] == {"Product": "Book", "Price": 12}
    assert viewed["profile"] == {"ct_id": record["ct_id"], "identity": "reader-1", "objectId": guid}
    [page_view] = events_read(api, "Page Viewed")
    assert page_view["profile"]["identity"] == "reader-1"  # scenario 1: history kept
    assert page_view["evtData"]["url"] == "https://shop.test/"
    assert page_view["evtData"]["Platform"] == "Web"
    assert events_read(api, "wzrk_fetch") == []


def test_profile_push_after_login_reaches_the_identified_profile(open_shop, api):
    page = open_shop()
    guid = page.evaluate("() => window.clevertap.getCleverTapID()")
    page.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'reader-2'}})")
    wait_until(page, lambda: profile_exists(api, "reader-2"), "the login")
    page.evaluate("() => clevertap.profile.push({Site: {Phone: '+14155550000', Plan: 'gold'}})")
    wait_until(page, lambda: "+14155550000" in str(profile(api, objectId=guid)), "the push")
    assert profile(api, identity="reader-2")["profileData"].get("Plan") == "gold"


def test_scenario_2_two_browsers_one_person(open_shop, api):
    desktop = open_shop()
    desktop.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'pair-1'}})")
    desktop_guid = desktop.evaluate("() => clevertap.getCleverTapID()")
    wait_until(desktop, lambda: profile_exists(api, "pair-1"), "the first login")
    phone = open_shop()
    phone_guid = phone.evaluate("() => clevertap.getCleverTapID()")
    assert phone_guid != desktop_guid
    phone.evaluate("() => clevertap.event.push('Before Login')")
    wait_until(phone, lambda: "Before Login" in names(phone_guid), "the anonymous event")
    phone.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'pair-1'}})")
    wait_until(
        phone,
        lambda: (
            profile(api, identity="pair-1")["ct_id"]
            in {profile(api, objectId=g)["ct_id"] for g in _guids(phone)}
        ),
        "the second browser's login",
    )
    person = profile(api, identity="pair-1")
    assert profile(api, objectId=desktop_guid)["ct_id"] == person["ct_id"]
    phone.evaluate("() => clevertap.event.push('After Login')")
    wait_until(phone, lambda: len(events_read(api, "After Login")) == 1, "the event after login")
    [after] = events_read(api, "After Login")
    assert after["profile"]["ct_id"] == person["ct_id"]  # the phone now maps to the person
    # Scenario 2: the phone's anonymous history stays on its own profile, linked to the person.
    [before] = events_read(api, "Before Login")
    assert before["profile"]["ct_id"] != person["ct_id"] and before["profile"]["identity"] is None
    assert profile(api, objectId=before["profile"]["ct_id"])["linked_to"] == person["ct_id"]


def test_shared_browser_switches_people_without_merging(open_shop, api):
    """Person A logs in and browses; person B logs in on the same browser: the SDK drops
    A's guid (rc, isOUL) and takes a new one; B's events land on B, A's stay on A."""
    page = open_shop()
    guid_a = page.evaluate("() => clevertap.getCleverTapID()")
    page.evaluate(
        """() => {
        clevertap.onUserLogin.push({Site: {Identity: 'shared-a', Email: 'a@example.com'}});
        clevertap.event.push('A Browsed', {n: 1});
    }"""
    )
    wait_until(page, lambda: len(events_read(api, "A Browsed")) == 1, "A's event")
    page.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'shared-b'}})")
    # clear() drops A's guid first (null), then the reply to the rc login brings B's.
    page.wait_for_function(
        f"() => {{ const g = clevertap.getCleverTapID(); return g && g !== {guid_a!r}; }}"
    )
    guid_b = page.evaluate("() => clevertap.getCleverTapID()")
    page.evaluate("() => clevertap.event.push('B Browsed', {n: 2})")
    wait_until(page, lambda: len(events_read(api, "B Browsed")) == 1, "B's event")

    a, b = profile(api, identity="shared-a"), profile(api, identity="shared-b")
    assert a["ct_id"] != b["ct_id"]  # never merged
    assert a["identities"] == {"identity": ["shared-a"], "email": ["a@example.com"]}
    assert b["identities"] == {"identity": ["shared-b"]}
    assert [d["objectId"] for d in a["devices"]] == [guid_a]
    assert [d["objectId"] for d in b["devices"]] == [guid_b]
    [a_event], [b_event] = events_read(api, "A Browsed"), events_read(api, "B Browsed")
    assert a_event["profile"] == {"ct_id": a["ct_id"], "identity": "shared-a", "objectId": guid_a}
    assert b_event["profile"] == {"ct_id": b["ct_id"], "identity": "shared-b", "objectId": guid_b}
    assert {e["profile"]["ct_id"] for e in events_read(api, "Page Viewed")} == {a["ct_id"]}


def _guids(page) -> set[str]:
    return {page.evaluate("() => clevertap.getCleverTapID()")}


def profile_exists(api: ApiClient, identity: str) -> bool:
    return api.get("/1/profile.json", {"identity": identity}).status_code == 200


def test_opt_out_stops_storing(open_shop, api):
    page = open_shop()
    guid = page.evaluate("() => clevertap.getCleverTapID()")
    wait_until(page, lambda: "Page Viewed" in names(guid), "the page view")
    page.evaluate("() => clevertap.privacy.push({optOut: true})")
    page.wait_for_function("() => String(clevertap.getCleverTapID()).endsWith(':OO')")
    page.evaluate("() => clevertap.event.push('After Opt Out')")
    page.reload()
    page.wait_for_function("() => window.clevertap.getCleverTapID()")
    assert "After Opt Out" not in names(guid)


# A subscription as Chromium's PushSubscription.toJSON() gives it (FCM endpoint, P-256 key,
# 16-byte auth secret). Headless Chromium cannot subscribe at a real push service, so the
# page hands this subscription to the SDK exactly where the SDK's own subscription hand-off
# (setUpWebPush -> pushManager.subscribe().then) does: it cuts the endpoint to its tail,
# names the browser, saves it as WZRK_PSD and calls the SDK's request.registerToken. Only
# the browser's PushManager is left out; the request is built and sent by the SDK's code.
SUBSCRIBE = """(sub) => {
    const data = JSON.parse(JSON.stringify(sub));
    data.endpoint = data.endpoint.split('/').pop();
    data.browser = 'Chrome';
    localStorage.setItem('WZRK_PSD', encodeURIComponent(JSON.stringify(data)));
    // The SDK's request object: a (loose-mode) private field of the clevertap instance.
    const request = Object.getOwnPropertyNames(clevertap)
        .filter(n => /^__private_\\d+_request$/.test(n)).map(n => clevertap[n])
        .find(r => r && typeof r.registerToken === 'function');
    request.registerToken(data);
}"""
SUBSCRIPTION = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/dZk3:APA91bE" + "q" * 120,
    "expirationTime": None,
    "keys": {
        "p256dh": "BAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzA"
        "xMjM0NTY3ODk6Ozw9Pj8",
        "auth": "AAECAwQFBgcICQoLDA0ODw",
    },
}


def device_row(guid: str):
    from profiles.models import Device

    return Device.objects.filter(object_id=guid).first()


def test_web_push_registration_stores_the_subscription_and_follows_a_user_switch(open_shop, api):
    page = open_shop()
    first_guid = page.evaluate("() => clevertap.getCleverTapID()")
    page.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'push-a'}})")
    wait_until(page, lambda: profile_exists(api, "push-a"), "A's login")
    page.evaluate(SUBSCRIBE, SUBSCRIPTION)
    wait_until(page, lambda: bool(getattr(device_row(first_guid), "push_token", "")), "the token")
    stored = device_row(first_guid)
    expected = (
        '{"endpoint":"' + SUBSCRIPTION["endpoint"] + '","keys":{"auth":"'
        + SUBSCRIPTION["keys"]["auth"] + '","p256dh":"' + SUBSCRIPTION["keys"]["p256dh"] + '"}}'
    )  # fmt: skip
    assert stored.push_token == expected
    assert (stored.platform, stored.push_enabled) == ("Web", True)
    [a_device] = profile(api, identity="push-a")["devices"]
    assert a_device["push_token"] is True and a_device["push_enabled"] is True

    # B logs in on the same browser: the SDK drops A's guid (rc), takes a new one, and
    # itself unregisters A's token and registers the subscription for B's guid.
    page.evaluate("() => clevertap.onUserLogin.push({Site: {Identity: 'push-b'}})")
    wait_until(page, lambda: profile_exists(api, "push-b"), "B's login")
    second_guid = page.evaluate("() => clevertap.getCleverTapID()")
    assert second_guid != first_guid
    wait_until(
        page,
        lambda: (
            device_row(first_guid).push_enabled is False
            and bool(getattr(device_row(second_guid), "push_token", ""))
        ),
        "the token to move to B",
    )
    assert device_row(first_guid).push_token == ""
    assert device_row(second_guid).push_token == expected
    [b_device] = profile(api, identity="push-b")["devices"]
    assert b_device["objectId"] == second_guid and b_device["push_enabled"] is True
    assert profile(api, identity="push-a")["devices"][0]["push_token"] is False


# Playwright's contexts are incognito, where Chromium refuses push subscriptions ("permission
# denied"), and no push service is reachable from the test: the browser's
# PushManager.subscribe is the one part replaced. It records the applicationServerKey the
# SDK passes, checks it is a P-256 public key (as Chromium would), and resolves with
# SUBSCRIPTION. The service worker registration and everything in the SDK are real.
RECORD_SUBSCRIBE = """(subscription) => {
    PushManager.prototype.subscribe = async function (options) {
        const key = new Uint8Array(options.applicationServerKey);
        await crypto.subtle.importKey('raw', key, {name: 'ECDH', namedCurve: 'P-256'}, true, []);
        window.subscribedWith = btoa(String.fromCharCode(...key))
            .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
        return {endpoint: subscription.endpoint, toJSON: () => subscription};
    };
}"""


@pytest.fixture(autouse=True)
def _forget_the_web_push_key():
    """The SDK endpoint keeps the key a few seconds (api.sdk_services): each test reads it anew."""
    from api.sdk_services import _web_push_key_cache

    _web_push_key_cache.clear()
    yield
    _web_push_key_cache.clear()


# The snippet form: calls queued in `window.clevertap` before the SDK loads, which the SDK
# processes at init, before its first request has been answered.
QUEUED_BEFORE_LOAD = """<script>window.clevertap = {{event: [], profile: [], onUserLogin: [],
privacy: [], account: [{{id: "{account}"}}], targetDomain: "sdk.test",
notifications: [{{skipDialog: true}}]}};</script>"""


@pytest.mark.parametrize("fetch", [False, True], ids=["jsonp", "fetch"])
@pytest.mark.parametrize("when", ["after-init", "queued-before-load"])
def test_notifications_push_subscribes_with_our_vapid_key(open_shop, api, browser, fetch, when):
    """With a VAPID key generated, the SDK's own `notifications.push` flow registers the
    service worker, subscribes with that key, and sends the subscription back through /a."""
    from campaigns.delivery.services import vapid_keys_ensure

    key = vapid_keys_ensure()
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin="https://shop.test")
    context.add_init_script(f"({RECORD_SUBSCRIBE})({json.dumps(SUBSCRIPTION)})")
    before_sdk = ""
    if when == "queued-before-load":
        before_sdk = QUEUED_BEFORE_LOAD.format(account=api.credential.account_id)
    page = open_shop(fetch=fetch, context=context, before_sdk=before_sdk)
    guid = page.evaluate("() => clevertap.getCleverTapID()")
    if when == "after-init":
        # What a page's button does: no SDK dialog, the browser's permission is granted.
        page.evaluate("() => clevertap.notifications.push({skipDialog: true})")
    page.wait_for_function("() => window.subscribedWith")
    assert page.evaluate("() => window.subscribedWith") == key
    wait_until(page, lambda: bool(getattr(device_row(guid), "push_token", "")), "the token")
    assert json.loads(device_row(guid).push_token) == {
        "endpoint": SUBSCRIPTION["endpoint"],
        "keys": SUBSCRIPTION["keys"],
    }
    workers = page.evaluate(
        "async () => (await navigator.serviceWorker.getRegistrations()).map(r => r.scope)"
    )
    assert workers == ["https://shop.test/"]


def test_without_a_vapid_key_the_sdk_is_not_offered_web_push(open_shop, api, browser):
    page = open_shop()
    guid = page.evaluate("() => clevertap.getCleverTapID()")
    wait_until(page, lambda: "Page Viewed" in names(guid), "the page view")
    # Set by the SDK when a reply calls enableWebPush; the first reply has been handled.
    flags = page.evaluate(
        """() => [localStorage.getItem('WZRK_APPLICATION_SERVER_KEY_RECIEVED'),
                  localStorage.getItem('WZRK_WEB_PUSH_CONFIG_RECEIVED')]"""
    )
    assert flags == [None, None]
