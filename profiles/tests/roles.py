"""The role groups of migration profiles/0003, for tests that run after a flush."""

from __future__ import annotations

import importlib


def ensure_role_groups() -> None:
    """Recreate the role groups (and the permissions) when a transactional test's
    flush removed them; with --reuse-db they would stay gone for the next session.
    The migration's own function does it, so the groups never drift from it."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = importlib.import_module("profiles.migrations.0003_groups")
    if Group.objects.filter(name__in=migration.GROUPS).count() < len(migration.GROUPS):
        migration.create_groups(apps, None)
