"""Campaign writes: save, assign outcomes for a whole audience in SQL, deliver in batches."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from campaigns import delivery as delivery_module
from campaigns.delivery import services as delivery_services
from campaigns.models import (
    AudienceKind,
    Campaign,
    CampaignRun,
    CampaignStatus,
    Channel,
    Delivery,
    Outcome,
    RunKind,
    RunStatus,
)
from campaigns.personalise import TemplateProblem, profile_context, render, template_check
from config.jobs import JobInterrupted, handed_back_heartbeat, job_stop_requested
from profiles.models import Device, Event, Profile
from profiles.selectors import test_profiles_q
from segments.compiler import SegmentDefinitionError, compile_definition

# The compiler's reachable condition knows these channel names.
REACHABLE_CHANNEL = {"email": "email", "sms": "sms", "whatsapp": "whatsapp", "push": "push",
                     "webpush": "push"}  # fmt: skip
BATCH_SIZE = 500
logger = logging.getLogger(__name__)
UNREACHABLE_DEVICE = "the triggering event came from a device that cannot receive this channel"


class CampaignProblem(ValueError):
    """Something the person must fix; the message says what."""


def campaign_check(campaign: Campaign) -> None:
    """Refuse a campaign that cannot be sent: template errors (with line), bad audience."""
    try:
        template_check(campaign.body, escape=campaign.channel == Channel.EMAIL and campaign.html)
    except TemplateProblem as problem:
        raise CampaignProblem(f"Body, {problem}") from problem
    try:
        template_check(campaign.subject)
    except TemplateProblem as problem:
        raise CampaignProblem(f"Subject, {problem}") from problem
    if campaign.audience_kind == AudienceKind.SEGMENT and campaign.segment_id is None:
        raise CampaignProblem("Choose the segment to send to.")
    if campaign.audience_kind == AudienceKind.DEFINITION:
        try:
            compile_definition(campaign.definition)
        except SegmentDefinitionError as error:
            raise CampaignProblem(f"Audience definition: {error}") from error
    if campaign.audience_kind == AudienceKind.LIVE:
        if not campaign.live_event:
            raise CampaignProblem("Name the event that triggers the live campaign.")
        try:
            compile_definition(_live_definition(campaign))
        except SegmentDefinitionError as error:
            raise CampaignProblem(f"Event filter: {error}") from error


def _live_definition(campaign: Campaign) -> dict[str, Any]:
    condition: dict[str, Any] = {"event": campaign.live_event, "op": "did"}
    if campaign.live_where:
        condition["where"] = campaign.live_where
    return {"all": [condition]}


def campaign_save(campaign: Campaign, *, user) -> Campaign:
    campaign_check(campaign)
    campaign.updated_by = user
    campaign.save()
    return campaign


def audience_q(campaign: Campaign) -> Q:
    if campaign.audience_kind == AudienceKind.SEGMENT:
        return compile_definition(campaign.segment.definition)
    if campaign.audience_kind == AudienceKind.DEFINITION:
        return compile_definition(campaign.definition)
    return compile_definition(_live_definition(campaign))


def reachable_q(channel: str) -> Q:
    """The one reachability rule, as the segment compiler states it."""
    value = REACHABLE_CHANNEL[channel]
    return compile_definition({"all": [{"system": "reachable", "op": "equals", "value": value}]})


def _address(channel: str) -> Coalesce:
    """Where the channel reaches a profile: its email, its phone, or the push token of its
    most recently seen device on the channel's platform with push permission not off."""
    if channel == Channel.EMAIL:
        return Coalesce(F("email"), Value(""))
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return Coalesce(F("phone"), Value(""))
    devices = (
        Device.objects.filter(profile=OuterRef("pk"))
        .exclude(push_token="")
        .exclude(push_enabled=False)
        .annotate(platform_lower=Lower("platform"))
    )
    if channel == Channel.WEBPUSH:
        devices = devices.filter(platform_lower="web")
    else:
        devices = devices.exclude(platform_lower="web")
    newest = devices.order_by(F("last_seen").desc(nulls_last=True), "pk").values("push_token")
    return Coalesce(Subquery(newest[:1]), Value(""))


# Profiles per INSERT … SELECT: each batch commits on its own and beats the heartbeat, so
# a huge audience neither holds one long transaction nor looks like a dead worker.
OUTCOME_BATCH_IDS = 100_000

_ASSIGN_SQL = """
WITH candidate AS (
    SELECT q.id, COALESCE(q.ok, false) AND q.address <> '' AS ok, q.address,
           COALESCE(q.ok, false) AND q.address = '' AS no_device
      FROM ({candidates}) q (id, ok, address)
), ranked AS (
    {ranked}
)
INSERT INTO {table} (run_id, profile_id, outcome, address, error, provider_id, provider_status)
SELECT %(run)s, id,
       CASE WHEN NOT ok THEN %(unreachable)s WHEN duplicate THEN %(duplicate)s
            ELSE %(pending)s END,
       address,
       CASE WHEN no_device THEN 'no device for this channel'
            WHEN duplicate THEN 'shared with an earlier profile' ELSE '' END,
       '', ''
  FROM ranked
 ORDER BY id
ON CONFLICT (run_id, profile_id) DO NOTHING
"""
# Email addresses are unique identifiers: nothing to de-duplicate.
_RANKED_PLAIN = "SELECT c.*, false AS duplicate FROM candidate c"
# A push token or phone: the first profile to qualify keeps it (lowest id in this batch,
# unless an earlier batch or live scan of the run already gave it to someone).
_RANKED_DEDUPE = """
    SELECT c.*, c.ok AND (
               t.address IS NOT NULL
               OR row_number() OVER (PARTITION BY c.ok, c.address ORDER BY c.id) > 1
           ) AS duplicate
      FROM candidate c
      LEFT JOIN (SELECT DISTINCT address FROM {table}
                  WHERE run_id = %(run)s AND address <> '' AND outcome = ANY(%(holding)s)) t
             ON t.address = c.address
"""


def outcomes_assign(run: CampaignRun, audience: QuerySet[Profile]) -> int:
    """Evaluate the audience and give every member its outcome in set-based SQL: one
    INSERT … SELECT per batch of profile ids, nothing per profile in Python.

    In one pass: the reachability rule decides Pending or Profile not reachable (also when
    no device is on the channel's platform); among profiles sharing a push token or phone
    the first to qualify (lowest id, or earlier in the run) keeps it and the others are
    Duplicate Platform ID. ON CONFLICT makes a repeated assignment (a resumed run, a
    retried batch) change nothing. Returns the run's number of rows.
    """
    channel = run.campaign.channel
    candidates = audience.annotate(
        campaign_ok=ExpressionWrapper(reachable_q(channel), output_field=BooleanField()),
        campaign_address=_address(channel),
    ).values("pk", "campaign_ok", "campaign_address")
    bounds = Profile.objects.aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    table = Delivery._meta.db_table
    ranked = _RANKED_PLAIN if channel == Channel.EMAIL else _RANKED_DEDUPE.format(table=table)
    params = {
        "run": run.pk,
        "holding": [Outcome.PENDING, Outcome.CLAIMED, Outcome.SENT],
        "unreachable": Outcome.PROFILE_NOT_REACHABLE,
        "duplicate": Outcome.DUPLICATE,
        "pending": Outcome.PENDING,
    }
    start = low
    while start is not None and start <= high:
        batch = candidates.filter(pk__gte=start, pk__lt=start + OUTCOME_BATCH_IDS)
        start += OUTCOME_BATCH_IDS
        try:
            sql, batch_params = batch.query.sql_with_params()
        except EmptyResultSet:  # e.g. pk__in=[]: nobody to assign
            break
        # Django's own placeholders are positional: name them for the outer statement.
        named = {f"p{n}": value for n, value in enumerate(batch_params)}
        inner = sql.replace("%%", "%%%%") % tuple(f"%({name})s" for name in named)
        statement = _ASSIGN_SQL.format(candidates=inner, ranked=ranked, table=table)
        with transaction.atomic(), connection.cursor() as cursor:
            # The batch's sort (by address for duplicates, by id) stays in memory.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute(statement, {**params, **named})
        CampaignRun.objects.filter(pk=run.pk).update(heartbeat=timezone.now())
    return Delivery.objects.filter(run=run).count()


def _rate(channel: str) -> float:
    rate = getattr(settings, "CAMPAIGN_RATE_PER_SECOND", 50)
    if isinstance(rate, dict):
        rate = rate.get(channel, rate.get("default", 50))
    return max(float(rate), 0.1)


def message_for(campaign: Campaign, profile: Profile, address: str, reference: str,
                event: Event | None = None, *, status_callback: str = "",
                ) -> delivery_module.OutgoingMessage:  # fmt: skip
    context = {
        "Profile": profile_context(profile),
        "Event": dict(event.properties) if event else {},
    }
    html = campaign.channel == Channel.EMAIL and campaign.html
    body = render(campaign.body, context, escape=html)
    return delivery_module.OutgoingMessage(
        channel=campaign.channel,
        to=address,
        subject=render(campaign.subject, context),
        body=body,
        html=body if html else None,
        reference=reference,
        status_callback=status_callback,
    )


_CLAIM_SQL = """
UPDATE {table} d SET outcome = %(claimed)s, at = now()
  FROM (SELECT id FROM {table}
         WHERE run_id = %(run)s AND outcome = %(pending)s AND id > %(after)s
         ORDER BY id LIMIT %(size)s
           FOR UPDATE SKIP LOCKED) next
 WHERE d.id = next.id
RETURNING d.id
"""


def _claim(run: CampaignRun, size: int, *, after: int = 0) -> list[Delivery]:
    """Mark the next pending rows as claimed and commit before anything is sent:
    a row is messaged at most once even if the worker dies right after. One statement;
    SKIP LOCKED lets the run's other processes take the rows after these at the same time.
    `after` (the last id this process claimed) lets the index scan skip the rows taken."""
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL.format(table=table),
            {"claimed": Outcome.CLAIMED, "pending": Outcome.PENDING, "run": run.pk,
             "after": after, "size": size},
        )  # fmt: skip
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return list(Delivery.objects.filter(pk__in=ids).select_related("profile").order_by("pk"))


def deliver_batch(run: CampaignRun, claimed: list[Delivery]) -> None:
    campaign = run.campaign
    messages, rendered = [], []
    triggers = Event.objects.in_bulk([row.event_id for row in claimed if row.event_id])
    for row in claimed:
        event = triggers.get(row.event_id) if row.event_id else None
        try:
            reference = f"run-{run.pk}-profile-{row.profile_id}"
            callback = delivery_services.status_callback_url(channel=campaign.channel,
                                                             delivery_id=row.pk)  # fmt: skip
            messages.append(message_for(campaign, row.profile, row.address, reference, event,
                                        status_callback=callback))  # fmt: skip
            rendered.append(row)
        except TemplateProblem as problem:
            row.outcome, row.error = Outcome.FAILED, str(problem)
            row.save(update_fields=["outcome", "error"])
    results = delivery_module.deliver_many(messages) if messages else []
    now = timezone.now()
    events: list[tuple[int, str, dict, str]] = []
    sent = 0
    gone_tokens = []
    for row, result in zip(rendered, results, strict=True):
        row.outcome = Outcome.SENT if result.accepted else Outcome.FAILED
        row.error, row.provider_id, row.at = result.error[:2000], result.provider_id[:200], now
        properties = {"Campaign": campaign.name, "Channel": campaign.get_channel_display()}
        if result.accepted:
            sent += 1
            events.append((row.profile_id, "Notification Sent", properties, f"ntf-{row.pk}-sent"))
        else:
            # The provider refused it after the retries: on the timeline with its reason.
            reason = {**properties, "Reason": result.error[:500]}
            events.append((row.profile_id, "Notification Failed", reason, f"ntf-{row.pk}-failed"))
        if result.gone:
            gone_tokens.append(row.address)
    _outcomes_store(rendered)
    delivery_services.push_tokens_forget(tokens=gone_tokens)
    if events:
        # Campaign name and channel come from the database; a refusal's reason does not.
        delivery_module.notification_events_record(
            deliveries=events, may_hold_unstorable=len(events) > sent
        )


def _outcomes_store(rows: list[Delivery]) -> None:
    """The batch's outcomes in one UPDATE … FROM unnest(…), not one statement per row."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {Delivery._meta.db_table} d
                   SET outcome = v.outcome, error = v.error, provider_id = v.provider_id,
                       at = v.at
                  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],
                              %s::timestamptz[]) AS v (id, outcome, error, provider_id, at)
                 WHERE d.id = v.id""",
            [
                [row.pk for row in rows],
                [row.outcome for row in rows],
                [row.error for row in rows],
                [row.provider_id for row in rows],
                [row.at for row in rows],
            ],
        )


def run_take_over(run_id: int) -> bool:
    """Claim a run for this worker: a queued run, or one whose worker stopped beating.

    A conditional update, so a redelivered task and the recovery sweep cannot both work
    on a live run; returns False when another worker is (still) on it."""
    from config.jobs import stale_after

    now = timezone.now()
    live = Q(status=RunStatus.DELIVERING) & Q(heartbeat__gte=now - stale_after())
    taken = (
        CampaignRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.DELIVERING])
        .exclude(live)
        .update(status=RunStatus.DELIVERING, heartbeat=now)
    )
    return taken == 1


def run_deliver(run_id: int) -> CampaignRun:
    """Deliver every pending row of a run in this process, throttled, checking the stop
    flag between batches. Safe to call again on a run a dead worker left behind."""
    if not run_take_over(run_id):
        return CampaignRun.objects.get(pk=run_id)
    run = CampaignRun.objects.select_related("campaign").get(pk=run_id)
    _claims_abandoned_fail(run)
    _progress_recount(run)
    return _deliver_pending(run, processes=1)


def run_join(run_id: int, *, processes: int) -> CampaignRun:
    """Another worker process on a run being delivered: it claims batches beside the
    process that took the run over (SKIP LOCKED keeps them apart) and beats the same
    heartbeat. It never takes a run over, so it never touches rows another process has
    claimed; `processes` is how many share the run (each takes its share of the rate)."""
    run = CampaignRun.objects.select_related("campaign").get(pk=run_id)
    if run.status != RunStatus.DELIVERING:
        return run  # not started, or finished before this process got to it
    return _deliver_pending(run, processes=processes)


def _claims_abandoned_fail(run: CampaignRun, *, older_than: dt.datetime | None = None) -> None:
    """Rows claimed by a worker that died may or may not have gone out: never resend them.
    Called when a run is taken over, and by the last process of a run for claims older
    than the heartbeat's limit (a process of the run died while others went on)."""
    claimed = Delivery.objects.filter(run=run, outcome=Outcome.CLAIMED)
    if older_than is not None:
        claimed = claimed.filter(at__lt=older_than)
    claimed.update(
        outcome=Outcome.FAILED, error="interrupted while sending; not resent to avoid a duplicate"
    )


def _progress_recount(run: CampaignRun) -> None:
    """On taking a run over, before any other process joins it: from here on each
    process adds its batches to `processed`."""
    CampaignRun.objects.filter(pk=run.pk).update(
        processed=Delivery.objects.filter(run=run).exclude(outcome=Outcome.PENDING).count()
    )


def _deliver_pending(run: CampaignRun, *, processes: int) -> CampaignRun:
    # The run's processes share the channel's rate: each sends its share.
    rate = _rate(run.campaign.channel) / max(1, processes)
    size = max(1, min(BATCH_SIZE, int(rate)))
    last = 0
    while True:
        run.refresh_from_db(fields=["stop_requested"])
        if run.stop_requested:
            return _finish(run, RunStatus.STOPPED)
        if job_stop_requested():
            # The worker is stopping: every batch so far is delivered and recorded.
            # Hand the run back, claimable at once by its re-queued task or the sweep.
            CampaignRun.objects.filter(pk=run.pk).update(heartbeat=handed_back_heartbeat())
            raise JobInterrupted
        started = time.monotonic()
        claimed = _claim(run, size, after=last)
        if not claimed:
            break
        last = claimed[-1].pk
        deliver_batch(run, claimed)
        CampaignRun.objects.filter(pk=run.pk).update(
            heartbeat=timezone.now(), processed=F("processed") + len(claimed)
        )
        pause = len(claimed) / rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
    return _finish_unless_in_flight(run)


def _finish_unless_in_flight(run: CampaignRun) -> CampaignRun:
    """Nothing is left to claim: the run is done once no process is still sending a batch.
    Each process stores its batch's outcomes before it looks, so of the last two to look at
    least one sees the other's batch stored and finishes the run (both may: finishing is
    idempotent). A claim older than the heartbeat's limit belongs to a dead process."""
    from config.jobs import stale_after

    alive_since = timezone.now() - stale_after()
    in_flight = Delivery.objects.filter(run=run, outcome=Outcome.CLAIMED, at__gte=alive_since)
    if in_flight.exists():
        run.refresh_from_db()
        return run  # the process sending it finishes the run
    _claims_abandoned_fail(run, older_than=alive_since)
    return _finish(run, RunStatus.DONE)


def _finish(run: CampaignRun, status: str) -> CampaignRun:
    now = timezone.now()
    processed = Delivery.objects.filter(run=run).exclude(outcome=Outcome.PENDING).count()
    CampaignRun.objects.filter(pk=run.pk).update(status=status, finished_at=now, heartbeat=now,
                                                 processed=processed)  # fmt: skip
    if run.kind == RunKind.SEND:
        Campaign.objects.filter(pk=run.campaign_id).update(
            status=CampaignStatus.SENT if status == RunStatus.DONE else CampaignStatus.STOPPED
        )
    run.refresh_from_db()
    return run


def send_test(campaign: Campaign, *, user, profile: Profile | None = None) -> CampaignRun:
    """Deliver now to every test profile, or to one chosen test profile: never anyone else."""
    campaign_check(campaign)
    audience = Profile.objects.filter(test_profiles_q())
    if profile is not None:
        if not profile.is_test:
            raise CampaignProblem("Test sends go to test profiles only.")
        audience = audience.filter(pk=profile.pk)
    run = CampaignRun.objects.create(campaign=campaign, kind=RunKind.TEST, created_by=user)
    run.total = outcomes_assign(run, audience)
    run.save(update_fields=["total"])
    return run_deliver(run.pk)


def send_start(campaign: Campaign, *, user, queue: bool = True) -> CampaignRun:
    """Create a real send and queue it (the task assigns outcomes and delivers); with
    queue=False the caller runs `run_execute` itself."""
    from campaigns.tasks import campaign_run_task

    campaign_check(campaign)
    if campaign.audience_kind == AudienceKind.LIVE:
        raise CampaignProblem("A live campaign is started with “Go live”, not sent once.")
    if campaign.runs.filter(kind=RunKind.SEND).exclude(
        status__in=[RunStatus.DONE, RunStatus.STOPPED, RunStatus.FAILED]).exists():  # fmt: skip
        raise CampaignProblem("This campaign is already being sent.")
    run = CampaignRun.objects.create(campaign=campaign, kind=RunKind.SEND, created_by=user)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING)
    if queue:
        campaign_run_task.delay_on_commit(run.pk)
    return run


def run_execute(run_id: int, *, processes: int = 1) -> CampaignRun:
    """The task body: assign outcomes once (idempotent), then deliver what is pending, with
    `processes - 1` more worker processes joining (`run_join`, queued as their own tasks)."""
    from campaigns.tasks import campaign_run_join_task

    if not run_take_over(run_id):
        return CampaignRun.objects.get(pk=run_id)
    run = CampaignRun.objects.select_related("campaign__segment").get(pk=run_id)
    _claims_abandoned_fail(run)
    if run.total == 0:
        total = outcomes_assign(run, Profile.objects.filter(audience_q(run.campaign)))
        CampaignRun.objects.filter(pk=run.pk).update(total=total)
    _progress_recount(run)
    joined = 1
    for _ in range(processes - 1):
        try:
            campaign_run_join_task.delay(run.pk, processes)
        except BrokerError:  # the broker is down: this process sends everything
            logger.warning("could not queue a helper for campaign run %s", run.pk)
            break
        joined += 1
    return _deliver_pending(run, processes=joined)


def run_stop(run: CampaignRun) -> None:
    CampaignRun.objects.filter(pk=run.pk).update(stop_requested=True)


def stale_run_ids(cutoff: dt.datetime) -> QuerySet[CampaignRun, int]:
    """Sends whose worker stopped beating before the cutoff (config/jobs.py's sweep)."""
    return CampaignRun.objects.filter(
        kind=RunKind.SEND, status=RunStatus.DELIVERING, heartbeat__lt=cutoff
    ).values_list("pk", flat=True)


def live_go(campaign: Campaign, *, user) -> CampaignRun:
    campaign_check(campaign)
    if campaign.audience_kind != AudienceKind.LIVE:
        raise CampaignProblem("Only a live campaign can go live.")
    run = campaign.runs.filter(kind=RunKind.LIVE).first()
    if run is None:
        run = CampaignRun.objects.create(campaign=campaign, kind=RunKind.LIVE, created_by=user,
                                         status=RunStatus.DELIVERING)  # fmt: skip
        # Only events stored from now on trigger the campaign.
        campaign.live_watermark = (
            Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        )
    campaign.status = CampaignStatus.LIVE
    campaign.save(update_fields=["status", "live_watermark"])
    return run


def live_scan(campaign_id: int) -> int:
    """Events after the watermark: assign one Delivery per triggered profile (the first
    event wins), move the watermark in the same transaction, then deliver."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        run = campaign.runs.filter(kind=RunKind.LIVE).first()
        if campaign.status != CampaignStatus.LIVE or run is None:
            return 0
        events = Event.objects.filter(pk__gt=campaign.live_watermark, name=campaign.live_event)
        last = events.order_by("-pk").values_list("pk", flat=True).first()
        if last is None:
            return 0
        matching = Profile.objects.filter(audience_q(campaign))
        before = Delivery.objects.filter(run=run).count()
        outcomes_assign(run, matching.filter(events__in=events).distinct())
        _live_events_attach(run, campaign, events)
        campaign.live_watermark = last
        campaign.save(update_fields=["live_watermark"])
        added = Delivery.objects.filter(run=run).count() - before
    run_deliver_live(run)
    return added


def _live_events_attach(run: CampaignRun, campaign: Campaign, events: QuerySet[Event]) -> None:
    """Each new row remembers its triggering event; an event from a device that cannot
    receive the channel (a web event for mobile push, and back) makes it User not reachable."""
    table = Delivery._meta.db_table
    events_sql, events_params = events.values(
        "pk", "profile_id", "device_id"
    ).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} d SET event_id = e.id FROM (
                    SELECT DISTINCT ON (profile_id) pk AS id, profile_id, device_id
                      FROM ({events_sql}) x(pk, profile_id, device_id)
                     ORDER BY profile_id, pk) e
                 WHERE d.run_id = %s AND d.event_id IS NULL AND d.profile_id = e.profile_id""",
            [*events_params, run.pk],
        )
        if campaign.channel in (Channel.PUSH, Channel.WEBPUSH):
            wrong = "=" if campaign.channel == Channel.PUSH else "<>"
            cursor.execute(
                f"""UPDATE {table} d SET outcome = %s,
                           error = %s
                      FROM {Event._meta.db_table} e
                      JOIN {Device._meta.db_table} v ON v.id = e.device_id
                     WHERE d.run_id = %s AND d.event_id = e.id AND d.outcome IN (%s, %s)
                       AND lower(v.platform) {wrong} 'web'""",
                [
                    Outcome.USER_NOT_REACHABLE,
                    UNREACHABLE_DEVICE,
                    run.pk,
                    Outcome.PENDING,
                    Outcome.DUPLICATE,
                ],
            )


def run_deliver_live(run: CampaignRun) -> None:
    while claimed := _claim(run, BATCH_SIZE):
        deliver_batch(run, claimed)
    CampaignRun.objects.filter(pk=run.pk).update(heartbeat=timezone.now())


def live_campaigns_scan() -> int:
    return sum(
        live_scan(pk)
        for pk in Campaign.objects.filter(status=CampaignStatus.LIVE).values_list("pk", flat=True)
    )
