"""REST API credentials: create, revoke, authenticate, count usage.

Kept apart from profiles/services.py (the identity rules) so the API's
bookkeeping never mixes with profile writes. A passcode is shown once, when
created, and stored only as a Django password hash (PBKDF2). Verifying that
hash costs tens of milliseconds, so a successful check is remembered in
process, keyed by the account id, a SHA-256 of the passcode and the stored
hash: a changed hash misses the cache, and revocation is read from the row
on every request, so revoking takes effect at once in every worker.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import secrets
import string
import threading
from collections import OrderedDict
from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from profiles.models import ApiCredential, ApiUsageDay, ApiUsageOutcome

logger = logging.getLogger(__name__)

ACCOUNT_ID_ALPHABET = string.ascii_uppercase + string.digits
_VERIFIED_MAX = 1024
_verified: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
_verified_lock = threading.Lock()


def _new_account_id() -> str:
    """CleverTap-style account id, e.g. "W9R-486-4W5Z"."""
    groups = (3, 3, 4)
    return "-".join(
        "".join(secrets.choice(ACCOUNT_ID_ALPHABET) for _ in range(size)) for size in groups
    )


def _new_passcode() -> str:
    return secrets.token_urlsafe(24)


@transaction.atomic
def api_credential_create(
    *, name: str, created_by: AbstractBaseUser | None = None
) -> tuple[ApiCredential, str]:
    """Create a credential; return it and its passcode in clear (the only time it exists).

    The passcode is stored hashed with Django's password hasher; the account id
    is unique (a clash, astronomically rare, retries with a new one).
    """
    name = name.strip()
    if not name:
        raise ValueError("A credential needs a name.")
    passcode = _new_passcode()
    for _ in range(5):
        account_id = _new_account_id()
        if not ApiCredential.objects.filter(account_id=account_id).exists():
            break
    credential = ApiCredential.objects.create(
        name=name[:100],
        account_id=account_id,
        passcode_hash=make_password(passcode),
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    logger.info("API credential %s created by %s", account_id, created_by or "command line")
    return credential, passcode


@transaction.atomic
def api_credential_revoke(
    *, credential: ApiCredential, user: AbstractBaseUser | None = None
) -> ApiCredential:
    """Revoke a credential: every later request with it gets 401. Revoking twice
    keeps the first revocation time."""
    ApiCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    credential.refresh_from_db(fields=["revoked_at"])
    logger.info("API credential %s revoked by %s", credential.account_id, user or "command line")
    return credential


def _passcode_verified(credential: ApiCredential, passcode: str) -> bool:
    key = (
        credential.account_id,
        hashlib.sha256(passcode.encode()).hexdigest(),
        credential.passcode_hash,
    )
    with _verified_lock:
        if key in _verified:
            _verified.move_to_end(key)
            return True
    if not check_password(passcode, credential.passcode_hash):
        return False
    with _verified_lock:
        _verified[key] = True
        while len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return True


class TooManyFailedAttempts(Exception):
    """This account id or client address failed authentication too often just now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def api_credential_authenticate(
    *, account_id: str | None, passcode: str | None, client_address: str = ""
) -> ApiCredential | None:
    """The active credential these headers name, or None (unknown, wrong passcode, revoked).

    One indexed query per call; the PBKDF2 check runs once per process and passcode.
    An unknown or revoked account id costs the same PBKDF2 work as a wrong passcode, so
    timing tells no one which account ids exist. Raises TooManyFailedAttempts, before any
    hash work, while the account id or the client address is over its failure budget
    (settings.API_AUTH_FAILURES_PER_ACCOUNT / _PER_ADDRESS per API_AUTH_FAILURE_WINDOW).
    """
    if not account_id or not passcode or len(account_id) > 32 or len(passcode) > 256:
        return None
    failures = _AuthFailures(account_id, client_address)
    failures.check()
    credential = (
        ApiCredential.objects.only("id", "name", "account_id", "passcode_hash", "revoked_at")
        .filter(account_id=account_id)
        .first()
    )
    if credential is None or credential.revoked_at is not None:
        check_password(passcode, _unknown_account_hash())
        failures.record()
        return None
    if not _passcode_verified(credential, passcode):
        failures.record()
        return None
    return credential


@functools.cache
def _unknown_account_hash() -> str:
    return make_password(secrets.token_urlsafe(24))


class _AuthFailures:
    """Failed authentications per account id and per client address, counted in Redis
    in fixed windows. Without Redis nothing is enforced (logged): the API stays up."""

    def __init__(self, account_id: str, client_address: str) -> None:
        from django.conf import settings

        self.window = settings.API_AUTH_FAILURE_WINDOW
        digest = hashlib.sha256(account_id.encode()).hexdigest()[:32]
        self.budgets = {f"api:authfail:account:{digest}": settings.API_AUTH_FAILURES_PER_ACCOUNT}
        if client_address:
            self.budgets[f"api:authfail:address:{client_address}"] = (
                settings.API_AUTH_FAILURES_PER_ADDRESS
            )

    def check(self) -> None:
        import redis

        try:
            pipe = _redis().pipeline(transaction=False)
            for key in self.budgets:
                pipe.get(key)
                pipe.ttl(key)
            answers = pipe.execute()
        except redis.RedisError:
            logger.warning("Redis unavailable: API guessing limits not enforced", exc_info=True)
            return
        for index, limit in enumerate(self.budgets.values()):
            count, ttl = answers[2 * index], answers[2 * index + 1]
            if count is not None and int(count) >= limit:
                raise TooManyFailedAttempts(retry_after=max(int(ttl), 1))

    def record(self) -> None:
        import redis

        try:
            pipe = _redis().pipeline(transaction=False)
            for key in self.budgets:
                pipe.set(key, 0, ex=self.window, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            pipe.execute()
        except redis.RedisError:
            logger.warning("Redis unavailable: failed API authentication not counted")


def api_credential_list() -> QuerySet[ApiCredential]:
    """Active credentials first, newest first."""
    return ApiCredential.objects.select_related("created_by").order_by("revoked_at", "-created_at")


def api_usage_rows(*, days: int) -> list[dict[str, Any]]:
    """Requests per credential and endpoint over the last `days` days, by outcome."""
    since = timezone.localdate() - dt.timedelta(days=days - 1)
    return list(
        ApiUsageDay.objects.filter(day__gte=since)
        .values("credential__name", "credential__account_id", "endpoint")
        .annotate(
            ok=Sum("count", filter=Q(outcome=ApiUsageOutcome.SUCCESS), default=0),
            client_errors=Sum("count", filter=Q(outcome=ApiUsageOutcome.CLIENT_ERROR), default=0),
            server_errors=Sum("count", filter=Q(outcome=ApiUsageOutcome.SERVER_ERROR), default=0),
            total=Sum("count"),
        )
        .order_by("credential__name", "credential__account_id", "endpoint")
    )


def api_outcome(status_code: int) -> str:
    if status_code >= 500:
        return ApiUsageOutcome.SERVER_ERROR
    if status_code >= 400:
        return ApiUsageOutcome.CLIENT_ERROR
    return ApiUsageOutcome.SUCCESS


def api_usage_record(
    *, credential_id: int, endpoint: str, status_code: int, at: dt.datetime | None = None
) -> None:
    """Count one request and refresh the credential's last-used time (one statement).

    Upserted, so concurrent requests add up exactly.
    """
    at = at or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH used AS (UPDATE profiles_apicredential SET last_used_at = %s WHERE id = %s)"
            " INSERT INTO profiles_apiusageday (credential_id, day, endpoint, outcome, count)"
            " VALUES (%s, %s, %s, %s, 1)"
            " ON CONFLICT (credential_id, day, endpoint, outcome)"
            " DO UPDATE SET count = profiles_apiusageday.count + 1",
            [
                at,
                credential_id,
                credential_id,
                timezone.localdate(at),
                endpoint,
                api_outcome(status_code),
            ],
        )


# --- the per-account concurrency cap ----------------------------------------------

SLOT_LEASE_SECONDS = 300  # a slot held longer (a killed worker) no longer counts
_redis_client = None
_redis_lock = threading.Lock()


class TooManyConcurrentRequests(Exception):
    pass


def _redis():
    """A client for the Celery broker's Redis (shared by every web worker)."""
    global _redis_client
    if _redis_client is None:
        import redis
        from django.conf import settings

        url = settings.CELERY_BROKER_URL
        if url.startswith("redis+socket://"):  # the embedded Redis on a unix socket
            url = "unix://" + url.removeprefix("redis+socket://")
        with _redis_lock:
            if _redis_client is None:
                _redis_client = redis.Redis.from_url(url, socket_timeout=2)
    return _redis_client


class api_request_slot:
    """Hold one of the account's concurrent-request slots for the `with` block.

    The slots are members of a Redis sorted set scored by start time, so a slot
    leaked by a killed worker stops counting after SLOT_LEASE_SECONDS. Over the
    cap (settings.API_MAX_CONCURRENT_REQUESTS) raises TooManyConcurrentRequests.
    Without Redis the cap is not enforced (logged): the API stays available.
    """

    def __init__(self, account_id: str, limit: int | None = None) -> None:
        from django.conf import settings

        self.key = f"api:inflight:{account_id}"
        self.member = secrets.token_hex(8)
        self.limit = settings.API_MAX_CONCURRENT_REQUESTS if limit is None else limit
        self.held = False

    def __enter__(self) -> api_request_slot:
        import redis

        now = timezone.now().timestamp()
        try:
            pipe = _redis().pipeline(transaction=True)
            pipe.zremrangebyscore(self.key, 0, now - SLOT_LEASE_SECONDS)
            pipe.zadd(self.key, {self.member: now})
            pipe.zcard(self.key)
            pipe.expire(self.key, SLOT_LEASE_SECONDS)
            in_flight = pipe.execute()[2]
        except redis.RedisError:
            logger.warning("Redis unavailable: API concurrency cap not enforced", exc_info=True)
            return self
        self.held = True
        if in_flight > self.limit:
            self._release()
            raise TooManyConcurrentRequests
        return self

    def _release(self) -> None:
        import redis

        if not self.held:
            return
        self.held = False
        try:
            _redis().zrem(self.key, self.member)
        except redis.RedisError:
            logger.warning("Redis unavailable: API slot not released", exc_info=True)

    def __exit__(self, *exc_info: object) -> None:
        self._release()
