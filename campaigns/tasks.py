from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from campaigns import services
from config.jobs import JobInterrupted, job_continue_later, register_recoverable_job

# A send's tasks: idempotent (claimed rows are never resent), retried on a lost database.
send_task = shared_task(
    acks_late=True,
    soft_time_limit=6 * 60 * 60,
    time_limit=6 * 60 * 60 + 60,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)


@send_task
def campaign_run_task(run_id: int) -> None:
    """Assign outcomes and deliver one run (idempotent: claimed rows are never resent),
    with CAMPAIGN_SEND_PROCESSES worker processes on it."""
    try:
        services.run_execute(run_id, processes=send_processes())
    except JobInterrupted:  # the worker is stopping: the next start goes on with it
        job_continue_later(campaign_run_task, run_id)


@send_task
def campaign_run_join_task(run_id: int, processes: int) -> None:
    """One more process on a run that campaign_run_task is delivering (see run_join)."""
    try:
        services.run_join(run_id, processes=processes)
    except JobInterrupted:  # hand it to the task that takes a run over on the next start
        job_continue_later(campaign_run_task, run_id)


def send_processes() -> int:
    """How many worker processes deliver one send at once: by default the two a
    `make run` worker has (config/launcher.py's WORKER_CONCURRENCY)."""
    return max(1, int(getattr(settings, "CAMPAIGN_SEND_PROCESSES", 2)))


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def live_campaigns_scan_task() -> None:
    """Message the profiles whose new events trigger a live campaign."""
    services.live_campaigns_scan()


# A send whose worker died (its heartbeat stood still) is queued again by the shared
# sweep in config/jobs.py; the task takes the run over and goes on with what is pending.
register_recoverable_job(
    "campaign run",
    stale_ids=services.stale_run_ids,
    resume=lambda run_id: campaign_run_task.delay(run_id),
)
