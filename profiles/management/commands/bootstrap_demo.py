"""`python manage.py bootstrap_demo`: what `make run` does after migrate.

First run: seeds demo profiles (when there are none) and, when no superuser
exists, creates a demo login — `admin` (superuser), `marketer` (Marketers)
and `importer` (Importers), all with one random password — written to
var/demo-login.txt (mode 600) and printed. Later runs change nothing and say
where the login was written.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from profiles.models import Profile

LOGIN_FILE_NAME = "demo-login.txt"
# username -> group (None: the superuser)
DEMO_PEOPLE = {"admin": None, "marketer": "Marketers", "importer": "Importers"}


def login_file() -> Path:
    return Path(settings.VAR_DIR) / LOGIN_FILE_NAME


def login_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/accounts/login/"


@transaction.atomic
def demo_login_create() -> tuple[str, str, list[tuple[str, str]]]:
    """Create the demo people that do not exist yet; return (admin name, password, people).

    Existing accounts are never touched: when `admin` is taken by a
    non-superuser the superuser is called `demo-admin`.
    """
    User = get_user_model()
    password = secrets.token_urlsafe(12)
    created: list[tuple[str, str]] = []
    admin_name = "admin" if not User.objects.filter(username="admin").exists() else "demo-admin"
    User.objects.create_superuser(admin_name, f"{admin_name}@example.com", password)
    created.append((admin_name, "superuser: everything"))
    for username, group_name in DEMO_PEOPLE.items():
        if group_name is None or User.objects.filter(username=username).exists():
            continue
        user = User.objects.create_user(username, f"{username}@example.com", password)
        user.groups.add(Group.objects.get(name=group_name))
        created.append((username, group_name))
    return admin_name, password, created


def login_file_write(admin_name: str, password: str, people: list[tuple[str, str]]) -> Path:
    """Write the credentials, readable by the owner only."""
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Demo login, created {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by bootstrap_demo.",
        f"Log in at {login_url()}",
        "",
        *(f"{name:<12} {password}    ({role})" for name, role in people),
        "",
        f"Change passwords with: python manage.py changepassword {admin_name}",
    ]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Command(BaseCommand):
    help = (
        "First run: seed demo data (if there are no profiles) and create a demo login "
        "(if there is no superuser), written to var/demo-login.txt. Later runs change nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--profiles", type=int, default=3000)
        parser.add_argument("--events-per-profile", type=int, default=8)

    def handle(self, *args, profiles: int, events_per_profile: int, **options) -> None:
        if Profile.objects.exists():
            self.stdout.write("Demo data: profiles exist already, nothing seeded.")
        else:
            self.stdout.write("First run: seeding demo data…")
            call_command(
                "seed_demo",
                profiles=profiles,
                events_per_profile=events_per_profile,
                stdout=self.stdout,
                verbosity=0,
            )

        if get_user_model().objects.filter(is_superuser=True).exists():
            if login_file().exists():
                self.stdout.write(f"Demo login: see {login_file()} (log in at {login_url()}).")
            else:
                self.stdout.write(
                    f"A superuser exists: log in at {login_url()} with your own account."
                )
            return

        admin_name, password, people = demo_login_create()
        path = login_file_write(admin_name, password, people)
        others = ", ".join(name for name, _ in people if name != admin_name)
        bar = "=" * 72
        self.stdout.write(bar)
        self.stdout.write(
            self.style.SUCCESS(f"Log in at {login_url()} as {admin_name} / {password}")
        )
        if others:
            self.stdout.write(f"({others}: same password.) Written to {path} (mode 600).")
        self.stdout.write(bar)
