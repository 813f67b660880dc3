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
    from profiles.roles import role_groups_ensure

    role_groups_ensure()
