"""The fix-and-retry loop: every problem of a row at once, rows numbered as the
preview numbers them, and the rejected-rows file uploaded again as it was downloaded."""

import csv
import functools
import io

import pytest
from django.urls import reverse

from imports.models import ImportRun
from imports.selectors import import_run_preview
from imports.services import import_run_create, import_run_execute
from imports.tests.csv_fixtures import (
    csv_path,
    ensure_role_groups,
    import_file,
    use_temporary_media,
)
from profiles.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)

# Data row 2 has two bad values, data row 3 has no identity and a bad value.
PEOPLE = (
    "identity,Name,Score<Float>,Visits<Integer>\n"
    "u1,Ann,1.5,3\n"
    "u2,Bob,high,many\n"
    ",Cid,x,4\n"
    "u4,Dee,2,5\n"
)


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path) -> None:
    ensure_role_groups()
    use_temporary_media(settings, tmp_path)


@pytest.fixture
def write_csv(tmp_path):
    return functools.partial(csv_path, tmp_path)


def report(run: ImportRun) -> list[list[str]]:
    return list(csv.reader(io.StringIO(run.rejected_rows_csv().decode("utf-8-sig"))))


def test_every_problem_of_a_row_is_reported_at_once(write_csv):
    run = import_file(write_csv(PEOPLE))
    assert (run.status, run.profiles_created, run.rows_rejected) == ("done", 2, 2)
    header, bob, cid = report(run)
    assert header == ["Error row", "Error column", "Error value", "Error reason",
                      "identity", "Name", "Score<Float>", "Visits<Integer>"]  # fmt: skip
    assert bob[:2] == ["2", "Score<Float> · Visits<Integer>"]
    assert "Value of 'Score': 'high' is not a number." in bob[3]
    assert "Value of 'Visits': 'many' is not a whole number." in bob[3]
    assert bob[4:] == ["u2", "Bob", "high", "many"]
    assert cid[0] == "3"
    assert "identity" in cid[1] and "Score<Float>" in cid[1]
    assert "Value of 'Score': 'x' is not a number." in cid[3]


def test_rejected_rows_are_numbered_like_the_preview(write_csv):
    # A blank line before the header: data rows still count from 1 under the header.
    path = write_csv("\n" + PEOPLE)
    with path.open("rb") as handle:
        run = import_run_create(kind="profiles", file_name="people.csv", content=handle.read())
    numbers = [number for number, _ in import_run_preview(import_run=run)["numbered_rows"]]
    assert numbers == [1, 2, 3, 4]
    done = import_file(path)
    assert [row[0] for row in report(done)[1:]] == ["2", "3"]


def test_the_downloaded_file_uploads_again_without_repeating_its_error_columns(write_csv, tmp_path):
    first = import_file(write_csv(PEOPLE))
    again = import_file(write_csv(first.rejected_rows_csv(), name="people-rejected-rows.csv"))
    assert again.status == "done"
    # The Error columns are ignored on upload, so the same two rows fail the same way...
    assert (again.profiles_created, again.rows_rejected) == (0, 2)
    header, bob, _ = report(again)
    # ...and the new report names them once, with the file's own columns after them.
    assert header == ["Error row", "Error column", "Error value", "Error reason",
                      "identity", "Name", "Score<Float>", "Visits<Integer>"]  # fmt: skip
    assert bob[0] == "1" and bob[4:]  # its row in this file == ["u2", "Bob", "high", "many"]

    # Fixed in the downloaded file, the rows import.
    fixed = "\n".join(
        ",".join(row)
        for row in [header, ["", "", "", "", "u2", "Bob", "2.5", "7"],
                    ["", "", "", "", "u3", "Cid", "1", "4"]]
    )  # fmt: skip
    last = import_file(write_csv(fixed + "\n", name="people-fixed.csv"))
    assert (last.status, last.profiles_created, last.rows_rejected) == ("done", 2, 0)


def test_the_import_page_lists_the_rejected_rows_with_every_reason(
    importer_client, marketer_client, anonymous_client, write_csv
):
    run = import_file(write_csv(PEOPLE))
    url = reverse("imports:detail", args=[run.pk])
    html = importer_client.get(url).content.decode()
    assert '<tr data-row="2">' in html and '<tr data-row="3">' in html
    assert "&#x27;high&#x27; is not a number." in html
    assert "&#x27;many&#x27; is not a whole number." in html
    assert reverse("imports:rejected", args=[run.pk]) in html
    assert marketer_client.get(url).status_code == 403
    response = anonymous_client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_column_is_saved_under_the_name_given_on_the_mapping_page(importer_client, write_csv):
    with write_csv("identity,Pts<Float>,Score\nu1,4.5,3\n").open("rb") as handle:
        run = import_run_create(kind="profiles", file_name="p.csv", content=handle.read())
    url = reverse("imports:mapping", args=[run.pk])
    page = importer_client.get(url).content.decode()
    assert 'aria-label="Pts&lt;Float&gt;: save as"' in page and 'value="Pts"' in page
    assert "Detected: Float" in page

    form = {"role_0": "identity", "type_0": "", "role_1": "property", "type_1": "float",
            "role_2": "property", "type_2": "integer", "name_2": "Score"}  # fmt: skip
    clash = importer_client.post(url, {**form, "name_1": "score "})
    assert clash.status_code == 400
    assert "both saved as" in clash.content.decode()
    assert importer_client.post(url, {**form, "name_1": "Loyalty Points"}).status_code == 302
    run.refresh_from_db()
    assert run.mapping["columns"][1]["name"] == "Loyalty Points"
    import_run_execute(import_run_id=run.pk)
    person = Profile.objects.get(identifiers__value="u1")
    assert person.custom == {"Loyalty Points": 4.5, "Score": 3}


def test_detected_says_the_type_the_mapping_chose():
    run = ImportRun(columns=["identity", "Score"], mapping={"columns": [
        {"role": "identity", "type": ""}, {"role": "property", "type": "float"}]})  # fmt: skip
    assert import_run_preview(import_run=run)["detected"][1] == "float"


def test_totals_account_for_a_row_merged_into_an_earlier_row_of_the_same_person(
    importer_client, write_csv
):
    run = import_file(write_csv("identity,Name\nu1,Ann\nu2,Bob\nu1,Annie\n,Nobody\n"))
    assert (run.profiles_created, run.profiles_updated, run.rows_rejected) == (2, 0, 1)
    html = importer_client.get(reverse("imports:detail", args=[run.pk])).content.decode()
    assert "4 rows:" in html and "2 created, 0 updated," in html
    assert "1 merged into an earlier row of the same person" in html
    assert 'data-total="merged">1<' in html
