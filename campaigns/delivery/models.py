"""What the delivery layer stores: messages caught by the local SMTP sink."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class OutboxMessage(models.Model):
    """An email the embedded SMTP sink received (development: nothing leaves the machine)."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sender = models.CharField(max_length=320)
    recipients = models.TextField()
    subject = models.CharField(max_length=998, blank=True)
    body = models.TextField(blank=True)
    html = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipients}"


class MessagingSettings(models.Model):
    """Provider settings made in the dashboard (Settings → Messaging); one row.

    A blank field means "use the environment's value" (config/settings.py), so a
    deployment configured by environment keeps working with nothing saved here.
    Secrets are Fernet tokens (config/secrets.py), never plaintext.
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON)
    twilio_base_url = models.URLField("SMS/WhatsApp API base URL", max_length=500, blank=True)
    twilio_account_sid = models.CharField("account SID", max_length=100, blank=True)
    twilio_auth_token_encrypted = models.TextField(blank=True, default="")
    twilio_sms_from = models.CharField("SMS sender", max_length=40, blank=True)
    twilio_whatsapp_from = models.CharField("WhatsApp sender", max_length=40, blank=True)
    fcm_base_url = models.URLField("FCM API base URL", max_length=500, blank=True)
    fcm_project_id = models.CharField("FCM project id", max_length=200, blank=True)
    fcm_access_token_encrypted = models.TextField(blank=True, default="")
    webpush_subject = models.CharField("VAPID subject", max_length=320, blank=True)
    # Generated once (delivery.services.vapid_keys_ensure); the public half is what
    # browsers subscribe with, so replacing the pair would orphan every subscription.
    webpush_vapid_public_key = models.CharField(max_length=200, blank=True, default="")
    webpush_vapid_private_key_encrypted = models.TextField(blank=True, default="")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "messaging settings"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="messaging_settings_one_row")
        ]

    def __str__(self) -> str:
        return "Messaging settings"
