"""A browser's web push subscription as the profile store keeps it: one rule for every
writer (the web SDK endpoint, token records in ingest) and the one format the web push
sender reads back from `Device.push_token`.

The stored form is compact JSON with sorted keys and nothing else:
`{"endpoint":"https://…","keys":{"auth":"…","p256dh":"…"}}` — exactly what a Web Push
sender (RFC 8030 endpoint, RFC 8291 keys) needs. No ORM here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlsplit

# Device.push_token holds it: keep in step with that column's max_length.
MAX_SUBSCRIPTION_CHARS = 1024
MAX_ENDPOINT_CHARS = 800
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
# RFC 8291: p256dh is an uncompressed P-256 point (65 bytes, 0x04 first), auth 16 bytes.
P256DH_BYTES = 65
AUTH_BYTES = 16


class SubscriptionError(ValueError):
    """The subscription cannot be stored; the message says why (shown to the sender)."""


def _key_bytes(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, str) or not _BASE64URL.match(value):
        raise SubscriptionError(f"The subscription key `{name}` must be base64url text.")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise SubscriptionError(f"The subscription key `{name}` is not base64url.") from None
    if len(raw) != size:
        raise SubscriptionError(f"The subscription key `{name}` must be {size} bytes.")
    return raw


def web_push_subscription(subscription: object) -> str:
    """The stored form of a PushSubscription's JSON (`endpoint`, `keys.p256dh`, `keys.auth`).

    Raises SubscriptionError for anything a push service would not take: an endpoint that
    is not an https URL, keys that are not base64url of the right size, or more than
    MAX_SUBSCRIPTION_CHARS once stored. Other members (expirationTime, …) are dropped.
    """
    if not isinstance(subscription, dict):
        raise SubscriptionError("The subscription must be an object.")
    endpoint = subscription.get("endpoint")
    if not isinstance(endpoint, str) or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise SubscriptionError(
            f"The subscription endpoint must be a URL of at most {MAX_ENDPOINT_CHARS} characters."
        )
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or not endpoint.isprintable()
        or any(char.isspace() for char in endpoint)
    ):
        raise SubscriptionError("The subscription endpoint must be an https URL.")
    keys = subscription.get("keys")
    if not isinstance(keys, dict):
        raise SubscriptionError("The subscription needs `keys` with `p256dh` and `auth`.")
    p256dh = _key_bytes("p256dh", keys.get("p256dh"), P256DH_BYTES)
    if p256dh[0] != 0x04:
        raise SubscriptionError("The subscription key `p256dh` must be an uncompressed P-256 key.")
    _key_bytes("auth", keys.get("auth"), AUTH_BYTES)
    stored: dict[str, Any] = {
        "endpoint": endpoint,
        "keys": {"auth": keys["auth"].rstrip("="), "p256dh": keys["p256dh"].rstrip("=")},
    }
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_SUBSCRIPTION_CHARS:
        raise SubscriptionError(
            f"The subscription is longer than {MAX_SUBSCRIPTION_CHARS} characters."
        )
    return text
