"""Outcomes, personalisation and sending against a real SMTP server on loopback."""

import pytest

from campaigns import selectors, services
from campaigns.models import AudienceKind, Campaign, Channel, Delivery, Outcome, RunKind
from profiles.models import Profile
from profiles.tests.factories import DeviceFactory, EventFactory, ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db

EVERYONE = {"all": []}


def campaign_for(channel=Channel.EMAIL, *, body="Hello {{ Profile.Name | default: 'there' }}",
                 subject="Hi", **fields) -> Campaign:  # fmt: skip
    segment = fields.pop("segment", None) if "segment" in fields else Segment.objects.create(
        name=f"everyone {channel} {Segment.objects.count()}", definition=EVERYONE)  # fmt: skip
    fields.setdefault("audience_kind", AudienceKind.SEGMENT)
    name = f"c-{channel}-{Campaign.objects.count()}"
    return Campaign.objects.create(name=name, channel=channel, segment=segment, subject=subject,
                                   body=body, **fields)  # fmt: skip


def send_now(campaign: Campaign):
    run = campaign.runs.create(kind=RunKind.SEND)
    return services.run_execute(run.pk)


def outcomes(run) -> dict[str, str]:
    return {
        row.profile.name: row.outcome
        for row in Delivery.objects.filter(run=run).select_related("profile")
    }


class TestEmail:
    def test_each_profile_gets_its_outcome_and_the_reachable_get_the_mail(self, smtp_inbox):
        ProfileFactory(name="Ann", email="ann@example.com")
        ProfileFactory(name="Bob", email="bob@example.com", msg_email=False)
        ProfileFactory(name="Cy", email="")
        run = send_now(campaign_for(subject="For {{ Profile.Name }}"))
        assert outcomes(run) == {"Ann": Outcome.SENT, "Bob": Outcome.PROFILE_NOT_REACHABLE,
                                 "Cy": Outcome.PROFILE_NOT_REACHABLE}  # fmt: skip
        assert [message["Subject"] for message in smtp_inbox.messages] == ["For Ann"]
        assert smtp_inbox.text(smtp_inbox.messages[0]).strip() == "Hello Ann"

    def test_a_refused_mail_is_failed_with_the_reason(self, smtp_inbox, settings):
        ProfileFactory(name="Ann", email="ann@example.com")
        settings.EMAIL_PORT = 1  # nothing listens there
        run = send_now(campaign_for())
        row = Delivery.objects.get(run=run)
        assert row.outcome == Outcome.FAILED
        assert row.error

    def test_the_report_lists_every_profile_formula_safe(self, smtp_inbox):
        ProfileFactory(name="=HYPERLINK(1)", email="ann@example.com")
        campaign = campaign_for()
        send_now(campaign)
        rows = list(selectors.report_rows(campaign))
        assert rows[0][:5] == ["Run", "Kind", "CleverTap ID", "Name", "Outcome"]
        assert rows[1][3] == "'=HYPERLINK(1)"
        assert rows[1][4] == "Sent"


class TestDuplicatePlatformId:
    def test_shared_push_token_goes_to_the_first_profile_only(self):
        first, second = ProfileFactory(name="First"), ProfileFactory(name="Second")
        DeviceFactory(profile=first, push_token="tok-1", push_enabled=True)
        DeviceFactory(profile=second, push_token="tok-1", push_enabled=True)
        ProfileFactory(name="No device")
        run = send_now(campaign_for(Channel.PUSH))
        result = outcomes(run)
        # This installation has no push provider configured: the first is refused by it.
        assert result["First"] == Outcome.FAILED
        assert result["Second"] == Outcome.DUPLICATE
        assert result["No device"] == Outcome.PROFILE_NOT_REACHABLE

    def test_shared_phone_goes_to_the_first_profile_only(self):
        ProfileFactory(name="First", phone="+15555550100")
        ProfileFactory(name="Second", phone="+15555550100")
        ProfileFactory(name="Other", phone="+15555550199")
        result = outcomes(send_now(campaign_for(Channel.SMS)))
        assert result["Second"] == Outcome.DUPLICATE
        assert result["First"] != Outcome.DUPLICATE
        assert result["Other"] != Outcome.DUPLICATE


class TestLive:
    def test_web_event_for_mobile_push_is_user_not_reachable(self, marketer):
        web_person, app_person = ProfileFactory(name="Web"), ProfileFactory(name="App")
        web = DeviceFactory(profile=web_person, platform="Web")
        DeviceFactory(profile=web_person, platform="Android", push_token="t-web-person")
        app = DeviceFactory(profile=app_person, platform="Android", push_token="t-app")
        campaign = campaign_for(Channel.PUSH, audience_kind=AudienceKind.LIVE,
                                live_event="Charged", segment=None)  # fmt: skip
        services.live_go(campaign, user=marketer)
        EventFactory(profile=web_person, device=web, name="Charged")
        EventFactory(profile=app_person, device=app, name="Charged")
        EventFactory(profile=app_person, device=app, name="Product Viewed")
        assert services.live_campaigns_scan() == 2
        result = outcomes(campaign.runs.get(kind=RunKind.LIVE))
        assert result["Web"] == Outcome.USER_NOT_REACHABLE
        assert result["App"] == Outcome.FAILED  # reached the (unconfigured) push provider

    def test_event_properties_personalise_and_a_second_scan_sends_nothing(
        self, smtp_inbox, marketer
    ):
        person = ProfileFactory(name="Ann", email="ann@example.com")
        EventFactory(profile=person, name="Charged", properties={"Amount": 1})  # before going live
        campaign = campaign_for(audience_kind=AudienceKind.LIVE, live_event="Charged",
                                segment=None, body="You paid {{ Event.Amount }}")  # fmt: skip
        services.live_go(campaign, user=marketer)
        EventFactory(profile=person, name="Charged", properties={"Amount": 42})
        assert services.live_campaigns_scan() == 1
        assert services.live_campaigns_scan() == 0
        assert [smtp_inbox.text(m).strip() for m in smtp_inbox.messages] == ["You paid 42"]


class TestPersonalisation:
    def render(self, body, *, html=False, **profile_fields):
        campaign = campaign_for(body=body, html=html)
        profile = ProfileFactory(**profile_fields)
        return services.message_for(campaign, profile, "x@example.com", "ref")

    def test_missing_property_renders_its_default_or_nothing(self):
        message = self.render("A{{ Profile.Nickname }}B {{ Profile.Nickname | default: 'friend' }}")
        assert message.body == "AB friend"

    def test_empty_name_takes_the_default(self):
        assert self.render("Hi {{ Profile.Name | default: 'there' }}", name="").body == "Hi there"

    def test_unicode_and_custom_and_system_properties(self):
        message = self.render("{{ Profile.Name }} {{ Profile.Tier }} {{ Profile.Events }}",
                              name="Zoë 日本", custom={"Tier": "Gold"}, event_count=3)  # fmt: skip
        assert message.body == "Zoë 日本 Gold 3"

    def test_html_in_a_property_is_escaped_in_html_email(self):
        message = self.render("<p>Hi {{ Profile.Name }}</p>", html=True, name="<b>x</b>")
        assert message.html == "<p>Hi &lt;b&gt;x&lt;/b&gt;</p>"

    @pytest.mark.parametrize(
        ("body", "reason"),
        [("Hi\n{% if %}", "line 2: missing expression"),
         ("Hi\n\n{{ Profile.Name | shout }}", "line 3: unknown filter 'shout'")],
    )  # fmt: skip
    def test_template_errors_are_refused_with_line_and_reason(self, body, reason):
        with pytest.raises(services.CampaignProblem, match=reason):
            services.campaign_check(Campaign(name="x", body=body, audience_kind="definition",
                                             definition=EVERYONE))  # fmt: skip


class TestTestSend:
    def test_only_test_profiles_receive_a_test_send(self, smtp_inbox, admin_user):
        ProfileFactory(name="Tester", email="t@example.com", custom={"ct_is_test_user": "Yes"})
        ProfileFactory(name="Customer", email="c@example.com")
        run = services.send_test(campaign_for(), user=admin_user)
        assert outcomes(run) == {"Tester": Outcome.SENT}
        assert [m["To"] for m in smtp_inbox.messages] == ["t@example.com"]

    def test_a_chosen_profile_must_be_a_test_profile(self, smtp_inbox, admin_user):
        customer = ProfileFactory(name="Customer", email="c@example.com")
        with pytest.raises(services.CampaignProblem, match="test profiles only"):
            services.send_test(campaign_for(), user=admin_user, profile=customer)
        assert smtp_inbox.messages == []


class TestResume:
    def test_resume_sends_the_rest_and_never_resends_a_claimed_row(self, smtp_inbox):
        for n in range(6):
            ProfileFactory(name=f"P{n}", email=f"p{n}@example.com")
        campaign = campaign_for()
        run = campaign.runs.create(kind=RunKind.SEND)
        run.total = services.outcomes_assign(run, Profile.objects.all())
        run.save()
        # A worker claimed two rows and died before reporting.
        claimed = services._claim(run, 2)
        services.run_deliver(run.pk)
        rows = {row.profile_id: row for row in Delivery.objects.filter(run=run)}
        for row in claimed:
            assert rows[row.profile_id].outcome == Outcome.FAILED
        assert sum(row.outcome == Outcome.SENT for row in rows.values()) == 4
        assert len(smtp_inbox.messages) == 4
        assert len({m["To"] for m in smtp_inbox.messages}) == 4
        # Running it again sends nothing more.
        services.run_deliver(run.pk)
        services.outcomes_assign(run, Profile.objects.all())
        assert len(smtp_inbox.messages) == 4

    def test_a_run_with_a_live_worker_is_left_alone_and_a_stale_one_is_taken_over(
        self, smtp_inbox, settings
    ):
        import datetime as dt

        from django.utils import timezone

        import campaigns.tasks  # noqa: F401  (registers the "campaign run" job type)
        from campaigns.models import RunStatus
        from config.jobs import recoverable_jobs, stale_after

        ProfileFactory(name="Ann", email="ann@example.com")
        run = campaign_for().runs.create(kind=RunKind.SEND, status=RunStatus.DELIVERING,
                                         heartbeat=timezone.now())  # fmt: skip
        # A redelivered task while the first worker still beats: nothing is sent.
        assert services.run_execute(run.pk).status == RunStatus.DELIVERING
        assert smtp_inbox.messages == []
        job = next(job for job in recoverable_jobs() if job.name == "campaign run")
        assert list(job.stale_ids(timezone.now() - stale_after())) == []
        run.heartbeat = timezone.now() - stale_after() - dt.timedelta(seconds=1)
        run.save()
        assert list(job.stale_ids(timezone.now() - stale_after())) == [run.pk]
        assert services.run_execute(run.pk).status == RunStatus.DONE
        assert [m["To"] for m in smtp_inbox.messages] == ["ann@example.com"]


class TestSeveralProcesses:
    """A send's worker processes share its rows (campaigns.tasks.campaign_run_join_task)."""

    def delivering_run(self, people: int):
        from campaigns.models import RunStatus

        for n in range(people):
            ProfileFactory(name=f"P{n}", email=f"p{n}@example.com")
        run = campaign_for().runs.create(kind=RunKind.SEND, status=RunStatus.DELIVERING)
        run.total = services.outcomes_assign(run, Profile.objects.all())
        run.save()
        return run

    def test_the_last_process_still_sending_finishes_the_run_and_nobody_gets_two(self, smtp_inbox):
        from campaigns.models import RunStatus

        run = self.delivering_run(6)
        in_other_hands = services._claim(run, 2)  # another process is sending these
        joined = services.run_join(run.pk, processes=2)
        # This process sent the rest, left the other's rows alone and did not end the run.
        assert joined.status == RunStatus.DELIVERING
        assert len(smtp_inbox.messages) == 4
        others = Delivery.objects.filter(pk__in=[row.pk for row in in_other_hands])
        assert set(others.values_list("outcome", flat=True)) == {Outcome.CLAIMED}
        # The other process stores its batch, finds nothing left and finishes the run.
        services.deliver_batch(run, in_other_hands)
        assert services.run_join(run.pk, processes=2).status == RunStatus.DONE
        assert sorted(m["To"] for m in smtp_inbox.messages) == sorted(
            f"p{n}@example.com" for n in range(6)
        )
        assert set(Delivery.objects.filter(run=run).values_list("outcome", flat=True)) == {
            Outcome.SENT
        }

    def test_rows_a_dead_process_claimed_are_failed_by_the_last_one_never_resent(self, smtp_inbox):
        import datetime as dt

        from django.utils import timezone

        from campaigns.models import RunStatus
        from config.jobs import stale_after

        run = self.delivering_run(5)
        abandoned = [row.pk for row in services._claim(run, 2)]
        Delivery.objects.filter(pk__in=abandoned).update(
            at=timezone.now() - stale_after() - dt.timedelta(seconds=1)
        )
        assert services.run_join(run.pk, processes=2).status == RunStatus.DONE
        assert len(smtp_inbox.messages) == 3
        assert set(Delivery.objects.filter(pk__in=abandoned).values_list("outcome", flat=True)) == {
            Outcome.FAILED
        }

    def test_a_process_joining_a_run_not_being_delivered_does_nothing(self, smtp_inbox):
        from campaigns.models import RunStatus

        run = self.delivering_run(2)
        run.status = RunStatus.QUEUED
        run.save()
        assert services.run_join(run.pk, processes=2).status == RunStatus.QUEUED
        assert smtp_inbox.messages == []


class TestOutcomesAcrossBatches:
    def test_a_token_given_in_an_earlier_batch_is_a_duplicate_later(self, monkeypatch):
        monkeypatch.setattr(services, "OUTCOME_BATCH_IDS", 1)  # one profile per statement
        first, second = ProfileFactory(name="First"), ProfileFactory(name="Second")
        DeviceFactory(profile=first, push_token="tok-1", push_enabled=True)
        DeviceFactory(profile=second, push_token="tok-1", push_enabled=True)
        web_only = ProfileFactory(name="Web only")
        DeviceFactory(profile=web_only, platform="Web", push_token="{}", push_enabled=True)
        run = campaign_for(Channel.PUSH).runs.create(kind=RunKind.SEND)
        assert services.outcomes_assign(run, Profile.objects.all()) == 3
        rows = {
            r.profile.name: r for r in Delivery.objects.filter(run=run).select_related("profile")
        }
        assert rows["First"].outcome == Outcome.PENDING
        assert rows["Second"].outcome == Outcome.DUPLICATE
        assert rows["Second"].error == "shared with an earlier profile"
        assert rows["Web only"].outcome == Outcome.PROFILE_NOT_REACHABLE
        assert rows["Web only"].error == "no device for this channel"
        # Assigning again (a resumed run) changes nothing.
        assert services.outcomes_assign(run, Profile.objects.all()) == 3
        assert Delivery.objects.get(run=run, profile=second).outcome == Outcome.DUPLICATE
