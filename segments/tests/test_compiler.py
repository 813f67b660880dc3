"""Every operator and type, against real PostgreSQL, with a fixed clock."""

import datetime as dt

import pytest

from profiles.models import Profile
from profiles.tests.factories import DeviceFactory, EventFactory, ProfileFactory, identified_profile
from segments.compiler import SegmentDefinitionError, compile_definition
from segments.selectors import segment_count
from segments.tests.conftest import NOW, names

pytestmark = pytest.mark.django_db


def prop(name, op, value=None):
    node = {"property": name, "op": op}
    if value is not None:
        node["value"] = value
    return node


@pytest.fixture
def people(custom_types):
    ProfileFactory(name="Ann", email="ann@example.com", gender="F", phone="+14155550001",
                   custom={"Customer Type": "Platinum", "Score": 10, "Interests": ["golf", "jazz"],
                           "Renewal": "2024-06-20T00:00:00Z", "VIP": True})  # fmt: skip
    ProfileFactory(name="Bob", email="", gender="M",
                   custom={"Customer Type": "Gold", "Score": 3.5, "Interests": "golf",
                           "Renewal": "2024-01-31T23:59:59Z", "VIP": False})  # fmt: skip
    ProfileFactory(name="Cid", custom={"Customer Type": "platinum plus", "Score": "10"})


class TestStringOperators:
    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("equals", "Platinum", {"Ann"}),
            ("not_equals", "Platinum", {"Bob", "Cid"}),
            ("contains", "PLAT", {"Ann", "Cid"}),
            ("not_contains", "plat", {"Bob"}),
            ("starts_with", "pla", {"Ann", "Cid"}),
            ("in", ["Gold", "Platinum"], {"Ann", "Bob"}),
            ("exists", None, {"Ann", "Bob", "Cid"}),
            ("not_exists", None, set()),
            ("does not contain", "plat", {"Bob"}),  # a friendly alias
        ],
    )
    def test_custom_string(self, people, op, value, expected):
        assert names(prop("Customer Type", op, value)) == expected

    def test_regex_characters_are_literal(self, custom_types):
        ProfileFactory(name="Dot", custom={"Customer Type": "a.b (x)"})
        ProfileFactory(name="Any", custom={"Customer Type": "axb x"})
        assert names(prop("Customer Type", "contains", "a.b (")) == {"Dot"}

    @pytest.mark.parametrize(
        ("name", "op", "value", "expected"),
        [
            ("Name", "equals", "Ann", {"Ann"}),
            ("Email", "exists", None, {"Ann"}),
            ("email", "not_exists", None, {"Bob", "Cid"}),  # names are case-insensitive
            ("Gender", "in", ["M", "F"], {"Ann", "Bob"}),
            ("Phone", "starts_with", "+1415", {"Ann"}),
            ("Name", "not_equals", "Ann", {"Bob", "Cid"}),
            ("Name", "contains", "O", {"Bob"}),
        ],
    )
    def test_default_columns(self, people, name, op, value, expected):
        assert names(prop(name, op, value)) == expected


class TestNumberOperators:
    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("=", 10, {"Ann"}),  # Cid's "10" is a string, not a number
            ("!=", 10, {"Bob"}),
            (">", 3.5, {"Ann"}),
            (">=", 3.5, {"Ann", "Bob"}),
            ("<", 10, {"Bob"}),
            ("<=", 10, {"Ann", "Bob"}),
            ("between", [3.5, 9], {"Bob"}),
            ("≥", 10, {"Ann"}),
            ("exists", None, {"Ann", "Bob", "Cid"}),
        ],
    )
    def test_number(self, people, op, value, expected):
        assert names(prop("Score", op, value)) == expected


class TestBooleanOperators:
    def test_custom_boolean(self, people):
        assert names(prop("VIP", "is_true")) == {"Ann"}
        assert names(prop("VIP", "is_false")) == {"Bob"}
        assert names(prop("VIP", "not_exists")) == {"Cid"}

    def test_default_boolean_columns(self, db):
        ProfileFactory(name="Opted", msg_sms=True, employed=True)
        ProfileFactory(name="Out", msg_sms=False, employed=False)
        ProfileFactory(name="Unknown")
        assert names(prop("MSG-sms", "is_true")) == {"Opted"}
        assert names(prop("MSG-sms", "is_false")) == {"Out"}
        assert names(prop("Employed", "not_exists")) == {"Unknown"}


class TestDateOperators:
    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("before", "2024-01-31", set()),  # the 31st itself is not before the 31st
            ("before", "2024-02-01", {"Bob"}),
            ("after", "2024-01-31", {"Ann"}),
            ("after", "2024-01-30", {"Ann", "Bob"}),
            ("between", ["2024-01-31", "2024-01-31"], {"Bob"}),  # whole days, inclusive
            ("between", ["2024-01-01T00:00:00Z", "2024-06-20T00:00:00Z"], {"Ann", "Bob"}),
            ("in_next_days", 5, {"Ann"}),  # 2024-06-20 is 4.5 days after NOW
            ("in_next_days", 4, set()),
            ("in_last_days", 136, {"Bob"}),
            ("in_last_days", 135, set()),
        ],
    )
    def test_custom_date(self, people, op, value, expected):
        assert names(prop("Renewal", op, value)) == expected

    def test_dob_column(self, db):
        ProfileFactory(name="Leap", dob=dt.date(2000, 2, 29))
        ProfileFactory(name="March", dob=dt.date(2000, 3, 1))
        assert names(prop("DOB", "before", "2000-03-01")) == {"Leap"}
        assert names(prop("DOB", "after", "2000-02-29")) == {"March"}
        assert names(prop("DOB", "between", ["2000-02-29", "2000-03-01"])) == {"Leap", "March"}
        assert names(prop("DOB", "exists")) == {"Leap", "March"}


class TestMultiValueOperators:
    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("contains_any", ["jazz", "chess"], {"Ann"}),
            ("contains_any", ["golf"], {"Ann", "Bob"}),  # Bob holds a single string
            ("contains_all", ["golf", "jazz"], {"Ann"}),
            ("contains_all", ["golf"], {"Ann", "Bob"}),
            ("contains_none", ["jazz"], {"Bob", "Cid"}),
            ("not_exists", None, {"Cid"}),
        ],
    )
    def test_list(self, people, op, value, expected):
        assert names(prop("Interests", op, value)) == expected


class TestAge:
    TODAY = NOW.date()  # 2024-06-15

    @pytest.fixture
    def ages(self, db):
        ProfileFactory(name="25 today", dob=dt.date(1999, 6, 15))
        ProfileFactory(name="25 tomorrow", dob=dt.date(1999, 6, 16))
        ProfileFactory(name="30 turns 31 today", dob=dt.date(1993, 6, 15))
        ProfileFactory(name="30", dob=dt.date(1993, 6, 16))
        ProfileFactory(name="no dob")

    def test_between_is_inclusive_and_birthday_today_counts(self, ages):
        assert names({"system": "age", "op": "between", "value": [25, 30]}) == {"25 today", "30"}

    def test_greater_and_less(self, ages):
        assert names({"system": "age", "op": ">=", "value": 31}) == {"30 turns 31 today"}
        assert names({"system": "age", "op": "<=", "value": 24}) == {"25 tomorrow"}
        assert names({"system": "age", "op": "=", "value": 25}) == {"25 today"}

    def test_29_february_birthday(self, db):
        ProfileFactory(name="leapling", dob=dt.date(2000, 2, 29))
        # Non-leap year: the 29 February birthday is reached on 1 March, not on the 28th.
        feb_28 = dt.datetime(2023, 2, 28, 12, tzinfo=dt.UTC)
        mar_1 = dt.datetime(2023, 3, 1, 12, tzinfo=dt.UTC)
        assert names({"system": "age", "op": ">=", "value": 23}, now=feb_28) == set()
        assert names({"system": "age", "op": ">=", "value": 23}, now=mar_1) == {"leapling"}
        # Leap year: on the day itself.
        feb_28_leap = dt.datetime(2024, 2, 28, 12, tzinfo=dt.UTC)
        feb_29_leap = dt.datetime(2024, 2, 29, 12, tzinfo=dt.UTC)
        assert names({"system": "age", "op": "=", "value": 24}, now=feb_28_leap) == set()
        assert names({"system": "age", "op": "=", "value": 24}, now=feb_29_leap) == {"leapling"}


class TestSystemConditions:
    def test_profile_type_and_test_profiles(self, db):
        identified_profile("u1", name="Known")
        ProfileFactory(name="Anon")
        ProfileFactory(name="Tester", custom={"ct_is_test_user": "Yes"})
        known = {"system": "profile_type", "op": "equals", "value": "identified"}
        assert names(known) == {"Known"}
        assert names({**known, "value": "anonymous"}) == {"Anon", "Tester"}
        assert names({"system": "test_profile", "op": "is_true"}) == {"Tester"}
        assert names({"system": "test_profile", "op": "is_false"}) == {"Known", "Anon"}

    def test_reachable_channels(self, db):
        ProfileFactory(name="Mail", email="a@example.com")
        ProfileFactory(name="Mail opted out", email="b@example.com", msg_email=False)
        ProfileFactory(name="Phone", phone="+14155550001", msg_sms=True, msg_whatsapp=False)
        ProfileFactory(name="Nothing")
        push = ProfileFactory(name="Push")
        DeviceFactory(profile=push, push_token="tok-1", push_enabled=None)
        blocked = ProfileFactory(name="Push blocked")
        DeviceFactory(profile=blocked, push_token="tok-2", push_enabled=False)
        DeviceFactory(profile=ProfileFactory(name="No token"), push_token="")
        opted = ProfileFactory(name="Push opted out", msg_push=False)
        DeviceFactory(profile=opted, push_token="tok-3", push_enabled=True)

        def reachable(channel):
            return names({"system": "reachable", "op": "equals", "value": channel})

        assert reachable("email") == {"Mail"}
        assert reachable("sms") == {"Phone"}
        assert reachable("whatsapp") == set()
        assert reachable("push") == {"Push"}

    def test_first_and_last_seen_windows(self, db):
        ProfileFactory(name="Recent", first_seen=NOW - dt.timedelta(days=2), last_seen=NOW)
        ProfileFactory(name="Old", first_seen=NOW - dt.timedelta(days=400),
                       last_seen=NOW - dt.timedelta(days=40))  # fmt: skip
        ProfileFactory(name="Never", first_seen=None, last_seen=None)
        assert names({"system": "first_seen", "op": "in_last_days", "value": 7}) == {"Recent"}
        assert names({"system": "last_seen", "op": "before", "value": "2024-06-01"}) == {"Old"}
        assert names({"system": "last_seen", "op": "between",
                      "value": ["2024-05-01", "2024-06-15"]}) == {"Old", "Recent"}  # fmt: skip


class TestEvents:
    @pytest.fixture
    def buyers(self, db):
        def buyer(name, *days_and_amounts, event="Charged"):
            profile = ProfileFactory(name=name)
            for days, amount in days_and_amounts:
                EventFactory(profile=profile, name=event, ts=NOW - dt.timedelta(days=days),
                             properties={"Amount": amount, "Plan": "pro"})  # fmt: skip
            return profile

        buyer("twice recently", (1, 100), (29, 300))
        buyer("twice at the edge", (1, 50), (30, 50))  # exactly 30 days ago counts
        buyer("once plus one too old", (1, 600), (30.0001, 600))
        buyer("thrice", (2, 10), (3, 10), (4, 10))
        buyer("viewer", (1, 0), event="Product Viewed")
        ProfileFactory(name="idle")

    def test_did_and_did_not(self, buyers):
        everyone = {"twice recently", "twice at the edge", "once plus one too old", "thrice"}
        assert names({"event": "Charged", "op": "did"}) == everyone
        assert names({"event": "Charged", "op": "did_not"}) == {"viewer", "idle"}

    def test_count_in_window_at_the_edges(self, buyers):
        twice = {"event": "Charged", "op": "did", "count": {"op": ">=", "value": 2},
                 "within_days": 30}  # fmt: skip
        assert names(twice) == {"twice recently", "twice at the edge", "thrice"}
        exactly = {**twice, "count": {"op": "=", "value": 2}}
        assert names(exactly) == {"twice recently", "twice at the edge"}
        at_most = {**twice, "count": {"op": "<=", "value": 2}}
        assert names(at_most) == {"twice recently", "twice at the edge", "once plus one too old"}
        assert names({**twice, "within_days": 29}) == {"twice recently", "thrice"}
        assert names({**twice, "within_days": 28}) == {"thrice"}

    def test_between_two_dates(self, buyers):
        window = {"event": "Charged", "op": "did", "from": "2024-05-16", "to": "2024-05-16"}
        assert names(window) == {"twice at the edge", "once plus one too old"}
        since = {"event": "Charged", "op": "did", "from": "2024-06-13T12:00:00Z"}
        assert names(since) == {"twice recently", "twice at the edge", "once plus one too old",
                                "thrice"}  # fmt: skip

    def test_where_filters(self, buyers):
        big = {"event": "Charged", "op": "did", "within_days": 30,
               "where": [{"property": "Amount", "op": ">", "value": 100}]}  # fmt: skip
        assert names(big) == {"twice recently", "once plus one too old"}
        plan = {"event": "Charged", "op": "did", "where": [
            {"property": "Plan", "op": "equals", "value": "pro"},
            {"property": "Amount", "op": "between", "value": [10, 50]}]}  # fmt: skip
        assert names(plan) == {"twice at the edge", "thrice"}

    def test_sum_and_average(self, buyers):
        def aggregate(fn, op, value, **extra):
            total = {"fn": fn, "property": "Amount", "op": op, "value": value}
            return names({"event": "Charged", "op": "did", **extra, "aggregate": total})

        assert aggregate("sum", ">=", 400) == {"twice recently", "once plus one too old"}
        assert aggregate("sum", ">=", 400, within_days=30) == {"twice recently",
                                                               "once plus one too old"}  # fmt: skip
        assert aggregate("sum", "<", 100) == {"thrice"}  # nobody who never charged
        assert aggregate("avg", "=", 200) == {"twice recently"}
        assert aggregate("avg", "between", [10, 50]) == {"twice at the edge", "thrice"}
        assert aggregate("sum", ">=", 600, within_days=30) == {"once plus one too old"}

    def test_non_numeric_amounts_are_ignored_not_errors(self, db):
        odd = ProfileFactory(name="odd")
        EventFactory(profile=odd, name="Charged", ts=NOW, properties={"Amount": "lots"})
        EventFactory(profile=odd, name="Charged", ts=NOW, properties={"Amount": 5})
        sum_is_5 = {"fn": "sum", "property": "Amount", "op": "=", "value": 5}
        total = {"event": "Charged", "op": "did", "aggregate": sum_is_5}
        assert names(total) == {"odd"}

    def test_linked_anonymous_events_never_count_for_the_person(self, db):
        person = identified_profile("x-1", name="Person")
        anonymous = ProfileFactory(name="Anonymous part", linked_to=person)
        for days in (1, 2, 3):
            EventFactory(profile=anonymous, name="Charged", ts=NOW - dt.timedelta(days=days),
                         properties={"Amount": 1000})  # fmt: skip
        EventFactory(profile=person, name="Charged", ts=NOW, properties={"Amount": 1})
        twice = {"event": "Charged", "op": "did", "count": {"op": ">=", "value": 2}}
        assert "Person" not in names(twice)
        more_than_1 = {"fn": "sum", "property": "Amount", "op": ">", "value": 1}
        rich = {"event": "Charged", "op": "did", "aggregate": more_than_1}
        assert "Person" not in names(rich)
        # The anonymous profile is its own user (scenario 2): its events are its own.
        assert names(twice) == {"Anonymous part"}


class TestLogic:
    def test_negation_and_nesting(self, people):
        definition = {"any": [
            {"all": [prop("Score", ">=", 3), {"not": prop("VIP", "is_true")}]},
            {"not": {"any": [prop("Customer Type", "contains", "plat"), prop("Score", "<", 5)]}},
        ]}  # fmt: skip
        assert names(definition) == {"Bob"}
        assert names({"not": definition}) == {"Ann", "Cid"}
        assert names({"all": []}) == {"Ann", "Bob", "Cid"}

    def test_one_query(self, people, django_assert_num_queries):
        definition = {"all": [prop("Score", ">", 1), {"system": "age", "op": ">=", "value": 1},
                              {"event": "Charged", "op": "did_not"}]}  # fmt: skip
        q = compile_definition(definition, now=NOW)
        with django_assert_num_queries(1):
            assert Profile.objects.filter(q).count() == 0


class TestInvalidDefinitions:
    @pytest.mark.parametrize(
        ("definition", "path", "message"),
        [
            ([], "$", "expected an object"),
            ({"all": {}}, "$.all", "expected a list"),
            ({"any": []}, "$.any", "at least one condition"),
            ({"all": [], "any": []}, "$", "not both"),
            ({"all": [{"foo": 1}]}, "$.all[0]", 'got keys "foo"'),
            ({"all": [{"property": "Nope", "op": "equals", "value": "x"}]}, "$.all[0].property",
             'unknown property "Nope"'),
            ({"property": "Score", "op": "contains", "value": "x"}, "$.op",
             '"contains" is not an operator for Score (number)'),
            ({"property": "Score", "value": 1}, "$.op", '"op" is required'),
            ({"property": "Score", "op": ">", "value": "ten"}, "$.value", "expected a number"),
            ({"property": "Score", "op": "between", "value": [5, 1]}, "$.value", "greater than"),
            ({"property": "Score", "op": "between", "value": 5}, "$.value", "two values"),
            ({"property": "Renewal", "op": "before", "value": "31/01/2024"}, "$.value",
             "not a valid date"),
            ({"property": "Interests", "op": "contains_any", "value": []}, "$.value",
             "non-empty list"),
            ({"property": "Score", "op": ">", "value": 1, "extra": 1}, "$", 'unknown key "extra"'),
            ({"property": "Age", "op": ">", "value": 1}, "$.property", "derived from DOB"),
            ({"system": "age", "op": "between", "value": [30]}, "$.value", "two values"),
            ({"system": "height", "op": "=", "value": 1}, "$.system", "unknown system"),
            ({"system": "reachable", "op": "equals", "value": "pigeon"}, "$.value", "channel"),
            ({"event": "", "op": "did"}, "$.event", "expected an event name"),
            ({"event": "Charged", "op": "done"}, "$.op", '"done" is not an operator'),
            ({"event": "Charged", "op": "did", "within_days": 0}, "$.within_days", "at least 1"),
            ({"event": "Charged", "op": "did", "within_days": 3, "from": "2024-01-01"}, "$",
             "not both"),
            ({"event": "Charged", "op": "did", "from": "2024-02-01", "to": "2024-01-01"}, "$.to",
             "before"),
            ({"event": "Charged", "op": "did", "count": {"op": "=", "value": 0}}, "$.count",
             "did_not"),
            ({"event": "Charged", "op": "did", "count": {"op": ">=", "value": 1.5}},
             "$.count.value", "whole number"),
            ({"event": "Charged", "op": "did", "count": {"op": ">=", "value": ""}},
             "$.count.value", "enter how many times: a whole number, 1 or more."),
            ({"event": "Charged", "op": "did", "count": {"op": ">=", "value": 0}},
             "$.count.value", "at least 0 times matches everybody"),
            ({"event": "Charged", "op": "did", "within_days": ""}, "$.within_days",
             "enter a whole number, 1 or more"),
            ({"event": "Charged", "op": "did", "aggregate": {"fn": "max", "property": "A",
              "op": ">", "value": 1}}, "$.aggregate.fn", '"sum" or "avg"'),
            ({"event": "Charged", "op": "did", "where": [{"property": "Amount", "op": ">",
              "value": "x"}]}, "$.where[0].value", "expected a number"),
            ({"event": "Charged", "op": "did", "where": {}}, "$.where", "expected a list"),
            ({"not": {"all": [{"not": {"property": "Score", "op": "?"}}]}}, "$.not.all[0].not.op",
             "not an operator"),
        ],
    )  # fmt: skip
    def test_error_names_the_node(self, custom_types, definition, path, message):
        with pytest.raises(SegmentDefinitionError) as error:
            compile_definition(definition, now=NOW)
        assert error.value.path == path
        assert message in error.value.message

    def test_too_deep_and_too_many(self, custom_types):
        deep = {"all": []}
        for _ in range(12):
            deep = {"all": [deep]}
        with pytest.raises(SegmentDefinitionError, match="nested more than"):
            compile_definition(deep)
        many = {"any": [{"property": "Score", "op": ">", "value": i} for i in range(101)]}
        with pytest.raises(SegmentDefinitionError, match="at most 100 conditions"):
            compile_definition(many)

    def test_count_of_an_invalid_definition_raises_the_same_error(self, custom_types):
        with pytest.raises(SegmentDefinitionError):
            segment_count({"property": "Score", "op": "like", "value": 1})
