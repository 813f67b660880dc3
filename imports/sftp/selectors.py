"""Reads for SFTP sources, their runs and their ledger."""

from __future__ import annotations

import datetime as dt

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from imports.models import SftpFile, SftpRun, SftpSchedule, SftpSource


def sftp_source_list() -> QuerySet[SftpSource]:
    """Sources with their latest run's time, status and error (one query)."""
    latest = SftpRun.objects.filter(source=OuterRef("pk")).order_by("-started_at", "-id")
    return SftpSource.objects.annotate(
        last_run_at=Subquery(latest.values("started_at")[:1]),
        last_run_status=Subquery(latest.values("status")[:1]),
        last_run_error=Subquery(latest.values("error")[:1]),
        last_run_imported=Subquery(latest.values("files_imported")[:1]),
        last_run_retry_at=Subquery(latest.values("retry_at")[:1]),
        last_run_retry_number=Subquery(latest.values("retry_number")[:1]),
        last_run_retries_max=Subquery(latest.values("retries_max")[:1]),
    ).order_by("name")


def sftp_source_get(*, pk: int) -> SftpSource:
    return sftp_source_list().get(pk=pk)


def sftp_source_get_by_name(*, name: str) -> SftpSource | None:
    return sftp_source_list().filter(name=name).first()


def sftp_runs_for_source(*, source: SftpSource, limit: int = 25) -> list[SftpRun]:
    """Latest runs, each with the files it acted on (and their imports)."""
    files = SftpFile.objects.select_related("import_run").order_by("path")
    return list(
        SftpRun.objects.filter(source=source)
        .prefetch_related(Prefetch("files", queryset=files))
        .order_by("-started_at", "-id")[:limit]
    )


def sftp_files_for_source(*, source: SftpSource, limit: int = 50) -> list[SftpFile]:
    return list(
        SftpFile.objects.filter(source=source)
        .select_related("import_run")
        .order_by("-updated_at", "-id")[:limit]
    )


def sftp_source_next_run(
    *, source: SftpSource, now: dt.datetime | None = None
) -> dt.datetime | None:
    """When beat polls the source next (None: it does not: disabled or stopped).

    Daily: the next `daily_at` in the site's time zone. Every N minutes: N minutes
    after beat last sent the poll (django-celery-beat records it on the task), or
    now when beat has not sent one yet (it does on its next tick)."""
    now = now or timezone.now()
    if not source.enabled or source.stopped_reason:
        return None
    if source.schedule == SftpSchedule.DAILY and source.daily_at:
        local = timezone.localtime(now)
        today = local.replace(
            hour=source.daily_at.hour, minute=source.daily_at.minute, second=0, microsecond=0
        )
        return today if today > local else today + dt.timedelta(days=1)
    task = source.periodic_task
    last = task.last_run_at if task is not None else None
    if last is None:
        return now
    return max(now, last + dt.timedelta(minutes=source.every_minutes))
