"""The foundation: login/logout, roles, the 403 page, /healthz, every page behind login,
and the demo data commands (`seed_demo`, `bootstrap_demo`)."""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import socket
import stat

import phonenumbers
import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import validate_email
from django.db.models import Count, Max, Min
from django.test import Client
from django.utils import timezone

from conftest import PASSWORD, browser_login
from profiles import selectors
from profiles.management import demo_data
from profiles.models import (
    Device,
    Event,
    EventName,
    Identifier,
    Profile,
    PropertyChange,
    PropertyDefinition,
    PropertyScope,
)
from profiles.rules.history import PROFILE_CREATED
from profiles.selectors import age_on

pytestmark = pytest.mark.django_db

DASHBOARD_URLS = [
    "/",
    "/people/",
    "/people/__0123456789abcdef0123456789abcdef/",
    "/segments/",
    "/imports/",
    "/imports/sftp/",
    "/settings/api-credentials/",
]
DOCUMENTED_PERMISSIONS = {
    "Marketers": {
        "profiles.view_profile",
        "segments.view_segment",
        "segments.add_segment",
        "segments.change_segment",
        "segments.delete_segment",
    },
    "Admins": {
        "profiles.view_profile",
        "segments.view_segment",
        "segments.add_segment",
        "segments.change_segment",
        "segments.delete_segment",
        "profiles.mark_test_profile",
        "profiles.delete_profile",
        "profiles.view_apicredential",
        "profiles.add_apicredential",
        "profiles.change_apicredential",
        "profiles.delete_apicredential",
    },
    "Importers": {
        "profiles.view_profile",
        "imports.view_importrun",
        "imports.add_importrun",
        "imports.view_sftpsource",
        "imports.add_sftpsource",
        "imports.change_sftpsource",
        "imports.delete_sftpsource",
    },
}


def _groups_from_migration() -> None:
    """Recreate the groups (profiles.roles) when a transactional test flushed them."""
    if Group.objects.filter(name__in=DOCUMENTED_PERMISSIONS).count() == 3:
        return
    from profiles.roles import role_groups_ensure

    role_groups_ensure()


@pytest.fixture(autouse=True)
def _role_groups(request):
    if "db" in request.fixturenames or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
        _groups_from_migration()


def _permissions(group: Group) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in group.permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


# --- login, logout, roles -------------------------------------------------------------


def test_login_page_renders(anonymous_client):
    response = anonymous_client.get("/accounts/login/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Log in" in content
    assert 'name="username"' in content and 'name="password"' in content
    assert "csrfmiddlewaretoken" in content


def test_login_lands_on_the_dashboard_and_logout_leaves(marketer):
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "marketer", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"  # the overview
    assert response.status_code == 200
    assert "Find People" in response.content.decode()
    assert response.context["user"] == marketer

    response = client.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert not response.context["user"].is_authenticated
    assert client.get("/people/").status_code == 302


def test_wrong_password_is_refused(marketer, anonymous_client):
    response = anonymous_client.post(
        "/accounts/login/", {"username": "marketer", "password": "not it"}
    )
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert "_auth_user_id" not in anonymous_client.session


@pytest.mark.parametrize("url", DASHBOARD_URLS)
def test_every_dashboard_page_needs_login(anonymous_client, url):
    response = anonymous_client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_403_page_names_the_missing_permission(outsider_client):
    response = outsider_client.get("/segments/")
    assert response.status_code == 403
    content = response.content.decode()
    assert "Permission needed" in content
    assert "segments.view_segment" in content
    assert "Can view segment" in content


def test_superuser_sees_every_page(superuser):
    client = Client()
    client.force_login(superuser)
    profile = Profile.objects.create(name="Ada")
    for url in DASHBOARD_URLS:
        url = url.replace("__0123456789abcdef0123456789abcdef", profile.ct_id)
        response = client.get(url, follow=True)
        assert response.status_code == 200, url


def test_the_three_groups_have_the_documented_permissions():
    groups = {group.name: _permissions(group) for group in Group.objects.all()}
    for name, documented in DOCUMENTED_PERMISSIONS.items():
        assert documented <= groups[name], name
    marketers, admins, importers = (groups[n] for n in ("Marketers", "Admins", "Importers"))
    assert marketers <= admins
    # Only Admins may act on people or credentials; only Importers import.
    for forbidden in ("profiles.mark_test_profile", "profiles.delete_profile",
                      "profiles.add_apicredential"):  # fmt: skip
        assert forbidden not in marketers and forbidden not in importers
    assert not {perm for perm in marketers if perm.startswith("imports.")}
    # Admins look at imports (the overview's recent imports), never start one.
    assert {perm for perm in admins if perm.startswith("imports.")} == {"imports.view_importrun"}
    # Importers may look at the profiles their files created, nothing more of people or segments.
    assert {perm for perm in importers if perm.split(".")[0] in {"profiles", "segments"}} == {
        "profiles.view_profile"
    }


def test_group_members_get_their_permissions(marketer, admin_user, importer):
    assert marketer.has_perm("segments.add_segment")
    assert not marketer.has_perm("profiles.mark_test_profile")
    assert admin_user.has_perm("profiles.mark_test_profile")
    assert admin_user.has_perm("profiles.add_apicredential")
    assert importer.has_perm("imports.add_importrun")
    assert importer.has_perm("profiles.view_profile")
    assert not importer.has_perm("profiles.delete_profile")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_and_logout_in_a_real_browser(page, marketer):
    browser_login(page, "marketer")
    assert page.url.endswith("/")  # the overview
    assert page.get_by_role("link", name="Find People").is_visible()
    page.get_by_role("button", name=re.compile("Log ?out", re.IGNORECASE)).click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert page.locator("#id_username").is_visible()


# --- /healthz -------------------------------------------------------------------------


def test_healthz_reports_database_and_broker_ok(anonymous_client):
    response = anonymous_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_is_503_with_a_reason_when_the_broker_is_down(anonymous_client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = anonymous_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["database"] == "ok"
    assert body["broker"] != "ok" and body["broker"].strip()


# --- seed_demo ------------------------------------------------------------------------


def _seed(profiles: int = 300, events: int = 5, seed: int = 7, **options) -> str:
    out = io.StringIO()
    call_command(
        "seed_demo", profiles=profiles, events_per_profile=events, seed=seed, stdout=out, **options
    )
    return out.getvalue()


def test_phone_numbers_of_every_country_are_valid_and_unique():
    rng = random.Random(3)
    ids = [1, 2, 3, *rng.sample(range(4, demo_data.PHONE_ID_LIMIT), 1500)]
    countries = [country.code for country in demo_data.COUNTRIES]
    for country in countries:
        numbers = [demo_data.phone_for(profile_id, country) for profile_id in ids]
        assert len(set(numbers)) == len(numbers)
        for number in numbers:
            parsed = phonenumbers.parse(number, None)
            assert phonenumbers.is_valid_number(parsed), number
            assert phonenumbers.region_code_for_number(parsed) == country, number
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
                number
            )
            assert not number.startswith("+1415555")  # fictional US range


def test_birth_dates_are_ages_13_to_80_with_some_29_february():
    rng = random.Random(5)
    today = dt.date(2026, 3, 1)
    dobs = [demo_data.birth_date(rng, today) for _ in range(5000)]
    ages = {age_on(dob, today) for dob in dobs}
    assert min(ages) == 13 and max(ages) == 80
    assert any((dob.month, dob.day) == (2, 29) for dob in dobs)


def test_seed_demo_makes_realistic_consistent_data():
    output = _seed(profiles=300, events=5)
    assert re.search(r"Seeded 300 profiles .* events in [\d.]+ s", output)
    assert "refused" not in output

    profiles = Profile.objects.all()
    assert profiles.count() == 300
    identified = profiles.filter(identified=True)
    assert 150 <= identified.count() <= 260  # ~70%
    assert profiles.filter(identified=False).count() >= 40

    # `identified` agrees with the identifiers held, and every identified
    # profile holds one documented identity, numbered from 1 in an empty database.
    holders = set(Identifier.objects.values_list("profile_id", flat=True))
    assert set(identified.values_list("pk", flat=True)) == holders
    identities = dict(Identifier.objects.filter(kind="identity").values_list("profile_id", "value"))
    assert set(identities) == holders
    assert sorted(identities.values(), key=lambda v: int(v[5:])) == [
        f"user-{n}" for n in range(1, len(holders) + 1)
    ]

    # Stored through ingest: each profile's creation is in its history, by the seed.
    created = PropertyChange.objects.filter(actor_label="Demo data", property=PROFILE_CREATED)
    assert set(created.values_list("profile_id", flat=True)) == set(
        profiles.values_list("pk", flat=True)
    )

    # E-mails and phones: valid, normalized, mirrored in the default properties.
    for profile_id, kind, value in Identifier.objects.exclude(kind="identity").values_list(
        "profile_id", "kind", "value"
    ):
        profile = Profile.objects.get(pk=profile_id)
        if kind == "email":
            validate_email(value)
            assert value == value.lower() == profile.email
        else:
            assert kind == "phone"
            assert phonenumbers.is_valid_number(phonenumbers.parse(value, None)), value
            assert value == profile.phone
    regions = {
        phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
        for phone in profiles.exclude(phone="").values_list("phone", flat=True)
    }
    assert len(regions) >= 4
    assert not profiles.filter(identified=False).exclude(email="", phone="").exists()

    # System properties match the events exactly.
    stats = Event.objects.values("profile_id").annotate(n=Count("id"), lo=Min("ts"), hi=Max("ts"))
    by_profile = {row["profile_id"]: row for row in stats}
    for profile in profiles:
        row = by_profile.get(profile.pk, {"n": 0, "lo": None, "hi": None})
        assert (profile.event_count, profile.first_seen, profile.last_seen) == (
            row["n"],
            row["lo"],
            row["hi"],
        ), profile.pk
    total = Event.objects.count()
    assert 300 * 5 * 0.7 <= total <= 300 * 5 * 1.3
    now = timezone.now()
    assert Event.objects.filter(ts__lt=now - dt.timedelta(days=366)).count() == 0
    assert Event.objects.filter(ts__gt=now).count() == 0
    used_names = set(Event.objects.values_list("name", flat=True).distinct())
    assert len(used_names) >= 12
    assert used_names <= set(EventName.objects.values_list("name", flat=True))
    charged = Event.objects.filter(name="Charged").first()
    assert charged.properties["Amount"] > 0 and charged.properties["Items"]
    plan = Event.objects.filter(name="Plan Purchased").first()
    assert plan.properties["plan"] in {name for name, _ in demo_data.PLANS}

    # Scenario 2: linked profiles are anonymous, have their own events, and their
    # device now maps to the identified person.
    linked = profiles.filter(linked_to__isnull=False)
    assert linked.exists()
    for profile in linked:
        assert not profile.identified and profile.linked_to.identified
        assert profile.events.exists()
        device_ids = set(profile.events.values_list("device_id", flat=True))
        assert set(
            Device.objects.filter(pk__in=device_ids).values_list("profile_id", flat=True)
        ) == {profile.linked_to_id}

    # Devices: platforms, push tokens, some with push disabled.
    assert set(Device.objects.values_list("platform", flat=True)) == {"Android", "iOS", "Web"}
    assert Device.objects.exclude(push_token="").filter(push_enabled=True).exists()
    assert Device.objects.filter(push_enabled=False).exists()

    # Custom properties of every type, each as its definition says.
    definitions = dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE).values_list("name", "type")
    )
    assert {"Customer Type", "Score", "Premium", "Signup Date", "Interests"} <= set(definitions)
    python_types = {"string": str, "number": (int, float), "boolean": bool, "list": list}
    for custom in profiles.values_list("custom", flat=True):
        for key, value in custom.items():
            if definitions[key] == "date":
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value)
            else:
                assert isinstance(value, python_types[definitions[key]]), (key, value)
                if definitions[key] == "number":
                    assert not isinstance(value, bool)
    assert profiles.filter(custom__has_key="Customer Type").exists()
    assert profiles.filter(selectors.test_profiles_q()).exists()

    # Ages 13-80 for everyone with a DOB.
    today = timezone.localdate()
    assert {13 <= age_on(dob, today) <= 80 for dob in profiles.exclude(dob=None).values_list(
        "dob", flat=True)} == {True}  # fmt: skip


def test_seed_demo_appends_without_collisions():
    _seed(profiles=120, events=3, seed=11)
    first_ids = set(Profile.objects.values_list("pk", flat=True))
    first_identifiers = set(Identifier.objects.values_list("kind", "value"))
    first_changes = PropertyChange.objects.count()
    # The same --seed twice: the people and their opaque ids must still differ.
    _seed(profiles=120, events=3, seed=11)

    assert Profile.objects.count() == 240
    new = Profile.objects.exclude(pk__in=first_ids)
    assert new.count() == 120
    assert Profile.objects.values("ct_id").distinct().count() == 240
    assert Device.objects.values("object_id").distinct().count() == Device.objects.count()
    # Nobody seeded first was touched: the second run's identifiers are all new ones,
    # and the first run's profiles got no new history.
    second = set(Identifier.objects.filter(profile__in=new).values_list("kind", "value"))
    assert second and not second & first_identifiers
    assert PropertyChange.objects.filter(profile_id__in=first_ids).count() == first_changes


def test_seed_demo_numbers_identities_after_the_highest_one_held():
    """Identities someone already holds are never reused: a seed neither updates nor
    links to a person it did not create."""
    holder = Profile.objects.create(name="Early bird")
    for n in (1, 2, 400):
        Identifier.objects.create(profile=holder, kind="identity", value=f"user-{n}")
    Identifier.objects.create(profile=holder, kind="identity", value="user-99999999999999999999")
    _seed(profiles=60, events=1, seed=2)

    holder.refresh_from_db()
    assert holder.name == "Early bird" and holder.event_count == 0 and not holder.custom
    assert not Profile.objects.filter(linked_to=holder).exists()
    seeded = set(
        Identifier.objects.filter(kind="identity").exclude(profile=holder)
        .values_list("value", flat=True)
    )  # fmt: skip
    assert seeded and min(int(value[5:]) for value in seeded) == 401


# --- bootstrap_demo -------------------------------------------------------------------


LOGIN_LINE = re.compile(r"Log in at (http://127\.0\.0\.1:\d+/accounts/login/) as (\S+) / (\S+)")


def _bootstrap() -> str:
    out = io.StringIO()
    call_command("bootstrap_demo", profiles=40, events_per_profile=2, stdout=out)
    return out.getvalue()


def test_bootstrap_demo_seeds_and_prints_a_working_login_once(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("PORT", "8123")

    output = _bootstrap()
    match = LOGIN_LINE.search(output)
    assert match, output
    url, username, password = match.groups()
    assert (url, username) == ("http://127.0.0.1:8123/accounts/login/", "admin")
    assert Profile.objects.count() == 40

    login_file = tmp_path / "demo-login.txt"
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    written = login_file.read_text()
    assert password in written and url in written

    assert User.objects.get(username="admin").is_superuser
    for name, group in (("marketer", "Marketers"), ("importer", "Importers")):
        user = User.objects.get(username=name)
        assert list(user.groups.values_list("name", flat=True)) == [group]
        assert not user.is_superuser
    client = Client()
    response = client.post(url, {"username": "marketer", "password": password}, follow=True)
    assert response.redirect_chain[-1][0] == "/"  # the overview
    assert _logs_in(url, "admin", password)

    # A second run changes nothing and says where the login is.
    again = _bootstrap()
    assert not LOGIN_LINE.search(again)
    assert str(login_file) in again
    assert Profile.objects.count() == 40
    assert User.objects.count() == 3
    assert login_file.read_text() == written
    assert _logs_in(url, "admin", password)


def test_bootstrap_demo_leaves_existing_superusers_and_data_alone(settings, tmp_path, superuser):
    settings.VAR_DIR = tmp_path
    Profile.objects.create(name="Existing")
    output = _bootstrap()
    assert "your own account" in output
    assert not (tmp_path / "demo-login.txt").exists()
    assert Profile.objects.count() == 1
    assert not User.objects.filter(username="admin").exists()


def test_demo_passwords_pass_the_password_validators(settings, tmp_path):
    from django.contrib.auth.password_validation import validate_password

    settings.VAR_DIR = tmp_path
    password = LOGIN_LINE.search(_bootstrap()).group(3)
    try:
        validate_password(password)
    except ValidationError as error:  # pragma: no cover - the message is the point
        pytest.fail(f"demo password refused: {error}")


def _logs_in(url: str, username: str, password: str) -> bool:
    """Through the login form, as a person would (login throttling needs the request)."""
    response = Client().post(url, {"username": username, "password": password})
    return response.status_code == 302
