"""Validation and normalization of profile and event data (no ORM).

One implementation of CleverTap's rules, used by the SDK-style services, the
REST API and the imports. Errors carry CleverTap's codes and messages
(shared reference: clevertap-api-facts.md) so every channel reports alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from profiles.rules.identifiers import IdentifierTextError, identifier_text

MAX_KEY_BYTES = 120
MAX_VALUE_BYTES = 512
MAX_CUSTOM_PROFILE_KEYS = 256
MAX_EVENT_PROPERTIES = 256
MAX_EVENT_NAMES = 512
MAX_LIST_ITEMS = 100
MAX_CHARGED_ITEMS = 256
MAX_IDENTIFIER_CHARS = 120
MAX_EMAIL_CHARS = 254  # RFC 5321's path limit, and Profile.email's column
MAX_CLIENT_EVENT_ID_CHARS = 128
FORBIDDEN_KEY_CHARACTERS = set("%><!|&.:;$'\"\\#")
DATE_PREFIX = "$D_"
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9()!:@$_\-]{1,64}$")

RESERVED_EVENT_NAMES = frozenset(
    {
        "Notification Sent", "Notification Viewed", "Notification Clicked",
        "Notification Delivered", "Notification Replied", "UTM Visited", "App Launched",
        "App Uninstalled", "App Version Changed", "Stayed", "Reply Sent",
        "Experiment Rendered", "Reachable By", "Identity Reset", "Identity Set",
        "Identity Error",
    }
)  # fmt: skip


class ErrorCode:
    EVENT_NAME_MANDATORY = 509
    EVENT_STRUCTURE = 512
    RESTRICTED_EVENT_NAME = 513
    GENDER = 514
    EMAIL = 515
    PHONE = 516
    EMPLOYED = 517
    EDUCATION = 518
    MARRIED = 519
    AGE = 520
    EVENT_PROPERTIES_LIMIT = 522
    IDENTITY_MISSING = 523
    NOT_EVENT_OR_PROFILE = 524
    TIMESTAMP = 525
    OBJECT_ID = 526
    MISC = 555


class RecordError(Exception):
    """A record refused with CleverTap's code and message; nothing of it is stored."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RecordError({self.code}, {self.message!r})"


class IdentifierHeldByAnother(RecordError):
    """The never-merge refusal: the record gives a profile an identifier another
    profile holds. Carries the identifier's kind, so a caller can name the key."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(
            ErrorCode.MISC,
            f"{kind.capitalize()} '{value}' belongs to another profile; profiles are never merged.",
        )
        self.kind = kind
        self.value = value


class IdentifiersOfDifferentProfiles(RecordError):
    """The never-merge refusal of a record naming its person by identifiers that
    different profiles hold."""

    def __init__(self, held: Iterable[tuple[str, str]]) -> None:
        named = ", ".join(sorted(f"{kind} '{value}'" for kind, value in held))
        super().__init__(
            ErrorCode.MISC,
            f"Identifiers {named} belong to different profiles; profiles are never merged.",
        )


def client_event_id_check(raw: object) -> str | None:
    """A record's client event id (`evtId`: a retry with the same id stores nothing)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
        raise RecordError(ErrorCode.EVENT_STRUCTURE, "evtId must be a non-empty string.")
    value = str(raw).strip()
    if len(value) > MAX_CLIENT_EVENT_ID_CHARS:
        raise RecordError(
            ErrorCode.EVENT_STRUCTURE,
            f"evtId is longer than {MAX_CLIENT_EVENT_ID_CHARS} characters.",
        )
    return value


def profile_error(code: int, detail: str) -> RecordError:
    return RecordError(code, f"Profile data is incorrect. {detail}")


# --- identifiers -----------------------------------------------------------


class _EmailValidator(EmailValidator):
    """Django's email rules, with its lazily compiled patterns compiled once here:
    each use of a lazy pattern goes through a proxy object, which showed up as a
    few per cent of a bulk import's CPU time."""

    user_regex = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)
    domain_regex = re.compile(
        EmailValidator.domain_regex.pattern, EmailValidator.domain_regex.flags
    )
    literal_regex = re.compile(
        EmailValidator.literal_regex.pattern, EmailValidator.literal_regex.flags
    )


validate_email = _EmailValidator()


def normalize_email(raw: object) -> str:
    if not isinstance(raw, str):
        raise profile_error(ErrorCode.EMAIL, "Email is not valid.")
    try:
        email = identifier_text(raw).lower()
    except IdentifierTextError as error:
        raise profile_error(ErrorCode.EMAIL, f"Email {error}") from None
    if len(email) > MAX_EMAIL_CHARS or not _email_valid(email):
        raise profile_error(ErrorCode.EMAIL, "Email is not valid.")
    return email


@functools.lru_cache(maxsize=32_768)  # as _phone_e164: a bulk write checks a value twice
def _email_valid(email: str) -> bool:
    try:
        validate_email(email)
    except ValidationError:
        return False
    return True


def normalize_phone(raw: object, default_region: str | None = None) -> str:
    """E.164, e.g. "+14155551234". Numbers without "+" use the default region."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise profile_error(ErrorCode.PHONE, "Phone is not valid.")
    if default_region is None:
        from django.conf import settings

        default_region = settings.PHONE_DEFAULT_REGION
    e164 = _phone_e164(raw.strip(), default_region)
    if e164 is None:
        raise profile_error(ErrorCode.PHONE, "Phone is not valid.")
    return e164


# Checking a number was the largest single cost of importing a file of new people with
# phones (phonenumbers' parser: 25-60 µs a number; the plain path below: ~6 µs). A bulk
# write asks about the same value more than once (the lookup of who holds it, then the
# row's validation), so each distinct value is parsed once. Bounded (emptied when
# full): a few chunks' worth of values, a few MB. An import that checks a chunk's cells
# in another process hands that process's results over (phone_cache_take /
# phone_cache_put): the same function's answers, not a shortcut.
PHONE_CACHE_SIZE = 32_768
_phone_cache: dict[tuple[str, str], str | None] = {}


def _phone_e164(text: str, default_region: str) -> str | None:
    """E.164 of a trimmed phone number, None when it is not a valid number."""
    key = (text, default_region)
    try:
        return _phone_cache[key]
    except KeyError:
        pass
    e164 = _phone_e164_uncached(text, default_region)
    if len(_phone_cache) >= PHONE_CACHE_SIZE:
        _phone_cache.clear()
    _phone_cache[key] = e164
    return e164


def _phone_e164_uncached(text: str, default_region: str) -> str | None:
    """_phone_e164 without the cache: "00" is an international prefix everywhere."""
    if text.startswith("00"):
        text = "+" + text[2:]
    if len(text) <= _PHONE_MAX_INPUT and _PHONE_PLAIN.fullmatch(text):
        return _plain_phone_e164(text.translate(_PHONE_SEPARATORS), default_region)
    return _parsed_phone_e164(text, default_region)


def _parsed_phone_e164(text: str, default_region: str) -> str | None:
    """The general path: phonenumbers' parser, for anything beyond digits and separators."""
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_cache_take() -> dict[tuple[str, str], str | None]:
    """The numbers parsed since the last take (and forget them here)."""
    taken = dict(_phone_cache)
    _phone_cache.clear()
    return taken


def phone_cache_put(entries: dict[tuple[str, str], str | None]) -> None:
    """Remember numbers _phone_e164 parsed in another process."""
    if len(_phone_cache) + len(entries) > PHONE_CACHE_SIZE:
        _phone_cache.clear()
    _phone_cache.update(entries)


# Nearly every number in a file is digits, a "+" and the separators below. For those,
# phonenumbers.parse's work (RFC 3966, extensions, letters, unicode digits, punctuation
# rules) cannot change the outcome, and what remains is a few steps on the digits and
# the region's metadata: _plain_phone_e164 takes those steps, in parse's order and with
# its rules, on patterns compiled once per region (parse recompiles, and is_valid_number
# types the number twice). The result is the same as _parsed_phone_e164's for every
# input (profiles/tests/test_phone_equivalence.py compares them over every region's
# example numbers in many written forms).
_PHONE_SEPARATORS = str.maketrans("", "", " -().")
# At least three digits (fewer: parse's own viability rules); a "+" only first, as
# parse reads "(+44) ..." with the default region and "+44 ..." without one.
_PHONE_PLAIN = re.compile(r"\+?(?:[ ().\-]*[0-9]){3,}[ ().\-]*")
_PHONE_MAX_INPUT = 250  # parse refuses longer text
_COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@dataclass(frozen=True, slots=True)
class _NumberDesc:
    """A PhoneNumberDesc: lengths (empty: any) and the national number pattern."""

    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    def matches(self, nsn: str) -> bool:
        if self.lengths and len(nsn) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None

    def pattern_matches(self, nsn: str) -> bool:  # parse's checks ignore the lengths
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None


@dataclass(frozen=True, slots=True)
class _RegionPlan:
    """One region's (or non-geographic code's) metadata, as the plain path uses it."""

    country_code: int
    general: _NumberDesc
    local_only_lengths: frozenset[int]
    types: tuple[_NumberDesc, ...]  # a number matching none of them has no type: invalid
    leading_digits: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    national_prefix_transform: str | None

    def possible_length(self, nsn: str) -> bool:
        """Whether parse keeps a number stripped of its national prefix: not when it is
        too short, of a local-only length, or of one between the possible lengths (too
        long is kept). phonenumbers keeps the lengths sorted: max is its last."""
        lengths = self.general.lengths
        return len(nsn) not in self.local_only_lengths and (
            len(nsn) in lengths or len(nsn) > max(lengths)
        )

    def too_long(self, nsn: str) -> bool:
        return len(nsn) not in self.local_only_lengths and len(nsn) > max(self.general.lengths)

    def strip_national_prefix(self, number: str) -> str:
        """phonenumbers' national prefix (and carrier code) stripping."""
        match = self.national_prefix.match(number) if self.national_prefix and number else None
        if match is None:
            return number
        groups = match.groups()
        if not self.national_prefix_transform or groups[-1] is None:
            stripped = number[match.end() :]
        else:
            stripped = self.national_prefix.sub(self.national_prefix_transform, number, count=1)
        if self.general.pattern_matches(number) and not self.general.pattern_matches(stripped):
            return number
        return stripped

    def valid(self, nsn: str) -> bool:
        return self.general.matches(nsn) and any(desc.matches(nsn) for desc in self.types)


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern)


@functools.cache
def _region_plan(country_code: int, region: str) -> _RegionPlan | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None

    def desc(number_desc: phonenumbers.PhoneNumberDesc) -> _NumberDesc:
        # An empty national number pattern matches nothing in phonenumbers.
        pattern = number_desc.national_number_pattern or None
        return _NumberDesc(frozenset(number_desc.possible_length), _compiled(pattern))

    # The types phonenumbers tries (its _number_type_helper); mobile only when its pattern
    # differs from fixed line's.
    types = [
        metadata.fixed_line, metadata.premium_rate, metadata.toll_free, metadata.shared_cost,
        metadata.voip, metadata.personal_number, metadata.pager, metadata.uan,
        metadata.voicemail,
    ]  # fmt: skip
    if not metadata.same_mobile_and_fixed_line_pattern:
        types.insert(0, metadata.mobile)
    return _RegionPlan(
        country_code=metadata.country_code,
        general=desc(metadata.general_desc),
        local_only_lengths=frozenset(metadata.general_desc.possible_length_local_only),
        types=tuple(desc(number_desc) for number_desc in types if number_desc is not None),
        leading_digits=_compiled(metadata.leading_digits),
        international_prefix=_compiled(metadata.international_prefix),
        national_prefix=_compiled(metadata.national_prefix_for_parsing or None),
        national_prefix_transform=metadata.national_prefix_transform_rule,
    )


@functools.cache
def _country_plan(country_code: int) -> _RegionPlan:
    """The plan parse uses for a country code: its main region's (or non-geographic)."""
    plan = _region_plan(country_code, phonenumbers.region_code_for_country_code(country_code))
    assert plan is not None  # the code comes from phonenumbers' own table
    return plan


def _split_country_code(digits: str) -> tuple[int, str] | None:
    """The leading country code (the shortest known one) and the rest."""
    for length in (1, 2, 3):
        if digits[:length] in _COUNTRY_CODES:
            return int(digits[:length]), digits[length:]
    return None


def _plain_phone_e164(digits: str, default_region: str) -> str | None:
    """_parsed_phone_e164 for "+" and digits, or digits alone (at least three)."""
    if digits[0] == "+":
        found = _split_country_code(digits[1:])
        if found is None:
            return None
        country_code, nsn = found
        plan = _country_plan(country_code)
    else:
        if default_region not in phonenumbers.SUPPORTED_REGIONS:
            return None
        default = _region_plan(phonenumbers.country_code_for_region(default_region), default_region)
        assert default is not None
        idd = default.international_prefix.match(digits) if default.international_prefix else None
        if idd and digits[idd.end() : idd.end() + 1] != "0":  # the region's "00", "011"...
            if len(digits) - idd.end() <= 2:
                return None
            found = _split_country_code(digits[idd.end() :])
            if found is None:
                return None
            country_code, nsn = found
            plan = _country_plan(country_code)
        else:
            # The default region's country code written without "+" is taken as one when
            # the rest fits the region better (or the whole is too long for it).
            country_code, nsn, plan = default.country_code, digits, default
            code = str(country_code)
            if digits.startswith(code):
                rest = default.strip_national_prefix(digits[len(code) :])
                general = default.general
                if (
                    not general.pattern_matches(digits) and general.pattern_matches(rest)
                ) or default.too_long(digits):
                    nsn, plan = rest, _country_plan(country_code)
    if len(nsn) < 2:
        return None
    stripped = plan.strip_national_prefix(nsn)
    if plan.possible_length(stripped):
        nsn = stripped
    if not 2 <= len(nsn) <= 17 or not _valid_number(country_code, nsn):
        return None
    # The national significant number keeps its leading zeros (italian_leading_zero), so
    # this is format_number's E.164.
    return f"+{country_code}{nsn}"


def _valid_number(country_code: int, nsn: str) -> bool:
    """is_valid_number: valid for the region the number belongs to."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
    if len(regions) == 1:
        plan = _region_plan(country_code, regions[0])
        return plan is not None and plan.valid(nsn)
    for region in regions:  # a shared code (+1, +7, +44...): the first region that claims it
        plan = _region_plan(country_code, region)
        if plan is None:
            continue
        if plan.leading_digits is not None:
            if plan.leading_digits.match(nsn):
                return plan.valid(nsn)
        elif plan.valid(nsn):
            return True
    return False


def normalize_identity(raw: object, *, label: str = "identity") -> str:
    """The customer's user id (or FBID / GPID): a string or number, trimmed, in NFC,
    under 120 chars, without control or bidi characters (rules.identifiers)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
    if "\x00" in (value := str(raw)):
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
    try:
        value = identifier_text(value)
    except IdentifierTextError as error:
        raise RecordError(ErrorCode.IDENTITY_MISSING, f"'{label}' {error}") from None
    if not value or len(value) >= MAX_IDENTIFIER_CHARS:
        raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
    return value


IDENTITY_MISSING_MESSAGE = (
    "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars"
    " to identify the user."
)


def normalize_device_id(raw: object) -> str:
    if not isinstance(raw, str) or not DEVICE_ID_PATTERN.match(raw):
        raise RecordError(ErrorCode.OBJECT_ID, "objectId is invalid.")
    return raw


def normalize_identifier(kind: str, raw: object) -> str:
    if kind == "email":
        return normalize_email(raw)
    if kind == "phone":
        return normalize_phone(raw)
    return normalize_identity(raw, label=_IDENTIFIER_LABELS.get(kind, kind))


_IDENTIFIER_LABELS = {"fbid": "FBID", "gpid": "GPID"}


# --- values ----------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # the same few keys on every record of a bulk import
def validate_key(key: object, *, what: str = "Property") -> str:
    if not isinstance(key, str) or not key.strip():
        raise RecordError(ErrorCode.MISC, f"{what} name must be a non-empty string.")
    reject_nul(f"{what} name", key)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise RecordError(ErrorCode.MISC, f"{what} name '{key[:40]}…' is longer than 120 bytes.")
    bad = sorted(set(key) & FORBIDDEN_KEY_CHARACTERS)
    if bad:
        raise RecordError(
            ErrorCode.MISC, f"{what} name '{key}' contains characters not allowed: {' '.join(bad)}"
        )
    return key


def reject_nul(what: str, value: str) -> None:
    """PostgreSQL text cannot hold NUL: refuse it here, per record, not in the database."""
    if "\x00" in value:
        raise RecordError(ErrorCode.MISC, f"{what} contains a NUL character.")


def check_value_length(key: str, value: str) -> None:
    reject_nul(f"Value of '{key}'", value)
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise RecordError(ErrorCode.MISC, f"Value of '{key}' is longer than 512 bytes.")


def parse_date(raw: object) -> dt.datetime | None:
    """`$D_<epoch seconds>` -> aware UTC datetime; None when `raw` is not one."""
    if isinstance(raw, str) and raw.startswith(DATE_PREFIX):
        try:
            seconds = int(raw[len(DATE_PREFIX) :])
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise RecordError(ErrorCode.MISC, f"'{raw}' is not a valid $D_<epoch> date.") from None
    return None


def format_date(moment: dt.datetime) -> str:
    """Dates in JSON are fixed-width ISO-8601 UTC, so they compare as text."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def value_type(value: object) -> str:
    """The PropertyType of a plain (already date-converted) value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dt.datetime):
        return "date"
    return "string"


def coerce_scalar(key: str, raw: object) -> object:
    """A plain value as stored: numbers, booleans, strings, datetimes for dates."""
    date = parse_date(raw)
    if date is not None:
        return date
    if isinstance(raw, float) and not math.isfinite(raw):
        raise RecordError(ErrorCode.MISC, f"Value of '{key}' is not a finite number.")
    if isinstance(raw, bool | int | float):
        return raw
    if isinstance(raw, str):
        check_value_length(key, raw)
        return raw
    if raw is None:
        raise RecordError(ErrorCode.MISC, f"Value of '{key}' is empty; use {{\"$delete\": true}}.")
    raise RecordError(ErrorCode.MISC, f"Value of '{key}' must be a string, number or boolean.")


def clean_list(key: str, raw: object) -> list[str]:
    """A multi-value list: unique strings, each ≤512 bytes, the newest 100 kept."""
    items = raw if isinstance(raw, list) else [raw]
    cleaned: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise RecordError(ErrorCode.MISC, f"Values of '{key}' must be strings.")
        text = str(item)
        check_value_length(key, text)
        if text in cleaned:
            cleaned.remove(text)
        cleaned.append(text)
    return cleaned[-MAX_LIST_ITEMS:]


# --- default profile properties --------------------------------------------

GENDERS = {
    "m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O", "others": "O",
    "u": "U", "unknown": "U",
}  # fmt: skip
YES_NO = {"y": True, "yes": True, "true": True, "n": False, "no": False, "false": False}
EDUCATION = {"school": "School", "college": "College", "graduate": "Graduate"}


def _yes_no(raw: object, code: int, message: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in YES_NO:
        return YES_NO[raw.strip().lower()]
    raise profile_error(code, message)


def _boolean(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in YES_NO:
        return YES_NO[raw.strip().lower()]
    raise profile_error(ErrorCode.MISC, f"{key} needs to be true or false.")


def _dob(raw: object) -> dt.date:
    date = parse_date(raw)
    if date is not None:
        return date.date()
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw.strip()[:10])
        except ValueError:
            pass
    raise profile_error(ErrorCode.MISC, "DOB needs to be a date ($D_<epoch> or YYYY-MM-DD).")


def _text(key: str, limit: int) -> Any:
    def clean(raw: object) -> str:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise profile_error(ErrorCode.MISC, f"{key} needs to be a string.")
        text = str(raw).strip()
        reject_nul(key, text)
        if len(text.encode()) > limit:
            raise profile_error(ErrorCode.MISC, f"{key} is longer than {limit} bytes.")
        return text

    return clean


def _gender(raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in GENDERS:
        return GENDERS[raw.strip().lower()]
    raise profile_error(ErrorCode.GENDER, "Gender needs to be M/F.")


def _education(raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in EDUCATION:
        return EDUCATION[raw.strip().lower()]
    raise profile_error(ErrorCode.EDUCATION, "Education needs to be School/College/Graduate.")


def _age(raw: object) -> int:
    try:
        age = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise profile_error(ErrorCode.AGE, "Age is invalid.") from None
    if isinstance(raw, bool) or not 0 < age < 150 or (isinstance(raw, float) and raw != age):
        raise profile_error(ErrorCode.AGE, "Age is invalid.")
    return age


@dataclass(frozen=True)
class DefaultProperty:
    key: str  # as clients send it
    field: str  # Profile model field
    clean: Any


DEFAULT_PROPERTIES: dict[str, DefaultProperty] = {
    prop.key.lower(): prop
    for prop in [
        DefaultProperty("Name", "name", _text("Name", MAX_VALUE_BYTES)),
        DefaultProperty("Email", "email", normalize_email),
        DefaultProperty("Phone", "phone", normalize_phone),
        DefaultProperty("Gender", "gender", _gender),
        DefaultProperty("DOB", "dob", _dob),
        DefaultProperty("Language", "language", _text("Language", 64)),
        DefaultProperty("tz", "tz", _text("tz", 64)),
        DefaultProperty("Photo", "photo", _text("Photo", MAX_VALUE_BYTES)),
        DefaultProperty(
            "Employed", "employed",
            lambda raw: _yes_no(raw, ErrorCode.EMPLOYED, "Employed needs to be Y/N."),
        ),
        DefaultProperty("Education", "education", _education),
        DefaultProperty(
            "Married", "married",
            lambda raw: _yes_no(raw, ErrorCode.MARRIED, "Married needs to be Y/N."),
        ),
        DefaultProperty("MSG-email", "msg_email", lambda raw: _boolean("MSG-email", raw)),
        DefaultProperty("MSG-push", "msg_push", lambda raw: _boolean("MSG-push", raw)),
        DefaultProperty("MSG-sms", "msg_sms", lambda raw: _boolean("MSG-sms", raw)),
        DefaultProperty("MSG-whatsapp", "msg_whatsapp", lambda raw: _boolean("MSG-whatsapp", raw)),
    ]
}  # fmt: skip

# Keys that name the person rather than describe them (identifier kinds).
IDENTIFIER_KEYS = {"identity": "identity", "email": "email", "phone": "phone",
                   "fbid": "fbid", "gpid": "gpid"}  # fmt: skip
# Derived from DOB; accepted for compatibility and validated, never stored.
DERIVED_KEYS = {"age": _age}
DEFAULT_FIELD_LABELS = {prop.field: prop.key for prop in DEFAULT_PROPERTIES.values()}
