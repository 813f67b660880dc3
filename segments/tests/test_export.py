"""CSV export through a real Celery worker on the real broker."""

import csv
import io
import time

import pytest

from profiles.tests.factories import IdentifierFactory, ProfileFactory
from segments.models import Segment, SegmentExport
from segments.services import csv_safe

HX = {"HTTP_HX_REQUEST": "true"}


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


def wait_until_finished(export_id: int, seconds: float = 60) -> SegmentExport:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        export = SegmentExport.objects.get(pk=export_id)
        if export.is_finished:
            return export
        time.sleep(0.2)
    raise AssertionError(f"export still {export.status} after {seconds}s")


def test_csv_safe():
    assert csv_safe("=SUM(A1)") == "'=SUM(A1)"
    assert csv_safe("+1") == "'+1"
    assert csv_safe("-2") == "'-2"
    assert csv_safe("@x") == "'@x"
    assert csv_safe("\tx") == "'\tx"
    assert csv_safe("plain") == "plain"
    assert csv_safe(["a", "b"]) == "a; b"
    assert csv_safe(None) == ""
    assert csv_safe(True) == "true"


def test_export_through_the_worker(celery_worker_real, media, marketer_client, marketer):
    ann = ProfileFactory(name="=HYPERLINK(\"http://evil\")", email="ann@example.com",
                         custom={"Customer Type": "Gold", "Interests": ["a", "b"]})  # fmt: skip
    IdentifierFactory(profile=ann, kind="identity", value="u-ann")
    IdentifierFactory(profile=ann, kind="email", value="ann@example.com")
    others = ProfileFactory.create_batch(4, custom={"Customer Type": "Silver"})
    from profiles.models import PropertyDefinition

    PropertyDefinition.objects.create(scope="profile", name="Customer Type", type="string")
    PropertyDefinition.objects.create(scope="profile", name="Interests", type="list")
    segment = Segment.objects.create(name="All of them", definition={"all": []})

    response = marketer_client.post(
        f"/segments/{segment.pk}/export/",
        {"properties": ["Name", "Email", "Customer Type", "Interests"]},
    )
    export = SegmentExport.objects.get(segment=segment)
    assert response.url == f"/segments/exports/{export.pk}/"
    page = marketer_client.get(response.url).content.decode()
    assert "Export of" in page

    export = wait_until_finished(export.pk)
    assert export.status == "done", export.error
    assert (export.rows_done, export.rows_total) == (5, 5)

    poll = marketer_client.get(f"/segments/exports/{export.pk}/", **HX)
    assert poll.status_code == 286  # htmx stops polling
    assert "Download CSV" in poll.content.decode()

    download = marketer_client.get(f"/segments/exports/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows[0] == ["ct_id", "identities", "Name", "Email", "Customer Type", "Interests"]
    by_id = {row[0]: row for row in rows[1:]}
    assert set(by_id) == {ann.ct_id, *(p.ct_id for p in others)}
    assert by_id[ann.ct_id][1:] == [
        "email:ann@example.com; identity:u-ann",
        '\'=HYPERLINK("http://evil")',
        "ann@example.com",
        "Gold",
        "a; b",
    ]


def test_export_permissions(importer_client, outsider_client, anonymous_client, marketer):
    segment = Segment.objects.create(name="S", definition={"all": []})
    export = SegmentExport.objects.create(segment=segment, definition={"all": []})
    for client in (importer_client, outsider_client):
        assert client.post(f"/segments/{segment.pk}/export/").status_code == 403
        assert client.get(f"/segments/exports/{export.pk}/").status_code == 403
        assert client.get(f"/segments/exports/{export.pk}/download/").status_code == 403
    assert anonymous_client.get(f"/segments/exports/{export.pk}/").status_code == 302


def test_progress_keeps_polling_until_finished(marketer_client):
    segment = Segment.objects.create(name="S", definition={"all": []})
    export = SegmentExport.objects.create(segment=segment, definition={"all": []},
                                          status="running", rows_total=10, rows_done=4)  # fmt: skip
    poll = marketer_client.get(f"/segments/exports/{export.pk}/", **HX)
    text = poll.content.decode()
    assert poll.status_code == 200
    assert 'hx-trigger="every 1s"' in text and "4 of 10" in text and "<html" not in text
    assert marketer_client.get(f"/segments/exports/{export.pk}/download/").status_code == 404
