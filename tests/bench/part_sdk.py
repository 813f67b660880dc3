"""Part "sdk": the web SDK endpoint `/a` under many small requests.

The production server as `make run` starts it (config.launcher.service_commands: Granian,
and a Celery worker draining the SDK queue). Many concurrent clients send what
clevertap-web-sdk sends: a mix of page views (40%), events (40%) and profile pushes (20%);
half of the requests come from browsers never seen before (no guid: the reply gives one,
and later requests reuse it). Measured: requests/s, p50/p95 reply latency, and how long
until a request's data is readable (a marker event sent every second under load, polled in
the database until its row exists), and the backlog's drain time after the load stops.
Two phases: each client sending its next request the moment it is answered (the most the
server takes, the drain left what the web workers leave of the two cores), then requests
leaving on a schedule of BENCH_SDK_PACED_RATE (2,000) a second, what a site that busy
sends, where the target's latency and delay until readable apply (wrk only).

The load comes from `wrk` (Debian's package: `apt-get install wrk`) with a Lua script, one
thread, keep-alive connections as a browser keeps them: a C event loop spends a small
fraction of a core on 2,000 requests/s, where a Python client would take a core of the two
it measures. Without wrk the part falls back to an asyncio client in this process (slower:
its figures say so).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import lzstring

from tests.bench import BenchContext, Figure

PART = "sdk"
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = int(os.environ.get("BENCH_SDK_CLIENTS", "64"))
REPLY = re.compile(rb'\$WZRK_WR\.s\("([^"]+)"')
WRK_SCRIPT = """
local account_kinds = {KINDS}
local origin = "https://shop.example"
local guids, counter, threads = {}, 0, {}
bad = 0  -- a global: done() reads each thread's with thread:get

function setup(thread) table.insert(threads, thread) end

-- BENCH_SDK_RATE > 0: requests leave on a schedule of that many a second (shared by the
-- connections), as many browsers would send them, instead of each connection sending its
-- next one the moment its reply arrives. A slot missed by more than a second is dropped.
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
           int clock_gettime(int, bench_timespec *); ]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local rate, next_at = tonumber(os.getenv("BENCH_SDK_RATE") or "0"), nil
function delay()
  if rate <= 0 then return 0 end
  local now = now_ms()
  if not next_at or next_at < now - 1000 then next_at = now end
  local wait = next_at - now
  next_at = next_at + 1000 / rate
  return wait > 0 and wait or 0
end

function request()
  counter = counter + 1
  local kind, d, guid = "page", account_kinds.page, nil
  if #guids > 0 and math.random() >= 0.5 then
    guid = guids[math.random(#guids)]
    local roll = math.random()
    if roll < 0.4 then kind, d = "page", account_kinds.page
    elseif roll < 0.8 then
      kind, d = "push", account_kinds.events[math.random(#account_kinds.events)]
    else kind, d = "push", account_kinds.profile end
  end
  local path = "/a?t=96&type=" .. kind .. "&d=" .. d .. "&rn=" .. counter .. "&i=" .. os.time()
    .. "&sn=" .. counter .. "&origin=" .. origin
  if guid then path = path .. "&gc=" .. guid end
  return wrk.format("GET", path, {["User-Agent"] = "Mozilla/5.0 Chrome/120"})
end

function response(status, headers, body)
  local guid, resume = string.match(body or "", '^%$WZRK_WR%.s%("([^"]+)", %d+, (%a+)')
  if status ~= 200 or not guid then bad = bad + 1
  elseif resume == "true" and #guids < 200000 then table.insert(guids, guid) end
end

function done(summary, latency, requests)
  local refused = 0
  for _, thread in ipairs(threads) do refused = refused + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "WRK {\\"requests\\": %d, \\"seconds\\": %f, \\"p50_us\\": %f, \\"p95_us\\": %f, "
    .. "\\"refused\\": %d, \\"socket_errors\\": %d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    refused, e.connect + e.read + e.write + e.timeout))
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(ctx: BenchContext, port: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    from config.launcher import WEB_THREADS, WEB_WORKERS, service_commands, web_command

    env = {**os.environ, "DATABASE_URL": ctx.database_url, "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "SDK_RATE_PER_IP_PER_MINUTE": "100000000"}  # fmt: skip
    commands = service_commands(str(port))
    # As `make run` starts it, without the access log (a line per request).
    command = web_command(str(port), workers=WEB_WORKERS, threads=WEB_THREADS, access_log=False)
    web = subprocess.Popen(command, cwd=ROOT, env=env)
    worker = subprocess.Popen(
        [*commands["worker"], "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return web, worker
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the web server did not start within 60 s")


def _encode(payload: dict) -> str:
    return lzstring.LZString().compressToBase64(json.dumps(payload))


def _lua_string(value: str) -> str:
    return json.dumps(value)  # base64 and quotes only: a JSON string is a Lua string


class WrkLoad:
    """The load from wrk (one thread, CLIENTS keep-alive connections)."""

    def __init__(self, load: Load, port: int) -> None:
        from urllib.parse import quote

        page, profile = (_lua_string(quote(d, safe="")) for d in (load.page, load.profile))
        events = ", ".join(_lua_string(quote(d, safe="")) for d in load.events)
        kinds = f"{{page = {page}, events = {{{events}}}, profile = {profile}}}"
        handle, name = tempfile.mkstemp(suffix=".lua")
        os.close(handle)
        self.script = Path(name)
        self.script.write_text(WRK_SCRIPT.replace("{KINDS}", kinds))
        self.url = f"http://127.0.0.1:{port}"

    def run(self, seconds: float, rate: int = 0) -> dict:
        """`rate` requests/s on a schedule; 0: each client as fast as it is answered."""
        done = subprocess.run(
            ["wrk", "-t1", f"-c{CLIENTS}", f"-d{int(seconds)}s", "--timeout", "10s",
             "-s", str(self.script), self.url],
            capture_output=True, text=True, env={**os.environ, "BENCH_SDK_RATE": str(rate)},
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
        line = next(line for line in done.stdout.splitlines() if line.startswith("WRK "))
        return json.loads(line.removeprefix("WRK "))


class Load:
    def __init__(self, account: str, port: int) -> None:
        self.port = port
        self.counter = 0
        self.guids: list[str] = []
        self.latencies: list[float] = []
        self.errors = 0
        base = {"id": account, "af": {"lib": "web-sdk-v2.5.2", "protocol": "https"}, "pg": 1}
        # Encoded once: the guid travels in `gc` (the SDK sends both), so one `d` per kind.
        self.page = _encode({**base, "cpg": "https://shop.example/p?utm_source=bench"})
        self.events = [
            _encode({**base, "type": "event", "evtName": name, "evtData": {"sku": f"S{n}"}})
            for n, name in enumerate(["Product Viewed", "Added To Cart", "Searched"])
        ]
        self.profile = _encode(
            {**base, "type": "profile", "profile": {"Plan": "gold", "tz": "GMT+0000"}}
        )

    def query(self, kind: str, d: str, guid: str | None) -> str:
        self.counter += 1
        params = {"t": 96, "type": kind, "d": d, "rn": self.counter, "i": int(time.time()),
                  "sn": self.counter, "origin": "https://shop.example"}  # fmt: skip
        if guid:
            params["gc"] = guid
        return "/a?" + urlencode(params)

    def next_request(self) -> tuple[str, bool]:
        if not self.guids or random.random() < 0.5:
            return self.query("page", self.page, None), True
        guid = random.choice(self.guids)
        roll = random.random()
        if roll < 0.4:
            return self.query("page", self.page, guid), False
        if roll < 0.8:
            return self.query("push", random.choice(self.events), guid), False
        return self.query("push", self.profile, guid), False

    async def send(self, path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Mozilla/5.0 Chrome/120"
            "\r\nConnection: close\r\n\r\n".encode()
        )
        data = await reader.read()
        writer.close()
        return data

    async def client(self, until: float) -> None:
        while time.monotonic() < until:
            path, new = self.next_request()
            started = time.perf_counter()
            try:
                data = await self.send(path)
            except OSError:
                self.errors += 1
                continue
            self.latencies.append((time.perf_counter() - started) * 1000)
            match = REPLY.search(data)
            if not data.startswith(b"HTTP/1.1 200") or not match:
                self.errors += 1
            elif new and len(self.guids) < 200_000:
                self.guids.append(match[1].decode())

    async def run(self, seconds: float) -> float:
        until = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(self.client(until) for _ in range(CLIENTS)))
        return time.perf_counter() - started


def _marker_delays(
    load: Load, account: str, stop: threading.Event, out: list[float], first: bool = False
) -> None:
    """Every second, one marker event through /a; the time until its row is readable."""
    from django.db import connection

    from profiles.models import Event

    try:
        while first or not stop.is_set():
            first = False
            tag = f"m{time.time_ns()}"
            d = _encode({"id": account, "type": "event", "evtName": "Bench Marker",
                         "evtData": {"tag": tag}})  # fmt: skip
            path = load.query("push", d, None)
            sent = time.monotonic()
            try:
                asyncio.run(load.send(path))
            except OSError:  # the server is not up yet
                time.sleep(1)
                out.append(float("inf"))
                continue
            while not Event.objects.filter(name="Bench Marker", properties__tag=tag).exists():
                if time.monotonic() - sent > 60:
                    break
                time.sleep(0.05)
            out.append(time.monotonic() - sent)
            stop.wait(1)
    finally:
        connection.close()


PACED_RATE = int(os.environ.get("BENCH_SDK_PACED_RATE", "2000"))


def _phase(
    load: Load, wrk: WrkLoad | None, account: str, seconds: float, rate: int = 0
) -> tuple[float, float, float, int, list[float]]:
    """One load phase with markers sampled throughout: (requests/s, p50 ms, p95 ms,
    failed requests, delays until readable in s)."""
    stop, delays = threading.Event(), list[float]()
    sampler = threading.Thread(target=_marker_delays, args=(load, account, stop, delays))
    sampler.start()
    try:
        if wrk is None:
            load.latencies.clear()
            load.errors = 0
            elapsed = asyncio.run(load.run(seconds))
            cuts = statistics.quantiles(load.latencies, n=100)
            return len(load.latencies) / elapsed, cuts[49], cuts[94], load.errors, delays
        result = wrk.run(seconds, rate=rate)
        failed = result["refused"] + result["socket_errors"]
        rate_achieved = result["requests"] / result["seconds"]
        return rate_achieved, result["p50_us"] / 1000, result["p95_us"] / 1000, failed, delays
    finally:
        stop.set()
        sampler.join(90)


def _drain_time(backlog) -> float:
    """Seconds until the queue is empty (at most 300)."""
    after = time.monotonic()
    while backlog() and time.monotonic() - after < 300:
        time.sleep(0.1)
    return time.monotonic() - after


def run(ctx: BenchContext) -> list[Figure]:
    from api.credentials import api_credential_create
    from api.sdk_queue import sdk_queue_backlog

    credential, _passcode = api_credential_create(name="bench-sdk")
    port = _free_port()
    web, worker = _start(ctx, port)
    seconds = 15.0 if ctx.quick else 60.0
    figures = []
    wrk: WrkLoad | None = None
    try:
        load = Load(credential.account_id, port)
        # Wait until the web workers answer and the Celery worker drains (both boot slowly
        # on a busy machine): one marker end to end before anything is measured.
        warm: list[float] = []
        deadline = time.monotonic() + 180
        while not warm or warm[-1] >= 60:
            if time.monotonic() > deadline:
                raise RuntimeError("the SDK queue worker did not drain within 180 s")
            once = threading.Event()
            once.set()
            _marker_delays(load, credential.account_id, once, warm, first=True)
        if shutil.which("wrk"):
            wrk = WrkLoad(load, port)
        if wrk is None:
            print(f"{PART:<10} (wrk not installed: the asyncio client shares the cores)")
            asyncio.run(load.run(3))  # warm-up: imports, connections, first guids
            load.latencies.clear()
        else:
            wrk.run(3)
        # As fast as the clients are answered (the most it takes), then at the target's
        # 2,000 requests/s on a schedule (what a site that busy sends: its latency and
        # delay until readable with the drain not starved by a load the machine cannot
        # keep up with).
        rate, p50, p95, failed, delays = _phase(load, wrk, credential.account_id, seconds)
        drained = _drain_time(sdk_queue_backlog)
        client = "wrk" if wrk else "asyncio"
        figures.append(Figure(PART, f"GET /a, {CLIENTS} {client} clients, page/event/profile mix",
                              rate, "requests/s", "≥ 2000"))  # fmt: skip
        figures.append(Figure(PART, "GET /a reply p50", p50, "ms"))
        figures.append(Figure(PART, "GET /a reply p95", p95, "ms", "≤ 50"))
        if delays:
            figures.append(Figure(PART, "delay until readable, median under load",
                                  statistics.median(delays), "s"))  # fmt: skip
            figures.append(Figure(PART, "delay until readable, max under load",
                                  max(delays), "s"))  # fmt: skip
        figures.append(Figure(PART, "queue drained after the load stopped", drained, "s"))
        if wrk is not None:
            paced = _phase(load, wrk, credential.account_id, seconds / 2, rate=PACED_RATE)
            rate, p50, p95, paced_failed, delays = paced
            failed += paced_failed
            label = f"at {PACED_RATE:,} requests/s on a schedule"
            figures.append(Figure(PART, f"GET /a {label}: achieved", rate, "requests/s"))
            figures.append(Figure(PART, f"GET /a {label}: reply p50", p50, "ms"))
            figures.append(Figure(PART, f"GET /a {label}: reply p95", p95, "ms", "≤ 50"))
            if delays:
                figures.append(Figure(PART, f"{label}: delay until readable, median",
                                      statistics.median(delays), "s", "≤ 2"))  # fmt: skip
                figures.append(Figure(PART, f"{label}: delay until readable, max",
                                      max(delays), "s", "≤ 2"))  # fmt: skip
            figures.append(Figure(PART, f"{label}: queue drained after",
                                  _drain_time(sdk_queue_backlog), "s"))  # fmt: skip
        if failed:
            print(f"{PART:<10} ({failed:,} requests failed or refused)")
    finally:
        if wrk is not None:
            wrk.script.unlink(missing_ok=True)
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return figures


if __name__ == "__main__":  # pragma: no cover - run through python -m tests.bench
    sys.exit("run: python -m tests.bench --only sdk")
