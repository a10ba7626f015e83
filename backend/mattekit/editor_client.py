"""The editors' client for the mattekit daemon: standard library only.

Plug-ins vendor this file with ``protocol.py``, ``config.py`` and ``zmtp.py`` as a
``mattekit_bridge`` package (``mattekit install-plugin``), so every import here is
relative and nothing needs NumPy. The transport is pyzmq when the editor's Python has
it, else the pure-Python ZMTP fallback.

Buffers go in as ``(BufferSpec, bytes | memoryview)`` pairs and come back the same
way: the plug-in decides pixel formats, this module only moves bytes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import config
from . import protocol as P
from . import zmtp

ProgressFn = Callable[[str, float, dict], Any]
Inputs = Sequence[tuple[P.BufferSpec, Any]]

#: Written by ``mattekit install-plugin`` next to this file: how to start the daemon.
INSTALL_INFO = Path(__file__).with_name("install.json")


class EditorError(Exception):
    """A failure to show the user: ``code`` is a protocol error code, ``message`` says what to do."""

    def __init__(self, code: str, message: str, header: Optional[dict] = None):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.header = header or {}


def _unavailable(endpoint: str, why: str = "") -> EditorError:
    return EditorError(
        P.E_UNAVAILABLE,
        f"The mattekit daemon is not answering at {endpoint}{' (' + why + ')' if why else ''}. "
        "Start it with `mattekit serve` and try again.",
    )


def install_info() -> dict[str, Any]:
    """The install-time bridge configuration, or {} when there is none."""
    try:
        return json.loads(INSTALL_INFO.read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- transports


class _PyZmqTransport:
    name = "pyzmq"

    def __init__(self, endpoint: str, timeout: float):
        import zmq

        # libzmq connects lazily and would wait in silence: a missing socket file is known now.
        if endpoint.startswith("ipc://") and not endpoint[6:].startswith("@") and not os.path.exists(endpoint[6:]):
            raise _unavailable(endpoint, "no socket file")
        self._zmq = zmq
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send_multipart(self, frames: Sequence[Any]) -> None:
        self.sock.send_multipart(list(frames), copy=False)

    def recv_multipart(self, timeout: float) -> Optional[list[Any]]:
        if not self.sock.poll(int(max(0.0, timeout) * 1000)):
            return None
        return [f.buffer for f in self.sock.recv_multipart(copy=False)]

    def close(self) -> None:
        self.sock.close(0)


class _ZmtpTransport:
    name = "zmtp"

    def __init__(self, endpoint: str, timeout: float):
        try:
            self.dealer = zmtp.ZmtpDealer(endpoint, timeout)
        except (OSError, ConnectionError) as exc:
            raise _unavailable(endpoint, str(exc)) from None

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

    ``timeout`` is the longest silence tolerated while a job runs (the daemon sends
    progress); ``connect_timeout`` bounds each try of a control request and the wait
    for a job's first reply. ``transport`` is "auto", "pyzmq" or "zmtp".
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
    ):
        if transport not in ("auto", "pyzmq", "zmtp"):
            raise ValueError(f"transport must be auto, pyzmq or zmtp, not {transport!r}")
        if transport == "auto":
            transport = "pyzmq" if pyzmq_available() else "zmtp"
        self.transport_name = transport
        self.endpoint = endpoint or os.environ.get("MATTEKIT_ENDPOINT") or install_info().get("endpoint") or config.default_endpoint()
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._t: Any = None

    # ---- connection

    @property
    def token(self) -> str:
        if self._token is None:
            path = config.token_path()
            try:
                self._token = path.read_text().strip()
            except OSError:
                raise EditorError(
                    P.E_UNAVAILABLE, f"No mattekit token at {path}: the daemon has never run as this user. Start it with `mattekit serve`."
                ) from None
        return self._token

    def _transport(self) -> Any:
        if self._t is None:
            cls = _PyZmqTransport if self.transport_name == "pyzmq" else _ZmtpTransport
            self._t = cls(self.endpoint, self.connect_timeout)
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

    def _send(self, header: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        try:
            self._transport().send_multipart([P.encode_header(header), *frames])
        except (OSError, ConnectionError) as exc:
            self._reset()
            raise _unavailable(self.endpoint, str(exc)) from None

    def _recv(self, wait_s: float) -> Optional[tuple[dict[str, Any], list[Any]]]:
        try:
            parts = self._transport().recv_multipart(wait_s)
        except (OSError, ConnectionError) as exc:  # TimeoutError is an OSError
            self._reset()
            raise _unavailable(self.endpoint, str(exc)) from None
        if parts is None:
            return None
        try:
            header = P.decode_header(parts[0], max_bytes=1 << 24, max_depth=16)
        except P.ProtocolError as exc:
            raise EditorError(exc.code, f"the daemon sent a malformed reply: {exc.message}") from None
        return header, parts[1:]

    @staticmethod
    def _raise(reply: dict[str, Any]) -> None:
        raise EditorError(reply.get("code", P.E_INTERNAL), reply.get("message", "the daemon reported an error"), reply)

    def request(self, op: str, *, auth: bool = True, **fields: Any) -> dict[str, Any]:
        """A control op with Lazy Pirate retries; returns the ``result`` header."""
        header = P.make_header(op, token=self.token if auth else None, **fields)
        why = ""
        for _ in range(self.retries + 1):
            try:
                self._send(header)
                deadline = time.monotonic() + self.connect_timeout
                while (left := deadline - time.monotonic()) > 0:
                    got = self._recv(left)
                    if got is None:
                        break
                    reply, _ = got
                    if reply.get("id") != header["id"]:
                        continue  # a late answer to something earlier
                    if reply.get("op") == "error":
                        self._raise(reply)
                    return reply
            except EditorError as exc:
                if exc.code != P.E_UNAVAILABLE:
                    raise
                why = exc.message
                time.sleep(0.2)  # connection refused returns at once: do not spin
            self._reset()  # the socket may hold a half-sent request: start clean
        raise _unavailable(self.endpoint) if not why else EditorError(P.E_UNAVAILABLE, why)

    def hello(self) -> dict[str, Any]:
        """The daemon's capabilities (full when the token is right)."""
        return self.request("hello", auth=self._token is not None or config.token_path().exists())

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    # ---- jobs

    def run_job(
        self,
        op: str,
        inputs: Inputs,
        params: dict[str, Any],
        *,
        progress: Optional[ProgressFn] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
    ) -> tuple[dict[str, Any], dict[str, tuple[P.BufferSpec, memoryview]]]:
        """Run a job and return (result header, {name: (spec, bytes)}).

        ``progress(stage, fraction, header)`` is called for each progress message;
        ``should_cancel()`` is polled about ten times a second and, once true, sends
        ``cancel`` (the job then ends with EditorError("cancelled")).
        """
        if op not in P.JOB_OPS:
            raise ValueError(f"{op!r} is not a job op; use one of {P.JOB_OPS}")
        for spec, data in inputs:
            if len(memoryview(data).cast("B")) != spec.nbytes:
                raise EditorError(P.E_BAD_BUFFER, f"buffer '{spec.name}' has {len(memoryview(data).cast('B'))} bytes, its spec needs {spec.nbytes}")
        header = P.make_header(op, token=self.token, params=params, buffers=[s.to_json() for s, _ in inputs])
        frames = [d for _, d in inputs]
        # The first reply (`queued`) comes once the daemon has the whole message: allow for transfer.
        first_wait = self.connect_timeout + sum(s.nbytes for s, _ in inputs) / 100e6
        got = None
        for attempt in range(self.retries + 1):
            try:
                self._send(header, frames)
                got = self._recv(first_wait)
            except EditorError:
                if attempt == self.retries:
                    raise
                time.sleep(0.2)
            if got is not None:
                break
            self._reset()
            header["id"] = P.new_id()  # a resend must not collide with a job the daemon may still hold
        if got is None:
            raise _unavailable(self.endpoint)

        cancel_sent = False
        last = time.monotonic()
        while True:
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
                    if kind == "progress" and progress is not None and not reply.get("keepalive"):
                        progress(str(reply.get("stage", "")), float(reply.get("fraction", 0.0)), reply)
            if not cancel_sent and should_cancel is not None and should_cancel():
                self._send(P.make_header("cancel", token=self.token, target=header["id"]))
                cancel_sent = True
            if time.monotonic() - last > self.timeout:
                self._reset()
                raise EditorError(P.E_UNAVAILABLE, f"The mattekit daemon went silent for {self.timeout:g} s during {op}.")
            got = self._recv(0.1)

    @staticmethod
    def _buffers(reply: dict[str, Any], frames: list[Any]) -> dict[str, tuple[P.BufferSpec, memoryview]]:
        try:
            specs = P.parse_buffers(reply, frames, max_pixels=config.MAX_PIXELS, max_side=config.MAX_SIDE)
        except P.ProtocolError as exc:
            raise EditorError(exc.code, f"the daemon's result is malformed: {exc.message}") from None
        return {s.name: (s, memoryview(f).cast("B")) for s, f in zip(specs, frames)}


# --------------------------------------------------------------------------- starting the daemon


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


def start_daemon(command: Optional[Sequence[str]] = None, *, endpoint: Optional[str] = None, wait_s: float = 60.0) -> bool:
    """Start `mattekit serve` in the background; True once it answers ``hello``.

    Never uses ``sys.executable``: inside an editor that is the editor, not a Python
    with mattekit installed.
    """
    cmd = daemon_command(command)
    if not cmd:
        return False
    info = install_info()
    endpoint = endpoint or os.environ.get("MATTEKIT_ENDPOINT") or info.get("endpoint")
    argv = cmd + (["--endpoint", endpoint] if endpoint else []) + ["serve"]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (info.get("env") or {}).items()})
    log_dir = config.runtime_dir()
    try:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(log_dir / "daemon.log", "ab")
    except OSError:
        log = subprocess.DEVNULL
    try:
        subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env, close_fds=True)
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
                time.sleep(0.3)
        return False
    finally:
        probe.close()


__all__ = ["EditorClient", "EditorError", "daemon_command", "install_info", "pyzmq_available", "start_daemon"]
