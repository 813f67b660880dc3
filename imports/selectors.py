"""Reads of the imports app."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from config.csvsafe import write_csv
from imports.models import ImportKind, ImportRejectedRow, ImportRun
from imports.services import REASON_SEPARATOR, REPORT_COLUMNS, import_run_columns
from imports.sources import csv as csv_source
from imports.sources.csv import CsvFileError


def import_run_list() -> QuerySet[ImportRun]:
    """The history, newest first, with who uploaded (one query per page)."""
    return ImportRun.objects.select_related("uploaded_by").order_by("-created_at", "-id")


REJECTED_ROWS_SHOWN = 20


def import_run_header_row(*, import_run: ImportRun) -> int:
    """The spreadsheet row of the file's header, so rows are shown as data row N."""
    try:
        with import_run.file.open("rb") as binary:
            return csv_source.header_row_number(
                binary, import_run.encoding or "utf-8", import_run.delimiter or ","
            )
    except (CsvFileError, OSError, ValueError):
        return 1


def import_run_preview(*, import_run: ImportRun) -> dict[str, Any]:
    """The first rows of the file (with their data row numbers) and each column's type
    as the mapping will import it, for the mapping page."""
    columns = import_run_columns(import_run)
    header_row = import_run_header_row(import_run=import_run)
    numbers: list[int] = []
    try:
        with import_run.file.open("rb") as binary:
            rows = []
            for number, cells in csv_source.iter_rows(
                binary, import_run.encoding, import_run.delimiter
            ):
                rows.append(cells)
                numbers.append(number - header_row)
                if len(rows) >= csv_source.PREVIEW_ROWS:
                    break
    except (CsvFileError, OSError, ValueError):  # ValueError: the file is gone
        rows, numbers = [], []
    entries = (import_run.mapping or {}).get("columns") or []
    detected = []
    for i, column in enumerate(columns):
        # The type the mapping chose (from the header, the property's recorded type or
        # the sample) is what "Detected" says, so it never contradicts the Type box.
        chosen = entries[i].get("type") if i < len(entries) else ""
        detected.append(
            chosen
            or column.declared_type
            or csv_source.detect_type([row[i] for row in rows if i < len(row)])
        )
    width = len(columns)
    padded = [(row + [""] * width)[:width] for row in rows]
    return {
        "columns": columns,
        "rows": padded,
        "numbered_rows": list(zip(numbers, padded, strict=True)),
        "detected": detected,
    }


def import_run_totals(*, import_run: ImportRun) -> dict[str, int]:
    """The rows of a finished run, accounted for so the figures add up to the file's rows.

    Created and updated count people, not rows: a person named by several rows of
    the file is created (or updated) once, the later rows merged into the earlier.
    An event row that is neither stored nor rejected was stored before (the same
    event, imported again)."""
    run = import_run
    if run.kind == ImportKind.PROFILES:
        counted = run.profiles_created + run.profiles_updated + run.rows_rejected
    else:
        counted = run.events_stored + run.rows_rejected
    return {"rows": run.rows_done, "merged": max(0, run.rows_done - counted)}


def _report_positions(import_run: ImportRun) -> list[int]:
    """The file's own columns: a re-uploaded rejected-rows file brings our Error
    columns along; they are left out so each report has them once."""
    return [i for i, header in enumerate(import_run.columns) if header not in REPORT_COLUMNS]


def import_run_rejected_rows(
    *, import_run: ImportRun, limit: int = REJECTED_ROWS_SHOWN
) -> list[dict[str, Any]]:
    """The first rejected rows (data row number, columns, reasons), for the import's page."""
    header_row = import_run_header_row(import_run=import_run)
    rejected = (
        ImportRejectedRow.objects.filter(run=import_run)
        .order_by("row_number")
        .values_list("row_number", "column", "value", "reason")[:limit]
    )
    return [
        {"row": row_number - header_row, "column": column, "value": value,
         "reasons": reason.split(REASON_SEPARATOR)}
        for row_number, column, value, reason in rejected
    ]  # fmt: skip


def import_run_rejected_csv(*, import_run: ImportRun) -> bytes:
    """The rejected rows as CSV: the report columns (data row number, column, value,
    every reason of the row), then the row's cells as read, under the file's header.
    Formula-safe (cells starting with = + - @ get a leading quote); re-uploading it
    ignores the report columns, and its report does not repeat them."""
    positions = _report_positions(import_run)
    header_row = import_run_header_row(import_run=import_run)
    rows: list[list[object]] = [[*REPORT_COLUMNS, *(import_run.columns[i] for i in positions)]]
    rejected = (
        ImportRejectedRow.objects.filter(run=import_run)
        .order_by("row_number")
        .values_list("row_number", "column", "value", "reason", "cells")
    )
    for row_number, column, value, reason, cells in rejected.iterator(chunk_size=2000):
        own = [cells[i] if i < len(cells) else "" for i in positions]
        own += cells[len(import_run.columns) :]  # values beyond the header, as they were
        rows.append([row_number - header_row, column, value, reason, *own])
    return write_csv(rows)
