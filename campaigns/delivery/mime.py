"""A campaign email as the bytes an SMTP server receives, built directly.

The message Django's `EmailMultiAlternatives` made, with the same headers (Subject, From,
To, Date, Message-ID, X-Message-Reference, MIME-Version) and structure (text/plain, or
multipart/alternative with a text/html part), for a tenth of its cost: a send builds
hundreds of these a second, and the email package's generic header folding and
generator were most of a message's time. Pure code, no Django.
"""

from __future__ import annotations

import re
import secrets
from email.header import Header
from email.quoprimime import body_encode

CRLF = "\r\n"
# RFC 5322 allows 998 characters per line; longer text is sent quoted-printable.
MAX_LINE = 998
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# An address we can put in the headers and the envelope as it is (no display name, no
# quoting, an ASCII domain); anything else goes through `sanitize` (Django's rules).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def plain_address(address: str) -> bool:
    return _PLAIN_ADDRESS.fullmatch(address) is not None


def one_line(value: str) -> str:
    """A line break in a header value (a profile property with a newline in the subject)
    would end the header and start another: each becomes a space."""
    return _LINE_BREAK.sub(" ", value)


def header_value(name: str, value: str) -> str:
    """An unstructured header's value: as it is when it is short ASCII, else RFC 2047
    encoded and folded; on one line either way (`one_line`)."""
    value = one_line(value)
    if value.isascii() and len(name) + len(value) < 76:
        return value
    return Header(value, "utf-8" if not value.isascii() else "us-ascii",
                  header_name=name).encode(linesep=CRLF)  # fmt: skip


def _text_part(text: str, subtype: str) -> tuple[str, str]:
    """(headers, body) of a text part with CRLF line ends: 7bit when it can be, else
    quoted-printable (7-bit clean, so no server needs 8BITMIME)."""
    lines = _LINE_BREAK.split(text)
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, body = "7bit", CRLF.join(lines)
    else:
        # quoprimime encodes characters as single bytes: give it the UTF-8 bytes as latin-1.
        utf8 = CRLF.join(lines).encode("utf-8").decode("latin-1")
        encoding, body = "quoted-printable", body_encode(utf8, maxlinelen=76, eol=CRLF)
    headers = (f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
               f"Content-Transfer-Encoding: {encoding}{CRLF}")  # fmt: skip
    return headers, body


def email_bytes(*, sender: str, to: str, subject: str, text: str, html: str | None,
                reference: str, message_id: str, date: str) -> bytes:  # fmt: skip
    """The whole message. `sender` and `to` are header-ready addresses (see
    `plain_address`); `date` an RFC 5322 date, `message_id` with its angle brackets."""
    common = (
        f"MIME-Version: 1.0{CRLF}"
        f"Subject: {header_value('Subject', subject)}{CRLF}"
        f"From: {sender}{CRLF}"
        f"To: {to}{CRLF}"
        f"Date: {date}{CRLF}"
        f"Message-ID: {message_id}{CRLF}"
        f"X-Message-Reference: {header_value('X-Message-Reference', reference)}{CRLF}"
    )
    text_headers, text_body = _text_part(text, "plain")
    if html is None:
        return f"{text_headers}{common}{CRLF}{text_body}".encode("ascii")
    html_headers, html_body = _text_part(html, "html")
    boundary = "=_" + secrets.token_hex(16)
    while boundary in text_body or boundary in html_body:  # 7bit text could hold anything
        boundary = "=_" + secrets.token_hex(16)
    return (
        f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{common}{CRLF}'
        f"--{boundary}{CRLF}{text_headers}{CRLF}{text_body}{CRLF}"
        f"--{boundary}{CRLF}{html_headers}{CRLF}{html_body}{CRLF}"
        f"--{boundary}--{CRLF}"
    ).encode("ascii")
