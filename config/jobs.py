"""Crash recovery for long jobs: one small mechanism shared by every job type.

A job (an import run, an SFTP poll, a segment export, …) keeps a heartbeat
while its worker works on it. A worker that dies (killed, out of memory, the
machine restarted) leaves its job RUNNING with a heartbeat that stops moving.
Beat runs `jobs_recover_stale` every JOB_RECOVERY_INTERVAL_SECONDS; it asks
each registered job type for its stale jobs and enqueues each one's task
again. The tasks are idempotent and resume from their checkpoint, so a job
enqueued twice (recovery and the broker's own redelivery) is done once.

A job type plugs in with one call, next to its task:

    register_recoverable_job(
        "segment export",
        stale_ids=lambda cutoff: SegmentExport.objects.filter(...).values_list("pk", flat=True),
        resume=lambda export_id: segment_export_task.delay(export_id),
    )

A stopping worker (SIGTERM: `make run` stopping, a deploy) does not wait for
a long job to end, nor is it cut off mid-write: the job checks
`job_stop_check()` at each of its boundaries (an import's chunk, an export's
batch), stops there with what it did committed, hands itself back (its
heartbeat made stale, so the sweep takes it at once) and queues its task
again with `job_continue_later`. The next start resumes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

RECOVERY_TASK_NAME = "config.jobs.jobs_recover_stale"


@dataclass(frozen=True)
class RecoverableJob:
    name: str
    # Ids of RUNNING jobs whose heartbeat is older than the cutoff.
    stale_ids: Callable[[dt.datetime], Iterable[int]]
    # Enqueue the job's task again for one id.
    resume: Callable[[int], object]


_REGISTRY: dict[str, RecoverableJob] = {}


def stale_after() -> dt.timedelta:
    """How long a job's heartbeat may stand still before its worker is presumed dead."""
    return dt.timedelta(seconds=int(getattr(settings, "JOB_HEARTBEAT_STALE_SECONDS", 45)))


def register_recoverable_job(
    name: str,
    *,
    stale_ids: Callable[[dt.datetime], Iterable[int]],
    resume: Callable[[int], object],
) -> None:
    """Register a job type (idempotent: registering a name again replaces it)."""
    _REGISTRY[name] = RecoverableJob(name=name, stale_ids=stale_ids, resume=resume)


def recoverable_jobs() -> list[RecoverableJob]:
    return list(_REGISTRY.values())


def jobs_recover(*, now: dt.datetime | None = None) -> dict[str, list[int]]:
    """Enqueue every stale job again; returns {job type: ids enqueued}.

    One job type failing (its table locked, its broker call refused) does not
    keep the others from being recovered."""
    from config.celery import app

    app.loader.import_default_modules()  # the job types register as their tasks load
    cutoff = (now or timezone.now()) - stale_after()
    resumed: dict[str, list[int]] = {}
    for job in recoverable_jobs():
        try:
            ids = list(job.stale_ids(cutoff))
            for job_id in ids:
                job.resume(job_id)
        except Exception:
            logger.exception("recovering stale %s jobs failed; trying again next time", job.name)
            continue
        if ids:
            logger.warning("resuming %d stale %s job(s): %s", len(ids), job.name, ids)
            resumed[job.name] = ids
    return resumed


@shared_task(name=RECOVERY_TASK_NAME, acks_late=True, soft_time_limit=60, time_limit=90)
def jobs_recover_stale() -> dict[str, list[int]]:
    """Beat's periodic sweep (see the module docstring)."""
    return jobs_recover()


# --- a stopping worker ------------------------------------------------------------------


class JobInterrupted(BaseException):
    """The worker is stopping: the job stopped at a boundary, its work so far
    committed, and it continues on the next start.

    A BaseException, like SystemExit: the `except Exception` handlers on its way
    (an SFTP poll's per-file error handling, an export's failure handling) must
    not take an orderly stop for the job's failure. The job's task catches it."""


# Set in the worker's main process when its warm shutdown begins and read by the
# pool's children, which share it (created before they are forked). A raw
# shared byte: setting it from a signal handler takes no lock.
_stop_flag = None


def worker_stop_flag_install() -> None:
    """Celery's worker_init (the main process, before the pool starts)."""
    global _stop_flag
    _stop_flag = multiprocessing.RawValue("b", 0)


def worker_stop_request() -> None:
    """Celery's worker_shutting_down: jobs in hand stop at their next boundary."""
    if _stop_flag is not None:
        _stop_flag.value = 1


def job_stop_requested() -> bool:
    return _stop_flag is not None and bool(_stop_flag.value)


def job_stop_check() -> None:
    """Call at a job's boundary, where everything before it has committed."""
    if job_stop_requested():
        raise JobInterrupted


def handed_back_heartbeat(stale: dt.timedelta | None = None) -> dt.datetime:
    """The heartbeat a job handed back by a stopping worker gets: already stale,
    so its resumed task (or the sweep) claims it without waiting."""
    return timezone.now() - (stale or stale_after()) - dt.timedelta(seconds=1)


def job_continue_later(task, *args: object) -> None:
    """Queue an interrupted job's task again (the stopping worker consumes no
    more; the next start does). When the broker cannot take it, the sweep will:
    the job is still running with a stale heartbeat."""
    try:
        task.delay(*args)
    except BrokerError:
        logger.warning("could not queue %s%s again; the recovery sweep will", task.name, args)
