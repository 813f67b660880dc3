"""`manage.py sftp_source add|list` and `manage.py sftp_poll`."""

import pytest
from django.core.management import CommandError, call_command

from imports.models import ImportRun, SftpSource
from imports.sftp.services import secret_decrypt
from imports.tests.sftp_server import PASSWORD, USERNAME, private_key_text

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def add_args(server, *extra) -> list[str]:
    return [
        "sftp_source", "add", "--name", "acme", "--host", "127.0.0.1",
        "--port", str(server.port), "--username", USERNAME, "--remote-dir", "incoming",
        "--pattern", "*.csv", "--kind", "profiles", "--every-minutes", "5", *extra,
    ]  # fmt: skip


def test_add_with_password_env_trusts_the_key_and_list_shows_it(sftp_server, monkeypatch):
    monkeypatch.setenv("ACME_SFTP_PASSWORD", PASSWORD)
    output = run(*add_args(sftp_server, "--password-env", "ACME_SFTP_PASSWORD", "--trust-host-key"))
    assert f"Trusted host key {sftp_server.fingerprint}" in output
    source = SftpSource.objects.get(name="acme")
    assert source.host_key_fingerprint == sftp_server.fingerprint
    assert secret_decrypt(source.password_encrypted) == PASSWORD
    assert (source.remote_dir, source.every_minutes) == ("/incoming", 5)
    assert source.periodic_task.enabled
    assert "acme\tfeeds@127.0.0.1" in run("sftp_source", "list")
    assert "never run" in run("sftp_source", "list")


def test_add_with_key_file_then_poll(sftp_server, sftp_client_key, tmp_path, settings):
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(private_key_text(sftp_client_key))
    run(*add_args(sftp_server, "--key-file", str(key_file), "--trust-host-key"))
    assert SftpSource.objects.get().has_private_key
    sftp_server.put("incoming/people.csv", "identity,Name\nu-1,Ann\n")
    settings.SFTP_SETTLE_SECONDS = 0.1
    output = run("sftp_poll", "--source", "acme")
    assert output.strip() == "acme: done — 1 seen, 1 imported, 0 skipped, 0 failed"
    assert ImportRun.objects.get().file_name == "people.csv"
    assert "last run" in run("sftp_source", "list") and "done" in run("sftp_source", "list")


def test_add_refuses_bad_input(sftp_server, monkeypatch, tmp_path):
    with pytest.raises(CommandError, match="empty or not set"):
        run(*add_args(sftp_server, "--password-env", "NOT_SET_ANYWHERE"))
    bad_key = tmp_path / "key"
    bad_key.write_text("nope")
    with pytest.raises(CommandError, match="Private key not readable"):
        run(*add_args(sftp_server, "--key-file", str(bad_key)))
    monkeypatch.setenv("P", "x")
    with pytest.raises(CommandError, match="needs --event-name"):
        run(*add_args(sftp_server, "--password-env", "P", "--kind", "events"))
    assert not SftpSource.objects.exists()


def test_poll_reports_failures_and_unknown_sources(sftp_server, make_sftp_source):
    make_sftp_source(sftp_server, password="wrong")
    with pytest.raises(CommandError, match="At least one poll failed"):
        run("sftp_poll")
    with pytest.raises(CommandError, match="No SFTP source named"):
        run("sftp_poll", "--source", "nope")
