from django.conf import settings
from django.db import models


class Segment(models.Model):
    """A saved audience definition (JSON; the shape is documented in README)."""

    name = models.CharField(max_length=200, unique=True)
    definition = models.JSONField()
    last_count = models.BigIntegerField(null=True, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name
