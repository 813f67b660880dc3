"""The rules in profiles/rules: each stated once, and every reader agrees with it."""

import unicodedata

import pytest
from django.db import IntegrityError, transaction

from profiles.ingest import ingest_records
from profiles.models import Identifier, Profile, Source
from profiles.rules.identifiers import IdentifierTextError, identifier_text
from profiles.selectors import profile_reachability
from profiles.services import Actor
from profiles.tests.factories import ProfileFactory
from segments.tests.conftest import names

API = Actor(source=Source.API)
CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")


def test_identifier_text_is_nfc_and_refuses_controls_and_bidi_overrides():
    assert CAFE_NFC != CAFE_NFD
    assert identifier_text(f" {CAFE_NFD} ") == CAFE_NFC
    assert identifier_text("नमस्\u200dते") == "नमस्\u200dते"  # a joiner some scripts need
    for bad in ["ann\u202egnp.exe", "a\tb", "a\x1bb", "a\u2066b", "a\u2028b"]:
        with pytest.raises(IdentifierTextError) as refused:
            identifier_text(bad)
        assert f"U+{ord(refused.value.character):04X}" in str(refused.value)


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["identity", "FBID", "GPID"])
def test_nfc_and_nfd_spellings_are_one_person(key):
    first = ingest_records(
        [{"type": "profile", key: CAFE_NFD, "profileData": {"Plan": "gold"}}], actor=API
    )
    second = ingest_records(
        [{"type": "profile", key: CAFE_NFC, "profileData": {"Tier": 2}}], actor=API
    )
    assert first.refusals == {} and second.refusals == {}
    profile = Profile.objects.get()
    assert profile.custom == {"Plan": "gold", "Tier": 2}
    assert list(Identifier.objects.values_list("value", flat=True)) == [CAFE_NFC]


@pytest.mark.django_db
def test_an_nfd_email_is_stored_in_nfc():
    result = ingest_records(
        [
            {
                "type": "profile",
                "identity": "u1",
                "profileData": {"Email": f"ann@{CAFE_NFD}.example"},
            }
        ],
        actor=API,
    )
    assert result.refusals == {}
    assert Profile.objects.get().email == f"ann@{CAFE_NFC}.example"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["identity", "FBID", "GPID"])
def test_a_bidi_override_in_an_identifier_is_refused_and_nothing_is_stored(key):
    result = ingest_records(
        [
            {"type": "profile", key: "admin\u202enimda", "profileData": {"Plan": "x"}},
            {"type": "profile", "identity": "u1", "profileData": {"Email": "a\u202e@example.com"}},
        ],
        actor=API,
    )
    assert set(result.refusals) == {1, 2}
    assert result.refusals[1].code == 523
    assert "U+202E" in result.refusals[1].message
    assert result.refusals[2].code == 515 and "U+202E" in result.refusals[2].message
    assert not Profile.objects.exists() and not Identifier.objects.exists()


@pytest.mark.django_db
def test_a_new_email_replaces_the_old_on_every_path():
    ingest_records(
        [{"type": "profile", "identity": "u1", "profileData": {"Email": "a@example.com"}}],
        actor=API,
    )
    ingest_records(  # the bulk path
        [{"type": "profile", "identity": "u1", "profileData": {"Email": "b@example.com"}}],
        actor=API,
    )
    ingest_records(  # a login naming several identifiers takes the per-record path
        [
            {
                "type": "profile",
                "identity": "u1",
                "objectId": "__d1",
                "profileData": {"Email": "c@example.com"},
            }
        ],
        actor=API,
    )
    assert sorted(Identifier.objects.values_list("kind", "value")) == [
        ("email", "c@example.com"),
        ("identity", "u1"),
    ]


@pytest.mark.django_db
def test_the_database_refuses_a_second_email_or_an_unknown_gender():
    profile = ProfileFactory()
    Identifier.objects.create(profile=profile, kind="email", value="a@example.com")
    Identifier.objects.create(profile=profile, kind="identity", value="one")
    Identifier.objects.create(profile=profile, kind="identity", value="two")  # many identities
    with pytest.raises(IntegrityError), transaction.atomic():
        Identifier.objects.create(profile=profile, kind="email", value="b@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Identifier.objects.create(profile=profile, kind="nickname", value="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        Profile.objects.filter(pk=profile.pk).update(gender="X")
    with pytest.raises(IntegrityError), transaction.atomic():
        Profile.objects.filter(pk=profile.pk).update(education="PhD")


@pytest.mark.django_db
@pytest.mark.parametrize("flag, reachable", [(None, False), (False, False), (True, True)])
def test_whatsapp_reachability_is_the_same_on_the_profile_page_and_in_segments(flag, reachable):
    profile = ProfileFactory(name="P", phone="+14155550001", msg_whatsapp=flag)
    page = {row.channel: row for row in profile_reachability(profile=profile, devices=[])}
    in_segment = names({"system": "reachable", "op": "equals", "value": "whatsapp"}) == {"P"}
    assert page["WhatsApp"].reachable is reachable
    assert in_segment is reachable
    # SMS keeps CleverTap's default: an unset flag is no opt-out.
    assert page["SMS"].reachable
