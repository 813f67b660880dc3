"""Part 1: the profile services themselves, in-process, without HTTP.

Batches of 1000 calls, each batch in one transaction
(each call a batch of one through profiles.bulk):
- events/s through `event_push`: events on known devices, on never-seen
  devices (a new anonymous profile each) and by fresh identities;
- profile updates/s through `profile_push`: known and fresh identities,
  default and custom properties, a multi-value `$add` and an `$incr`;
- logins/s through `profile_login` on never-seen devices (half of them
  known people, half new ones).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

from tests.bench import BenchContext, Figure

PART = "services"
BATCH = 1000


def _sample(sql: str, limit: int) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        # TABLESAMPLE keeps this cheap on a million-row table; top up from the start if thin.
        cursor.execute(sql.format(sample="TABLESAMPLE SYSTEM (1)") + " LIMIT %s", [limit])
        rows = [row[0] for row in cursor.fetchall()]
        if len(rows) < limit:
            cursor.execute(sql.format(sample="") + " LIMIT %s", [limit])
            rows = [row[0] for row in cursor.fetchall()]
    return rows


def _known_devices(limit: int) -> list[str]:
    return _sample(
        "SELECT object_id FROM profiles_device {sample} WHERE profile_id IS NOT NULL", limit
    )


def _known_identities(limit: int) -> list[str]:
    return _sample("SELECT value FROM profiles_identifier {sample} WHERE kind = 'identity'", limit)


def _device_id(tag: str, batch: int, index: int) -> str:
    return f"__b{tag}{batch:05d}{index:05d}".ljust(34, "0")[:34]


def _timed_batches(batches: int, make_calls: Callable[[int], list[Callable[[], object]]]) -> float:
    """Calls per second over `batches` batches, each one transaction; refused records count
    as done (they were validated and answered)."""
    from django.db import transaction

    from profiles.properties import RecordError

    done, elapsed = 0, 0.0
    for batch in range(batches):
        calls = make_calls(batch)
        started = time.perf_counter()
        with transaction.atomic():
            for call in calls:
                with contextlib.suppress(RecordError):
                    call()
        elapsed += time.perf_counter() - started
        done += len(calls)
    return done / elapsed if elapsed else 0.0


def run(ctx: BenchContext) -> list[Figure]:
    from profiles.models import Source
    from profiles.services import Actor, event_push, profile_login, profile_push

    actor = Actor(source=Source.API, label="bench")
    batches = 3 if ctx.quick else 20
    tag = f"{int(time.time()) % 100000:05d}"
    devices = _known_devices(5000) or [_device_id(tag, 99999, i) for i in range(100)]
    identities = _known_identities(5000)
    names = ["Product Viewed", "Added To Cart", "Charged", "Searched"]

    def event_calls(batch: int) -> list[Callable[[], object]]:
        calls = []
        for i in range(BATCH):
            common = {
                "name": random.choice(names),
                "properties": {"Amount": random.randint(1, 500), "Category": "bench"},
                "actor": actor,
                "client_event_id": f"bench-{tag}-{batch}-{i}",
            }
            roll = random.random()
            if roll < 0.6:  # known device
                where = {"device_id": random.choice(devices)}
            elif roll < 0.8:  # never-seen device: a new anonymous profile
                where = {"device_id": _device_id(tag, batch, i)}
            else:  # a fresh identity, no device
                where = {"identifiers": {"identity": f"bench-svc-{tag}-e{batch}-{i}"}}
            calls.append(lambda common=common, where=where: event_push(**common, **where))
        return calls

    def profile_calls(batch: int) -> list[Callable[[], object]]:
        calls = []
        for i in range(BATCH):
            if identities and i % 2 == 0:
                identity = random.choice(identities)
            else:
                identity = f"bench-svc-{tag}-p{batch}-{i}"
            data = {
                "Name": f"Bench {i}",
                "Customer Type": random.choice(["Silver", "Gold", "Platinum"]),
                "Score": {"$incr": random.randint(1, 10)},
                "Interests": {"$add": random.sample(["golf", "chess", "books", "music"], 2)},
                "MSG-sms": random.random() < 0.5,
            }
            calls.append(
                lambda identity=identity, data=data: profile_push(
                    identifiers={"identity": identity}, profile_data=data, actor=actor
                )
            )
        return calls

    def login_calls(batch: int) -> list[Callable[[], object]]:
        calls = []
        for i in range(BATCH):
            if identities and i % 2 == 0:
                identity = random.choice(identities)
            else:
                identity = f"bench-svc-{tag}-l{batch}-{i}"
            device_id = _device_id(tag, 50000 + batch, i)
            calls.append(
                lambda identity=identity, device_id=device_id: profile_login(
                    device_id=device_id, identifiers={"identity": identity}, actor=actor
                )
            )
        return calls

    figures = [
        Figure(PART, "event_push: 60% known devices, 20% new devices, 20% new ids",
               _timed_batches(batches, event_calls), "events/s"),
        Figure(PART, "profile_push: half known, half new identities, 5 properties",
               _timed_batches(batches, profile_calls), "updates/s"),
        Figure(PART, "profile_login: new devices, half known people",
               _timed_batches(max(1, batches // 2), login_calls), "logins/s"),
    ]  # fmt: skip
    return figures
