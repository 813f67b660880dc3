"""The SDK write queue with real workers: /a only queues; a Celery worker applies the
records through ingest, in order per device; a worker SIGKILLed in the middle of
draining loses and doubles nothing (the pattern of tests/test_faults.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from api.sdk_queue import sdk_queue_append, sdk_queue_backlog
from api.sdk_tasks import sdk_queue_drain_task
from api.tests.test_api_support import ApiClient
from api.tests.test_sdk_endpoint import Browser, drain_now
from profiles.models import Device, Event
from tests.test_faults import worker_processes  # noqa: F401 — fixture

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def names_by_device() -> dict[str, list[str]]:
    stored: dict[str, list[str]] = {}
    for guid, name in Event.objects.order_by("id").values_list("device__object_id", "name"):
        stored.setdefault(guid, []).append(name)
    return stored


class QueuedBrowser(Browser):
    """A Browser whose calls are only queued: nothing drains in this process."""

    def call(self, *args, **kwargs):
        import api.tests.test_sdk_endpoint as endpoint

        drain, endpoint.drain_now = endpoint.drain_now, lambda: None
        try:
            return super().call(*args, **kwargs)
        finally:
            endpoint.drain_now = drain


def test_one_batch_with_events_and_logins_keeps_each_devices_order():
    api = ApiClient()
    shopper, other = (QueuedBrowser(api.credential.account_id) for _ in range(2))
    for browser in (shopper, other):
        browser.call("page", {"cpg": "https://shop.example/"})
    shopper.event("Before Login")
    shopper.login(Identity="layered-1", Plan="gold")
    other.event("Other Browsing")
    shopper.event("After Login")
    shopper.call("push", {"type": "profile", "profile": {"Plan": "platinum"}})
    shopper.event("After Upgrade")
    drain_now()  # one batch: every call above is in it
    assert names_by_device() == {
        shopper.guid: ["Page Viewed", "Before Login", "After Login", "After Upgrade"],
        other.guid: ["Page Viewed", "Other Browsing"],
    }
    record = api.get("/1/profile.json", {"identity": "layered-1"}).json()["record"]
    assert record["profileData"]["Plan"] == "platinum"  # the later push won
    assert record["systemProperties"]["Event count"] == 4


def test_the_worker_drains_the_queue_in_order_per_device(celery_worker_real, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    api = ApiClient()
    browsers = [QueuedBrowser(api.credential.account_id) for _ in range(6)]
    for browser in browsers:
        assert browser.call("page", {"cpg": "https://shop.example/"}).status_code == 200
    assert browsers[0].guid is not None  # the reply named the device before its row exists
    for step in range(15):
        for browser in browsers:
            assert browser.event(f"Step {step:02d}", {"n": step}).status_code == 200
    browsers[0].login(Identity="queued-1", Plan="gold")
    _wait(lambda: Event.objects.count() == 6 * 16, seconds=60, what="the worker to drain")
    _wait(lambda: sdk_queue_backlog() == 0, seconds=30, what="the stream to be trimmed")
    expected = ["Page Viewed"] + [f"Step {step:02d}" for step in range(15)]
    assert names_by_device() == {browser.guid: expected for browser in browsers}
    _wait(
        lambda: api.get("/1/profile.json", {"identity": "queued-1"}).status_code == 200,
        seconds=30,
        what="the login",
    )
    record = api.get("/1/profile.json", {"identity": "queued-1"}).json()["record"]
    assert record["profileData"]["Plan"] == "gold"
    assert record["systemProperties"]["Event count"] == 16  # scenario 1 through the queue


def test_a_worker_killed_while_draining_loses_and_doubles_nothing(worker_processes):  # noqa: F811
    devices, per_device = 120, 25
    guids = [f"__{n:032x}" for n in range(devices)]
    for step in range(per_device):
        for guid in guids:
            # No evtId: ingest's own de-duplication must not hide a batch applied twice.
            event = {"type": "event", "objectId": guid, "evtName": f"Step {step:02d}",
                     "evtData": {"n": step}, "ts": 1_764_000_000 + step}  # fmt: skip
            sdk_queue_append(guid=guid, records=[event], actor_label="SDK: kill", dedupe_key=None)
    total = devices * per_device
    env = {"SDK_QUEUE_BATCH": "100", "SDK_DRAIN_LEASE_SECONDS": "3"}
    first = worker_processes(**env)
    sdk_queue_drain_task.delay()
    _wait(lambda: Event.objects.count() > 300, seconds=120, what="the first batches")
    first.kill()
    stored_at_kill = Event.objects.count()
    assert stored_at_kill < total, "the worker finished before it could be killed"

    worker_processes(**env)
    deadline = time.monotonic() + 240
    while Event.objects.count() < total or sdk_queue_backlog():
        if time.monotonic() > deadline:
            pytest.fail(f"not drained: {Event.objects.count()} of {total} events")
        sdk_queue_drain_task.delay()  # as beat's tick would
        time.sleep(2)
    assert Event.objects.count() == total
    assert Device.objects.count() == devices
    expected = [f"Step {step:02d}" for step in range(per_device)]
    assert names_by_device() == {guid: expected for guid in guids}
