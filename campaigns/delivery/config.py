"""Which provider settings delivery uses: the dashboard's (Settings → Messaging) over the
environment's. Read once per batch, so a change applies from the next batch on."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from django.conf import settings

from campaigns.delivery.models import MessagingSettings
from config.secrets import SecretUnreadable, secret_decrypt


@dataclass(frozen=True)
class ProviderConfig:
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_sms_from: str
    twilio_whatsapp_from: str
    fcm_base_url: str
    fcm_project_id: str
    fcm_access_token: str
    webpush_subject: str
    webpush_vapid_private_pem: str  # "" until generated (vapid_keys_ensure)
    webpush_ttl_seconds: int
    # Saved secrets that cannot be decrypted (SECRET_KEY changed): name -> why. The
    # channel using one fails with that reason instead of sending without credentials.
    unreadable: dict[str, str] = field(default_factory=dict)


def _secret(token: str, name: str, unreadable: dict[str, str]) -> str:
    try:
        return secret_decrypt(token)
    except SecretUnreadable as error:
        unreadable[name] = f"the saved {name} {error}"
        return ""


def provider_config() -> ProviderConfig:
    saved = MessagingSettings.objects.filter(pk=MessagingSettings.SINGLETON).first()
    row = saved or MessagingSettings()
    unreadable: dict[str, str] = {}
    twilio_token = _secret(row.twilio_auth_token_encrypted, "SMS/WhatsApp token", unreadable)
    fcm_token = _secret(row.fcm_access_token_encrypted, "FCM credentials", unreadable)
    vapid_pem = _secret(row.webpush_vapid_private_key_encrypted, "VAPID key", unreadable)
    return ProviderConfig(
        twilio_base_url=row.twilio_base_url or settings.TWILIO_BASE_URL,
        twilio_account_sid=row.twilio_account_sid or settings.TWILIO_ACCOUNT_SID,
        # A token saved in the dashboard belongs to the SID saved with it.
        twilio_auth_token=twilio_token
        if row.twilio_auth_token_encrypted
        else settings.TWILIO_AUTH_TOKEN,
        twilio_sms_from=row.twilio_sms_from or settings.TWILIO_SMS_FROM,
        twilio_whatsapp_from=row.twilio_whatsapp_from or settings.TWILIO_WHATSAPP_FROM,
        fcm_base_url=row.fcm_base_url or settings.FCM_BASE_URL,
        fcm_project_id=row.fcm_project_id or settings.FCM_PROJECT_ID,
        fcm_access_token=fcm_token if row.fcm_access_token_encrypted else settings.FCM_ACCESS_TOKEN,
        webpush_subject=row.webpush_subject or settings.WEBPUSH_SUBJECT,
        webpush_vapid_private_pem=vapid_pem,
        webpush_ttl_seconds=settings.WEBPUSH_TTL_SECONDS,
        unreadable=unreadable,
    )


def vapid_public_key_from_pem(pem: str) -> str:
    """The applicationServerKey browsers subscribe with: the uncompressed P-256 point,
    base64url without padding (what PushManager.subscribe expects)."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid

    point = Vapid.from_pem(pem.encode()).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()
