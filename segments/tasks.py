from celery import shared_task
from django.db import InterfaceError, OperationalError

from config.jobs import JobInterrupted, job_continue_later, register_recoverable_job
from segments import services
from segments.models import ExportStatus, SegmentExport


@shared_task(
    acks_late=True,
    soft_time_limit=60 * 60,
    time_limit=60 * 60 + 60,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def segment_export_task(export_id: int) -> None:
    """Write one segment export's CSV (idempotent: a re-run rewrites the file)."""
    try:
        services.segment_export_run(export_id=export_id)
    except JobInterrupted:  # the worker is stopping: written again on the next start
        job_continue_later(segment_export_task, export_id)


@shared_task(
    acks_late=True,
    soft_time_limit=5 * 60,
    time_limit=5 * 60 + 30,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def segment_system_recount_task() -> None:
    """Count the system segments (beat, every SEGMENT_SYSTEM_RECOUNT_SECONDS)."""
    services.segment_system_recount()


def _stale_export_ids(cutoff):
    return SegmentExport.objects.filter(
        status=ExportStatus.RUNNING, heartbeat_at__lt=cutoff
    ).values_list("pk", flat=True)


# An export whose worker died is written again from the start (the file is
# only saved once whole, so nothing half-written is ever offered).
register_recoverable_job(
    "segment export",
    stale_ids=_stale_export_ids,
    resume=lambda export_id: segment_export_task.delay(export_id),
)
