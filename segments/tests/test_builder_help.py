"""What the builder tells a person besides the count: unknown event names with
suggestions, value suggestions, the reachable breakdown and the system segments' size."""

import json

import pytest

from profiles.models import Device, EventName, Profile, PropertyDefinition
from profiles.tests.factories import ProfileFactory
from segments import selectors
from segments.compiler import definition_event_names
from segments.models import Segment
from segments.services import segment_system_recount

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def test_event_names_of_a_definition_in_order_once_each():
    definition = {"all": [
        {"event": "Charged", "op": "did"},
        {"not": {"any": [{"event": "Viewed", "op": "did"}, {"event": "Charged", "op": "did"}]}},
        {"property": "Name", "op": "exists"}, "junk", {"event": 3},
    ]}  # fmt: skip
    assert definition_event_names(definition) == ["Charged", "Viewed"]


class TestUnknownEvents:
    @pytest.fixture(autouse=True)
    def names(self, db):
        for name in ("Charged", "Charge Refunded", "App Launched"):
            EventName.objects.create(name=name)

    def test_known_names_are_not_flagged(self):
        assert selectors.segment_unknown_events({"event": "Charged", "op": "did"}) == []

    def test_half_typed_name_suggests_what_it_begins(self):
        unknown = selectors.segment_unknown_events({"event": "Charg", "op": "did"})
        assert unknown == [{"name": "Charg", "suggestions": ["Charge Refunded", "Charged"]}]

    def test_misspelt_name_suggests_close_spellings(self):
        unknown = selectors.segment_unknown_events({"event": "app lanched", "op": "did"})
        assert unknown[0]["suggestions"] == ["App Launched"]

    def test_nothing_alike_has_no_suggestions(self):
        unknown = selectors.segment_unknown_events({"event": "Zzzz", "op": "did"})
        assert unknown == [{"name": "Zzzz", "suggestions": []}]

    def test_live_count_says_so(self, marketer_client):
        definition = {"all": [{"event": "Charg", "op": "did"}]}
        response = marketer_client.post(
            "/segments/count/", {"definition": json.dumps(definition)}, **HX
        )
        text = response.content.decode()
        assert "No event named “Charg” yet" in text
        assert 'data-suggestion="Charged"' in text


class TestValueSuggestions:
    @pytest.fixture
    def plans(self, db):
        PropertyDefinition.objects.create(scope="profile", name="Plan", type="string")
        PropertyDefinition.objects.create(scope="profile", name="Score", type="number")
        for plan, how_many in (("Gold", 3), ("Silver", 2), ("Bronze", 1)):
            for _ in range(how_many):
                ProfileFactory(custom={"Plan": plan, "Score": 4}, gender="F" if plan else "")
        ProfileFactory(custom={"Plan": ""})

    def test_most_common_first(self, plans):
        assert selectors.property_value_suggestions(name="Plan") == ["Gold", "Silver", "Bronze"]

    def test_default_property_column(self, plans):
        assert selectors.property_value_suggestions(name="Gender") == ["F"]

    def test_not_text_or_unknown_gives_nothing(self, plans):
        assert selectors.property_value_suggestions(name="Score") == []
        assert selectors.property_value_suggestions(name="DOB") == []
        assert selectors.property_value_suggestions(name="Nope'; drop table x; --") == []

    def test_endpoint_with_three_people(self, plans, marketer_client, outsider_client,
                                        anonymous_client):  # fmt: skip
        response = marketer_client.get("/segments/values/", {"property": "Plan"})
        assert response.json() == {"values": ["Gold", "Silver", "Bronze"]}
        assert outsider_client.get("/segments/values/", {"property": "Plan"}).status_code == 403
        anonymous = anonymous_client.get("/segments/values/", {"property": "Plan"})
        assert anonymous.status_code == 302 and "/accounts/login/" in anonymous.url


class TestReach:
    @pytest.fixture
    def segment(self, db):
        ProfileFactory(name="mail", email="a@example.com")
        ProfileFactory(name="opted out", email="b@example.com", msg_email=False)
        phone = ProfileFactory(name="phone", phone="+14155550100", msg_whatsapp=True)
        Device.objects.create(object_id="__d1", profile=phone, push_token="tok", platform="Android")
        ProfileFactory(name="nothing")
        return Segment.objects.create(name="Everyone", definition={"all": []})

    def test_breakdown_follows_the_reachable_condition(self, segment):
        rows = selectors.segment_reach(segment.definition)
        reach = {row["channel"]: row["count"] for row in rows}
        assert reach == {"email": 1, "sms": 1, "whatsapp": 1, "push": 1}
        for channel, count in reach.items():
            condition = {"system": "reachable", "op": "equals", "value": channel}
            assert selectors.segment_count(condition) == count

    def test_page_with_three_people(self, segment, marketer_client, outsider_client,
                                    anonymous_client):  # fmt: skip
        response = marketer_client.get(f"/segments/{segment.pk}/reach/", **HX)
        assert response.status_code == 200
        text = response.content.decode()
        assert 'data-channel="email"' in text and "Of 4 people" in text
        assert outsider_client.get(f"/segments/{segment.pk}/reach/").status_code == 403
        assert anonymous_client.get(f"/segments/{segment.pk}/reach/").status_code == 302


def test_system_segments_get_their_size_from_the_recount(marketer_client):
    ProfileFactory(custom={"ct_is_test_user": "Yes"})
    ProfileFactory()
    text = marketer_client.get("/segments/").content.decode()
    assert "not counted yet" in text
    segment_system_recount()
    sizes = dict(Segment.objects.exclude(system_key=None).values_list("system_key", "last_count"))
    assert sizes == {"all_users": Profile.objects.count(), "test_users": 1}
    text = marketer_client.get("/segments/").content.decode()
    assert "as of" in text and "not counted yet" not in text


def test_beat_recounts_the_system_segments_on_a_real_worker(settings, celery_worker_real):
    import time

    from segments.tasks import segment_system_recount_task

    entry = settings.CELERY_BEAT_SCHEDULE["segments-system-recount"]
    assert entry["task"] == segment_system_recount_task.name
    ProfileFactory()
    segment_system_recount_task.delay()
    deadline = time.monotonic() + 60
    while Segment.objects.filter(system_key="all_users", last_count=None).exists():
        assert time.monotonic() < deadline, "the worker never counted the system segments"
        time.sleep(0.2)
    assert Segment.objects.get(system_key="all_users").last_count == 1
