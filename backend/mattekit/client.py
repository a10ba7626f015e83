"""The NumPy client for the mattekit daemon: the CLI's, the tests' and the benchmarks'.

A thin layer over ``editor_client.EditorClient``, which holds every request, retry and
job rule (Lazy Pirate retries, silence timeout, keep-alive filtering, cancel on any
exception, heartbeats, CURVE). This module only adds NumPy arrays in and out (zero-copy
views of the received frames), the ``MatteError``/``DaemonUnavailable`` names, starting
the daemon with ``sys.executable`` (fine outside editors), and convenience methods.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from . import protocol as P
from . import editor_client as core
from .editor_client import EditorError, JobProgressFn

#: The daemon answered ``error`` (or none answered); ``code`` is one of protocol.ERROR_CODES.
MatteError = EditorError


class DaemonUnavailable(MatteError):
    """No daemon answered in time, or it went silent mid-job (code ``daemon_unavailable``)."""

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
    """The daemon's per-user token, read as every client reads it (`EditorClient.token`; the daemon
    creates it: `daemon.load_token`). Raises DaemonUnavailable when there is none."""
    return Client().token


class Client(core.EditorClient):
    """``EditorClient`` on pyzmq with NumPy arrays; ``autostart`` starts a missing daemon."""

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
        super().__init__(
            endpoint or config.default_endpoint(), token, timeout=timeout, connect_timeout=connect_timeout,
            transport="pyzmq", retries=retries, server_key=server_key, silence_timeout=silence_timeout,
        )
        self.autostart = autostart

    def _error(self, code: str, message: str, header: dict | None = None) -> MatteError:
        return DaemonUnavailable(message) if code == P.E_UNAVAILABLE else MatteError(code, message, header)

    def _start_daemon(self) -> bool:
        return self.autostart and start_daemon(self.endpoint)

    @property
    def token(self) -> str:
        if self._token is None and self.autostart and not config.token_path().exists():
            start_daemon(self.endpoint)  # the daemon creates the token on first start
        return super().token

    def hello(self, *, auth: bool | None = True) -> dict[str, Any]:
        return super().hello(auth=auth)

    def run_job(  # type: ignore[override]
        self,
        op: str,
        inputs: dict[str, tuple[np.ndarray, str | None, str]],
        params: dict[str, Any] | None = None,
        *,
        progress: JobProgressFn | None = None,
        cancel: threading.Event | None = None,
        job_id: str | None = None,
    ) -> Result:
        """Run a job. ``inputs`` maps buffer name → (array, channel order or None, transfer).

        ``progress(stage, fraction, header)`` is called for each progress message;
        returning False cancels the job, as does setting ``cancel``.
        """
        bufs = [P.buffer_from_array(name, arr, order=order, transfer=transfer) for name, (arr, order, transfer) in inputs.items()]
        header, out = super().run_job(op, bufs, params, progress=progress, should_cancel=cancel.is_set if cancel else None, job_id=job_id)
        return Result(header, {name: P.array_from_buffer(spec, view) for name, (spec, view) in out.items()})

    def refine(self, image: np.ndarray, guidance: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: JobProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("refine", {"image": (image, order, transfer), "guidance": (guidance, "Y", "srgb")}, params, progress=progress, cancel=cancel)

    def select_subject(self, image: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: JobProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("select_subject", {"image": (image, order, transfer)}, params, progress=progress, cancel=cancel)

    def decontaminate(self, image: np.ndarray, alpha: np.ndarray, *, order: str | None = None, transfer: str = "srgb", progress: JobProgressFn | None = None, cancel: threading.Event | None = None, **params: Any) -> Result:
        return self.run_job("decontaminate", {"image": (image, order, transfer), "alpha": (alpha, "Y", "srgb")}, params, progress=progress, cancel=cancel)


def start_daemon(endpoint: str | None = None, wait_s: float = 60.0) -> bool:
    """Start `python -m mattekit serve` from this source tree; True once it answers ``hello``."""
    src = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return core.start_daemon(
        [sys.executable, "-m", "mattekit"], endpoint=endpoint or config.default_endpoint(), wait_s=wait_s,
        env={"PYTHONPATH": src + (os.pathsep + path if path else "")}, scrub=False,  # outside editors: the user's environment
    )


__all__ = ["Client", "DaemonUnavailable", "MatteError", "Result", "read_token", "start_daemon"]
