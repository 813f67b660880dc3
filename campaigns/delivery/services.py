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


# Twilio's message statuses, in the order a message moves through them; a report that
# arrives late (Twilio does not promise order) never moves a delivery backwards.
TWILIO_STATUS_ORDER = ["queued", "sending", "sent", "delivered", "undelivered", "failed", "read"]
TWILIO_STATUS_EVENT = {
    "delivered": "Notification Delivered",
    "undelivered": "Notification Failed",
    "failed": "Notification Failed",
}


def status_callback_url(*, channel: str, delivery_id: int) -> str:
    """Where the SMS/WhatsApp provider reports on one delivery ("" when this server has
    no public address configured, or the channel has no reports)."""
    from django.conf import settings
    from django.urls import reverse

    base = settings.CAMPAIGN_CALLBACK_BASE_URL
    if not base or channel not in ("sms", "whatsapp"):
        return ""
    return base + reverse("campaigns:twilio_status", args=[delivery_id])


class StatusReportRefused(ValueError):
    """A status report that is not from our provider (forbidden) or not about one of our
    messages (bad request)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def delivery_status_record(
    *, delivery_id: int, path: str, params: list[tuple[str, str]], signature: str
) -> str:
    """Take one Twilio status callback: check its signature with the auth token in use,
    move the delivery's provider status forward, and put delivered/failed on the profile's
    timeline (through the ingest path, once per delivery and status). Returns the status."""
    from django.conf import settings

    from campaigns.delivery.config import provider_config
    from campaigns.delivery.events import notification_events_record
    from campaigns.delivery.twilio import twilio_signature_valid
    from campaigns.models import Delivery

    config = provider_config()
    url = settings.CAMPAIGN_CALLBACK_BASE_URL + path
    if not twilio_signature_valid(
        url=url, params=params, auth_token=config.twilio_auth_token, signature=signature
    ):
        raise StatusReportRefused("the signature does not match", forbidden=True)
    values = dict(params)
    status = values.get("MessageStatus", "").lower()
    if status not in TWILIO_STATUS_ORDER:
        raise StatusReportRefused(f"unknown MessageStatus {status!r}")
    delivery = (
        Delivery.objects.select_related("run__campaign")
        .filter(pk=delivery_id, provider_id=values.get("MessageSid", "\0"))
        .first()
    )
    if delivery is None:
        raise StatusReportRefused("no such message")
    later = TWILIO_STATUS_ORDER[TWILIO_STATUS_ORDER.index(status) + 1 :]
    # Conditional update: only forward moves count, so two reports racing agree.
    moved = (
        Delivery.objects.filter(pk=delivery.pk)
        .exclude(provider_status__in=[*later, status])
        .update(provider_status=status)
    )
    name = TWILIO_STATUS_EVENT.get(status)
    if moved and name:
        campaign = delivery.run.campaign
        properties = {"Campaign": campaign.name, "Channel": campaign.get_channel_display()}
        if name == "Notification Failed":
            code = values.get("ErrorCode", "")
            properties["Reason"] = f"provider reported {status}" + (
                f" (error {code})" if code else ""
            )
        notification_events_record(
            deliveries=[(delivery.profile_id, name, properties, f"ntf-{delivery.pk}-{status}")]
        )
    return status
