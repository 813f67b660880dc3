"""Writes of the imports app: store a CSV, map its columns, queue it, run it.

The pipeline is the same for the web upload, `manage.py import_csv` and SFTP:

    import_run_create  -> stores the file, detects encoding/delimiter/columns and
                          (unless given) the column mapping from CleverTap's
                          header conventions
    import_run_start   -> QUEUED, the Celery task sent when the transaction commits
    import_run_execute -> claims the run, imports it chunk by chunk

Each chunk (IMPORT_CHUNK_ROWS rows) is validated with the API's rules and
written set-based by profiles.bulk in ONE transaction together with the
run's counters and checkpoint (`last_committed_row`). A worker killed
mid-file therefore leaves a consistent run: the next claim resumes after the
checkpoint and nothing is written twice. Two chunks are in flight at once, on
two connections: one is read and planned while the one before it writes; they
still write and commit in file order (see `_chunk_commit`). A big file's chunks
are read and checked (`_chunk_read`: cells to typed values, each cell's check)
in a reader process, ahead of the writer (see `_chunks_read`).

File rules (shown on the upload page):
- empty cells are skipped (they never erase a value);
- rows about the same person are applied in file order: the last row wins;
- an email/phone another profile holds refuses the row (never merged);
- events: each row's client event id is a fingerprint of the person, the
  event name, the `ts` cell and the properties, so uploading the same rows
  again stores nothing new (identical rows in one file are one event).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.jobs import JobInterrupted, handed_back_heartbeat, job_stop_requested
from imports import reader_process
from imports.models import ImportKind, ImportOrigin, ImportRejectedRow, ImportRun, ImportStatus
from imports.sources import csv as csv_source
from imports.sources.csv import CellError, ColumnSpec, CsvFileError
from profiles.bulk import (
    BulkConflict,
    BulkEventRow,
    BulkProfileRow,
    BulkResult,
    events_bulk_insert,
    profiles_bulk_upsert,
)
from profiles.models import PropertyDefinition, PropertyScope, Source
from profiles.properties import (
    DEFAULT_PROPERTIES,
    IDENTITY_MISSING_MESSAGE,
    ErrorCode,
    RecordError,
    phone_cache_put,
    validate_key,
)
from profiles.services import Actor, event_validate

logger = logging.getLogger(__name__)

IDENTIFIER_ROLES = ("identity", "email", "phone", "objectId")  # lookup order
ROLES = {
    "identity": "identity (names the person)",
    "objectId": "objectId (device id)",
    "email": "Email (identifier)",
    "phone": "Phone (identifier)",
    "property": "property",
    "ts": "ts (event time)",
    "ignore": "ignore",
}
EVENT_ONLY_ROLES = {"ts"}
# Columns of our own rejected-rows report: ignored when that file is re-uploaded.
REPORT_COLUMNS = ["Error row", "Error column", "Error value", "Error reason"]
# Between the reasons of one rejected row (a row reports every problem it has).
REASON_SEPARATOR = " · "
PROPERTY_TYPE_TO_COLUMN = {"number": "float", "boolean": "boolean", "list": "list",
                           "date": "date", "string": "string"}  # fmt: skip


# Chunks in flight: one reads and plans while the one before it writes, so Python
# and PostgreSQL work at the same time (on two connections). Two, not more: a chunk
# is handed what only the chunk just before it wrote (every earlier one committed
# before it was submitted), and a third gained nothing measurable on two cores.
PIPELINE_DEPTH = 2


def chunk_rows() -> int:
    return int(getattr(settings, "IMPORT_CHUNK_ROWS", 5_000))


def stale_after() -> dt.timedelta:
    """A RUNNING run whose heartbeat is older is taken over (its worker died)."""
    return dt.timedelta(seconds=int(getattr(settings, "IMPORT_HEARTBEAT_STALE_SECONDS", 300)))


class ImportFileError(Exception):
    """The run cannot proceed (bad file, bad mapping); the message is for people."""


# --- mapping ---------------------------------------------------------------------------


def import_run_columns(run: ImportRun) -> list[ColumnSpec]:
    return [csv_source.parse_header_cell(header) for header in run.columns]


def mapping_detect(
    *, kind: str, columns: list[ColumnSpec], sample: list[list[str]]
) -> dict[str, Any]:
    """The mapping CleverTap's header conventions imply, so a file imports without a
    manual step: `identity`, `objectId`, `Email`, `Phone` (and `ts` for events) by
    name; types from the header (`<Float>`…), else from the property's recorded
    type, else from the first rows."""
    names = [column.name for column in columns if column.declared_type is None]
    known = dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE, name__in=names).values_list(
            "name", "type"
        )
    )
    mapped = []
    for position, column in enumerate(columns):
        lowered = column.name.lower()
        if lowered == "identity":
            role = "identity"
        elif lowered in {"objectid", "guid"}:
            role = "objectId"
        elif lowered in {"email", "phone"}:
            role = lowered
        elif lowered == "ts" and kind == ImportKind.EVENTS:
            role = "ts"
        elif column.header in REPORT_COLUMNS:
            role = "ignore"
        else:
            role = "property"
        column_type = ""
        if role == "property" and (kind == ImportKind.EVENTS or lowered not in DEFAULT_PROPERTIES):
            if column.declared_type:
                column_type = column.declared_type
            elif kind == ImportKind.PROFILES and column.name in known:
                column_type = PROPERTY_TYPE_TO_COLUMN[known[column.name]]
            else:
                values = [row[position] for row in sample if position < len(row)]
                column_type = csv_source.detect_type(values)
        mapped.append({"role": role, "type": column_type, "date_format": column.date_format})
    return {"columns": mapped}


def mapping_errors(*, kind: str, columns: list[ColumnSpec], mapping: dict[str, Any]) -> list[str]:
    """What stops this mapping from importing, in words for the person mapping."""
    entries = mapping.get("columns") or []
    if len(entries) != len(columns):
        return ["The mapping does not match the file's columns; map the file again."]
    errors: list[str] = []
    roles = [entry.get("role") for entry in entries]
    if not any(role in IDENTIFIER_ROLES for role in roles):
        errors.append(
            "Choose the column that names the person: identity (CleverTap's files have a "
            "lower-case `identity` column), objectId, Email or Phone."
        )
    for role in {*IDENTIFIER_ROLES, "ts"}:
        if roles.count(role) > 1:
            errors.append(f"Only one column can be {ROLES[role]}.")
    saved_as: dict[str, str] = {}
    for column, entry in zip(columns, entries, strict=True):
        role, column_type = entry.get("role"), entry.get("type") or ""
        if role not in ROLES or (role in EVENT_ONLY_ROLES and kind != ImportKind.EVENTS):
            errors.append(f"Column '{column.header}': choose what it holds.")
            continue
        if role != "property":
            continue
        if column_type and column_type not in csv_source.COLUMN_TYPES:
            errors.append(f"Column '{column.header}': '{column_type}' is not a type.")
        if kind == ImportKind.EVENTS and column_type == "list":
            errors.append(f"Column '{column.header}': event properties cannot be multi-value.")
        name = property_name(column, entry)
        try:
            validate_key(name)
        except RecordError as error:
            errors.append(f"Column '{column.header}': {error.message}")
        earlier = saved_as.setdefault(name.lower(), column.header)
        if earlier != column.header:
            errors.append(
                f"Columns '{earlier}' and '{column.header}' are both saved as '{name}'; "
                "give one of them another name."
            )
    return errors


def property_name(column: ColumnSpec, entry: dict[str, Any]) -> str:
    """The property a column is saved as: its "Save as" name, else its header's name."""
    return (entry.get("name") or "").strip() or column.name


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    name: str
    role: str
    type: str  # "" for default properties: their own cleaners take the raw text
    date_format: str


@dataclass(frozen=True)
class _CellProblem:
    column: str  # the header cell, "" when the problem is the row's width
    value: str
    code: int
    message: str


class _RowError(Exception):
    """Everything wrong with one row, so a person fixes the row once, not once per upload.

    `column`, `value`, `code` and `message` sum the problems up for the one
    rejected-rows entry a row gets (the fix-and-retry file has one line per row)."""

    def __init__(self, problems: list[_CellProblem]) -> None:
        self.problems = problems
        self.message = REASON_SEPARATOR.join(problem.message for problem in problems)
        super().__init__(self.message)
        self.column = REASON_SEPARATOR.join(p.column for p in problems if p.column)
        self.value = REASON_SEPARATOR.join(p.value for p in problems if p.value)
        self.code = problems[0].code


class _RowReader:
    """Turns the cells of one row into a bulk row, per the run's mapping."""

    def __init__(self, run: ImportRun) -> None:
        self.run = run
        columns = import_run_columns(run)
        entries = run.mapping["columns"]
        self.width = len(columns)
        self.columns = [
            _Column(i, c.header, property_name(c, e), e["role"], e.get("type") or "",
                    e.get("date_format") or c.date_format)
            for i, (c, e) in enumerate(zip(columns, entries, strict=True))
        ]  # fmt: skip
        self.keys = [c for role in IDENTIFIER_ROLES for c in self.columns if c.role == role]
        self.data_columns = [c for c in self.columns if c.role in {"property", "email", "phone"}]
        if run.kind == ImportKind.EVENTS:  # identifiers name the person, they are no event data
            self.data_columns = [c for c in self.columns if c.role == "property"]
        # Default properties (Email, Phone, Gender, …) are checked cell by cell here, with
        # the API's own cleaners, so a row reports every bad cell at once (the bulk planner
        # stops at a record's first error). The planner checks them again: a phone or an
        # email is parsed once (properties caches them), the others cost next to nothing.
        # (By name, not the function: a reader is sent to the reader process, pickled.)
        self.cleaners: dict[int, str] = {}
        if run.kind == ImportKind.PROFILES:
            for column in self.data_columns:
                lowered = column.name.lower()
                if lowered in DEFAULT_PROPERTIES and not column.type and not column.date_format:
                    self.cleaners[column.index] = lowered
        self.ts_column = next((c for c in self.columns if c.role == "ts"), None)
        self.by_key = {c.name: c for c in self.columns}
        self.by_key.update({c.role: c for c in self.keys})
        self.default_ts = run.created_at

    def column_for(self, key: str) -> _Column | None:
        return self.by_key.get(key) or self.by_key.get(key.lower())

    def _width_problem(self, cells: list[str]) -> _CellProblem | None:
        if len(cells) > self.width:
            extra = cells[self.width :]
            return _CellProblem(
                "", ",".join(extra), ErrorCode.MISC,
                f"The row has {len(cells)} values but the header names {self.width} columns.",
            )  # fmt: skip
        if len(cells) < self.width:
            missing = self.columns[len(cells)].header
            return _CellProblem(
                missing, "", ErrorCode.MISC,
                f"The row has {len(cells)} values but the header names {self.width} columns"
                f" (no value for '{missing}').",
            )  # fmt: skip
        return None

    def _key(self, cells: list[str], problems: list[_CellProblem]) -> tuple[str, str]:
        for column in self.keys:
            value = cells[column.index].strip()
            if value:
                return column.role, value
        first = self.keys[0]
        problems.append(
            _CellProblem(first.header, "", ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
        )
        return first.role, ""

    def _data(self, cells: list[str], problems: list[_CellProblem]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for column in self.data_columns:
            cell = cells[column.index]
            if not cell.strip():
                continue  # an empty cell never erases a value
            try:
                if column.type:
                    value: Any = csv_source.convert(cell, column.type, column.date_format)
                elif column.date_format:  # a default property with a declared date format
                    value = csv_source.epoch_date(csv_source.parse_date(cell, column.date_format))
                else:
                    value = cell
                    if column.index in self.cleaners:
                        DEFAULT_PROPERTIES[self.cleaners[column.index]].clean(cell)
            except CellError as error:
                problems.append(_CellProblem(
                    column.header, cell, ErrorCode.MISC, f"Value of '{column.name}': {error}"
                ))  # fmt: skip
                continue
            except RecordError as error:  # the API's code and message, as profile_push gives
                problems.append(_CellProblem(column.header, cell, error.code, error.message))
                continue
            data[column.name] = value
        return data

    def _checked(self, cells: list[str]) -> list[_CellProblem]:
        """The width problem, if any; raises when the row is too short to read at all."""
        problem = self._width_problem(cells)
        if problem is not None and len(cells) < self.width:
            raise _RowError([problem])  # which value is in which column is anybody's guess
        return [problem] if problem is not None else []

    def profile_row(self, number: int, cells: list[str]) -> BulkProfileRow:
        problems = self._checked(cells)
        kind, value = self._key(cells, problems)
        data = self._data(cells, problems)
        if problems:
            raise _RowError(problems)
        return BulkProfileRow(ref=number, key_kind=kind, key_value=value,
                              profile_data=data)  # fmt: skip

    def _ts(self, cells: list[str], problems: list[_CellProblem]) -> tuple[dt.datetime, str]:
        column = self.ts_column
        raw = cells[column.index].strip() if column else ""
        if not raw:
            return self.default_ts, ""
        try:
            if column.date_format or column.type == "date":
                return csv_source.parse_date(raw, column.date_format), raw
            return dt.datetime.fromtimestamp(float(raw), tz=dt.UTC), raw
        except (CellError, ValueError, OverflowError, OSError):
            problems.append(_CellProblem(
                column.header, raw, ErrorCode.TIMESTAMP,
                "Timestamp should be present in the Unix Epoch format.",
            ))  # fmt: skip
            return self.default_ts, raw

    def event_row(self, number: int, cells: list[str]) -> BulkEventRow:
        problems = self._checked(cells)
        kind, value = self._key(cells, problems)
        properties = self._data(cells, problems)
        ts, raw_ts = self._ts(cells, problems)
        if problems:
            raise _RowError(problems)
        fingerprint = json.dumps(
            [self.run.event_name, kind, value, raw_ts, sorted(properties.items())],
            separators=(",", ":"), default=str,
        )  # fmt: skip
        client_event_id = "csv:" + hashlib.sha256(fingerprint.encode()).hexdigest()
        return BulkEventRow(ref=number, key_kind=kind, key_value=value, properties=properties,
                            ts=ts, client_event_id=client_event_id)  # fmt: skip


@dataclass
class _ReadChunk:
    """A chunk of rows as read and checked (imports._RowReader.read): what a process
    that only reads hands to the one that writes."""

    rows: list[tuple[int, list[str]]]  # (row number, cells), in file order
    bulk_rows: list[Any]  # BulkProfileRow / BulkEventRow of the good rows
    # (row number, column, value, code, reason) of the rows refused while reading
    refused: list[tuple[int, str, str, int, str]]
    # The phone numbers parsed reading it (profiles.properties.phone_cache_put)
    phones: dict[tuple[str, str], str | None]


def _chunk_read(reader: _RowReader, rows: list[tuple[int, list[str]]]) -> _ReadChunk:
    """CSV cells -> bulk rows and refusals, with the run's mapping; no database."""
    convert = reader.profile_row if reader.run.kind == ImportKind.PROFILES else reader.event_row
    bulk_rows: list[Any] = []
    refused = []
    for number, cells in rows:
        try:
            bulk_rows.append(convert(number, cells))
        except _RowError as error:
            refused.append((number, error.column, error.value[:2000], error.code, error.message))
    return _ReadChunk(rows, bulk_rows, refused, {})


# --- create, map, start ------------------------------------------------------------------


def _fail(run: ImportRun, message: str) -> ImportRun:
    now = timezone.now()
    ImportRun.objects.filter(pk=run.pk).update(
        status=ImportStatus.FAILED, error=message, finished_at=now, claim=None
    )
    run.refresh_from_db()
    return run


@transaction.atomic
def import_run_create(
    *,
    kind: str,
    file_name: str,
    content: File | bytes,
    event_name: str = "",
    uploaded_by=None,
    origin: str = ImportOrigin.WEB,
    mapping: dict[str, Any] | None = None,
) -> ImportRun:
    """Store the file and inspect it; the run is PENDING (waiting for its mapping).

    Encoding, delimiter, header and row count are detected now; with
    `mapping=None` the mapping is detected from the header (see mapping_detect).
    A file that cannot be imported at all (binary, not UTF-8, no header, too
    big, bad event name) gives a FAILED run whose `error` says why — it is
    kept, so the history shows it. Nothing is imported yet.
    """
    if kind not in ImportKind.values:
        raise ValueError(f"kind must be one of {ImportKind.values}")
    if origin not in ImportOrigin.values:
        raise ValueError(f"origin must be one of {ImportOrigin.values}")
    if isinstance(content, bytes | bytearray):
        content = ContentFile(bytes(content))
    run = ImportRun(
        kind=kind, file_name=file_name[:255], event_name=event_name.strip(),
        uploaded_by=uploaded_by, origin=origin,
    )  # fmt: skip
    run.file.save(file_name or "upload.csv", content, save=False)
    run.file_size = run.file.size
    run.save()
    limit = settings.IMPORT_MAX_UPLOAD_BYTES
    if run.file_size > limit:
        return _fail(
            run, f"The file is {run.file_size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB."
        )
    if kind == ImportKind.EVENTS:
        try:
            event_validate(run.event_name, {})
        except RecordError as error:
            return _fail(run, error.message)
    try:
        with run.file.open("rb") as binary:
            info = csv_source.inspect(binary)
            sample = csv_source.preview(binary, info)
    except CsvFileError as error:
        return _fail(run, str(error))
    run.encoding, run.delimiter = info.encoding, info.delimiter
    run.columns = [column.header for column in info.columns]
    run.rows_total = info.rows_total
    run.mapping = mapping or mapping_detect(kind=kind, columns=info.columns, sample=sample)
    run.save(update_fields=["encoding", "delimiter", "columns", "rows_total", "mapping"])
    return run


@transaction.atomic
def import_run_set_mapping(*, import_run: ImportRun, mapping: dict[str, Any]) -> ImportRun:
    """Replace the mapping of a run still waiting for it (PENDING). Raises ValueError
    with the problems when the mapping cannot import."""
    errors = mapping_errors(
        kind=import_run.kind, columns=import_run_columns(import_run), mapping=mapping
    )
    if errors:
        raise ValueError(" ".join(errors))
    updated = ImportRun.objects.filter(pk=import_run.pk, status=ImportStatus.PENDING).update(
        mapping=mapping
    )
    if not updated:
        raise ValueError("This import has already started; its mapping can no longer change.")
    import_run.refresh_from_db()
    return import_run


@transaction.atomic
def import_run_start(*, import_run: ImportRun) -> None:
    """Queue a PENDING run: status QUEUED, and `import_run_task` sent once the
    transaction commits. A mapping that cannot import fails the run instead
    (its `error` says why). A run that is not PENDING is left alone."""
    from imports.tasks import import_run_task

    errors = mapping_errors(
        kind=import_run.kind, columns=import_run_columns(import_run), mapping=import_run.mapping
    )
    if errors and import_run.status == ImportStatus.PENDING:
        _fail(import_run, " ".join(errors))
        return
    queued = ImportRun.objects.filter(pk=import_run.pk, status=ImportStatus.PENDING).update(
        status=ImportStatus.QUEUED
    )
    if queued:
        import_run_task.delay_on_commit(import_run.pk)
    import_run.refresh_from_db()


def import_run_fail(*, import_run_id: int, error: str) -> None:
    """Give up on a run that is not finished (e.g. its task ran out of retries): FAILED
    with `error`. What its committed chunks imported stays; re-uploading the file is safe."""
    ImportRun.objects.filter(
        pk=import_run_id, status__in=[ImportStatus.PENDING, ImportStatus.QUEUED]
    ).update(status=ImportStatus.FAILED, error=error, finished_at=timezone.now(), claim=None)


# --- execute ----------------------------------------------------------------------------


class _ClaimLost(Exception):
    """Another worker took the run over (ours was presumed dead): stop quietly."""


class _Cancelled(Exception):
    """A person cancelled the run: stop before the next chunk writes anything."""


def import_run_cancel(*, import_run: ImportRun, user: Any) -> bool:
    """Cancel a queued or running run (not an SFTP file's: its poll owns it).

    Conditional update: True when this call cancelled it. The running worker
    stops at its next chunk boundary (each chunk re-checks the run, locked,
    before it writes), so the chunks already committed stay, with counters that
    match them; the chunk being written when this lands commits first (the
    update waits for its row lock). Status CANCELLED is never claimed again nor
    resumed by the recovery sweep (config.jobs takes RUNNING runs only).
    """
    who = getattr(user, "get_username", lambda: "")() or "someone"
    return bool(
        ImportRun.objects.filter(
            pk=import_run.pk, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
        )
        .exclude(origin=ImportOrigin.SFTP)
        .update(
            status=ImportStatus.CANCELLED,
            claim=None,
            finished_at=timezone.now(),
            error=f"Cancelled by {who}.",
        )
    )


def _claim(import_run_id: int, claim: uuid.UUID) -> bool:
    now = timezone.now()
    claimable = Q(status__in=[ImportStatus.PENDING, ImportStatus.QUEUED]) | Q(
        status=ImportStatus.RUNNING, heartbeat_at__lt=now - stale_after()
    )
    return bool(
        ImportRun.objects.filter(claimable, pk=import_run_id).update(
            status=ImportStatus.RUNNING,
            claim=claim,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), now),
            error="",
        )
    )


def _release(run: ImportRun, claim: uuid.UUID) -> None:
    """Hand the run back to the queue (a retry or a continuation will claim it).
    When even that fails, the heartbeat goes stale and the next claim takes it over."""
    try:
        ImportRun.objects.filter(pk=run.pk, claim=claim).update(
            status=ImportStatus.QUEUED, claim=None
        )
    except DatabaseError:
        logger.warning("could not release import run %s; it will be taken over", run.pk)


def _finish(run: ImportRun, claim: uuid.UUID, status: str, error: str = "") -> None:
    now = timezone.now()
    ImportRun.objects.filter(pk=run.pk, claim=claim).update(
        status=status, error=error, finished_at=now, heartbeat_at=now, claim=None
    )


def _actor(run: ImportRun) -> Actor:
    source = Source.SFTP if run.origin == ImportOrigin.SFTP else Source.CSV
    return Actor(source=source, user=run.uploaded_by, label=f"import: {run.file_name}"[:200])


class _Turn:
    """A chunk's place in the pipeline: the next chunk writes only after this one
    committed, and learns which identifiers it wrote."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.committed = False
        self.identifiers_written: set[tuple[str, str]] = set()

    def wait(self, abort: threading.Event) -> None:
        while not self.done.wait(0.5):
            if abort.is_set():
                raise _PipelineStopped
        if not self.committed:
            raise _PipelineStopped


class _PipelineStopped(Exception):
    """The chunk before this one failed (or the import was stopped): write nothing."""


def _chunk_import(
    run: ImportRun,
    reader: _RowReader,
    chunk: _ReadChunk,
    actor: Actor,
    before_write: Callable[[], set[tuple[str, str]]],
) -> tuple[BulkResult, list[ImportRejectedRow]]:
    cells_by_row = dict(chunk.rows)
    rejected = [
        ImportRejectedRow(run=run, row_number=number, column=column, value=value, code=code,
                          reason=reason, cells=cells_by_row[number])
        for number, column, value, code, reason in chunk.refused
    ]  # fmt: skip
    phone_cache_put(chunk.phones)
    if run.kind == ImportKind.PROFILES:
        result = profiles_bulk_upsert(chunk.bulk_rows, actor=actor, before_write=before_write)
    else:
        result = events_bulk_insert(
            chunk.bulk_rows, name=run.event_name, actor=actor, before_write=before_write
        )
    for rejection in result.rejected:
        cells = cells_by_row[rejection.ref]
        column = reader.column_for(rejection.key) if rejection.key else None
        value = cells[column.index] if column is not None and column.index < len(cells) else ""
        rejected.append(ImportRejectedRow(
            run=run, row_number=rejection.ref, column=column.header if column else "",
            value=value[:2000], code=rejection.code, reason=rejection.message, cells=cells,
        ))  # fmt: skip
    return result, rejected


def _chunk_commit(
    run: ImportRun,
    claim: uuid.UUID,
    reader: _RowReader,
    actor: Actor,
    chunk: _ReadChunk,
    previous: _Turn | None,
    turn: _Turn,
    abort: threading.Event,
) -> None:
    """Import one chunk in its own transaction (on this thread's own connection),
    with the run's counters and checkpoint; runs beside the chunk before it.

    It reads and plans while the chunk before it is still writing, then waits for
    that chunk to commit before writing (profiles.bulk re-plans it, locked, if the
    earlier chunk touched what it read). So chunks commit in file order, the
    checkpoint only moves forward, and rows about one person apply in file order.
    """

    def before_write() -> set[tuple[str, str]]:
        if previous is not None:
            previous.wait(abort)
        status = (
            ImportRun.objects.select_for_update()
            .filter(pk=run.pk, claim=claim)
            .values_list("status", flat=True)
            .first()
        )
        if status != ImportStatus.RUNNING:
            cancelled = ImportRun.objects.filter(pk=run.pk, status=ImportStatus.CANCELLED)
            raise _Cancelled if cancelled.exists() else _ClaimLost
        return previous.identifiers_written if previous is not None else set()

    try:
        with transaction.atomic(durable=True):
            # The chunk and its checkpoint commit together, so an asynchronous
            # commit is safe: a database crash loses both and the chunk is redone.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            result, rejected = _chunk_import(run, reader, chunk, actor, before_write)
            if abort.is_set():
                raise _PipelineStopped
            ImportRejectedRow.objects.bulk_create(rejected)
            ImportRun.objects.filter(pk=run.pk).update(
                rows_done=F("rows_done") + len(chunk.rows),
                profiles_created=F("profiles_created") + result.profiles_created,
                profiles_updated=F("profiles_updated") + result.profiles_updated,
                events_stored=F("events_stored") + result.events_stored,
                rows_rejected=F("rows_rejected") + len(rejected),
                last_committed_row=chunk.rows[-1][0],
                heartbeat_at=timezone.now(),
            )
        turn.identifiers_written = result.identifiers_written
        turn.committed = True
    finally:
        turn.done.set()


def _pool_connections_close(pool: ThreadPoolExecutor, threads: int) -> None:
    """Close the connection each pool thread opened (they are kept from chunk to
    chunk, with their staging tables). The barrier makes every thread run one."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a thread still busy
            barrier.wait(timeout=60)
        connection.close()

    for closing in [pool.submit(close) for _ in range(threads)]:
        closing.result()


# Reading and checking a chunk's cells (phone numbers above all) is about 40% of an
# import's Python time, and the pipeline's threads share one interpreter lock: with
# IMPORT_READER_PROCESS_MIN_ROWS set, a file of at least that many rows is read in a
# process of its own, beside the writer. Off by default: on the 2-core machine we
# measure on, PostgreSQL needs the second core and the writer lost as much wall time
# as it saved (README, Performance); with more cores it pays. Never for small files:
# starting the process (a fresh Django) costs about a second.
READ_AHEAD = 2  # chunks read ahead of the writer: memory stays flat in file size


def _reads_elsewhere(run: ImportRun) -> bool:
    threshold = settings.IMPORT_READER_PROCESS_MIN_ROWS
    if threshold is None:
        return False
    return (run.rows_total or 0) - run.last_committed_row >= int(threshold)


@contextlib.contextmanager
def _reader_process() -> Iterator[ProcessPoolExecutor | None]:
    """The reader process, started and ready; None (read here) when it cannot start."""
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"),
        initializer=reader_process.start, initargs=(settings.PHONE_DEFAULT_REGION,),
    )  # fmt: skip
    try:
        try:
            pool.submit(reader_process.ready).result(timeout=120)
        except Exception:
            logger.warning("no reader process; the import reads its chunks itself", exc_info=True)
            yield None
        else:
            yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks_read(
    reader: _RowReader, raw_chunks: Iterator[list[tuple[int, list[str]]]],
    readers: ProcessPoolExecutor | None,
) -> Iterator[_ReadChunk]:  # fmt: skip
    """The file's chunks as read and checked: here, or READ_AHEAD ahead in `readers`."""
    if readers is None:
        yield from (_chunk_read(reader, raw) for raw in raw_chunks)
        return
    ahead: deque[Future] = deque()
    for raw in raw_chunks:
        ahead.append(readers.submit(reader_process.chunk_read, reader, raw))
        if len(ahead) > READ_AHEAD:
            yield ahead.popleft().result()
    while ahead:
        yield ahead.popleft().result()


def _import_chunks(run: ImportRun, claim: uuid.UUID) -> None:
    errors = mapping_errors(kind=run.kind, columns=import_run_columns(run), mapping=run.mapping)
    if errors:
        raise ImportFileError(" ".join(errors))
    if run.kind == ImportKind.EVENTS:
        try:
            event_validate(run.event_name, {})
        except RecordError as error:
            raise ImportFileError(error.message) from None
    reader = _RowReader(run)
    actor = _actor(run)
    size = chunk_rows()
    abort = threading.Event()
    with run.file.open("rb") as binary, contextlib.ExitStack() as stack:
        rows = (
            row
            for row in csv_source.iter_rows(binary, run.encoding, run.delimiter)
            if row[0] > run.last_committed_row  # resume after the checkpoint
        )
        raw_chunks = iter(lambda: list(islice(rows, size)), [])
        readers = stack.enter_context(_reader_process()) if _reads_elsewhere(run) else None
        chunks = _chunks_read(reader, raw_chunks, readers)
        in_flight: deque[Future] = deque()
        previous: _Turn | None = None
        stopping = False
        with ThreadPoolExecutor(PIPELINE_DEPTH, thread_name_prefix=f"import-{run.pk}") as pool:
            try:
                for chunk in chunks:
                    # The worker is stopping: the chunks in flight commit, no new one starts.
                    if stopping := job_stop_requested():
                        break
                    if len(in_flight) == PIPELINE_DEPTH:
                        in_flight.popleft().result()  # the oldest chunk's error, if any
                    turn = _Turn()
                    in_flight.append(pool.submit(
                        _chunk_commit, run, claim, reader, actor, chunk, previous, turn, abort
                    ))  # fmt: skip
                    previous = turn
                while in_flight:
                    in_flight.popleft().result()
            except BaseException:
                abort.set()  # the chunks still in flight write nothing
                raise
            finally:
                _pool_connections_close(pool, PIPELINE_DEPTH)
        if stopping:
            rows.close()  # the CSV reader lets go of the file before it closes
            raise JobInterrupted


def import_run_execute(*, import_run_id: int) -> ImportRun:
    """Import a run now, in this process; returns it as it ended.

    Claims the run with a conditional UPDATE (PENDING/QUEUED -> RUNNING, or a
    RUNNING run whose heartbeat is stale: its worker died). Anything else (done,
    failed, running elsewhere) is returned untouched — so running it twice is
    harmless. Resumes after `last_committed_row`. A file or mapping problem
    fails the run with `error`; a transient database error (or the task's soft
    time limit) hands the run back to the queue and re-raises, for a retry.
    Must not be called inside a transaction (each chunk commits on its own).
    """
    claim = uuid.uuid4()
    if not _claim(import_run_id, claim):
        return ImportRun.objects.get(pk=import_run_id)
    run = ImportRun.objects.select_related("uploaded_by").get(pk=import_run_id)
    try:
        _import_chunks(run, claim)
    except (ImportFileError, CsvFileError) as error:
        _finish(run, claim, ImportStatus.FAILED, str(error))
    except _ClaimLost:
        logger.warning("import run %s was taken over by another worker", run.pk)
    except JobInterrupted:
        # Stopped at a chunk boundary: hand the run back, claimable at once.
        ImportRun.objects.filter(pk=run.pk, claim=claim).update(
            claim=None, heartbeat_at=handed_back_heartbeat(stale_after())
        )
        raise
    except _Cancelled:
        logger.info("import run %s cancelled; stopped at a chunk boundary", run.pk)
    except (OperationalError, InterfaceError, BulkConflict, SoftTimeLimitExceeded):
        _release(run, claim)
        raise
    except Exception as error:  # a bug must not leave the run RUNNING forever
        logger.exception("import run %s failed", run.pk)
        _finish(run, claim, ImportStatus.FAILED, f"The import stopped: {error}")
    else:
        _finish(run, claim, ImportStatus.DONE)
    run.refresh_from_db()
    return run
