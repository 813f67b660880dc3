"""Settings, read from the environment only (see README: Configuration)."""

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# The launcher sets EMBEDDED_SERVICES when it started the private servers:
# only then may a secret fall back to a generated developer value.
EMBEDDED_SERVICES = env_bool("EMBEDDED_SERVICES")


def _developer_secret_key() -> str:
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or (_developer_secret_key() if EMBEDDED_SERVICES else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL/CELERY_BROKER_URL are.")

# Key for secrets stored at rest (SFTP passwords and keys). Defaults to one
# derived from SECRET_KEY; set it separately to rotate SECRET_KEY on its own.
SECRETS_ENCRYPTION_KEY = os.environ.get("SECRETS_ENCRYPTION_KEY", "")

DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

if not os.environ.get("DATABASE_URL"):
    raise ImproperlyConfigured(
        "DATABASE_URL is not set: start through `make run`/`make test` (which start the "
        "embedded PostgreSQL) or point it at your PostgreSQL server."
    )
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's cursors bind client-side and are never prepared: this only lets the statements
# that profiles.services.execute_prepared runs be prepared (Django turns it off for all).
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "django_tables2",
    "django_filters",
    "django_celery_beat",
    "axes",
    "csp",
    "profiles",
    "segments",
    "imports",
    "api",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs login unless its view says otherwise (API, healthz).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for AXES_COOLOFF_TIME. The admin
# site logs in through the same form, so it has the same protection.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = dt.timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", 15)))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.access.navigation",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"  # the overview, or the first section the person may use
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves straight from the app/static folders (no collectstatic
# step); set STATIC_ROOT only to collect files for a separate web server.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": VAR_DIR / "media"},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts and styles only from our own static
# files, so an injected <script> or on*= attribute does not run. Templates hold no
# inline script (tests/test_security_headers.py scans them); JSON for scripts travels
# in json_script blocks, which are data, not code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # style="width: 40%" on progress bars and chart swatches: attributes only, no
        # <style> elements; a style attribute cannot run script.
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Behind TLS (a proxy that terminates HTTPS), set these from the environment; with
# them `manage.py check --deploy` has no security warnings. Off by default so that
# a plain-HTTP loopback run still works.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
# "HTTP_X_FORWARDED_PROTO=https": the header (and value) by which the proxy says the
# client came in over HTTPS. Set it only when the proxy always sets or strips it.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    _proxy_header, _, _proxy_value = os.environ["SECURE_PROXY_SSL_HEADER"].partition("=")
    SECURE_PROXY_SSL_HEADER = (_proxy_header.strip(), _proxy_value.strip() or "https")

# Celery: JSON only, explicit time limits, late acks so a killed worker's
# task is redelivered (tasks are idempotent).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60 * 60
CELERY_TASK_TIME_LIMIT = 60 * 60 + 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task not acknowledged within this time is redelivered to another worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# Crash recovery (config/jobs.py): a RUNNING job whose heartbeat stood still
# this long lost its worker; beat's sweep enqueues it again from its checkpoint.
JOB_HEARTBEAT_STALE_SECONDS = int(os.environ.get("JOB_HEARTBEAT_STALE_SECONDS", "45"))
JOB_RECOVERY_INTERVAL_SECONDS = int(os.environ.get("JOB_RECOVERY_INTERVAL_SECONDS", "30"))
IMPORT_HEARTBEAT_STALE_SECONDS = JOB_HEARTBEAT_STALE_SECONDS
IMPORT_CHUNK_ROWS = int(os.environ.get("IMPORT_CHUNK_ROWS", "5000"))
# Files of at least this many rows are read in a process of their own (imports.services);
# unset: never (on 2 cores PostgreSQL needs the second one).
_reader_rows = os.environ.get("IMPORT_READER_PROCESS_MIN_ROWS", "")
IMPORT_READER_PROCESS_MIN_ROWS = int(_reader_rows) if _reader_rows else None
SEGMENT_EXPORT_BATCH = int(os.environ.get("SEGMENT_EXPORT_BATCH", "2000"))
PEOPLE_EXPORT_BATCH = int(os.environ.get("PEOPLE_EXPORT_BATCH", "2000"))
# The home overview is counted by beat this often (profiles.overview), never per page load.
OVERVIEW_REFRESH_SECONDS = int(os.environ.get("OVERVIEW_REFRESH_SECONDS", "300"))
# Find People counts matches exactly up to this many, within this time; else it estimates.
PEOPLE_COUNT_EXACT_UP_TO = 10_000
PEOPLE_COUNT_TIMEOUT_MS = int(os.environ.get("PEOPLE_COUNT_TIMEOUT_MS", "50"))
CELERY_BEAT_SCHEDULE = {
    "recover-stale-jobs": {
        "task": "config.jobs.jobs_recover_stale",
        "schedule": float(JOB_RECOVERY_INTERVAL_SECONDS),
        "options": {"expires": float(JOB_RECOVERY_INTERVAL_SECONDS)},
    },
    "overview-refresh": {
        "task": "profiles.tasks.overview_refresh_task",
        "schedule": float(OVERVIEW_REFRESH_SECONDS),
        "options": {"expires": float(OVERVIEW_REFRESH_SECONDS)},
    },
    # The web SDK's write queue (api.sdk_queue): requests nudge a drain; this tick
    # catches what a killed drain left behind.
    "sdk-queue-drain": {
        "task": "api.sdk_tasks.sdk_queue_drain_task",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
}
# Web SDK endpoint /a: requests per minute per client address and per device (429 above).
SDK_RATE_PER_IP_PER_MINUTE = int(os.environ.get("SDK_RATE_PER_IP_PER_MINUTE", 600))
SDK_RATE_PER_DEVICE_PER_MINUTE = int(os.environ.get("SDK_RATE_PER_DEVICE_PER_MINUTE", 120))
# Web SDK queue: shards (a device's records always go to the same one) and records per batch.
SDK_QUEUE_SHARDS = int(os.environ.get("SDK_QUEUE_SHARDS", 4))
SDK_QUEUE_BATCH = int(os.environ.get("SDK_QUEUE_BATCH", 500))
# After a pass over the shards that found no full batch, a drain waits this long, so that
# under load its batches grow (api.sdk_queue.sdk_queue_drain).
SDK_DRAIN_GATHER_SECONDS = float(os.environ.get("SDK_DRAIN_GATHER_SECONDS", 0.25))
# A drain killed mid-batch holds its lease this long; then the next drain takes over.
SDK_DRAIN_LEASE_SECONDS = int(os.environ.get("SDK_DRAIN_LEASE_SECONDS", 15))

# Product settings.
# Identifier kinds that identify a person (DESIGN.md: identity, email, phone).
PROFILE_IDENTIFYING_KINDS = env_list("PROFILE_IDENTIFYING_KINDS", "identity,email,phone")
# Region for phone numbers given without a "+country" prefix.
PHONE_DEFAULT_REGION = os.environ.get("PHONE_DEFAULT_REGION", "US")
IMPORT_MAX_UPLOAD_BYTES = int(os.environ.get("IMPORT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("API_MAX_BODY_BYTES", 10 * 1024 * 1024))
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
API_MAX_CONCURRENT_REQUESTS = int(os.environ.get("API_MAX_CONCURRENT_REQUESTS", 15))
# Failed API authentications allowed per account id / per client address in each window
# (seconds) before 429: guessing passcodes stays slow for a client and harmless for others.
API_AUTH_FAILURE_WINDOW = int(os.environ.get("API_AUTH_FAILURE_WINDOW", 300))
API_AUTH_FAILURES_PER_ACCOUNT = int(os.environ.get("API_AUTH_FAILURES_PER_ACCOUNT", 10))
API_AUTH_FAILURES_PER_ADDRESS = int(os.environ.get("API_AUTH_FAILURES_PER_ADDRESS", 50))
# An SFTP file is imported only once two looks this many seconds apart agree on
# its size and modification time (0: the second look is the next poll).
SFTP_SETTLE_SECONDS = float(os.environ.get("SFTP_SETTLE_SECONDS", 5))
SFTP_TIMEOUT_SECONDS = float(os.environ.get("SFTP_TIMEOUT_SECONDS", 20))

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}, "pgserver": {"level": "WARNING"}},
}
# A refused page is an everyday answer, not a fault: one line, no traceback.
LOGGING["filters"] = {"forbidden_one_line": {"()": "config.log_filters.ForbiddenWithoutTraceback"}}
LOGGING["handlers"]["console"]["filters"] = ["forbidden_one_line"]

# Campaigns: messages per second and channel (CAMPAIGN_RATE_PER_SECOND is one number for
# every channel, or JSON like {"email": 100, "sms": 10, "default": 50}); a send whose worker
# died is resumed by the shared sweep (config/jobs.py, JOB_HEARTBEAT_STALE_SECONDS); live
# campaigns scan new events every CAMPAIGN_LIVE_SCAN_SECONDS.
_campaign_rate = os.environ.get("CAMPAIGN_RATE_PER_SECOND", "50").strip()
CAMPAIGN_RATE_PER_SECOND = (
    json.loads(_campaign_rate) if _campaign_rate.startswith("{") else float(_campaign_rate)
)
CAMPAIGN_LIVE_SCAN_SECONDS = float(os.environ.get("CAMPAIGN_LIVE_SCAN_SECONDS", 5))
# Worker processes one campaign send runs on side by side (claims skip locked rows).
CAMPAIGN_SEND_PROCESSES = int(os.environ.get("CAMPAIGN_SEND_PROCESSES", 2))
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "campaigns-live-scan": {
        "task": "campaigns.tasks.live_campaigns_scan_task",
        "schedule": CAMPAIGN_LIVE_SCAN_SECONDS,
    },
}

# The system segments ("All Users", "Test Users") are recounted this often, so the
# segment list shows their size (as of the last count) without counting on a page view.
SEGMENT_SYSTEM_RECOUNT_SECONDS = float(os.environ.get("SEGMENT_SYSTEM_RECOUNT_SECONDS", 600))
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "segments-system-recount": {
        "task": "segments.tasks.segment_system_recount_task",
        "schedule": SEGMENT_SYSTEM_RECOUNT_SECONDS,
        "options": {"expires": SEGMENT_SYSTEM_RECOUNT_SECONDS},
    },
}


# Delivery providers (campaigns.delivery). With no EMAIL_HOST in embedded mode the
# launcher starts a local SMTP sink and sets EMAIL_HOST/EMAIL_PORT to it.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "noreply@localhost")
TWILIO_BASE_URL = os.environ.get("TWILIO_BASE_URL", "https://api.twilio.com")
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_SMS_FROM = os.environ.get("TWILIO_SMS_FROM", "")
TWILIO_WHATSAPP_FROM = os.environ.get("TWILIO_WHATSAPP_FROM", "")
FCM_BASE_URL = os.environ.get("FCM_BASE_URL", "https://fcm.googleapis.com")
FCM_PROJECT_ID = os.environ.get("FCM_PROJECT_ID", "")
FCM_ACCESS_TOKEN = os.environ.get("FCM_ACCESS_TOKEN", "")
# Web push (pywebpush): the VAPID subject ("mailto:" or "https:" contact for push services)
# and how long a push service keeps a message for a browser that is offline.
WEBPUSH_SUBJECT = os.environ.get("WEBPUSH_SUBJECT", f"mailto:{DEFAULT_FROM_EMAIL}")
WEBPUSH_TTL_SECONDS = int(os.environ.get("WEBPUSH_TTL_SECONDS", 24 * 60 * 60))
# The address providers reach this server at (e.g. https://profiles.example.com) for their
# delivery reports (Twilio's status callback); empty: no reports are asked for.
CAMPAIGN_CALLBACK_BASE_URL = os.environ.get("CAMPAIGN_CALLBACK_BASE_URL", "").rstrip("/")
# SMTP connections one batch of campaign emails is sent over at once (each reused for its
# share of the batch); the mail server's own limit on connections per client caps it.
CAMPAIGN_SMTP_CONNECTIONS = int(os.environ.get("CAMPAIGN_SMTP_CONNECTIONS", 4))
