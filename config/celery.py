import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("userprofiles")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The crash-recovery sweep lives outside the apps (config is not an app).
app.autodiscover_tasks(lambda: ["config"], related_name="jobs")
# The web SDK's queue drain (api.sdk_tasks, beside api's other modules).
app.autodiscover_tasks(lambda: ["api"], related_name="sdk_tasks")


# A stopping worker lets each job in hand stop at its next boundary (config/jobs.py).
@signals.worker_init.connect
def _install_stop_flag(**_: object) -> None:
    from config.jobs import worker_stop_flag_install

    worker_stop_flag_install()


@signals.worker_shutting_down.connect
def _request_stop(**_: object) -> None:
    from config.jobs import worker_stop_request

    worker_stop_request()
