import pytest

from campaigns.tests.smtp import loopback_smtp


@pytest.fixture
def smtp_inbox(settings):
    with loopback_smtp(settings) as inbox:
        yield inbox


@pytest.fixture(autouse=True)
def _role_groups(db):
    """A transactional test elsewhere may have flushed the role groups: make them again,
    with the campaign permissions."""
    from importlib import import_module

    from django.apps import apps

    from profiles.tests.roles import ensure_role_groups

    ensure_role_groups()
    import_module("campaigns.migrations.0002_campaign_permissions").grant(apps, None)
