"""Find People's match count (exact, or an estimate labelled so) and its CSV export."""

from __future__ import annotations

import csv
import html
import io
import re
import time

import pytest
from django.db import connection

from profiles.exports import people_export_run
from profiles.models import PeopleExport, Profile
from profiles.selectors import people_match_count
from profiles.tests.factories import IdentifierFactory, ProfileFactory
from profiles.tests.roles import ensure_role_groups

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _role_groups(db) -> None:
    ensure_role_groups()


@pytest.fixture
def media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path},
        },
    }
    return tmp_path


def _count_text(response) -> str:
    match = re.search(r'data-testid="match-count">(.*?)</p>', response.content.decode(), re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip() if match else ""


# --- the count -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_count_is_exact_for_a_small_match(marketer_client):
    for number in range(3):
        ProfileFactory(name=f"Zed {number}")
    ProfileFactory(name="Other")
    assert _count_text(marketer_client.get("/people/?q=zed")) == "3 people match"
    assert _count_text(marketer_client.get("/people/?q=other", **HX)) == "1 person matches"
    assert "No one matches" in marketer_client.get("/people/?q=nobody").content.decode()


@pytest.mark.django_db
def test_no_count_before_a_search(marketer_client):
    ProfileFactory(name="Zed")
    assert _count_text(marketer_client.get("/people/")) == ""


def _count_url(response) -> str:
    match = re.search(r'hx-get="(/people/count/\?[^"]*)"', response.content.decode())
    return html.unescape(match.group(1)) if match else ""


@pytest.mark.django_db
def test_more_than_a_page_loads_its_count_after_the_results(marketer_client, importer_client):
    Profile.objects.bulk_create([Profile(name=f"Zed {n}", email=f"z{n}@x.com") for n in range(30)])
    ProfileFactory(name="Other")
    page = marketer_client.get("/people/?q=zed&has_email=on")
    # The results come first; the count is a request of its own, for the same search.
    assert _count_text(page) == "" and "Zed 29" in page.content.decode()
    count_url = _count_url(page)
    assert count_url.startswith("/people/count/?") and "q=zed" in count_url
    counted = marketer_client.get(count_url, **HX)
    text = counted.content.decode()
    assert _count_text(counted) == "30 people match" and "Export these people (CSV)" in text
    assert "<html" not in text and "Zed 29" not in text
    # Without script, the link opens the whole page with the count.
    plain = marketer_client.get(count_url)
    assert _count_text(plain) == "30 people match" and "Zed 29" in plain.content.decode()
    # The second (last) page has every row in view: it counts them itself.
    assert _count_text(marketer_client.get("/people/?q=zed&page=2")) == "30 people match"
    # An Importer may count, but is not offered the export.
    counted = importer_client.get(count_url, **HX)
    assert _count_text(counted) == "30 people match"
    assert "Export these people" not in counted.content.decode()


@pytest.mark.django_db
def test_the_count_needs_a_search_and_a_login(marketer_client, anonymous_client, outsider_client):
    ProfileFactory(name="Zed")
    assert marketer_client.get("/people/count/", **HX).content.decode().strip() == ""
    bad = marketer_client.get("/people/count/?seen_within=-3", **HX)
    assert bad.status_code == 200 and _count_text(bad) == ""
    response = anonymous_client.get("/people/count/?q=zed", **HX)
    assert response.status_code == 302 and "/accounts/login/" in response.url
    assert outsider_client.get("/people/count/?q=zed", **HX).status_code == 403


@pytest.mark.django_db
def test_over_the_cap_the_count_is_an_estimate_labelled_about(marketer_client, settings):
    settings.PEOPLE_COUNT_EXACT_UP_TO = 5
    Profile.objects.bulk_create([Profile(name=f"Zed {n}", email=f"z{n}@x.com") for n in range(40)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")
    count_url = _count_url(marketer_client.get("/people/?has_email=on"))
    text = _count_text(marketer_client.get(count_url))
    assert text.startswith("About ") and "estimated" in text
    assert int(re.search(r"About ([\d,]+)", text).group(1).replace(",", "")) > 5


@pytest.mark.django_db
def test_a_count_that_runs_too_long_falls_back_to_the_estimate():
    ProfileFactory.create_batch(3)
    # pg_sleep in the query stands for a scan too long for the page: the timeout stops it.
    slow = Profile.objects.extra(where=["pg_sleep(0.2) IS NOT NULL"])
    result = people_match_count(queryset=slow, exact_up_to=100, timeout_ms=50)
    assert result.exact is False and result.value >= 101
    # The timeout was local: later statements of the same transaction run unhindered.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.1), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == "0"


# --- the export, through the real worker -------------------------------------------------


def _wait_finished(pk: int, seconds: float = 60) -> PeopleExport:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        export = PeopleExport.objects.get(pk=pk)
        if export.is_finished:
            return export
        time.sleep(0.2)
    raise AssertionError("the export did not finish")


def test_export_of_a_search_through_the_worker(celery_worker_real, media, marketer_client):
    evil = ProfileFactory(name='=HYPERLINK("http://evil")', email="gold1@example.com",
                          custom={"Tier": "Gold"})  # fmt: skip
    IdentifierFactory(profile=evil, kind="identity", value="@u-1")
    ProfileFactory(name="Gold Two", email="gold2@example.com", custom={"Tier": "Gold"})
    ProfileFactory(name="Silver", email="silver@example.com", custom={"Tier": "Silver"})
    search = {"prop": "Tier", "value": "Gold"}

    page = marketer_client.get("/people/", search)
    assert "Export these people (CSV)" in page.content.decode()
    response = marketer_client.post("/people/export/", search)
    export = PeopleExport.objects.get()
    assert response.status_code == 302 and response.url == f"/people/exports/{export.pk}/"
    assert export.filters == search
    assert "Export of people" in marketer_client.get(response.url).content.decode()

    export = _wait_finished(export.pk)
    assert export.status == "done", export.error
    assert (export.rows_done, export.rows_total) == (2, 2)
    poll = marketer_client.get(f"/people/exports/{export.pk}/", **HX)
    assert poll.status_code == 286 and "Download CSV" in poll.content.decode()

    download = marketer_client.get(f"/people/exports/{export.pk}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "text/csv"
    body = b"".join(download.streaming_content)
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:3] == ["CleverTap ID", "Name", "Identities"]
    by_email = {row[3]: row for row in rows[1:]}
    assert set(by_email) == {"gold1@example.com", "gold2@example.com"}
    assert by_email["gold1@example.com"][1] == '\'=HYPERLINK("http://evil")'
    assert by_email["gold1@example.com"][2] == "identity:@u-1"


@pytest.mark.django_db
def test_progress_polls_until_finished_and_only_for_its_author(
    marketer_client, marketer, admin_client_
):
    export = PeopleExport.objects.create(created_by=marketer, status="running",
                                         rows_total=10, rows_done=4)  # fmt: skip
    poll = marketer_client.get(f"/people/exports/{export.pk}/", **HX)
    text = poll.content.decode()
    assert poll.status_code == 200 and 'hx-trigger="every 1s"' in text and "4 of 10" in text
    assert "<html" not in text
    assert marketer_client.get(f"/people/exports/{export.pk}/download/").status_code == 404
    # Another person's export (personal data) is not shown to an Admin either.
    assert admin_client_.get(f"/people/exports/{export.pk}/").status_code == 404


@pytest.mark.django_db
def test_export_permissions(importer_client, outsider_client, anonymous_client, marketer):
    export = PeopleExport.objects.create(created_by=marketer)
    for client in (importer_client, outsider_client):
        assert client.post("/people/export/", {"q": "x"}).status_code == 403
        assert client.get(f"/people/exports/{export.pk}/").status_code == 403
        assert client.get(f"/people/exports/{export.pk}/download/").status_code == 403
    # An Importer may search, but is not offered the export.
    ProfileFactory(name="Zed")
    assert "Export these people" not in importer_client.get("/people/?q=zed").content.decode()
    response = anonymous_client.post("/people/export/", {"q": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response.url
    assert anonymous_client.get(f"/people/exports/{export.pk}/").status_code == 302
    assert not PeopleExport.objects.exclude(pk=export.pk).exists()


@pytest.mark.django_db
def test_a_bad_search_is_refused_with_its_reason(marketer_client):
    response = marketer_client.post("/people/export/", {"seen_within": "-3"}, follow=True)
    assert "Cannot export this search" in response.content.decode()
    assert not PeopleExport.objects.exists()


@pytest.mark.django_db
def test_a_rerun_resumes_from_its_checkpoint_without_duplicates(media, settings, marketer):
    settings.PEOPLE_EXPORT_BATCH = 2
    people = [ProfileFactory(name=f"P{n}") for n in range(5)]
    export = PeopleExport.objects.create(created_by=marketer, filters={})
    people_export_run(export_id=export.pk)
    done = PeopleExport.objects.get(pk=export.pk)
    assert done.status == "done" and done.rows_done == 5
    # As if a worker had died after the first batch: back to that checkpoint, with a
    # half-written line after it on disk.
    path = media / done.file.name
    content = path.read_bytes()
    first_batch_end = content.index(b"\r\n", content.index(people[1].ct_id.encode())) + 2
    path.write_bytes(content[:first_batch_end] + b"__half,writ")
    PeopleExport.objects.filter(pk=export.pk).update(
        status="running", last_pk=people[1].pk, rows_done=2, file_bytes=first_batch_end
    )
    people_export_run(export_id=export.pk)
    again = PeopleExport.objects.get(pk=export.pk)
    assert again.status == "done" and again.rows_done == 5 and again.attempts == 2
    assert path.read_bytes() == content
    # A finished export is never claimed again.
    assert people_export_run(export_id=export.pk) is None
