"""Writes of the delivery layer."""

from __future__ import annotations

from campaigns.delivery.models import OutboxMessage


def outbox_message_store(sender: str, recipients: list[str], raw: bytes) -> OutboxMessage:
    from campaigns.delivery.sink import parse_message

    subject, body, html = parse_message(raw)
    return OutboxMessage.objects.create(
        sender=sender, recipients=", ".join(recipients), subject=subject, body=body, html=html
    )
