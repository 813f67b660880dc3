from django.db import migrations

# The three roles of DESIGN.md. Superusers can do everything anyway.
MARKETERS = [
    "profiles.view_profile",
    "segments.view_segment",
    "segments.add_segment",
    "segments.change_segment",
    "segments.delete_segment",
]
ADMINS = MARKETERS + [
    "profiles.mark_test_profile",
    "profiles.delete_profile",
    "profiles.view_apicredential",
    "profiles.add_apicredential",
    "profiles.change_apicredential",
    "profiles.delete_apicredential",
]
IMPORTERS = [
    "imports.view_importrun",
    "imports.add_importrun",
    "imports.view_sftpsource",
    "imports.add_sftpsource",
    "imports.change_sftpsource",
    "imports.delete_sftpsource",
]
GROUPS = {"Marketers": MARKETERS, "Admins": ADMINS, "Importers": IMPORTERS}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        original = getattr(app_config, "models_module", None)  # AppConfigStub has none
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = original

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0002_identified_trigger"),
        ("segments", "0001_initial"),
        ("imports", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
