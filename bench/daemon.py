"""Daemon overhead and throughput with the compute stubbed out.

(a) round trip of a 12 MP RGBA8 refine request (48 MB image + 12 MB guidance in,
    12 MB alpha out) through the real daemon and ``Client`` with an engine that returns
    the alpha at once, against a bare pyzmq DEALER/ROUTER echo of the same bytes in the
    same process and transport; prints the ratio.
(b) jobs/s at 1 MP with the same fake-fast engine, for 1 and 16 concurrent clients.

Usage: PYTHONPATH=backend python bench/daemon.py [--repeats 10] [--seconds 5] [--transport ipc|tcp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import numpy as np
import zmq

from mattekit import protocol as P
from mattekit.client import Client
from mattekit.daemon import Daemon
from mattekit.engine import EngineOutput


class InstantEngine:
    """Returns the guidance as the alpha without touching the pixels (no copy)."""

    def capabilities(self) -> dict:
        return {"models": {"trimap_free": [], "guided": ["instant"], "foreground": []}, "devices": ["cpu"]}

    def run(self, op, params, inputs, specs, progress):
        g = inputs["guidance"]
        progress("alpha", 0.5)
        return EngineOutput({"alpha": (P.BufferSpec("alpha", g.shape[1], g.shape[0], "u8", "Y", "srgb"), g)}, {"model": "instant"})


def endpoint(base: str, transport: str, name: str) -> str:
    if transport == "ipc":
        return f"ipc://{base}/{name}.sock"
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


def start_daemon(ep: str, **kw) -> tuple[Daemon, threading.Thread]:
    d = Daemon(ep, token="bench-token", engine=InstantEngine(), **kw)
    ready = threading.Event()
    t = threading.Thread(target=d.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
    t.start()
    assert ready.wait(30)
    return d, t


def round_trips(bare_ep: str, daemon_ep: str, image: np.ndarray, guidance: np.ndarray, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate a bare pyzmq echo and a daemon job of the same bytes (noise hits both alike).

    The bare ROUTER thread answers each request with a header and a 12 MB alpha frame,
    as the daemon does; its DEALER sends the same header and frames the Client sends.
    """
    ctx, server_ctx = zmq.Context.instance(), zmq.Context()  # two I/O threads, as daemon vs client
    router = server_ctx.socket(zmq.ROUTER)
    router.bind(bare_ep)
    reply = np.ascontiguousarray(guidance)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if router.poll(100):
                peer, header, *bufs = router.recv_multipart(copy=False)
                router.send_multipart([peer, header, reply], copy=False)
                del bufs

    echo = threading.Thread(target=serve, daemon=True)
    echo.start()
    si, a = P.buffer_from_array("image", image)
    sg, g = P.buffer_from_array("guidance", guidance, order="Y")
    header = P.encode_header(P.make_header("refine", token="bench-token", params={}, buffers=[si.to_json(), sg.to_json()]))
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(bare_ep)
    d, t = start_daemon(daemon_ep)
    bare, full = [], []
    with Client(daemon_ep, token=d.token, retries=0, connect_timeout=60) as c:
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            dealer.send_multipart([header, a, g], copy=False)
            parts = dealer.recv_multipart(copy=False)
            np.frombuffer(parts[1].buffer, np.uint8)  # the zero-copy view the client makes
            t1 = time.perf_counter()
            r = c.refine(image, guidance)
            t2 = time.perf_counter()
            assert r.alpha.shape == guidance.shape
            if i:  # the first pair includes connection set-up
                bare.append(t1 - t0)
                full.append(t2 - t1)
    stop.set()
    echo.join()
    dealer.close(0)
    router.close(0)
    server_ctx.term()
    d.stop()
    t.join(30)
    return bare, full


def throughput(ep: str, n_clients: int, seconds: float, size: int = 1000) -> float:
    d, t = start_daemon(ep, max_queued=max(32, n_clients * 2))
    image = np.full((size, size, 4), 128, np.uint8)
    guidance = np.full((size, size), 255, np.uint8)
    counts = [0] * n_clients
    start = threading.Barrier(n_clients + 1)
    deadline = [0.0]

    def client(i):
        with Client(ep, token=d.token, retries=0, connect_timeout=60) as c:
            c.ping()
            start.wait()
            while time.perf_counter() < deadline[0]:
                c.refine(image, guidance)
                counts[i] += 1

    ts = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for th in ts:
        th.start()
    deadline[0] = time.perf_counter() + seconds
    start.wait()
    t0 = time.perf_counter()
    for th in ts:
        th.join()
    rate = sum(counts) / (time.perf_counter() - t0)
    d.stop()
    t.join(30)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="mkb-")
    os.environ.setdefault("MATTEKIT_RUNTIME_DIR", f"{base}/rt")
    os.environ.setdefault("MATTEKIT_CONFIG_DIR", f"{base}/cfg")
    os.makedirs(f"{base}/rt", mode=0o700, exist_ok=True)

    h, w = 3000, 4000  # 12 MP
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    guidance = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
    bare, full = round_trips(endpoint(base, args.transport, "bare"), endpoint(base, args.transport, "daemon"), image, guidance, args.repeats)
    mb = (image.nbytes + 2 * guidance.nbytes) / 1e6
    print(f"(a) 12 MP RGBA8 refine round trip, {mb:.0f} MB moved, {args.transport}, median of {args.repeats}:")
    print(f"    bare pyzmq DEALER/ROUTER  {statistics.median(bare) * 1e3:8.1f} ms")
    print(f"    mattekit daemon + Client  {statistics.median(full) * 1e3:8.1f} ms")
    print(f"    daemon overhead ratio     {statistics.median(full) / statistics.median(bare):8.2f}x")
    for n in (1, 16):
        rate = throughput(endpoint(base, args.transport, f"tp{n}"), n, args.seconds)
        print(f"(b) 1 MP jobs/s, fake-fast engine, {n:2d} client(s): {rate:8.1f}")


if __name__ == "__main__":
    main()
