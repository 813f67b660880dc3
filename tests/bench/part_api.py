"""Part 2: the REST API over HTTP against Granian (the production server of `make run`).

- records/s through POST /1/upload: several concurrent clients send
  1000-record batches, a profile mix and an event mix;
- p50/p95 latency of GET /1/profile.json?identity=… for random existing identities.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

from tests.bench import BenchContext, Figure

PART = "api"
ROOT = Path(__file__).resolve().parents[2]
# One process per client, one thread each: a request is CPU work between database waits
# and threads of one process share its GIL (3 workers x 2 threads measured lower with
# gunicorn, the server before). BENCH_API_WORKERS / BENCH_API_THREADS override it.
WORKERS = int(os.environ.get("BENCH_API_WORKERS", "4"))
THREADS = int(os.environ.get("BENCH_API_THREADS", "1"))
CLIENTS = 4
BATCH = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(ctx: BenchContext, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": ctx.database_url,
        "DEBUG": "false",
        "API_MAX_CONCURRENT_REQUESTS": str(CLIENTS * 2),
        "LOG_LEVEL": "WARNING",
    }
    from config.launcher import web_command

    command = web_command(str(port), workers=WORKERS, threads=THREADS, access_log=False)
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the web server exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise RuntimeError("the web server did not start within 60 s")


class _Client:
    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {**headers, "Content-Type": "application/json; charset=utf-8"}

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        payload = json.dumps(body).encode() if body is not None else None
        try:
            self.connection.request(method, path, body=payload, headers=self.headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            self.connection.close()  # a dropped keep-alive connection: reconnect once
            self.connection.request(method, path, body=payload, headers=self.headers)
            response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")


def _profile_batch(tag: str, batch: int, known: list[str]) -> list[dict]:
    records = []
    for i in range(BATCH):
        if known and i % 4 == 0:  # a quarter update people already known
            identity = random.choice(known)
        else:
            identity = f"bench-api-{tag}-{batch}-{i}"
        record = {
            "type": "profile",
            "identity": identity,
            "ts": int(time.time()) - random.randint(0, 86_400),
            "profileData": {
                "Name": f"Bench {i}",
                "Customer Type": random.choice(["Silver", "Gold", "Platinum"]),
                "Score": random.randint(0, 1000),
                "MSG-sms": random.random() < 0.5,
            },
        }
        if i % 10 == 0:  # an SDK-style login now and then
            record["objectId"] = f"__{tag}{batch:06d}{i:06d}".ljust(34, "0")[:34]
        records.append(record)
    return records


def _event_batch(tag: str, batch: int, known: list[str]) -> list[dict]:
    names = ["Product Viewed", "Added To Cart", "Charged", "Searched"]
    records = []
    for i in range(BATCH):
        identity = random.choice(known) if known else f"bench-api-{tag}-0-{i}"
        records.append(
            {
                "type": "event",
                "identity": identity,
                "ts": int(time.time()) - random.randint(0, 30 * 86_400),
                "evtName": random.choice(names),
                "evtId": f"{tag}-{batch}-{i}",
                "evtData": {"Amount": random.randint(1, 500), "Category": "bench"},
            }
        )
    return records


def _upload(port: int, headers: dict, make_batch, tag: str, known: list[str],
            batches_per_client: int, seconds: float) -> tuple[float, int, int]:  # fmt: skip
    """(records/s, records processed, records refused) over CLIENTS concurrent clients."""
    totals = {"processed": 0, "refused": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        api = _Client(port, headers)
        for batch in range(batches_per_client):
            if time.monotonic() > deadline:
                break
            status, body = api.call(
                "POST", "/1/upload", {"d": make_batch(f"{tag}{number}", batch, known)}
            )
            with lock:
                totals["processed"] += body.get("processed", 0) if status == 200 else 0
                totals["refused"] += len(body.get("unprocessed", [])) if status == 200 else BATCH

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return totals["processed"] / elapsed, totals["processed"], totals["refused"]


def _known_identities(limit: int) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM profiles_identifier WHERE kind = 'identity'"
            " ORDER BY random() LIMIT %s",
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _lookups(port: int, headers: dict, identities: list[str], count: int) -> list[float]:
    from urllib.parse import quote

    api = _Client(port, headers)
    latencies = []
    for _ in range(20):  # warm every worker's connection and credential check
        api.call("GET", f"/1/profile.json?identity={quote(random.choice(identities))}")
    for _ in range(count):
        identity = random.choice(identities)
        started = time.perf_counter()
        status, _body = api.call("GET", f"/1/profile.json?identity={quote(identity)}")
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"profile.json answered {status} for {identity!r}")
    return latencies


def run(ctx: BenchContext) -> list[Figure]:
    from api.credentials import api_credential_create

    credential, passcode = api_credential_create(name="bench")
    headers = {"X-CleverTap-Account-Id": credential.account_id, "X-CleverTap-Passcode": passcode}
    port = _free_port()
    server = _start_server(ctx, port)
    tag = f"{int(time.time()) % 100000:05d}"
    batches, seconds = (2, 60.0) if ctx.quick else (15, 120.0)
    figures = []
    try:
        known = _known_identities(5000)
        rate, done, refused = _upload(
            port, headers, _profile_batch, f"p{tag}", known, batches, seconds
        )
        figures.append(Figure(PART, f"upload profiles, {CLIENTS} clients x 1000-record batches",
                              rate, "records/s", "≥ 5000"))  # fmt: skip
        if refused:
            print(f"{PART:<10} (profile mix: {done:,} stored, {refused:,} refused)")
        known = known or _known_identities(5000)
        rate, done, refused = _upload(
            port, headers, _event_batch, f"e{tag}", known, batches, seconds
        )
        figures.append(Figure(PART, f"upload events, {CLIENTS} clients x 1000-record batches",
                              rate, "records/s", "≥ 5000"))  # fmt: skip
        if refused:
            print(f"{PART:<10} (event mix: {done:,} stored, {refused:,} refused)")
        latencies = _lookups(port, headers, known, 300 if ctx.quick else 2000)
        cuts = statistics.quantiles(latencies, n=100)
        figures.append(Figure(PART, "GET /1/profile.json?identity= p50", cuts[49], "ms"))
        figures.append(Figure(PART, "GET /1/profile.json?identity= p95", cuts[94], "ms", "≤ 20"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return figures
