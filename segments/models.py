from django.conf import settings
from django.db import models


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


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class SegmentExport(models.Model):
    """One CSV export of a segment's members; the page polls its progress."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="exports")
    # The definition as it was when the export was asked for.
    definition = models.JSONField()
    properties = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=8, choices=ExportStatus.choices, default="pending")
    rows_total = models.BigIntegerField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    file = models.FileField(upload_to="segment-exports/", blank=True, default="")
    error = models.TextField(blank=True, default="")
    # Moves while a worker writes the file; a stale one means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "running", "done", "failed"]),
                name="segment_export_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"export of {self.segment} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ExportStatus.DONE, ExportStatus.FAILED)

    @property
    def percent(self) -> int:
        if self.status == ExportStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, int(self.rows_done * 100 / self.rows_total))
