"""The segment pages: permissions with three people, htmx and plain requests."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from profiles.models import Profile
from profiles.tests.factories import ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db

AGE = {"system": "age", "op": "between", "value": [25, 30]}
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def viewer_client(db) -> Client:
    """May look at segments but not save them."""
    user = User.objects.create_user("viewer", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_segment"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def saved(marketer) -> Segment:
    return Segment.objects.create(name="Gold buyers", definition={"all": []}, last_count=3,
                                  updated_by=marketer)  # fmt: skip


def post(client, url, definition, hx=False, **data):
    payload = {"definition": json.dumps(definition), **data}
    return client.post(url, payload, **(HX if hx else {}))


class TestList:
    def test_marketer_sees_segments_and_system_segments(self, marketer_client, saved):
        response = marketer_client.get("/segments/")
        assert response.status_code == 200
        text = response.content.decode()
        for name in ("All Users", "Test Users", "Gold buyers", "marketer"):
            assert name in text

    @pytest.mark.django_db(transaction=True)
    def test_system_segments_come_back_after_a_flush(self):
        from django.core.management import call_command

        call_command("flush", interactive=False, verbosity=0)
        assert set(Segment.objects.values_list("system_key", flat=True)) == {
            "all_users", "test_users"}  # fmt: skip

    def test_listing_segments_writes_nothing(self, marketer_client):
        Segment.objects.all().delete()
        marketer_client.get("/segments/")
        assert not Segment.objects.exists()  # made by migrate, never by a page view

    @pytest.mark.parametrize("fixture", ["importer_client", "outsider_client"])
    def test_others_are_refused(self, request, fixture):
        assert request.getfixturevalue(fixture).get("/segments/").status_code == 403

    def test_anonymous_goes_to_login(self, anonymous_client):
        response = anonymous_client.get("/segments/")
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")

    def test_query_count_does_not_grow_with_segments(
        self, marketer_client, marketer, django_assert_num_queries
    ):
        marketer_client.get("/segments/")  # system segments exist, session warm
        for i in range(30):
            Segment.objects.create(name=f"S{i}", definition={"all": []}, updated_by=marketer)
        # session, user, permissions (2), count, rows
        with django_assert_num_queries(6):
            assert marketer_client.get("/segments/").status_code == 200


class TestBuilder:
    def test_new_page(self, marketer_client):
        response = marketer_client.get("/segments/new/")
        assert response.status_code == 200
        assert b'id="builder-choices"' in response.content
        assert b"Save segment" in response.content

    def test_permissions(self, importer_client, outsider_client, anonymous_client, saved):
        for client in (importer_client, outsider_client):
            assert client.get("/segments/new/").status_code == 403
            assert client.get(f"/segments/{saved.pk}/").status_code == 403
            assert post(client, "/segments/count/", AGE).status_code == 403
        assert anonymous_client.get("/segments/new/").status_code == 302

    def test_save_counts_and_stores_the_definition(self, marketer_client, marketer):
        ProfileFactory(name="x")
        response = post(marketer_client, "/segments/new/", {"all": []}, name="Everyone again")
        segment = Segment.objects.get(name="Everyone again")
        assert response.status_code == 302
        assert response.url == f"/segments/{segment.pk}/"
        assert segment.definition == {"all": []}
        assert segment.last_count == Profile.objects.count() == 1
        assert segment.created_by == segment.updated_by == marketer
        page = marketer_client.get(response.url).content.decode()
        assert "Saved “Everyone again”: 1 people." in page

    def test_save_invalid_definition_shows_the_reason(self, marketer_client):
        response = post(marketer_client, "/segments/new/",
                        {"all": [{"system": "age", "op": "between", "value": [30, 25]}]},
                        name="Bad")  # fmt: skip
        assert response.status_code == 400
        assert "$.all[0].value: the first value must not be greater" in response.content.decode()
        assert not Segment.objects.filter(name="Bad").exists()

    def test_save_broken_json_and_duplicate_name(self, marketer_client, saved):
        response = marketer_client.post("/segments/new/", {"name": "X", "definition": "{all"})
        assert response.status_code == 400
        assert "not valid JSON" in response.content.decode()
        response = post(marketer_client, "/segments/new/", {"all": []}, name="Gold buyers")
        assert "already exists" in response.content.decode()
        response = post(marketer_client, "/segments/new/", {"all": []}, name="All Users")
        assert "system segment" in response.content.decode()

    def test_viewer_may_look_but_not_save(self, viewer_client, saved):
        assert viewer_client.get(f"/segments/{saved.pk}/").status_code == 200
        assert post(viewer_client, f"/segments/{saved.pk}/", AGE, name="x").status_code == 403
        assert post(viewer_client, "/segments/new/", AGE, name="x").status_code == 403
        assert viewer_client.post(f"/segments/{saved.pk}/duplicate/").status_code == 403
        assert viewer_client.post(f"/segments/{saved.pk}/delete/").status_code == 403

    def test_change_existing(self, marketer_client, saved):
        response = post(marketer_client, f"/segments/{saved.pk}/", AGE, name="Young")
        assert response.status_code == 302
        saved.refresh_from_db()
        assert (saved.name, saved.definition, saved.last_count) == ("Young", AGE, 0)

    def test_system_segment_cannot_be_changed(self, marketer_client):
        system = Segment.objects.get(system_key="all_users")
        response = post(marketer_client, f"/segments/{system.pk}/", AGE, name="Mine")
        assert response.status_code == 400
        assert "system segment" in response.content.decode()
        system.refresh_from_db()
        assert system.name == "All Users"


class TestLiveCountAndPreview:
    def test_count_htmx_returns_the_fragment(self, marketer_client):
        ProfileFactory.create_batch(3)
        response = post(marketer_client, "/segments/count/", {"all": []}, hx=True)
        text = response.content.decode()
        assert response.status_code == 200
        assert "<html" not in text
        assert '<strong id="segment-count">3</strong> people match' in text

    def test_count_without_htmx_renders_the_whole_builder(self, marketer_client):
        response = post(marketer_client, "/segments/count/", {"all": []}, name="Draft")
        text = response.content.decode()
        assert "<html" in text and 'id="segment-count">0<' in text
        assert 'value="Draft"' in text  # nothing typed is lost

    def test_invalid_definition_is_a_message_not_a_500(self, marketer_client):
        for hx in (True, False):
            response = post(marketer_client, "/segments/count/", {"any": []}, hx=hx)
            assert response.status_code == 200
            assert "$.any: an &quot;any&quot; group needs at least one condition" in (
                response.content.decode())  # fmt: skip
        response = marketer_client.post("/segments/count/", {"definition": "nope"}, **HX)
        assert "not valid JSON" in response.content.decode()

    def test_hostile_definitions_are_messages_not_500s(self, marketer_client):
        nested = "[" * 5000 + "]" * 5000
        response = marketer_client.post("/segments/count/", {"definition": nested}, **HX)
        assert response.status_code == 200
        assert "nested too deeply" in response.content.decode()
        huge = json.dumps({"all": [], "pad": "x" * 200_000})
        response = marketer_client.post("/segments/count/", {"definition": huge}, **HX)
        assert "at most 100000 characters" in response.content.decode()
        nul = {"all": [{"property": "Name", "op": "equals", "value": "a\u0000b"}]}
        response = post(marketer_client, "/segments/count/", nul, hx=True)
        assert "$.all[0].value: text must not contain the NUL character" in (
            response.content.decode())  # fmt: skip

    def test_count_without_htmx_ignores_a_bad_segment_id(self, marketer_client):
        response = post(marketer_client, "/segments/preview/", {"all": []}, segment="abc")
        assert response.status_code == 200
        assert "<html" in response.content.decode()

    def test_preview_of_an_invalid_definition_says_why(self, marketer_client):
        response = post(marketer_client, "/segments/preview/", {"all": [1]}, hx=True)
        assert response.status_code == 200
        assert "$.all[0]: expected an object" in response.content.decode()

    def test_preview_links_to_profiles(self, marketer_client):
        person = ProfileFactory(name="Zed <b>")
        response = post(marketer_client, "/segments/preview/", {"all": []}, hx=True)
        text = response.content.decode()
        assert "<html" not in text
        assert f'href="/people/{person.ct_id}/"' in text
        assert "Zed &lt;b&gt;" in text  # escaped
        full = post(marketer_client, "/segments/preview/", {"all": []}).content.decode()
        assert "<html" in full and f"/people/{person.ct_id}/" in full


class TestDuplicateDelete:
    def test_duplicate(self, marketer_client, saved):
        response = marketer_client.post(f"/segments/{saved.pk}/duplicate/")
        copy = Segment.objects.get(name="Copy of Gold buyers")
        assert response.url == f"/segments/{copy.pk}/"
        marketer_client.post(f"/segments/{saved.pk}/duplicate/")
        assert Segment.objects.filter(name="Copy of Gold buyers (2)").exists()

    def test_duplicate_needs_post(self, marketer_client, saved):
        assert marketer_client.get(f"/segments/{saved.pk}/duplicate/").status_code == 405

    def test_delete_confirms_then_deletes(self, marketer_client, saved):
        page = marketer_client.get(f"/segments/{saved.pk}/delete/")
        assert "Delete “Gold buyers”?" in page.content.decode()
        assert Segment.objects.filter(pk=saved.pk).exists()
        response = marketer_client.post(f"/segments/{saved.pk}/delete/")
        assert response.url == "/segments/"
        assert not Segment.objects.filter(pk=saved.pk).exists()

    def test_system_segments_are_not_deletable(self, admin_client_):
        system = Segment.objects.get(system_key="test_users")
        response = admin_client_.post(f"/segments/{system.pk}/delete/", follow=True)
        assert "cannot be deleted" in response.content.decode()
        assert Segment.objects.filter(pk=system.pk).exists()

    def test_others_cannot_delete(self, importer_client, outsider_client, saved):
        for client in (importer_client, outsider_client):
            assert client.post(f"/segments/{saved.pk}/delete/").status_code == 403
        assert Segment.objects.filter(pk=saved.pk).exists()

    def test_recount(self, marketer_client, saved):
        ProfileFactory()
        marketer_client.post(f"/segments/{saved.pk}/recount/")
        saved.refresh_from_db()
        assert saved.last_count == 1
