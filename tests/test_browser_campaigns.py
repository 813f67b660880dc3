"""In a real Chromium: a marketer builds an email campaign with a personalised subject and
previews it for a profile; an admin sends a test, then the campaign, and watches the counts.
Mail goes to an aiosmtpd server on loopback; the send runs on a real Celery worker."""

import re

import pytest

from campaigns.models import Campaign
from campaigns.tests.smtp import loopback_smtp
from conftest import browser_login
from profiles.tests.factories import IdentifierFactory, ProfileFactory
from segments.models import Segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db):
    from profiles.roles import role_groups_ensure

    role_groups_ensure()


@pytest.fixture
def smtp_inbox(settings):
    with loopback_smtp(settings) as inbox:
        yield inbox


def test_marketer_builds_and_previews_admin_tests_and_sends(
    page,
    marketer,
    admin_user,
    smtp_inbox,
    celery_worker_real,
):
    Segment.objects.create(name="Everyone", definition={"all": []})
    ann = ProfileFactory(name="Ann Lee", email="ann@example.com")
    IdentifierFactory(profile=ann, kind="email", value="ann@example.com")
    ProfileFactory(name="Tess Tester", email="tess@example.com", custom={"ct_is_test_user": "Yes"})
    ProfileFactory(name="No Mail", email="")

    browser_login(page, "marketer")
    page.goto("/campaigns/")
    page.get_by_role("link", name="New campaign").click()
    page.fill("#id_name", "Spring sale")
    page.select_option("#id_segment", label="Everyone")
    page.fill("#id_subject", 'Hi {{ Profile.Name | default: "there" }}')
    page.fill("#id_body", "Spring is here, {{ Profile.Name }}.")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    assert page.get_by_role("button", name="Send campaign").count() == 0  # marketers cannot send

    page.fill("#id_q", "ann@example.com")
    page.get_by_role("button", name="Preview").click()
    assert page.locator(".preview-subject").inner_text() == "Hi Ann Lee"
    assert page.locator(".preview-outcome").inner_text() == "Sent"

    campaign = Campaign.objects.get(name="Spring sale")
    page.context.clear_cookies()
    browser_login(page, "admin")
    page.goto(f"/campaigns/{campaign.pk}/")
    page.get_by_role("button", name="Send test").click()
    assert "Test send done. Sent: 1." in page.locator("body").inner_text()
    assert [m["To"] for m in smtp_inbox.messages] == ["tess@example.com"]

    page.get_by_role("button", name="Send campaign").click()
    send_run = page.locator(".run").first
    send_run.locator(".run-status", has_text="Done").wait_for(timeout=60_000)
    counts = send_run.locator(".outcome-counts").inner_text()
    assert "Sent: 2" in counts and "Profile not reachable: 1" in counts
    assert sorted(m["To"] for m in smtp_inbox.messages) == [
        "ann@example.com", "tess@example.com", "tess@example.com"]  # fmt: skip
