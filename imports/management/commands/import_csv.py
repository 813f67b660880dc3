"""python manage.py import_csv PATH [--events --event-name NAME] [--rejected-out FILE]"""

from __future__ import annotations

from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from imports.models import ImportKind, ImportOrigin, ImportStatus
from imports.services import (
    import_run_columns,
    import_run_create,
    import_run_execute,
    mapping_errors,
)


class Command(BaseCommand):
    help = (
        "Import a CSV file of profiles (or events) now, through the same pipeline as the "
        "dashboard upload, with the column mapping detected from the header."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--events", action="store_true", help="the file holds events")
        parser.add_argument("--event-name", default="", help="the events' name (with --events)")
        parser.add_argument(
            "--rejected-out", type=Path, help="also write the rejected rows (CSV) to this file"
        )

    def handle(self, *args, path: Path, events: bool, event_name: str, rejected_out, **options):
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        if events and not event_name.strip():
            raise CommandError("--events needs --event-name NAME")
        kind = ImportKind.EVENTS if events else ImportKind.PROFILES
        with path.open("rb") as handle:
            run = import_run_create(
                kind=kind, file_name=path.name, content=File(handle, name=path.name),
                event_name=event_name, origin=ImportOrigin.CLI,
            )  # fmt: skip
        if run.status == ImportStatus.PENDING:
            errors = mapping_errors(
                kind=run.kind, columns=import_run_columns(run), mapping=run.mapping
            )
            if errors:
                run.status = ImportStatus.FAILED
                run.error = " ".join(errors)
                run.save(update_fields=["status", "error"])
            else:
                run = import_run_execute(import_run_id=run.pk)
        if run.status == ImportStatus.FAILED:
            raise CommandError(f"import {run.pk} failed: {run.error}")
        self.stdout.write(
            f"import {run.pk} {run.status}: {run.rows_done} rows, "
            f"{run.profiles_created} profiles created, {run.profiles_updated} updated, "
            f"{run.events_stored} events stored, {run.rows_rejected} rows rejected"
        )
        if run.rows_rejected:
            where = reverse("imports:rejected", args=[run.pk])
            self.stdout.write(f"rejected rows: {run.rows_rejected}, in the dashboard at {where}")
            if rejected_out:
                rejected_out.write_bytes(run.rejected_rows_csv())
                self.stdout.write(f"rejected rows written to {rejected_out}")
