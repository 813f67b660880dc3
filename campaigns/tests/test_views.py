"""The campaign pages with three people: allowed, logged in but not allowed, anonymous."""

import pytest

from campaigns.models import AudienceKind, Campaign, Delivery, Outcome, RunKind
from profiles.tests.factories import IdentifierFactory, ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(marketer) -> Campaign:
    segment = Segment.objects.create(name="Everyone", definition={"all": []})
    return Campaign.objects.create(name="Welcome", segment=segment, subject="Hi {{ Profile.Name }}",
                                   body="Hello {{ Profile.Name | default: 'there' }}")  # fmt: skip


def new_campaign(client, **overrides):
    segment = Segment.objects.get_or_create(name="Everyone", definition={"all": []})[0]
    data = {"name": "Spring", "channel": "email", "audience_kind": "segment",
            "segment": segment.pk, "subject": "Hi {{ Profile.Name }}", "body": "Hello",
            "definition": "", "live_where": "", **overrides}  # fmt: skip
    return client.post("/campaigns/new/", data)


class TestList:
    def test_marketer_and_admin_see_campaigns(self, marketer_client, admin_client_, campaign):
        for client in (marketer_client, admin_client_):
            response = client.get("/campaigns/")
            assert response.status_code == 200 and "Welcome" in response.content.decode()

    def test_nav_link_only_for_people_who_may_look(self, marketer_client, importer_client):
        assert 'href="/campaigns/"' in marketer_client.get("/people/").content.decode()
        assert 'href="/campaigns/"' not in importer_client.get("/imports/").content.decode()

    @pytest.mark.parametrize("fixture", ["importer_client", "outsider_client"])
    def test_others_are_refused(self, request, fixture, campaign):
        client = request.getfixturevalue(fixture)
        for url in (
            "/campaigns/",
            f"/campaigns/{campaign.pk}/",
            "/campaigns/new/",
            f"/campaigns/{campaign.pk}/preview/",
            f"/campaigns/{campaign.pk}/report.csv",
        ):
            assert client.get(url).status_code == 403, url  # fmt: skip

    def test_anonymous_goes_to_login(self, anonymous_client, campaign):
        for url in ("/campaigns/", f"/campaigns/{campaign.pk}/", "/campaigns/new/"):
            response = anonymous_client.get(url)
            assert response.status_code == 302 and "/accounts/login/" in response["Location"]


class TestEdit:
    def test_marketer_creates_a_campaign(self, marketer_client):
        response = new_campaign(marketer_client)
        campaign = Campaign.objects.get(name="Spring")
        assert response["Location"] == f"/campaigns/{campaign.pk}/"

    def test_a_template_error_is_shown_with_its_line_and_nothing_is_lost(self, marketer_client):
        response = new_campaign(marketer_client, body="Hi\n{% if %}")
        text = response.content.decode()
        assert response.status_code == 200
        assert "line 2: missing expression" in text
        assert "Spring" in text  # what was typed is still there
        assert not Campaign.objects.exists()

    @pytest.mark.parametrize("definition", ["{not json", '{"all": [{"system": "nope"}]}'])
    def test_a_bad_inline_definition_is_refused(self, marketer_client, definition):
        response = new_campaign(marketer_client, audience_kind="definition", segment="",
                                definition=definition)  # fmt: skip
        assert response.status_code == 200 and not Campaign.objects.exists()
        assert 'class="errorlist' in response.content.decode()

    def test_a_live_campaign_needs_its_event(self, marketer_client):
        response = new_campaign(marketer_client, audience_kind=AudienceKind.LIVE, segment="")
        assert "Name the event" in response.content.decode()

    def test_importer_cannot_create(self, importer_client):
        assert new_campaign(importer_client).status_code == 403
        assert not Campaign.objects.exists()


class TestPreview:
    def test_preview_for_a_profile_found_by_email_shows_its_outcome(self, marketer_client,
                                                                    campaign):  # fmt: skip
        ann = ProfileFactory(name="<i>Ann</i>", email="ann@example.com")
        IdentifierFactory(profile=ann, kind="email", value="ann@example.com")
        response = marketer_client.get(f"/campaigns/{campaign.pk}/preview/",
                                       {"q": "ann@example.com"})  # fmt: skip
        text = response.content.decode()
        assert "Hi &lt;i&gt;Ann&lt;/i&gt;" in text  # escaped on the page
        assert "Hello &lt;i&gt;Ann&lt;/i&gt;" in text
        assert ">Sent<" in text
        assert not Delivery.objects.exists()  # a preview records nothing

    def test_preview_without_a_query_shows_audience_members(self, marketer_client, campaign):
        ProfileFactory(name="Bob", email="")
        text = marketer_client.get(f"/campaigns/{campaign.pk}/preview/").content.decode()
        assert "Bob" in text and "Profile not reachable" in text

    def test_preview_for_nobody_says_so(self, marketer_client, campaign):
        response = marketer_client.get(f"/campaigns/{campaign.pk}/preview/", {"q": "nobody@x.io"})
        assert "No profile holds “nobody@x.io”." in response.content.decode()


class TestSending:
    def test_marketer_may_not_send(self, marketer_client, campaign):
        assert marketer_client.post(f"/campaigns/{campaign.pk}/send/").status_code == 403
        assert marketer_client.post(f"/campaigns/{campaign.pk}/test/").status_code == 403
        assert not campaign.runs.exists()

    def test_anonymous_may_not_send(self, anonymous_client, campaign):
        assert anonymous_client.post(f"/campaigns/{campaign.pk}/send/").status_code == 302
        assert not campaign.runs.exists()

    def test_admin_test_send_reports_outcomes(self, admin_client_, campaign, settings):
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        ProfileFactory(name="T", email="t@example.com", custom={"ct_is_test_user": "Yes"})
        ProfileFactory(name="C", email="c@example.com")
        response = admin_client_.post(f"/campaigns/{campaign.pk}/test/", follow=True)
        assert "Test send done. Sent: 1." in response.content.decode()
        run = campaign.runs.get(kind=RunKind.TEST)
        assert list(run.deliveries.values_list("outcome", flat=True)) == [Outcome.SENT]

    def test_admin_send_queues_a_run_and_progress_stops_polling_when_done(
        self, admin_client_, campaign, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = admin_client_.post(f"/campaigns/{campaign.pk}/send/")
        assert response.status_code == 302 and len(callbacks) == 1
        run = campaign.runs.get(kind=RunKind.SEND)
        poll = admin_client_.get(f"/campaigns/runs/{run.pk}/", headers={"HX-Request": "true"})
        assert poll.status_code == 200 and "hx-get" in poll.content.decode()
        run.status = "done"
        run.save()
        poll = admin_client_.get(f"/campaigns/runs/{run.pk}/", headers={"HX-Request": "true"})
        assert poll.status_code == 286

    def test_report_download_is_csv(self, marketer_client, campaign):
        response = marketer_client.get(f"/campaigns/{campaign.pk}/report.csv")
        assert response["Content-Type"] == "text/csv"
        assert b"".join(response.streaming_content).startswith(b"Run,Kind,CleverTap ID")
