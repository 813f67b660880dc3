"""imports.sources.sftp against a real SFTP server on loopback (no database)."""

import pytest

from imports.sources.sftp import (
    Credentials,
    SftpAuthFailed,
    SftpConnection,
    SftpConnectionRefused,
    SftpFileVanished,
    SftpHostKeyChanged,
    SftpHostKeyUnknown,
    SftpKeyInvalid,
    SftpPermissionDenied,
    SftpTimeout,
    load_private_key,
)
from imports.tests.sftp_server import (
    PASSWORD,
    USERNAME,
    SilentServer,
    closed_port,
    generate_key,
    private_key_text,
)


def creds(server, **overrides) -> Credentials:
    values = {"host": "127.0.0.1", "port": server.port, "username": USERNAME} | overrides
    if "private_key" not in overrides and "password" not in overrides:
        values["password"] = PASSWORD
    return Credentials(**values)


def connect(server, **overrides) -> SftpConnection:
    return SftpConnection(creds(server, **overrides), expected_fingerprint=server.fingerprint)


def test_fingerprint_is_openssh_sha256(sftp_server):
    probed = SftpConnection(creds(sftp_server)).probe_fingerprint()
    assert probed == sftp_server.fingerprint
    assert probed.startswith("SHA256:")


def test_password_auth_lists_matching_regular_files_with_size_and_mtime(sftp_server):
    sftp_server.put("incoming/b.csv", "identity\n1\n", mtime=1_700_000_000)
    sftp_server.put("incoming/a.csv", "x")
    sftp_server.put("incoming/notes.txt", "x")
    (sftp_server.root / "incoming" / "dir.csv").mkdir()
    with connect(sftp_server) as conn:
        files = conn.list_files("/incoming", "*.csv")
    assert [(f.name, f.path) for f in files] == [
        ("a.csv", "/incoming/a.csv"),
        ("b.csv", "/incoming/b.csv"),
    ]
    assert (files[1].size, files[1].mtime) == (11, 1_700_000_000)


@pytest.mark.parametrize("algorithm", ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"])
def test_private_key_auth(tmp_path, algorithm):
    from imports.tests.sftp_server import SftpTestServer, running

    key = generate_key(algorithm)
    server = SftpTestServer(tmp_path / "root", password=None, client_keys=[key])
    server.put("incoming/a.csv", "hello")
    with running(server), connect(server, private_key=private_key_text(key)) as conn:
        assert conn.download("/incoming/a.csv") == b"hello"


def test_unknown_private_key_is_refused(sftp_server):
    other = private_key_text(generate_key())
    with pytest.raises(SftpAuthFailed), connect(sftp_server, private_key=other):
        pass


def test_bad_password_is_refused(sftp_server):
    with (
        pytest.raises(SftpAuthFailed, match="rejected the credentials") as info,
        connect(sftp_server, password="wrong"),
    ):
        pass
    assert not info.value.transient


def test_garbage_private_key_is_a_clear_error():
    with pytest.raises(SftpKeyInvalid):
        load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n")


def test_connection_refused_is_transient():
    credentials = Credentials("127.0.0.1", closed_port(), USERNAME, password=PASSWORD)
    with (
        pytest.raises(SftpConnectionRefused) as info,
        SftpConnection(credentials, expected_fingerprint="SHA256:x"),
    ):
        pass
    assert info.value.transient


def test_server_that_never_speaks_times_out():
    silent = SilentServer()
    try:
        credentials = Credentials("127.0.0.1", silent.port, USERNAME, password=PASSWORD)
        with (
            pytest.raises(SftpTimeout, match=r"Timed out: .* SSH") as info,
            SftpConnection(credentials, expected_fingerprint="SHA256:x", timeout=1),
        ):
            pass
    finally:
        silent.stop()
    assert info.value.transient


def test_unpinned_host_key_stops_before_login(sftp_server):
    with (
        pytest.raises(SftpHostKeyUnknown) as info,
        SftpConnection(creds(sftp_server, password="wrong")),
    ):
        pass
    assert info.value.fingerprint == sftp_server.fingerprint


def test_changed_host_key_stops_before_login(sftp_server):
    pinned = sftp_server.fingerprint
    sftp_server.restart(host_key=generate_key())
    with (
        pytest.raises(SftpHostKeyChanged, match="Host key changed") as info,
        SftpConnection(creds(sftp_server), expected_fingerprint=pinned),
    ):
        pass
    assert (info.value.expected, info.value.offered) == (pinned, sftp_server.fingerprint)


def test_move_creates_the_folder_and_never_overwrites(sftp_server):
    sftp_server.put("incoming/a.csv", "one")
    with connect(sftp_server) as conn:
        assert conn.move("/incoming/a.csv", "/incoming/processed") == "/incoming/processed/a.csv"
        sftp_server.put("incoming/a.csv", "two")
        assert conn.move("/incoming/a.csv", "/incoming/processed") == "/incoming/processed/a.1.csv"
        conn.write_file("/incoming/processed/a.csv.result.csv", b"field,value\n")
    assert sftp_server.files("incoming/processed") == ["a.1.csv", "a.csv", "a.csv.result.csv"]
    assert (sftp_server.root / "incoming/processed/a.1.csv").read_text() == "two"


def test_read_only_account_gets_permission_denied(sftp_server):
    sftp_server.put("incoming/a.csv", "one")
    sftp_server.read_only = True
    with connect(sftp_server) as conn:
        assert conn.download("/incoming/a.csv") == b"one"
        with pytest.raises(SftpPermissionDenied):
            conn.move("/incoming/a.csv", "/incoming/processed")
        with pytest.raises(SftpPermissionDenied):
            conn.write_file("/incoming/a.csv.result.csv", b"x")
    assert sftp_server.files("incoming") == ["a.csv"]


def test_listing_a_forbidden_folder_is_permission_denied(sftp_server):
    sftp_server.denied_dirs.add("/incoming")
    with pytest.raises(SftpPermissionDenied), connect(sftp_server) as conn:
        conn.list_files("/incoming")


def test_file_removed_between_list_and_read_vanished(sftp_server):
    sftp_server.put("incoming/a.csv", "one")
    sftp_server.vanish_on_open.add("a.csv")
    with connect(sftp_server) as conn:
        assert [f.name for f in conn.list_files("/incoming")] == ["a.csv"]
        with pytest.raises(SftpFileVanished, match="no longer exists"):
            conn.download("/incoming/a.csv")
