"""The profile page (/people/<ct_id>/), its timeline and its actions."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from profiles.models import Device, Event, Identifier, Profile, PropertyChange, Source
from profiles.selectors import age_on
from profiles.services import TEST_MARKED_EVENT, Actor, event_push, profile_login
from profiles.tests.factories import DeviceFactory, EventFactory, ProfileFactory
from profiles.tests.test_views_people import ensure_role_groups


@pytest.fixture(autouse=True)
def _role_groups(db) -> None:
    ensure_role_groups()


def detail(profile: Profile) -> str:
    return reverse("profiles:detail", args=[profile.ct_id])


def action(name: str, profile: Profile) -> str:
    return reverse(f"profiles:{name}", args=[profile.ct_id])


@pytest.fixture
def mark(db) -> Profile:
    """Mark, made through the services like real traffic: identified on his phone,
    after browsing anonymously on a laptop (scenario 2: a linked anonymous profile)."""
    sdk = Actor(source=Source.SDK)
    now = timezone.now()
    event_push(device_id="__laptop", name="Guest Browsed", properties={"page": "/pricing"},
               actor=sdk, ts=now - dt.timedelta(hours=5))  # fmt: skip
    profile_login(
        device_id="__phone",
        identifiers={"identity": "mark-1"},
        profile_data={
            "Name": "Mark Twain", "Email": "Mark@Example.com", "Phone": "+14155551234",
            "DOB": "1990-05-01", "Gender": "M", "MSG-sms": False, "Customer Type": "Gold",
            "Interests": {"$add": ["golf", "chess"]},
        },
        actor=Actor(source=Source.API, label="crm-sync"),
    )  # fmt: skip
    for hours in (4, 3, 2):
        event_push(device_id="__phone", name="Product Viewed", properties={"sku": f"S{hours}"},
                   actor=sdk, ts=now - dt.timedelta(hours=hours))  # fmt: skip
    event_push(device_id="__phone", name="Charged", properties={"Amount": 30}, actor=sdk,
               ts=now - dt.timedelta(hours=1))  # fmt: skip
    Device.objects.filter(object_id="__phone").update(push_token="tok-123", platform="Android")
    # The laptop logs in as Mark: its anonymous profile stays, linked to him.
    profile_login(device_id="__laptop", identifiers={"identity": "mark-1"}, actor=sdk)
    return Profile.objects.get(identifiers__value="mark-1")


# --- who may see it -------------------------------------------------------------------


def test_marketer_sees_the_profile_without_admin_actions(marketer_client, mark):
    response = marketer_client.get(detail(mark))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Mark Twain" in html and "Download profile" in html
    assert "Mark as test profile" not in html
    assert "Delete profile" not in html


def test_admin_sees_the_actions(admin_client_, mark):
    html = admin_client_.get(detail(mark)).content.decode()
    assert ">Mark as test profile</button>" in html
    assert "Delete profile" in html and "Download profile" in html


def test_outsider_gets_403(outsider_client, mark):
    assert outsider_client.get(detail(mark)).status_code == 403
    assert outsider_client.get(action("events", mark)).status_code == 403
    assert outsider_client.get(action("download", mark)).status_code == 403


def test_anonymous_visitor_is_sent_to_login(anonymous_client, mark):
    for url in (detail(mark), action("events", mark), action("download", mark)):
        response = anonymous_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_with_htmx_the_profile_body_only(marketer_client, mark):
    response = marketer_client.get(detail(mark), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="profile-body">')
    assert "<html" not in html and "Mark Twain" in html
    assert "HX-Request" in response["Vary"]


def test_unknown_profile_is_404(marketer_client, db):
    assert marketer_client.get("/people/__nobody/").status_code == 404
    # A NUL byte (PostgreSQL text cannot hold one) names nobody either: 404, not 500.
    for path in ("/people/a%00b/", "/people/a%00b/events/", "/people/a%00b/download/"):
        assert marketer_client.get(path).status_code == 404


# --- what the page shows --------------------------------------------------------------


def test_header(marketer_client, mark):
    html = marketer_client.get(detail(mark)).content.decode()
    assert "<h1>Mark Twain" in html
    assert re.search(r'<div class="avatar" aria-hidden="true">\s*MT\s*</div>', html)  # no photo
    assert "Identity:</span> mark-1" in html
    assert "Email:</span> mark@example.com" in html
    assert "Phone:</span> +14155551234" in html
    assert 'data-testid="type-badge">Identified<' in html
    assert 'data-testid="test-badge"' not in html
    assert mark.ct_id in html
    assert f"last seen {timezone.localtime(mark.last_seen):%Y-%m-%d %H:%M}" in html


def test_properties_in_three_groups_with_age_computed(marketer_client, mark):
    response = marketer_client.get(detail(mark))
    groups = response.context["groups"]
    default = dict(groups["Default"])
    assert default["Gender"] == "M" and default["DOB"] == "1990-05-01"
    assert default["MSG-sms"] == "No" and default["MSG-email"] == ""
    custom = dict(groups["Custom"])
    assert custom == {"Customer Type": "Gold", "Interests": "golf, chess"}
    system = dict(groups["System"])
    assert system["Age"] == str(age_on(dt.date(1990, 5, 1), timezone.localdate()))
    assert system["Events"] == "4"  # Mark's own; the anonymous one is not counted
    assert system["Last platform"] == "" or system["Last platform"]  # shown, may be empty
    html = response.content.decode()
    assert "<h3>Default</h3>" in html and "<h3>Custom</h3>" in html and "<h3>System</h3>" in html


def test_reachability_says_why_not(marketer_client, mark):
    reach = {r.channel: r for r in marketer_client.get(detail(mark)).context["reachability"]}
    assert reach["Email"].reachable
    assert not reach["SMS"].reachable and reach["SMS"].reason == "MSG-sms is false (opted out)"
    assert not reach["WhatsApp"].reachable and "no opt-in" in reach["WhatsApp"].reason
    assert reach["Push"].reachable
    Device.objects.filter(profile=mark).update(push_token="")
    Profile.objects.filter(pk=mark.pk).update(email="", msg_sms=None)
    html = marketer_client.get(detail(mark)).content.decode()
    assert "no email" in html
    assert "no push token on any device" in html
    Device.objects.filter(profile=mark).update(push_token="t", push_enabled=False)
    assert "push disabled on every device" in marketer_client.get(detail(mark)).content.decode()


def test_activity_chart_counts_only_own_events_of_the_last_90_days(marketer_client, mark):
    EventFactory(profile=mark, name="Ancient", ts=timezone.now() - dt.timedelta(days=120))
    response = marketer_client.get(detail(mark))
    chart = response.context["chart"]
    assert chart["total"] == 4  # 3 Product Viewed + Charged; no Guest Browsed, no Ancient
    assert dict((name, total) for name, _, total in chart["legend"]) == {
        "Product Viewed": 3, "Charged": 1,
    }  # fmt: skip
    html = response.content.decode()
    assert '<svg class="activity"' in html and "<rect" in html
    assert f"{timezone.now().date():%Y-%m-%d}: Product Viewed" in html or chart["bars"]


def test_timeline_newest_first_with_linked_anonymous_events_greyed(marketer_client, mark):
    html = marketer_client.get(detail(mark)).content.decode()
    timeline = html.split('id="timeline"', 1)[1]
    order = re.findall(r"<strong>([^<]+)</strong>", timeline)
    assert order == ["Charged", "Product Viewed", "Product Viewed", "Product Viewed",
                     "Guest Browsed"]  # fmt: skip
    greyed = re.findall(
        r'<li class="event greyed" data-greyed="true"[^>]*>\s*<div class="event-head">'
        r"\s*<strong>([^<]+)</strong>",
        timeline,
    )
    assert greyed == ["Guest Browsed"]
    assert "they are shown here\n        but not counted" in html or "not counted" in html
    assert "1 linked anonymous profile" in html
    # Event properties are there, folded.
    assert "<details><summary>1 property</summary><pre>{\n  &quot;Amount&quot;: 30\n}</pre>" in html


def test_property_change_history(marketer_client, mark):
    html = marketer_client.get(detail(mark)).content.decode()
    changes = html.split('id="changes-title"', 1)[1]
    assert "Profile created" in changes and "Customer Type: Gold" in changes
    assert "crm-sync" in changes and "REST API" in changes


def test_user_data_is_escaped(marketer_client, db):
    profile = ProfileFactory(name="<script>alert(1)</script>", custom={"<b>": "<i>x</i>"},
                             photo="javascript:alert(1)")  # fmt: skip
    EventFactory(profile=profile, name="<img src=x onerror=alert(1)>",
                 properties={"<k>": "</pre><script>"})  # fmt: skip
    html = marketer_client.get(detail(profile)).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html and "<i>x</i>" not in html and "</pre><script>" not in html
    assert 'src="javascript:' not in html  # shown as text, never used as the photo


# --- timeline pages (infinite scroll) -----------------------------------------------------


@pytest.fixture
def busy(db) -> Profile:
    profile = ProfileFactory(name="Busy Bee", event_count=120)
    start = timezone.now() - dt.timedelta(days=2)
    Event.objects.bulk_create(
        Event(profile=profile, name=f"E{index:03}", ts=start + dt.timedelta(minutes=index),
              source=Source.SDK)
        for index in range(120)
    )  # fmt: skip
    return profile


def event_names(html: str) -> list[str]:
    return re.findall(r"<strong>(E\d{3})</strong>", html)


def test_first_page_has_50_events_and_a_real_older_events_link(marketer_client, busy):
    html = marketer_client.get(detail(busy)).content.decode()
    assert event_names(html) == [f"E{index:03}" for index in range(119, 69, -1)]
    link = re.search(r'<a href="(/people/[^"]+/events/\?before=[0-9_]+)">Older events</a>', html)
    assert link
    assert f'hx-get="{link.group(1)}"' in html and 'hx-trigger="revealed"' in html


def test_older_events_with_htmx_are_rows_and_the_next_sentinel(marketer_client, busy):
    html = marketer_client.get(detail(busy)).content.decode()
    next_url = re.search(r'href="(/people/[^"]+/events/\?before=[0-9_]+)"', html).group(1)
    rows = marketer_client.get(next_url, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in rows and rows.lstrip().startswith("<li")
    assert event_names(rows) == [f"E{index:03}" for index in range(69, 19, -1)]
    last_url = re.search(r'href="(/people/[^"]+/events/\?before=[0-9_]+)"', rows).group(1)
    last = marketer_client.get(last_url, headers={"HX-Request": "true"}).content.decode()
    assert event_names(last) == [f"E{index:03}" for index in range(19, -1, -1)]
    assert "Older events" not in last  # the end


def test_older_events_without_javascript_is_a_page(marketer_client, busy):
    html = marketer_client.get(detail(busy)).content.decode()
    next_url = re.search(r'href="(/people/[^"]+/events/\?before=[0-9_]+)"', html).group(1)
    page = marketer_client.get(next_url.replace("&amp;", "&"))
    text = page.content.decode()
    assert "<html" in text and "Older events of Busy Bee" in text
    assert event_names(text)[0] == "E069"


def test_events_with_equal_times_are_neither_lost_nor_repeated(marketer_client, db):
    profile = ProfileFactory(name="Same Time")
    moment = timezone.now()
    Event.objects.bulk_create(
        Event(profile=profile, name=f"E{index:03}", ts=moment, source=Source.SDK)
        for index in range(60)
    )
    first = marketer_client.get(detail(profile)).content.decode()
    url = re.search(r'href="(/people/[^"]+/events/\?before=[0-9_]+)"', first).group(1)
    second = marketer_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert sorted(event_names(first) + event_names(second)) == [f"E{i:03}" for i in range(60)]


def test_bad_cursor_is_400(marketer_client, busy):
    assert marketer_client.get(action("events", busy), {"before": "x_y"}).status_code == 400


def test_profile_page_queries_do_not_grow_with_events(
    marketer_client, mark, busy, django_assert_num_queries
):
    marketer_client.get(detail(mark))  # warm the session and permission caches
    with CaptureQueriesContext(connection) as small:
        marketer_client.get(detail(mark))
    # session, user, profile, identifiers, devices, linked ids, timeline, chart,
    # changes, permissions (2: the action buttons)
    assert len(small.captured_queries) == 11
    with django_assert_num_queries(11):
        marketer_client.get(detail(busy))
    assert not any("COUNT(*)" in q["sql"].upper() and "GROUP BY" not in q["sql"].upper()
                   for q in small.captured_queries)  # fmt: skip


# --- mark / unmark as test profile ------------------------------------------------------------


def test_admin_marks_with_htmx_and_sees_badge_property_and_event_at_once(admin_client_, mark):
    response = admin_client_.post(action("mark_test", mark), {"is_test": "1"},
                                  headers={"HX-Request": "true"})  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="profile-body">')
    assert 'data-testid="test-badge">Test profile<' in html
    assert "<dt>ct_is_test_user</dt>\n        <dd>Yes</dd>" in html
    assert f"<strong>{TEST_MARKED_EVENT}</strong>" in html
    assert ">Unmark test profile</button>" in html
    assert "Marked as a test profile." in html
    mark.refresh_from_db()
    assert mark.is_test and mark.custom["ct_is_test_user"] == "Yes"
    assert Event.objects.filter(profile=mark, name=TEST_MARKED_EVENT, source="system").count() == 1


def test_admin_marks_without_javascript_and_is_redirected_back(admin_client_, mark):
    response = admin_client_.post(action("mark_test", mark), {"is_test": "1"}, follow=True)
    assert response.redirect_chain == [(detail(mark), 302)]
    html = response.content.decode()
    assert "Marked as a test profile." in html and 'data-testid="test-badge"' in html


def test_without_javascript_the_button_leads_to_a_confirmation_page(admin_client_, mark):
    page = admin_client_.get(action("mark_test", mark), {"is_test": "1"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "Mark Mark Twain as a test profile?" in html
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert not Profile.objects.get(pk=mark.pk).is_test  # a GET changes nothing


def test_admin_unmarks(admin_client_, admin_user, mark):
    admin_client_.post(action("mark_test", mark), {"is_test": "1"})
    response = admin_client_.post(action("mark_test", mark), {"is_test": "0"},
                                  headers={"HX-Request": "true"})  # fmt: skip
    html = response.content.decode()
    assert "No longer a test profile." in html and 'data-testid="test-badge"' not in html
    assert ">Mark as test profile</button>" in html
    assert not Profile.objects.get(pk=mark.pk).is_test


def test_marketer_cannot_mark_even_with_a_forged_post(marketer_client, mark):
    for headers in ({}, {"HX-Request": "true"}):
        response = marketer_client.post(action("mark_test", mark), {"is_test": "1"},
                                        headers=headers)  # fmt: skip
        assert response.status_code == 403
    assert marketer_client.get(action("mark_test", mark)).status_code == 403
    mark.refresh_from_db()
    assert not mark.is_test
    assert not Event.objects.filter(name=TEST_MARKED_EVENT).exists()


def test_anonymous_cannot_mark(anonymous_client, mark):
    response = anonymous_client.post(action("mark_test", mark), {"is_test": "1"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Profile.objects.get(pk=mark.pk).is_test


def test_marking_needs_the_csrf_token(admin_user, mark):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(action("mark_test", mark), {"is_test": "1"}).status_code == 403
    assert not Profile.objects.get(pk=mark.pk).is_test


def test_marking_needs_to_say_mark_or_unmark(admin_client_, mark):
    assert admin_client_.post(action("mark_test", mark), {"is_test": "maybe"}).status_code == 400


# --- delete ------------------------------------------------------------------------------------


def test_admin_deletes_with_the_typed_clevertap_id(admin_client_, mark):
    linked_ids = list(Profile.objects.filter(linked_to=mark).values_list("pk", flat=True))
    assert linked_ids
    page = admin_client_.get(action("delete", mark))
    assert page.status_code == 200 and "Type the CleverTap ID or the word DELETE" in (
        page.content.decode()
    )
    response = admin_client_.post(action("delete", mark), {"confirmation": mark.ct_id},
                                  follow=True)  # fmt: skip
    assert response.redirect_chain == [(reverse("profiles:find_people"), 302)]
    assert "Deleted the profile of Mark Twain and 1 linked anonymous profile" in (
        response.content.decode()
    )
    assert not Profile.objects.filter(pk__in=[mark.pk, *linked_ids]).exists()
    assert not Identifier.objects.filter(value="mark-1").exists()
    assert not Event.objects.filter(profile_id__in=[mark.pk, *linked_ids]).exists()
    assert Device.objects.get(object_id="__phone").profile_id is None


def test_admin_deletes_with_the_word_delete(admin_client_, mark):
    admin_client_.post(action("delete", mark), {"confirmation": "DELETE"})
    assert not Profile.objects.filter(pk=mark.pk).exists()


def test_wrong_confirmation_deletes_nothing(admin_client_, mark):
    response = admin_client_.post(action("delete", mark), {"confirmation": "delete"})
    assert response.status_code == 400
    assert "nothing was deleted" in response.content.decode()
    assert Profile.objects.filter(pk=mark.pk).exists()


def test_marketer_cannot_delete_even_with_a_forged_post(marketer_client, mark):
    assert marketer_client.get(action("delete", mark)).status_code == 403
    response = marketer_client.post(action("delete", mark), {"confirmation": mark.ct_id})
    assert response.status_code == 403
    assert Profile.objects.filter(pk=mark.pk).exists()


def test_outsider_and_anonymous_cannot_delete(outsider_client, anonymous_client, mark):
    assert (
        outsider_client.post(action("delete", mark), {"confirmation": "DELETE"}).status_code == 403
    )
    assert (
        anonymous_client.post(action("delete", mark), {"confirmation": "DELETE"}).status_code == 302
    )
    assert Profile.objects.filter(pk=mark.pk).exists()


# --- download ---------------------------------------------------------------------------


def test_download_holds_everything_we_know(marketer_client, admin_client_, mark):
    admin_client_.post(action("mark_test", mark), {"is_test": "1"})
    response = marketer_client.get(action("download", mark))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="profile-{mark.ct_id}.json"'
    document = json.loads(b"".join(response.streaming_content))
    assert document["profile"]["ct_id"] == mark.ct_id
    assert {(i["kind"], i["value"]) for i in document["identifiers"]} == {
        ("identity", "mark-1"), ("email", "mark@example.com"), ("phone", "+14155551234"),
    }  # fmt: skip
    assert document["properties"]["default"]["Name"] == "Mark Twain"
    assert document["properties"]["custom"]["ct_is_test_user"] == "Yes"
    assert document["properties"]["system"]["Age"] == age_on(dt.date(1990, 5, 1),
                                                             timezone.localdate())  # fmt: skip
    assert {d["object_id"] for d in document["devices"]} == {"__phone", "__laptop"}
    events = [(e["name"], e["linked_anonymous"]) for e in document["events"]]
    assert ("Guest Browsed", True) in events and ("Charged", False) in events
    assert (TEST_MARKED_EVENT, False) in events and len(events) == 6
    assert len(document["linked_anonymous_profiles"]) == 1
    changed = {c["property"]: c for c in document["property_changes"]}
    assert changed["Profile created"]["by"] == "crm-sync"
    assert changed["Profile created"]["new_value"]["Customer Type"] == "Gold"
    assert changed["ct_is_test_user"]["by"] == "admin"
    assert PropertyChange.objects.filter(profile=mark).count() == len(
        [c for c in document["property_changes"] if c["profile"] == mark.ct_id]
    )


def test_download_is_not_an_action_hidden_from_marketers(marketer_client, mark):
    assert (
        f'href="{action("download", mark)}"' in marketer_client.get(detail(mark)).content.decode()
    )


def test_anonymous_profile_page(marketer_client, mark):
    anonymous = Profile.objects.get(linked_to=mark)
    html = marketer_client.get(detail(anonymous)).content.decode()
    assert 'data-testid="type-badge">Anonymous<' in html
    assert "No identifiers: this person is anonymous." in html
    assert "<strong>Guest Browsed</strong>" in html
    assert DeviceFactory  # factories stay importable for other tests


def test_timeline_cursor_round_trips_to_the_microsecond():
    from profiles.selectors import TimelineCursor

    for micro in (0, 1, 999_999, 123_457):
        cursor = TimelineCursor(
            ts=dt.datetime(2026, 11, 28, 16, 42, 35, micro, tzinfo=dt.UTC), id=7
        )
        assert TimelineCursor.decode(cursor.encode()) == cursor
    assert TimelineCursor.decode("not-a-cursor") is None


def test_delete_without_confirmation_says_what_is_missing(admin_client_, mark):
    response = admin_client_.post(action("delete", mark), {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert Profile.objects.filter(pk=mark.pk).exists()
