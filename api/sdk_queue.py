"""The SDK write queue: `/a` checks a call and appends its records to a Redis stream;
a worker applies them in batches through `profiles.ingest.ingest_records`.

Guarantees (README, "Web SDK"):
- Durable once acknowledged: a reply is sent after XADD returned, i.e. the records are
  in Redis (the embedded Redis runs with appendonly; a server you run should too).
  If Redis refuses the append, the records are written synchronously instead.
- Order per device: a device's records always go to the same shard (crc32 of its guid)
  and a shard is applied by one worker at a time, oldest entry first.
- Exactly once: a shard's high-water mark (`SdkQueueMark.last_id`, the newest stream
  entry applied) is updated in the same PostgreSQL transaction as the batch it covers;
  a worker killed mid-batch rolls the batch back, and the next one (holding the mark's
  row lock) starts after the mark, so nothing is lost or doubled. Entries are trimmed from
  the stream only after their batch committed. A re-fired SDK request (same account,
  guid, rn, i, sn) with a profile or token record is appended once (a Redis key set in the
  same script as the XADD); its events are stored once by their event ids (ingest).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from api.credentials import _redis
from api.models import SdkQueueMark
from profiles.ingest import ingest_records
from profiles.models import Source
from profiles.services import Actor

logger = logging.getLogger(__name__)

STREAM_PREFIX = "sdk:q:"
SEEN_PREFIX = "sdk:seen:"
KICK_KEY = "sdk:kick"
DRAIN_LEASE_KEY = "sdk:draining"  # one key per drain slot: sdk:draining:<n>
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
SEEN_SECONDS = 7 * 24 * 3600  # the SDK retries from localStorage across visits
# One round trip per `/a` call: the rate counters, then (within budget, and unless this
# request was appended before) the append, in one atomic script. KEYS: per-IP counter,
# per-device counter or '', re-fire key or '', stream, kick key; ARGV: the two limits, the
# entry ('' for a call that stores nothing), the re-fire key's lifetime. Returns -1 over a
# rate limit (nothing appended), 2 for a re-fire or a call with nothing to append, 1 when
# appended and a drain should be nudged (none in the last half second), else 0.
_SUBMIT = """
local over = false
for index = 1, 2 do
  if KEYS[index] ~= '' then
    local count = redis.call('INCR', KEYS[index])
    redis.call('EXPIRE', KEYS[index], 120)
    if count > tonumber(ARGV[index]) then over = true end
  end
end
if over then return -1 end
if ARGV[3] == '' then return 2 end
if KEYS[3] ~= '' and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then
  return 2
end
redis.call('XADD', KEYS[4], '*', 'r', ARGV[3])
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', 500) then return 1 end
return 0
"""
_submit_script: Any = None


class SdkRateLimited(Exception):
    """Over the per-IP or per-device requests per minute: nothing was appended."""


@dataclass(frozen=True)
class RateBudget:
    """The counters one call counts against and their limits (requests per minute)."""

    ip_key: str
    ip_limit: int
    device_key: str = ""
    device_limit: int = 0


def _lease_seconds() -> int:
    return int(getattr(settings, "SDK_DRAIN_LEASE_SECONDS", 15))


def _shards() -> int:
    return int(getattr(settings, "SDK_QUEUE_SHARDS", 4))


def _batch_size() -> int:
    return int(getattr(settings, "SDK_QUEUE_BATCH", 500))


def _gather_seconds() -> float:
    return float(getattr(settings, "SDK_DRAIN_GATHER_SECONDS", 0.25))


def sdk_queue_shard(guid: str) -> int:
    return zlib.crc32(guid.encode()) % _shards()


def _stream(shard: int) -> str:
    return f"{STREAM_PREFIX}{shard}"


def sdk_queue_append(
    *,
    guid: str,
    records: list[dict[str, Any]],
    actor_label: str,
    dedupe_key: str | None,
    rate: RateBudget | None = None,
) -> bool:
    """Count the call against `rate` and queue its records for the guid's shard, in one
    Redis round trip; True when records were appended, False when there was nothing to
    append or the same request was queued before. SdkRateLimited over a limit (nothing
    appended). Without Redis the limits are not enforced and the records are written
    synchronously, so an acknowledged call is never lost."""
    global _submit_script
    entry = json.dumps({"r": records, "a": actor_label}, separators=(",", ":")) if records else ""
    keys = [
        rate.ip_key if rate else "",
        rate.device_key if rate else "",
        f"{SEEN_PREFIX}{dedupe_key}" if dedupe_key else "",
        _stream(sdk_queue_shard(guid)),
        KICK_KEY,
    ]
    limits = [rate.ip_limit, rate.device_limit] if rate else [0, 0]
    try:
        client = _redis()
        if _submit_script is None:  # EVALSHA, loading the script once per process
            _submit_script = client.register_script(_SUBMIT)
        outcome = _submit_script(keys=keys, args=[*limits, entry, SEEN_SECONDS], client=client)
    except redis.RedisError:
        if records:
            logger.warning("SDK queue unavailable: writing the call synchronously", exc_info=True)
            _ingest(records, actor_label)
            return True
        logger.warning("SDK rate limits not enforced: Redis unavailable", exc_info=True)
        return False
    if outcome == -1:
        raise SdkRateLimited()
    if outcome == 1:
        _kick()
    return outcome in (0, 1)


def _kick() -> None:
    """Start a drain soon (at most one nudge per half second; beat is the safety net)."""
    from api.sdk_tasks import sdk_queue_drain_task

    try:
        sdk_queue_drain_task.apply_async(expires=30)
    except Exception:  # the broker is the same Redis: the next beat tick drains instead
        logger.warning("could not enqueue the SDK drain task", exc_info=True)


def _ingest(records: list[dict[str, Any]], actor_label: str) -> None:
    result = ingest_records(records, actor=Actor(source=Source.SDK, label=actor_label))
    if result.refusals:
        logger.info(
            "SDK records refused (%s): %s",
            actor_label,
            {number: error.message for number, error in result.refusals.items()},
        )


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _runs(entries: list[tuple[Any, dict[Any, Any]]]) -> Iterator[tuple[str, list[dict]]]:
    """Consecutive entries of one account, as (actor label, records): one ingest call each."""
    label, records = None, []
    for _entry_id_raw, fields in entries:
        try:
            entry = json.loads(fields[b"r"] if b"r" in fields else fields["r"])
        except (KeyError, ValueError):
            logger.error("unreadable SDK queue entry %r skipped", _entry_id_raw)
            continue
        if label is not None and entry["a"] != label:
            yield label, records
            records = []
        label = entry["a"]
        records.extend(entry["r"])
    if label is not None and records:
        yield label, records


def sdk_queue_drain_shard(shard: int) -> int:
    """Apply the next batch of one shard; the number of stream entries applied.

    Returns 0 when the shard is empty or another worker holds it (the mark's row lock,
    taken with SKIP LOCKED, is the one-worker-per-shard rule)."""
    SdkQueueMark.objects.get_or_create(shard=shard)
    stream = _stream(shard)
    client = _redis()
    with transaction.atomic():
        mark = SdkQueueMark.objects.select_for_update(skip_locked=True).filter(shard=shard).first()
        if mark is None:
            return 0
        start = f"({mark.last_id}" if mark.last_id else "-"
        entries = client.xrange(stream, min=start, max="+", count=_batch_size())
        if not entries:
            return 0
        # Ingest keeps each person's records in their order (its rounds).
        for label, records in _runs(entries):
            _ingest(records, label)
        last = entries[-1][0]
        mark.last_id = last.decode() if isinstance(last, bytes) else last
        mark.save(update_fields=["last_id"])
    ms, seq = _entry_id(mark.last_id)
    try:  # applied entries leave the stream; a failure here only delays the trim
        client.xtrim(stream, minid=f"{ms}-{seq + 1}", approximate=False)
    except redis.RedisError:
        logger.warning("SDK queue trim failed for shard %d", shard, exc_info=True)
    return len(entries)


def _drain_slots() -> int:
    return int(getattr(settings, "SDK_DRAIN_PARALLEL", 2))


def _take_drain_slot(client: Any, token: str) -> str | None:
    for slot in range(_drain_slots()):
        key = f"{DRAIN_LEASE_KEY}:{slot}"
        if client.set(key, token, nx=True, ex=_lease_seconds()):
            return key
    return None


def sdk_queue_drain(*, seconds: float, idle_seconds: float = 1.0) -> int:
    """Drain every shard until the queue has stayed empty for `idle_seconds` (or for at
    most `seconds`); the number of entries applied.

    At most SDK_DRAIN_PARALLEL (2) drains run at once, each holding a slot (a Redis lease,
    renewed as it goes; a killed drain's lease lapses after SDK_DRAIN_LEASE_SECONDS); one
    more returns at once: those running are already on it. Running drains share the
    shards (a shard's batch is taken by one of them: its mark's row lock), so while one
    waits on PostgreSQL's commits the other applies another shard; a device's order holds,
    its records being in one shard, applied batch after batch."""
    client = _redis()
    token = uuid.uuid4().hex
    lease_key = _take_drain_slot(client, token)
    if lease_key is None:
        return 0
    deadline = time.monotonic() + seconds
    idle_since = time.monotonic()
    applied = 0
    try:
        while time.monotonic() < deadline:
            client.set(lease_key, token, xx=True, ex=_lease_seconds())
            counts = [sdk_queue_drain_shard(shard) for shard in range(_shards())]
            applied += sum(counts)
            if max(counts) >= _batch_size():
                continue  # a backlog: the next batches are full ones
            if sum(counts):
                idle_since = time.monotonic()
                # Let the next batches gather: a batch of 500 costs ~0.3 ms a record to
                # write, one of 20 several times that, so under load fewer, larger writes
                # keep up where many small ones fell behind (data readable this much later).
                time.sleep(_gather_seconds())
            elif time.monotonic() - idle_since >= idle_seconds:
                break
            else:
                time.sleep(0.02)
    finally:
        client.eval(_RELEASE, 1, lease_key, token)
    # An append that found the lease taken just before it was released: drain it now.
    if applied and sdk_queue_backlog() and time.monotonic() < deadline:
        applied += sdk_queue_drain(seconds=deadline - time.monotonic(), idle_seconds=0)
    return applied


def sdk_queue_backlog() -> int:
    """Entries waiting in the queue (all shards)."""
    client = _redis()
    return sum(client.xlen(_stream(shard)) for shard in range(_shards()))
