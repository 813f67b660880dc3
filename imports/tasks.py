"""Celery tasks of the imports app (autodiscovery loads this module only)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from config.jobs import JobInterrupted, job_continue_later, register_recoverable_job
from imports.models import ImportOrigin, ImportRun, ImportStatus
from imports.services import import_run_execute, import_run_fail, stale_after
from imports.sftp.tasks import *  # noqa: F403 — autodiscovery loads tasks.py only
from profiles.bulk import BulkConflict

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
RETRY_BASE_SECONDS = 5
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError, BulkConflict)


@shared_task(
    bind=True,
    name="imports.tasks.import_run_task",
    acks_late=True,
    soft_time_limit=30 * 60,
    time_limit=31 * 60,
    max_retries=MAX_RETRIES,
)
def import_run_task(self, import_run_id: int) -> str:
    """Import one run (imports.services.import_run_execute).

    Idempotent: the run is claimed with a conditional update, so a duplicate
    delivery does nothing and a redelivery after a worker died resumes after
    the last committed chunk. A stopping worker stops it at a chunk boundary
    and queues it again, for the next start. Transient database/broker errors
    are retried with exponential backoff; a run still held by a live worker is
    looked at again once its heartbeat could have gone stale. Hitting the soft
    time limit hands the run back and continues it in a fresh task.
    """
    try:
        run = import_run_execute(import_run_id=import_run_id)
    except SoftTimeLimitExceeded:
        raise self.retry(countdown=0, max_retries=None) from None
    except JobInterrupted:  # the worker is stopping; the chunks in flight committed
        job_continue_later(import_run_task, import_run_id)
        return "interrupted: continues on the next start"
    except TRANSIENT_ERRORS as error:
        if self.request.retries >= MAX_RETRIES:
            import_run_fail(import_run_id=import_run_id, error=f"Gave up after retries: {error}")
            raise
        countdown = RETRY_BASE_SECONDS * 2**self.request.retries
        logger.warning("import run %s: transient error, retry in %ss", import_run_id, countdown)
        raise self.retry(exc=error, countdown=countdown) from None
    if run.status == ImportStatus.RUNNING:  # another worker holds it; is it alive?
        raise self.retry(countdown=int(stale_after().total_seconds()) + 5)
    return f"{run.status}: {run.rows_done} rows, {run.rows_rejected} rejected"


def _stale_import_run_ids(cutoff):
    # Runs of an SFTP file are resumed by the SFTP poll recovered with them,
    # which then also moves the file and writes its result.
    return (
        ImportRun.objects.filter(status=ImportStatus.RUNNING, heartbeat_at__lt=cutoff)
        .exclude(origin=ImportOrigin.SFTP)
        .values_list("pk", flat=True)
    )


# A run whose worker died resumes after its last committed chunk (its claim
# takes over a RUNNING run with a stale heartbeat).
register_recoverable_job(
    "import run",
    stale_ids=_stale_import_run_ids,
    resume=lambda run_id: import_run_task.delay(run_id),
)
