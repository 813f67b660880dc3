"""Delivery: hand rendered messages to the providers (SMTP, Twilio-shaped SMS/WhatsApp, FCM,
web push).

Callers build `OutgoingMessage`s and call `deliver_many`; each result says whether the
provider accepted the message. Transient failures (5xx, timeouts, dropped connections) are
retried here a bounded number of times with backoff before they are reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutgoingMessage:
    channel: str  # "email" | "sms" | "whatsapp" | "push" | "webpush"
    to: str  # email address | E.164 phone | FCM token | web push subscription JSON
    subject: str  # email subject / push title ("" otherwise)
    body: str
    html: str | None  # email HTML alternative (already rendered)
    reference: str  # idempotency key, e.g. "run-12-profile-345"
    # Where the SMS/WhatsApp provider reports delivered/failed ("" for no report).
    status_callback: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    accepted: bool
    provider_id: str = ""
    error: str = ""
    transient: bool = False
    # The push service says the token/subscription no longer exists (404/410): it is
    # forgotten so later campaigns see the device as unreachable instead of failing again.
    gone: bool = False


def deliver_many(messages: list[OutgoingMessage]) -> list[DeliveryResult]:
    from campaigns.delivery.providers import deliver_many as _deliver_many

    return _deliver_many(messages)


def notification_events_record(
    *,
    deliveries: list[tuple[int, str, dict] | tuple[int, str, dict, str]],
    may_hold_unstorable: bool = True,
) -> None:
    from campaigns.delivery.events import notification_events_record as _record

    _record(deliveries=deliveries, may_hold_unstorable=may_hold_unstorable)


__all__ = [
    "DeliveryResult",
    "OutgoingMessage",
    "deliver_many",
    "notification_events_record",
]
