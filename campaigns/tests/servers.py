"""Local stand-ins for the delivery providers, on loopback, for tests to send to."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _CollectingHandler:
    def __init__(self) -> None:
        self.received: list[ReceivedMail] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[ReceivedMail]]]:
    """A real SMTP server on 127.0.0.1; yields (port, received messages)."""
    from campaigns.delivery.sink import _free_port

    handler = _CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, handler.received
    finally:
        controller.stop()


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}

    def json(self) -> object:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str]:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        assert scheme == "Basic"
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user, password


@dataclass
class ProviderServer:
    """An HTTP server answering each POST with the next scripted (status, JSON) reply."""

    replies: list[tuple[int, dict]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str = ""


@contextmanager
def http_provider_server(replies: list[tuple[int, dict]]) -> Iterator[ProviderServer]:
    state = ProviderServer(replies=list(replies))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            with lock:
                state.requests.append(RecordedRequest(self.path, dict(self.headers), body))
                status, payload = state.replies.pop(0) if state.replies else (200, {})
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
