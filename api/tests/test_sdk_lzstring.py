"""The `d` decoder (api.sdk_lzstring) against the web SDK's own `compressToBase64`.

The SDK's compressor is taken from the installed clevertap-web-sdk bundle and run in
node, so these are the bytes a browser sends."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import lzstring
import pytest

from api.sdk_lzstring import LzTextTooLong, lz_decompress_from_base64
from api.sdk_services import SdkRefusal, sdk_decode_payload
from api.tests.test_sdk_endpoint import drain_now, reply_args
from profiles.models import Event

SDK_BUNDLE = Path(__file__).resolve().parents[2] / "node_modules/clevertap-web-sdk/clevertap.js"
# From the SDK's LZString `compress` to the end of its `compressToBase64`.
COMPRESSOR = re.compile(
    r"(  const compress = uncompressed => \{.*?const compressToBase64 = input => \{.*?"
    r"return output;\n  \};)",
    re.S,
)


def sdk_compress(texts: list[str]) -> list[str]:
    if not shutil.which("node") or not SDK_BUNDLE.exists():
        pytest.skip("needs node and clevertap-web-sdk (make test installs it)")
    match = COMPRESSOR.search(SDK_BUNDLE.read_text())
    assert match, "the SDK bundle no longer has its compressToBase64"
    script = match[1] + (
        "\nconst texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "\nprocess.stdout.write(JSON.stringify(texts.map(compressToBase64)));"
    )
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_decodes_what_the_sdk_sends_including_emoji_and_other_scripts():
    rng = random.Random(13)
    alphabet = 'abcXYZ 0189{}[]":,é漢字🙂😀👍🏽ü\u00a0\u2028'
    payload = {"id": "TEST-1", "evtName": "Viewed 🙂", "evtData": {"Name": "Zoë 漢字 😀👍🏽"}}
    texts = [json.dumps(payload, ensure_ascii=False), "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.choice([2, 30, 400, 3000])))
              for _ in range(150)]  # fmt: skip
    for text, encoded in zip(texts, sdk_compress(texts), strict=True):
        assert lz_decompress_from_base64(encoded, max_chars=10_000) == text
    # lzstring 1.0.4 returns an emoji as two lone surrogates: ingest refused such a record.
    assert lzstring.LZString().decompressFromBase64(sdk_compress(["😀"])[0]) != "😀"


def test_decodes_the_newer_lz_string_padding_too():
    rng = random.Random(7)
    for _ in range(300):
        value = "".join(rng.choice("ab{}: 12é") for _ in range(rng.randint(0, 80)))
        text = json.dumps({"k": value})
        assert lz_decompress_from_base64(
            lzstring.LZString().compressToBase64(text), max_chars=1000
        ) == text  # fmt: skip


@pytest.mark.parametrize("garbage", ["", "A", "!!!!", "a b", "zzzz" * 50, "=", "AAAAAAAA", "N4Ig"])
def test_garbage_is_none_never_an_exception(garbage):
    assert lz_decompress_from_base64(garbage, max_chars=1000) is None


def test_a_small_d_cannot_expand_past_the_cap():
    bomb = sdk_compress(["x" * 200_000])[0]
    assert len(bomb) < 2_000
    with pytest.raises(LzTextTooLong):
        lz_decompress_from_base64(bomb, max_chars=65_536)
    with pytest.raises(SdkRefusal) as refused:
        sdk_decode_payload(bomb)
    assert refused.value.status == 413


def test_a_lone_surrogate_escape_becomes_a_replacement_character():
    # JSON.stringify writes a lone surrogate as an escape; kept as is, ingest would refuse
    # the record (PostgreSQL cannot store it).
    text = json.dumps({"id": "A", "a": "\ud83d", "b": "\ud83d\ude00"})
    payload = sdk_decode_payload(lzstring.LZString().compressToBase64(text))
    assert payload == {"id": "A", "a": "\ufffd", "b": "😀"}


@pytest.mark.django_db
def test_an_emoji_the_sdk_sends_is_stored_and_read_back(api):
    payload = {"id": api.credential.account_id, "type": "event", "evtName": "Rated 😀",
               "evtData": {"comment": "très bien 👍🏽 漢字"}}  # fmt: skip
    d = sdk_compress([json.dumps(payload, ensure_ascii=False)])[0]
    response = api.client.get("/a", {"type": "push", "d": d, "rn": 1, "i": 1, "sn": 0})
    assert response.status_code == 200
    drain_now()
    guid = reply_args(response)[0]
    event = Event.objects.get(device__object_id=guid)
    assert (event.name, event.properties["comment"]) == ("Rated 😀", "très bien 👍🏽 漢字")
