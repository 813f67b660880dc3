"""Reads for segments: counting, members, previews and the builder's choices."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Prefetch, QuerySet

from profiles.models import EventName, Identifier, Profile, PropertyDefinition, PropertyScope
from segments.compiler import (
    CHANNELS,
    DEFAULT_COLUMNS,
    DEFAULT_PROPERTY_LABELS,
    OPS_BY_TYPE,
    compile_definition,
)
from segments.models import Segment, SegmentExport

PREVIEW_ROWS = 20


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
