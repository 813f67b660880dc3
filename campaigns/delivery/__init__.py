"""Sending messages through providers.

This minimal version delivers email through Django's mail backend (EMAIL_HOST/EMAIL_PORT)
and refuses the other channels as not configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.mail import EmailMultiAlternatives, get_connection


@dataclass(frozen=True)
class OutgoingMessage:
    channel: str  # "email" | "sms" | "whatsapp" | "push" | "webpush"
    to: str  # email address | E.164 phone | FCM token | web push subscription JSON
    subject: str  # email subject / push title ("" otherwise)
    body: str  # text body
    html: str | None  # email HTML alternative (already escaped/rendered)
    reference: str  # idempotency key, e.g. "run-12-profile-345"


@dataclass(frozen=True)
class DeliveryResult:
    accepted: bool
    provider_id: str = ""
    error: str = ""
    transient: bool = False


def deliver_many(messages: list[OutgoingMessage]) -> list[DeliveryResult]:
    """One result per message, in the same order."""
    results: list[DeliveryResult] = []
    connection = None
    try:
        for message in messages:
            if message.channel != "email":
                results.append(
                    DeliveryResult(False, error=f"{message.channel}: no provider configured")
                )
                continue
            email = EmailMultiAlternatives(
                message.subject, message.body, to=[message.to], connection=connection,
                headers={"X-Campaign-Reference": message.reference},
            )  # fmt: skip
            if message.html is not None:
                email.attach_alternative(message.html, "text/html")
            try:
                if connection is None:
                    connection = get_connection()
                    connection.open()
                    email.connection = connection
                email.send()
                results.append(DeliveryResult(True, provider_id=message.reference))
            except Exception as error:  # the SMTP server refused or went away
                results.append(DeliveryResult(False, error=str(error) or type(error).__name__))
    finally:
        if connection is not None:
            connection.close()
    return results


def notification_events_record(*, deliveries: list[tuple[int, str, dict]]) -> None:
    """Notification events on the profile timeline: not recorded by this minimal version."""
