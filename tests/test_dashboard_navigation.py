"""Navigation and landing by permission: each person sees the sections they may use, lands
on the first, and a refusal names the groups that hold the missing permission."""

from __future__ import annotations

import io
import logging
import re

import pytest
from django.contrib.auth.models import Group, Permission

from profiles.models import Profile

pytestmark = pytest.mark.django_db


def _nav_labels(response) -> list[str]:
    nav = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', response.content.decode(), re.S)
    return re.findall(r">([^<]+)</a>", nav.group(1)) if nav else []


@pytest.mark.parametrize(
    ("client_fixture", "landing", "sections"),
    [
        ("marketer_client", "/", ["Overview", "Find People", "Segments", "Campaigns"]),
        (
            "admin_client_",
            "/",
            ["Overview", "Find People", "Segments", "Imports", "Campaigns", "Settings"],
        ),
        ("importer_client", "/", ["Overview", "Find People", "Imports"]),
    ],
)
def test_each_person_sees_their_sections_and_lands_on_the_first(
    request, client_fixture, landing, sections
):
    client = request.getfixturevalue(client_fixture)
    response = client.get("/")
    # Everyone who may view profiles lands on the overview itself (no redirect).
    assert response.status_code == 200
    assert _nav_labels(response) == sections


def test_without_the_overview_a_person_lands_on_their_first_section(importer, client):
    importer.groups.clear()
    importer.user_permissions.add(
        Permission.objects.get(content_type__app_label="imports", codename="view_importrun")
    )
    client.force_login(importer)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/imports/"


def test_superuser_sees_every_section(superuser, client):
    client.force_login(superuser)
    page = client.get("/")
    assert page.status_code == 200
    assert _nav_labels(page) == [
        "Overview", "Find People", "Segments", "Imports", "Campaigns", "Settings"]  # fmt: skip


def test_a_person_without_a_group_is_told_so_instead_of_a_403_loop(outsider_client):
    response = outsider_client.get("/")
    assert response.status_code == 200
    assert "No access yet" in response.content.decode()
    assert _nav_labels(response) == []


def test_anonymous_is_sent_to_login(anonymous_client):
    response = anonymous_client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_importer_views_a_profile_without_the_change_buttons(importer_client):
    profile = Profile.objects.create(name="Ada Lovelace")
    page = importer_client.get(f"/people/{profile.ct_id}/")
    assert page.status_code == 200
    content = page.content.decode()
    assert "Ada Lovelace" in content
    assert "Delete profile" not in content
    assert f"/people/{profile.ct_id}/test-profile/" not in content
    assert importer_client.post(f"/people/{profile.ct_id}/delete/").status_code == 403
    assert (
        importer_client.post(f"/people/{profile.ct_id}/test-profile/", {"is_test": "1"}).status_code
        == 403
    )
    assert Profile.objects.filter(pk=profile.pk).exists()


def test_403_names_only_the_groups_that_hold_the_permission(marketer_client):
    response = marketer_client.get("/settings/api-credentials/")
    assert response.status_code == 403
    content = response.content.decode()
    assert "group that has it: Admins." in content
    assert "Marketers" not in content.split("<main>")[1]
    # The way back leads to a page the person can open.
    back = re.search(r'<a href="([^"]+)">Back to ([^<]+)</a>', content)
    assert back.group(1) == "/" and back.group(2) == "Overview"
    assert marketer_client.get(back.group(1)).status_code == 200


def test_403_follows_the_groups_in_the_database(importer_client):
    permission = Permission.objects.get(codename="view_segment")
    Group.objects.create(name="Analysts").permissions.add(permission)
    content = importer_client.get("/segments/").content.decode()
    assert "group that has it: Admins, Analysts, Marketers." in content
    back = re.search(r'<a href="([^"]+)">Back to', content)
    assert importer_client.get(back.group(1)).status_code == 200


def test_a_403_is_logged_as_one_line_without_traceback(marketer_client):
    # Through the real console handler of settings.LOGGING, writing into a buffer.
    console = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    buffer = io.StringIO()
    original = console.setStream(buffer)
    try:
        marketer_client.get("/imports/")
    finally:
        console.setStream(original)
    written = buffer.getvalue()
    assert [line for line in written.splitlines() if "Forbidden" in line] == [
        "Forbidden (Permission denied): /imports/"
    ], written
    assert "Traceback" not in written


def test_the_favicon_is_linked_and_served(marketer_client, settings):
    page = marketer_client.get("/people/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    from django.contrib.staticfiles import finders

    assert finders.find(href.removeprefix(settings.STATIC_URL))
