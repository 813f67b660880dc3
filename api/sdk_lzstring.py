"""LZString `decompressFromBase64`, as the web SDK's `compressToBase64` writes it, fast.

The SDK compresses JSON with LZString's 16-bit `compress` and sends the big-endian bytes
of that string in standard base64 (`=` padded). `lzstring` 1.0.4 on PyPI reads that bit
by bit through a per-character alphabet lookup (~1.4 ms for a typical 150-character `d`,
a quarter of an `/a` request), and it hands back UTF-16 code units as Python characters:
a non-BMP character (an emoji) comes out as two lone surrogates, which PostgreSQL then
refuses. Here the C `binascii` decodes the base64, the bits become one string read a
token at a time (`int(slice, 2)`, ~15x faster), and surrogate pairs are joined into the
characters they encode. Same format and algorithm as the reference (pieroxy/lz-string
`_decompress`); checked against the SDK's own `compressToBase64` in api/tests.
"""

from __future__ import annotations

import base64
import binascii
import re

_SURROGATE = re.compile("[\ud800-\udfff]")


class LzTextTooLong(ValueError):
    """The text would pass the caller's `max_chars`."""


def lz_decompress_from_base64(raw: str, *, max_chars: int) -> str | None:
    """The text `raw` encodes; None when it is not a complete LZString stream.
    LzTextTooLong past `max_chars`: a small `raw` cannot expand into a huge string."""
    # Padding is zero bits to LZString (`=` is 64, outside the 6 bits read), and writers
    # differ: the SDK pads whole bytes, lz-string's newer compressToBase64 whole 6-bit
    # characters (up to `===`). `A` (zero bits) up to a multiple of 4 suits both.
    raw = raw.rstrip("=")
    try:
        data = base64.b64decode(raw + "A" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not data:
        return None
    total = len(data) * 8
    # The bits, most significant first as written, reversed once: the `n` bits at
    # position `p`, read least significant first as LZString does, are then the slice
    # bits[total - p - n : total - p], one int() each.
    bits = bin(int.from_bytes(data, "big") | (1 << total))[3:][::-1]
    end = total  # slice end of the next unread bit
    if end < 2:
        return None
    first = int(bits[end - 2 : end], 2)
    end -= 2
    if first == 2:
        return ""
    if first > 2:
        return None
    width = 8 if first == 0 else 16
    if end < width:
        return None
    w = chr(int(bits[end - width : end], 2))
    end -= width
    dictionary = ["", "", "", w]  # codes 0, 1, 2 mean: a char8, a char16, the end
    result = [w]
    length, enlarge_in, num_bits = 1, 4, 3
    while True:
        if end < num_bits:
            return None
        code = int(bits[end - num_bits : end], 2)
        end -= num_bits
        if code < 2:
            width = 8 if code == 0 else 16
            if end < width:
                return None
            dictionary.append(chr(int(bits[end - width : end], 2)))
            end -= width
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            text = "".join(result)
            return _join_surrogates(text) if _SURROGATE.search(text) else text
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            return None
        result.append(entry)
        length += len(entry)
        if length > max_chars:
            raise LzTextTooLong(max_chars)
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1


def _join_surrogates(text: str) -> str:
    """UTF-16 code units -> characters; a lone surrogate becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
