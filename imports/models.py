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
    # Stopped by a person at a chunk boundary: what committed stays; never resumed.
    CANCELLED = "cancelled", "Cancelled"


class ImportOrigin(models.TextChoices):
    WEB = "web", "Dashboard upload"
    CLI = "cli", "Command line"
    SFTP = "sftp", "SFTP"


class ImportRun(models.Model):
    """One CSV file being imported (web upload, command line or SFTP).

    Progress and totals live here and are updated in the same transaction as
    each chunk's writes, so they always match what was committed:
    `last_committed_row` is the checkpoint a restarted worker resumes after.
    """

    kind = models.CharField(max_length=8, choices=ImportKind.choices)
    event_name = models.CharField(max_length=512, blank=True, default="")
    file_name = models.CharField(max_length=255)
    file = models.FileField(upload_to="imports/%Y/%m/")
    file_size = models.PositiveBigIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=ImportStatus.choices, default=ImportStatus.PENDING
    )
    origin = models.CharField(max_length=8, choices=ImportOrigin.choices, default=ImportOrigin.WEB)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Detected when the file is stored (imports.sources.csv.CsvInfo).
    encoding = models.CharField(max_length=16, blank=True, default="")
    delimiter = models.CharField(max_length=1, blank=True, default="")
    columns = models.JSONField(default=list, blank=True, help_text="header cells, in order")
    # {"columns": [{"role": ..., "type": ..., "date_format": ...}, ...]}, one per header cell.
    mapping = models.JSONField(default=dict, blank=True)

    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    profiles_created = models.PositiveIntegerField(default=0)
    profiles_updated = models.PositiveIntegerField(default=0)
    events_stored = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="", help_text="file-level error")

    # Claiming and resuming (imports.services.import_run_execute).
    last_committed_row = models.PositiveIntegerField(
        default=0, help_text="file row number of the last row of the last committed chunk"
    )
    claim = models.UUIDField(null=True, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["-created_at"], name="importrun_created")]

    def __str__(self) -> str:
        return self.file_name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("imports:detail", args=[self.pk])

    @property
    def delimiter_label(self) -> str:
        return {"\t": "tab", ",": "comma", ";": "semicolon"}.get(self.delimiter, self.delimiter)

    @property
    def is_finished(self) -> bool:
        return self.status in {ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.CANCELLED}

    @property
    def is_active(self) -> bool:
        return self.status in {ImportStatus.QUEUED, ImportStatus.RUNNING}

    @property
    def can_cancel(self) -> bool:
        # An SFTP file's run belongs to its poll, which moves the file by the result.
        return self.is_active and self.origin != ImportOrigin.SFTP

    @property
    def percent_done(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, int(100 * self.rows_done / self.rows_total))

    def rejected_rows_csv(self) -> bytes:
        """The rejected rows as a formula-safe CSV (see imports.selectors)."""
        from imports.selectors import import_run_rejected_csv

        return import_run_rejected_csv(import_run=self)


class ImportRejectedRow(models.Model):
    """A row of an import that was refused, with the reason (and the row as read)."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="rejected_rows")
    row_number = models.PositiveIntegerField(help_text="spreadsheet row number (header = 1)")
    column = models.CharField(max_length=255, blank=True, default="")
    value = models.TextField(blank=True, default="")
    code = models.PositiveIntegerField(default=555)
    reason = models.TextField()
    cells = models.JSONField(default=list, help_text="the row's cells as read from the file")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "row_number"], name="rejected_row_unique"),
        ]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


class SftpSourceKind(models.TextChoices):
    PROFILES = "profiles", "Profiles"
    EVENTS = "events", "Events"
    BY_FILE_NAME = "by_name", "By file name"


class SftpSchedule(models.TextChoices):
    INTERVAL = "interval", "Every N minutes"
    DAILY = "daily", "Daily at a time"


class SftpSource(models.Model):
    """An SFTP server folder polled for CSV files on a schedule.

    Secrets are stored encrypted (config.secrets.secret_encrypt); the
    poll refuses to connect until `host_key_fingerprint` is pinned. Its beat
    schedule lives in `periodic_task`, kept in step by the services.
    """

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=22)
    username = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    password_encrypted = models.TextField(blank=True, default="")
    private_key_encrypted = models.TextField(blank=True, default="")
    host_key_fingerprint = models.CharField(max_length=100, blank=True, default="")
    remote_dir = models.CharField(max_length=500, default="/")
    pattern = models.CharField(max_length=200, default="*.csv")
    kind = models.CharField(
        max_length=8, choices=SftpSourceKind.choices, default=SftpSourceKind.PROFILES
    )
    event_name = models.CharField(max_length=512, blank=True, default="")
    schedule = models.CharField(
        max_length=8, choices=SftpSchedule.choices, default=SftpSchedule.INTERVAL
    )
    every_minutes = models.PositiveIntegerField(default=15)
    daily_at = models.TimeField(null=True, blank=True)
    # Why polling stopped by itself (e.g. the host key changed); empty when fine.
    stopped_reason = models.TextField(blank=True, default="")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="sftpsource_schedule_valid",
                condition=(
                    models.Q(schedule="interval", every_minutes__gte=1)
                    | models.Q(schedule="daily", daily_at__isnull=False)
                ),
            ),
            models.CheckConstraint(
                name="sftpsource_events_have_name",
                condition=~models.Q(kind="events") | ~models.Q(event_name=""),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key_encrypted)

    @property
    def schedule_label(self) -> str:
        if self.schedule == SftpSchedule.DAILY and self.daily_at:
            return f"daily at {self.daily_at:%H:%M} ({settings.TIME_ZONE})"
        return f"every {self.every_minutes} min"


class SftpRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class SftpRunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Run now"
    COMMAND = "command", "Command line"


class SftpRun(models.Model):
    """One poll of a source. At most one runs per source at a time (a partial
    unique index): that is how two workers are kept from polling together."""

    source = models.ForeignKey(SftpSource, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=8, choices=SftpRunTrigger.choices)
    status = models.CharField(
        max_length=8, choices=SftpRunStatus.choices, default=SftpRunStatus.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files_seen = models.PositiveIntegerField(default=0)
    files_imported = models.PositiveIntegerField(default=0)
    files_skipped = models.PositiveIntegerField(default=0)
    files_failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # A transient error (refused, timeout) is retried by the task with backoff.
    error_transient = models.BooleanField(default=False)
    # Set while the task's retry `retry_number` (of `retries_max`) is scheduled after
    # this failed attempt; cleared when that retry starts (imports.sftp.tasks).
    retry_number = models.PositiveSmallIntegerField(default=0)
    retries_max = models.PositiveSmallIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source"],
                condition=models.Q(status="running"),
                name="sftprun_one_running_per_source",
            )
        ]
        indexes = [models.Index(fields=["source", "-started_at"], name="sftprun_source_started")]

    def __str__(self) -> str:
        return f"{self.source} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_retrying(self) -> bool:
        return self.status == SftpRunStatus.FAILED and self.retry_at is not None

    @property
    def status_label(self) -> str:
        """ "Failed" only once nothing will try again; before that, which retry is next."""
        if self.is_retrying:
            return f"Retrying ({self.retry_number} of {self.retries_max})"
        return self.get_status_display()


class SftpFileStatus(models.TextChoices):
    SEEN = "seen", "Waiting to confirm it is complete"
    IMPORTING = "importing", "Importing"
    IMPORTED = "imported", "Imported"
    FAILED = "failed", "Failed"
    CHANGED = "changed", "Changed before import (superseded)"


class SftpFile(models.Model):
    """The ledger: one row per (source, path, size, mtime) ever seen.

    The unique key is what keeps a file from being imported twice; only rows
    in IMPORTED or FAILED are final, every other state is retried.
    """

    source = models.ForeignKey(SftpSource, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    mtime = models.BigIntegerField(help_text="Seconds since the epoch, as the server reports")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(
        max_length=9, choices=SftpFileStatus.choices, default=SftpFileStatus.SEEN
    )
    import_run = models.ForeignKey(
        ImportRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run = models.ForeignKey(
        SftpRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="files",
        help_text="The poll that last acted on this file",
    )
    attempts = models.PositiveIntegerField(default=0)
    moved_to = models.CharField(max_length=1000, blank=True, default="")
    note = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "path", "size", "mtime"], name="sftpfile_unique_version"
            )
        ]
        indexes = [models.Index(fields=["source", "-updated_at"], name="sftpfile_source_updated")]

    def __str__(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def result_label(self) -> str:
        """The ledger status, saying so when the file's import rejected rows."""
        run = self.import_run
        if self.status == SftpFileStatus.IMPORTED and run is not None and run.rows_rejected:
            rows = "row" if run.rows_rejected == 1 else "rows"
            return f"Imported with {run.rows_rejected:,} rejected {rows}"
        return self.get_status_display()
