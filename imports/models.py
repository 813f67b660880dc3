from django.conf import settings
from django.db import models


class ImportKind(models.TextChoices):
    PROFILES = "profiles", "Profiles"
    EVENTS = "events", "Events"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Waiting for mapping"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportRun(models.Model):
    """One CSV file being imported (web upload, command line or SFTP)."""

    kind = models.CharField(max_length=8, choices=ImportKind.choices)
    event_name = models.CharField(max_length=512, blank=True, default="")
    file_name = models.CharField(max_length=255)
    file = models.FileField(upload_to="imports/%Y/%m/")
    status = models.CharField(
        max_length=8, choices=ImportStatus.choices, default=ImportStatus.PENDING
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.file_name


class SftpSource(models.Model):
    """An SFTP server folder polled for CSV files on a schedule."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=22)
    username = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name
