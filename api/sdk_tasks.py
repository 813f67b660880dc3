"""Celery task applying the web SDK's queued records (api.sdk_queue)."""

from __future__ import annotations

from celery import shared_task

from api.sdk_queue import sdk_queue_drain

# A drain works while records arrive and stops after a short idle spell, so it never
# holds a worker slot for long; requests nudge a new one, beat is the safety net.
DRAIN_SECONDS = 20


@shared_task(
    name="api.sdk_tasks.sdk_queue_drain_task",
    acks_late=True,
    soft_time_limit=DRAIN_SECONDS + 30,
    time_limit=DRAIN_SECONDS + 60,
    ignore_result=True,
)
def sdk_queue_drain_task() -> int:
    """Idempotent: entries already applied are past their shard's mark."""
    return sdk_queue_drain(seconds=DRAIN_SECONDS)
