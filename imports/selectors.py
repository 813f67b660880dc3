"""Reads of the imports app."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from config.csvsafe import write_csv
from imports.models import ImportRejectedRow, ImportRun
from imports.services import REPORT_COLUMNS, import_run_columns
from imports.sources import csv as csv_source
from imports.sources.csv import CsvFileError


def import_run_list() -> QuerySet[ImportRun]:
    """The history, newest first, with who uploaded (one query per page)."""
    return ImportRun.objects.select_related("uploaded_by").order_by("-created_at", "-id")


def import_run_preview(*, import_run: ImportRun) -> dict[str, Any]:
    """The first rows of the file and each column's detected type, for the mapping page."""
    columns = import_run_columns(import_run)
    try:
        with import_run.file.open("rb") as binary:
            rows = []
            for _, cells in csv_source.iter_rows(binary, import_run.encoding, import_run.delimiter):
                rows.append(cells)
                if len(rows) >= csv_source.PREVIEW_ROWS:
                    break
    except (CsvFileError, OSError):
        rows = []
    detected = [
        column.declared_type or csv_source.detect_type([row[i] for row in rows if i < len(row)])
        for i, column in enumerate(columns)
    ]
    width = len(columns)
    padded = [(row + [""] * width)[:width] for row in rows]
    return {"columns": columns, "rows": padded, "detected": detected}


def import_run_rejected_csv(*, import_run: ImportRun) -> bytes:
    """The rejected rows as CSV: the report columns (row number, column, value,
    reason), then the row's cells as read, under the file's header. Formula-safe
    (cells starting with = + - @ get a leading quote); re-uploading it ignores
    the report columns."""
    rows: list[list[object]] = [[*REPORT_COLUMNS, *import_run.columns]]
    rejected = (
        ImportRejectedRow.objects.filter(run=import_run)
        .order_by("row_number")
        .values_list("row_number", "column", "value", "reason", "cells")
    )
    for row_number, column, value, reason, cells in rejected.iterator(chunk_size=2000):
        rows.append([row_number, column, value, reason, *cells])
    return write_csv(rows)
