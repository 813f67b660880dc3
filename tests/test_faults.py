"""Faults against real processes: a Celery worker process (prefork, its own
session) is SIGKILLed in the middle of a job; a second worker and the recovery
sweep (invoked as beat invokes it) must finish the job by themselves, with
nothing lost and nothing written twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from config.celery import app
from config.jobs import jobs_recover, stale_after
from config.launcher import web_command
from conftest import test_database_url
from imports.models import ImportRun
from imports.services import import_run_create, import_run_start
from imports.tests.csv_fixtures import ensure_role_groups, use_temporary_media
from imports.tests.sftp_server import (  # noqa: F401 — fixtures
    make_sftp_source,
    sftp_client_key,
    sftp_server,
)
from profiles.ingest import ingest_records
from profiles.models import Event, Profile, Source
from profiles.services import Actor
from segments.models import Segment, SegmentExport
from segments.services import segment_export_start

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(__file__).resolve().parent.parent
STALE_SECONDS = 3
TEST_ACTOR = Actor(source=Source.API, label="API: fault test")


class WorkerProcess:
    """A real `celery worker` process on the test database and broker."""

    def __init__(self, var_dir: Path, extra_env: dict[str, str]) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "VAR_DIR": str(var_dir),
            "JOB_HEARTBEAT_STALE_SECONDS": str(STALE_SECONDS),
            **extra_env,
        }
        log = (var_dir / f"worker-{time.monotonic_ns()}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
             "--concurrency", "1", "--loglevel", "INFO", "--without-mingle",
             "--without-gossip"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: no warm shutdown, no ack."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        """SIGTERM to the main process only, as the launcher stops it: a warm shutdown."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_processes(tmp_path, settings) -> Iterator[Callable[..., WorkerProcess]]:
    settings.JOB_HEARTBEAT_STALE_SECONDS = STALE_SECONDS
    settings.IMPORT_HEARTBEAT_STALE_SECONDS = STALE_SECONDS
    app.conf.task_always_eager = False
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge("celery")  # type: ignore[attr-defined]
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, extra_env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _wait(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _recover_until(finished: Callable[[], bool], *, seconds: float = 240) -> None:
    """Beat's sweep, every second instead of every 30, until the job finished."""
    deadline = time.monotonic() + seconds
    while not finished():
        if time.monotonic() > deadline:
            pytest.fail("the job was not recovered")
        jobs_recover()
        time.sleep(1)


def test_an_import_cut_off_by_a_killed_worker_finishes_once(worker_processes, tmp_path, settings):
    ensure_role_groups()
    use_temporary_media(settings, tmp_path)
    rows = 6000
    lines = [f"p{n % 300};{1_700_000_000 + n};{n}" for n in range(rows)]
    content = ("identity;ts;Amount\n" + "\n".join(lines) + "\n").encode()
    run = import_run_create(
        kind="events", file_name="charged.csv", content=content, event_name="Charged",
        origin="web",
        mapping={"columns": [{"role": "identity"}, {"role": "ts"},
                             {"role": "property", "name": "Amount", "type": "integer"}]},
    )  # fmt: skip
    if run.status == "pending":
        import_run_start(import_run=run)
    first = worker_processes(IMPORT_CHUNK_ROWS="40")
    _wait(
        lambda: ImportRun.objects.get(pk=run.pk).rows_done >= 400,
        seconds=120,
        what="the first chunks",
    )
    first.kill()
    cut_off = ImportRun.objects.get(pk=run.pk)
    assert cut_off.status == "running" and cut_off.rows_done < rows  # really mid-import

    worker_processes(IMPORT_CHUNK_ROWS="40")
    _recover_until(lambda: ImportRun.objects.get(pk=run.pk).is_finished)

    run = ImportRun.objects.get(pk=run.pk)
    assert run.status == "done", run.error
    assert run.rows_done == rows and run.attempts >= 2
    events = Event.objects.filter(name="Charged")
    assert events.count() == rows  # nothing lost, nothing doubled
    assert sorted(events.values_list("properties__Amount", flat=True)) == list(range(rows))
    assert Profile.objects.count() == 300


def test_a_segment_export_cut_off_by_a_killed_worker_finishes(worker_processes, settings, tmp_path):
    use_temporary_media(settings, tmp_path)
    people = 1500
    result = ingest_records(
        [{"type": "profile", "identity": f"s{n}", "profileData": {"Name": f"Person {n}"}}
         for n in range(people)],
        actor=TEST_ACTOR,
    )  # fmt: skip
    assert not result.refusals
    segment = Segment.objects.create(name="Everyone", definition={"all": []})
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("exporter", password="x")
    export = segment_export_start(segment=segment, properties=["Name"], user=user)

    first = worker_processes(SEGMENT_EXPORT_BATCH="3")
    _wait(
        lambda: SegmentExport.objects.get(pk=export.pk).rows_done >= 60,
        seconds=120,
        what="the first batches",
    )
    first.kill()
    assert SegmentExport.objects.get(pk=export.pk).status == "running"

    worker_processes(SEGMENT_EXPORT_BATCH="500")
    _recover_until(lambda: SegmentExport.objects.get(pk=export.pk).status in {"done", "failed"})

    export = SegmentExport.objects.get(pk=export.pk)
    assert export.status == "done", export.error
    with export.file.open("rb") as handle:
        lines = handle.read().decode().splitlines()
    assert len(lines) == people + 1  # the header, then each person once
    assert len(set(lines[1:])) == people


# --- the web server: bounded connections, a clear 503 when the database is gone -------


class WebServer:
    """The web server as `make run` starts it (config.launcher.web_command)."""

    def __init__(
        self, database_url: str, log: Path, workers: int = 3, env: dict[str, str] | None = None
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                web_command(str(self.port), workers=workers, threads=1, access_log=False),
                cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        _wait(lambda: self.get("/healthz")[0] != 0, seconds=120, what="the web server")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read()
        except OSError:
            return 0, "", b""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_bursts_of_requests_keep_the_connection_count_bounded(transactional_db, tmp_path):
    workers = 3
    server = WebServer(test_database_url(), tmp_path / "web.log", workers=workers)
    try:
        counts = []
        for _ in range(2):
            with ThreadPoolExecutor(max_workers=60) as pool:
                statuses = list(pool.map(lambda _: server.get("/healthz")[0], range(60)))
            assert statuses == [200] * 60
            counts.append(_backends())
        # One thread a worker: one connection each at most, however many requests came.
        assert all(count <= workers for count in counts), counts
    finally:
        server.stop()


def test_the_process_environment_is_no_part_of_a_request(transactional_db, tmp_path):
    """The web server starts each request's environ from the process environment: a
    variable named like the API's credential headers must not authenticate a request
    that sent none, and the settings' secrets stay out of request.META."""
    from api.credentials import api_credential_create
    from config.wsgi import request_environ

    credential, passcode = api_credential_create(name="environment")
    other, other_passcode = api_credential_create(name="sent")
    headers = {"X-CleverTap-Account-Id": other.account_id, "X-CleverTap-Passcode": other_passcode}
    server = WebServer(
        test_database_url(),
        tmp_path / "web.log",
        workers=1,
        env={
            "HTTP_X_CLEVERTAP_ACCOUNT_ID": credential.account_id,
            "HTTP_X_CLEVERTAP_PASSCODE": passcode,
        },
    )
    try:
        path = "/1/profile.json?identity=nobody"
        assert server.get(path)[0] == 401
        assert server.get(path, headers=headers)[0] == 404  # headers sent still count
    finally:
        server.stop()
    request = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "example.com"}
    assert request_environ({**os.environ, **request}) == request


def test_a_refused_database_answers_the_api_with_json_503(transactional_db, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once closed
    server = WebServer(f"postgres://postgres@127.0.0.1:{closed_port}/nowhere", tmp_path / "w.log")
    try:
        status, content_type, body = server.get(
            "/1/profile.json?identity=someone",
            headers={"X-CleverTap-Account-Id": "A", "X-CleverTap-Passcode": "P"},
        )
        assert status == 503 and content_type.startswith("application/json"), body
        assert json.loads(body)["status"] == "fail"
    finally:
        server.stop()


def test_an_sftp_poll_cut_off_by_a_killed_worker_finishes_once(
    worker_processes,
    sftp_server,  # noqa: F811 — the fixture imported above
    make_sftp_source,  # noqa: F811
    settings,
    tmp_path,
):
    from imports.models import SftpFile, SftpRun
    from imports.sftp.tasks import sftp_poll_source_task

    use_temporary_media(settings, tmp_path)
    rows = 6000
    sftp_server.put(
        "incoming/people.csv",
        "identity,Name\n" + "".join(f"f{n},Person {n}\n" for n in range(rows)),
    )
    source = make_sftp_source(sftp_server)
    sftp_poll_source_task.delay(source.pk, "manual")
    first = worker_processes(IMPORT_CHUNK_ROWS="40", SFTP_SETTLE_SECONDS="0.2")
    _wait(
        lambda: ImportRun.objects.filter(rows_done__gte=400).exists(),
        seconds=120,
        what="the SFTP file's first chunks",
    )
    first.kill()
    assert ImportRun.objects.get().status == "running"  # really mid-poll

    worker_processes(IMPORT_CHUNK_ROWS="40", SFTP_SETTLE_SECONDS="0.2")
    _recover_until(lambda: SftpRun.objects.filter(source=source, status="done").exists())

    ledger = SftpFile.objects.get(source=source)
    assert ledger.status == "imported", ledger.error
    imported = ImportRun.objects.get()  # one import of the file, resumed, not a second one
    assert (imported.status, imported.rows_done, imported.profiles_created) == ("done", rows, rows)
    assert Profile.objects.count() == rows
    assert sftp_server.files("incoming/processed") == ["people.csv", "people.csv.result.csv"]


# --- a worker stopping (SIGTERM, warm shutdown) in the middle of a job ---------------


def test_a_segment_export_stopped_by_a_stopping_worker_is_written_on_the_next_start(
    worker_processes, settings, tmp_path
):
    use_temporary_media(settings, tmp_path)
    people = 1500
    result = ingest_records(
        [{"type": "profile", "identity": f"t{n}", "profileData": {"Name": f"Person {n}"}}
         for n in range(people)],
        actor=TEST_ACTOR,
    )  # fmt: skip
    assert not result.refusals
    segment = Segment.objects.create(name="Everyone", definition={"all": []})
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("exporter", password="x")
    export = segment_export_start(segment=segment, properties=["Name"], user=user)

    first = worker_processes(SEGMENT_EXPORT_BATCH="1")
    _wait(
        lambda: SegmentExport.objects.get(pk=export.pk).rows_done >= 60,
        seconds=120,
        what="the first batches",
    )
    assert first.terminate() == 0
    stopped = SegmentExport.objects.get(pk=export.pk)
    # Stopped between batches, not run to the end: handed back for the next start.
    assert stopped.status == "running" and stopped.rows_done < people
    assert not stopped.file
    assert stopped.heartbeat_at < timezone.now() - stale_after()

    worker_processes(SEGMENT_EXPORT_BATCH="500")  # no sweep: the task was queued again
    _wait(
        lambda: SegmentExport.objects.get(pk=export.pk).status in {"done", "failed"},
        seconds=120,
        what="the export after the restart",
    )
    export = SegmentExport.objects.get(pk=export.pk)
    assert export.status == "done", export.error
    with export.file.open("rb") as handle:
        lines = handle.read().decode().splitlines()
    assert len(lines) == people + 1 and len(set(lines[1:])) == people


def test_an_sftp_poll_stopped_by_a_stopping_worker_finishes_on_the_next_start(
    worker_processes,
    sftp_server,  # noqa: F811 — the fixture imported above
    make_sftp_source,  # noqa: F811
    settings,
    tmp_path,
):
    from imports.models import SftpFile, SftpRun
    from imports.sftp.tasks import sftp_poll_source_task

    use_temporary_media(settings, tmp_path)
    rows = 6000
    sftp_server.put(
        "incoming/people.csv",
        "identity,Name\n" + "".join(f"g{n},Person {n}\n" for n in range(rows)),
    )
    source = make_sftp_source(sftp_server)
    sftp_poll_source_task.delay(source.pk, "manual")
    first = worker_processes(IMPORT_CHUNK_ROWS="40", SFTP_SETTLE_SECONDS="0.2")
    _wait(
        lambda: ImportRun.objects.filter(rows_done__gte=400).exists(),
        seconds=120,
        what="the SFTP file's first chunks",
    )
    assert first.terminate() == 0
    stopped = ImportRun.objects.get()
    assert stopped.status == "running" and stopped.rows_done < rows  # at a chunk boundary
    assert stopped.rows_done % 40 == 0 and stopped.claim is None
    assert Profile.objects.count() == stopped.rows_done
    assert SftpFile.objects.get(source=source).status == "importing"
    assert not SftpRun.objects.filter(source=source, status="running").exists()

    worker_processes(IMPORT_CHUNK_ROWS="1000", SFTP_SETTLE_SECONDS="0.2")
    _wait(
        lambda: SftpRun.objects.filter(source=source, status="done").exists(),
        seconds=180,
        what="the new poll",
    )
    ledger = SftpFile.objects.get(source=source)
    assert ledger.status == "imported", ledger.error
    imported = ImportRun.objects.get()  # the same import, resumed
    assert (imported.status, imported.rows_done, imported.profiles_created) == ("done", rows, rows)
    assert Profile.objects.count() == rows
    assert sftp_server.files("incoming/processed") == ["people.csv", "people.csv.result.csv"]
