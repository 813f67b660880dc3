"""The three roles of DESIGN.md as groups, kept in step with this list by every migrate.

`role_groups_ensure` runs after each `migrate` (and after a test database flush, which
sends the same signal), so a new permission reaches its group on the next upgrade
without a data migration. Superusers can do everything anyway.
"""

from __future__ import annotations

from typing import Any

MARKETERS = [
    "profiles.view_profile",
    "segments.view_segment",
    "segments.add_segment",
    "segments.change_segment",
    "segments.delete_segment",
    "campaigns.view_campaign",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.view_outboxmessage",
]
ADMINS = [
    *MARKETERS,
    "profiles.mark_test_profile",
    "profiles.delete_profile",
    "profiles.view_apicredential",
    "profiles.add_apicredential",
    "profiles.change_apicredential",
    "profiles.delete_apicredential",
    "campaigns.delete_campaign",
    "campaigns.send_campaign",
    "campaigns.view_messagingsettings",
    "campaigns.change_messagingsettings",
]
IMPORTERS = [
    "imports.view_importrun",
    "imports.add_importrun",
    "imports.view_sftpsource",
    "imports.add_sftpsource",
    "imports.change_sftpsource",
    "imports.delete_sftpsource",
    # To look at the profiles their files created (viewing only; changes stay with Admins).
    "profiles.view_profile",
]
ROLE_PERMISSIONS = {"Marketers": MARKETERS, "Admins": ADMINS, "Importers": IMPORTERS}


def role_groups_ensure(**_: Any) -> None:
    """Create the role groups and give each exactly the permissions listed above
    (idempotent). Makes sure every app's permissions exist first: Django creates them
    app by app in the same signal, some after this receiver runs."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)

    for name, codes in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=name)
        wanted: list[Permission] = []
        for code in codes:
            app_label, codename = code.split(".")
            wanted.extend(
                Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
