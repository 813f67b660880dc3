"""POST /1/upload: CleverTap's response shapes, every per-record code, whole-call refusals."""

from __future__ import annotations

import json

import pytest

from api.credentials import api_request_slot
from profiles.models import Device, Event, Identifier, Profile, PropertyChange

pytestmark = pytest.mark.django_db
DEVICE_A = "__" + "a" * 32
BROWSER_B = "__" + "b" * 32


def profile(identity: str, **data) -> dict:
    return {"type": "profile", "identity": identity, "profileData": data}


def event(name: str, **fields) -> dict:
    return {"type": "event", "evtName": name, **fields}


def test_all_good_records_answer_success_and_are_stored(api):
    body = api.upload(
        profile("u1", Name="Ann", Email="Ann@Example.com", **{"Customer Type": "Platinum"}),
        event("Charged", identity="u1", ts=1704067200, evtData={"Amount": 300}),
    )
    assert body == {"status": "success", "processed": 2, "unprocessed": []}
    person = Profile.objects.get(identifiers__kind="identity", identifiers__value="u1")
    assert person.name == "Ann" and person.email == "ann@example.com"
    assert person.custom == {"Customer Type": "Platinum"}
    charged = person.events.get()
    assert charged.name == "Charged" and charged.properties == {"Amount": 300}
    assert int(charged.ts.timestamp()) == 1704067200 and charged.source == "api"
    assert PropertyChange.objects.filter(profile=person, actor_label="API: tests").exists()


def test_partial_stores_good_records_and_returns_bad_ones_with_the_original_record(api):
    bad = profile("u2", Email="not an email")
    body = api.upload(profile("u1", Name="Ann"), bad, profile("u3", Name="Cy"))
    assert body == {
        "status": "partial",
        "processed": 2,
        "unprocessed": [
            {
                "status": "fail",
                "code": 515,
                "error": "Profile data is incorrect. Email is not valid.Skipped record number : 2",
                "record": bad,
            }
        ],
    }
    assert set(Identifier.objects.values_list("value", flat=True)) == {"u1", "u3"}


def test_all_bad_records_answer_fail(api):
    body = api.upload({"type": "nothing", "identity": "u1"})
    assert body["status"] == "fail" and body["processed"] == 0
    assert body["unprocessed"][0]["code"] == 524
    assert body["unprocessed"][0]["error"].endswith("Skipped record number : 1")
    assert not Profile.objects.exists()


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (event("", identity="u1"), 509),
        ({"type": "event", "identity": "u1"}, 509),
        (event("E", identity="u1", evtData=["not", "an", "object"]), 512),
        (event("E", identity="u1", evtId={"x": 1}), 512),
        (event("App Launched", identity="u1"), 513),
        (event("Notification Clicked", identity="u1"), 513),
        (profile("u1", Gender="X"), 514),
        (profile("u1", Email="nope"), 515),
        (profile("u1", Phone="12"), 516),
        (profile("u1", Employed="maybe"), 517),
        (profile("u1", Education="Kindergarten"), 518),
        (profile("u1", Married="perhaps"), 519),
        (profile("u1", Age=-3), 520),
        (event("E", identity="u1", evtData={f"k{i}": i for i in range(300)}), 522),
        (event("E", evtData={}), 523),
        ({"type": "profile", "profileData": {"Name": "x"}}, 523),
        (profile("x" * 130, Name="long identity"), 523),
        ("not an object", 524),
        ({"identity": "u1", "profileData": {}}, 524),
        (event("E", identity="u1", ts="yesterday"), 525),
        (event("E", identity="u1", ts=1704067200000), 525),
        (profile("u1", Name="x") | {"ts": True}, 525),
        (event("E", objectId="not a device id!"), 526),
        ({"type": "profile", "objectId": "bad id!", "profileData": {"Name": "x"}}, 526),
        (profile("u1", **{"bad.key": 1}), 555),
        (profile("u1", Name="x") | {"profileData": "text"}, 555),
    ],
)
def test_every_record_error_code(api, record, code):
    body = api.upload(profile("good", Name="Good"), record)
    assert body["status"] == "partial" and body["processed"] == 1
    [failure] = body["unprocessed"]
    assert failure["code"] == code, failure
    assert failure["status"] == "fail"
    assert failure["record"] == record
    assert failure["error"].endswith("Skipped record number : 2")
    assert Profile.objects.count() == 1


def test_a_record_adding_an_identifier_of_another_person_is_refused_not_merged(api):
    api.upload(profile("u1", Email="ann@example.com"), profile("u2", Name="Bob"))
    body = api.upload(profile("u2", Email="ann@example.com"))
    assert body["status"] == "fail"
    assert body["unprocessed"][0]["code"] == 555
    assert "never merged" in body["unprocessed"][0]["error"]
    assert Profile.objects.count() == 2


def test_property_operations_and_dates(api):
    api.upload(profile("u1", Interests={"$add": ["a", "b"]}, Score=1, DOB="$D_631152000"))
    body = api.upload(profile("u1", Interests={"$remove": ["a"]}, Score={"$incr": 5}))
    assert body["status"] == "success"
    person = Profile.objects.get()
    assert person.custom == {"Interests": ["b"], "Score": 6}
    assert person.dob.isoformat() == "1990-01-01"


def test_evt_id_makes_retries_idempotent(api):
    record = event("Charged", identity="u1", evtId="order-1", evtData={"Amount": 3})
    assert api.upload(record)["status"] == "success"
    assert api.upload(record) == {"status": "success", "processed": 1, "unprocessed": []}
    person = Profile.objects.get()
    assert person.events.count() == 1
    person.refresh_from_db()
    assert person.event_count == 1


def test_objectid_with_identity_follows_on_user_login(api):
    api.upload(profile("x", Name="X"))
    api.upload(event("Browse", objectId=BROWSER_B))
    anonymous = Device.objects.get(object_id=BROWSER_B).profile
    body = api.upload({"type": "profile", "objectId": BROWSER_B, "profileData": {"Identity": "x"}})
    assert body["status"] == "success"
    person = Profile.objects.get(identifiers__value="x")
    assert Device.objects.get(object_id=BROWSER_B).profile == person
    anonymous.refresh_from_db()
    assert anonymous.linked_to == person


def test_fbid_and_gpid_name_a_person(api):
    body = api.upload(
        {"type": "profile", "FBID": "fb-1", "profileData": {"Name": "F"}},
        {"type": "event", "GPID": "gp-1", "evtName": "E"},
    )
    assert body["status"] == "success"
    assert set(Identifier.objects.values_list("kind", "value")) == {
        ("fbid", "fb-1"),
        ("gpid", "gp-1"),
    }


def test_records_of_one_person_keep_their_order_across_kinds(api):
    body = api.upload(
        event("A", objectId=DEVICE_A, ts=1704067200),
        {"type": "profile", "objectId": DEVICE_A, "identity": "x", "profileData": {}},
        event("B", objectId=DEVICE_A, ts=1704067300),
        profile("x", Name="Later"),
    )
    assert body["status"] == "success"
    person = Profile.objects.get(identifiers__value="x")
    assert sorted(person.events.values_list("name", flat=True)) == ["A", "B"]
    assert person.name == "Later"


def test_many_records_in_one_call(api):
    records = [profile(f"u{i}", Name=f"P{i}", Score=i) for i in range(500)]
    records += [event("Viewed", identity=f"u{i}", evtData={"n": i}) for i in range(500)]
    body = api.upload(*records)
    assert body == {"status": "success", "processed": 1000, "unprocessed": []}
    assert Profile.objects.count() == 500
    assert Event.objects.count() == 500
    assert Profile.objects.get(identifiers__value="u7").event_count == 1


def test_more_than_1000_records_are_refused_with_nothing_stored(api):
    response = api.post("/1/upload", {"d": [profile(f"u{i}") for i in range(1001)]})
    assert response.status_code == 400
    assert response.json()["status"] == "fail" and response.json()["code"] == 400
    assert "at most 1000" in response.json()["error"]
    assert not Profile.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "", '{"d": 5}', "[1, 2]"])
def test_malformed_bodies_get_400(api, raw):
    response = api.post("/1/upload", raw=raw)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "fail" and body["code"] == 400 and body["error"]


def test_a_record_with_a_nul_character_is_refused_and_the_others_kept(api):
    body = api.upload(
        profile("u1", Name="Ann"),
        profile("u2", Name="B\u0000b"),
        event("Charged", identity="u1", evtData={"Note\u0000": 1}),
    )
    assert body["status"] == "partial" and body["processed"] == 1
    assert [(fail["code"], fail["error"]) for fail in body["unprocessed"]] == [
        (555, "Values must not contain the NUL character (\\u0000). Skipped record number : 2"),
        (555, "Values must not contain the NUL character (\\u0000). Skipped record number : 3"),
    ]
    assert list(Profile.objects.values_list("name", flat=True)) == ["Ann"]
    assert not Event.objects.exists()


def test_json_nested_too_deeply_gets_400(api):
    response = api.post("/1/upload", raw="[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400
    assert response.json() == {
        "status": "fail", "error": "The JSON in the request body is nested too deeply.",
        "code": 400,
    }  # fmt: skip


def test_too_large_body_gets_413_before_reading(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    response = api.post("/1/upload", {"d": [profile(f"u{i}", Name="x" * 50) for i in range(40)]})
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert "too large" in response.json()["error"]
    assert not Profile.objects.exists()


def test_over_the_concurrency_cap_gets_429(api, settings):
    settings.API_MAX_CONCURRENT_REQUESTS = 1
    with api_request_slot(api.credential.account_id):  # another request in flight
        response = api.post("/1/upload", {"d": [profile("u1")]})
    assert response.status_code == 429
    assert response.json()["code"] == 429 and "concurrent" in response.json()["error"]
    after = api.post("/1/upload", {"d": [profile("u1")]})  # the slot was released
    assert after.status_code == 200


def test_the_slot_is_released_after_each_request(api, settings):
    settings.API_MAX_CONCURRENT_REQUESTS = 1
    for _ in range(3):
        assert api.post("/1/upload", {"d": []}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_X_CLEVERTAP_ACCOUNT_ID": "NOPE-000"},
        {"HTTP_X_CLEVERTAP_ACCOUNT_ID": "NOPE-000", "HTTP_X_CLEVERTAP_PASSCODE": "x"},
    ],
)
def test_missing_or_unknown_credentials_get_401(client, headers):
    response = client.post(
        "/1/upload", json.dumps({"d": []}), content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert response.json() == {
        "status": "fail",
        "error": "Account ID or passcode is not valid",
        "code": 401,
    }


def test_wrong_passcode_and_revoked_credentials_get_401(api, client):
    from api.credentials import api_credential_revoke

    wrong = client.post(
        "/1/upload",
        json.dumps({"d": []}),
        content_type="application/json",
        HTTP_X_CLEVERTAP_ACCOUNT_ID=api.credential.account_id,
        HTTP_X_CLEVERTAP_PASSCODE=api.passcode + "x",
    )
    assert wrong.status_code == 401
    assert api.post("/1/upload", {"d": []}).status_code == 200  # the right one is cached
    api_credential_revoke(credential=api.credential)
    revoked = api.post("/1/upload", {"d": [profile("u1")]})
    assert revoked.status_code == 401
    assert revoked.json() == {
        "status": "fail",
        "error": "Account ID or passcode is not valid",
        "code": 401,
    }
    assert not Profile.objects.exists()


def test_wrong_method_gets_405(api):
    response = api.get("/1/upload")
    assert response.status_code == 405 and response.json()["code"] == 405


@pytest.mark.parametrize("known_first", [True, False])
def test_one_call_about_known_and_new_people_gives_a_claimed_identifier_to_the_first(
    api, known_first
):
    api.upload(profile("known", Name="Kim"))
    claims = [profile("known", Email="x@example.com"), profile("new", Email="x@example.com")]
    if not known_first:
        claims.reverse()
    body = api.upload(profile("other", Name="Oz"), *claims, profile("known", Name="Kay"))
    assert body["processed"] == 3
    [failure] = body["unprocessed"]
    assert failure["record"] == claims[1] and "never merged" in failure["error"]
    winner = "known" if known_first else "new"
    holder = Identifier.objects.get(kind="email", value="x@example.com").profile
    assert holder.identifiers.filter(kind="identity", value=winner).exists()
    assert Profile.objects.get(identifiers__value="known").name == "Kay"
    assert Profile.objects.get(identifiers__value="other").name == "Oz"
    assert Profile.objects.count() == (2 if known_first else 3)  # a refused record creates none


# --- device token records (CleverTap's Upload Device Tokens) ---------------------------

PHONE_C = "__" + "c" * 32
IPHONE_D = "-" + "d" * 32
P256DH = "B" + "A" * 86  # base64url of 65 bytes starting 0x04
AUTH = "A" * 22


def token(object_id: str, **token_data) -> dict:
    return {"type": "token", "objectId": object_id, "tokenData": token_data}


def test_token_records_store_each_platform_s_token_with_push_on(api):
    assert api.upload(event("Opened", objectId=PHONE_C))["status"] == "success"
    known = Device.objects.get(object_id=PHONE_C)
    body = api.upload(
        token(PHONE_C, type="fcm", id="fcm-token:APA91b-1"),
        token(IPHONE_D, type="apns", id="a" * 64),
        token(BROWSER_B, type="webpush", id="https://push.example/send/1",
              keys={"p256dh": P256DH, "auth": AUTH}),
    )  # fmt: skip
    assert body == {"status": "success", "processed": 3, "unprocessed": []}
    devices = {d.object_id: d for d in Device.objects.all()}
    assert (devices[PHONE_C].platform, devices[PHONE_C].push_token) == (
        "Android",
        "fcm-token:APA91b-1",
    )
    assert devices[PHONE_C].profile_id == known.profile_id  # a known device keeps its person
    assert (devices[IPHONE_D].platform, devices[IPHONE_D].push_token) == ("iOS", "a" * 64)
    assert json.loads(devices[BROWSER_B].push_token)["endpoint"] == "https://push.example/send/1"
    assert {d.push_enabled for d in devices.values()} == {True}
    # A device never seen before is registered with an anonymous profile of its own;
    # a registration is not activity.
    new = devices[IPHONE_D].profile
    assert not new.identified and new.last_seen is None and new.event_count == 0


def test_unregister_clears_the_token_and_the_last_record_of_a_device_wins(api):
    api.upload(token(PHONE_C, type="fcm", id="old-token"))
    body = api.upload(
        token(PHONE_C, type="fcm", id="newer-token"),
        token(PHONE_C, type="fcm", action="unregister"),
        token(IPHONE_D, type="apns", action="unregister"),
        token(IPHONE_D, type="apns", id="b" * 64),
    )
    assert body["status"] == "success"
    phone, iphone = Device.objects.get(object_id=PHONE_C), Device.objects.get(object_id=IPHONE_D)
    assert (phone.push_token, phone.push_enabled) == ("", False)
    assert (iphone.push_token, iphone.push_enabled) == ("b" * 64, True)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"type": "token", "tokenData": {"type": "fcm", "id": "t"}}, "needs its objectId"),
        (token(PHONE_C, type="sms", id="t"), "of type fcm, gcm, apns or webpush"),
        (token(PHONE_C, type="fcm"), "must be the device token"),
        (token(PHONE_C, type="fcm", id="two words"), "must be the device token"),
        (token(PHONE_C, type="apns", id="x" * 1025), "must be the device token"),
        (token(PHONE_C, type="webpush", id="http://insecure.example/1",
               keys={"p256dh": P256DH, "auth": AUTH}), "https URL"),
        ({**token(PHONE_C, type="fcm", id="t"), "ts": "yesterday"}, "Unix Epoch"),
        (token("not an id", type="fcm", id="t"), "objectId is invalid"),
    ],
)  # fmt: skip
def test_a_bad_token_record_is_refused_with_its_reason_and_the_others_kept(api, record, reason):
    body = api.upload(record, token(IPHONE_D, type="apns", id="c" * 64))
    assert body["status"] == "partial" and body["processed"] == 1
    (failure,) = body["unprocessed"]
    assert reason in failure["error"] and failure["record"] == record
    assert Device.objects.get(object_id=IPHONE_D).push_token == "c" * 64
    assert not Device.objects.filter(object_id=PHONE_C).exists()


def test_many_token_records_are_stored_in_a_fixed_number_of_statements(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def upload(count: int, tag: str) -> int:
        records = [token(f"__{tag}{n:031x}", type="fcm", id=f"{tag}-{n}") for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            assert api.upload(*records)["processed"] == count
        return len(queries.captured_queries)

    assert upload(5, "a") == upload(200, "b")
    assert Device.objects.filter(platform="Android").exclude(push_token="").count() == 205
