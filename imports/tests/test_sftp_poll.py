"""Polling a real SFTP server: stability, the ledger, moving files, result
files, failures, host-key pinning and concurrency (imports.sftp.services)."""

import threading

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from imports.models import (
    ImportRun,
    ImportStatus,
    SftpFile,
    SftpFileStatus,
    SftpRun,
    SftpRunStatus,
    SftpSource,
)
from imports.sftp.services import (
    SftpSourceBusy,
    secret_decrypt,
    sftp_source_poll,
    sftp_source_save,
    sftp_source_test_connection,
    sftp_source_trust_host_key,
)
from imports.tests.sftp_server import (
    PASSWORD,
    SilentServer,
    closed_port,
    generate_key,
    private_key_text,
)
from profiles.models import Profile

PROFILES_CSV = "identity,Name,Email\nu-1,Ann,ann@example.com\nu-2,Bob,bob@example.com\n"


def poll(source, **kwargs) -> SftpRun:
    source.refresh_from_db()
    return sftp_source_poll(source=source, trigger="command", **({"settle_seconds": 0} | kwargs))


def counts(run: SftpRun) -> tuple[int, int, int, int]:
    return run.files_seen, run.files_imported, run.files_skipped, run.files_failed


@pytest.mark.django_db(transaction=True)
def test_new_file_is_imported_once_across_polls(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV)

    first = poll(source)
    assert first.status == SftpRunStatus.DONE
    assert counts(first) == (1, 0, 1, 0)  # first look only: waits for a second one
    assert ImportRun.objects.count() == 0

    second = poll(source)
    assert counts(second) == (1, 1, 0, 0)
    run = ImportRun.objects.get()
    assert (run.status, run.origin, run.file_name) == (ImportStatus.DONE, "sftp", "people.csv")
    assert run.profiles_created == 2
    assert set(Profile.objects.values_list("name", flat=True)) >= {"Ann", "Bob"}
    assert sftp_server.files("incoming") == []
    assert sftp_server.files("incoming/processed") == ["people.csv", "people.csv.result.csv"]
    ledger = SftpFile.objects.get()
    assert (ledger.status, ledger.import_run, ledger.moved_to) == (
        SftpFileStatus.IMPORTED,
        run,
        "/incoming/processed/people.csv",
    )
    assert len(ledger.sha256) == 64

    third = poll(source)
    assert counts(third) == (0, 0, 0, 0)
    assert ImportRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_file_looked_at_twice_in_one_poll_when_settle_time_given(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    run = poll(source, settle_seconds=0.2)
    assert counts(run) == (1, 1, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_file_still_growing_is_left_until_two_looks_agree(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", "identity,Name\nu-1,Ann\n", mtime=1_700_000_000)
    assert counts(poll(source)) == (1, 0, 1, 0)
    sftp_server.append("incoming/people.csv", "u-2,Bob\n", mtime=1_700_000_060)  # upload goes on
    assert counts(poll(source)) == (1, 0, 1, 0)
    assert ImportRun.objects.count() == 0
    assert counts(poll(source)) == (1, 1, 0, 0)
    assert ImportRun.objects.get().rows_total == 2  # the whole file, not the first half
    statuses = dict(SftpFile.objects.values_list("size", "status"))
    assert sorted(statuses.values()) == [SftpFileStatus.CHANGED, SftpFileStatus.IMPORTED]


@pytest.mark.django_db(transaction=True)
def test_a_new_version_under_the_same_name_is_imported_again(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV, mtime=1_700_000_000)
    poll(source, settle_seconds=0.1)
    sftp_server.put("incoming/people.csv", "identity,Name\nu-3,Cy\n", mtime=1_700_000_100)
    assert counts(poll(source, settle_seconds=0.1)) == (1, 1, 0, 0)
    assert ImportRun.objects.count() == 2
    assert "people.1.csv" in sftp_server.files("incoming/processed")


@pytest.mark.django_db(transaction=True)
def test_result_file_has_totals_and_rejected_rows(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put(
        "incoming/people.csv", "identity,Email\nu-1,ann@example.com\nu-2,not-an-email\n,x@y.z\n"
    )
    poll(source, settle_seconds=0.1)
    run = ImportRun.objects.get()
    assert run.rows_rejected >= 1
    result = (sftp_server.root / "incoming/processed/people.csv.result.csv").read_text()
    assert "status,imported" in result
    assert f"rows_rejected,{run.rows_rejected}" in result
    assert f"import_id,{run.pk}" in result
    body = result.split("\n\n", 1)[1]  # the rejected rows follow the totals
    assert len(body.strip().splitlines()) >= 1 + run.rows_rejected


@pytest.mark.django_db(transaction=True)
def test_events_named_by_file_name_convention(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server, kind="by_name")
    sftp_server.put(
        "incoming/events__Order Placed__may.csv", "identity,ts,amount\nu-1,1700000000,5\n"
    )
    sftp_server.put("incoming/profiles__may.csv", "identity,Name\nu-1,Ann\n")
    sftp_server.put("incoming/random.csv", "identity,Name\nu-9,Zed\n")
    run = poll(source, settle_seconds=0.1)
    assert counts(run) == (3, 2, 0, 1)
    kinds = set(ImportRun.objects.values_list("file_name", "kind", "event_name"))
    assert kinds == {
        ("events__Order Placed__may.csv", "events", "Order Placed"),
        ("profiles__may.csv", "profiles", ""),
    }
    assert sftp_server.files("incoming/failed") == ["random.csv", "random.csv.result.csv"]
    result = (sftp_server.root / "incoming/failed/random.csv.result.csv").read_text()
    assert "status,failed" in result and "naming convention" in result


@pytest.mark.django_db(transaction=True)
def test_a_file_the_import_refuses_goes_to_failed(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/bad.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")  # not a CSV
    run = poll(source, settle_seconds=0.1)
    assert counts(run) == (1, 0, 0, 1)
    import_run = ImportRun.objects.get()
    assert import_run.status == ImportStatus.FAILED
    result = (sftp_server.root / "incoming/failed/bad.csv.result.csv").read_text()
    assert "status,failed" in result and import_run.error.split(" (")[0] in result
    assert SftpFile.objects.get().status == SftpFileStatus.FAILED
    assert sftp_server.files("incoming/failed") == ["bad.csv", "bad.csv.result.csv"]
    assert counts(poll(source)) == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_read_only_account_imports_but_notes_it_could_not_move_or_write(
    sftp_server, make_sftp_source
):
    source = make_sftp_source(sftp_server)
    sftp_server.read_only = True
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    run = poll(source, settle_seconds=0.1)
    assert counts(run) == (1, 1, 0, 0)
    ledger = SftpFile.objects.get()
    assert ledger.status == SftpFileStatus.IMPORTED
    assert "permission denied" in ledger.note
    assert "result file not written" in ledger.note
    assert sftp_server.files("incoming") == ["people.csv"]
    # Still there on the next poll, but never imported twice.
    assert counts(poll(source)) == (1, 0, 1, 0)
    assert ImportRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_file_vanishing_mid_read_stays_retryable(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV, mtime=1_700_000_000)
    sftp_server.vanish_on_open.add("people.csv")
    run = poll(source, settle_seconds=0.1)
    assert counts(run) == (1, 0, 0, 1)
    ledger = SftpFile.objects.get()
    assert ledger.status == SftpFileStatus.SEEN and "no longer exists" in ledger.error
    assert ImportRun.objects.count() == 0
    # The customer uploads it again, identically: now it goes through.
    sftp_server.vanish_on_open.clear()
    sftp_server.put("incoming/people.csv", PROFILES_CSV, mtime=1_700_000_000)
    assert counts(poll(source)) == (1, 1, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_an_import_interrupted_by_a_dead_worker_is_resumed_not_duplicated(
    sftp_server, make_sftp_source
):
    """The worker died after storing the ImportRun and before finishing it."""
    from imports.services import import_run_create

    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV, mtime=1_700_000_000)
    stored = import_run_create(
        kind="profiles", file_name="people.csv", content=PROFILES_CSV.encode(), origin="sftp"
    )
    SftpFile.objects.create(
        source=source,
        path="/incoming/people.csv",
        size=len(PROFILES_CSV),
        mtime=1_700_000_000,
        status=SftpFileStatus.IMPORTING,
        import_run=stored,
        attempts=1,
    )
    run = poll(source)
    assert counts(run) == (1, 1, 0, 0)
    assert list(ImportRun.objects.values_list("pk", "status")) == [(stored.pk, ImportStatus.DONE)]
    assert Profile.objects.filter(name="Ann").count() == 1


@pytest.mark.django_db(transaction=True)
def test_key_auth_source(sftp_server, make_sftp_source, sftp_client_key):
    source = make_sftp_source(sftp_server, private_key=private_key_text(sftp_client_key))
    assert source.has_private_key and not source.has_password
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    assert counts(poll(source, settle_seconds=0.1)) == (1, 1, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_secrets_are_encrypted_at_rest(sftp_server, make_sftp_source, settings):
    source = make_sftp_source(sftp_server)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password_encrypted FROM imports_sftpsource WHERE id = %s", [source.pk]
        )
        (raw,) = cursor.fetchone()
    assert PASSWORD not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert secret_decrypt(raw) == PASSWORD
    # A separate encryption key makes the old token unreadable, with a clear message.
    settings.SECRETS_ENCRYPTION_KEY = "another key entirely"
    run = poll(source)
    assert run.status == SftpRunStatus.FAILED and "cannot be decrypted" in run.error


@pytest.mark.django_db(transaction=True)
def test_bad_password_fails_the_run_without_retry(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server, password="wrong")
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    run = poll(source)
    assert (run.status, run.error_transient) == (SftpRunStatus.FAILED, False)
    assert run.error.startswith("Authentication failed")
    assert SftpFile.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_connection_refused_is_reported_as_transient(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server, port=closed_port())
    run = poll(source)
    assert (run.status, run.error_transient) == (SftpRunStatus.FAILED, True)
    assert run.error.startswith("Connection refused")


@pytest.mark.django_db(transaction=True)
def test_silent_server_times_out(sftp_server, make_sftp_source):
    silent = SilentServer()
    try:
        source = make_sftp_source(sftp_server, port=silent.port)
        run = poll(source, timeout=1)
    finally:
        silent.stop()
    assert (run.status, run.error_transient) == (SftpRunStatus.FAILED, True)
    assert run.error.startswith("Timed out")


@pytest.mark.django_db(transaction=True)
def test_forbidden_folder_is_reported(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.denied_dirs.add("/incoming")
    run = poll(source)
    assert run.status == SftpRunStatus.FAILED and run.error.startswith("Permission denied")


@pytest.mark.django_db(transaction=True)
def test_unpinned_host_key_refuses_to_poll(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server, host_key_fingerprint="")
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    run = poll(source)
    assert run.status == SftpRunStatus.FAILED and "not trusted" in run.error
    test = sftp_source_test_connection(source=source)
    assert (test.ok, test.fingerprint) == (False, sftp_server.fingerprint)
    sftp_source_trust_host_key(source=source, fingerprint=test.fingerprint)
    assert sftp_source_test_connection(source=source).ok
    assert counts(poll(source, settle_seconds=0.1)) == (1, 1, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_changed_host_key_stops_the_source(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    sftp_server.put("incoming/people.csv", PROFILES_CSV)
    sftp_server.restart(host_key=generate_key())
    run = poll(source)
    assert run.status == SftpRunStatus.FAILED and "Host key changed" in run.error
    source.refresh_from_db()
    assert not source.enabled and "Host key changed" in source.stopped_reason
    assert not PeriodicTask.objects.get(pk=source.periodic_task_id).enabled
    assert ImportRun.objects.count() == 0
    # Trusting the new key (after checking it) starts the source again.
    sftp_source_trust_host_key(source=source, fingerprint=sftp_server.fingerprint)
    source.refresh_from_db()
    assert source.enabled and not source.stopped_reason
    assert PeriodicTask.objects.get(pk=source.periodic_task_id).enabled


@pytest.mark.django_db(transaction=True)
def test_a_second_poll_while_one_runs_is_refused(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    SftpRun.objects.create(source=source, trigger="schedule")  # status running
    with pytest.raises(SftpSourceBusy):
        poll(source)


@pytest.mark.django_db(transaction=True)
def test_two_workers_polling_at_once_import_each_file_once(sftp_server, make_sftp_source):
    source = make_sftp_source(sftp_server)
    for number in range(3):
        sftp_server.put(f"incoming/p{number}.csv", f"identity,Name\nu-{number},P{number}\n")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        try:
            run = sftp_source_poll(source=SftpSource.objects.get(pk=source.pk), settle_seconds=0.3)
            outcomes.append(run.status)
        except SftpSourceBusy:
            outcomes.append("busy")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) in (["busy", "done"], ["done", "done"])
    assert ImportRun.objects.count() == 3
    assert SftpFile.objects.filter(status=SftpFileStatus.IMPORTED).count() == 3


@pytest.mark.django_db(transaction=True)
def test_schedule_follows_the_source(sftp_server, make_sftp_source):
    import datetime as dt

    source = make_sftp_source(sftp_server, every_minutes=10)
    task = PeriodicTask.objects.get(pk=source.periodic_task_id)
    assert (task.task, task.args, task.interval.every, task.enabled) == (
        "imports.sftp.tasks.sftp_poll_source_task",
        f"[{source.pk}]",
        10,
        True,
    )
    source.schedule, source.daily_at, source.enabled = "daily", dt.time(6, 30), False
    sftp_source_save(source=source)
    task.refresh_from_db()
    assert task.interval is None and (task.crontab.hour, task.crontab.minute) == ("6", "30")
    assert not task.enabled
    assert secret_decrypt(SftpSource.objects.get().password_encrypted) == PASSWORD  # kept


@pytest.mark.django_db(transaction=True)
def test_task_retries_transient_failures_with_backoff_but_not_bad_credentials(
    sftp_server, make_sftp_source
):
    from imports.sftp.tasks import MAX_RETRIES, sftp_poll_source_task

    refused = make_sftp_source(sftp_server, name="refused", port=closed_port())
    sftp_poll_source_task.apply(args=[refused.pk])  # eager: retries run at once
    assert SftpRun.objects.filter(source=refused).count() == 1 + MAX_RETRIES
    bad = make_sftp_source(sftp_server, name="bad", password="wrong")
    sftp_poll_source_task.apply(args=[bad.pk])
    assert SftpRun.objects.filter(source=bad).count() == 1


@pytest.mark.django_db(transaction=True)
def test_task_skips_disabled_and_deleted_sources(sftp_server, make_sftp_source):
    from imports.sftp.tasks import sftp_poll_source_task

    source = make_sftp_source(sftp_server, enabled=False)
    assert sftp_poll_source_task.apply(args=[source.pk]).get() == "source disabled"
    assert sftp_poll_source_task.apply(args=[source.pk + 999]).get() == "source deleted"
    assert not SftpRun.objects.exists()
