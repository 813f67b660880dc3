"""Secrets we store (SFTP passwords and keys, provider credentials): encrypted at rest.

Fernet with SECRETS_ENCRYPTION_KEY (a Fernet key, or any passphrase a key is derived
from); without it, a key derived from SECRET_KEY, so that changing SECRET_KEY makes the
stored secrets unreadable (they must be entered again), never silently wrong.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(ValueError):
    """The stored secret was encrypted with another key."""


def _fernet() -> Fernet:
    configured = settings.SECRETS_ENCRYPTION_KEY
    if configured:
        try:
            return Fernet(configured)
        except ValueError:
            material = configured.encode()  # any passphrase: derive a key from it
    else:
        material = settings.SECRET_KEY.encode()
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"userprofiles secrets at rest"
    ).derive(material)
    return Fernet(base64.urlsafe_b64encode(derived))


def secret_encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def secret_decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "the saved secret cannot be decrypted (SECRET_KEY or SECRETS_ENCRYPTION_KEY changed)"
        ) from exc
