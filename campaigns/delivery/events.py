"""Notification system events on the profile timeline, written through the ingest path."""

from __future__ import annotations

import logging
import time

from profiles.ingest import ingest_records
from profiles.models import Device, Identifier, IdentifierKind
from profiles.services import Actor

logger = logging.getLogger(__name__)

# (profile id, event name, properties) or with a 4th item, the event's client event id.
NotificationEvent = tuple[int, str, dict] | tuple[int, str, dict, str]


def _profile_handles(profile_ids: set[int]) -> dict[int, tuple[str, str]]:
    """How the upload shape can name each profile: its identity, else one device objectId."""
    handles: dict[int, tuple[str, str]] = {}
    for profile_id, value in Device.objects.filter(profile_id__in=profile_ids).values_list(
        "profile_id", "object_id"
    ):
        handles.setdefault(profile_id, ("objectId", value))
    # An identity wins over a device: it keeps naming the person across devices.
    for profile_id, value in Identifier.objects.filter(
        profile_id__in=profile_ids, kind=IdentifierKind.IDENTITY
    ).values_list("profile_id", "value"):
        handles[profile_id] = ("identity", value)
    return handles


def notification_events_record(
    *, deliveries: list[NotificationEvent], may_hold_unstorable: bool = True
) -> None:
    """Record each event with its client event id when it has one: a report the provider
    repeats (or a batch recorded again after a retry) never makes a second event.
    `may_hold_unstorable=False`: every property value was read from the database (so
    PostgreSQL stores it again), and ingest skips its scan for NUL and lone surrogates."""
    handles = _profile_handles({profile_id for profile_id, *_ in deliveries})
    now = int(time.time())
    records = []
    for profile_id, name, properties, *rest in deliveries:
        handle = handles.get(profile_id)
        if handle is None:
            logger.warning(
                "profile %s has no identity or device; %s not recorded", profile_id, name
            )
            continue
        key, value = handle
        record = {"type": "event", key: value, "evtName": name, "evtData": properties, "ts": now}
        if rest and rest[0]:
            record["evtId"] = rest[0]
        records.append(record)
    if not records:
        return
    result = ingest_records(records, actor=Actor.system(), may_hold_unstorable=may_hold_unstorable)
    for number, error in result.refusals.items():
        logger.warning("notification event %d refused: %s", number, error)
