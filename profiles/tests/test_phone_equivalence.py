"""Phone validation gives phonenumbers' answer for every input, on its plain path too.

The reference is phonenumbers used plainly (parse, is_valid_number, format E.164), as
profiles.properties did before it took digits-and-separators input on a path of its own.
Inputs: every region's example number of every type (and its invalid example), each
written in many ways a file may hold them, read with several default regions, plus
random digit strings and strings that are not numbers at all.
"""

import random
import re

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from profiles.properties import _PHONE_PLAIN, _phone_e164_uncached

# Demo data's countries, a national prefix that rewrites (AR), leading zeros (IT), and
# regions sharing a country code with another (CA, JE, KZ).
DEFAULT_REGIONS = ("US", "GB", "IN", "DE", "BR", "MX", "ES", "NG",
                   "AR", "IT", "CA", "RU", "JE", "KZ")  # fmt: skip
# Not regions phonenumbers reads numbers for: only "+" numbers can be valid.
ODD_REGIONS = ("ZZ", "us", "001", "")
NUMBER_TYPES = [
    value for name, value in vars(PhoneNumberType).items() if name.isupper() and value != 99
]


def reference(text: str, default_region: str) -> str | None:
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def example_numbers() -> list[tuple[phonenumbers.PhoneNumber, str]]:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in NUMBER_TYPES:
            number = phonenumbers.example_number_for_type(region, number_type)
            if number is not None:
                numbers.append((number, region))
        invalid = phonenumbers.invalid_example_number(region)
        if invalid is not None:
            numbers.append((invalid, region))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append((number, "001"))
    return numbers


def written_forms(number: phonenumbers.PhoneNumber) -> tuple[list[str], list[str]]:
    """The number as people write it: international forms, and national ones."""
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    spaced = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    nsn = phonenumbers.national_significant_number(number)
    code = str(number.country_code)
    national_digits = re.sub(r"\D", "", national)
    international = [
        e164,
        spaced,
        spaced.replace(" ", "-"),
        spaced.replace(" ", "."),
        f"+{code} ({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}",
        f"+{code} (0){nsn}",  # a national prefix kept after the code
        f"+{code}0{nsn}",
        "00" + e164[1:],
        "00 " + spaced[1:],
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
        f"tel: {spaced}",
        f"{spaced} ext. 12",
        f"{spaced} x12",
        "++" + e164[1:],
        "+" + e164,
        e164[:-1],  # truncated
        e164[:-2],
        e164 + "1",  # one digit too many
        e164 + "12",
        e164.replace("1", "\uff11"),  # full-width digits
        f"{e164}, {e164}",
        e164 + "abc",
    ]
    national_forms = [
        national,
        national_digits,
        nsn,
        code + nsn,  # the country code without its "+"
        code + national_digits,
        f"({code}) {nsn}",
        f"(+{code}) {nsn}",  # "+" after a separator: read with the default region
        f"(+0{code}) {nsn}",
        "011" + code + nsn,  # US's international prefix
        "0011" + code + nsn,  # Australia's
        "810" + code + nsn,  # Russia's
        "011 0" + nsn,
        national[:-1],
        national_digits[:-1],
        national + "0",
        national_digits + "12",
        national.replace(" ", ""),
        f"{national} #",
        f"({national})",
        f" - {national} - ",
        "1" + national_digits,
        "0" + national_digits,
    ]
    return international, national_forms


NOT_NUMBERS = [
    "", " ", "+", "++", "-", "()", "0", "00", "000", "0000", "+0", "+00", "+00123",
    "12", "1 2", "123", "+12", "+123", "+1", "+1 415", "abc", "phone", "1-800-FLOWERS",
    "+1 800 FLOWERS", "tel:+1-415-555-2671", "tel:415-555-2671;phone-context=+1",
    "+1 415 555 2671;ext=12", "+1 415 555 2671 #12", "415-555-2671/x12",
    "\u0664\u0661\u0665\u0665\u0665\u0665\u0662\u0666\u0667\u0661",  # arabic-indic digits
    "+1" + "2" * 300, "1" * 251, "+" + "9" * 17, "+" + "9" * 18, "9" * 30,
    "(+0044) 7911 123456", "(00) 44 7911 123456", "+-44 7911 123456", "+(44) 7911 123456",
    "+44 (0) 7911 123456", "+44)7911(123456", "0044 07911 123456", "+999 123 456 789",
]  # fmt: skip


def assert_same(cases: list[tuple[str, str]]) -> int:
    """Compare every case; return how many valid numbers the plain path answered."""
    mismatches = []
    plain_valid = 0
    for text, region in cases:
        expected, got = reference(text, region), _phone_e164_uncached(text, region)
        if got != expected:
            mismatches.append((text, region, expected, got))
        elif got is not None and _PHONE_PLAIN.fullmatch(
            "+" + text[2:] if text.startswith("00") else text
        ):
            plain_valid += 1
    assert not mismatches, f"{len(mismatches)} differ, e.g. {mismatches[:10]}"
    return plain_valid


def test_example_numbers_in_every_written_form_give_phonenumbers_answer():
    cases = []
    for index, (number, region) in enumerate(example_numbers()):
        international, national = written_forms(number)
        # A few default regions per number, rotating, so every pair comes up across the set.
        regions = {
            region,
            DEFAULT_REGIONS[index % len(DEFAULT_REGIONS)],
            DEFAULT_REGIONS[(index * 7 + 3) % len(DEFAULT_REGIONS)],
            ODD_REGIONS[index % len(ODD_REGIONS)],
        }
        for default_region in regions:
            cases += [(text, default_region) for text in national]
        default_region = DEFAULT_REGIONS[index % len(DEFAULT_REGIONS)]
        cases += [(text, default_region) for text in international]
    plain_valid = assert_same(cases)
    # The forms the plain path takes were valid often enough to test it (not just None).
    assert plain_valid > 5_000, plain_valid


def test_random_digit_strings_give_phonenumbers_answer():
    rng = random.Random(20_240_601)
    prefixes = ("+", "", "", "00", "0", "1", "011", "+1", "+44", "+91", "+55", "+7")
    cases = []
    for _ in range(30_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        text = rng.choice(prefixes) + digits
        if rng.random() < 0.3:  # separators somewhere
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(" -().") + text[at:]
        cases.append((text, rng.choice(DEFAULT_REGIONS + ODD_REGIONS)))
    assert_same(cases)


def test_strings_that_are_not_plain_numbers_give_phonenumbers_answer():
    assert_same([(text, region) for text in NOT_NUMBERS for region in ("US", "GB", "ZZ")])


def test_realistic_numbers_are_valid_in_every_form():
    """What an import of people with phones holds (demo data's countries)."""
    assert _phone_e164_uncached("+1 (415) 555-2671", "US") == "+14155552671"
    assert _phone_e164_uncached("(415) 555-2671", "US") == "+14155552671"
    assert _phone_e164_uncached("1-415-555-2671", "US") == "+14155552671"
    assert _phone_e164_uncached("07911 123456", "GB") == "+447911123456"
    assert _phone_e164_uncached("0044 7911 123456", "US") == "+447911123456"
    assert _phone_e164_uncached("+44 (0)7911 123456", "US") == "+447911123456"
    assert _phone_e164_uncached("098110 12345", "IN") == "+919811012345"
    assert _phone_e164_uncached("+39 06 6982 1234", "US") == "+390669821234"  # leading zero
    assert _phone_e164_uncached("(11) 98123-4567", "BR") == "+5511981234567"
    assert _phone_e164_uncached("+1 415 555", "US") is None
    assert _phone_e164_uncached("415-555-2671", "ZZ") is None
