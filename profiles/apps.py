from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"

    def ready(self) -> None:
        from profiles.roles import role_groups_ensure

        # After every migrate (and every test-database flush).
        post_migrate.connect(role_groups_ensure, sender=self)
