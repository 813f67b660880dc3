"""GET /a, CleverTap's web SDK endpoint: decoding, replies, refusals, re-fire idempotence."""

from __future__ import annotations

import json
import re

import lzstring
import pytest
from django.conf import settings
from django.test import Client

from api.credentials import api_credential_revoke
from api.models import SdkSettings
from api.sdk_queue import sdk_queue_drain_shard
from api.sdk_services import sdk_settings_update
from profiles.models import Event, Profile

pytestmark = pytest.mark.django_db
# The reply's last call; with a web push key, enableWebPush (and tr) come before it.
REPLY = re.compile(r"(?:^|;)\$WZRK_WR\.s\((.*)\);$")


def drain_now() -> None:
    """Apply what the calls queued, as the worker would (api.sdk_queue)."""
    while sum(sdk_queue_drain_shard(shard) for shard in range(settings.SDK_QUEUE_SHARDS)):
        pass


def reply_args(response) -> list:
    match = REPLY.search(response.content.decode())
    assert match, response.content
    return json.loads("[" + match[1] + "]")


def encode(payload: dict) -> str:
    return lzstring.LZString().compressToBase64(json.dumps(payload))


class Browser:
    """Sends what clevertap-web-sdk 2.5.2 sends, and keeps the guid the replies give it."""

    def __init__(self, account_id: str, origin: str = "https://shop.example") -> None:
        self.account_id = account_id
        self.origin = origin
        self.client = Client()
        self.guid: str | None = None
        self.session: int | None = None
        self.rn = 0

    def call(self, kind: str, payload: dict, *, fetch: bool = False, refire=None, **params):
        if refire is None:
            self.rn += 1
            params = {"rn": self.rn, "i": 1_764_000_000 + self.rn, "sn": 0, **params}
        else:
            params = {**refire, **params}
        body = {"id": self.account_id, "af": {"lib": "web-sdk-v2.5.2"}, **payload}
        if self.guid and "g" not in body and not body.get("rc"):
            body["g"] = self.guid
        if self.session:
            body["s"] = self.session
        query = {"t": 96, "type": kind, "d": encode(body), "origin": self.origin, **params}
        headers: dict[str, str] = {}
        if fetch:
            headers = {
                "Origin": self.origin,
                "Accept": "application/json",
                "X-CleverTap-Encryption-Enabled": "true",
            }
        response = self.client.get("/a", query, headers=headers)
        drain_now()
        self.last_query = {k: query[k] for k in ("rn", "i", "sn")}
        if response.status_code == 200:
            if fetch:
                meta = response.json()["meta"]
                guid, session = meta["g"], meta["sid"]
            else:
                args = reply_args(response)
                guid, session = args[0], args[1]
            if self.guid is None or payload.get("rc"):
                self.guid = guid
            self.session = session
        return response

    def event(self, name: str, data: dict | None = None, **kw):
        return self.call("push", {"type": "event", "evtName": name, "evtData": data or {}}, **kw)

    def login(self, **profile):
        return self.call("push", {"type": "profile", "profile": {**profile, "tz": "GMT+0000"}})


def events_of(guid: str) -> list[str]:
    return list(
        Event.objects.filter(device__object_id=guid).order_by("id").values_list("name", flat=True)
    )


def test_page_view_replies_jsonp_with_a_new_guid_and_stores_the_view(api):
    browser = Browser(api.credential.account_id)
    response = browser.call("page", {"cpg": "https://shop.example/?utm_source=news", "us": "news"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    args = reply_args(response)
    assert args[0] == browser.guid and args[3] == 1
    assert events_of(browser.guid) == ["Page Viewed"]
    event = Event.objects.get(device__object_id=browser.guid)
    props = event.properties
    assert props["url"] == "https://shop.example/?utm_source=news"
    assert props["utm_source"] == "news" and props["Platform"] == "Web"


def test_fetch_mode_answers_json_meta_with_cors_and_the_preflight(api):
    browser = Browser(api.credential.account_id)
    preflight = browser.client.options(
        "/a",
        HTTP_ORIGIN=browser.origin,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-clevertap-encryption-enabled",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == browser.origin
    assert "X-CleverTap-Encryption-Enabled" in preflight["Access-Control-Allow-Headers"]
    response = browser.call("page", {"cpg": "https://shop.example/"}, fetch=True)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == browser.origin
    meta = response.json()["meta"]
    assert meta["g"] == browser.guid and meta["rn"] == 1 and "sid" in meta and "rf" in meta


def test_wzrk_fetch_is_not_a_user_event_and_charged_keeps_items(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    browser.event("wzrk_fetch", {"t": 4})
    items = [{"Name": "Book", "Price": 12}]
    assert browser.event("Charged", {"Amount": 12, "Items": items}).status_code == 200
    assert events_of(browser.guid) == ["Page Viewed", "Charged"]
    assert Event.objects.get(name="Charged").properties["Items"] == items


def test_a_refired_request_stores_nothing_twice(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    browser.event("Added To Cart", {"sku": "A1"})
    again = browser.event("Added To Cart", {"sku": "A1"}, refire=browser.last_query)
    assert again.status_code == 200
    assert events_of(browser.guid) == ["Page Viewed", "Added To Cart"]


def test_a_refired_profile_push_counts_once_and_events_need_no_redis_key(api):
    """A profile push re-fired is kept out by a Redis key (an `$incr` must not count twice);
    page views and events are stored once by their event ids, so they leave no key behind
    (a key per call for a week would be most of Redis's memory)."""
    from api.credentials import _redis
    from api.sdk_queue import SEEN_PREFIX

    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    browser.event("Added To Cart", {"sku": "A1"})
    browser.event("Added To Cart", {"sku": "A1"}, refire=browser.last_query)
    assert not list(_redis().scan_iter(f"{SEEN_PREFIX}*"))
    browser.call("push", {"type": "profile", "profile": {"Visits": {"$incr": 1}}})
    browser.call("push", {"type": "profile", "profile": {"Visits": {"$incr": 1}}},
                 refire=browser.last_query)  # fmt: skip
    assert len(list(_redis().scan_iter(f"{SEEN_PREFIX}*"))) == 1
    assert events_of(browser.guid) == ["Page Viewed", "Added To Cart"]
    profile = Profile.objects.get(devices__object_id=browser.guid)
    assert profile.custom["Visits"] == 1


def test_scenario_1_and_2_two_browsers_logging_in_reach_the_same_person(api):
    desktop = Browser(api.credential.account_id)
    desktop.call("page", {"cpg": "https://shop.example/"})
    desktop.event("Viewed Item")
    desktop.login(Identity="u-1", Email="u1@example.com")
    phone = Browser(api.credential.account_id)
    phone.call("page", {"cpg": "https://shop.example/"})
    phone.login(Identity="u-1")
    phone.event("Bought On Phone")

    def ct_id(**lookup) -> str:
        return api.get("/1/profile.json", lookup).json()["record"]["ct_id"]

    person = Profile.objects.get(identifiers__kind="identity", identifiers__value="u-1")
    assert ct_id(identity="u-1") == ct_id(objectId=desktop.guid) == ct_id(objectId=phone.guid)
    names = set(person.events.values_list("name", flat=True))
    assert {"Viewed Item", "Bought On Phone"} <= names
    anonymous_views = Profile.objects.filter(linked_to=person)
    assert anonymous_views.exists()  # the phone's anonymous page view stays, linked


def test_profile_push_undoes_the_phone_encoding(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    browser.login(Identity="u-2", Phone=14155550000)
    record = api.get("/1/profile.json", {"identity": "u-2"}).json()["record"]
    assert "+14155550000" in json.dumps(record)


def test_profile_push_after_login_updates_the_identified_profile(api):
    """The SDK sends profile.push like an anonymous browser's login (no isOUL): on an
    identified browser it updates that person, it does not start a new profile."""
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    browser.login(Identity="u-3")
    profiles_before = Profile.objects.count()
    response = browser.call(
        "push", {"type": "profile", "profile": {"Phone": 14155550001, "Plan": "gold"}}
    )
    assert response.status_code == 200
    record = api.get("/1/profile.json", {"identity": "u-3"}).json()["record"]
    assert record["profileData"]["Plan"] == "gold"
    assert "+14155550001" in json.dumps(record)
    assert (
        record["ct_id"]
        == api.get("/1/profile.json", {"objectId": browser.guid}).json()["record"]["ct_id"]
    )
    assert Profile.objects.count() == profiles_before


def test_profile_push_claiming_another_persons_email_is_refused(api):
    other = Browser(api.credential.account_id)
    other.login(Identity="u-4", Email="taken@example.com")
    browser = Browser(api.credential.account_id)
    browser.login(Identity="u-5")
    browser.call("push", {"type": "profile", "profile": {"Email": "taken@example.com", "X": 1}})
    mine = api.get("/1/profile.json", {"identity": "u-5"}).json()["record"]
    theirs = api.get("/1/profile.json", {"identity": "u-4"}).json()["record"]
    assert "X" not in mine["profileData"] and mine["ct_id"] != theirs["ct_id"]
    assert (
        api.get("/1/profile.json", {"objectId": browser.guid}).json()["record"]["ct_id"]
        == mine["ct_id"]
    )  # the browser did not switch to the email's holder


def test_login_decision_without_new_user_keeps_an_identified_device():
    from profiles.services import LOGIN_CURRENT, LOGIN_HOLDER, LOGIN_REFUSED, login_decision

    def target(**kw) -> str:
        base = {"current_id": 1, "current_identified": True, "current_linked": False,
                "holder_id": None, "named": True, "new_user": False}  # fmt: skip
        return login_decision(**{**base, **kw}).target

    assert target() == LOGIN_CURRENT  # a new identifier joins the profile
    assert target(holder_id=1) == LOGIN_CURRENT
    assert target(holder_id=2) == LOGIN_REFUSED  # never switched or merged by a push
    # An anonymous browser's unflagged login still follows rules 1 and 2.
    assert target(current_identified=False) == LOGIN_CURRENT
    assert target(current_identified=False, holder_id=2) == LOGIN_HOLDER


def test_opt_out_answers_oo_and_stores_nothing_afterwards(api):
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    response = browser.call(
        "push", {"type": "profile", "profile": {"ct_optout": True}}, optOut="true"
    )
    args = reply_args(response)
    assert args[0] == browser.guid + ":OO" and args[4] is True
    opted_out_guid = args[0]
    browser.call("push", {"type": "event", "evtName": "Later", "g": opted_out_guid})
    assert "Later" not in events_of(browser.guid)


@pytest.mark.parametrize(
    ("case", "status"),
    [("unknown", 403), ("revoked", 403), ("malformed", 400), ("oversize", 413), ("not-json", 400)],
)
def test_refusals_store_nothing_and_reply_a_harmless_script(api, case, status):
    browser = Browser(api.credential.account_id)
    d = encode({"id": api.credential.account_id, "cpg": "https://shop.example/"})
    if case == "unknown":
        d = encode({"id": "NOP-NOP-NOPE", "cpg": "https://shop.example/"})
    elif case == "revoked":
        api_credential_revoke(credential=api.credential, user=None)
    elif case == "malformed":
        d = "!!!not base64!!!"
    elif case == "oversize":
        d = "A" * 20_000
    elif case == "not-json":
        d = lzstring.LZString().compressToBase64("not json")
    response = browser.client.get("/a", {"type": "page", "d": d, "rn": 1})
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/javascript")
    assert b"$WZRK_WR" not in response.content
    assert Event.objects.count() == 0


def test_disallowed_origin_is_refused_and_allowed_one_stored(api):
    sdk_settings_update(credential=api.credential, origins=["https://shop.example"])
    stranger = Browser(api.credential.account_id, origin="https://evil.example")
    assert stranger.call("page", {"cpg": "https://evil.example/"}).status_code == 403
    assert Event.objects.count() == 0
    shop = Browser(api.credential.account_id)
    assert shop.call("page", {"cpg": "https://shop.example/"}).status_code == 200
    assert Event.objects.count() == 1
    assert SdkSettings.objects.get().last_seen_origin == "https://shop.example"


def test_rate_limit_per_device_refuses_with_429(api, settings):
    settings.SDK_RATE_PER_DEVICE_PER_MINUTE = 3
    browser = Browser(api.credential.account_id)
    browser.call("page", {"cpg": "https://shop.example/"})
    statuses = [browser.event(f"E{n}").status_code for n in range(4)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    assert "E3" not in events_of(browser.guid)


def test_odd_input_never_500s(api):
    client = Client()
    for query in (
        {},
        {"type": "page"},
        {"type": "nope", "d": "x"},
        {"type": "page", "d": encode([1, 2]), "rn": "x"},
        {"type": "push", "d": encode({"id": api.credential.account_id, "type": "x"}), "rn": 1},
        {"type": "page", "d": encode({"id": ["list"]}), "rn": 1},
    ):
        assert client.get("/a", query).status_code in (400, 403, 413)
    assert client.post("/a").status_code == 405
