from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SegmentsConfig(AppConfig):
    name = "segments"

    def ready(self) -> None:
        from segments.services import segment_system_ensure

        # "All Users" and "Test Users" exist after every migrate (and test-database flush).
        post_migrate.connect(segment_system_ensure, sender=self)
