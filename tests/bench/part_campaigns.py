"""Part: campaigns on the bench database.

(a) evaluate the audience (everyone, the first 100,000 profiles) and assign every outcome
(`outcomes_assign`: set-based INSERT … SELECT per batch), seconds;
(b) emails per second delivered the way `make run` sends a campaign: its Celery worker
(the command config/launcher.py starts, same concurrency) runs the send's task, whose
processes claim, render, send over SMTP, store outcomes and record Notification Sent
through ingest, to an aiosmtpd server on loopback. The server runs in its own process, as a
real mail server would. Timed from queueing the task until the run is done.
The campaign, runs and deliveries made here are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.bench import BenchContext, Figure

PART = "campaigns"

# A counting SMTP server: prints how many messages it accepted when stdin closes.
SMTP_COUNTER = """
import logging, sys
from aiosmtpd.controller import Controller
logging.getLogger("mail.log").setLevel(logging.WARNING)
class Counter:
    received = 0
    async def handle_DATA(self, server, session, envelope):
        Counter.received += 1
        return "250 OK"
controller = Controller(Counter(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
print(Counter.received, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _worker(smtp_port: int) -> Iterator[Path]:
    """The Celery worker as `make run` starts it, sending to the loopback server with no
    throttle (the loop is measured, not CAMPAIGN_RATE_PER_SECOND); yields its log file."""
    from config.celery import app
    from config.launcher import BASE_DIR, service_commands

    app.control.purge()  # nothing left over from an earlier run of this bench
    log = Path(tempfile.mkstemp(prefix="bench-campaigns-worker-", suffix=".log")[1])
    env = {**os.environ, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port),
           "CAMPAIGN_RATE_PER_SECOND": "1000000",
           "PGAPPNAME": "userprofiles-bench-worker"}  # fmt: skip
    with log.open("w") as output:
        worker = subprocess.Popen(service_commands("0")["worker"], cwd=BASE_DIR, env=env,
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a worker starts slowly on a busy machine
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bench's Celery worker did not start; see {log}")
        yield log
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    log.unlink()


def _wait_until_finished(run_id: int, log: Path, seconds: float = 600) -> None:
    from campaigns.models import CampaignRun

    deadline = time.monotonic() + seconds
    while not CampaignRun.objects.get(pk=run_id).finished:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the send did not finish in {seconds:.0f} s; see {log}")
        time.sleep(0.02)


def run(ctx: BenchContext) -> list[Figure]:
    from campaigns import services
    from campaigns.models import Campaign, CampaignRun, Channel, Outcome, RunKind
    from campaigns.tasks import campaign_run_task
    from profiles.models import Profile
    from segments.models import Segment

    audience_size = 10_000 if ctx.quick else 100_000
    mails = 300 if ctx.quick else 3_000
    ids = Profile.objects.order_by("pk").values_list("pk", flat=True)
    cutoff = list(ids[audience_size - 1 : audience_size])
    last_id = cutoff[0] if cutoff else ids.last() or 0
    segment = Segment.objects.create(name="bench campaign audience", definition={"all": []})
    campaign = Campaign.objects.create(
        name="bench campaign", channel=Channel.EMAIL, segment=segment,
        subject="Hi {{ Profile.Name }}", body="Hello {{ Profile.Name | default: 'there' }}",
    )  # fmt: skip
    figures: list[Figure] = []
    try:
        run_ = campaign.runs.create(kind=RunKind.SEND)
        audience = Profile.objects.filter(services.audience_q(campaign), pk__lte=last_id)
        started = time.perf_counter()
        total = services.outcomes_assign(run_, audience)
        elapsed = time.perf_counter() - started
        figures.append(Figure(PART, "audience evaluated and outcomes assigned", total, "profiles"))
        figures.append(Figure(PART, "  seconds for that", elapsed, "s", "≤ 10 s"))

        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SMTP_COUNTER, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdin is not None
        server.stdout.readline()  # "ready"
        try:
            keep = list(run_.deliveries.filter(outcome=Outcome.PENDING)
                        .order_by("pk").values_list("pk", flat=True)[:mails])  # fmt: skip
            run_.deliveries.filter(outcome=Outcome.PENDING).exclude(pk__in=keep).delete()
            # Outcomes are assigned (total set): the task goes straight to delivery.
            CampaignRun.objects.filter(pk=run_.pk).update(total=len(keep))
            with _worker(port) as log:
                started = time.perf_counter()
                campaign_run_task.delay(run_.pk)
                _wait_until_finished(run_.pk, log)
                elapsed = time.perf_counter() - started
        finally:
            received, _ = server.communicate("", timeout=60)
        count = int(received.strip() or 0)
        figures.append(Figure(PART, "emails delivered to a loopback SMTP server", count,
                              "emails"))  # fmt: skip
        figures.append(Figure(PART, "  rate", count / elapsed if elapsed else 0, "/s", "≥ 500/s"))
    finally:
        campaign.delete()
        segment.delete()
    return figures
