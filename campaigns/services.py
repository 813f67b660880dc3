"""Campaign writes: save, assign outcomes for a whole audience in SQL, deliver in batches."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

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
from profiles.models import Device, Event, Profile
from profiles.selectors import test_profiles_q
from segments.compiler import SegmentDefinitionError, compile_definition

# The compiler's reachable condition knows these channel names.
REACHABLE_CHANNEL = {"email": "email", "sms": "sms", "whatsapp": "whatsapp", "push": "push",
                     "webpush": "push"}  # fmt: skip
BATCH_SIZE = 500
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


def _address_sql(channel: str) -> str:
    if channel == Channel.EMAIL:
        return "p.email"
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return "p.phone"
    web = (
        "lower(d.platform) = 'web'" if channel == Channel.WEBPUSH else "lower(d.platform) <> 'web'"
    )
    return (
        f"COALESCE((SELECT d.push_token FROM {Device._meta.db_table} d WHERE d.profile_id = p.id"
        f" AND d.push_token <> '' AND d.push_enabled IS NOT FALSE AND {web}"
        " ORDER BY d.last_seen DESC NULLS LAST, d.id LIMIT 1), '')"
    )


def outcomes_assign(run: CampaignRun, audience: QuerySet[Profile]) -> int:
    """One INSERT … SELECT for the whole audience, then one UPDATE for shared addresses.

    Reachable profiles start Pending with their address; the rest are Profile not
    reachable. Among pending rows sharing a push token or phone, the first profile to
    qualify (lowest id) keeps it and the others are Duplicate Platform ID. ON CONFLICT
    makes a repeated assignment (a resumed run) change nothing.
    """
    channel = run.campaign.channel
    reachable = reachable_q(channel)
    try:
        audience_sql, audience_params = audience.values("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: nobody to assign
        return Delivery.objects.filter(run=run).count()
    try:
        marked = audience.filter(reachable).values("pk")
        reachable_sql, reachable_params = marked.query.sql_with_params()
    except EmptyResultSet:
        reachable_sql, reachable_params = "SELECT NULL::bigint WHERE false", ()
    table = Delivery._meta.db_table
    sql = f"""
        INSERT INTO {table} (run_id, profile_id, outcome, address, error, provider_id,
                             provider_status)
        SELECT %s, p.id,
               CASE WHEN p.id IN (SELECT * FROM ({reachable_sql}) r) THEN %s ELSE %s END,
               {_address_sql(channel)}, '', '', ''
          FROM {Profile._meta.db_table} p
         WHERE p.id IN (SELECT * FROM ({audience_sql}) a)
         ORDER BY p.id
        ON CONFLICT (run_id, profile_id) DO NOTHING
    """
    params = [run.pk, *reachable_params, Outcome.PENDING, Outcome.PROFILE_NOT_REACHABLE,
              *audience_params]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # A reachable push profile whose devices are all on the other platform has no address.
        cursor.execute(
            f"UPDATE {table} SET outcome = %s, error = %s"
            " WHERE run_id = %s AND outcome = %s AND address = ''",
            [Outcome.PROFILE_NOT_REACHABLE, "no device for this channel", run.pk, Outcome.PENDING],
        )
        if channel != Channel.EMAIL:
            cursor.execute(
                f"""UPDATE {table} d SET outcome = %s, error = 'shared with an earlier profile'
                     WHERE d.run_id = %s AND d.outcome = %s AND EXISTS (
                           SELECT 1 FROM {table} f WHERE f.run_id = d.run_id
                              AND f.outcome = %s AND f.address = d.address
                              AND f.profile_id < d.profile_id)""",
                [Outcome.DUPLICATE, run.pk, Outcome.PENDING, Outcome.PENDING],
            )
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


def _claim(run: CampaignRun, size: int) -> list[Delivery]:
    """Mark the next pending rows as claimed and commit before anything is sent:
    a row is messaged at most once even if the worker dies right after."""
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(run=run, outcome=Outcome.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:size]
        )
        Delivery.objects.filter(pk__in=ids).update(outcome=Outcome.CLAIMED, at=timezone.now())
    return list(Delivery.objects.filter(pk__in=ids).select_related("profile").order_by("pk"))


def deliver_batch(run: CampaignRun, claimed: list[Delivery]) -> None:
    campaign = run.campaign
    messages, rendered = [], []
    for row in claimed:
        event = Event.objects.filter(pk=row.event_id).first() if row.event_id else None
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
    gone_tokens = []
    for row, result in zip(rendered, results, strict=True):
        row.outcome = Outcome.SENT if result.accepted else Outcome.FAILED
        row.error, row.provider_id, row.at = result.error[:2000], result.provider_id[:200], now
        properties = {"Campaign": campaign.name, "Channel": campaign.get_channel_display()}
        if result.accepted:
            events.append((row.profile_id, "Notification Sent", properties, f"ntf-{row.pk}-sent"))
        else:
            # The provider refused it after the retries: on the timeline with its reason.
            reason = {**properties, "Reason": result.error[:500]}
            events.append((row.profile_id, "Notification Failed", reason, f"ntf-{row.pk}-failed"))
        if result.gone:
            gone_tokens.append(row.address)
    Delivery.objects.bulk_update(rendered, ["outcome", "error", "provider_id", "at"])
    delivery_services.push_tokens_forget(tokens=gone_tokens)
    if events:
        delivery_module.notification_events_record(deliveries=events)


def run_deliver(run_id: int) -> CampaignRun:
    """Deliver every pending row of a run, throttled, checking the stop flag between batches.
    Safe to call again on a run a dead worker left behind."""
    run = CampaignRun.objects.select_related("campaign").get(pk=run_id)
    if run.finished:
        return run
    # Rows claimed by a worker that died may or may not have gone out: never resend them.
    Delivery.objects.filter(run=run, outcome=Outcome.CLAIMED).update(
        outcome=Outcome.FAILED, error="interrupted while sending; not resent to avoid a duplicate"
    )
    CampaignRun.objects.filter(pk=run.pk).update(status=RunStatus.DELIVERING,
                                                 heartbeat=timezone.now())  # fmt: skip
    rate = _rate(run.campaign.channel)
    size = max(1, min(BATCH_SIZE, int(rate)))
    while True:
        run.refresh_from_db(fields=["stop_requested"])
        if run.stop_requested:
            return _finish(run, RunStatus.STOPPED)
        started = time.monotonic()
        claimed = _claim(run, size)
        if not claimed:
            break
        deliver_batch(run, claimed)
        CampaignRun.objects.filter(pk=run.pk).update(
            heartbeat=timezone.now(),
            processed=Delivery.objects.filter(run=run).exclude(outcome=Outcome.PENDING).count(),
        )
        pause = len(claimed) / rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
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


def run_execute(run_id: int) -> CampaignRun:
    """The task body: assign outcomes once (idempotent), then deliver what is pending."""
    run = CampaignRun.objects.select_related("campaign__segment").get(pk=run_id)
    if run.finished:
        return run
    if run.total == 0:
        total = outcomes_assign(run, Profile.objects.filter(audience_q(run.campaign)))
        CampaignRun.objects.filter(pk=run.pk).update(total=total)
    return run_deliver(run.pk)


def run_stop(run: CampaignRun) -> None:
    CampaignRun.objects.filter(pk=run.pk).update(stop_requested=True)


def stale_runs_resume() -> list[int]:
    """Runs whose worker stopped beating: queue them again (a killed worker resumes)."""
    from campaigns.tasks import campaign_run_task

    limit = timezone.now() - timezone.timedelta(seconds=settings.CAMPAIGN_STALE_SECONDS)
    ids = list(
        CampaignRun.objects.filter(
            kind=RunKind.SEND, status=RunStatus.DELIVERING, heartbeat__lt=limit
        ).values_list("pk", flat=True)
    )
    for run_id in ids:
        CampaignRun.objects.filter(pk=run_id).update(heartbeat=timezone.now())
        campaign_run_task.delay_on_commit(run_id)
    return ids


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
