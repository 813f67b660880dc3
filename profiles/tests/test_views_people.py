"""Find People (/people/): search, filters, table, htmx partial, permissions."""

from __future__ import annotations

import datetime as dt
import re

import factory
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from profiles.models import PropertyDefinition, PropertyScope
from profiles.tests.factories import DeviceFactory, IdentifierFactory, ProfileFactory
from profiles.tests.roles import ensure_role_groups

URL = reverse("profiles:find_people")


@pytest.fixture(autouse=True)
def _role_groups(db) -> None:
    ensure_role_groups()


def names(response) -> list[str]:
    """The names in the results table, in order."""
    html = response.content.decode()
    body = html.split("<tbody", 1)[1] if "<tbody" in html else ""
    return re.findall(r'<td><a href="/people/[^"]+/"(?: class="muted")?>([^<]*)</a>', body)


def person(name: str, *, identity: str | None = None, seen_days_ago: float | None = 1, **fields):
    last_seen = (
        timezone.now() - dt.timedelta(days=seen_days_ago) if seen_days_ago is not None else None
    )
    profile = ProfileFactory(name=name, last_seen=last_seen, **fields)
    if identity:
        IdentifierFactory(profile=profile, kind="identity", value=identity)
    profile.refresh_from_db()
    return profile


@pytest.fixture
def mark(db):
    profile = person(
        "Mark Twain", identity="mark-1", email="mark@example.com", phone="+14155551234"
    )
    IdentifierFactory(profile=profile, kind="email", value="mark@example.com")
    IdentifierFactory(profile=profile, kind="phone", value="+14155551234")
    DeviceFactory(profile=profile, object_id="__device-of-mark", push_token="token-1")
    return profile


# --- who may see it -------------------------------------------------------------------


def test_marketer_sees_find_people(marketer_client, mark):
    response = marketer_client.get(URL)
    assert response.status_code == 200
    assert "<h1>Find People</h1>" in response.content.decode()
    assert names(response) == ["Mark Twain"]


def test_admin_sees_find_people(admin_client_, mark):
    assert admin_client_.get(URL).status_code == 200


def test_person_in_no_group_gets_403(outsider_client, mark):
    response = outsider_client.get(URL)
    assert response.status_code == 403
    assert "profiles.view_profile" in response.content.decode()


def test_anonymous_visitor_is_sent_to_login(anonymous_client, mark):
    response = anonymous_client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/people/")


def test_post_is_not_allowed(marketer_client):
    assert marketer_client.post(URL).status_code == 405


# --- full page and htmx partial -------------------------------------------------------


def test_htmx_request_gets_only_the_results(marketer_client, mark):
    response = marketer_client.get(URL, {"q": "mark"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html and 'role="search"' not in html  # not the search form again
    assert names(response) == ["Mark Twain"]
    assert "HX-Request" in response["Vary"]


def test_without_htmx_the_whole_page_with_the_search_filled_in(marketer_client, mark):
    response = marketer_client.get(URL, {"q": "mark"})
    html = response.content.decode()
    assert "<html" in html and 'id="results"' in html
    assert 'name="q" value="mark"' in html
    # The form works without JavaScript (GET to the same URL) and drives htmx with it.
    assert 'method="get" action="/people/"' in html
    assert 'hx-get="/people/"' in html and 'hx-push-url="true"' in html
    assert "input changed delay:300ms, search" in html


def test_history_restore_gets_the_whole_page(marketer_client, mark):
    response = marketer_client.get(
        URL, {"q": "mark"}, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in response.content.decode()


# --- search ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "mark-1",  # identity
        "  MARK@Example.com ",  # email, normalized
        "+14155551234",  # phone, E.164
        "(415) 555-1234",  # phone, local formats (default region US)
        "415-555-1234",
        "415.555.1234",
        "+1 415 555 1234",
        "001 415 555 1234",
        "__device-of-mark",  # device objectId
        "Mark",  # name prefix, any case
        "mark tw",
        "MARK",
    ],
)
def test_search_finds_mark_by_each_kind_of_identifier(marketer_client, mark, query):
    person("Somebody Else", identity="other-1")
    response = marketer_client.get(URL, {"q": query})
    assert names(response) == ["Mark Twain"]


def test_search_by_clevertap_id(marketer_client, mark):
    person("Somebody Else", identity="other-1")
    assert names(marketer_client.get(URL, {"q": mark.ct_id})) == ["Mark Twain"]


def test_name_search_is_a_prefix_not_a_substring(marketer_client, mark):
    response = marketer_client.get(URL, {"q": "twain"})
    assert names(response) == []
    assert "No one matches “twain”" in response.content.decode()


def test_identifiers_match_exactly_not_by_prefix(marketer_client, mark):
    assert names(marketer_client.get(URL, {"q": "mark-"})) == []
    assert names(marketer_client.get(URL, {"q": "mark@example"})) == []


def test_name_prefix_search_uses_the_upper_name_index(mark):
    from profiles.selectors import people_list, people_search_q

    # Statistics of a table with many people: with a handful of rows (and whatever
    # statistics earlier tests left) the planner may as well walk the last_seen
    # index and filter, which is no evidence about the name index either way.
    ProfileFactory.create_batch(2000, name=factory.Sequence(lambda n: f"Person {n}"))
    queryset = people_list().filter(people_search_q(query="mar"))
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "profile_name_prefix" in plan


def test_searches_skip_the_nameless_visitors_a_web_sdk_adds(marketer_client, mark):
    """A site's SDK adds an anonymous, nameless profile per new browser, all seen just now:
    an identified filter and a name prefix, listed by last seen, walk an index without
    them (else each page steps over all of them first), and still find the right people."""
    from profiles.filters import PeopleFilter
    from profiles.selectors import people_list, people_search_q

    ProfileFactory.create_batch(3000, name="")  # seen now, newer than everyone below
    ProfileFactory(name="Marie Named", last_seen=timezone.now() - dt.timedelta(hours=1))
    filtered = PeopleFilter({"type": "identified"}, queryset=people_list()).qs
    searched = people_list().filter(people_search_q(query="mar"))
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")
        cursor.execute("SET enable_seqscan = off")
        # A prefix matching many names is listed in last-seen order: without the name
        # index (dropped inside this test's transaction) that is the plan to check.
        cursor.execute("DROP INDEX profile_name_prefix")
        for queryset in (filtered, searched):
            sql, params = queryset[:51].query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("RESET enable_seqscan")
    assert all("profile_known_last_seen" in plan for plan in plans), plans
    assert names(marketer_client.get(URL, {"type": "identified"})) == ["Mark Twain"]
    assert names(marketer_client.get(URL, {"q": "mar"})) == ["Marie Named", "Mark Twain"]


# --- states ---------------------------------------------------------------------------


def test_empty_state_says_what_to_try_and_lists_recent_people(marketer_client, mark):
    html = marketer_client.get(URL).content.decode()
    assert "No search yet" in html and "(415) 555-1234" in html
    assert "the most recently seen people" in html


def test_empty_database_says_how_data_arrives(marketer_client, db):
    html = marketer_client.get(URL).content.decode()
    assert "No search yet" in html and "There is nobody here yet" in html


def test_no_result_state_says_what_to_try(marketer_client, mark):
    html = marketer_client.get(URL, {"q": "zebra", "has_phone": "on"}).content.decode()
    assert "No one matches “zebra” with these filters" in html
    assert "country code" in html
    assert 'href="/people/?q=zebra">fewer filters</a>' in html
    assert "<table" not in html


def test_user_data_is_escaped(marketer_client, db):
    person("<script>alert(1)</script>", identity="<b>x</b>")
    html = marketer_client.get(URL, {"q": "<script"}).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "No one matches “&lt;script" not in html  # it was found


# --- filters --------------------------------------------------------------------------


@pytest.fixture
def crowd(db, mark):
    """Mark (identified, email, phone, push, seen yesterday) and four others."""
    anonymous = person("Anon Ymous", seen_days_ago=40)
    tester = person(
        "Tess Tester", identity="tess", seen_days_ago=2, custom={"ct_is_test_user": "Yes"}
    )
    emailer = person(
        "Emma Mailer", identity="emma", seen_days_ago=3, email="emma@example.com", gender="F"
    )
    DeviceFactory(profile=emailer, push_token="")  # a device without a push token
    never_seen = person("Nev Erseen", identity="nev", seen_days_ago=None, phone="+442079460958")
    return {"anonymous": anonymous, "tester": tester, "emailer": emailer, "never": never_seen}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "anonymous"}, ["Anon Ymous"]),
        ({"type": "identified"}, ["Mark Twain", "Tess Tester", "Emma Mailer", "Nev Erseen"]),
        ({"test": "on"}, ["Tess Tester"]),
        ({"has_email": "on"}, ["Mark Twain", "Emma Mailer"]),
        ({"has_phone": "on"}, ["Mark Twain", "Nev Erseen"]),
        ({"has_push": "on"}, ["Mark Twain"]),
        ({"seen_within": "7"}, ["Mark Twain", "Tess Tester", "Emma Mailer"]),
        ({"seen_within": "60", "type": "anonymous"}, ["Anon Ymous"]),
        ({"prop": "Gender", "value": "female"}, ["Emma Mailer"]),
        ({"prop": "email", "value": "EMMA@example.com"}, ["Emma Mailer"]),
        ({"prop": "ct_is_test_user", "value": "Yes"}, ["Tess Tester"]),
        ({"q": "e", "has_email": "on"}, ["Emma Mailer"]),
    ],
)
def test_filters(marketer_client, crowd, params, expected):
    # Same order as the default listing: most recently seen first, never seen last.
    ordered = [p for p in ["Mark Twain", "Tess Tester", "Emma Mailer", "Anon Ymous", "Nev Erseen"]
               if p in expected]  # fmt: skip
    assert names(marketer_client.get(URL, params)) == ordered


@pytest.mark.parametrize(
    ("type_", "stored", "typed"),
    [
        ("string", "Gold", "Gold"),
        ("number", 42, "42"),
        ("number", 4.5, "4.5"),
        ("boolean", True, "yes"),
        ("list", ["golf", "chess"], "chess"),
        ("date", "2024-01-31T12:00:00Z", "2024-01-31"),
    ],
)
def test_custom_property_filter_by_type(marketer_client, db, type_, stored, typed):
    PropertyDefinition.objects.create(scope=PropertyScope.PROFILE, name="Pick Me", type=type_)
    person("Chosen One", custom={"Pick Me": stored})
    person("Not Chosen", custom={"Pick Me": [] if type_ == "list" else None})
    assert names(marketer_client.get(URL, {"prop": "Pick Me", "value": typed})) == ["Chosen One"]


def test_property_filter_refuses_a_value_the_property_cannot_hold(marketer_client, db):
    PropertyDefinition.objects.create(scope=PropertyScope.PROFILE, name="Score", type="number")
    person("Somebody", custom={"Score": 3})
    html = marketer_client.get(URL, {"prop": "Score", "value": "lots"}).content.decode()
    assert "Score holds numbers: “lots” is not one." in html
    html = marketer_client.get(
        URL, {"prop": "Gender", "value": "maybe"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "Gender needs to be M/F." in html  # shown in the htmx results too


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_number_filter_refuses_values_that_are_not_finite(marketer_client, db, value):
    PropertyDefinition.objects.create(scope=PropertyScope.PROFILE, name="Score", type="number")
    response = marketer_client.get(URL, {"prop": "Score", "value": value})
    assert response.status_code == 200
    assert "Score holds finite numbers" in response.content.decode()


def test_property_without_value_asks_for_one(marketer_client, mark):
    html = marketer_client.get(URL, {"prop": "Gender"}).content.decode()
    assert "Type the value the property must have." in html


# --- table: sorting, pagination, query counts -----------------------------------------


def test_default_listing_is_most_recently_seen_first_never_seen_last(marketer_client, db):
    person("Old", seen_days_ago=30)
    person("Never", seen_days_ago=None)
    person("Fresh", seen_days_ago=0.1)
    assert names(marketer_client.get(URL)) == ["Fresh", "Old", "Never"]


def test_sort_by_name_and_events(marketer_client, db):
    person("Bea", event_count=5)
    person("Abe", event_count=1)
    person("Cy", event_count=9)
    assert names(marketer_client.get(URL, {"sort": "name"})) == ["Abe", "Bea", "Cy"]
    assert names(marketer_client.get(URL, {"sort": "-name"})) == ["Cy", "Bea", "Abe"]
    assert names(marketer_client.get(URL, {"sort": "-event_count"})) == ["Cy", "Bea", "Abe"]
    html = marketer_client.get(URL, {"sort": "name", "q": "a"}).content.decode()
    assert 'href="?sort=-name&amp;q=a"' in html  # the next click reverses, keeping the search
    assert 'name="sort" value="name"' in html  # typing keeps the chosen order


def test_pagination_never_counts_the_rows(marketer_client, db):
    for index in range(30):
        person(f"Person {index:02}", seen_days_ago=index + 1)
    with CaptureQueriesContext(connection) as queries:
        first = marketer_client.get(URL)
    assert not any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)
    assert names(first) == [f"Person {index:02}" for index in range(25)]
    assert 'href="?page=2"' in first.content.decode() and 'rel="next"' in first.content.decode()
    second = marketer_client.get(URL, {"page": 2}, headers={"HX-Request": "true"})
    assert names(second) == [f"Person {index:02}" for index in range(25, 30)]
    html = second.content.decode()
    assert 'rel="prev"' in html and 'rel="next"' not in html
    assert 'hx-get="?page=1"' in html


@pytest.mark.parametrize("page", ["abc", "0", "-1", "10001", "999999999999999999999"])
def test_a_bad_or_absurdly_deep_page_shows_the_first_page(marketer_client, db, page):
    person("Only")
    for headers in ({}, {"HX-Request": "true"}):
        response = marketer_client.get(URL, {"page": page}, headers=headers)
        assert response.status_code == 200
        assert names(response) == ["Only"]


def _many_people(start: int, count: int) -> None:
    for index in range(start, start + count):
        profile = person(f"Many {index}", identity=f"many-{index}")
        IdentifierFactory(profile=profile, kind="email", value=f"many{index}@example.com")


@pytest.mark.parametrize("params", [{}, {"q": "many"}, {"has_push": "on", "type": "identified"}])
def test_list_queries_do_not_grow_with_the_rows(
    marketer_client, db, django_assert_num_queries, params
):
    _many_people(0, 2)
    marketer_client.get(URL, params)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        marketer_client.get(URL, params)
    _many_people(2, 30)
    with django_assert_num_queries(len(few.captured_queries)):
        response = marketer_client.get(URL, params)
    assert response.status_code == 200


def test_list_query_count_is_pinned(marketer_client, mark, django_assert_num_queries):
    # session, user, permissions (2), exact identifier lookup, page of profiles, their
    # identifiers, property names for the filter suggestions. One page of matches: its
    # rows are the count.
    with django_assert_num_queries(8):
        marketer_client.get(URL, {"q": "mark"})
    # htmx partial: no suggestions needed.
    with django_assert_num_queries(7):
        marketer_client.get(URL, {"q": "mark"}, headers={"HX-Request": "true"})
    # The count of a longer search, loaded after it: session, user, permissions (2),
    # exact identifier lookup, and 6 to count (the planner's estimate, savepoint, time
    # limit, count, limit put back, release); no page of profiles.
    with django_assert_num_queries(11):
        marketer_client.get("/people/count/", {"q": "mark"}, headers={"HX-Request": "true"})


def test_table_shows_identities_type_events_and_test_badge(marketer_client, crowd):
    html = marketer_client.get(URL, {"q": "tess"}).content.decode()
    assert "identity:</span> tess" in html
    assert '<span class="badge identified">identified</span>' in html
    assert '<span class="badge test">test</span>' in html
    html = marketer_client.get(URL, {"type": "anonymous"}).content.decode()
    assert '<span class="badge anonymous">anonymous</span>' in html


def test_find_people_leaks_no_template_syntax(marketer_client):
    ProfileFactory(name="Ann")
    page = marketer_client.get("/people/").content.decode()
    assert "{#" not in page and "{%" not in page
