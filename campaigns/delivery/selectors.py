"""Reads of the delivery layer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from campaigns.delivery.models import MessagingSettings, OutboxMessage

OUTBOX_PAGE_SIZE = 100


def outbox_messages() -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.order_by("-received_at", "-id")[:OUTBOX_PAGE_SIZE]


@dataclass(frozen=True)
class SecretState:
    label: str
    saved: bool  # saved in the dashboard (encrypted)
    from_environment: bool  # not saved here, but the environment sets one

    @property
    def text(self) -> str:
        if self.saved:
            return "set (saved here)"
        return "set (from the environment)" if self.from_environment else "not set"


@dataclass(frozen=True)
class MessagingOverview:
    saved: MessagingSettings
    # Setting field -> the environment's value, shown where the saved field is blank.
    defaults: dict[str, str]
    secrets: dict[str, SecretState]
    email: list[tuple[str, str]]


def messaging_overview() -> MessagingOverview:
    """What Settings → Messaging shows: saved values, the environment's defaults, whether
    each secret is set (never the secret), and the email settings (environment only)."""
    saved = MessagingSettings.objects.filter(
        pk=MessagingSettings.SINGLETON
    ).first() or MessagingSettings(pk=MessagingSettings.SINGLETON)
    defaults = {
        "twilio_base_url": settings.TWILIO_BASE_URL,
        "twilio_account_sid": settings.TWILIO_ACCOUNT_SID,
        "twilio_sms_from": settings.TWILIO_SMS_FROM,
        "twilio_whatsapp_from": settings.TWILIO_WHATSAPP_FROM,
        "fcm_base_url": settings.FCM_BASE_URL,
        "fcm_project_id": settings.FCM_PROJECT_ID,
        "webpush_subject": settings.WEBPUSH_SUBJECT,
    }
    secrets = {
        "twilio_auth_token": SecretState(
            "SMS/WhatsApp auth token",
            saved=bool(saved.twilio_auth_token_encrypted),
            from_environment=bool(settings.TWILIO_AUTH_TOKEN),
        ),
        "fcm_access_token": SecretState(
            "FCM credentials",
            saved=bool(saved.fcm_access_token_encrypted),
            from_environment=bool(settings.FCM_ACCESS_TOKEN),
        ),
    }
    email = [
        ("Mail server (EMAIL_HOST)", settings.EMAIL_HOST),
        ("Port (EMAIL_PORT)", str(settings.EMAIL_PORT)),
        ("User (EMAIL_HOST_USER)", settings.EMAIL_HOST_USER or "—"),
        ("Password (EMAIL_HOST_PASSWORD)", "set" if settings.EMAIL_HOST_PASSWORD else "not set"),
        ("TLS (EMAIL_USE_TLS)", "on" if settings.EMAIL_USE_TLS else "off"),
        ("From (DEFAULT_FROM_EMAIL)", settings.DEFAULT_FROM_EMAIL),
    ]
    return MessagingOverview(saved=saved, defaults=defaults, secrets=secrets, email=email)


# The shape vapid_public_key_from_pem writes: a 65-byte uncompressed P-256 point in
# base64url without padding. Anything else would make the web SDK's atob() throw in pages.
_VAPID_PUBLIC_KEY = re.compile(r"^[A-Za-z0-9_-]{87}$")


def vapid_public_key() -> str:
    """The web push public key browsers subscribe with, or "" before it is generated
    (Settings → Messaging, or the first web push send: delivery.services.vapid_keys_ensure)."""
    key = (
        MessagingSettings.objects.filter(pk=MessagingSettings.SINGLETON)
        .values_list("webpush_vapid_public_key", flat=True)
        .first()
    )
    return key if key and _VAPID_PUBLIC_KEY.match(key) else ""
