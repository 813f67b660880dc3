"""A real SFTP server on loopback for the tests (asyncssh), plus the broken
servers the failure tests need: a port nobody listens on, and a server that
accepts TCP connections but never says a word.

The SFTP server serves a real directory (chrooted), accepts a password and/or
public keys, uses a host key the test chooses (so pinning and a changed key
can be tested), can be made read-only (writes, renames and mkdir answer
"permission denied"), and can make chosen files vanish the moment a client
opens them (a file removed between listing and reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

# The servers' chatter buries test failures; warnings still show.
asyncssh.set_log_level(logging.WARNING)
logging.getLogger("paramiko").setLevel(logging.WARNING)

USERNAME = "feeds"
PASSWORD = "drop-zone-password"


def generate_key(algorithm: str = "ssh-ed25519") -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(algorithm)


def private_key_text(key: asyncssh.SSHKey) -> str:
    return key.export_private_key("openssh").decode()


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


class SftpTestServer:
    def __init__(
        self,
        root: Path,
        *,
        username: str = USERNAME,
        password: str | None = PASSWORD,
        client_keys: list[asyncssh.SSHKey] | None = None,
        host_key: asyncssh.SSHKey | None = None,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password
        self.client_keys = list(client_keys or [])
        self.host_key = host_key or generate_key()
        self.read_only = False
        self.vanish_on_open: set[str] = set()  # file names deleted when opened
        self.denied_dirs: set[str] = set()  # client paths whose listing is refused
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key)

    def start(self) -> SftpTestServer:
        if not self._thread.is_alive():
            self._thread.start()
        self._server = self._call(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def restart(self, *, host_key: asyncssh.SSHKey | None = None) -> None:
        """Stop and listen again on the same port (optionally with a new host key)."""
        self._close_server()
        if host_key is not None:
            self.host_key = host_key
        self._server = self._call(self._listen())

    def stop(self) -> None:
        self._close_server()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _close_server(self) -> None:
        if self._server is not None:
            server = self._server
            self._server = None

            async def close() -> None:
                server.close()
                await server.wait_closed()

            self._call(close())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=15)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        fixture = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return fixture.password is not None

            def validate_password(self, username: str, password: str) -> bool:
                return username == fixture.username and password == fixture.password

            def public_key_auth_supported(self) -> bool:
                return bool(fixture.client_keys)

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                public = key.export_public_key()
                return username == fixture.username and any(
                    allowed.export_public_key() == public for allowed in fixture.client_keys
                )

        class Sftp(asyncssh.SFTPServer):
            def __init__(self, chan):
                super().__init__(chan, chroot=str(fixture.root).encode())

            def _deny_writes(self) -> None:
                if fixture.read_only:
                    raise asyncssh.SFTPPermissionDenied("read-only account")

            def open(self, path, pflags, attrs):
                if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND):
                    self._deny_writes()
                local = self.map_path(path)
                if os.path.basename(local).decode() in fixture.vanish_on_open:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(local)
                return super().open(path, pflags, attrs)

            async def scandir(self, path):
                normalized = "/" + path.decode().strip("/")
                if normalized in fixture.denied_dirs:
                    raise asyncssh.SFTPPermissionDenied("listing not allowed")
                async for entry in super().scandir(path):
                    yield entry

            def rename(self, oldpath, newpath):
                self._deny_writes()
                return super().rename(oldpath, newpath)

            def posix_rename(self, oldpath, newpath):
                self._deny_writes()
                return super().posix_rename(oldpath, newpath)

            def mkdir(self, path, attrs):
                self._deny_writes()
                return super().mkdir(path, attrs)

            def remove(self, path):
                self._deny_writes()
                return super().remove(path)

        return await asyncssh.create_server(
            Server,
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            sftp_factory=Sftp,
            allow_scp=False,
            reuse_address=True,
        )

    # -- helpers for tests ----------------------------------------------------
    def put(self, relative: str, content: bytes | str, *, mtime: int | None = None) -> Path:
        path = self.root / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def append(self, relative: str, content: bytes | str, *, mtime: int | None = None) -> None:
        path = self.root / relative.lstrip("/")
        with path.open("ab") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    def files(self, relative: str = "") -> list[str]:
        folder = self.root / relative.lstrip("/")
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_file())


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SilentServer:
    """Accepts TCP connections and never speaks (an SSH client times out)."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextlib.contextmanager
def running(server: SftpTestServer) -> Iterator[SftpTestServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- pytest fixtures (re-exported by imports/tests/conftest.py) ---------------
@pytest.fixture
def sftp_client_key() -> asyncssh.SSHKey:
    return generate_key()


@pytest.fixture
def sftp_server(tmp_path, sftp_client_key) -> Iterator[SftpTestServer]:
    """A running SFTP server; its drop folder is /incoming."""
    server = SftpTestServer(tmp_path / "sftp-root", client_keys=[sftp_client_key])
    (server.root / "incoming").mkdir(parents=True)
    with running(server):
        yield server


@pytest.fixture
def make_sftp_source():
    """Build a saved source for a server (password auth, key pinned, /incoming)."""
    from imports.models import SftpSource
    from imports.sftp.services import sftp_source_save

    def make(server: SftpTestServer, *, password: str = PASSWORD, private_key: str = "", **fields):
        values = {
            "name": "drop",
            "host": "127.0.0.1",
            "port": server.port,
            "username": server.username,
            "host_key_fingerprint": server.fingerprint,
            "remote_dir": "/incoming",
            "pattern": "*.csv",
            "kind": "profiles",
            "every_minutes": 15,
        } | fields
        return sftp_source_save(
            source=SftpSource(**values),
            password="" if private_key else password,
            private_key=private_key,
        )

    return make


@pytest.fixture
def sftp_role_groups(db) -> None:
    from profiles.tests.roles import ensure_role_groups

    ensure_role_groups()
