from celery import shared_task
from django.db import InterfaceError, OperationalError

from segments import services


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
    services.segment_export_run(export_id=export_id)
