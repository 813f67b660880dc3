"""The profile store: one Profile per person, with identifiers, devices, events.

Invariants live in the database: an identifier (kind, value) belongs to one
profile (unique constraint); a client event id is unique per profile; a
profile's `identified` flag is maintained by a trigger on the identifier table
(migration 0002), so it cannot drift from the identifiers it holds.
"""

import secrets

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex, GinIndex, OpClass
from django.db import models

from profiles.rules.single_valued import SINGLE_VALUED_KINDS


def new_ct_id() -> str:
    """Opaque, URL-safe public id in the style of CleverTap's device ids."""
    return "__" + secrets.token_hex(16)


def new_ct_ids(count: int) -> list[str]:
    """`count` ids like new_ct_id's, from one read of the random source: a bulk write
    creates thousands, and each read releases the GIL to the pipeline's other thread."""
    raw = secrets.token_hex(16 * count)
    return ["__" + raw[start : start + 32] for start in range(0, 32 * count, 32)]


class Source(models.TextChoices):
    SDK = "sdk", "SDK"
    API = "api", "REST API"
    CSV = "csv", "CSV upload"
    SFTP = "sftp", "SFTP import"
    DASHBOARD = "dashboard", "Dashboard"
    SYSTEM = "system", "System"


class Gender(models.TextChoices):
    MALE = "M", "Male"
    FEMALE = "F", "Female"
    OTHER = "O", "Other"
    UNKNOWN = "U", "Unknown"


class Education(models.TextChoices):
    SCHOOL = "School"
    COLLEGE = "College"
    GRADUATE = "Graduate"


class Profile(models.Model):
    # Unique by a constraint (Meta), not `unique=True`: that would add a second,
    # varchar_pattern_ops index for LIKE that no query uses and every insert pays.
    ct_id = models.CharField("CleverTap ID", max_length=64, default=new_ct_id)
    # Derived, never set by hand: a trigger keeps it equal to
    # EXISTS(identifier of this profile).
    identified = models.BooleanField(default=False, editable=False)
    # Scenario 2: an anonymous profile whose device then logged in as an
    # already-known person points at that person's profile. Its events are
    # shown greyed there and never count for that profile.
    # Indexed by the partial index profile_linked_to only (most profiles are not linked).
    linked_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="linked_anonymous",
        db_index=False,
    )

    # Default properties.
    name = models.CharField(max_length=512, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="", help_text="E.164")
    gender = models.CharField(max_length=1, blank=True, default="", choices=Gender.choices)
    dob = models.DateField("date of birth", null=True, blank=True)
    language = models.CharField(max_length=64, blank=True, default="")
    tz = models.CharField("time zone", max_length=64, blank=True, default="")
    photo = models.URLField(max_length=512, blank=True, default="")
    employed = models.BooleanField(null=True, blank=True)
    education = models.CharField(max_length=16, blank=True, default="", choices=Education.choices)
    married = models.BooleanField(null=True, blank=True)
    msg_email = models.BooleanField("MSG-email", null=True, blank=True)
    msg_push = models.BooleanField("MSG-push", null=True, blank=True)
    msg_sms = models.BooleanField("MSG-sms", null=True, blank=True)
    msg_whatsapp = models.BooleanField("MSG-whatsapp", null=True, blank=True)

    # Custom properties: name -> JSON value. Types are fixed per name by
    # PropertyDefinition. Dates are ISO-8601 UTC strings ("2024-01-31T12:00:00Z")
    # so they compare correctly as text; multi-value lists are JSON arrays.
    # The test-profile marker lives here too: {"ct_is_test_user": "Yes"}.
    custom = models.JSONField(default=dict, blank=True)

    # System properties, refreshed by every event.
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    last_platform = models.CharField(max_length=32, blank=True, default="")
    last_device = models.CharField(max_length=128, blank=True, default="")
    last_location = models.CharField(max_length=128, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("mark_test_profile", "Can mark and unmark test profiles")]
        # The fixed-value default properties; profiles.properties gives the friendly
        # error first, these keep any other writer honest.
        constraints = [
            models.UniqueConstraint(fields=["ct_id"], name="profile_ct_id_unique"),
            models.CheckConstraint(
                condition=models.Q(gender__in=["", *Gender.values]), name="profile_gender_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(education__in=["", *Education.values]),
                name="profile_education_valid",
            ),
        ]
        indexes = [
            # Find People lists the most recently seen first, never-seen people last,
            # with the id as tie-breaker for stable pages: this index serves that order.
            models.Index(
                models.F("last_seen").desc(nulls_last=True),
                models.F("id").desc(),
                name="profile_last_seen",
            ),
            # The same order over the people one knows something about (an identifier or
            # a name). A site's web SDK adds an anonymous, nameless profile for every new
            # browser, all seen just now: a filtered or name-prefix search walking the
            # index above steps over every one of them before its first match (~300 ms
            # after 60,000 such visitors); over this one it never meets them. Find People
            # states `identified` (its type filter) or a non-empty name (its name prefix).
            models.Index(
                models.F("last_seen").desc(nulls_last=True),
                models.F("id").desc(),
                name="profile_known_last_seen",
                condition=models.Q(identified=True) | ~models.Q(name=""),
            ),
            models.Index(fields=["dob"], name="profile_dob"),
            models.Index(
                fields=["linked_to"],
                name="profile_linked_to",
                condition=models.Q(linked_to__isnull=False),
            ),
            GinIndex(OpClass("custom", name="jsonb_path_ops"), name="profile_custom"),
        ]

    def __str__(self) -> str:
        return self.name or self.email or self.ct_id

    @property
    def is_test(self) -> bool:
        return self.custom.get(TEST_PROFILE_PROPERTY) == TEST_PROFILE_VALUE

    @property
    def profile_type(self) -> str:
        return "identified" if self.identified else "anonymous"


TEST_PROFILE_PROPERTY = "ct_is_test_user"
TEST_PROFILE_VALUE = "Yes"


class IdentifierKind(models.TextChoices):
    IDENTITY = "identity", "Identity"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"
    FBID = "fbid", "Facebook ID"
    GPID = "gpid", "Google Plus ID"


class Identifier(models.Model):
    # Indexed by identifier_profile (Meta), not twice.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="identifiers", db_index=False
    )
    kind = models.CharField(max_length=16, choices=IdentifierKind.choices)
    # Normalized: emails trimmed and lower-cased, phones in E.164.
    value = models.CharField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="identifier_unique_kind_value"),
            # Email, phone, FBID and GPID are single-valued: a new one replaces the old.
            models.UniqueConstraint(
                fields=["kind", "profile"],
                condition=models.Q(kind__in=sorted(SINGLE_VALUED_KINDS)),
                name="identifier_one_per_profile",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=IdentifierKind.values), name="identifier_kind_valid"
            ),
        ]
        indexes = [models.Index(fields=["profile"], name="identifier_profile")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Device(models.Model):
    # CleverTap ID / objectId / guid as the SDK sends it.
    # Unique by a constraint (Meta), for the same reason as Profile.ct_id.
    object_id = models.CharField(max_length=64)
    # The profile this device currently maps to. NULL after that profile was
    # deleted: the next call from the device makes a new anonymous profile.
    profile = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="devices",
        db_index=False,  # indexed by device_profile (Meta), not twice
    )
    platform = models.CharField(max_length=32, blank=True, default="")
    make = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=64, blank=True, default="")
    # A web push subscription is stored as compact JSON (profiles.rules.web_push).
    push_token = models.CharField("platform ID", max_length=1024, blank=True, default="")
    push_enabled = models.BooleanField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["object_id"], name="device_object_id_unique")
        ]
        indexes = [
            models.Index(fields=["profile"], name="device_profile"),
            models.Index(
                fields=["push_token"], name="device_push_token", condition=~models.Q(push_token="")
            ),
        ]

    def __str__(self) -> str:
        return self.object_id


class Event(models.Model):
    # Indexed as the first column of event_profile_timeline, not on its own.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    name = models.CharField(max_length=512)
    ts = models.DateTimeField("time")
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    # Set by the client (or derived from an import row): a retried call with
    # the same id stores nothing new.
    client_event_id = models.CharField(max_length=128, null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "client_event_id"],
                name="event_unique_client_id",
                condition=models.Q(client_event_id__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["profile", "-ts", "-id"], name="event_profile_timeline"),
            models.Index(fields=["name", "ts"], name="event_name_ts", include=["profile"]),
            # The overview's events per day: a time range without a profile. BRIN: a few
            # pages for millions of events that arrive roughly in time order, and no cost
            # to speak of on each insert (a B-tree on ts would be a third one per event).
            BrinIndex(fields=["ts"], name="event_ts_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.ts:%Y-%m-%d %H:%M}"


class PropertyType(models.TextChoices):
    STRING = "string", "String"
    NUMBER = "number", "Number"
    BOOLEAN = "boolean", "Boolean"
    DATE = "date", "Date"
    LIST = "list", "Multi-value (list of strings)"


class PropertyScope(models.TextChoices):
    PROFILE = "profile", "Profile"
    EVENT = "event", "Event"


class PropertyDefinition(models.Model):
    """A property's type, fixed when first seen or declared."""

    scope = models.CharField(max_length=8, choices=PropertyScope.choices)
    name = models.CharField(max_length=120)
    type = models.CharField(max_length=8, choices=PropertyType.choices)
    declared = models.BooleanField(default=False, help_text="declared by a person, not inferred")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "name"], name="property_definition_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}.{self.name}: {self.type}"


class EventName(models.Model):
    """Every event name seen, for pickers and the per-account cap."""

    name = models.CharField(max_length=512, unique=True)
    first_seen = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PropertyChange(models.Model):
    """Audit trail of profile property changes, shown on the profile page."""

    # Indexed as the first column of change_profile_time, not on its own.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="changes", db_index=False
    )
    property = models.CharField(max_length=120)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who, when not a person: the API credential's name, an import's file name.
    actor_label = models.CharField(max_length=200, blank=True, default="")
    changed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["profile", "-changed_at"], name="change_profile_time")]

    def __str__(self) -> str:
        return f"{self.property}: {self.old_value!r} -> {self.new_value!r}"


class EventPropertyMapping(models.Model):
    """Copy an event property to a profile property, e.g. "Plan Purchased".plan -> Plan."""

    event_name = models.CharField(max_length=512)
    event_property = models.CharField(max_length=120)
    profile_property = models.CharField(max_length=120)
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event_name", "event_property", "profile_property"],
                name="event_property_mapping_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name}.{self.event_property} -> {self.profile_property}"


class ApiCredential(models.Model):
    """An account id + passcode pair for the REST API. The passcode is hashed."""

    name = models.CharField(max_length=100)
    account_id = models.CharField(max_length=32, unique=True)
    passcode_hash = models.CharField(max_length=256)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"


class ApiUsageOutcome(models.TextChoices):
    SUCCESS = "2xx", "2xx"
    CLIENT_ERROR = "4xx", "4xx"
    SERVER_ERROR = "5xx", "5xx"


class ApiUsageDay(models.Model):
    """Requests per credential, day, endpoint and outcome (upserted, one row each)."""

    credential = models.ForeignKey(ApiCredential, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    endpoint = models.CharField(max_length=32)
    outcome = models.CharField(max_length=3, choices=ApiUsageOutcome.choices)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "day", "endpoint", "outcome"], name="api_usage_day_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.credential_id} {self.day} {self.endpoint} {self.outcome}: {self.count}"


class ApiQueryKind(models.TextChoices):
    PROFILES = "profiles", "Profiles"
    EVENTS = "events", "Events"


class ApiQueryCursor(models.Model):
    """One page position of a /1/profiles.json or /1/events.json query.

    Keyset pagination: the page after this cursor holds the rows with
    position < id <= max_id, where max_id was snapshot when the query was
    created, so rows inserted meanwhile never shift or repeat a page. Every
    page gets its own cursor row, so retrying a cursor returns the same page.
    """

    token = models.CharField(max_length=64, unique=True)
    credential = models.ForeignKey(ApiCredential, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=ApiQueryKind.choices)
    query = models.JSONField(default=dict, blank=True)
    batch_size = models.PositiveIntegerField()
    position = models.BigIntegerField(default=0)
    max_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="api_cursor_expires")]

    def __str__(self) -> str:
        return f"{self.kind} cursor after {self.position}"


# --- the home overview ---------------------------------------------------------------
# Counted by profiles.overview.overview_refresh (beat, every OVERVIEW_REFRESH_SECONDS):
# the page reads these few rows and never scans profiles or events itself.


class OverviewDay(models.Model):
    """One day (in the dashboard's TIME_ZONE) of the home overview's chart."""

    day = models.DateField(primary_key=True)
    new_profiles = models.PositiveIntegerField(default=0)  # profiles created that day
    active_profiles = models.PositiveIntegerField(default=0)  # profiles with an event that day
    events = models.PositiveBigIntegerField(default=0)
    # A day is counted again by every refresh until one ran after it had ended.
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.day}: {self.new_profiles} new, {self.active_profiles} active"


class OverviewTotals(models.Model):
    """The home overview's totals as of `computed_at` (one row, id 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    profiles = models.PositiveBigIntegerField(default=0)
    identified = models.PositiveBigIntegerField(default=0)
    test_profiles = models.PositiveBigIntegerField(default=0)
    # Channel key (profiles.rules.reachability.CHANNEL_KEYS) -> reachable profiles.
    reachable = models.JSONField(default=dict)
    computed_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="overview_one_row")]

    def __str__(self) -> str:
        return f"{self.profiles} profiles as of {self.computed_at:%Y-%m-%d %H:%M}"

    @property
    def anonymous(self) -> int:
        return self.profiles - self.identified


# --- CSV exports (Find People's here, segments' in segments.models) -------------------


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class CsvExport(models.Model):
    """What every CSV export job has: a status the page polls, its progress, the file
    and who asked. A worker writes it; a stale heartbeat means that worker died."""

    status = models.CharField(
        max_length=8, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    rows_total = models.BigIntegerField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # Moves while a worker writes the file; a stale one means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

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


class PeopleExport(CsvExport):
    """One CSV export of a Find People search; the page polls its progress.

    Resumable: after each batch the file is flushed and (`last_pk`, `file_bytes`)
    saved; a worker taking the export over cuts the file back to `file_bytes` and
    goes on after `last_pk`. `max_pk` fixes who is in the export when it starts."""

    # The search as Find People's GET parameters (q, type, test, has_email, …).
    filters = models.JSONField(default=dict, blank=True)
    max_pk = models.BigIntegerField(null=True, blank=True)
    last_pk = models.BigIntegerField(default=0)
    file = models.FileField(upload_to="people-exports/", blank=True, default="")
    file_bytes = models.BigIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ExportStatus.values),
                name="people_export_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"people export {self.pk} ({self.status})"
