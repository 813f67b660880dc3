"""`python manage.py sftp_source add|list`: scripted SFTP source setup."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imports.models import SftpSchedule, SftpSource, SftpSourceKind
from imports.sftp.selectors import sftp_source_list
from imports.sftp.services import (
    sftp_source_probe_fingerprint,
    sftp_source_save,
    sftp_source_trust_host_key,
)
from imports.sources.sftp import SftpError, SftpKeyInvalid, load_private_key


class Command(BaseCommand):
    help = "Add or list SFTP sources."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a source")
        add.add_argument("--name", required=True)
        add.add_argument("--host", required=True)
        add.add_argument("--port", type=int, default=22)
        add.add_argument("--username", required=True)
        secret = add.add_mutually_exclusive_group(required=True)
        secret.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
        secret.add_argument("--key-file", metavar="PATH", help="private key file")
        add.add_argument("--remote-dir", default="/")
        add.add_argument("--pattern", default="*.csv")
        add.add_argument("--kind", choices=[c.value for c in SftpSourceKind], default="profiles")
        add.add_argument("--event-name", default="")
        add.add_argument("--every-minutes", type=int, default=15)
        add.add_argument("--host-key-fingerprint", default="", help="SHA256:… to pin")
        add.add_argument(
            "--trust-host-key",
            action="store_true",
            help="connect now and pin the key the server offers (trust on first use)",
        )
        add.add_argument("--disabled", action="store_true", help="create it disabled")
        sub.add_parser("list", help="show sources and their last run")

    def handle(self, *args, **options):
        if options["action"] == "add":
            self._add(options)
        else:
            self._list()

    def _add(self, options) -> None:
        if SftpSource.objects.filter(name=options["name"]).exists():
            raise CommandError(f"A source named {options['name']!r} already exists.")
        password = private_key = ""
        if options["password_env"]:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(f"${options['password_env']} is empty or not set.")
        else:
            try:
                private_key = Path(options["key_file"]).read_text()
                load_private_key(private_key)
            except OSError as exc:
                raise CommandError(f"Cannot read {options['key_file']}: {exc}") from exc
            except SftpKeyInvalid as exc:
                raise CommandError(str(exc)) from exc
        if options["kind"] == SftpSourceKind.EVENTS and not options["event_name"]:
            raise CommandError("--kind events needs --event-name.")
        if options["every_minutes"] < 1:
            raise CommandError("--every-minutes must be at least 1.")
        remote_dir = "/" + options["remote_dir"].strip("/")
        source = SftpSource(
            name=options["name"],
            host=options["host"],
            port=options["port"],
            username=options["username"],
            remote_dir=remote_dir,
            pattern=options["pattern"],
            kind=options["kind"],
            event_name=options["event_name"],
            schedule=SftpSchedule.INTERVAL,
            every_minutes=options["every_minutes"],
            host_key_fingerprint=options["host_key_fingerprint"],
            enabled=not options["disabled"],
        )
        source = sftp_source_save(source=source, password=password, private_key=private_key)
        self.stdout.write(f"Created SFTP source {source.name!r} (id {source.pk}).")
        if options["trust_host_key"]:
            try:
                fingerprint = sftp_source_probe_fingerprint(source=source)
            except SftpError as exc:
                raise CommandError(
                    f"Source created, but the host key was not pinned: {exc}"
                ) from exc
            sftp_source_trust_host_key(source=source, fingerprint=fingerprint)
            self.stdout.write(f"Trusted host key {fingerprint}.")
        elif not source.host_key_fingerprint:
            self.stdout.write(
                "No host key pinned yet: polls refuse to connect until you trust one "
                "(--trust-host-key, or Test connection on the SFTP page)."
            )

    def _list(self) -> None:
        sources = list(sftp_source_list())
        if not sources:
            self.stdout.write("No SFTP sources.")
            return
        for source in sources:
            last = "never run"
            if source.last_run_at:
                last = f"last run {source.last_run_at:%Y-%m-%d %H:%M:%S} {source.last_run_status}"
                if source.last_run_error:
                    last += f" ({source.last_run_error})"
            state = "enabled" if source.enabled else "disabled"
            self.stdout.write(
                f"{source.name}\t{source.username}@{source.host}:{source.port}"
                f"{source.remote_dir} {source.pattern}\t{source.kind}\t{source.schedule_label}"
                f"\t{state}\t{last}"
            )
