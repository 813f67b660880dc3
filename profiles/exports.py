"""CSV exports of a Find People search: started from the page, written by a Celery task.

The search is kept as Find People's own GET parameters and applied again by the
same PeopleFilter, so the file holds exactly whom the page lists (as of the start:
people created later, with a higher id than `max_pk`, are left out).

Resumable: the file is written in keyset batches over the primary key; after each
batch it is flushed to disk and the checkpoint (`last_pk`, `file_bytes`,
`rows_done`) saved in the same UPDATE as the heartbeat. A worker that takes the
export over (the broker's redelivery, or config.jobs' recovery of a stale
heartbeat) cuts the file back to the checkpoint and goes on after `last_pk`: no row
is written twice or lost. Every cell goes through config.csvsafe.formula_safe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Max, QuerySet
from django.http import QueryDict
from django.utils import timezone

from config.csvsafe import UTF8_BOM, formula_safe
from config.jobs import JobInterrupted, handed_back_heartbeat, job_stop_check
from profiles.models import ExportStatus, PeopleExport, Profile

logger = logging.getLogger(__name__)

# The search parameters an export keeps (Find People's form fields; "sort" and "page"
# change nothing about who is in it).
SEARCH_PARAMETERS = (
    "q", "type", "test", "has_email", "has_phone", "has_push", "seen_within", "prop", "value",
)  # fmt: skip
EXPORT_COLUMNS = [
    "CleverTap ID", "Name", "Identities", "Email", "Phone", "Profile type", "Test profile",
    "First seen", "Last seen", "Events",
]  # fmt: skip


def export_batch() -> int:
    return int(getattr(settings, "PEOPLE_EXPORT_BATCH", 2000))


def people_export_filters(params: QueryDict) -> dict[str, str]:
    """The search of a Find People request, as the export stores it."""
    values = {name: str(params.get(name, "")).strip() for name in SEARCH_PARAMETERS}
    return {name: value for name, value in values.items() if value}


def people_export_members(*, filters: dict[str, str]) -> QuerySet[Profile]:
    """Whom the search finds, by Find People's own filter. Raises ValueError for a
    search the filter refuses (the page shows the same errors)."""
    from profiles.filters import PeopleFilter

    filterset = PeopleFilter(filters or None, queryset=Profile.objects.all())
    if filterset.is_bound and not filterset.is_valid():
        problems = " ".join(str(error) for errors in filterset.errors.values() for error in errors)
        raise ValueError(problems or "The search is not valid.")
    return filterset.qs.order_by()


@transaction.atomic
def people_export_start(*, filters: dict[str, str], user: AbstractBaseUser) -> PeopleExport:
    """Record an export of the search and queue its task after commit. Raises
    ValueError for a search Find People would refuse."""
    from profiles.tasks import people_export_task

    people_export_members(filters=filters)  # refuse a broken search now, not in the worker
    export = PeopleExport.objects.create(filters=filters, created_by_id=user.pk)
    transaction.on_commit(lambda: people_export_task.delay(export.pk))
    return export


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return formula_safe(value)


def _row(profile: Profile) -> list[str]:
    identities = "; ".join(
        f"{identifier.kind}:{identifier.value}"
        for identifier in sorted(profile.identifiers.all(), key=lambda i: (i.kind, i.value))
    )
    values: list[Any] = [
        profile.ct_id, profile.name, identities, profile.email, profile.phone,
        profile.profile_type, profile.is_test, profile.first_seen, profile.last_seen,
        profile.event_count,
    ]  # fmt: skip
    return [_cell(value) for value in values]


def _claim(export_id: int) -> bool:
    """Pending, or running again after a lost worker: safe to run twice (the second
    claim resumes from the checkpoint; a finished export is never claimed)."""
    return (
        PeopleExport.objects.filter(
            pk=export_id, status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]
        ).update(status=ExportStatus.RUNNING, error="", heartbeat_at=timezone.now())
        == 1
    )


def _file_name(export: PeopleExport) -> str:
    return export.file.name or f"people-exports/people-export-{export.pk}.csv"


def _open_at_checkpoint(export: PeopleExport) -> io.BufferedRandom:
    """The export's file, cut back to the last checkpoint (a new file with the header
    row when there is none yet)."""
    path = default_storage.path(_file_name(export))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if export.file_bytes and os.path.exists(path):
        handle = open(path, "r+b")  # noqa: SIM115 -- closed by the caller
        handle.truncate(export.file_bytes)
        handle.seek(export.file_bytes)
        return handle
    handle = open(path, "w+b")  # noqa: SIM115 -- closed by the caller
    handle.write(UTF8_BOM + _csv_lines([EXPORT_COLUMNS]))
    return handle


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode()


def people_export_run(*, export_id: int) -> PeopleExport | None:
    """Write (or go on writing) one export's CSV; see the module docstring.

    Returns None when there was nothing to claim."""
    if not _claim(export_id):
        return None
    export = PeopleExport.objects.get(pk=export_id)
    PeopleExport.objects.filter(pk=export.pk).update(attempts=export.attempts + 1)
    try:
        members = people_export_members(filters=export.filters)
        if export.max_pk is None:
            export.max_pk = Profile.objects.aggregate(top=Max("pk"))["top"] or 0
            export.rows_total = members.filter(pk__lte=export.max_pk).count()
            PeopleExport.objects.filter(pk=export.pk).update(
                max_pk=export.max_pk, rows_total=export.rows_total, file=_file_name(export)
            )
            export.file.name = _file_name(export)
        members = members.filter(pk__lte=export.max_pk).prefetch_related("identifiers")
        with _open_at_checkpoint(export) as handle:
            last_pk, done = export.last_pk, export.rows_done
            while True:
                job_stop_check()  # a stopping worker: the next start resumes at the checkpoint
                batch = list(members.filter(pk__gt=last_pk).order_by("pk")[: export_batch()])
                if not batch:
                    break
                handle.write(_csv_lines([_row(profile) for profile in batch]))
                handle.flush()
                os.fsync(handle.fileno())
                last_pk, done = batch[-1].pk, done + len(batch)
                # The checkpoint only names bytes already on disk.
                PeopleExport.objects.filter(pk=export.pk).update(
                    last_pk=last_pk, rows_done=done, file_bytes=handle.tell(),
                    heartbeat_at=timezone.now(),
                )  # fmt: skip
        PeopleExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.DONE, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
    except (OperationalError, InterfaceError):
        raise  # transient: the task retries and resumes from the checkpoint
    except JobInterrupted:
        PeopleExport.objects.filter(pk=export.pk).update(heartbeat_at=handed_back_heartbeat())
        raise
    except Exception as error:
        logger.exception("people export %s failed", export_id)
        PeopleExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=str(error)[:2000], finished_at=timezone.now()
        )
        raise
    export.refresh_from_db()
    return export
