"""What the delivery layer stores: messages caught by the local SMTP sink."""

from __future__ import annotations

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
