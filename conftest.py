"""Fixtures shared by every app's tests: people in each role, a real Celery
worker on the real broker, and a real Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct horse battery staple"


def _role_group(name: str) -> Group:
    """The role group made by the migration. A transactional test (worker,
    browser) flushes every table when it ends, so re-create it when gone."""
    group = Group.objects.filter(name=name).first()
    if group is None:
        from profiles.roles import role_groups_ensure

        role_groups_ensure()
        group = Group.objects.get(name=name)
    return group


def _person(username: str, group: str | None = None, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if group:
        user.groups.add(_role_group(group))
    return user


@pytest.fixture
def api(settings):
    """An account with a passcode and a client for the CleverTap REST dialect
    (api.tests.test_api_support.ApiClient); passcodes hashed fast for tests."""
    from api.tests.test_api_support import ApiClient

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return ApiClient()


@pytest.fixture
def marketer(db) -> User:
    return _person("marketer", "Marketers")


@pytest.fixture
def admin_user(db) -> User:
    """A member of the Admins group (not a superuser)."""
    return _person("admin", "Admins")


@pytest.fixture
def importer(db) -> User:
    return _person("importer", "Importers")


@pytest.fixture
def outsider(db) -> User:
    """Logged in, but in no group: may see nothing."""
    return _person("outsider")


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def marketer_client(marketer) -> Client:
    return _client_for(marketer)


@pytest.fixture
def admin_client_(admin_user) -> Client:
    return _client_for(admin_user)


@pytest.fixture
def importer_client(importer) -> Client:
    return _client_for(importer)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _client_for(outsider)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


@pytest.fixture
def celery_worker_real(transactional_db) -> Iterator[object]:
    """A real Celery worker (in a thread) consuming from the real Redis broker.

    Tasks reach it only through the broker: nothing runs eagerly. It uses the
    test database, so tests using it must commit (transactional_db).
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    app.conf.task_always_eager = False
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=30) as worker:  # fmt: skip
        yield worker


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright; skips loudly when missing."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        message = f"BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium)"
        print(f"\n{'!' * 70}\n{message}\n{'!' * 70}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own
    # ORM calls are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def browser_login(page, username: str) -> None:
    """Log in through the real login form."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_database_url() -> str:
    """A DATABASE_URL naming the test database, for subprocesses a test starts.

    The host may be a unix-socket directory (the embedded PostgreSQL): it is
    percent-encoded, as dj-database-url expects.
    """
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    user = quote(db.get("USER") or "postgres")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = quote(db.get("HOST") or "127.0.0.1", safe="")
    return f"postgresql://{user}{password}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test
