"""Every per-record error code, with CleverTap's messages, and normalization."""

import pytest

from profiles.models import Event, EventName, Identifier, Profile, Source
from profiles.properties import RESERVED_EVENT_NAMES, RecordError
from profiles.services import Actor, event_push, identifiers_normalize, profile_push

API = Actor(source=Source.API, label="API: test")
pytestmark = pytest.mark.django_db
IDENTITY_MISSING = (
    "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars"
    " to identify the user."
)


def refused(call, **kwargs) -> RecordError:
    with pytest.raises(RecordError) as error:
        call(actor=API, **kwargs)
    assert not Profile.objects.exists(), "a refused record must write nothing"
    assert not Event.objects.exists()
    return error.value


def push_refused(data: dict) -> RecordError:
    return refused(profile_push, identifiers={"identity": "u1"}, profile_data=data)


def event_refused(**kwargs) -> RecordError:
    kwargs.setdefault("name", "Charged")
    return refused(event_push, identifiers={"identity": "u1"}, **kwargs)


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ({"Gender": "X"}, 514, "Profile data is incorrect. Gender needs to be M/F."),
        ({"Email": "not-an-email"}, 515, "Profile data is incorrect. Email is not valid."),
        ({"Email": "a" * 250 + "@x.com"}, 515, "Profile data is incorrect. Email is not valid."),
        ({"Phone": "12"}, 516, "Profile data is incorrect. Phone is not valid."),
        ({"Phone": "+1 415 555"}, 516, "Profile data is incorrect. Phone is not valid."),
        ({"Employed": "maybe"}, 517, "Profile data is incorrect. Employed needs to be Y/N."),
        (
            {"Education": "Kindergarten"},
            518,
            "Profile data is incorrect. Education needs to be School/College/Graduate.",
        ),
        ({"Married": 3}, 519, "Profile data is incorrect. Married needs to be Y/N."),
        ({"Age": "old"}, 520, "Profile data is incorrect. Age is invalid."),
        ({"Age": -1}, 520, "Profile data is incorrect. Age is invalid."),
        ({"Age": 200}, 520, "Profile data is incorrect. Age is invalid."),
        ({"Age": 30.5}, 520, "Profile data is incorrect. Age is invalid."),
        ({"Age": float("inf")}, 520, "Profile data is incorrect. Age is invalid."),
    ],
)
def test_default_property_errors_carry_clevertaps_code_and_message(data, code, message):
    error = push_refused(data)
    assert (error.code, error.message) == (code, message)


def test_accepted_spellings_of_default_properties_are_normalized():
    profile = profile_push(
        identifiers={"identity": "u1"},
        profile_data={
            "Gender": "female",
            "Employed": "Y",
            "Married": "no",
            "Education": "college",
            "Phone": "(415) 555-2671",
            "Email": "  Ann@Example.COM ",
            "MSG-sms": False,
            "Age": 30,
            "tz": "Europe/Paris",
        },
        actor=API,
    )
    profile.refresh_from_db()
    assert (profile.gender, profile.employed, profile.married, profile.education) == (
        "F",
        True,
        False,
        "College",
    )
    assert profile.phone == "+14155552671"  # default region US (settings)
    assert profile.email == "ann@example.com"
    assert profile.msg_sms is False
    assert profile.tz == "Europe/Paris"
    assert "Age" not in profile.custom  # Age is derived from DOB, never stored
    assert set(profile.identifiers.values_list("kind", "value")) == {
        ("identity", "u1"),
        ("email", "ann@example.com"),
        ("phone", "+14155552671"),
    }


def test_509_event_name_is_mandatory():
    for name in (None, "", "   ", 5):
        error = event_refused(name=name)
        assert (error.code, error.message) == (509, "Event name is mandatory.")


def test_512_invalid_event_structure():
    assert event_refused(properties=["a"]).code == 512
    assert event_refused(properties={"Nested": {"a": 1}}).code == 512
    assert event_refused(properties={"Items": [1, 2]}).code == 512
    assert event_refused(properties={"Long": "x" * 513}).code == 512
    assert event_refused(name="E" * 513).code == 512
    assert event_refused(client_event_id="x" * 129).code == 512


@pytest.mark.parametrize("name", sorted(RESERVED_EVENT_NAMES))
def test_513_restricted_system_event_names(name):
    error = event_refused(name=name)
    assert (error.code, error.message) == (513, f"'{name}' is a restricted system event name.")


def test_522_event_properties_limit():
    error = event_refused(properties={f"p{i}": i for i in range(257)})
    assert error.code == 522
    error = event_refused(properties={"Items": [{"sku": i} for i in range(257)]})
    assert error.code == 522
    _, event = event_push(
        identifiers={"identity": "u1"},
        name="Charged",
        actor=API,
        properties={f"p{i}": i for i in range(256)},
    )
    assert len(event.properties) == 256


def test_523_a_record_must_name_its_user():
    for kwargs in (
        {},
        {"identifiers": {}},
        {"identifiers": {"identity": ""}},
        {"identifiers": {"name": "Ann"}},
    ):
        error = refused(profile_push, profile_data={"Name": "x"}, **kwargs)
        assert (error.code, error.message) == (523, IDENTITY_MISSING)
    for bad in ("i" * 120, True, 1.5, ["u1"]):
        error = refused(profile_push, identifiers={"identity": bad}, profile_data={})
        assert (error.code, error.message) == (523, IDENTITY_MISSING)
    error = refused(event_push, name="Charged")
    assert error.code == 523


def test_526_invalid_object_id():
    for bad in ("", "has space", "x" * 65, "semi;colon", 12):
        error = refused(event_push, device_id=bad, name="Charged")
        assert (error.code, error.message) == (526, "objectId is invalid.")
    for good in ("__" + "a" * 32, "-" + "b" * 32, "custom(id)!:@$_-1"):
        event_push(device_id=good, name="Charged", actor=API)


def test_555_miscellaneous_errors():
    assert push_refused({"Plan": None}).code == 555
    assert push_refused({"Plan": {"a": 1}}).code == 555
    assert push_refused({"bad.key": 1}).code == 555
    assert refused(profile_push, identifiers={"identity": "u1"}, profile_data=["x"]).code == 555
    assert event_refused(properties={"bad.key": 1}).code == 555


def test_the_event_name_cap_is_512_names():
    EventName.objects.bulk_create(EventName(name=f"E{i}") for i in range(512))
    event_push(identifiers={"identity": "u1"}, name="E1", actor=API)  # known names still work
    with pytest.raises(RecordError, match="At most 512") as error:
        event_push(identifiers={"identity": "u1"}, name="Brand new", actor=API)
    assert error.value.code == 555


def test_identifiers_are_normalized_and_email_phone_only_when_they_identify(settings):
    assert identifiers_normalize(
        {"Identity": " u1 ", "EMAIL": "A@B.COM", "Phone": "+4930123456", "other": "x", "FBID": 123}
    ) == {
        "identity": "u1",
        "email": "a@b.com",
        "phone": "+4930123456",
        "fbid": "123",
    }
    settings.PROFILE_IDENTIFYING_KINDS = ["identity"]
    assert identifiers_normalize({"identity": "u1", "email": "a@b.com"}) == {"identity": "u1"}
    profile = profile_push(
        identifiers={"identity": "u1"}, profile_data={"Email": "a@b.com"}, actor=API
    )
    assert not Identifier.objects.filter(kind="email").exists()
    profile.refresh_from_db()
    assert profile.email == "a@b.com"


@pytest.mark.parametrize(
    "profile_data",
    [{"Name": "A\x00B"}, {"Plan": "gold\x00"}, {"Bad\x00Key": 1}, {"Tags": {"$add": ["x\x00"]}}],
)
def test_nul_characters_are_refused_per_record_not_by_the_database(profile_data):
    with pytest.raises(RecordError) as refused:
        profile_push(identifiers={"identity": "nul"}, profile_data=profile_data, actor=API)
    assert "NUL" in refused.value.message


def test_nul_in_an_identity_or_event_name_is_refused():
    with pytest.raises(RecordError) as refused:
        profile_push(identifiers={"identity": "a\x00b"}, profile_data={"Name": "x"}, actor=API)
    assert refused.value.code == 523
    with pytest.raises(RecordError) as refused:
        event_push(identifiers={"identity": "u"}, name="Bad\x00Name", actor=API)
    assert refused.value.code == 512
