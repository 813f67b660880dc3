from django.db import migrations

SYSTEM = [
    ("all_users", "All Users", {"all": []}),
    ("test_users", "Test Users", {"system": "test_profile", "op": "is_true"}),
]


def create(apps, schema_editor):
    Segment = apps.get_model("segments", "Segment")
    for key, name, definition in SYSTEM:
        if not Segment.objects.filter(system_key=key).exists():
            Segment.objects.filter(name=name).update(name=f"{name} (renamed)")
            Segment.objects.create(system_key=key, name=name, definition=definition)


def remove(apps, schema_editor):
    apps.get_model("segments", "Segment").objects.filter(system_key__isnull=False).delete()


class Migration(migrations.Migration):
    dependencies = [("segments", "0002_system_segments_exports")]
    operations = [migrations.RunPython(create, remove)]
