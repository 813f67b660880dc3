import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("userprofiles")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The crash-recovery sweep lives outside the apps (config is not an app).
app.autodiscover_tasks(lambda: ["config"], related_name="jobs")
# The web SDK's queue drain (api.sdk_tasks, beside api's other modules).
app.autodiscover_tasks(lambda: ["api"], related_name="sdk_tasks")
