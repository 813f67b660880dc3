import pytest

from api.credentials import _redis


@pytest.fixture(autouse=True)
def _forget_failed_authentications():
    """Failure counters live in Redis across tests: each API test starts with none."""

    def forget() -> None:
        keys = list(_redis().scan_iter("api:authfail:*"))
        if keys:
            _redis().delete(*keys)

    forget()
    yield
    forget()
