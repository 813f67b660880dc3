"""Writes for segments: save, duplicate, delete, recount, and CSV exports."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from config.csvsafe import formula_safe
from config.jobs import JobInterrupted, handed_back_heartbeat, job_stop_check
from profiles.models import Profile
from segments.compiler import DEFAULT_COLUMNS, DEFAULT_PROPERTY_LABELS, compile_definition
from segments.models import SYSTEM_DEFINITIONS, ExportStatus, Segment, SegmentExport

logger = logging.getLogger(__name__)

EXPORT_BATCH = 2000


def export_batch() -> int:
    return int(getattr(settings, "SEGMENT_EXPORT_BATCH", EXPORT_BATCH))


MAX_NAME = 200


class SegmentError(ValueError):
    """An action refused with a message for the person (duplicate name, system segment…)."""


def _count(definition: Any) -> int:
    return Profile.objects.filter(compile_definition(definition)).count()


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise SegmentError("Give the segment a name.")
    if len(name) > MAX_NAME:
        raise SegmentError(f"The name is longer than {MAX_NAME} characters.")
    return name


def segment_system_ensure(**_: Any) -> None:
    """Create the system segments "All Users" and "Test Users" when missing (idempotent)."""
    Segment.objects.bulk_create(
        [
            Segment(system_key=key, name=key.label, definition=definition)
            for key, definition in SYSTEM_DEFINITIONS.items()
        ],
        ignore_conflicts=True,
    )


@transaction.atomic
def segment_save(
    *,
    name: str,
    definition: Any,
    user: AbstractBaseUser,
    segment: Segment | None = None,
) -> Segment:
    """Create a segment (no `segment`) or change one, and count it.

    The definition is compiled first: an invalid one raises SegmentDefinitionError
    and nothing is written. System segments cannot be changed (SegmentError), nor
    can a name be taken twice.
    """
    name = _clean_name(name)
    count = _count(definition)
    if segment is not None and segment.is_system:
        raise SegmentError(f"“{segment.name}” is a system segment: it cannot be changed.")
    if segment is None:
        segment = Segment(created_by=user)
    segment.name = name
    segment.definition = definition
    segment.updated_by = user
    segment.last_count = count
    segment.counted_at = timezone.now()
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError:
        raise SegmentError(f"A segment named “{name}” already exists.") from None
    return segment


@transaction.atomic
def segment_duplicate(*, segment: Segment, user: AbstractBaseUser) -> Segment:
    """A copy named "Copy of X" (then "Copy of X (2)", …) with the same definition."""
    base = f"Copy of {segment.name}"[:190]
    name, number = base, 1
    while Segment.objects.filter(name=name).exists():
        number += 1
        name = f"{base} ({number})"
    return Segment.objects.create(
        name=name,
        definition=segment.definition,
        last_count=segment.last_count,
        counted_at=segment.counted_at,
        created_by=user,
        updated_by=user,
    )


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Delete a saved segment (and its exports); system segments are refused."""
    if segment.is_system:
        raise SegmentError(f"“{segment.name}” is a system segment: it cannot be deleted.")
    for export in segment.exports.exclude(file=""):
        transaction.on_commit(lambda f=export.file: f.delete(save=False))
    segment.delete()


def segment_recount(*, segment: Segment) -> Segment:
    """Count the segment now and remember the size (no audit: a count changes nothing)."""
    segment.last_count = _count(segment.definition)
    segment.counted_at = timezone.now()
    Segment.objects.filter(pk=segment.pk).update(
        last_count=segment.last_count, counted_at=segment.counted_at
    )
    return segment


def segment_system_recount() -> list[Segment]:
    """Count every system segment now. They are made by migrate, never saved by a
    person, so nothing else counts them; beat runs this (segments.tasks)."""
    return [segment_recount(segment=segment) for segment in Segment.objects.exclude(
        system_key=None).order_by("pk")]  # fmt: skip


# --- CSV export ------------------------------------------------------------------------


def export_columns_available(custom_names: list[str]) -> list[str]:
    """Properties a person may add to an export: default properties, then custom ones."""

    return [DEFAULT_PROPERTY_LABELS[key] for key in DEFAULT_COLUMNS] + sorted(custom_names)


@transaction.atomic
def segment_export_start(
    *, segment: Segment, properties: list[str], user: AbstractBaseUser
) -> SegmentExport:
    """Record an export of the segment's current definition and queue it after commit."""
    from segments.tasks import segment_export_task

    compile_definition(segment.definition)  # refuse an export of a broken definition now
    export = SegmentExport.objects.create(
        segment=segment,
        definition=segment.definition,
        properties=list(dict.fromkeys(p for p in properties if p)),
        created_by=user,
    )
    segment_export_task.delay_on_commit(export.pk)
    return export


def csv_safe(value: Any) -> str:
    """A cell no spreadsheet will run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = "; ".join(str(item) for item in value)
    else:
        text = str(value)
    return formula_safe(text)


def _property_value(profile: Profile, name: str) -> Any:
    column = DEFAULT_COLUMNS.get(name.lower())
    if column is not None:
        value = getattr(profile, column.field)
        return value.isoformat() if hasattr(value, "isoformat") else value
    return profile.custom.get(name)


def segment_export_run(*, export_id: int) -> SegmentExport | None:
    """Write the CSV of an export: ct_id, identities, then the chosen properties.

    Claims the export with a conditional update (pending, or running again
    after a lost worker) so it is safe to run twice; the file is written whole
    each time. Members are read in keyset batches over the primary key, and
    the progress row is updated after each batch. A stopping worker stops it
    at a batch boundary (raising JobInterrupted) and hands it back, still
    running with a stale heartbeat. Returns None when there was nothing to claim.
    """
    claimed = SegmentExport.objects.filter(
        pk=export_id, status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]
    ).update(status=ExportStatus.RUNNING, rows_done=0, error="", heartbeat_at=timezone.now())
    if claimed != 1:
        return None
    export = SegmentExport.objects.select_related("segment").get(pk=export_id)
    try:
        members = Profile.objects.filter(compile_definition(export.definition))
        total = members.count()
        SegmentExport.objects.filter(pk=export.pk).update(rows_total=total)
        with tempfile.TemporaryFile(mode="w+b") as handle:
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(["ct_id", "identities", *[csv_safe(p) for p in export.properties]])
            done, last_pk = 0, 0
            while True:
                job_stop_check()  # a stopping worker: the file is written again on restart
                batch = list(
                    members.filter(pk__gt=last_pk)
                    .order_by("pk")
                    .prefetch_related("identifiers")[: export_batch()]
                )
                if not batch:
                    break
                for profile in batch:
                    identities = "; ".join(
                        f"{i.kind}:{i.value}"
                        for i in sorted(profile.identifiers.all(), key=lambda i: (i.kind, i.pk))
                    )
                    writer.writerow(
                        [csv_safe(profile.ct_id), csv_safe(identities)]
                        + [csv_safe(_property_value(profile, p)) for p in export.properties]
                    )
                done += len(batch)
                last_pk = batch[-1].pk
                SegmentExport.objects.filter(pk=export.pk).update(
                    rows_done=done, heartbeat_at=timezone.now()
                )
            text.flush()
            handle.seek(0)
            if export.file:
                export.file.delete(save=False)
            filename = f"segment-{export.segment_id}-export-{export.pk}.csv"
            export.file.save(filename, File(handle), save=False)
            text.detach()
        SegmentExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.DONE, file=export.file.name, rows_done=done,
            finished_at=timezone.now(),
        )  # fmt: skip
    except (OperationalError, InterfaceError):
        raise  # transient: the task retries and claims the running export again
    except JobInterrupted:
        SegmentExport.objects.filter(pk=export.pk, status=ExportStatus.RUNNING).update(
            heartbeat_at=handed_back_heartbeat()
        )
        raise
    except Exception as error:
        logger.exception("segment export %s failed", export_id)
        SegmentExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=str(error)[:2000], finished_at=timezone.now()
        )
        raise
    export.refresh_from_db()
    return export
