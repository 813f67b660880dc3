"""Helpers of the CSV import tests: real files on disk, imported for real."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.files import File

from imports.models import ImportRun
from imports.services import import_run_create, import_run_execute
from profiles.tests.test_views_people import ensure_role_groups

__all__ = ["csv_path", "ensure_role_groups", "import_file", "use_temporary_media",
           "wait_for_run"]  # fmt: skip


def csv_path(folder: Path, content: bytes | str, name: str = "upload.csv") -> Path:
    """Write bytes (or text, as UTF-8) to a file in `folder` and return its path."""
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def import_file(path: Path, *, kind: str = "profiles", event_name: str = "", **kwargs) -> ImportRun:
    """Create a run from a file on disk (mapping detected unless given) and import it now."""
    with path.open("rb") as handle:
        created = import_run_create(
            kind=kind, file_name=path.name, content=File(handle, name=path.name),
            event_name=event_name, origin="cli", **kwargs,
        )  # fmt: skip
    if created.status != "pending":
        return created
    return import_run_execute(import_run_id=created.pk)


def use_temporary_media(settings, folder: Path) -> Path:
    """Uploaded files go to `folder`/media for this test."""
    location = folder / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
    }
    return location


def wait_for_run(pk: int, *, seconds: float = 60) -> ImportRun:
    """The run once it has finished (or as it is after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        run = ImportRun.objects.get(pk=pk)
        if run.is_finished or time.monotonic() > deadline:
            return run
        time.sleep(0.2)
