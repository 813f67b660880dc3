"""The beat schedule really triggers a poll: Celery beat (in-process, reading
django-celery-beat's DatabaseScheduler) sends the source's task through Redis
to a real worker, which imports the file from the real SFTP server."""

import datetime as dt
import time

import pytest
from celery.beat import EmbeddedService
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

import imports.sftp.tasks  # noqa: F401 — registers the task with the worker's app
from config.celery import app
from imports.models import ImportRun, ImportStatus, SftpRun, SftpRunTrigger

DEADLINE_SECONDS = 60


@pytest.mark.django_db(transaction=True)
def test_beat_schedule_triggers_a_poll_on_a_real_worker(
    sftp_server, make_sftp_source, celery_worker_real, settings
):
    settings.SFTP_SETTLE_SECONDS = 0.2
    sftp_server.put("incoming/people.csv", "identity,Name\nu-1,Ann\nu-2,Bob\n")
    source = make_sftp_source(sftp_server, every_minutes=1)
    # Its last run was a minute ago, so it is due as soon as beat looks.
    PeriodicTask.objects.filter(pk=source.periodic_task_id).update(
        last_run_at=timezone.now() - dt.timedelta(minutes=1, seconds=5)
    )
    beat = EmbeddedService(app, thread=True, scheduler_cls=DatabaseScheduler)
    beat.start()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            run = SftpRun.objects.filter(source=source, files_imported=1).first()
            if run is not None:
                break
            time.sleep(0.5)
    finally:
        beat.stop()
        beat.join(timeout=10)
    assert run is not None, "beat did not get a poll done within a minute"
    assert run.trigger == SftpRunTrigger.SCHEDULE
    imported = ImportRun.objects.get()
    assert (imported.status, imported.origin, imported.profiles_created) == (
        ImportStatus.DONE,
        "sftp",
        2,
    )
    assert sftp_server.files("incoming/processed") == ["people.csv", "people.csv.result.csv"]
