"""Provider clients behind `deliver_many`: one SMTP connection / HTTP session per batch."""

from __future__ import annotations

import json
import logging
import smtplib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid, sanitize_address

from campaigns.delivery import DeliveryResult, OutgoingMessage, mime
from campaigns.delivery.config import ProviderConfig, provider_config

logger = logging.getLogger(__name__)

# Connect and read timeouts for every provider call: a stuck provider must not hold a worker.
HTTP_TIMEOUT = (5, 15)
SMTP_TIMEOUT = 15
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5  # doubled after each transient failure
# A connection is worth opening for at least this many messages of a batch.
MESSAGES_PER_CONNECTION = 25


def _with_retries(send: Callable[[], DeliveryResult]) -> DeliveryResult:
    result = send()
    for attempt in range(1, ATTEMPTS):
        if result.accepted or not result.transient:
            break
        time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
        result = send()
    return result


def _http_result(response: requests.Response, provider_id: str) -> DeliveryResult:
    if 200 <= response.status_code < 300:
        return DeliveryResult(accepted=True, provider_id=provider_id)
    detail = response.text[:500]
    return DeliveryResult(
        accepted=False,
        error=f"provider answered HTTP {response.status_code}: {detail}",
        transient=response.status_code >= 500 or response.status_code == 429,
    )


def _json_field(response: requests.Response, key: str) -> str:
    """The provider's message id from a JSON answer ("" when the answer has none)."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    return str(payload.get(key, "")) if isinstance(payload, dict) else ""


def _http_post(session: requests.Session, url: str, **kwargs) -> requests.Response | DeliveryResult:
    try:
        return session.post(url, timeout=HTTP_TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        return DeliveryResult(accepted=False, error=f"provider unreachable: {exc}", transient=True)


def _twilio_send(
    session: requests.Session, message: OutgoingMessage, config: ProviderConfig
) -> DeliveryResult:
    sid = config.twilio_account_sid
    if not sid:
        return DeliveryResult(accepted=False, error="SMS/WhatsApp provider is not configured")
    if "SMS/WhatsApp token" in config.unreadable:
        return DeliveryResult(accepted=False, error=config.unreadable["SMS/WhatsApp token"])
    if message.channel == "whatsapp":
        to, sender = f"whatsapp:{message.to}", f"whatsapp:{config.twilio_whatsapp_from}"
    else:
        to, sender = message.to, config.twilio_sms_from
    url = f"{config.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    data = {"To": to, "From": sender, "Body": message.body}
    if message.status_callback:
        data["StatusCallback"] = message.status_callback
    response = _http_post(session, url, data=data, auth=(sid, config.twilio_auth_token))
    if isinstance(response, DeliveryResult):
        return response
    return _http_result(response, _json_field(response, "sid"))


def _fcm_send(
    session: requests.Session, message: OutgoingMessage, config: ProviderConfig
) -> DeliveryResult:
    project = config.fcm_project_id
    if not project:
        return DeliveryResult(accepted=False, error="mobile push provider is not configured")
    if "FCM credentials" in config.unreadable:
        return DeliveryResult(accepted=False, error=config.unreadable["FCM credentials"])
    url = f"{config.fcm_base_url.rstrip('/')}/v1/projects/{project}/messages:send"
    payload = {
        "message": {
            "token": message.to,
            "notification": {"title": message.subject, "body": message.body},
        }
    }
    response = _http_post(
        session,
        url,
        json=payload,
        headers={"Authorization": f"Bearer {config.fcm_access_token}"},
    )
    if isinstance(response, DeliveryResult):
        return response
    result = _http_result(response, _json_field(response, "name"))
    # FCM answers 404 (UNREGISTERED) for a token the app no longer holds.
    if response.status_code == 404:
        return DeliveryResult(accepted=False, error=result.error, gone=True)
    return result


def _webpush_send(
    session: requests.Session, message: OutgoingMessage, config: ProviderConfig
) -> DeliveryResult:
    """RFC 8030 push with an RFC 8291 (aes128gcm) encrypted payload and RFC 8292 VAPID."""
    from py_vapid import Vapid
    from pywebpush import WebPushException, webpush

    if not config.webpush_vapid_private_pem:
        reason = config.unreadable.get("VAPID key", "web push has no VAPID key yet")
        return DeliveryResult(accepted=False, error=reason)
    try:
        subscription = json.loads(message.to)
        endpoint = subscription["endpoint"]
        if not (subscription["keys"]["p256dh"] and subscription["keys"]["auth"]):
            raise ValueError("empty keys")
    except (ValueError, TypeError, KeyError) as exc:
        return DeliveryResult(accepted=False, error=f"the web push subscription is unusable: {exc}")
    payload = json.dumps(
        {"title": message.subject, "body": message.body, "reference": message.reference},
        ensure_ascii=False,
    )
    try:
        response = webpush(
            subscription,
            payload,
            vapid_private_key=Vapid.from_pem(config.webpush_vapid_private_pem.encode()),
            vapid_claims={"sub": config.webpush_subject},
            timeout=HTTP_TIMEOUT[1],
            ttl=config.webpush_ttl_seconds,
            requests_session=session,
        )
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (404, 410):
            return DeliveryResult(
                accepted=False, error=f"push service: subscription gone (HTTP {status})", gone=True
            )
        detail = exc.response.text[:500] if exc.response is not None else str(exc)
        return DeliveryResult(
            accepted=False,
            error=f"push service answered HTTP {status}: {detail}",
            transient=status is None or status >= 500 or status == 429,
        )
    except requests.RequestException as exc:
        return DeliveryResult(
            accepted=False, error=f"push service unreachable ({endpoint}): {exc}", transient=True
        )
    except (ValueError, TypeError) as exc:  # keys that are not base64url P-256 points
        return DeliveryResult(accepted=False, error=f"the web push subscription is unusable: {exc}")
    assert isinstance(response, requests.Response)
    return DeliveryResult(accepted=True, provider_id=response.headers.get("Location", "")[:200])


class _SmtpBatch:
    """One SMTP connection for the batch, reopened when the server drops it.

    Django's mail backend (EMAIL_BACKEND) opens, secures and logs in the connection; the
    message is built by `mime.email_bytes` and handed to its smtplib connection as bytes.
    A backend that is not an SMTP one (the test suite's in-memory backend) is given the
    same message as a Django email instead."""

    def __init__(self) -> None:
        self.connection = None
        self.sender = sanitize_address(settings.DEFAULT_FROM_EMAIL, settings.DEFAULT_CHARSET)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        try:
            to = message.to if mime.plain_address(message.to) else sanitize_address(
                message.to, settings.DEFAULT_CHARSET)  # fmt: skip
        except ValueError as exc:
            return DeliveryResult(accepted=False, error=f"recipient refused: {exc}")
        message_id = make_msgid()
        try:
            if self.connection is None:
                self.connection = get_connection(fail_silently=False, timeout=SMTP_TIMEOUT)
                self.connection.open()
            smtp = getattr(self.connection, "connection", None)
            if isinstance(smtp, smtplib.SMTP):
                data = mime.email_bytes(
                    sender=self.sender, to=to, subject=message.subject, text=message.body,
                    html=message.html or None, reference=message.reference, message_id=message_id,
                    date=formatdate(localtime=settings.EMAIL_USE_LOCALTIME),
                )  # fmt: skip
                smtp.sendmail(self.sender, [to], data)
            else:
                self.connection.send_messages([_django_email(message, message_id)])
        except smtplib.SMTPRecipientsRefused as exc:
            return DeliveryResult(accepted=False, error=f"recipient refused: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            self.close()
            return DeliveryResult(
                accepted=False,
                error=f"mail server answered {exc.smtp_code}: {exc.smtp_error!r}",
                transient=400 <= exc.smtp_code < 500,
            )
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self.close()
            return DeliveryResult(
                accepted=False, error=f"mail server unreachable: {exc}", transient=True
            )
        return DeliveryResult(accepted=True, provider_id=message_id)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # closing a broken connection: nothing left to save
                logger.debug("closing SMTP connection failed", exc_info=True)
            self.connection = None


def _django_email(message: OutgoingMessage, message_id: str) -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(
        subject=mime.one_line(message.subject),
        body=message.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to],
        headers={"X-Message-Reference": message.reference, "Message-ID": message_id},
    )
    if message.html:
        email.attach_alternative(message.html, "text/html")
    return email


def deliver_many(messages: list[OutgoingMessage]) -> list[DeliveryResult]:
    config = provider_config()
    if (
        any(message.channel == "webpush" for message in messages)
        and not config.webpush_vapid_private_pem
        and "VAPID key" not in config.unreadable
    ):
        from campaigns.delivery.services import vapid_keys_ensure

        vapid_keys_ensure()
        config = provider_config()
    results: list[DeliveryResult | None] = [None] * len(messages)
    emails = [n for n, message in enumerate(messages) if message.channel == "email"]
    for n, result in _deliver_emails([messages[n] for n in emails]):
        results[emails[n]] = result
    with requests.Session() as session:
        for n, message in enumerate(messages):
            if message.channel == "email":
                continue
            if message.channel in {"sms", "whatsapp"}:
                send = lambda m=message: _twilio_send(session, m, config)  # noqa: E731
            elif message.channel == "push":
                send = lambda m=message: _fcm_send(session, m, config)  # noqa: E731
            elif message.channel == "webpush":
                send = lambda m=message: _webpush_send(session, m, config)  # noqa: E731
            else:
                results[n] = DeliveryResult(
                    accepted=False, error=f"channel '{message.channel}' is not supported"
                )
                continue
            results[n] = _with_retries(send)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def _deliver_emails(messages: list[OutgoingMessage]) -> list[tuple[int, DeliveryResult]]:
    """Emails over a few SMTP connections at once, each reused for its share of the batch:
    most of a message's time is waiting for the server's replies (MAIL, RCPT, DATA), which
    the other connections fill. Returns (index in `messages`, result) pairs."""
    if not messages:
        return []
    lanes = max(1, min(int(settings.CAMPAIGN_SMTP_CONNECTIONS),
                       len(messages) // MESSAGES_PER_CONNECTION or 1))  # fmt: skip

    def lane(number: int) -> list[tuple[int, DeliveryResult]]:
        smtp = _SmtpBatch()
        try:
            return [
                (n, _with_retries(lambda m=messages[n]: smtp.send(m)))
                for n in range(number, len(messages), lanes)
            ]
        finally:
            smtp.close()

    if lanes == 1:
        return lane(0)
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="smtp") as pool:
        return [pair for share in pool.map(lane, range(lanes)) for pair in share]
