"""The embedded SMTP sink started by the launcher, and the Outbox page showing what it caught."""

import os

import pytest
from django.contrib.auth.models import Permission

from campaigns.delivery import OutgoingMessage, deliver_many
from campaigns.delivery.models import OutboxMessage
from config import launcher
from conftest import test_database_url

OUTBOX = "/campaigns/outbox/"


@pytest.fixture
def embedded_sink(transactional_db, settings):
    """The launcher's sink, writing into the test database."""
    saved = {
        key: os.environ.get(key)
        for key in ("EMAIL_HOST", "EMAIL_PORT", "EMBEDDED_SERVICES", "DATABASE_URL")
    }
    os.environ.pop("EMAIL_HOST", None)
    os.environ["EMBEDDED_SERVICES"] = "1"
    os.environ["DATABASE_URL"] = test_database_url()
    process = launcher.start_embedded_smtp_sink()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = os.environ["EMAIL_HOST"]
        settings.EMAIL_PORT = int(os.environ["EMAIL_PORT"])
        settings.DEFAULT_FROM_EMAIL = "news@example.com"
        yield process
    finally:
        launcher._stop_process(process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_launcher_starts_no_sink_when_email_host_is_set(monkeypatch):
    monkeypatch.setenv("EMBEDDED_SERVICES", "1")
    monkeypatch.setenv("EMAIL_HOST", "mail.example.com")
    assert launcher.start_embedded_smtp_sink() is None


def test_sink_stores_mail_and_outbox_shows_it_escaped(embedded_sink, client, django_user_model):
    [result] = deliver_many(
        [
            OutgoingMessage(
                channel="email",
                to="ann@example.com",
                subject="<script>alert(1)</script> Sale",
                body="Hello Ann",
                html="<p>Hello Ann</p>",
                reference="run-1-profile-1",
            )
        ]
    )
    assert result.accepted
    stored = OutboxMessage.objects.get()
    assert (stored.recipients, stored.sender) == ("ann@example.com", "news@example.com")
    assert stored.body.strip() == "Hello Ann" and stored.html.strip() == "<p>Hello Ann</p>"

    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123")
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboxmessage"))
    client.force_login(viewer)
    page = client.get(OUTBOX).content.decode()
    assert "ann@example.com" in page and "Hello Ann" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Sale" in page
    assert "<script>alert(1)" not in page


@pytest.mark.django_db
def test_outbox_lists_newest_first(client, django_user_model):
    OutboxMessage.objects.create(sender="a@x", recipients="old@example.com", subject="Older")
    OutboxMessage.objects.create(sender="a@x", recipients="new@example.com", subject="Newer")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123")
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboxmessage"))
    client.force_login(viewer)
    page = client.get(OUTBOX).content.decode()
    assert page.index("Newer") < page.index("Older")


@pytest.mark.django_db
def test_outbox_needs_permission(outsider_client, anonymous_client):
    OutboxMessage.objects.create(sender="a@x", recipients="ann@example.com", subject="Secret")
    refused = outsider_client.get(OUTBOX)
    assert refused.status_code == 403 and b"Secret" not in refused.content
    anonymous = anonymous_client.get(OUTBOX)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
