"""`python manage.py sftp_poll [--source NAME]`: poll now, synchronously."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imports.models import SftpRunStatus, SftpRunTrigger, SftpSource
from imports.sftp.services import SftpSourceBusy, sftp_source_poll


class Command(BaseCommand):
    help = "Poll SFTP sources once (all enabled ones, or the one named) and print a summary."

    def add_arguments(self, parser):
        parser.add_argument("--source", help="name of the source (default: every enabled one)")
        parser.add_argument(
            "--settle-seconds",
            type=float,
            default=None,
            help="wait this long before the second look at new files (0: leave them for the "
            "next poll; default: settings.SFTP_SETTLE_SECONDS)",
        )

    def handle(self, *args, **options):
        if options["source"]:
            sources = list(SftpSource.objects.filter(name=options["source"]))
            if not sources:
                raise CommandError(f"No SFTP source named {options['source']!r}.")
        else:
            sources = list(SftpSource.objects.filter(enabled=True).order_by("name"))
            if not sources:
                self.stdout.write("No enabled SFTP sources.")
                return
        failed = False
        for source in sources:
            try:
                run = sftp_source_poll(
                    source=source,
                    trigger=SftpRunTrigger.COMMAND,
                    settle_seconds=options["settle_seconds"],
                )
            except SftpSourceBusy as exc:
                self.stdout.write(f"{source.name}: skipped — {exc}")
                continue
            summary = (
                f"{source.name}: {run.status} — {run.files_seen} seen, "
                f"{run.files_imported} imported, {run.files_skipped} skipped, "
                f"{run.files_failed} failed"
            )
            if run.error:
                summary += f" — {run.error}"
            self.stdout.write(summary)
            failed = failed or run.status == SftpRunStatus.FAILED
        if failed:
            raise CommandError("At least one poll failed (see above).")
