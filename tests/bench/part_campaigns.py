"""Part: campaigns on the bench database.

(a) evaluate the audience (everyone, the first 100,000 profiles) and assign every outcome
(`outcomes_assign`: set-based INSERT … SELECT per batch), seconds;
(b) emails per second through the real delivery loop (`run_deliver`: claim, render,
SMTP, outcomes and Notification Sent events through ingest) to an aiosmtpd server on
loopback. The server runs in its own process, as a real mail server would, so it does
not share this process's interpreter lock with the sender.
The campaign, runs and deliveries made here are deleted afterwards.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

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


def run(ctx: BenchContext) -> list[Figure]:
    from django.conf import settings

    from campaigns import services
    from campaigns.models import Campaign, Channel, Outcome, RunKind
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
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.CAMPAIGN_RATE_PER_SECOND = 1_000_000  # measure the loop, not the throttle
        try:
            keep = list(run_.deliveries.filter(outcome=Outcome.PENDING)
                        .order_by("pk").values_list("pk", flat=True)[:mails])  # fmt: skip
            run_.deliveries.filter(outcome=Outcome.PENDING).exclude(pk__in=keep).delete()
            started = time.perf_counter()
            services.run_deliver(run_.pk)
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
