"""Twilio's request signature (X-Twilio-Signature), pure: no ORM, no settings.

Twilio signs each callback with HMAC-SHA1 over the exact URL it called followed by every
POST parameter as name+value, sorted by name, keyed with the account's auth token, and
sends it base64-encoded. A forged or replayed-to-another-URL report fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def twilio_signature(*, url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_signature_valid(
    *, url: str, params: Iterable[tuple[str, str]], auth_token: str, signature: str
) -> bool:
    if not auth_token or not signature:
        return False
    expected = twilio_signature(url=url, params=params, auth_token=auth_token)
    return hmac.compare_digest(expected, signature)
