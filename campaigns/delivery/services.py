"""Writes of the delivery layer."""

from __future__ import annotations

from django.db import transaction

from campaigns.delivery.models import MessagingSettings, OutboxMessage
from config.secrets import secret_encrypt
from profiles.models import Device


def outbox_message_store(sender: str, recipients: list[str], raw: bytes) -> OutboxMessage:
    from campaigns.delivery.sink import parse_message

    subject, body, html = parse_message(raw)
    return OutboxMessage.objects.create(
        sender=sender, recipients=", ".join(recipients), subject=subject, body=body, html=html
    )


def vapid_keys_ensure() -> str:
    """Generate the VAPID key pair the first time it is needed; returns the public key.

    Generated once: browsers subscribe with the public key, so a new pair would make
    every stored subscription undeliverable. The row lock makes two first sends agree
    on one pair. The private key is stored encrypted (config/secrets.py)."""
    from py_vapid import Vapid

    from campaigns.delivery.config import vapid_public_key_from_pem

    with transaction.atomic():
        row, _ = MessagingSettings.objects.select_for_update().get_or_create(
            pk=MessagingSettings.SINGLETON
        )
        if not row.webpush_vapid_private_key_encrypted:
            vapid = Vapid()
            vapid.generate_keys()
            pem = vapid.private_pem().decode()
            row.webpush_vapid_private_key_encrypted = secret_encrypt(pem)
            row.webpush_vapid_public_key = vapid_public_key_from_pem(pem)
            row.save(
                update_fields=[
                    "webpush_vapid_private_key_encrypted",
                    "webpush_vapid_public_key",
                    "updated_at",
                ]
            )
    return row.webpush_vapid_public_key


def push_tokens_forget(*, tokens: list[str]) -> int:
    """The push service said these tokens/subscriptions no longer exist (HTTP 404/410).

    The token is cleared and the permission left as it is: "gone" is a fact about the
    subscription, not the person's choice, and a browser that subscribes again sends a
    new token through the SDK, which makes the device reachable again. Clearing only the
    exact token keeps a subscription registered meanwhile."""
    if not tokens:
        return 0
    return Device.objects.filter(push_token__in=tokens).update(push_token="")


def messaging_settings_update(
    *, values: dict[str, str], secrets: dict[str, str | None], user
) -> MessagingSettings:
    """Save Settings → Messaging. Plain values replace the saved ones (blank: use the
    environment's); a secret is replaced only when given (None removes it) and is stored
    encrypted. The VAPID keys are never touched here (they are generated once)."""
    with transaction.atomic():
        row, _ = MessagingSettings.objects.select_for_update().get_or_create(
            pk=MessagingSettings.SINGLETON
        )
        for name, value in values.items():
            setattr(row, name, value)
        for name, secret in secrets.items():
            setattr(row, f"{name}_encrypted", secret_encrypt(secret) if secret else "")
        row.updated_by = user
        row.save()
    return row
