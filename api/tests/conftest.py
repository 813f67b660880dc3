import pytest

from api.credentials import _redis


@pytest.fixture(autouse=True)
def _forget_redis_state():
    """Authentication failure counts, the SDK's rate counts, its queue and its re-fire
    keys live in Redis across tests: each API test starts with none."""

    def forget() -> None:
        for pattern in ("api:authfail:*", "sdk:*"):
            keys = list(_redis().scan_iter(pattern))
            if keys:
                _redis().delete(*keys)

    forget()
    yield
    forget()


@pytest.fixture(autouse=True)
def _forget_the_web_push_key():
    """/a keeps the VAPID public key a few seconds (api.sdk_services): each test reads the
    key of its own database, not one an earlier test generated."""
    from api.sdk_services import _web_push_key_cache

    _web_push_key_cache.clear()
    yield
    _web_push_key_cache.clear()
