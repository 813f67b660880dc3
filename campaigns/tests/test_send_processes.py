"""A send delivered by a REAL Celery worker with a pool of two processes, as `make run`
starts it: both processes send the run's batches, and nobody is messaged twice."""

from __future__ import annotations

import signal

import pytest

from campaigns import services
from campaigns.models import CampaignRun, Delivery, Outcome, RunStatus
from campaigns.tests.test_worker_killed import (
    campaign_to_everyone,
    start_worker,
    stop_worker,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)
PEOPLE = 120


def test_both_worker_processes_send_batches_of_one_run_each_mail_once(smtp_inbox, settings):
    campaign = campaign_to_everyone(PEOPLE)
    # Throttled, so the send lasts long enough for the second process to join it; with a
    # heartbeat limit, as in production, so a batch in hand is not taken for a dead one's.
    worker = start_worker(settings.EMAIL_PORT, pool="prefork", concurrency=2, rate=30,
                          stale_seconds=45)  # fmt: skip
    try:
        run = services.send_start(campaign, user=None)
        wait_until(lambda: CampaignRun.objects.get(pk=run.pk).finished, seconds=180)
    finally:
        stop_worker(worker)
    run = CampaignRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.DONE and run.processed == run.total == PEOPLE
    recipients = sorted(message["To"] for message in smtp_inbox.messages)
    assert recipients == sorted(f"p{n}@example.com" for n in range(PEOPLE))
    assert set(Delivery.objects.filter(run=run).values_list("outcome", flat=True)) == {Outcome.SENT}
    # A Message-ID names the process that made it (<time.pid.random@host>).
    senders = {message["Message-ID"].split(".")[1] for message in smtp_inbox.messages}
    assert len(senders) == 2


def test_a_stopping_two_process_worker_leaves_no_claim_behind_and_the_next_finishes(
    smtp_inbox, settings
):
    campaign = campaign_to_everyone(PEOPLE)
    worker = start_worker(settings.EMAIL_PORT, pool="prefork", concurrency=2, rate=30,
                          stale_seconds=45)  # fmt: skip
    try:
        run = services.send_start(campaign, user=None)
        wait_until(lambda: len(smtp_inbox.messages) >= 20, seconds=180)
        worker.send_signal(signal.SIGTERM)  # a warm shutdown: each process ends its batch
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert len(smtp_inbox.messages) < PEOPLE, "the send finished before the worker stopped"
    assert CampaignRun.objects.get(pk=run.pk).status == RunStatus.DELIVERING
    assert not Delivery.objects.filter(run=run, outcome=Outcome.CLAIMED).exists()

    # Both processes queued the send again; the next start takes it over once.
    worker = start_worker(settings.EMAIL_PORT, pool="prefork", concurrency=2, rate=30,
                          stale_seconds=45)  # fmt: skip
    try:
        wait_until(lambda: CampaignRun.objects.get(pk=run.pk).finished, seconds=180)
    finally:
        stop_worker(worker)
    assert CampaignRun.objects.get(pk=run.pk).status == RunStatus.DONE
    recipients = sorted(message["To"] for message in smtp_inbox.messages)
    assert recipients == sorted(f"p{n}@example.com" for n in range(PEOPLE))
    assert set(Delivery.objects.filter(run=run).values_list("outcome", flat=True)) == {Outcome.SENT}
