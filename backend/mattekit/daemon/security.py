"""The daemon's security: private folders and files, the per-user token, loopback checks, the
instance lock (one daemon per endpoint) and the CURVE keys for --allow-remote (docs/security.md)."""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlparse

import zmq

from .. import config


class SetupError(Exception):
    """The daemon cannot start; the message says how to fix it."""


def check_private(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise SetupError(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); remove it or choose another location")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SetupError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}; other users could reach the daemon. Fix it with: chmod {mode:o} {path}"
        )


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check that an existing one is private."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    check_private(path, 0o700)
    return path


def load_token(create: bool = True) -> str:
    """The per-user auth token (0600 file in the config dir), created on first use."""
    path = config.token_path()
    private_dir(path.parent)
    if not path.exists():
        if not create:
            raise SetupError(f"no token at {path}: start the daemon once with `mattekit serve`")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    check_private(path, 0o600)
    return path.read_text().strip()


def is_loopback(endpoint: str) -> bool:
    """True for ipc/inproc and for tcp on a loopback IP literal, ``localhost`` or ``lo``.

    Anything else (a wildcard, an interface name, a host name that merely starts with
    "127.") counts as remote.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlparse(endpoint).hostname or ""
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lock_path(endpoint: str) -> Path:
    """Beside an ipc socket (so every daemon that could bind it sees the same lock), else in the runtime dir."""
    path = config.ipc_socket_path(endpoint)
    if path is not None:
        return path.with_name(path.name + ".lock")
    digest = hashlib.sha1(endpoint.encode()).hexdigest()[:12]
    return config.runtime_dir() / f"daemon-{digest}.lock"


class InstanceLock:
    """One daemon per endpoint: an flock'ed file that also records the pid.

    The kernel drops an flock when its process dies, so a crashed daemon leaves no
    lock behind; a stale ipc socket file is removed once the lock is held.
    """

    def __init__(self, endpoint: str):
        self.path = lock_path(endpoint)
        self.fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise SetupError(f"a mattekit daemon (pid {self.holder() or '?'}) is already serving this endpoint") from None
            try:  # the holder may have unlinked the file between our open and flock: lock the current one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def curve_keys() -> tuple[bytes, bytes]:
    """The daemon's CURVE key pair for --allow-remote (created once, 0600)."""
    d = private_dir(config.config_dir())
    pub_f, sec_f = d / "curve.public", d / "curve.secret"
    if not sec_f.exists():
        pub, sec = zmq.curve_keypair()
        fd = os.open(sec_f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sec)
        pub_f.write_bytes(pub)
    check_private(sec_f, 0o600)
    return pub_f.read_bytes(), sec_f.read_bytes()
