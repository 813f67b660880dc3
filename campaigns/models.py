"""Campaigns: a message, an audience, and one Delivery row per (run, profile)."""

from django.conf import settings
from django.db import models

# The outbox of the local SMTP sink lives with the delivery code; importing it registers it.
from campaigns.delivery.models import MessagingSettings, OutboxMessage


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    PUSH = "push", "Mobile push"
    WEBPUSH = "webpush", "Web push"


class AudienceKind(models.TextChoices):
    SEGMENT = "segment", "Saved segment"
    DEFINITION = "definition", "Inline definition"
    LIVE = "live", "Live (when an event happens)"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    STOPPED = "stopped", "Stopped"
    LIVE = "live", "Live"


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    audience_kind = models.CharField(
        max_length=16, choices=AudienceKind.choices, default=AudienceKind.SEGMENT
    )
    segment = models.ForeignKey(
        "segments.Segment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    definition = models.JSONField(null=True, blank=True)
    live_event = models.CharField(max_length=512, blank=True, default="")
    live_where = models.JSONField(default=list, blank=True)
    # Events with a larger id than this have not been looked at by the live scan yet.
    live_watermark = models.BigIntegerField(default=0)
    subject = models.CharField(max_length=998, blank=True, default="")
    body = models.TextField()
    html = models.BooleanField("HTML email", default=False)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        permissions = [("send_campaign", "Can send campaigns (test and real sends)")]

    def __str__(self) -> str:
        return self.name


class RunKind(models.TextChoices):
    TEST = "test", "Test send"
    SEND = "send", "Send"
    LIVE = "live", "Live"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DELIVERING = "delivering", "Delivering"
    DONE = "done", "Done"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class CampaignRun(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=8, choices=RunKind.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    heartbeat = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} of {self.campaign}"

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.DONE, RunStatus.STOPPED, RunStatus.FAILED)


class Outcome(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Being delivered"
    SENT = "sent", "Sent"
    PROFILE_NOT_REACHABLE = "profile_not_reachable", "Profile not reachable"
    USER_NOT_REACHABLE = "user_not_reachable", "User not reachable"
    DUPLICATE = "duplicate", "Duplicate Platform ID"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    # Not indexed on its own: the (run, profile) constraint's index leads with run. No
    # database-level FK either: every row of a batch names the same run, which the sender
    # created and holds, and PostgreSQL would check (and lock) that one row once per
    # inserted row; that was a third of assigning 100,000 outcomes. Runs are only deleted
    # through the ORM, whose CASCADE deletes their rows.
    run = models.ForeignKey(
        CampaignRun,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="campaign_deliveries"
    )
    outcome = models.CharField(max_length=24, choices=Outcome.choices, default=Outcome.PENDING)
    address = models.CharField(max_length=2048, blank=True, default="")
    error = models.TextField(blank=True, default="")
    provider_id = models.CharField(max_length=200, blank=True, default="")
    # What the provider reported later about an accepted message (Twilio's status
    # callback: "delivered", "undelivered", "failed", …); "" until it reports.
    provider_status = models.CharField(max_length=16, blank=True, default="")
    # The live event that triggered the message (its properties feed {{ Event.* }}).
    event_id = models.BigIntegerField(null=True, blank=True)
    at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "profile"], name="delivery_once_per_run_profile")
        ]
        # The claim takes the next pending rows of a run in id order; a partial index keeps
        # that lookup small and costs nothing for the rows that are assigned done.
        indexes = [
            models.Index(
                fields=["run", "id"],
                name="delivery_run_pending",
                condition=models.Q(outcome="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} to profile {self.profile_id} in run {self.run_id}"


__all__ = ["Campaign", "CampaignRun", "Delivery", "MessagingSettings", "OutboxMessage"]
