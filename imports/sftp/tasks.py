"""Celery tasks for SFTP sources (loaded through imports/tasks.py)."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.db.models import Max
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from config.jobs import JobInterrupted, register_recoverable_job
from imports.models import SftpRun, SftpRunStatus, SftpRunTrigger, SftpSource
from imports.sftp.services import SftpSourceBusy, sftp_source_poll

logger = logging.getLogger(__name__)

__all__ = ["sftp_poll_source_task"]

MAX_RETRIES = 4
RETRY_BASE_SECONDS = 30


@shared_task(
    bind=True,
    name="imports.sftp.tasks.sftp_poll_source_task",
    acks_late=True,
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
    max_retries=MAX_RETRIES,
)
def sftp_poll_source_task(self, source_id: int, trigger: str = SftpRunTrigger.SCHEDULE) -> str:
    """Poll one source (beat calls this per source; "Run now" too).

    Idempotent: the ledger keeps files from being imported twice and a poll
    already running makes this one a no-op. Transient failures (connection
    refused, timeouts) are retried with exponential backoff: 30 s, 60 s, …
    """
    source = SftpSource.objects.filter(pk=source_id).first()
    if source is None:
        return "source deleted"
    if not source.enabled and trigger == SftpRunTrigger.SCHEDULE:
        return "source disabled"
    if self.request.retries:
        # The retry announced on the failed attempt is this one: that attempt just failed.
        SftpRun.objects.filter(source=source, retry_at__isnull=False).update(retry_at=None)
    try:
        run = sftp_source_poll(source=source, trigger=trigger)
    except SftpSourceBusy:
        logger.info("SFTP source %s: a poll is already running, skipping", source.name)
        return "busy"
    except JobInterrupted:
        # The worker is stopping: the file in hand stopped at a chunk boundary (its
        # import handed back, its ledger row still importing). A new poll takes over
        # on the next start, as after a crash, and resumes that import.
        for run_id in SftpRun.objects.filter(
            source=source, status=SftpRunStatus.RUNNING
        ).values_list("pk", flat=True):
            sftp_run_resume(run_id)
        return "interrupted: a new poll continues on the next start"
    if run.status == SftpRunStatus.FAILED and run.error_transient:
        countdown = RETRY_BASE_SECONDS * 2**self.request.retries
        if self.request.retries < MAX_RETRIES:
            # The page says "Retrying (k of n)" rather than "Failed" until the last try.
            SftpRun.objects.filter(pk=run.pk).update(
                retry_number=self.request.retries + 1,
                retries_max=MAX_RETRIES,
                retry_at=timezone.now() + dt.timedelta(seconds=countdown),
            )
            raise self.retry(countdown=countdown)
    return f"{run.status}: {run.files_imported} imported, {run.files_failed} failed"


def _stale_sftp_run_ids(cutoff):
    """RUNNING polls with no sign of life since the cutoff: the run started, a
    file's ledger row moved or the import of one of its files beat its heart."""
    return (
        SftpRun.objects.filter(status=SftpRunStatus.RUNNING, started_at__lt=cutoff)
        .annotate(
            last_sign=Greatest(
                "started_at",
                Coalesce(Max("files__updated_at"), "started_at"),
                Coalesce(Max("files__import_run__heartbeat_at"), "started_at"),
            )
        )
        .filter(last_sign__lt=cutoff)
        .values_list("pk", flat=True)
    )


def sftp_run_resume(run_id: int) -> None:
    """Close the dead poll and start a new one of its source: the ledger keeps
    what was imported, and a file whose import was cut off resumes from the
    import's checkpoint, then is moved and gets its result file."""
    run = SftpRun.objects.filter(pk=run_id, status=SftpRunStatus.RUNNING).first()
    if run is None:
        return
    closed = SftpRun.objects.filter(pk=run_id, status=SftpRunStatus.RUNNING).update(
        status=SftpRunStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker running this poll stopped; a new poll took over.",
    )
    if closed:
        sftp_poll_source_task.delay(run.source_id, run.trigger)


register_recoverable_job("SFTP poll", stale_ids=_stale_sftp_run_ids, resume=sftp_run_resume)
