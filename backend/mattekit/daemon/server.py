"""The daemon's server: the I/O loop, the worker thread and `mattekit serve` (see the package docstring)."""

from __future__ import annotations

import collections
import gc
import hmac
import logging
import os
import signal
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import zmq

from .. import __version__, config
from .. import protocol as P
from ..sandbox import Sandbox, registered as registered_sandboxes, write_token
from .scheduler import Cancelled, Job, Scheduler, estimate_job_bytes
from .security import InstanceLock, SetupError, check_private, curve_keys, is_loopback, load_token, private_dir

#: First byte of the route frame of a worker reply: the job's final reply, or one of its progress events.
_FINAL, _PROGRESS = b"F", b"P"
#: How long the daemon's socket keeps trying to deliver queued replies when it stops (ms).
SHUTDOWN_LINGER_MS = 1000

log = logging.getLogger("mattekit.daemon")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _is_accelerator_oom(exc: BaseException) -> bool:
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or ("out of memory" in text.lower() and ("CUDA" in text or "HIP" in text or "MPS" in text))


def _free_accelerator_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass


class Daemon:
    """Serve matting jobs on ``endpoint`` until ``shutdown``, SIGTERM or SIGINT."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        allow_remote: bool = False,
        engine: Any = None,
        max_queued: int = config.MAX_QUEUED_JOBS,
        max_pixels: int = config.MAX_PIXELS,
        max_job_bytes: int = config.MAX_JOB_BYTES,
        max_frame_bytes: int = config.MAX_FRAME_BYTES,
        keepalive_s: float = config.KEEPALIVE_S,
        curve: bool | None = None,
        sandboxes: Sequence[Sandbox] = (),
    ):
        """``curve``: None = CURVE exactly when ``allow_remote`` (on any address, loopback
        included); a non-loopback endpoint always gets CURVE. ``max_frame_bytes``: ZeroMQ
        MAXMSGSIZE, a bigger frame makes ZeroMQ drop that client's connection. ``sandboxes``:
        sandboxed editors (``mattekit.sandbox``) also served, each on its own ipc socket with a
        copy of the token; one that cannot be bound is logged and skipped."""
        self.endpoint = endpoint or config.default_endpoint()
        if not self.endpoint.startswith(("ipc://", "tcp://", "inproc://")):
            raise SetupError(f"{self.endpoint}: only ipc:// and tcp:// endpoints are supported")
        if not is_loopback(self.endpoint) and not allow_remote:
            raise SetupError(f"{self.endpoint} is not a loopback address; binding it needs --allow-remote (and then CURVE encryption is used)")
        self.allow_remote = allow_remote
        self.curve = bool(allow_remote if curve is None else curve) or not is_loopback(self.endpoint)
        self.curve_public: bytes | None = None
        self.max_job_bytes = max_job_bytes
        self.max_frame_bytes = max_frame_bytes
        self.keepalive_s = keepalive_s
        self.token = token if token is not None else load_token()
        if engine is None:
            from ..engine import Engine

            engine = Engine()
        self.engine = engine
        self.max_pixels = max_pixels
        self.scheduler = Scheduler(max_queued)
        self.jobs: dict[tuple[bytes, str], Job] = {}  # queued or running, by (client, id)
        self.running: Job | None = None
        self._stop = threading.Event()
        self._lock = InstanceLock(self.endpoint)
        self.sandboxes = list(sandboxes)
        self._sandbox_locks: list[tuple[InstanceLock, Path]] = []  # those bound: their lock and socket
        self.ctx = zmq.Context()
        self._reply_addr = f"inproc://mattekit-replies-{id(self)}"
        self.started_at = time.time()
        self.stats = collections.Counter()
        # The engine's capabilities (models, devices) are read on the worker thread: they import
        # torch, which must never stall the I/O loop. Full `hello`s that come earlier wait here.
        self.capabilities: dict[str, Any] | None = None
        self._waiting_hellos: list[tuple[bytes, str]] = []
        self.zap: zmq.Socket | None = None
        self._denials: collections.deque[list[bytes]] = collections.deque()
        self._next_denial = 0.0
        self.denials_sent: collections.deque[float] = collections.deque(maxlen=64)  # when (monotonic)

    # ---- lifecycle

    def bind(self) -> None:
        self._lock.acquire()
        try:
            self._bind()
        except BaseException:  # a refused start leaves nothing behind
            for sock in (getattr(self, "router", None), self.zap):
                if sock is not None:
                    sock.close(0)
            self.zap = None
            self._lock.release()
            raise

    def _bind(self) -> None:
        path = config.ipc_socket_path(self.endpoint)
        if path is not None:
            private_dir(path.parent)
            if path.exists():  # left by a daemon that died: we hold the lock, so it is stale
                path.unlink()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone client raises: we cancel its jobs
        # A bigger frame makes ZeroMQ drop the connection: memory stays bounded.
        self.router.setsockopt(zmq.MAXMSGSIZE, self.max_frame_bytes)
        self.router.setsockopt(zmq.SNDHWM, 1_000)
        self.router.setsockopt(zmq.RCVHWM, 1_000)
        # ZMTP heartbeats drop tcp peers that vanished without closing (cable, suspend, kill -9 on another host).
        ivl = max(100, int(self.keepalive_s * 1000))
        self.router.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        # Generous: a hand-written ZMTP client (zmtp.py) answers PING only while it reads.
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(5 * ivl, int(config.CLIENT_SILENCE_S * 1000)))
        if self.curve or self.endpoint.startswith("tcp://"):
            # ZAP: peers are authenticated during the ZMTP handshake, so one without the token
            # (or, with CURVE, the server key) never gets a message queued, let alone allocated.
            self.zap = self.ctx.socket(zmq.ROUTER)
            self.zap.setsockopt(zmq.LINGER, 0)
            self.zap.bind("inproc://zeromq.zap.01")
            self.router.zap_domain = b"mattekit"
        if not self.curve and self.endpoint.startswith("tcp://"):
            self.router.plain_server = True
        if self.curve:
            pub, sec = curve_keys()
            self.router.curve_server = True
            self.router.curve_secretkey = sec
            self.router.curve_publickey = pub
            self.curve_public = pub
            # The key itself stays out of logs: clients read it from the file.
            log.warning("remote access on %s with CURVE; clients need the server key in %s", self.endpoint, config.config_dir() / "curve.public")
        self._bind_endpoint(self.endpoint, path)
        for sandbox in self.sandboxes:
            self._bind_sandbox(sandbox)
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind(self._reply_addr)
        self.worker = threading.Thread(target=self._work, name="mattekit-worker", daemon=True)
        self.worker.start()

    def _bind_endpoint(self, endpoint: str, path: Path | None) -> None:
        """Bind the router on `endpoint`; for an ipc socket (`path`, whose lock we hold) make it
        0600 and check it is a private socket. Raises SetupError."""
        try:
            self.router.bind(endpoint)
        except zmq.ZMQError as exc:
            raise SetupError(f"cannot bind {endpoint}: {exc}") from None
        if path is not None:
            os.chmod(path, 0o600)
            if not stat.S_ISSOCK(path.stat().st_mode):
                raise SetupError(f"{path} is not a socket")
            check_private(path, 0o600)

    def _bind_sandbox(self, sandbox: Sandbox) -> None:
        """Also serve a sandboxed editor: its own ipc socket (locked like the main one) and a fresh
        copy of the token where its plug-in reads it. A failure costs only that sandbox."""
        path = config.ipc_socket_path(sandbox.endpoint)
        if path is None or not sandbox.endpoint.startswith("ipc://"):
            log.warning("not serving the %s sandbox: %s is not an ipc socket path", sandbox.app, sandbox.endpoint)
            return
        lock = InstanceLock(sandbox.endpoint)
        try:
            private_dir(path.parent)
            lock.acquire()
        except (SetupError, OSError) as exc:
            log.warning("not serving the %s sandbox at %s: %s", sandbox.app, sandbox.endpoint, exc)
            return
        try:
            if path.exists():  # left by a daemon that died: we hold its lock
                path.unlink()
            self._bind_endpoint(sandbox.endpoint, path)
            write_token(sandbox, self.token)
        except (OSError, SetupError) as exc:
            lock.release()
            log.warning("not serving the %s sandbox at %s: %s", sandbox.app, sandbox.endpoint, exc)
            return
        self._sandbox_locks.append((lock, path))
        log.info("also serving the %s sandbox on %s", sandbox.app, sandbox.endpoint)

    def stop(self) -> None:
        self._stop.set()

    def serve(self, *, ready: Callable[[], None] | None = None, install_signals: bool = True) -> None:
        self.bind()
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        log.info("mattekit %s serving on %s", __version__, self.endpoint)
        if ready:
            ready()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.replies, zmq.POLLIN)
        if self.zap is not None:
            poller.register(self.zap, zmq.POLLIN)
        tick = min(200, max(10, int(self.keepalive_s * 500)))
        try:
            while not self._stop.is_set():
                wait = tick if not self._denials else max(1, min(tick, int((self._next_denial - time.monotonic()) * 1000) + 1))
                events = dict(poller.poll(wait))
                if self.replies in events:
                    self._forward_replies()
                if self.zap is not None:
                    if self.zap in events:
                        self._authenticate()
                    self._send_denials()
                if self.router in events:
                    for _ in range(64):  # drain a burst, but let replies through between bursts
                        if not self._receive():
                            break
                if self._waiting_hellos and self.capabilities is not None:
                    for peer, rid in self._waiting_hellos:
                        self._send(peer, P.make_header("result", id=rid, **self.hello(full=True)))
                    self._waiting_hellos.clear()
                self._keepalive()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        # Requests that reached the socket but were not read yet are answered too (a job with
        # E_SHUTTING_DOWN), not dropped with it; bounded, so a flood cannot hold the stop.
        for _ in range(1000):
            if not self._receive():
                break
        for job in list(self.jobs.values()):
            job.cancel.set()
        self.scheduler.close()
        self.worker.join(timeout=10)
        self._forward_replies()
        # A short linger: replies already queued (the `shutdown` op's own "stopping") still go out.
        self.router.close(linger=SHUTDOWN_LINGER_MS)
        self.replies.close(0)
        if self.zap is not None:
            self.zap.close(0)
        if self.worker.is_alive():  # an engine that ignores cancel: term() would wait for its socket forever
            log.error("the worker did not stop within 10 s; exiting without waiting for it")
        else:
            self.ctx.term()
        path = config.ipc_socket_path(self.endpoint)
        if path is not None and path.exists():
            path.unlink()
        for lock, socket_path in self._sandbox_locks:
            if socket_path.exists():
                socket_path.unlink()
            lock.release()
        self._lock.release()
        log.info("mattekit daemon stopped")

    # ---- I/O loop

    def _send(self, peer: bytes, header: dict[str, Any] | bytes | zmq.Frame, frames: list[Any] = ()) -> bool:
        """header: a dict, or already encoded (the worker's replies pass through as they came)."""
        try:
            # NOBLOCK: a client that stops reading must never stall the I/O loop.
            encoded = header if isinstance(header, (bytes, zmq.Frame)) else P.encode_header(header)
            self.router.send_multipart([peer, encoded, *frames], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client is gone: its work is pointless
                self._peer_gone(peer)
                return False
            if exc.errno == zmq.EAGAIN:  # its queue is full: it stopped reading, treat it as gone
                log.warning("a client stopped reading its replies; cancelling its jobs")
                self.stats["dropped_replies"] += 1
                self._peer_gone(peer)
                return False
            raise

    def _authenticate(self) -> None:
        """Answer ZAP requests (RFC 27): PLAIN with the token on tcp; CURVE peers proved the server key."""
        while True:
            try:
                parts = self.zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, request = parts[:2], parts[2:]
            if len(request) < 6:
                continue
            mechanism, credentials = request[5], request[6:]
            if mechanism == b"CURVE":
                ok = True
            elif mechanism == b"PLAIN" and len(credentials) == 2:
                ok = credentials[0] == P.PLAIN_USERNAME.encode() and hmac.compare_digest(credentials[1], self.token.encode())
            else:
                ok = False
            reply = [*envelope, b"1.0", request[1], b"200" if ok else b"400", b"OK" if ok else b"wrong token", b"", b""]
            if ok:
                self.zap.send_multipart(reply)
                continue
            # Refusals are paced (all peers together): guessing and handshake floods stay cheap.
            self.stats["auth_failures"] += 1
            if len(self._denials) >= config.AUTH_MAX_PENDING:
                self.zap.send_multipart(reply)
            else:
                self._denials.append(reply)

    def _send_denials(self) -> None:
        """At most one refusal per AUTH_FAILURE_INTERVAL_S."""
        now = time.monotonic()
        if self._denials and now >= self._next_denial:
            self.zap.send_multipart(self._denials.popleft())
            self.denials_sent.append(now)
            self._next_denial = now + config.AUTH_FAILURE_INTERVAL_S

    def _keepalive(self) -> None:
        """Repeat each job's last progress when nothing was sent for it for ``keepalive_s``."""
        now = time.monotonic()
        for key, job in list(self.jobs.items()):
            if now - job.last_sent >= self.keepalive_s and key in self.jobs:
                job.last_sent = now
                self.stats["keepalives"] += 1
                self._send(job.peer, P.progress_header(job.id, job.stage, job.fraction, keepalive=True))

    def _peer_gone(self, peer: bytes) -> None:
        for job in self.scheduler.drain_peer(peer):
            self.jobs.pop(job.key, None)
        for key, job in list(self.jobs.items()):
            if key[0] == peer:
                job.cancel.set()
        self.stats["peers_gone"] += 1

    def _forward_replies(self) -> None:
        while True:
            try:
                parts = self.replies.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            # [peer, route, header, *frames]: route is b"F" + job id for a job's final reply, b"P" + id
            # for progress (the worker has set the job's stage and fraction); the header is sent on as is.
            peer, route, header_frame, *frames = parts
            kind, key = route.bytes[:1], (peer.bytes, route.bytes[1:].decode())
            if kind == _FINAL:
                self.jobs.pop(key, None)
            elif key in self.jobs:
                self.jobs[key].last_sent = time.monotonic()
            self._send(peer.bytes, header_frame, frames)
            del parts, frames

    def _receive(self) -> bool:
        try:
            parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self._handle(parts)
        return True

    def _handle(self, parts: list[Any]) -> None:
        peer = parts[0].bytes
        rid = None
        try:
            if len(parts) < 2:
                raise P.ProtocolError(P.E_BAD_MESSAGE, "empty message: frame 0 must be a JSON header")
            header = P.decode_header(parts[1].buffer, max_bytes=config.MAX_HEADER_BYTES, max_depth=config.MAX_HEADER_DEPTH)
            rid = header.get("id") if isinstance(header.get("id"), str) else None
            P.check_envelope(header)
            self._dispatch(peer, header, parts[2:])
        except P.ProtocolError as exc:
            self.stats["errors:" + exc.code] += 1
            self._send(peer, P.error_header(rid, exc.code, exc.message))
        except Exception as exc:  # a bug must cost one request, never the daemon
            log.exception("internal error handling a request")
            self.stats["errors:internal"] += 1
            self._send(peer, P.error_header(rid, P.E_INTERNAL, f"internal error: {type(exc).__name__}: {exc}"))

    def _authorised(self, header: dict[str, Any]) -> bool:
        tok = header.get("token")
        # Constant time; surrogatepass: a JSON "\ud800" must be refused, not crash the comparison.
        return isinstance(tok, str) and hmac.compare_digest(tok.encode("utf-8", "surrogatepass"), self.token.encode())

    def _dispatch(self, peer: bytes, header: dict[str, Any], frames: list[Any]) -> None:
        op, rid = header["op"], header["id"]
        if op in P.CONTROL_OPS and frames:
            raise P.ProtocolError(P.E_BAD_MESSAGE, f"{op} takes no buffers, {len(frames)} came")
        authorised = self._authorised(header)
        if op == "hello":
            if authorised and self.capabilities is None:
                self._waiting_hellos.append((peer, rid))  # answered once the worker has read them
            else:
                self._send(peer, P.make_header("result", id=rid, **self.hello(full=authorised)))
            return
        if not authorised:
            # No path or hint for an unauthenticated peer: the client knows where its token lives.
            raise P.ProtocolError(P.E_UNAUTHORIZED, "missing or wrong token")
        if op == "ping":
            self._send(peer, P.make_header("result", id=rid, pong=True, queued=len(self.scheduler), running=self.running is not None,
                                           jobs=self.stats["jobs"], cancel_requests=self.stats["cancelled"],
                                           jobs_cancelled=self.stats["jobs_cancelled"], peers_gone=self.stats["peers_gone"]))
        elif op == "cancel":
            self._cancel(peer, header)
        elif op == "shutdown":
            self._send(peer, P.make_header("result", id=rid, stopping=True))
            self.stop()
        else:
            self._submit(peer, header, frames)

    def _cancel(self, peer: bytes, header: dict[str, Any]) -> None:
        target = header.get("target")
        if not isinstance(target, str):
            raise P.ProtocolError(P.E_BAD_PARAMS, "cancel needs 'target': the id of the job to cancel")
        key = (peer, target)
        job = self.scheduler.remove(key)
        if job is not None:  # still queued: it never runs
            self.jobs.pop(key, None)
            self._send(peer, P.error_header(target, P.E_CANCELLED, "cancelled before it started"))
            state = "queued"
        elif key in self.jobs:
            self.jobs[key].cancel.set()  # the worker answers `cancelled` at its next checkpoint
            state = "running"
        else:
            raise P.ProtocolError(P.E_NOT_FOUND, f"no queued or running job {target!r} from this client")
        self.stats["cancelled"] += 1
        self._send(peer, P.make_header("result", id=header["id"], cancelled=target, state=state))

    def _submit(self, peer: bytes, header: dict[str, Any], frames: list[Any]) -> None:
        op, rid = header["op"], header["id"]
        if self._stop.is_set():
            raise P.ProtocolError(P.E_SHUTTING_DOWN, "the daemon is stopping; start it and try again")
        try:
            specs = P.parse_buffers(header, frames, max_pixels=self.max_pixels, max_side=config.MAX_SIDE)
            params = P.check_job(op, header.get("params"), specs)
        except (TypeError, ValueError) as exc:  # e.g. a list where a name was expected: unhashable
            raise P.ProtocolError(P.E_BAD_PARAMS, f"a field has the wrong type: {type(exc).__name__}: {exc}") from None
        need = estimate_job_bytes(specs)
        if need > self.max_job_bytes:
            raise P.ProtocolError(
                P.E_TOO_LARGE,
                f"this job needs about {need / 2**30:.2f} GiB of memory; the limit is {self.max_job_bytes / 2**30:.2f} GiB "
                "(MAX_JOB_BYTES): send a smaller image or a crop",
            )
        if (peer, rid) in self.jobs:
            raise P.ProtocolError(P.E_DUPLICATE_ID, f"job {rid!r} is already queued or running")
        job = Job(peer, rid, op, params, specs, frames)
        if not self.scheduler.put(job):
            self.stats["busy"] += 1
            raise P.ProtocolError(P.E_BUSY, f"{len(self.scheduler)} jobs are waiting; try again when one has finished")
        self.jobs[job.key] = job
        self.stats["jobs"] += 1
        self._send(peer, P.progress_header(rid, "queued", 0.0, position=len(self.scheduler)))

    def hello(self, full: bool) -> dict[str, Any]:
        info: dict[str, Any] = {"server": "mattekit", "version": __version__, "protocol_version": P.PROTOCOL_VERSION}
        if full:
            info.update(
                ops=list(P.REQUEST_OPS),
                dtypes=list(P.DTYPES),
                orders=list(P.ORDERS),
                transfers=list(P.TRANSFERS),
                max_pixels=self.max_pixels,
                max_side=config.MAX_SIDE,
                params=P.JOB_PARAMS,
                **(self.capabilities or {}),
            )
        return info

    def _read_capabilities(self) -> None:
        """Worker thread: (re)read the engine's models and devices for `hello`."""
        try:
            self.capabilities = self.engine.capabilities()
        except Exception as exc:  # a broken model directory must not keep `hello` waiting forever
            log.error("could not list the engine's models: %s", exc)
            self.capabilities = {"models": {}, "devices": ["cpu"], "capabilities_error": str(exc)[:300]}

    # ---- worker thread

    def _work(self) -> None:
        push = self.ctx.socket(zmq.PUSH)
        push.connect(self._reply_addr)
        self._read_capabilities()
        prepare = getattr(self.engine, "prepare", None)
        try:
            if prepare is not None:
                prepare()  # here, not in the first job: a fresh install's first request waited ~60 s
        except Exception as exc:  # the job would then report the same failure
            log.warning("could not prepare the engine: %s", exc)
        try:
            while True:
                job = self.scheduler.get()
                if job is None:
                    return
                self.running = job
                try:
                    header, frames = self._run(job, push)
                finally:
                    self.running = None
                    job.frames = []  # drop the request buffers now, not when the dict entry goes
                # Only now the final reply: a client that sees it also sees the worker idle.
                push.send_multipart([job.peer, _FINAL + job.id.encode(), P.encode_header(header), *frames], copy=False)
                # Idle workers must not pin the last job's result arrays until the next job.
                del job, header, frames
                self._read_capabilities()  # weights imported meanwhile show up in `hello`
        finally:
            push.close(0)

    def _run(self, job: Job, push: zmq.Socket) -> tuple[dict[str, Any], list[Any]]:
        """Run one job, streaming its progress; return its final reply (result or error)."""

        def progress(stage: str, fraction: float, **extra: Any) -> None:
            if job.cancel.is_set():
                raise Cancelled()
            frames = extra.pop("frames", [])
            job.stage, job.fraction = stage, fraction  # for the I/O thread's keepalives
            push.send_multipart([job.peer, _PROGRESS + job.id.encode(), P.encode_header(P.progress_header(job.id, stage, fraction, **extra)), *frames], copy=False)

        t0 = time.perf_counter()
        try:
            if job.cancel.is_set():
                raise Cancelled()
            inputs = {s.name: P.array_from_buffer(s, f) for s, f in zip(job.specs, job.frames)}
            out, fallback = self._run_engine(job, inputs, progress)
            del inputs
            descs = [spec.to_json() for spec, _ in out.buffers.values()]
            frames = [arr for _, arr in out.buffers.values()]
            meta = dict(out.meta)
            if fallback:
                meta["fallback"] = fallback
            meta.setdefault("timings", {})["total_s"] = round(time.perf_counter() - t0, 4)
            return P.make_header("result", id=job.id, buffers=descs, **meta), frames
        except Cancelled:
            if self._stop.is_set():  # not the user's cancel: say so, so the client does not report one
                return P.error_header(job.id, P.E_SHUTTING_DOWN, "the daemon was stopped before this job finished; start it and try again"), []
            self.stats["jobs_cancelled"] += 1  # stopped while running: by `cancel`, or because its client went away
            return P.error_header(job.id, P.E_CANCELLED, "cancelled"), []
        except P.ProtocolError as exc:
            return P.error_header(job.id, exc.code, exc.message), []
        except Exception as exc:
            if _is_oom(exc):
                self.stats["out_of_memory"] += 1
                msg = f"out of memory ({type(exc).__name__}: {str(exc)[:200]}): try a smaller image or close other programs"
                reply = P.error_header(job.id, P.E_OUT_OF_MEMORY, msg)
            else:
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                reply = P.error_header(job.id, P.E_INTERNAL, f"{type(exc).__name__}: {str(exc)[:500]}")
            del exc  # its traceback holds the job's arrays
            _free_accelerator_memory()
            return reply, []

    def _run_engine(self, job: Job, inputs: dict[str, Any], progress: Callable[..., None]) -> tuple[Any, str | None]:
        """engine.run; on an accelerator out-of-memory with ``device: auto``, once more on the CPU."""
        try:
            return self.engine.run(job.op, job.params, inputs, job.specs, progress), None
        except Exception as exc:
            if not (_is_accelerator_oom(exc) and job.params.get("device") == "auto" and "cpu" in self._devices()):
                raise
            reason = f"{str(exc)[:120]}; retried on the CPU"
        # Outside the except block: the failed attempt's traceback (and its GPU tensors) is gone.
        _free_accelerator_memory()
        log.warning("job %s: %s", job.id, reason)
        self.stats["cpu_fallbacks"] += 1
        progress("retry", 0.0, fallback="cpu", reason=reason)
        return self.engine.run(job.op, {**job.params, "device": "cpu"}, inputs, job.specs, progress), "cpu: " + reason

    def _devices(self) -> list[str]:
        return list((self.capabilities or {}).get("devices", []))


def main_serve(endpoint: str | None = None, allow_remote: bool = False) -> int:
    """Entry point of `mattekit serve`: returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mattekit %(levelname)s %(message)s", stream=sys.stderr)
    try:
        # The default daemon also serves the sandboxed editors installed with --flatpak; a daemon on
        # an endpoint of its own (tests, a second instance) leaves their sockets alone.
        own = (endpoint or config.default_endpoint()) == config.standard_endpoint()
        daemon = Daemon(endpoint, allow_remote=allow_remote, sandboxes=registered_sandboxes() if own else ())
        daemon.serve(ready=lambda: print(f"mattekit daemon ready on {daemon.endpoint}", file=sys.stderr, flush=True))
    except SetupError as exc:
        print(f"mattekit serve: {exc}", file=sys.stderr)
        return 1
    return 0
