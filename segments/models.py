from django.conf import settings
from django.db import models

from profiles.models import CsvExport, ExportStatus


class SystemSegment(models.TextChoices):
    ALL_USERS = "all_users", "All Users"
    TEST_USERS = "test_users", "Test Users"


# The system segments' definitions (README, "Segment definitions").
SYSTEM_DEFINITIONS = {
    SystemSegment.ALL_USERS: {"all": []},
    SystemSegment.TEST_USERS: {"system": "test_profile", "op": "is_true"},
}


class Segment(models.Model):
    """A saved audience definition: JSON whose shape README documents ("Segment definitions")."""

    name = models.CharField(max_length=200, unique=True)
    definition = models.JSONField()
    # Set on the built-in segments ("All Users", "Test Users"): they cannot be
    # changed or deleted.
    system_key = models.CharField(
        max_length=32, unique=True, null=True, blank=True, choices=SystemSegment.choices
    )
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

    @property
    def is_system(self) -> bool:
        return self.system_key is not None


class SegmentExport(CsvExport):
    """One CSV export of a segment's members; the page polls its progress."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="exports")
    # The definition as it was when the export was asked for.
    definition = models.JSONField()
    properties = models.JSONField(default=list, blank=True)
    file = models.FileField(upload_to="segment-exports/", blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ExportStatus.values),
                name="segment_export_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"export of {self.segment} ({self.status})"
