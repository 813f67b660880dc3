"""The web SDK's per-account settings (the REST credentials live in profiles.models)."""

from __future__ import annotations

from django.db import models

from profiles.models import ApiCredential


class SdkSettings(models.Model):
    """Which web origins may send SDK traffic for an account, and when it was last seen.

    An empty `allowed_origins` accepts every origin (the settings page says so).
    """

    credential = models.OneToOneField(
        ApiCredential, on_delete=models.CASCADE, related_name="sdk_settings"
    )
    allowed_origins = models.JSONField(default=list, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_origin = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name_plural = "SDK settings"

    def __str__(self) -> str:
        return f"SDK settings for {self.credential.account_id}"


class SdkQueueMark(models.Model):
    """The newest SDK queue entry applied, per shard (api.sdk_queue).

    Updated in the transaction that applies the batch, so a crash never loses or
    repeats one; its row lock is what lets one worker at a time apply a shard.
    """

    shard = models.PositiveSmallIntegerField(primary_key=True)
    last_id = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return f"SDK queue shard {self.shard} at {self.last_id or 'start'}"
