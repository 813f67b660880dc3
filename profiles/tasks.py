"""Background work of the profiles app: the home overview's counts and people exports."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from config.jobs import JobInterrupted, job_continue_later, register_recoverable_job
from profiles import exports, overview
from profiles.models import ExportStatus, PeopleExport

OVERVIEW_REFRESH_TASK = "profiles.tasks.overview_refresh_task"


@shared_task(
    name=OVERVIEW_REFRESH_TASK,
    acks_late=True,
    soft_time_limit=10 * 60,
    time_limit=11 * 60,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def overview_refresh_task() -> None:
    """Beat's recount of the home overview (idempotent: upserts)."""
    overview.overview_refresh()


@shared_task(
    acks_late=True,
    soft_time_limit=60 * 60,
    time_limit=60 * 60 + 60,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def people_export_task(export_id: int) -> None:
    """Write one Find People export (idempotent: a re-run resumes from its checkpoint)."""
    try:
        exports.people_export_run(export_id=export_id)
    except JobInterrupted:  # the worker is stopping: the next start resumes it
        job_continue_later(people_export_task, export_id)


def _stale_export_ids(cutoff):
    return PeopleExport.objects.filter(
        status=ExportStatus.RUNNING, heartbeat_at__lt=cutoff
    ).values_list("pk", flat=True)


# An export whose worker died goes on from its last checkpoint.
register_recoverable_job(
    "people export",
    stale_ids=_stale_export_ids,
    resume=lambda export_id: people_export_task.delay(export_id),
)
