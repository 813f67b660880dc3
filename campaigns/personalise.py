"""Liquid personalisation: {{ Profile.Name | default: "there" }}, {{ Event.Amount }}.

A missing property is Liquid's undefined: it renders its `default` or nothing, never the
raw tag. HTML email bodies are rendered with autoescape so a property value cannot inject
markup.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError

from profiles.models import Profile

PLAIN = Environment(autoescape=False)
ESCAPED = Environment(autoescape=True)


class TemplateProblem(ValueError):
    """A template that cannot render: the message names the line and the reason."""


def _describe(error: LiquidError, source: str) -> str:
    reason = getattr(error, "message", None) or str(error).splitlines()[0]
    token = getattr(error, "token", None)
    start = getattr(token, "start_index", None)
    if isinstance(start, int):
        return f"line {source[:start].count(chr(10)) + 1}: {reason}"
    return reason


@functools.lru_cache(maxsize=256)
def _parsed(source: str, escape: bool) -> BoundTemplate:
    # A send renders the same subject and body for every profile: parse them once.
    return (ESCAPED if escape else PLAIN).from_string(source)


def render(source: str, context: dict[str, Any], *, escape: bool = False) -> str:
    try:
        return _parsed(source, escape).render(**context)
    except LiquidError as error:
        raise TemplateProblem(_describe(error, source)) from error


def template_check(source: str, *, escape: bool = False) -> None:
    """Raise TemplateProblem for a syntax error or an unknown filter (found only by rendering)."""
    render(source, {"Profile": {}, "Event": {}}, escape=escape)


def _text(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def profile_context(profile: Profile, *, today: dt.date | None = None) -> dict[str, Any]:
    """The properties a template may use, under the names the dashboard shows."""
    from profiles.selectors import profile_property_groups

    values: dict[str, Any] = {}
    for group in profile_property_groups(profile=profile, today=today).values():
        for label, value in group:
            values[label] = _text(value)
    for name, value in (profile.custom or {}).items():
        values.setdefault(name, value)
    values.setdefault("Name", profile.name)
    values.setdefault("Email", profile.email)
    values.setdefault("Phone", profile.phone)
    # An empty default property is absent, so `default` applies and nothing else prints.
    return {key: value for key, value in values.items() if value not in ("", None)}
