"""What a write leaves in a profile's history (PropertyChange), for every channel.

A profile a record creates gets one "Profile created" row holding its initial
properties (not one row per property: an import creates many profiles, and each
history row costs a write and a foreign-key check); a change to an existing
profile gets one row per changed property, old and new value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PROFILE_CREATED = "Profile created"

Change = tuple[str, Any, Any]  # (property, old value, new value)


def history_rows(changes: Iterable[Change], *, created: bool) -> list[Change]:
    """The history rows for `changes` (in the order they were made) to one profile."""
    if not created:
        return list(changes)
    initial = {key: new for key, _, new in changes}  # a later change to a key wins
    if not initial:
        return []
    return [
        (PROFILE_CREATED, None, {key: value for key, value in initial.items() if value is not None})
    ]
