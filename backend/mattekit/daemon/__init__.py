"""The mattekit daemon: a ZeroMQ ROUTER serving matting jobs to local editors.

Threads: the I/O loop (main thread) owns the ROUTER socket, answers control ops
(``hello``, ``ping``, ``cancel``, ``shutdown``) at once and queues jobs; one worker
thread runs jobs through the engine and hands its replies back to the I/O loop over
an inproc PUSH/PULL pair (ZeroMQ sockets must not be shared between threads).

Jobs are queued per client and taken round-robin, so one busy script cannot starve
an editor; past ``max_queued`` waiting jobs a request gets ``busy``, and a job whose
estimated working memory is over ``max_job_bytes`` gets ``too_large`` before anything
is decoded.

Gone clients: ROUTER_MANDATORY makes a send to a disconnected client fail, and the
I/O loop sends every queued or running job a keep-alive ``progress`` each
``keepalive_s``, so a client that went away has its jobs cancelled within about that
time (the engine sees it at its next ``progress`` call), and a client sees a daemon
that died as silence (see ``Client(silence_timeout=)``).
"""

from __future__ import annotations

import hmac  # noqa: F401 - the token's comparison, reachable as mattekit.daemon.hmac

from .scheduler import Cancelled, Job, Scheduler, estimate_job_bytes
from .security import InstanceLock, SetupError, curve_keys, is_loopback, load_token, lock_path, private_dir
from .server import SHUTDOWN_LINGER_MS, Daemon, main_serve

__all__ = ["Cancelled", "Daemon", "InstanceLock", "Job", "SHUTDOWN_LINGER_MS", "Scheduler", "SetupError", "curve_keys",
           "estimate_job_bytes", "is_loopback", "load_token", "lock_path", "main_serve", "private_dir"]
