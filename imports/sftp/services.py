"""Writes for SFTP sources: saving them (secrets encrypted, beat schedule kept
in step), trusting host keys, testing connections and polling.

How a poll decides a file is complete ("stable"): a file is imported only when
two looks agree on its size and modification time. The first look is recorded
in the ledger (SftpFile, status SEEN). A poll imports a file whose SEEN row
came from an earlier poll; for files it sees for the first time it looks again
after `settle_seconds` (settings.SFTP_SETTLE_SECONDS, default 5) and imports
those that did not change, so a new file is picked up by the first poll that
sees it. `settle_seconds=0` skips the second look: new files then wait for the
next poll. A file still growing gets a new ledger row each look and is left
alone until two looks agree.

The ledger's unique (source, path, size, mtime) key and a conditional claim of
each row keep a file from being imported twice; at most one poll per source
runs at a time (a partial unique index on running SftpRun rows). A ledger row
becomes final (IMPORTED or FAILED) only after its import finished; everything
else is retried by the next poll, resuming the same ImportRun.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import posixpath
import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config import secrets
from config.csvsafe import formula_safe
from config.secrets import secret_encrypt
from imports.models import (
    ImportKind,
    ImportRun,
    ImportStatus,
    SftpFile,
    SftpFileStatus,
    SftpRun,
    SftpRunStatus,
    SftpRunTrigger,
    SftpSchedule,
    SftpSource,
    SftpSourceKind,
)
from imports.selectors import import_run_rejected_csv
from imports.services import import_run_create, import_run_execute
from imports.sources.sftp import (
    FAILED_DIR,
    PROCESSED_DIR,
    Credentials,
    RemoteFile,
    SftpConnection,
    SftpError,
    SftpFileVanished,
    SftpHostKeyChanged,
    SftpHostKeyUnknown,
    SftpPermissionDenied,
    normalize_fingerprint,
)

logger = logging.getLogger(__name__)

POLL_TASK_NAME = "imports.sftp.tasks.sftp_poll_source_task"
# A poll holding the "running" slot longer than this died with its worker
# (the task's hard time limit is shorter), so the slot is released.
STALE_RUN_AFTER = dt.timedelta(minutes=70)
MAX_IMPORT_ATTEMPTS = 5
RESULT_SUFFIX = ".result.csv"
_EVENTS_NAME = re.compile(r"^events__(?P<event>.+?)__.*$", re.IGNORECASE)
_PROFILES_NAME = re.compile(r"^profiles__.*$", re.IGNORECASE)


class SftpSourceBusy(Exception):
    """Another poll of this source is running."""


# -- secrets at rest --------------------------------------------------------
def secret_decrypt(token: str) -> str:
    try:
        return secrets.secret_decrypt(token)
    except secrets.SecretUnreadable as exc:
        raise SftpError(
            "the saved password/key cannot be decrypted (SECRET_KEY or "
            "SECRETS_ENCRYPTION_KEY changed): enter it again"
        ) from exc


def sftp_credentials(source: SftpSource) -> Credentials:
    return Credentials(
        host=source.host,
        port=source.port,
        username=source.username,
        password=secret_decrypt(source.password_encrypted),
        private_key=secret_decrypt(source.private_key_encrypted),
    )


def _connection(source: SftpSource, timeout: float | None = None) -> SftpConnection:
    return SftpConnection(
        sftp_credentials(source),
        expected_fingerprint=source.host_key_fingerprint,
        timeout=timeout or settings.SFTP_TIMEOUT_SECONDS,
    )


# -- sources ----------------------------------------------------------------
@transaction.atomic
def sftp_source_save(
    *, source: SftpSource, password: str = "", private_key: str = ""
) -> SftpSource:
    """Create or update a source (fields already set on `source`).

    A non-empty `password` or `private_key` replaces the saved secret and
    clears the other one (a source authenticates one way); empty keeps what is
    saved. Secrets are stored Fernet-encrypted. Creates/updates the source's
    PeriodicTask (enabled iff the source is).
    """
    if password:
        source.password_encrypted = secret_encrypt(password)
        source.private_key_encrypted = ""
    elif private_key:
        source.private_key_encrypted = secret_encrypt(private_key.strip() + "\n")
        source.password_encrypted = ""
    source.host_key_fingerprint = normalize_fingerprint(source.host_key_fingerprint)
    if source.kind != SftpSourceKind.EVENTS:
        source.event_name = ""
    source.save()
    _schedule_sync(source)
    return source


def _schedule_sync(source: SftpSource) -> None:
    """Point the source's PeriodicTask at its current schedule and flag."""
    interval = crontab = None
    if source.schedule == SftpSchedule.DAILY and source.daily_at:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=str(source.daily_at.minute),
            hour=str(source.daily_at.hour),
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        expires = 60 * 60
    else:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=source.every_minutes, period=IntervalSchedule.MINUTES
        )
        expires = max(60, source.every_minutes * 60)
    values = {
        "name": f"SFTP source {source.pk}: {source.name}"[:200],
        "task": POLL_TASK_NAME,
        "args": f"[{source.pk}]",
        "interval": interval,
        "crontab": crontab,
        "enabled": source.enabled,
        # A poll still queued when the next one is due is pointless.
        "expire_seconds": expires,
        "description": "Created by imports.sftp.services; edit the source, not this task.",
    }
    task = source.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(**values)
        SftpSource.objects.filter(pk=source.pk).update(periodic_task=task)
        source.periodic_task = task
    else:
        for name, value in values.items():
            setattr(task, name, value)
        task.save()


@transaction.atomic
def sftp_source_delete(*, source: SftpSource) -> None:
    """Delete the source, its runs and ledger, and its PeriodicTask.

    ImportRuns made from its files stay (they are the import history)."""
    task_id = source.periodic_task_id
    source.delete()
    if task_id:
        PeriodicTask.objects.filter(pk=task_id).delete()


@transaction.atomic
def sftp_source_trust_host_key(*, source: SftpSource, fingerprint: str) -> SftpSource:
    """Pin `fingerprint` as the server's host key.

    A source that stopped itself (host key changed) is enabled again."""
    source.host_key_fingerprint = normalize_fingerprint(fingerprint)
    if source.stopped_reason:
        source.stopped_reason = ""
        source.enabled = True
    source.save()
    _schedule_sync(source)
    return source


@transaction.atomic
def _source_stop(*, source: SftpSource, reason: str) -> None:
    source.stopped_reason = reason
    source.enabled = False
    source.save(update_fields=["stopped_reason", "enabled", "updated_at"])
    _schedule_sync(source)


@dataclass
class ConnectionTest:
    ok: bool
    message: str
    fingerprint: str = ""
    fingerprint_trusted: bool = False
    files: list[RemoteFile] = field(default_factory=list)


def sftp_source_test_connection(
    *, source: SftpSource, timeout: float | None = None
) -> ConnectionTest:
    """Connect, check the host key, log in and list matching files. No writes.

    With no pinned key (or a different one) it reports the server's
    fingerprint so a person can decide to trust it."""
    try:
        with _connection(source, timeout) as conn:
            files = conn.list_files(source.remote_dir, source.pattern)
            return ConnectionTest(
                ok=True,
                message=(
                    f"Connected and logged in. {len(files)} file(s) in {source.remote_dir} "
                    f"match {source.pattern}."
                ),
                fingerprint=conn.fingerprint,
                fingerprint_trusted=True,
                files=files,
            )
    except SftpHostKeyUnknown as exc:
        return ConnectionTest(
            ok=False,
            message="The server answered. Check its host key fingerprint and trust it.",
            fingerprint=exc.fingerprint,
        )
    except SftpHostKeyChanged as exc:
        return ConnectionTest(ok=False, message=str(exc), fingerprint=exc.offered)
    except SftpError as exc:
        return ConnectionTest(
            ok=False,
            message=str(exc),
            fingerprint=source.host_key_fingerprint,
            fingerprint_trusted=bool(source.host_key_fingerprint),
        )


def sftp_source_probe_fingerprint(*, source: SftpSource, timeout: float | None = None) -> str:
    """The server's host key fingerprint (no login). Raises SftpError."""
    return SftpConnection(
        sftp_credentials(source), timeout=timeout or settings.SFTP_TIMEOUT_SECONDS
    ).probe_fingerprint()


def sftp_source_poll_enqueue(*, source: SftpSource, trigger: str = SftpRunTrigger.MANUAL) -> None:
    """Queue a poll on the worker once the current transaction commits."""
    from imports.sftp.tasks import sftp_poll_source_task

    sftp_poll_source_task.delay_on_commit(source.pk, trigger)


# -- polling ----------------------------------------------------------------
def file_kind(source: SftpSource, file_name: str) -> tuple[str, str]:
    """(kind, event name) for a file of this source.

    "By file name" sources: `events__<Event Name>__anything.csv` holds events
    named <Event Name>; `profiles__anything.csv` holds profiles. Raises
    ValueError for a name that follows neither."""
    if source.kind == SftpSourceKind.PROFILES:
        return ImportKind.PROFILES, ""
    if source.kind == SftpSourceKind.EVENTS:
        return ImportKind.EVENTS, source.event_name
    if match := _EVENTS_NAME.match(file_name):
        return ImportKind.EVENTS, match.group("event").strip()
    if _PROFILES_NAME.match(file_name):
        return ImportKind.PROFILES, ""
    raise ValueError(
        f"{file_name} does not follow the naming convention: name it "
        "events__<Event Name>__<anything>.csv or profiles__<anything>.csv"
    )


def _release_stale_runs(source: SftpSource) -> None:
    SftpRun.objects.filter(
        source=source,
        status=SftpRunStatus.RUNNING,
        started_at__lt=timezone.now() - STALE_RUN_AFTER,
    ).update(
        status=SftpRunStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker running this poll stopped before it finished.",
    )


def _run_start(source: SftpSource, trigger: str) -> SftpRun:
    _release_stale_runs(source)
    try:
        with transaction.atomic():
            return SftpRun.objects.create(source=source, trigger=trigger)
    except IntegrityError as exc:
        raise SftpSourceBusy(f"A poll of {source.name} is already running.") from exc


def sftp_source_poll(
    *,
    source: SftpSource,
    trigger: str = SftpRunTrigger.SCHEDULE,
    settle_seconds: float | None = None,
    timeout: float | None = None,
) -> SftpRun:
    """Poll one source: list, import each complete new file once, move it to
    processed/ or failed/ and write `<name>.result.csv` beside it.

    Returns the finished SftpRun (status FAILED with `error` when the server
    could not be used; `error_transient` says whether retrying may help).
    Raises SftpSourceBusy when another poll of the source is running.
    Not atomic as a whole: each file's ledger row moves forward in its own
    small transactions, so a crash leaves it retryable, never done.
    """
    if settle_seconds is None:
        settle_seconds = settings.SFTP_SETTLE_SECONDS
    run = _run_start(source, trigger)
    try:
        if source.stopped_reason:
            raise SftpError(source.stopped_reason)
        with _connection(source, timeout) as conn:
            _poll_files(conn, source, run, settle_seconds)
    except SftpHostKeyChanged as exc:
        reason = f"{exc} Polling stopped: test the connection and trust the new key if expected."
        _source_stop(source=source, reason=reason)
        _run_fail(run, reason, transient=False)
    except SftpError as exc:
        _run_fail(run, str(exc), transient=exc.transient)
    except Exception as exc:
        _run_fail(run, f"Unexpected error: {exc}", transient=False)
        raise
    else:
        run.status = SftpRunStatus.DONE
        run.finished_at = timezone.now()
        run.save()
    return run


def _run_fail(run: SftpRun, error: str, *, transient: bool) -> None:
    run.status = SftpRunStatus.FAILED
    run.error = error
    run.error_transient = transient
    run.finished_at = timezone.now()
    run.save()


def _look(conn: SftpConnection, source: SftpSource) -> list[RemoteFile]:
    # Never pick up our own result files, whatever the pattern says.
    return [
        remote
        for remote in conn.list_files(source.remote_dir, source.pattern)
        if not remote.name.endswith(RESULT_SUFFIX)
    ]


def _record_look(source: SftpSource, run: SftpRun, remote: RemoteFile) -> tuple[SftpFile, bool]:
    """The ledger row for this version of the file; True if it is new.

    Older versions of the same path still waiting are marked CHANGED."""
    SftpFile.objects.filter(source=source, path=remote.path, status=SftpFileStatus.SEEN).exclude(
        size=remote.size, mtime=remote.mtime
    ).update(status=SftpFileStatus.CHANGED, run=run)
    ledger, created = SftpFile.objects.get_or_create(
        source=source,
        path=remote.path,
        size=remote.size,
        mtime=remote.mtime,
        defaults={"run": run},
    )
    return ledger, created


def _poll_files(
    conn: SftpConnection, source: SftpSource, run: SftpRun, settle_seconds: float
) -> None:
    listing = _look(conn, source)
    run.files_seen = len(listing)
    ready: list[tuple[SftpFile, RemoteFile]] = []
    first_looks: list[tuple[SftpFile, RemoteFile]] = []
    for remote in listing:
        ledger, created = _record_look(source, run, remote)
        if created:
            first_looks.append((ledger, remote))
        elif ledger.status in (SftpFileStatus.IMPORTED, SftpFileStatus.FAILED):
            run.files_skipped += 1  # done before; still there when it could not be moved
        else:
            ready.append((ledger, remote))
    if first_looks and settle_seconds > 0:
        time.sleep(settle_seconds)
        second = {(remote.path, remote.size, remote.mtime) for remote in _look(conn, source)}
        for ledger, remote in first_looks:
            if (remote.path, remote.size, remote.mtime) in second:
                ready.append((ledger, remote))
            else:
                run.files_skipped += 1  # still being written, or gone
    else:
        run.files_skipped += len(first_looks)
    run.save()
    for ledger, remote in sorted(ready, key=lambda pair: pair[1].name):
        outcome = _import_file(conn, source, run, ledger, remote)
        if outcome == "imported":
            run.files_imported += 1
        elif outcome == "failed":
            run.files_failed += 1
        else:
            run.files_skipped += 1
        run.save()


def _claim(ledger: SftpFile, run: SftpRun) -> bool:
    claimed = SftpFile.objects.filter(
        pk=ledger.pk,
        status__in=[SftpFileStatus.SEEN, SftpFileStatus.IMPORTING, SftpFileStatus.CHANGED],
    ).update(status=SftpFileStatus.IMPORTING, run=run, attempts=F("attempts") + 1, error="")
    if claimed:
        ledger.refresh_from_db()
    return bool(claimed)


def _import_file(
    conn: SftpConnection, source: SftpSource, run: SftpRun, ledger: SftpFile, remote: RemoteFile
) -> str:
    """Import one stable file; returns "imported", "failed" or "skipped"."""

    if not _claim(ledger, run):
        return "skipped"  # another poll finished it meanwhile
    try:
        kind, event_name = file_kind(source, remote.name)
    except ValueError as exc:
        _finish(conn, source, ledger, status=SftpFileStatus.FAILED, error=str(exc))
        return "failed"
    try:
        if ledger.import_run_id is None:
            content = conn.download(remote.path)
            if len(content) != remote.size:
                # It changed between the looks and the read: look again next poll.
                _ledger_retry(ledger, status=SftpFileStatus.CHANGED, error="changed while read")
                return "skipped"
            with transaction.atomic():
                import_run = import_run_create(
                    kind=kind,
                    file_name=remote.name,
                    content=content,
                    event_name=event_name,
                    origin="sftp",
                )
                ledger.import_run = import_run
                ledger.sha256 = hashlib.sha256(content).hexdigest()
                ledger.save(update_fields=["import_run", "sha256", "updated_at"])
        import_run = import_run_execute(import_run_id=ledger.import_run_id)
    except SftpFileVanished as exc:
        _ledger_retry(ledger, status=SftpFileStatus.SEEN, error=str(exc))
        return "failed"
    except SftpPermissionDenied as exc:
        _ledger_retry(ledger, status=SftpFileStatus.SEEN, error=str(exc))
        return "failed"
    except SftpError:
        _ledger_retry(ledger, status=SftpFileStatus.IMPORTING, error="connection lost")
        raise  # the connection is gone: the whole run fails (and may be retried)
    except Exception as exc:
        logger.exception("SFTP import of %s failed", remote.path)
        if ledger.attempts >= MAX_IMPORT_ATTEMPTS:
            error = f"gave up after {ledger.attempts} attempts: {exc}"
            _finish(conn, source, ledger, status=SftpFileStatus.FAILED, error=error)
        else:
            _ledger_retry(ledger, status=SftpFileStatus.IMPORTING, error=f"import error: {exc}")
        return "failed"
    if import_run.status == ImportStatus.DONE:
        _finish(conn, source, ledger, status=SftpFileStatus.IMPORTED, import_run=import_run)
        return "imported"
    if import_run.status == ImportStatus.FAILED:
        error = import_run.error or "the import failed"
        _finish(
            conn, source, ledger, status=SftpFileStatus.FAILED, import_run=import_run, error=error
        )
        return "failed"
    # Not finished (another worker holds it): leave the row for the next poll.
    error = f"import is {import_run.get_status_display().lower()}"
    _ledger_retry(ledger, status=SftpFileStatus.IMPORTING, error=error)
    return "skipped"


def _ledger_retry(ledger: SftpFile, *, status: str, error: str) -> None:
    ledger.status = status
    ledger.error = error
    ledger.save(update_fields=["status", "error", "updated_at"])


def _finish(
    conn: SftpConnection,
    source: SftpSource,
    ledger: SftpFile,
    *,
    status: str,
    import_run: ImportRun | None = None,
    error: str = "",
) -> None:
    """Mark the row final, then move the file and write its result file.

    The row is final before the move: a file the account may not move stays
    in place but is never imported again. Move/write failures become notes."""
    ledger.status = status
    ledger.error = error
    ledger.save(update_fields=["status", "error", "updated_at"])
    folder = posixpath.join(
        source.remote_dir, PROCESSED_DIR if status == SftpFileStatus.IMPORTED else FAILED_DIR
    )
    notes = []
    try:
        ledger.moved_to = conn.move(ledger.path, folder)
        result_path = ledger.moved_to + RESULT_SUFFIX
    except SftpFileVanished:
        notes.append("the file was gone before it could be moved")
        result_path = ledger.path + RESULT_SUFFIX
    except SftpPermissionDenied:
        notes.append(f"not moved to {folder}/: permission denied")
        result_path = ledger.path + RESULT_SUFFIX
    try:
        conn.write_file(result_path, result_file_content(ledger, import_run, error))
        notes.append(f"result written to {result_path}")
    except SftpPermissionDenied:
        notes.append("result file not written: permission denied")
    ledger.note = "; ".join(notes)
    ledger.save(update_fields=["moved_to", "note", "updated_at"])


def result_file_content(ledger: SftpFile, import_run: ImportRun | None, error: str = "") -> bytes:
    """Totals as `field,value` lines, a blank line, then the rejected rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["field", "value"])
    writer.writerow(["file", formula_safe(ledger.name)])
    writer.writerow(
        ["status", "imported" if ledger.status == SftpFileStatus.IMPORTED else "failed"]
    )
    if import_run is not None:
        writer.writerow(["import_id", import_run.pk])
        for name in (
            "rows_total",
            "profiles_created",
            "profiles_updated",
            "events_stored",
            "rows_rejected",
        ):
            writer.writerow([name, getattr(import_run, name) or 0])
    writer.writerow(["error", formula_safe(error)])
    content = out.getvalue().encode()
    rejected = _rejected_rows_csv(import_run) if import_run is not None else b""
    if rejected:
        content += b"\n" + rejected
    return content


def _rejected_rows_csv(import_run: ImportRun) -> bytes:

    if not import_run.rows_rejected:
        return b""
    return import_run_rejected_csv(import_run=import_run)
