"""The mattekit daemon's client core: standard library only.

Plug-ins vendor this file with ``protocol.py``, ``config.py`` and ``zmtp.py`` as a
``mattekit_bridge`` package (``mattekit install-plugin``), so every import here is
relative and nothing needs NumPy. The transport is pyzmq when the editor's Python has
it, else the pure-Python ZMTP fallback. ``mattekit.client.Client`` (NumPy arrays,
autostart) is a thin subclass of ``EditorClient``: every request, retry and job rule
lives here, once.

Control requests use the Lazy Pirate pattern (wait with a timeout; on silence close
the socket, reconnect and resend, then give up with ``daemon_unavailable``). A job's
first reply must come within the connect timeout; after that the client waits as long
as messages keep arriving: the daemon repeats a job's progress as a keep-alive every
``config.KEEPALIVE_S``, so ``silence_timeout`` (much shorter than ``timeout``) is
enough to report a daemon that died mid-job.

Buffers go in as ``(BufferSpec, bytes | memoryview | array)`` pairs and come back as
``(BufferSpec, memoryview)``: the caller decides pixel formats, this module only moves
bytes (without copying them on the pyzmq transport).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from . import config
from . import protocol as P
from . import zmtp

#: A job's progress events as the daemon sends them: (stage, fraction 0..1, the event's other fields).
JobProgressFn = Callable[[str, float, dict], Any]
Inputs = Sequence[tuple[P.BufferSpec, Any]]
Reply = tuple[dict[str, Any], list[Any]]

#: After the daemon's connection closes, how long a reply it sent just before may take to be readable.
DISCONNECT_GRACE_S = 0.2
#: Written by ``mattekit install-plugin`` next to this file: how to start the daemon.
INSTALL_INFO = Path(__file__).with_name("install.json")


class EditorError(Exception):
    """A failure to show the user: ``code`` is a protocol error code, ``message`` says what to do."""

    def __init__(self, code: str, message: str, header: Optional[dict] = None):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.header = header or {}


def install_info() -> dict[str, Any]:
    """The install-time bridge configuration, or {} when there is none."""
    try:
        return json.loads(INSTALL_INFO.read_text())
    except (OSError, ValueError):
        return {}


def _installed_dir(key: str) -> Optional[Path]:
    """A folder the daemon was told at install time (install.json's env, e.g. MATTEKIT_CONFIG_DIR),
    unless this process sets its own: the daemon a plug-in starts gets install.json's env, and the
    plug-in must look where that daemon writes."""
    value = os.environ.get(key) or (install_info().get("env") or {}).get(key)
    return Path(value) if value else None


def installed_token_path() -> Path:
    """Where this plug-in reads the token: a sandbox's copy (install.json's token_file), else the
    config dir install.json names, else the user's (`config.token_path`)."""
    folder = _installed_dir("MATTEKIT_CONFIG_DIR")
    return Path(install_info().get("token_file") or (folder / "token" if folder else config.token_path()))


def installed_default_endpoint() -> str:
    """The standard socket in the runtime dir install.json names, else `config.default_endpoint`."""
    folder = _installed_dir("MATTEKIT_RUNTIME_DIR")
    return f"ipc://{folder / 'daemon.sock'}" if folder else config.default_endpoint()


# --------------------------------------------------------------------------- transports
# Both raise OSError/ConnectionError when the daemon cannot be reached; the client turns
# that into `daemon_unavailable`.


def unsafe_endpoint(endpoint: str) -> Optional[str]:
    """Why the daemon at ``endpoint`` must not be sent a token or pixels, or None.

    An ipc socket is trusted only if this user owns it, and its directory belongs to this
    user (or root) and nobody else can write there (or the directory is sticky, like /tmp,
    so nobody else can replace the socket): anyone else who could create either might be
    listening in the daemon's place. A missing socket is not unsafe: nothing to connect to.
    """
    path = config.ipc_socket_path(endpoint)
    if path is None or not hasattr(os, "getuid"):
        return None
    uid = os.getuid()
    try:
        sock, folder = path.stat(), path.parent.stat()
    except OSError:
        return None
    for what, p, st, owners in (("socket", path, sock, (uid,)), ("directory", path.parent, folder, (uid, 0))):
        if st.st_uid not in owners:
            return (
                f"The daemon's {what} {p} belongs to uid {st.st_uid}, not to you (uid {uid}): another user may be "
                "listening in the daemon's place, so nothing was sent. Remove it (as its owner or root) or set "
                "MATTEKIT_RUNTIME_DIR to a private directory."
            )
    mode = stat.S_IMODE(folder.st_mode)
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return (
            f"The daemon's directory {path.parent} has mode {mode:o}: other users could replace its socket, so "
            f"nothing was sent. Fix it with: chmod 700 {path.parent}"
        )
    return None


def _check_ipc(endpoint: str) -> None:
    """Fail now, not after a silent wait: libzmq connects lazily and retries a dead socket forever."""
    path = config.ipc_socket_path(endpoint)
    if path is None:
        return
    if not path.exists():
        raise ConnectionError("no socket file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        raise ConnectionError(f"stale socket file {path}: no daemon is listening on it") from None
    except OSError:
        pass  # e.g. a full backlog: let the real connection decide
    finally:
        probe.close()


def _auth_failed_event(zmq: Any) -> int:
    return getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)  # libzmq >= 4.3


class _PyZmqTransport:
    """A DEALER socket; pixel frames are sent and received without copies."""

    name = "pyzmq"

    def __init__(self, endpoint: str, timeout: float, server_key: Optional[bytes] = None, plain: Optional[tuple[bytes, bytes]] = None):
        import zmq

        self._zmq = zmq
        self.send_timeout = max(0.1, float(timeout))
        _check_ipc(endpoint)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if hasattr(zmq, "HEARTBEAT_IVL"):  # libzmq >= 4.2: a peer that stops answering is disconnected
            self.sock.setsockopt(zmq.HEARTBEAT_IVL, int(config.CLIENT_HEARTBEAT_S * 1000))
            self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(config.CLIENT_HEARTBEAT_TIMEOUT_S * 1000))
        if server_key is not None:  # the daemon's CURVE public key: needed with --allow-remote
            pub, sec = zmq.curve_keypair()
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = server_key, pub, sec
        elif plain is not None:  # tcp: the token is checked at the handshake (ZAP), before any message
            self.sock.plain_username, self.sock.plain_password = plain
        # A DEALER reconnects in silence; the monitor tells us the daemon closed or stopped
        # answering heartbeats, so a dead daemon is reported now, not after CLIENT_SILENCE_S.
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | _auth_failed_event(zmq))
        self.connected = False
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def send_multipart(self, frames: Sequence[Any]) -> None:
        # A DEALER with no live peer blocks in send (e.g. after the daemon refused the token and
        # dropped the connection), so send without blocking and watch the monitor meanwhile.
        deadline = time.monotonic() + self.send_timeout
        while True:
            try:
                self.sock.send_multipart(list(frames), copy=False, flags=self._zmq.NOBLOCK)
                return
            except self._zmq.Again:
                self._check_connection()  # raises on a refused token or a closed connection
                if time.monotonic() >= deadline:
                    raise ConnectionError("could not send to the daemon: no connection") from None
                time.sleep(0.005)

    def _check_connection(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == self._zmq.EVENT_CONNECTED:
                self.connected = True
            elif event == self._zmq.EVENT_DISCONNECTED and self.connected:
                raise ConnectionError("the daemon closed the connection: it stopped, crashed or stopped answering")
            elif event and event == _auth_failed_event(self._zmq):
                raise zmtp.HandshakeRefused("the daemon refused this client's token at the handshake")

    def recv_multipart(self, timeout: float) -> Optional[list[Any]]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            events = dict(self.poller.poll(int(max(0.0, deadline - time.monotonic()) * 1000)))
            if self.sock in events:  # replies that arrived before a disconnect still count
                return [f.buffer for f in self.sock.recv_multipart(copy=False)]  # memoryviews of the frames
            if self.monitor in events:
                try:
                    self._check_connection()
                except ConnectionError:
                    # A reply sent just before the daemon closed (the `shutdown` op's own) can
                    # become readable a moment after the monitor reports the close.
                    if self.sock.poll(int(DISCONNECT_GRACE_S * 1000)):
                        return [f.buffer for f in self.sock.recv_multipart(copy=False)]
                    raise
                continue
            return None

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except self._zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(0)


class _ZmtpTransport:
    """The pure-Python fallback (no CURVE)."""

    name = "zmtp"

    def __init__(self, endpoint: str, timeout: float, server_key: Optional[bytes] = None, plain: Optional[tuple[bytes, bytes]] = None):
        if server_key is not None:
            raise ValueError("CURVE (server_key) needs pyzmq; the ZMTP fallback speaks only NULL and PLAIN security")
        self.dealer = zmtp.ZmtpDealer(endpoint, timeout, plain=plain)

    def send_multipart(self, frames: Sequence[Any]) -> None:
        self.dealer.send_multipart(frames)

    def recv_multipart(self, timeout: float) -> Optional[list[Any]]:
        return self.dealer.recv_multipart(timeout)

    def close(self) -> None:
        self.dealer.close()


def pyzmq_available() -> bool:
    try:
        import zmq  # noqa: F401
    except Exception:  # a broken binary wheel raises more than ImportError
        return False
    return True


# --------------------------------------------------------------------------- client


class EditorClient:
    """One connection to the daemon, one request at a time.

    ``connect_timeout`` bounds each try of a control request and the wait for a job's
    first reply (``retries`` more tries after the first); ``timeout`` is the longest a
    job may go without progress; ``silence_timeout`` the longest without any message at
    all (keep-alives included) before the daemon is reported as gone. ``transport`` is
    "auto", "pyzmq" or "zmtp"; ``server_key`` is the daemon's CURVE public key (its
    config dir's ``curve.public``, needed with --allow-remote; pyzmq only).
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = config.CLIENT_TIMEOUT_S,
        connect_timeout: float = config.CLIENT_CONNECT_TIMEOUT_S,
        transport: str = "auto",
        retries: int = config.CLIENT_RETRIES,
        server_key: Optional[bytes] = None,
        silence_timeout: float = config.CLIENT_SILENCE_S,
    ):
        if transport not in ("auto", "pyzmq", "zmtp"):
            raise ValueError(f"transport must be auto, pyzmq or zmtp, not {transport!r}")
        if transport == "auto":
            transport = "pyzmq" if pyzmq_available() else "zmtp"
        if server_key is not None and transport != "pyzmq":
            raise ValueError("CURVE (server_key) needs the pyzmq transport")
        self.transport_name = transport
        self.endpoint = endpoint or os.environ.get("MATTEKIT_ENDPOINT") or install_info().get("endpoint") or installed_default_endpoint()
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.server_key = server_key
        self.silence_timeout = silence_timeout
        self._t: Any = None

    # ---- hooks for subclasses

    def _error(self, code: str, message: str, header: Optional[dict] = None) -> EditorError:
        """The exception to raise for a failure (subclasses raise their own types)."""
        return EditorError(code, message, header)

    def _start_daemon(self) -> bool:
        """Called once after a request went unanswered; True: the daemon was started, try again.

        Editors start the daemon only after asking the user, so the core never does."""
        return False

    # ---- connection

    @property
    def token(self) -> str:
        if self._token is None:
            path = installed_token_path()
            try:
                self._token = path.read_text().strip()
            except OSError:
                if sandbox_name():
                    why = (f"No mattekit token at {path}: the daemon on the host has not served this sandbox yet. "
                           f"On the host, start it with `{host_serve_command()}`.")
                else:
                    why = f"No mattekit token at {path}: the daemon has never run as this user. Start it with `mattekit serve`."
                raise self._error(P.E_UNAVAILABLE, why) from None
        return self._token

    def _unavailable(self, why: str = "") -> EditorError:
        where = (f"The editor runs in a sandbox ({sandbox_name()}) and cannot start it: on the host, run `{host_serve_command()}`"
                 if sandbox_name() else "Start it with `mattekit serve`")
        return self._error(
            P.E_UNAVAILABLE,
            f"The mattekit daemon is not answering at {self.endpoint}{' (' + why + ')' if why else ''}. {where} and try again.",
        )

    def _transport(self) -> Any:
        if self._t is None:
            problem = unsafe_endpoint(self.endpoint)
            if problem:
                raise self._error(P.E_UNSAFE_ENDPOINT, problem)
            plain = None
            if self.endpoint.startswith("tcp://") and self.server_key is None:
                plain = (P.PLAIN_USERNAME.encode(), self.token.encode())
            cls = _PyZmqTransport if self.transport_name == "pyzmq" else _ZmtpTransport
            self._t = cls(self.endpoint, self.connect_timeout, self.server_key, plain)
        return self._t

    def _reset(self) -> None:
        if self._t is not None:
            self._t.close()
            self._t = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> "EditorClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _refused(self) -> EditorError:
        return self._error(
            P.E_UNAUTHORIZED,
            f"The daemon at {self.endpoint} refused this client's token at the handshake "
            f"(this client reads its token from {config.token_path()}; is the daemon another user's?)",
        )

    def _send(self, header: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        try:
            self._transport().send_multipart([P.encode_header(header), *frames])
        except zmtp.HandshakeRefused:
            self._reset()
            raise self._refused() from None
        except (OSError, ConnectionError) as exc:
            self._reset()
            raise self._unavailable(str(exc)) from None

    def _recv(self, wait_s: float) -> Optional[Reply]:
        try:
            parts = self._transport().recv_multipart(wait_s)
        except zmtp.HandshakeRefused:
            self._reset()
            raise self._refused() from None
        except (OSError, ConnectionError) as exc:  # TimeoutError is an OSError
            self._reset()
            raise self._unavailable(str(exc)) from None
        if parts is None:
            return None
        try:
            header = P.decode_header(parts[0], max_bytes=1 << 24, max_depth=16)
        except P.ProtocolError as exc:
            raise self._error(exc.code, f"the daemon sent a malformed reply: {exc.message}") from None
        return header, parts[1:]

    def _raise(self, reply: dict[str, Any]) -> None:
        raise self._error(reply.get("code", P.E_INTERNAL), reply.get("message", "the daemon reported an error"), reply)

    def _attempts(self) -> Iterator[int]:
        """Lazy Pirate tries; the loop body leaves on success, so each resumption follows a failure.

        After the first failure ``_start_daemon`` may start the daemon, which earns one more try."""
        yield 0
        if self._start_daemon():
            yield 0
        yield from range(1, self.retries + 1)

    def _exchange(self, header: dict[str, Any], frames: Sequence[Any], wait_s: float, *, renew_id: bool) -> Reply:
        """Send and return the first reply to ``header["id"]``; on silence reconnect and resend."""
        failure: Optional[EditorError] = None
        for _ in self._attempts():
            try:
                self._send(header, frames)
                deadline = time.monotonic() + wait_s
                while (left := deadline - time.monotonic()) > 0:
                    got = self._recv(left)
                    if got is None:
                        break
                    if got[0].get("id") == header["id"]:
                        return got
                    # else a late answer to something earlier
            except EditorError as exc:
                if exc.code != P.E_UNAVAILABLE:
                    raise
                failure = exc
                time.sleep(0.2)  # connection refused returns at once: do not spin
            self._reset()  # the socket may hold a half-sent request: start clean
            if renew_id:  # a resent job must not collide with one the daemon may still hold
                header["id"] = P.new_id()
        raise failure or self._unavailable(f"no reply within {wait_s:g} s, {self.retries + 1} tries")

    def request(self, op: str, *, auth: bool = True, **fields: Any) -> dict[str, Any]:
        """A control op with Lazy Pirate retries; returns the ``result`` header."""
        header = P.make_header(op, token=self.token if auth else None, **fields)
        reply, _ = self._exchange(header, (), self.connect_timeout, renew_id=False)
        if reply.get("op") == "error":
            self._raise(reply)
        return reply

    # ---- control ops

    def hello(self, *, auth: Optional[bool] = None) -> dict[str, Any]:
        """The daemon's capabilities (full when the token is right); ``auth=None``: when a token is known."""
        if auth is None:
            auth = self._token is not None or config.token_path().exists()
        return self.request("hello", auth=auth)

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("cancel", target=job_id)

    def shutdown(self) -> dict[str, Any]:
        return self.request("shutdown")

    # ---- jobs

    def run_job(
        self,
        op: str,
        inputs: Inputs,
        params: Optional[dict[str, Any]] = None,
        *,
        progress: Optional[JobProgressFn] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
        job_id: Optional[str] = None,
    ) -> tuple[dict[str, Any], dict[str, tuple[P.BufferSpec, memoryview]]]:
        """Run a job and return (result header, {name: (spec, bytes)}).

        ``progress(stage, fraction, header)`` is called for each progress message
        (keep-alives excluded); returning False cancels the job, as does
        ``should_cancel()`` returning true (polled about ten times a second). The job
        then ends with the daemon's ``cancelled`` error. Any other exception while
        waiting (Ctrl-C, a broken callback) cancels the job on the daemon and is re-raised.
        """
        if op not in P.JOB_OPS:
            raise ValueError(f"{op!r} is not a job op; use one of {P.JOB_OPS}")
        for spec, data in inputs:
            n = memoryview(data).nbytes
            if n != spec.nbytes:
                raise self._error(P.E_BAD_BUFFER, f"buffer '{spec.name}' has {n} bytes, its spec needs {spec.nbytes}")
        header = P.make_header(op, id=job_id, token=self.token, params=params or {}, buffers=[s.to_json() for s, _ in inputs])
        frames = [d for _, d in inputs]
        # The first reply (`queued`) comes once the daemon has the whole message: allow for transfer.
        first_wait = self.connect_timeout + sum(s.nbytes for s, _ in inputs) / 100e6
        got: Optional[Reply] = self._exchange(header, frames, first_wait, renew_id=True)

        cancel_sent = False
        last = last_progress = time.monotonic()
        try:
            while True:
                cancel_now = False
                if got is not None:
                    reply, reply_frames = got
                    last = time.monotonic()
                    if reply.get("id") == header["id"]:
                        kind = reply.get("op")
                        if kind == "error":
                            self._raise(reply)
                        if kind == "result":
                            return reply, self._buffers(reply, reply_frames)
                        # Keep-alives only prove the daemon is alive; they are not progress to show.
                        if kind == "progress" and not reply.get("keepalive"):
                            last_progress = last
                            if progress is not None:
                                cancel_now = progress(str(reply.get("stage", "")), float(reply.get("fraction", 0.0)), reply) is False
                if not cancel_sent and (cancel_now or (should_cancel is not None and should_cancel())):
                    self._send(P.make_header("cancel", token=self.token, target=header["id"]))
                    cancel_sent = True
                now = time.monotonic()
                if now - last > self.silence_timeout:
                    raise self._error(
                        P.E_UNAVAILABLE,
                        f"The mattekit daemon at {self.endpoint} went silent for {self.silence_timeout:g} s during {op} "
                        "(no progress, no keep-alive): it may have crashed; restart it with `mattekit serve`.",
                    )
                if now - last_progress > self.timeout:
                    raise self._error(P.E_UNAVAILABLE, f"{op} made no progress for {self.timeout:g} s; restart the daemon with `mattekit serve`.")
                got = self._recv(0.1)
        except BaseException as exc:
            if not isinstance(exc, EditorError):  # Ctrl-C, a failing callback: don't leave the job running
                try:
                    self._send(P.make_header("cancel", token=self.token, target=header["id"]))
                except Exception:
                    pass
            elif exc.code == P.E_UNAVAILABLE:
                self._reset()  # whatever arrives late on this socket belongs to a dead job
            raise

    def _buffers(self, reply: dict[str, Any], frames: list[Any]) -> dict[str, tuple[P.BufferSpec, memoryview]]:
        views = [memoryview(f).cast("B") for f in frames]  # no copies: views of the received frames
        try:
            specs = P.parse_buffers(reply, views, max_pixels=config.MAX_PIXELS, max_side=config.MAX_SIDE)
        except P.ProtocolError as exc:
            raise self._error(exc.code, f"the daemon's result is malformed: {exc.message}") from None
        return {s.name: (s, v) for s, v in zip(specs, views)}


# --------------------------------------------------------------------------- starting the daemon


def warnings_text(header: Mapping[str, Any]) -> Optional[str]:
    """What a result's ``warnings`` tell the user (an empty selection, a CPU fallback...), or None.

    Both plug-ins show it the editor's own way: a result with warnings is never plain success."""
    warnings = [str(w) for w in header.get("warnings") or []]
    return "mattekit: " + "\n".join(warnings) if warnings else None


def sandbox_name() -> Optional[str]:
    """The sandbox this editor runs in ("flatpak:org.gimp.GIMP", as install.json says, or
    "flatpak" when Flatpak's marker file is there), or None. A sandbox never starts the daemon:
    the command install.json names is a host path, and would run inside the sandbox's /usr."""
    return install_info().get("sandbox") or ("flatpak" if os.path.exists("/.flatpak-info") else None)


def host_serve_command() -> str:
    """The command that starts the daemon, as a user would type it on the host (with install.json's
    own variables, e.g. a checkout's PYTHONPATH, in front)."""
    info = install_info()
    assignments = [f"{k}={shlex.quote(str(v))}" for k, v in (info.get("env") or {}).items()]
    return " ".join([*assignments, shlex.join([*(info.get("command") or ["mattekit"]), "serve"])])


#: Set by editors for their own Python and libraries (an AppImage's PYTHONPATH and
#: LD_LIBRARY_PATH, GIMP's typelib and module paths); a daemon started from the editor must not
#: inherit them: they would load the editor's libraries into the daemon's Python.
EDITOR_ENV = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE", "PYTHONUSERBASE",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "QT_PLUGIN_PATH", "QML2_IMPORT_PATH", "QT_QPA_PLATFORM_PLUGIN_PATH",
    "GI_TYPELIB_PATH", "GIO_MODULE_DIR", "GDK_PIXBUF_MODULE_FILE", "GDK_PIXBUF_MODULEDIR", "GTK_PATH",
    "GTK_EXE_PREFIX", "GTK_DATA_PREFIX", "GSETTINGS_SCHEMA_DIR", "GEGL_PATH", "BABL_PATH", "GIMP3_PLUGINDIR",
    "PERLLIB", "APPDIR", "APPIMAGE", "ARGV0", "OWD",
)


def daemon_environment(environ: Mapping[str, str], extra: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """The environment for a daemon started from an editor: ``environ`` without the variables
    editors set for themselves (`EDITOR_ENV`), nor any that points into an AppImage's mount
    (``$APPDIR``), then ``extra`` (install.json's own settings, e.g. a checkout's PYTHONPATH)."""
    appdir = environ.get("APPDIR")
    env = {k: v for k, v in environ.items()
           if k not in EDITOR_ENV and not (appdir and len(appdir) > 1 and appdir in v)}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def daemon_command(command: Optional[Sequence[str]] = None) -> Optional[list[str]]:
    """How to run `mattekit`: the argument, $MATTEKIT_COMMAND, install.json, or PATH."""
    if command:
        return list(command)
    env = os.environ.get("MATTEKIT_COMMAND")
    if env:
        return shlex.split(env)
    info = install_info().get("command")
    if info:
        return list(info)
    exe = shutil.which("mattekit")
    return [exe] if exe else None


def start_daemon(
    command: Optional[Sequence[str]] = None,
    *,
    endpoint: Optional[str] = None,
    wait_s: float = 60.0,
    env: Optional[Mapping[str, str]] = None,
    scrub: bool = True,
) -> bool:
    """Start `<command> serve` in the background; True once it answers ``hello``.

    ``env`` adds to the environment (after install.json's); ``scrub`` first drops what the editor
    set for itself (`daemon_environment`; the CLI keeps the user's own). Without ``command`` this
    never uses ``sys.executable``: inside an editor that is the editor, not a Python
    with mattekit installed (``mattekit.client.start_daemon`` does, outside editors).
    """
    if sandbox_name():
        raise EditorError(P.E_UNAVAILABLE, f"The mattekit daemon is not running, and this editor runs in a sandbox "
                                           f"({sandbox_name()}), which cannot start it: on the host, run `{host_serve_command()}`.")
    cmd = daemon_command(command)
    if not cmd:
        return False
    info = install_info()
    endpoint = endpoint or os.environ.get("MATTEKIT_ENDPOINT") or info.get("endpoint")
    argv = cmd + (["--endpoint", endpoint] if endpoint else []) + ["serve"]
    full_env = daemon_environment(os.environ, info.get("env")) if scrub else {**os.environ, **{str(k): str(v) for k, v in (info.get("env") or {}).items()}}
    full_env.update(env or {})
    log_dir = config.runtime_dir()
    try:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(log_dir / "daemon.log", "ab")
    except OSError:
        log = subprocess.DEVNULL
    start = log.tell() if log is not subprocess.DEVNULL else 0
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=full_env, close_fds=True)
    except OSError:
        return False
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    deadline = time.monotonic() + wait_s
    probe = EditorClient(endpoint, connect_timeout=0.5, retries=0)
    try:
        while time.monotonic() < deadline:
            try:
                probe.request("hello", auth=False)
                return True
            except EditorError:
                if proc.poll() is not None:  # it gave up: say why now, not after wait_s of "no socket file"
                    raise EditorError(P.E_UNAVAILABLE, "the daemon could not start: " + _last_log_line(log_dir / "daemon.log", start, proc.returncode)) from None
                time.sleep(0.3)
        return False
    finally:
        probe.close()


def _last_log_line(path: Any, start: int, returncode: Optional[int]) -> str:
    """The last non-empty line the daemon wrote to its log after `start` (its reason for exiting)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return (lines[-1] if lines else f"it exited with status {returncode} and wrote nothing") + f" (log: {path})"


__all__ = ["EditorClient", "EditorError", "warnings_text", "daemon_command", "daemon_environment", "host_serve_command",
           "install_info", "pyzmq_available", "sandbox_name", "start_daemon", "unsafe_endpoint"]
