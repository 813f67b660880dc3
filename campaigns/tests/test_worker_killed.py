"""A REAL Celery worker (a separate process, real Redis broker) is SIGKILLed in the
middle of a send; the shared stale-job sweep (config/jobs.py) queues the run again, another
worker resumes it, and nobody gets two messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from campaigns import services
from campaigns.models import Campaign, CampaignRun, Delivery, Outcome, RunStatus
from config.jobs import jobs_recover
from conftest import test_database_url
from profiles.tests.factories import ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 40


def start_worker(
    smtp_port: int,
    pool: str = "solo",
    *,
    concurrency: int = 1,
    rate: int = 8,
    stale_seconds: int = 0,
) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": test_database_url(),
           "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
           "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port),
           "CAMPAIGN_RATE_PER_SECOND": str(rate),
           # The kill tests run the recovery sweep themselves, at once (no beat here).
           "JOB_HEARTBEAT_STALE_SECONDS": str(stale_seconds)}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}",
         f"--concurrency={concurrency}",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.2)


def stop_worker(worker: subprocess.Popen) -> None:
    """A warm shutdown, as make run stops it; killed if it takes too long."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def campaign_to_everyone(people: int) -> Campaign:
    """An email campaign to `people` new profiles, with nothing left in the task queue."""
    from config.celery import app

    app.control.purge()
    segment = Segment.objects.create(name="Everyone", definition={"all": []})
    for n in range(people):
        ProfileFactory(name=f"P{n}", email=f"p{n}@example.com")
    return Campaign.objects.create(name="Big", segment=segment, subject="Hi", body="Hello")


def test_a_killed_worker_is_resumed_and_nobody_is_messaged_twice(smtp_inbox, settings):
    campaign = campaign_to_everyone(PEOPLE)
    port = settings.EMAIL_PORT
    worker = start_worker(port)
    try:
        run = services.send_start(campaign, user=None)
        # A bound, not a timing assert: a worker starts slowly on a busy machine.
        wait_until(lambda: len(smtp_inbox.messages) >= 8, seconds=180)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    before = len(smtp_inbox.messages)
    assert before < PEOPLE, "the send finished before the worker was killed"
    assert CampaignRun.objects.get(pk=run.pk).status == RunStatus.DELIVERING

    settings.JOB_HEARTBEAT_STALE_SECONDS = 0
    worker = start_worker(port)
    try:
        # The shared sweep of config/jobs.py finds the run and queues it again.
        assert jobs_recover().get("campaign run") == [run.pk]
        wait_until(lambda: CampaignRun.objects.get(pk=run.pk).finished, seconds=120)
    finally:
        stop_worker(worker)

    run = CampaignRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.DONE
    recipients = [message["To"] for message in smtp_inbox.messages]
    assert len(recipients) == len(set(recipients)), "someone was messaged twice"
    rows = dict(Delivery.objects.filter(run=run).values_list("address", "outcome"))
    assert len(rows) == PEOPLE
    sent = {address for address, outcome in rows.items() if outcome == Outcome.SENT}
    interrupted = {address for address, outcome in rows.items() if outcome == Outcome.FAILED}
    assert sent <= set(recipients) and len(sent) > before
    # The batch the killed worker had claimed may have gone out before it died: it is
    # reported Failed (interrupted) and never sent again. At most one batch is affected.
    assert set(recipients) - sent <= interrupted
    assert len(interrupted) <= 8
    assert sent | interrupted == set(rows)


def test_a_stopping_worker_hands_the_send_back_and_the_next_start_finishes_it(smtp_inbox, settings):
    campaign = campaign_to_everyone(PEOPLE)
    port = settings.EMAIL_PORT
    # prefork, as make run starts it: the pool's child reads the stop flag.
    worker = start_worker(port, pool="prefork")
    try:
        run = services.send_start(campaign, user=None)
        wait_until(lambda: len(smtp_inbox.messages) >= 8, seconds=180)
        worker.send_signal(signal.SIGTERM)  # a warm shutdown, as make run stops it
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    before = len(smtp_inbox.messages)
    assert before < PEOPLE, "the send finished before the worker was stopped"
    stopped = CampaignRun.objects.get(pk=run.pk)
    assert stopped.status == RunStatus.DELIVERING
    # Stopped between batches: nothing claimed and unsent is left behind.
    assert not Delivery.objects.filter(run=run, outcome=Outcome.CLAIMED).exists()

    worker = start_worker(port, pool="prefork")  # no sweep: the task was queued again
    try:
        wait_until(lambda: CampaignRun.objects.get(pk=run.pk).finished, seconds=120)
    finally:
        stop_worker(worker)
    run = CampaignRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.DONE
    recipients = [message["To"] for message in smtp_inbox.messages]
    assert sorted(recipients) == sorted(f"p{n}@example.com" for n in range(PEOPLE))
    outcomes = set(Delivery.objects.filter(run=run).values_list("outcome", flat=True))
    assert outcomes == {Outcome.SENT}
