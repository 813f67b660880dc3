"""Reads for SFTP sources, their runs and their ledger."""

from __future__ import annotations

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from imports.models import SftpFile, SftpRun, SftpSource


def sftp_source_list() -> QuerySet[SftpSource]:
    """Sources with their latest run's time, status and error (one query)."""
    latest = SftpRun.objects.filter(source=OuterRef("pk")).order_by("-started_at", "-id")
    return SftpSource.objects.annotate(
        last_run_at=Subquery(latest.values("started_at")[:1]),
        last_run_status=Subquery(latest.values("status")[:1]),
        last_run_error=Subquery(latest.values("error")[:1]),
        last_run_imported=Subquery(latest.values("files_imported")[:1]),
    ).order_by("name")


def sftp_source_get(*, pk: int) -> SftpSource:
    return sftp_source_list().get(pk=pk)


def sftp_source_get_by_name(*, name: str) -> SftpSource | None:
    return sftp_source_list().filter(name=name).first()


def sftp_runs_for_source(*, source: SftpSource, limit: int = 25) -> list[SftpRun]:
    """Latest runs, each with the files it acted on (and their imports)."""
    files = SftpFile.objects.select_related("import_run").order_by("path")
    return list(
        SftpRun.objects.filter(source=source)
        .prefetch_related(Prefetch("files", queryset=files))
        .order_by("-started_at", "-id")[:limit]
    )


def sftp_files_for_source(*, source: SftpSource, limit: int = 50) -> list[SftpFile]:
    return list(
        SftpFile.objects.filter(source=source)
        .select_related("import_run")
        .order_by("-updated_at", "-id")[:limit]
    )
