"""Event -> profile mapping rules, e.g. "Plan Purchased".plan -> Plan.

A mapped value the profile property refuses (a wrong type, a bad Gender) skips
that event's mapping only: the event is a fact that happened and is always kept.
The same on every path (SDK calls, the REST upload, CSV/SFTP event imports).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def mapped_profile_data(
    rules: Iterable[tuple[str, str]], properties: dict[str, Any]
) -> dict[str, Any]:
    """The profile properties an event sets: {profile property: event value}, from
    (event property, profile property) rules in their order."""
    return {
        profile_property: properties[event_property]
        for event_property, profile_property in rules
        if event_property in properties
    }
