"""JSON from outside (API bodies, query parameters, segment definitions), parsed so that
nothing in it can fail later, in Python or in PostgreSQL.

`json.loads` accepts text that we cannot store or even compute with: lone UTF-16
surrogates (`"\\ud800"`: valid JSON, not encodable as UTF-8), NUL (PostgreSQL text
refuses it), integers beyond Python's 4,300-digit conversion limit (a ValueError, not a
JSONDecodeError), floats that overflow to infinity, and the non-standard NaN/Infinity.
`loads` turns every one of them into a `JsonInputError` with a message for the caller;
`parse` leaves them in place (numbers as `OutOfRange` markers) so that a caller holding
a list of records (upload) can refuse just the records that carry them, by
`unstorable_reason`, and keep the others.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

# Enough for any id or amount anyone sends; far below Python's int-conversion limit.
MAX_INTEGER_DIGITS = 300
NUL_MESSAGE = "Values must not contain the NUL character (\\u0000)."
SURROGATE_MESSAGE = (
    "Values must be valid Unicode: a lone surrogate escape (such as \\ud800) cannot be stored."
)


class JsonInputError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OutOfRange:
    """A number that was in the JSON text but cannot be stored or computed with."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"OutOfRange({self.text[:20]!r})"

    @property
    def message(self) -> str:
        shown = self.text if len(self.text) <= 24 else f"{self.text[:20]}… ({len(self.text)} chars)"
        return (
            f"The number {shown} is out of range: numbers must be finite, with at most "
            f"{MAX_INTEGER_DIGITS} digits."
        )


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unstorable_reason(value: Any) -> str | None:
    """Why a decoded JSON value cannot be stored (NUL, lone surrogate, out-of-range
    number in any key or value), or None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_MESSAGE
        return SURROGATE_MESSAGE if _has_lone_surrogate(value) else None
    if isinstance(value, OutOfRange):
        return value.message
    if isinstance(value, dict):
        for key, item in value.items():
            reason = unstorable_reason(key) or unstorable_reason(item)
            if reason:
                return reason
        return None
    if isinstance(value, list):
        for item in value:
            reason = unstorable_reason(item)
            if reason:
                return reason
    return None


@dataclass(frozen=True)
class Parsed:
    data: Any
    # False when no value can be unstorable, so callers may skip `unstorable_reason`.
    may_hold_unstorable: bool


def parse(raw: str | bytes, *, what: str = "the request body") -> Parsed:
    """Parse JSON from outside, leaving unstorable values in place (numbers out of range as
    `OutOfRange`) for a caller that refuses them one record at a time. Raises
    JsonInputError for malformed text or nesting too deep."""
    out_of_range: list[OutOfRange] = []

    def out(text: str) -> OutOfRange:
        marker = OutOfRange(text)
        out_of_range.append(marker)
        return marker

    def parse_int(text: str) -> int | OutOfRange:
        return out(text) if len(text.lstrip("-")) > MAX_INTEGER_DIGITS else int(text)

    def parse_float(text: str) -> float | OutOfRange:
        if len(text) > MAX_INTEGER_DIGITS + 40:
            return out(text)
        value = float(text)
        return value if math.isfinite(value) else out(text)

    try:
        # Strict UTF-8 (json.loads would let encoded surrogates through on bytes).
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=out)
    except UnicodeDecodeError:
        raise JsonInputError(f"The JSON in {what} is not valid UTF-8.") from None
    except json.JSONDecodeError as error:
        raise JsonInputError(
            f"{what[:1].upper()}{what[1:]} is not valid JSON (line {error.lineno}, column "
            f"{error.colno}): {error.msg}."
        ) from None
    except RecursionError:
        raise JsonInputError(f"The JSON in {what} is nested too deeply.") from None
    # NUL and lone surrogates can only arrive as \u escapes in JSON text.
    escapes = text.lower()
    suspicious = bool(out_of_range) or "\\u0000" in escapes or "\\ud" in escapes
    return Parsed(data, suspicious)


def loads(raw: str | bytes, *, what: str = "the request body") -> Any:
    """Parse JSON from outside; JsonInputError for anything malformed, nested too deeply,
    or holding a value that cannot be stored."""
    parsed = parse(raw, what=what)
    if parsed.may_hold_unstorable:
        reason = unstorable_reason(parsed.data)
        if reason:
            raise JsonInputError(reason)
    return parsed.data


class EchoEncoder(DjangoJSONEncoder):
    """Answers that echo a refused record back: an out-of-range number is shown as the
    start of its text (a string), not as a number nobody can read."""

    def default(self, o: Any) -> Any:
        if isinstance(o, OutOfRange):
            return o.text if len(o.text) <= 40 else f"{o.text[:40]}…"
        return super().default(o)
