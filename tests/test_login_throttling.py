"""Guessing dashboard passwords is stopped: the fifth wrong password locks the username
out from that address, even for the right password; the admin site has no
login form of its own."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def _login(client: Client, username: str, password: str, address: str = "198.51.100.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_the_username_out(marketer):
    client = Client()
    for attempt in range(4):
        response = _login(client, "marketer", f"guess-{attempt}")
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    assert _login(client, "marketer", "guess-5").status_code == 429  # the fifth locks
    locked = _login(client, "marketer", PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_lockout_is_per_username_and_address(marketer):
    User.objects.create_user("other", password=PASSWORD)
    for attempt in range(5):
        _login(Client(), "marketer", f"guess-{attempt}")
    assert _login(Client(), "other", PASSWORD).status_code == 302
    assert _login(Client(), "marketer", PASSWORD, address="198.51.100.2").status_code == 302


def test_a_successful_login_resets_the_count(marketer):
    for attempt in range(4):
        _login(Client(), "marketer", f"guess-{attempt}")
    assert _login(Client(), "marketer", PASSWORD).status_code == 302
    for attempt in range(4):
        _login(Client(), "marketer", f"again-{attempt}")
    assert _login(Client(), "marketer", PASSWORD).status_code == 302


def test_the_admin_site_sends_people_to_the_one_login_form(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
