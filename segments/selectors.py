"""Reads for segments: counting, members, previews and the builder's choices."""

from __future__ import annotations

import datetime as dt
import difflib
import json
from typing import Any

from django.db import connection
from django.db.models import Count, Prefetch, QuerySet

from profiles.models import EventName, Identifier, Profile, PropertyDefinition, PropertyScope
from profiles.rules.reachability import ADDRESS_CHANNELS
from segments.compiler import (
    CHANNELS,
    DEFAULT_COLUMNS,
    DEFAULT_PROPERTY_LABELS,
    OPS_BY_TYPE,
    compile_definition,
    definition_event_names,
)
from segments.models import Segment, SegmentExport

CHANNEL_LABELS = {
    **{channel.key: channel.label for channel in ADDRESS_CHANNELS},
    "push": "Push",
}

PREVIEW_ROWS = 20
# Value suggestions look at this many profiles holding the property, no more:
# the most common values among them, read with one bounded scan.
SUGGESTION_SAMPLE = 5_000
SUGGESTION_VALUES = 20
# Close-match suggestions for an unknown event name compare against this many names.
EVENT_NAME_SCAN = 5_000


def segment_members(definition: Any, *, now: dt.datetime | None = None) -> QuerySet[Profile]:
    """The profiles matching `definition`, as one query (ordered by id).

    Raises SegmentDefinitionError for an invalid definition.
    """
    return Profile.objects.filter(compile_definition(definition, now=now)).order_by("pk")


def segment_count(definition: Any, *, now: dt.datetime | None = None) -> int:
    return Profile.objects.filter(compile_definition(definition, now=now)).count()


def segment_preview(definition: Any, *, limit: int = PREVIEW_ROWS) -> list[Profile]:
    """The first matching people (newest activity first) for the builder's preview."""
    members = Profile.objects.filter(compile_definition(definition))
    return list(
        members.order_by("-last_seen", "-pk").only(
            "ct_id", "name", "email", "phone", "identified", "custom", "last_seen"
        )[:limit]
    )


def segment_list() -> QuerySet[Segment]:
    return Segment.objects.select_related("updated_by").order_by("system_key", "name")


def segment_export_get(*, export_id: int) -> SegmentExport:
    return SegmentExport.objects.select_related("segment").get(pk=export_id)


def profiles_with_identifiers(members: QuerySet[Profile]) -> QuerySet[Profile]:
    return members.prefetch_related(
        Prefetch("identifiers", queryset=Identifier.objects.order_by("kind", "pk"))
    )


def builder_choices() -> dict[str, Any]:
    """What the builder offers: properties with their types, event names, operators."""
    defaults = [
        {"name": DEFAULT_PROPERTY_LABELS[key], "type": column.type, "default": True}
        for key, column in DEFAULT_COLUMNS.items()
    ]
    custom = [
        {"name": name, "type": type_, "default": False}
        for name, type_ in PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE)
        .exclude(name="ct_is_test_user")
        .order_by("name")
        .values_list("name", "type")
    ]
    event_properties = dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.EVENT).values_list("name", "type")
    )
    return {
        "properties": defaults + custom,
        "events": list(EventName.objects.order_by("name").values_list("name", flat=True)[:512]),
        "event_properties": event_properties,
        "ops": OPS_BY_TYPE,
        "channels": list(CHANNELS),
    }


def segment_unknown_events(definition: Any) -> list[dict[str, Any]]:
    """The event names a definition uses that no event has ever had, each with up to
    three known names it may have meant (close spellings, or names it begins)."""
    wanted = definition_event_names(definition)
    if not wanted:
        return []
    known = set(EventName.objects.filter(name__in=wanted).values_list("name", flat=True))
    unknown = [name for name in wanted if name not in known]
    if not unknown:
        return []
    names = list(
        EventName.objects.order_by("name").values_list("name", flat=True)[:EVENT_NAME_SCAN]
    )
    by_lower = {name.lower(): name for name in names}
    result = []
    for name in unknown:
        lowered = name.strip().lower()
        starting = [n for n in names if lowered and n.lower().startswith(lowered)]
        close = [by_lower[n] for n in difflib.get_close_matches(lowered, list(by_lower), n=3)]
        result.append({"name": name, "suggestions": list(dict.fromkeys(starting + close))[:3]})
    return result


def segment_reach(definition: Any) -> list[dict[str, Any]]:
    """How many members are reachable on each channel, in one query: each channel's
    test is the compiler's "reachable" condition (profiles.rules.reachability)."""
    members = Profile.objects.filter(compile_definition(definition))
    counts = members.aggregate(
        total=Count("pk"),
        **{
            channel: Count(
                "pk",
                filter=compile_definition(
                    {"system": "reachable", "op": "equals", "value": channel}
                ),
            )
            for channel in CHANNELS
        },
    )
    return [
        {
            "channel": channel,
            "label": CHANNEL_LABELS.get(channel, channel),
            "count": counts[channel],
            "total": counts["total"],
        }
        for channel in CHANNELS
    ]


def property_value_suggestions(*, name: str) -> list[str]:
    """The most common values of a text property, for the builder's value box.

    Bounded: only the first SUGGESTION_SAMPLE profiles holding the property are
    read (a custom property through the jsonb_path_ops GIN index on `custom`), so
    the answer stays cheap at any size. Empty for unknown and non-text properties.
    """
    table = connection.ops.quote_name(Profile._meta.db_table)
    column = DEFAULT_COLUMNS.get(name.lower())
    if column is not None:
        if column.type != "string":
            return []
        field = connection.ops.quote_name(column.field)  # DEFAULT_COLUMNS names plain columns
        sample = f"SELECT {field} AS value FROM {table} WHERE {field} <> '' LIMIT %s"
        params: tuple[Any, ...] = (SUGGESTION_SAMPLE,)
    else:
        declared = PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE, name=name)
        if declared.values_list("type", flat=True).first() != "string":
            return []
        sample = f"SELECT custom ->> %s AS value FROM {table} WHERE custom @? %s::jsonpath LIMIT %s"
        params = (name, "$." + json.dumps(name, ensure_ascii=False), SUGGESTION_SAMPLE)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT value FROM ({sample}) AS sample WHERE value <> ''"
            " GROUP BY value ORDER BY count(*) DESC, value LIMIT %s",
            (*params, SUGGESTION_VALUES),
        )
        return [row[0] for row in cursor.fetchall()]
