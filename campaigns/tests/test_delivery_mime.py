"""The campaign email as a mail server receives it (campaigns.delivery.mime), parsed back
by the standard library the way a mail client would."""

import pytest

from campaigns.delivery import OutgoingMessage, deliver_many
from campaigns.tests.servers import smtp_server


@pytest.fixture(autouse=True)
def real_smtp_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _send(settings, **fields):
    message = {"channel": "email", "to": "ann@example.com", "subject": "Hi", "body": "Hello",
               "html": None, "reference": "run-7-profile-8", **fields}  # fmt: skip
    with smtp_server() as (port, received):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        [result] = deliver_many([OutgoingMessage(**message)])
    return result, received


def test_a_plain_email_has_every_header_and_its_text(settings):
    settings.DEFAULT_FROM_EMAIL = "Shop News <news@example.com>"
    result, [mail] = _send(settings, subject="Spring sale", body="Hello Ann\n.\n..two dots")
    assert result.accepted and mail.message["Message-ID"] == result.provider_id
    assert mail.mail_from == "news@example.com" and mail.rcpt_tos == ["ann@example.com"]
    message = mail.message
    assert message["From"] == "Shop News <news@example.com>"
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == "Spring sale"
    assert message["X-Message-Reference"] == "run-7-profile-8"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    # A line of a single dot would end the SMTP data early if it were not escaped.
    assert message.get_content().splitlines() == ["Hello Ann", ".", "..two dots"]


def test_unicode_long_lines_and_html_survive_as_multipart_alternative(settings):
    long_line = "x" * 2000  # longer than a mail line may be: sent quoted-printable
    html = "<p>Hallo Zoë &lt;b&gt;</p>"
    result, [mail] = _send(settings, subject="Grüße, Zoë 日本 " + "sale " * 30,
                           body=f"Hallo Zoë\n{long_line}", html=html)  # fmt: skip
    assert result.accepted
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Grüße, Zoë 日本 " + "sale " * 30
    assert message.get_body(("plain",)).get_content().splitlines() == ["Hallo Zoë", long_line]
    assert message.get_body(("html",)).get_content().strip() == html
    assert all(len(line) <= 998 for line in message.as_bytes().splitlines())


def test_a_line_break_in_the_subject_cannot_add_a_header(settings):
    result, [mail] = _send(settings, subject="Hi Ann\r\nBcc: everyone@example.com")
    assert result.accepted
    assert mail.message["Bcc"] is None
    assert mail.message["Subject"] == "Hi Ann Bcc: everyone@example.com"


def test_an_address_that_is_not_one_address_is_refused_and_the_next_goes_out(settings):
    addresses = ["ann@example.com, eve@example.com", "Zoë <zoe@exämple.com>", "bob@example.com"]
    messages = [
        OutgoingMessage(channel="email", to=to, subject="Hi", body="Hello", html=None,
                        reference=f"ref-{n}")
        for n, to in enumerate(addresses)
    ]  # fmt: skip
    with smtp_server() as (port, received):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        refused, named, plain = deliver_many(messages)
    assert not refused.accepted and "recipient refused" in refused.error
    assert named.accepted and plain.accepted
    assert [mail.rcpt_tos for mail in received] == [["zoe@xn--exmple-cua.com"],
                                                    ["bob@example.com"]]  # fmt: skip
