"""Campaign reads: outcome counts, previews, the per-profile report."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count

from campaigns.models import Campaign, CampaignRun, Delivery, Outcome
from campaigns.personalise import TemplateProblem
from profiles.models import Profile
from profiles.selectors import people_exact_match_ids
from segments.services import csv_safe

REPORT_COLUMNS = ["Run", "Kind", "CleverTap ID", "Name", "Outcome", "Address", "Error", "At",
                  "Provider status"]  # fmt: skip


def campaign_list():
    return Campaign.objects.select_related("segment").order_by("name")


def run_outcome_counts(run: CampaignRun) -> dict[str, int]:
    counts = dict(
        Delivery.objects.filter(run=run).values_list("outcome").annotate(n=Count("pk")).order_by()
    )
    return {label: counts.get(value, 0) for value, label in Outcome.choices if counts.get(value)}


def outcomes_for_profiles(campaign: Campaign, profiles: list[Profile]) -> dict[int, str]:
    """The outcome each profile would get if the campaign were sent now (same SQL as a send,
    inside a transaction that is rolled back)."""
    from django.db import transaction

    from campaigns import services
    from campaigns.models import RunKind

    ids = [profile.pk for profile in profiles]
    result: dict[int, str] = {}
    try:
        with transaction.atomic():
            run = CampaignRun.objects.create(campaign=campaign, kind=RunKind.TEST)
            audience = Profile.objects.filter(pk__in=ids)
            if campaign.audience_kind != "live":
                in_audience = set(
                    Profile.objects.filter(services.audience_q(campaign), pk__in=ids).values_list(
                        "pk", flat=True
                    )
                )
            else:
                in_audience = set(ids)
            services.outcomes_assign(run, audience)
            labels = dict(Outcome.choices)
            for profile_id, outcome in Delivery.objects.filter(run=run).values_list(
                "profile_id", "outcome"
            ):
                label = "Sent" if outcome == Outcome.PENDING else labels[outcome]
                if profile_id not in in_audience:
                    label += " (not in the audience)"
                result[profile_id] = label
            raise _Rollback
    except _Rollback:
        pass
    return result


class _Rollback(Exception):
    pass


def preview(campaign: Campaign, *, query: str = "", samples: int = 3) -> list[dict]:
    """Rendered messages for the profile found by `query`, or a few audience members."""
    from campaigns import services

    if query:
        profiles = list(Profile.objects.filter(pk__in=people_exact_match_ids(query=query))[:5])
    elif campaign.audience_kind == "live":
        profiles = []
    else:
        profiles = list(
            Profile.objects.filter(services.audience_q(campaign)).order_by("pk")[:samples]
        )
    outcomes = outcomes_for_profiles(campaign, profiles)
    rows = []
    for profile in profiles:
        row = {"profile": profile, "outcome": outcomes.get(profile.pk, ""), "error": ""}
        try:
            message = services.message_for(campaign, profile, "", "preview")
            row.update(subject=message.subject, body=message.body, html=message.html)
        except TemplateProblem as problem:
            row["error"] = str(problem)
        rows.append(row)
    return rows


def report_rows(campaign: Campaign) -> Iterator[list[str]]:
    yield REPORT_COLUMNS
    labels = dict(Outcome.choices)
    deliveries = (
        Delivery.objects.filter(run__campaign=campaign)
        .select_related("run", "profile")
        .order_by("run_id", "pk")
        .iterator(chunk_size=2000)
    )
    for row in deliveries:
        yield [csv_safe(value) for value in (
            row.run_id, row.run.kind, row.profile.ct_id, row.profile.name, labels[row.outcome],
            row.address, row.error, row.at.isoformat() if row.at else "",
            row.provider_status)]  # fmt: skip
