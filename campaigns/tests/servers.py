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
    peer: tuple = ()  # the client's (address, port): one per SMTP connection


class _CollectingHandler:
    def __init__(self) -> None:
        self.received: list[ReceivedMail] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed, tuple(session.peer))
        )
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


@dataclass
class PushSubscriber:
    """A browser's side of a web push subscription: the key pair and auth secret the
    push payload is encrypted to (RFC 8291), so the test can decrypt what it receives."""

    endpoint: str
    private_key: object
    auth_secret: bytes

    def subscription_json(self) -> str:
        from cryptography.hazmat.primitives import serialization

        point = self.private_key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"auth": _b64url(self.auth_secret), "p256dh": _b64url(point)}
        # The SDK's contract: compact JSON, keys sorted.
        return json.dumps({"endpoint": self.endpoint, "keys": keys}, sort_keys=True,
                          separators=(",", ":"))  # fmt: skip


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class ReceivedPush:
    subscriber: str  # the path the push went to
    headers: dict[str, str]  # names lower-cased
    payload: dict


@dataclass
class PushService:
    """A push service on loopback: each subscriber path answers with its status
    (201 by default), and every 201 push is decrypted with the subscriber's keys."""

    base_url: str = ""
    subscribers: dict[str, PushSubscriber] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def subscribe(self, name: str) -> PushSubscriber:
        import os

        from cryptography.hazmat.primitives.asymmetric import ec

        subscriber = PushSubscriber(
            endpoint=f"{self.base_url}/push/{name}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
        )
        self.subscribers[f"/push/{name}"] = subscriber
        return subscriber


@contextmanager
def push_service() -> Iterator[PushService]:
    import http_ece

    state = PushService()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = state.statuses.get(self.path, 201)
            subscriber = state.subscribers.get(self.path)
            if subscriber is None:
                status = 404
            elif status == 201:
                try:
                    plain = http_ece.decrypt(
                        body,
                        private_key=subscriber.private_key,
                        auth_secret=subscriber.auth_secret,
                        version=self.headers.get("Content-Encoding"),
                    )
                    with lock:
                        state.received.append(
                            ReceivedPush(
                                self.path,
                                {k.lower(): v for k, v in self.headers.items()},
                                json.loads(plain),
                            )
                        )
                except Exception as exc:  # a payload we cannot decrypt is the failure under test
                    with lock:
                        state.errors.append(repr(exc))
                    status = 400
            self.send_response(status)
            if status == 201:
                self.send_header("Location", f"{state.base_url}/message/{len(state.received)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

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
