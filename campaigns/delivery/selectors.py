"""Reads of the delivery layer."""

from __future__ import annotations

from django.db.models import QuerySet

from campaigns.delivery.models import OutboxMessage

OUTBOX_PAGE_SIZE = 100


def outbox_messages() -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.order_by("-received_at", "-id")[:OUTBOX_PAGE_SIZE]
