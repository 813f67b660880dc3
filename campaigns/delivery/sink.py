"""A local SMTP sink for development: every email it receives lands in the Outbox table."""

from __future__ import annotations

import email
import email.policy

from aiosmtpd.controller import Controller

from campaigns.delivery.services import outbox_message_store


class OutboxHandler:
    async def handle_DATA(self, server, session, envelope) -> str:
        from asgiref.sync import sync_to_async

        await sync_to_async(outbox_message_store)(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.content
        )
        return "250 Message accepted for delivery"


def smtp_sink_start(port: int = 0) -> Controller:
    """Start the sink on loopback (port 0: any free port, read from controller.port)."""
    controller = Controller(OutboxHandler(), hostname="127.0.0.1", port=port or _free_port())
    controller.start()
    return controller


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_message(raw: bytes) -> tuple[str, str, str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    return (
        str(parsed.get("Subject", "")),
        plain.get_content() if plain else "",
        html.get_content() if html else "",
    )
