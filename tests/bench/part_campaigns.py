"""Part: campaigns on the bench database.

(a) evaluate the audience and assign every outcome for up to 100,000 profiles (one
INSERT … SELECT and the shared-address UPDATE), seconds;
(b) emails per second through the batch delivery loop to an aiosmtpd server on loopback.
The campaign, runs and deliveries made here are deleted afterwards.
"""

from __future__ import annotations

import socket
import time

from tests.bench import BenchContext, Figure

PART = "campaigns"


class _CountingHandler:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):
        self.received += 1
        return "250 OK"


def run(ctx: BenchContext) -> list[Figure]:
    from aiosmtpd.controller import Controller
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
    definition = {"all": [{"property": "Name", "op": "exists"}]}
    segment = Segment.objects.create(name="bench campaign audience", definition=definition)
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

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        handler = _CountingHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
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
            controller.stop()
        figures.append(Figure(PART, "emails delivered to a loopback SMTP server", handler.received,
                              "emails"))  # fmt: skip
        figures.append(Figure(PART, "  rate", handler.received / elapsed if elapsed else 0, "/s"))
    finally:
        campaign.delete()
        segment.delete()
    return figures
