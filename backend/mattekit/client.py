"""Client for the mattekit daemon: the CLI's, the tests', and the plug-ins' reference.

One ``Client`` holds one DEALER socket and runs one request at a time. Control
requests use the Lazy Pirate pattern (poll with a timeout; on silence close the
socket, reconnect and resend, then give up with ``DaemonUnavailable``). A job's
first reply (``progress``/``queued``) must come within the connect timeout; after
that the client waits as long as messages keep arriving: the daemon repeats a job's
progress as a keep-alive every ``config.KEEPALIVE_S``, so ``silence_timeout`` (much
shorter than ``timeout``) is enough to report a daemon that died mid-job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from . import config
from . import protocol as P

ProgressFn = Callable[[str, float, dict], Any]


class MatteError(Exception):
    """The daemon answered ``error``; ``code`` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str, header: dict | None = None):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.header = header or {}


class DaemonUnavailable(MatteError):
    def __init__(self, message: str):
        super().__init__(P.E_UNAVAILABLE, message)


@dataclass
class Result:
    header: dict[str, Any]
    buffers: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def alpha(self) -> np.ndarray | None:
        a = self.buffers.get("alpha")
        return None if a is None else a[..., 0]

    @property
    def foreground(self) -> np.ndarray | None:
        return self.buffers.get("foreground")

    @property
    def model(self) -> str | None:
        return self.header.get("model")


def read_token() -> str:
    path = config.token_path()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise DaemonUnavailable(f"no token at {path}: start the daemon once with `mattekit serve`") from None


class Client:
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        timeout: float = config.CLIENT_TIMEOUT_S,
        connect_timeout: float = config.CLIENT_CONNECT_TIMEOUT_S,
        retries: int = config.CLIENT_RETRIES,
        autostart: bool = False,
        server_key: bytes | None = None,
        silence_timeout: float = config.CLIENT_SILENCE_S,
    ):
        """``timeout``: longest a job may go without progress; ``silence_timeout``: longest
        without any message at all (keep-alives included) before the daemon is reported
        as gone. ``server_key``: the daemon's CURVE public key (its config dir's
        ``curve.public``), needed when it runs with --allow-remote."""
        self.endpoint = endpoint or config.default_endpoint()
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.autostart = autostart
        self.server_key = server_key
        self.silence_timeout = silence_timeout
        self.ctx = zmq.Context.instance()
        self.sock: zmq.Socket | None = None

    # ---- connection

    @property
    def token(self) -> str:
        if self._token is None:
            if self.autostart and not config.token_path().exists():
                start_daemon(self.endpoint)  # the daemon creates the token on first start
            self._token = read_token()
        return self._token

    def _connect(self) -> zmq.Socket:
        if self.sock is None:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            # ZMTP heartbeats: a tcp connection to a host that vanished is dropped and retried.
            s.setsockopt(zmq.HEARTBEAT_IVL, int(config.KEEPALIVE_S * 1000))
            s.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(config.KEEPALIVE_S * 5000))
            if self.server_key is not None:
                pub, sec = zmq.curve_keypair()
                s.curve_serverkey, s.curve_publickey, s.curve_secretkey = self.server_key, pub, sec
            s.connect(self.endpoint)
            self.sock = s
        return self.sock

    def _reset(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _recv(self, wait_s: float) -> tuple[dict[str, Any], list[Any]] | None:
        sock = self._connect()
        if not sock.poll(int(wait_s * 1000)):
            return None
        parts = sock.recv_multipart(copy=False)
        return P.decode_header(parts[0].buffer, max_bytes=1 << 24, max_depth=16), parts[1:]

    def _unavailable(self) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"no mattekit daemon answered at {self.endpoint} within {self.connect_timeout:g} s "
            f"({self.retries + 1} tries). Start it with `mattekit serve`."
        )

    def _send(self, header: dict[str, Any], frames: list[Any] = ()) -> None:
        self._connect().send_multipart([P.encode_header(header), *frames], copy=False)

    def request(self, op: str, *, auth: bool = True, **fields: Any) -> dict[str, Any]:
        """Send a control op and return its ``result`` header (Lazy Pirate retries)."""
        header = P.make_header(op, token=self.token if auth else None, **fields)
        for attempt in range(self.retries + 1):
            self._send(header)
            deadline = time.monotonic() + self.connect_timeout
            while (left := deadline - time.monotonic()) > 0:
                got = self._recv(left)
                if got is None:
                    break
                reply, _ = got
                if reply.get("id") != header["id"]:
                    continue  # a late reply to an earlier request
                if reply["op"] == "error":
                    raise MatteError(reply.get("code", P.E_INTERNAL), reply.get("message", ""), reply)
                return reply
            self._reset()  # the socket may hold a half-sent request: start clean
            if attempt == 0 and self.autostart and start_daemon(self.endpoint):
                continue
        raise self._unavailable()

    # ---- control ops

    def hello(self, *, auth: bool = True) -> dict[str, Any]:
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
        inputs: dict[str, tuple[np.ndarray, str | None, str]],
        params: dict[str, Any] | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        job_id: str | None = None,
    ) -> Result:
        """Run a job. ``inputs`` maps buffer name → (array, channel order or None, transfer).

        ``progress(stage, fraction, header)`` is called for each progress message;
        returning False cancels the job, as does setting ``cancel``.
        """
        descs, frames = [], []
        for name, (arr, order, transfer) in inputs.items():
            spec, data = P.buffer_from_array(name, arr, order=order, transfer=transfer)
            descs.append(spec.to_json())
            frames.append(data)
        header = P.make_header(op, id=job_id, token=self.token, params=params or {}, buffers=descs)
        for attempt in range(self.retries + 1):
            self._send(header, frames)
            got = self._recv(self.connect_timeout)
            if got is not None:
                break
            self._reset()
            if attempt == 0 and self.autostart and start_daemon(self.endpoint):
                continue
        else:
            raise self._unavailable()

        cancel_sent = False
        last = last_progress = time.monotonic()
        try:
            while True:
                if got is not None:
                    reply, reply_frames = got
                    last = time.monotonic()
                    if reply.get("id") == header["id"]:
                        kind = reply["op"]
                        if kind == "error":
                            raise MatteError(reply.get("code", P.E_INTERNAL), reply.get("message", ""), reply)
                        if kind == "result":
                            return self._result(reply, reply_frames)
                        if kind == "progress" and not reply.get("keepalive"):
                            last_progress = last
                            if progress is not None and progress(reply.get("stage", ""), float(reply.get("fraction", 0.0)), reply) is False:
                                cancel = cancel or threading.Event()
                                cancel.set()
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    self._send(P.make_header("cancel", token=self.token, target=header["id"]))
                    cancel_sent = True
                now = time.monotonic()
                if now - last > self.silence_timeout:
                    raise DaemonUnavailable(
                        f"the daemon at {self.endpoint} went silent for {self.silence_timeout:g} s during {op} "
                        "(no progress, no keep-alive): it may have crashed; restart it with `mattekit serve`"
                    )
                if now - last_progress > self.timeout:
                    raise DaemonUnavailable(f"{op} made no progress for {self.timeout:g} s")
                got = self._recv(0.1)
        except BaseException as exc:
            if not isinstance(exc, MatteError):  # Ctrl-C, a failing progress callback: don't leave the job running
                try:
                    self._send(P.make_header("cancel", token=self.token, target=header["id"]))
                except Exception:
                    pass
            if isinstance(exc, DaemonUnavailable):
                self._reset()
            raise

    @staticmethod
    def _result(reply: dict[str, Any], frames: list[Any]) -> Result:
        specs = P.parse_buffers(reply, frames, max_pixels=config.MAX_PIXELS, max_side=config.MAX_SIDE)
        return Result(reply, {s.name: P.array_from_buffer(s, f) for s, f in zip(specs, frames)})

    def refine(self, image: np.ndarray, guidance: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: ProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("refine", {"image": (image, order, transfer), "guidance": (guidance, "Y", "srgb")}, params, progress=progress, cancel=cancel)

    def select_subject(self, image: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: ProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("select_subject", {"image": (image, order, transfer)}, params, progress=progress, cancel=cancel)

    def decontaminate(self, image: np.ndarray, alpha: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: ProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("decontaminate", {"image": (image, order, transfer), "alpha": (alpha, "Y", "srgb")}, params, progress=progress, cancel=cancel)


def start_daemon(endpoint: str | None = None, wait_s: float = 60.0) -> bool:
    """Start `mattekit serve` in the background and wait until it answers ping."""
    endpoint = endpoint or config.default_endpoint()
    from .daemon import private_dir

    log_dir = private_dir(config.runtime_dir())
    log = open(Path(log_dir) / "daemon.log", "ab")
    cmd = [sys.executable, "-m", "mattekit", "--endpoint", endpoint, "serve"]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.monotonic() + wait_s
    probe = Client(endpoint, connect_timeout=0.5, retries=0)
    try:
        while time.monotonic() < deadline:
            try:
                probe.hello(auth=False)
                return True
            except DaemonUnavailable:
                time.sleep(0.2)
        return False
    finally:
        probe.close()
