"""The SFTP source pages, each with the three people: an Importer (allowed), a
Marketer (logged in, no permission: 403) and an anonymous visitor (login)."""

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from imports.models import SftpFile, SftpRun, SftpSource
from imports.sftp.services import secret_decrypt
from imports.tests.sftp_server import PASSWORD, private_key_text

# Groups first: a transactional test elsewhere may have flushed them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sftp_role_groups")]

FORM = {
    "name": "acme drop",
    "host": "127.0.0.1",
    "port": "22",
    "username": "feeds",
    "password": "s3cret-pass",
    "private_key": "",
    "host_key_fingerprint": "",
    "remote_dir": "incoming/",
    "pattern": "*.csv",
    "kind": "profiles",
    "event_name": "",
    "schedule": "interval",
    "every_minutes": "10",
    "daily_at": "",
    "enabled": "on",
}


@pytest.fixture
def source(sftp_server, make_sftp_source):
    return make_sftp_source(sftp_server)


def assert_login_redirect(response):
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_list_permissions(importer_client, marketer_client, anonymous_client):
    url = reverse("imports:sftp:list")
    assert importer_client.get(url).status_code == 200
    assert marketer_client.get(url).status_code == 403
    assert_login_redirect(anonymous_client.get(url))


def test_list_shows_last_run_and_error_in_constant_queries(
    importer_client, source, django_assert_num_queries
):
    SftpRun.objects.create(
        source=source, status="failed", error="Connection refused: nothing accepts connections"
    )
    for number in range(3):
        other = SftpSource.objects.create(
            name=f"other {number}", host="h", username="u", every_minutes=5
        )
        SftpRun.objects.create(source=other, status="done", files_imported=number)
    # session, user, permissions (group + user), sources with their last run
    with django_assert_num_queries(5):
        response = importer_client.get(reverse("imports:sftp:list"))
    html = response.content.decode()
    assert "Connection refused: nothing accepts connections" in html
    assert "other 2" in html and "every 5 min" in html
    assert "events__&lt;Event Name&gt;__anything.csv" in html  # the convention is documented


def test_create_encrypts_password_and_schedules(importer_client):
    response = importer_client.post(reverse("imports:sftp:create"), FORM)
    source = SftpSource.objects.get(name="acme drop")
    assert response.status_code == 302
    assert response["Location"] == reverse("imports:sftp:detail", args=[source.pk])
    assert source.remote_dir == "/incoming"
    assert "s3cret-pass" not in source.password_encrypted
    assert secret_decrypt(source.password_encrypted) == "s3cret-pass"
    task = PeriodicTask.objects.get(pk=source.periodic_task_id)
    assert task.enabled and task.interval.every == 10


def test_create_needs_a_secret_and_an_event_name_for_events(importer_client):
    form = FORM | {"password": "", "kind": "events"}
    response = importer_client.post(reverse("imports:sftp:create"), form)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Give a password or a private key." in html
    assert "Events need an event name." in html
    assert not SftpSource.objects.exists()


def test_create_rejects_an_unreadable_key(importer_client):
    form = FORM | {"password": "", "private_key": "not a key"}
    response = importer_client.post(reverse("imports:sftp:create"), form)
    assert "Private key not readable" in response.content.decode()


def test_create_permissions(marketer_client, anonymous_client):
    url = reverse("imports:sftp:create")
    assert marketer_client.get(url).status_code == 403
    assert marketer_client.post(url, FORM).status_code == 403
    assert_login_redirect(anonymous_client.post(url, FORM))
    assert not SftpSource.objects.exists()


def test_edit_never_shows_the_secret_and_blank_keeps_it(importer_client, source, sftp_client_key):
    url = reverse("imports:sftp:edit", args=[source.pk])
    html = importer_client.get(url).content.decode()
    assert "Saved — leave blank to keep." in html
    assert PASSWORD not in html and source.password_encrypted not in html
    form = FORM | {"name": "renamed", "port": source.port, "password": ""}
    assert importer_client.post(url, form).status_code == 302
    source.refresh_from_db()
    assert source.name == "renamed" and secret_decrypt(source.password_encrypted) == PASSWORD
    # Switching to a key replaces the password.
    key = private_key_text(sftp_client_key)
    importer_client.post(url, form | {"private_key": key})
    source.refresh_from_db()
    assert source.has_private_key and not source.has_password
    assert "PRIVATE KEY" not in source.private_key_encrypted


def test_edit_permissions(marketer_client, anonymous_client, source):
    url = reverse("imports:sftp:edit", args=[source.pk])
    assert marketer_client.post(url, FORM).status_code == 403
    assert_login_redirect(anonymous_client.get(url))
    source.refresh_from_db()
    assert source.name == "drop"


def test_detail_shows_history_with_links_to_imports(importer_client, source):
    from imports.services import import_run_create

    run = SftpRun.objects.create(source=source, status="done", files_seen=2, files_imported=1)
    import_run = import_run_create(
        kind="profiles", file_name="people.csv", content=b"identity\nu-1\n", origin="sftp"
    )
    SftpFile.objects.create(
        source=source, path="/incoming/people.csv", size=13, mtime=1, run=run,
        status="imported", import_run=import_run,
    )  # fmt: skip
    url = reverse("imports:sftp:detail", args=[source.pk])
    html = importer_client.get(url).content.decode()
    assert reverse("imports:detail", args=[import_run.pk]) in html
    assert "Run history" in html and "<h1>" in html
    partial = importer_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'id="history"' in partial and "<h1>" not in partial
    assert reverse("imports:detail", args=[import_run.pk]) in partial


def test_detail_permissions(marketer_client, anonymous_client, source):
    url = reverse("imports:sftp:detail", args=[source.pk])
    assert marketer_client.get(url).status_code == 403
    assert_login_redirect(anonymous_client.get(url))


def test_test_connection_offers_to_trust_the_key_then_pins_it(
    importer_client, sftp_server, make_sftp_source
):
    source = make_sftp_source(sftp_server, host_key_fingerprint="")
    url = reverse("imports:sftp:test", args=[source.pk])
    partial = importer_client.post(url, headers={"HX-Request": "true"}).content.decode()
    assert sftp_server.fingerprint in partial and "Trust this key" in partial
    assert "<h1>" not in partial
    full = importer_client.post(url).content.decode()
    assert "<h1>" in full and "Trust this key" in full
    response = importer_client.post(
        reverse("imports:sftp:trust", args=[source.pk]), {"fingerprint": sftp_server.fingerprint}
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.host_key_fingerprint == sftp_server.fingerprint
    sftp_server.put("incoming/a.csv", "identity\n1\n")
    partial = importer_client.post(url, headers={"HX-Request": "true"}).content.decode()
    assert "Connected and logged in. 1 file(s)" in partial and "Trust this key" not in partial


def test_test_connection_reports_a_refused_port(importer_client, source):
    from imports.tests.sftp_server import closed_port

    SftpSource.objects.filter(pk=source.pk).update(port=closed_port())
    url = reverse("imports:sftp:test", args=[source.pk])
    partial = importer_client.post(url, headers={"HX-Request": "true"}).content.decode()
    assert "Connection refused" in partial


def test_actions_permissions(importer_client, marketer_client, anonymous_client, source):
    for name in ("test", "trust", "run", "delete"):
        url = reverse(f"imports:sftp:{name}", args=[source.pk])
        assert marketer_client.post(url, {"fingerprint": "SHA256:x"}).status_code == 403
        assert_login_redirect(anonymous_client.post(url))
        assert importer_client.get(url).status_code == 405  # actions are POST only
    source.refresh_from_db()
    assert source.host_key_fingerprint != "SHA256:x"


# In a test transaction: the on-commit callbacks are captured, not run.
@pytest.mark.django_db
def test_run_now_queues_a_poll_after_commit(
    importer_client, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = importer_client.post(reverse("imports:sftp:run", args=[source.pk]))
    assert response.status_code == 302
    assert len(callbacks) == 1  # delay_on_commit: sent to the broker once committed


def test_delete_removes_source_and_schedule(importer_client, source):
    task_id = source.periodic_task_id
    response = importer_client.post(reverse("imports:sftp:delete", args=[source.pk]))
    assert response.status_code == 302
    assert not SftpSource.objects.exists()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_run_now_is_refused_until_the_host_key_is_trusted(
    importer_client, source, django_capture_on_commit_callbacks
):
    SftpSource.objects.filter(pk=source.pk).update(host_key_fingerprint="")
    detail = reverse("imports:sftp:detail", args=[source.pk])
    html = importer_client.get(detail).content.decode()
    assert 'disabled aria-describedby="run-now-why">Run now' in html
    with django_capture_on_commit_callbacks() as callbacks:
        response = importer_client.post(reverse("imports:sftp:run", args=[source.pk]), follow=True)
    assert callbacks == []  # nothing queued
    assert "Trust the server&#x27;s host key first" in response.content.decode()


def test_a_file_imported_with_rejected_rows_says_so(importer_client, source):
    from imports.services import import_run_create, import_run_execute

    import_run = import_run_create(
        kind="profiles", file_name="people.csv", content=b"identity,N\nu-1,a\n,b\n", origin="sftp"
    )
    import_run_execute(import_run_id=import_run.pk)
    run = SftpRun.objects.create(source=source, status="done", files_seen=1, files_imported=1)
    SftpFile.objects.create(
        source=source, path="/incoming/people.csv", size=13, mtime=1, run=run,
        status="imported", import_run=import_run,
    )  # fmt: skip
    html = importer_client.get(reverse("imports:sftp:detail", args=[source.pk])).content.decode()
    assert "Imported with 1 rejected row<" in html


def test_a_failed_attempt_that_will_be_retried_says_so(importer_client, source):
    import datetime as dt

    from django.utils import timezone

    SftpRun.objects.create(source=source, status="failed", error="Connection refused",
                           error_transient=True, retry_number=2, retries_max=4,
                           retry_at=timezone.now() + dt.timedelta(seconds=60))  # fmt: skip
    html = importer_client.get(reverse("imports:sftp:detail", args=[source.pk])).content.decode()
    assert "Retrying (2 of 4)" in html and 'sftp-run-status">Failed<' not in html
    listing = importer_client.get(reverse("imports:sftp:list")).content.decode()
    assert "Retrying (2 of 4)" in listing
    SftpRun.objects.update(retry_at=None)  # the retry started: this attempt simply failed
    html = importer_client.get(reverse("imports:sftp:detail", args=[source.pk])).content.decode()
    assert 'sftp-run-status">Failed<' in html and "Retrying" not in html


def test_next_run_time(source):
    import datetime as dt

    from django.utils import timezone

    from imports.sftp.selectors import sftp_source_next_run

    now = timezone.now()
    assert sftp_source_next_run(source=source, now=now) == now  # beat has not sent one yet
    task = source.periodic_task
    task.last_run_at = now - dt.timedelta(minutes=5)
    task.save()
    assert sftp_source_next_run(source=source, now=now) == now + dt.timedelta(minutes=10)
    source.schedule, source.daily_at = "daily", dt.time(6, 30)
    following = sftp_source_next_run(source=source, now=now)
    assert following is not None and now < following <= now + dt.timedelta(days=1)
    assert timezone.localtime(following).time() == dt.time(6, 30)
    source.enabled = False
    assert sftp_source_next_run(source=source, now=now) is None


def test_detail_shows_the_next_run(importer_client, source):
    html = importer_client.get(reverse("imports:sftp:detail", args=[source.pk])).content.decode()
    assert 'id="next-run"' in html and "due now" in html
