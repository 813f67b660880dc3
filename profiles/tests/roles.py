"""The role groups for tests that run after a flush (profiles.roles)."""

from __future__ import annotations


def ensure_role_groups() -> None:
    """Recreate the role groups when a transactional test's flush removed them."""
    from django.contrib.auth.models import Group

    from profiles.roles import ROLE_PERMISSIONS, role_groups_ensure

    if Group.objects.filter(name__in=ROLE_PERMISSIONS).count() < len(ROLE_PERMISSIONS):
        role_groups_ensure()
