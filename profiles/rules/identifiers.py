"""What an identifier may contain, and its one canonical spelling.

Identifiers are compared byte for byte in the database, so the same visible
text must always be stored the same way: everything is normalised to Unicode
NFC ("café" typed as e + combining accent is the same person as "café" typed
with a precomposed é). Control characters and bidirectional overrides are
refused outright: they are invisible in the dashboard and in exports, so two
identifiers that look identical could name two people, and an override can
make an identifier display as a different one.
"""

from __future__ import annotations

import unicodedata

# Explicit bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069)
# and the implicit marks (U+200E, U+200F, U+061C): all change how text displays.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Control characters (NUL, tab, newline, ESC, …) and line / paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


class IdentifierTextError(ValueError):
    """An identifier holding a character no identifier may hold."""

    def __init__(self, character: str) -> None:
        self.character = character
        name = unicodedata.name(character, "control character")
        super().__init__(f"contains U+{ord(character):04X} ({name}), which is not allowed.")


def identifier_text(raw: str) -> str:
    """`raw` trimmed and in NFC; IdentifierTextError if it holds a control or bidi character.
    Other format characters (zero-width joiners) stay allowed: several scripts need them."""
    text = unicodedata.normalize("NFC", raw.strip())
    if not text.isprintable():  # the fast path: printable text holds none of them
        for character in text:
            if character in BIDI_CONTROLS or unicodedata.category(character) in REFUSED_CATEGORIES:
                raise IdentifierTextError(character)
    return text
