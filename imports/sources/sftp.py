"""SFTP transfer code (paramiko), with no ORM: connect, verify the host key,
list, download, move and write files, and turn every failure into one of a
few exception classes a person can act on.

Host keys are pinned by their OpenSSH-style SHA256 fingerprint
("SHA256:<base64 without padding>"), the string `ssh-keygen -lf` prints.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import hashlib
import io
import posixpath
import socket
import stat
from dataclasses import dataclass
from types import TracebackType

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

DEFAULT_TIMEOUT = 15.0
PROCESSED_DIR = "processed"
FAILED_DIR = "failed"


class SftpError(Exception):
    """Base class: `transient` errors are worth retrying later as they are."""

    transient = False
    label = "SFTP error"

    def __str__(self) -> str:
        detail = super().__str__()
        return f"{self.label}: {detail}" if detail else self.label


class SftpConnectionRefused(SftpError):
    transient = True
    label = "Connection refused"


class SftpConnectionFailed(SftpError):
    """The network failed in another way (unreachable host, reset, DNS)."""

    transient = True
    label = "Connection failed"


class SftpTimeout(SftpError):
    transient = True
    label = "Timed out"


class SftpAuthFailed(SftpError):
    label = "Authentication failed"


class SftpPermissionDenied(SftpError):
    label = "Permission denied"


class SftpFileVanished(SftpError):
    label = "File vanished"


class SftpHostKeyUnknown(SftpError):
    """No fingerprint is pinned yet: a person must look at it and trust it."""

    label = "Host key not trusted yet"

    def __init__(self, fingerprint: str):
        super().__init__(f"the server offered {fingerprint}; test the connection and trust it")
        self.fingerprint = fingerprint


class SftpHostKeyChanged(SftpError):
    label = "Host key changed"

    def __init__(self, expected: str, offered: str):
        super().__init__(
            f"expected {expected} but the server offered {offered}. This can mean the server "
            "was reinstalled or someone is intercepting the connection"
        )
        self.expected = expected
        self.offered = offered


class SftpKeyInvalid(SftpError):
    label = "Private key not readable"


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    username: str
    password: str = ""
    private_key: str = ""  # OpenSSH or PEM text
    passphrase: str = ""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    path: str
    size: int
    mtime: int  # seconds since the epoch, as the server reports it


def key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def normalize_fingerprint(value: str) -> str:
    value = value.strip()
    if value and not value.startswith("SHA256:"):
        value = "SHA256:" + value
    return value.rstrip("=")


def load_private_key(text: str, passphrase: str = "") -> paramiko.PKey:
    """Parse an RSA, ECDSA or Ed25519 private key (OpenSSH or PEM format)."""
    data = text.strip().encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=password)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise SftpKeyInvalid(str(exc) or "not an OpenSSH or PEM private key") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and friends
        raise SftpKeyInvalid(str(exc)) from exc
    # Hand paramiko an unencrypted re-serialisation in the format its parser
    # for that key type handles best (its OpenSSH ECDSA parser is picky).
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class: type[paramiko.PKey] = paramiko.RSAKey
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
        fmt = serialization.PrivateFormat.OpenSSH
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        raise SftpKeyInvalid(f"unsupported key type {type(loaded).__name__}")
    text = loaded.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    ).decode()
    try:
        return key_class.from_private_key(io.StringIO(text))
    except paramiko.SSHException as exc:
        raise SftpKeyInvalid(str(exc)) from exc


def matches(name: str, pattern: str) -> bool:
    """Glob match on the file name (case-sensitive, like the server's names)."""
    return fnmatch.fnmatchcase(name, pattern or "*")


def _map_io_error(exc: OSError, path: str) -> SftpError:
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return SftpFileVanished(f"{path} no longer exists on the server")
    if isinstance(exc, PermissionError) or exc.errno == errno.EACCES:
        return SftpPermissionDenied(f"the account may not access {path}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return SftpTimeout(f"no answer from the server while working on {path}")
    return SftpConnectionFailed(f"{path}: {exc}")


class SftpConnection:
    """One authenticated SFTP session; use as a context manager.

    `expected_fingerprint` must be the pinned SHA256 fingerprint; with
    `allow_unknown_host_key` and no pin the connection stops after the key
    exchange, exposing `fingerprint` (used by "Test connection").
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        expected_fingerprint: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.credentials = credentials
        self.expected_fingerprint = normalize_fingerprint(expected_fingerprint)
        self.timeout = timeout
        self.fingerprint = ""
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connection -----------------------------------------------------
    def __enter__(self) -> SftpConnection:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        self._start_transport()
        if not self.expected_fingerprint:
            raise SftpHostKeyUnknown(self.fingerprint)
        if self.fingerprint != self.expected_fingerprint:
            raise SftpHostKeyChanged(self.expected_fingerprint, self.fingerprint)
        self._authenticate()
        try:
            self._sftp = paramiko.SFTPClient.from_transport(self._transport)
        except (paramiko.SSHException, OSError) as exc:
            raise SftpConnectionFailed(f"the server refused the SFTP subsystem: {exc}") from exc
        self._sftp.get_channel().settimeout(self.timeout)

    def probe_fingerprint(self) -> str:
        """Connect far enough to read the server's host key, then hang up."""
        try:
            self._start_transport()
            return self.fingerprint
        finally:
            self.close()

    def _start_transport(self) -> None:
        creds = self.credentials
        try:
            sock = socket.create_connection((creds.host, creds.port), timeout=self.timeout)
        except ConnectionRefusedError as exc:
            raise SftpConnectionRefused(
                f"nothing accepts connections on {creds.host}:{creds.port}"
            ) from exc
        except TimeoutError as exc:
            raise SftpTimeout(f"{creds.host}:{creds.port} did not answer") from exc
        except OSError as exc:
            raise SftpConnectionFailed(f"{creds.host}:{creds.port}: {exc}") from exc
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.timeout
        transport.handshake_timeout = self.timeout
        transport.auth_timeout = self.timeout
        self._transport = transport
        try:
            # Longer than banner_timeout, so a silent server gets the clearer message.
            transport.start_client(timeout=2 * self.timeout)
        except paramiko.SSHException as exc:
            if "banner" in str(exc).lower() or "timed out" in str(exc).lower():
                raise SftpTimeout(
                    f"{creds.host}:{creds.port} accepted the connection but did not speak SSH "
                    f"within {self.timeout:g}s"
                ) from exc
            raise SftpConnectionFailed(f"SSH negotiation failed: {exc}") from exc
        except OSError as exc:
            raise SftpConnectionFailed(f"SSH negotiation failed: {exc}") from exc
        try:
            server_key = transport.get_remote_server_key()
        except paramiko.SSHException as exc:
            # start_client returns silently when its own timeout runs out first.
            raise SftpTimeout(
                f"{creds.host}:{creds.port} did not finish the SSH handshake "
                f"within {self.timeout:g}s"
            ) from exc
        self.fingerprint = key_fingerprint(server_key)

    def _authenticate(self) -> None:
        creds = self.credentials
        transport = self._transport
        assert transport is not None
        try:
            if creds.private_key:
                key = load_private_key(creds.private_key, creds.passphrase)
                transport.auth_publickey(creds.username, key)
            elif creds.password:
                transport.auth_password(creds.username, creds.password)
            else:
                raise SftpAuthFailed("no password or private key is configured")
        except paramiko.BadAuthenticationType as exc:
            allowed = ", ".join(exc.allowed_types) or "none"
            raise SftpAuthFailed(
                f"the server does not accept this method for {creds.username!r} "
                f"(it accepts: {allowed})"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise SftpAuthFailed(
                f"the server rejected the credentials for {creds.username!r}"
            ) from exc
        except paramiko.SSHException as exc:
            raise SftpConnectionFailed(f"authentication did not complete: {exc}") from exc
        if not transport.is_authenticated():
            raise SftpAuthFailed(f"the server rejected the credentials for {creds.username!r}")

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise SftpConnectionFailed("not connected")
        return self._sftp

    # -- files ------------------------------------------------------------
    def list_files(self, folder: str, pattern: str = "*") -> list[RemoteFile]:
        """Regular files in `folder` whose name matches `pattern`, by name."""
        try:
            entries = self.sftp.listdir_attr(folder)
        except OSError as exc:
            raise _map_io_error(exc, folder) from exc
        files = [
            RemoteFile(
                name=entry.filename,
                path=posixpath.join(folder, entry.filename),
                size=int(entry.st_size or 0),
                mtime=int(entry.st_mtime or 0),
            )
            for entry in entries
            if entry.st_mode is not None
            and stat.S_ISREG(entry.st_mode)
            and matches(entry.filename, pattern)
        ]
        return sorted(files, key=lambda remote: remote.name)

    def stat(self, path: str) -> RemoteFile:
        try:
            attrs = self.sftp.stat(path)
        except OSError as exc:
            raise _map_io_error(exc, path) from exc
        return RemoteFile(
            name=posixpath.basename(path),
            path=path,
            size=int(attrs.st_size or 0),
            mtime=int(attrs.st_mtime or 0),
        )

    def download(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The whole file. Raises SftpFileVanished when it disappeared."""
        buffer = io.BytesIO()
        try:
            with self.sftp.open(path, "rb") as remote:
                remote.prefetch()
                while chunk := remote.read(1024 * 1024):
                    buffer.write(chunk)
                    if max_bytes is not None and buffer.tell() > max_bytes:
                        raise SftpError(f"{path} is larger than {max_bytes} bytes")
        except OSError as exc:
            raise _map_io_error(exc, path) from exc
        except paramiko.SSHException as exc:
            raise SftpConnectionFailed(f"reading {path}: {exc}") from exc
        return buffer.getvalue()

    def ensure_dir(self, path: str) -> None:
        try:
            self.sftp.stat(path)
            return
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _map_io_error(exc, path) from exc
        try:
            self.sftp.mkdir(path)
        except OSError as exc:
            # Another poller may have created it meanwhile.
            try:
                self.sftp.stat(path)
            except OSError:
                raise _map_io_error(exc, path) from exc

    def move(self, path: str, folder: str) -> str:
        """Move `path` into `folder` (created when missing); never overwrites.

        Returns the new path; a name already taken gets a numbered suffix.
        """
        self.ensure_dir(folder)
        name = posixpath.basename(path)
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, ""
        for attempt in range(100):
            candidate_name = name if attempt == 0 else f"{stem}.{attempt}{dot}{extension}"
            target = posixpath.join(folder, candidate_name)
            if self._exists(target):
                continue
            try:
                self.sftp.rename(path, target)
            except OSError as exc:
                raise _map_io_error(exc, path) from exc
            return target
        raise SftpError(f"could not find a free name for {name} in {folder}")

    def write_file(self, path: str, content: bytes) -> None:
        try:
            with self.sftp.open(path, "wb") as remote:
                remote.write(content)
        except OSError as exc:
            raise _map_io_error(exc, path) from exc

    def _exists(self, path: str) -> bool:
        try:
            self.sftp.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _map_io_error(exc, path) from exc
        return True
