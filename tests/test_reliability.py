"""The daemon under load and faults: many clients, fairness, limits, cancellation, crashes.

Fake engines (``FakeEngine``) stand in for the matting pipeline where timing matters:
they sleep in small steps and call ``progress`` between steps, as the real one does.
Run as a script, this file serves a daemon in a subprocess (for kill -9 tests and the
soak): ``python tests/test_reliability.py ENDPOINT {slow,fast,classical} [KEEPALIVE_S]``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # subprocess daemon: no conftest to set the path
    sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "tests")]

from mattekit import protocol as P  # noqa: E402
from mattekit.daemon import Cancelled  # noqa: E402
from mattekit.engine import EngineOutput  # noqa: E402


class FakeEngine:
    """Engine stand-in: alpha = the image's first channel, after ``steps`` sleeps of ``step_s``.

    ``params["model"]`` picks a fault: "memory" (MemoryError), "raise" (RuntimeError),
    "cuda_oom" (CUDA out of memory unless device is "cpu"), "no_model" (ProtocolError),
    "hold" (allocates ``hold_bytes`` and keeps working until cancelled).
    """

    def __init__(self, steps: int = 0, step_s: float = 0.0, devices=("cpu",), hold_bytes: int = 8 << 20):
        self.steps, self.step_s, self.devices, self.hold_bytes = steps, step_s, list(devices), hold_bytes
        self.order: list[int] = []  # tag (image[0, 0, 0]) of each job, in run order
        self.calls: list[dict] = []
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.refs: list[weakref.ref] = []  # to every array a job saw or made

    def capabilities(self):
        return {"models": {"trimap_free": [], "guided": ["fake"], "foreground": []}, "devices": self.devices}

    def run(self, op, params, inputs, specs, progress):
        image = inputs["image"]
        self.order.append(int(image[0, 0, 0]))
        self.calls.append(dict(params))
        self.refs += [weakref.ref(a) for a in inputs.values()]
        model = params["model"]
        if model == "memory":
            raise MemoryError()
        if model == "raise":
            raise RuntimeError("injected failure")
        if model == "no_model":
            raise P.ProtocolError(P.E_NO_MODEL, "no such model")
        if model == "cuda_oom" and params["device"] != "cpu":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        steps = self.steps
        work = None
        if model == "hold":
            work = np.ones(self.hold_bytes // 4, np.float32)
            self.refs.append(weakref.ref(work))
            steps = 100_000
        self.started.set()
        try:
            for i in range(steps):
                progress("work", i / max(steps, 1))
                time.sleep(self.step_s)
        except Cancelled:
            self.cancelled.set()
            raise
        alpha = np.ascontiguousarray(image[..., 0])
        h, w = alpha.shape
        return EngineOutput({"alpha": (P.BufferSpec("alpha", w, h, "u8", "Y", "srgb"), alpha)}, {"model": model})


def tagged_image(tag: int, h: int = 16, w: int = 16) -> np.ndarray:
    img = np.full((h, w, 4), 255, np.uint8)
    img[..., 0] = ((np.arange(w)[None, :] * 7 + tag) % 256).astype(np.uint8)
    img[0, 0, 0] = tag
    return img


def job_frames(token: str, tag: int, *, id: str | None = None, model: str = "fake", h: int = 16, w: int = 16, **params):
    img = tagged_image(tag, h, w)
    si, a = P.buffer_from_array("image", img)
    sg, g = P.buffer_from_array("guidance", np.zeros((h, w), np.uint8), order="Y")
    header = P.make_header("refine", id=id, token=token, params={"model": model, **params}, buffers=[si.to_json(), sg.to_json()])
    return header["id"], [P.encode_header(header), a, g]


def dealer(endpoint: str):
    import zmq

    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def recv(sock, timeout_ms: int = 30_000) -> tuple[dict, list]:
    assert sock.poll(timeout_ms), "no reply"
    parts = sock.recv_multipart()
    return json.loads(parts[0]), parts[1:]


def final_replies(sock, ids, timeout_ms: int = 60_000) -> dict[str, dict]:
    """Read until every id in ``ids`` got its result or error; return them by id."""
    got: dict[str, dict] = {}
    while set(ids) - set(got):
        h, _ = recv(sock, timeout_ms)
        if h["op"] in ("result", "error") and h["id"] in ids:
            got[h["id"]] = h
    return got


# ---------------------------------------------------------------- subprocess daemon


def serve_main(argv: list[str]) -> None:
    import logging

    from mattekit.daemon import Daemon
    from mattekit.engine import Engine

    logging.basicConfig(level=logging.WARNING)
    endpoint, kind = argv[0], argv[1]
    keepalive = float(argv[2]) if len(argv) > 2 else 2.0
    engine = {"slow": lambda: FakeEngine(steps=100_000, step_s=0.02), "fast": lambda: FakeEngine(), "classical": lambda: Engine(learned=False)}[kind]()
    d = Daemon(endpoint, engine=engine, keepalive_s=keepalive)
    d.serve(ready=lambda: print("ready", flush=True))


def spawn_daemon(endpoint: str, kind: str, keepalive: float = 2.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, __file__, endpoint, kind, str(keepalive)], env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"daemon did not start (rc={proc.poll()})"
    return proc


def proc_usage(pid: int) -> tuple[int, int]:
    """(resident set in KiB, open file descriptors) of a process, from /proc."""
    rss = next(int(l.split()[1]) for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


if __name__ == "__main__":
    serve_main(sys.argv[1:])
    sys.exit(0)

import pytest  # noqa: E402

from mattekit.client import Client, DaemonUnavailable, MatteError  # noqa: E402
from test_daemon import composite, to_u8  # noqa: E402


# ---------------------------------------------------------------- concurrency


def test_16_clients_at_once_each_get_their_own_results(start_daemon):
    from mattekit.engine import Engine

    d = start_daemon(engine=Engine(learned=False))
    n, jobs_each = 16, 2
    direct = Engine(learned=False)
    inputs = {}
    for i in range(n):  # a different subject position per client
        img, _, g = composite(40, 48, seed=i)
        inputs[i] = (to_u8(np.roll(img, i, axis=1)), to_u8(np.roll(g, i, axis=1)))
    results: dict[int, list] = {}
    errors = []
    barrier = threading.Barrier(n)

    def client(i):
        try:
            with Client(d.endpoint, token=d.token, connect_timeout=60, retries=0, timeout=300) as c:
                barrier.wait()
                img, g = inputs[i]
                results[i] = [c.refine(img, g, band_px=6, outputs=["alpha", "foreground"]) for _ in range(jobs_each)]
        except Exception as exc:  # reported below: threads must not swallow failures
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results) == n
    for i, (img, g) in inputs.items():
        si, a = P.buffer_from_array("image", img)
        sg, gg = P.buffer_from_array("guidance", g, order="Y")
        params = P.check_job("refine", {"band_px": 6, "outputs": ["alpha", "foreground"]}, [si, sg])
        want = direct.run("refine", params, {"image": a[..., :], "guidance": gg}, [si, sg], lambda *a, **k: None)
        for r in results[i]:
            assert np.array_equal(r.alpha, want.buffers["alpha"][1].reshape(r.alpha.shape))
            assert np.array_equal(r.foreground, want.buffers["foreground"][1])
    # The inputs differ, so a result delivered to the wrong client would show.
    assert len({results[i][0].alpha.tobytes() for i in range(n)}) == n
    assert not d.jobs and len(d.scheduler) == 0


def test_round_robin_a_busy_client_does_not_starve_another(start_daemon):
    eng = FakeEngine(steps=10, step_s=0.02)
    d = start_daemon(engine=eng)
    a, b = dealer(d.endpoint), dealer(d.endpoint)
    try:
        ids_a = []
        for k in range(6):
            jid, frames = job_frames(d.token, tag=10 + k)
            a.send_multipart(frames)
            ids_a.append(jid)
        assert eng.started.wait(30)
        jid_b, frames = job_frames(d.token, tag=99)
        b.send_multipart(frames)
        assert final_replies(b, [jid_b])[jid_b]["op"] == "result"
        replies = final_replies(a, ids_a)
        assert all(r["op"] == "result" for r in replies.values())
        # A's first job was running when B's arrived: B's goes next, not after A's other five.
        assert eng.order[:2] == [10, 99] and eng.order[2:] == [11, 12, 13, 14, 15]
    finally:
        a.close()
        b.close()


def test_full_queue_answers_busy_and_busy_jobs_never_run(start_daemon):
    eng = FakeEngine(steps=5, step_s=0.02)
    d = start_daemon(engine=eng, max_queued=2)
    s = dealer(d.endpoint)
    try:
        ids = []
        for k in range(6):
            jid, frames = job_frames(d.token, tag=k)
            s.send_multipart(frames)
            ids.append(jid)
        replies = final_replies(s, ids)
        busy = [i for i, r in replies.items() if r["op"] == "error" and r["code"] == P.E_BUSY]
        done = [i for i, r in replies.items() if r["op"] == "result"]
        assert len(busy) >= 3 and len(busy) + len(done) == 6
        assert len(eng.order) == len(done)
        assert "waiting" in replies[busy[0]]["message"]
    finally:
        s.close()


def test_per_job_memory_limit_refuses_before_the_engine_runs(start_daemon):
    from mattekit import config
    from mattekit.daemon import estimate_job_bytes

    eng = FakeEngine()
    d = start_daemon(engine=eng, max_job_bytes=1 << 20)
    with Client(d.endpoint, token=d.token, retries=0, timeout=60) as c:
        small = tagged_image(1, 64, 64)
        assert c.refine(small, np.zeros((64, 64), np.uint8), model="x").alpha.shape == (64, 64)
        big = tagged_image(2, 256, 256)
        with pytest.raises(MatteError) as e:
            c.refine(big, np.zeros((256, 256), np.uint8), model="x")
    assert e.value.code == P.E_TOO_LARGE and "GiB" in e.value.message and "limit" in e.value.message
    assert eng.order == [1]
    # The default admits the largest image the protocol allows only if memory for it is configured.
    spec = P.BufferSpec("image", 4000, 3000, "u8", "RGBA")
    assert estimate_job_bytes([spec]) == 12_000_000 * (4 + config.JOB_BYTES_PER_PIXEL)
    assert estimate_job_bytes([spec]) < config.MAX_JOB_BYTES


# ---------------------------------------------------------------- cancellation and gone clients


def test_cancelling_a_running_or_queued_job_frees_its_memory(start_daemon):
    eng = FakeEngine(step_s=0.01)
    d = start_daemon(engine=eng)
    s = dealer(d.endpoint)
    try:
        run_id, frames = job_frames(d.token, tag=1, model="hold", h=256, w=256)
        s.send_multipart(frames)
        q_id, frames = job_frames(d.token, tag=2, h=256, w=256)
        s.send_multipart(frames)
        del frames
        assert eng.started.wait(30)
        deadline = time.monotonic() + 30
        while len(d.jobs) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        jobs = [weakref.ref(j) for j in list(d.jobs.values())]
        bufs = [weakref.ref(f) for j in list(d.jobs.values()) for f in j.frames]
        assert len(jobs) == 2 and len(bufs) == 4 and eng.refs
        for target in (q_id, run_id):  # queued first: it must never start
            s.send_multipart([P.encode_header(P.make_header("cancel", token=d.token, target=target))])
        replies = final_replies(s, [run_id, q_id])
        assert {r.get("code") for r in replies.values()} == {P.E_CANCELLED}, [r.get("message") for r in replies.values()]
        assert eng.cancelled.is_set() and eng.order == [1]
        gc.collect()
        alive = [r for r in jobs + bufs + eng.refs if r() is not None]
        assert not alive, f"{len(alive)} job objects, frames or arrays outlived the cancel"
    finally:
        s.close()


def running_and_queued(d, eng, s) -> tuple[str, str]:
    """Send two jobs on ``s``; return (running id, queued id) once the first has started."""
    run_id, frames = job_frames(d.token, tag=1)
    s.send_multipart(frames)
    queued_id, frames = job_frames(d.token, tag=2)
    s.send_multipart(frames)
    assert eng.started.wait(30)
    deadline = time.monotonic() + 30
    while len(d.jobs) < 2 and time.monotonic() < deadline:  # the daemon has read the second one too
        time.sleep(0.005)
    assert len(d.jobs) == 2
    return run_id, queued_id


def test_a_client_that_disconnects_mid_job_stops_its_work(start_daemon):
    eng = FakeEngine(steps=100_000, step_s=0.02)
    d = start_daemon(engine=eng, keepalive_s=0.2)
    s, other = dealer(d.endpoint), dealer(d.endpoint)
    try:
        running_and_queued(d, eng, s)
        s.close()  # gone without a word: running and queued work is now pointless
        assert eng.cancelled.wait(30), "the running job was not cancelled after its client left"
        deadline = time.monotonic() + 30
        while d.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not d.jobs and len(d.scheduler) == 0 and eng.order == [1]
        assert d.stats["peers_gone"] >= 1
        # ... and the daemon serves the next client.
        jid, frames = job_frames(d.token, tag=3, model="x")
        eng.steps = 0
        other.send_multipart(frames)
        assert final_replies(other, [jid])[jid]["op"] == "result"
    finally:
        other.close()


def test_a_failing_progress_callback_cancels_the_job_on_the_daemon(start_daemon):
    eng = FakeEngine(steps=100_000, step_s=0.02)
    d = start_daemon(engine=eng)

    def progress(stage, frac, h):
        if stage == "work":
            raise KeyError("the editor's callback broke")

    with Client(d.endpoint, token=d.token, retries=0) as c:
        with pytest.raises(KeyError):
            c.refine(tagged_image(1), np.zeros((16, 16), np.uint8), model="x", progress=progress)
        assert eng.cancelled.wait(30), "the job kept running after the client gave up on it"
        assert c.ping()["pong"] is True


def test_keepalives_reach_a_client_while_the_engine_is_silent(start_daemon):
    eng = FakeEngine(steps=1, step_s=1.5)  # one progress call, then a long silent step
    d = start_daemon(engine=eng, keepalive_s=0.1)
    with Client(d.endpoint, token=d.token, retries=0, silence_timeout=1.0) as c:
        seen = []
        r = c.refine(tagged_image(5), np.zeros((16, 16), np.uint8), model="x", progress=lambda s, f, h: seen.append(h))
    assert r.alpha[0, 0] == 5
    assert not any(h.get("keepalive") for h in seen), "keep-alives must not reach the progress callback"
    assert d.stats["keepalives"] >= 3


# ---------------------------------------------------------------- faults


def test_engine_faults_cost_one_job_and_the_daemon_keeps_serving(start_daemon):
    eng = FakeEngine(devices=("cpu", "cuda"))
    d = start_daemon(engine=eng)
    img, g = tagged_image(7), np.zeros((16, 16), np.uint8)
    faults = {"memory": P.E_OUT_OF_MEMORY, "raise": P.E_INTERNAL, "no_model": P.E_NO_MODEL}
    with Client(d.endpoint, token=d.token, retries=0, timeout=60) as c:
        for model, code in faults.items():
            with pytest.raises(MatteError) as e:
                c.refine(img, g, model=model)
            assert e.value.code == code
            assert model != "raise" or "injected failure" in e.value.message
            assert c.refine(img, g, model="ok").alpha[0, 0] == 7
        # CUDA out of memory with device auto: once more on the CPU, and the result says so.
        stages = []
        r = c.refine(img, g, model="cuda_oom", progress=lambda s, f, h: stages.append(h))
        assert r.alpha[0, 0] == 7 and r.header["fallback"].startswith("cpu")
        assert any(h["stage"] == "retry" and h.get("fallback") == "cpu" for h in stages)
        assert [call["device"] for call in eng.calls[-2:]] == ["auto", "cpu"]
        # ... but an explicit device is respected: no silent switch.
        with pytest.raises(MatteError) as e:
            c.refine(img, g, model="cuda_oom", device="cuda")
        assert e.value.code == P.E_OUT_OF_MEMORY and "CUDA" in e.value.message
        assert c.ping()["pong"] is True
    assert d.stats["out_of_memory"] == 2 and d.stats["cpu_fallbacks"] == 1


def test_engine_without_cpu_gets_out_of_memory_not_a_retry(start_daemon):
    eng = FakeEngine(devices=("cuda",))
    d = start_daemon(engine=eng)
    with Client(d.endpoint, token=d.token, retries=0, timeout=60) as c:
        with pytest.raises(MatteError) as e:
            c.refine(tagged_image(1), np.zeros((16, 16), np.uint8), model="cuda_oom")
    assert e.value.code == P.E_OUT_OF_MEMORY and len(eng.calls) == 1


def test_kill_9_mid_job_is_reported_and_the_daemon_restarts_cleanly(mk_env):
    endpoint = f"ipc://{mk_env}/rt/k.sock"
    proc = spawn_daemon(endpoint, "slow", keepalive=0.2)
    try:
        from mattekit.client import read_token

        # Silence alone would take 600 s here: only the closed connection can report the death in time.
        with Client(endpoint, token=read_token(), retries=0, silence_timeout=600, timeout=600) as c:
            killed = []

            def progress(stage, frac, h):
                if stage == "work" and not killed:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.wait(30))

            with pytest.raises(DaemonUnavailable) as e:
                c.refine(tagged_image(1), np.zeros((16, 16), np.uint8), model="x", progress=progress)
        assert killed == [-signal.SIGKILL]
        assert e.value.code == P.E_UNAVAILABLE and "closed the connection" in e.value.message and "mattekit serve" in e.value.message
        assert Path(endpoint[6:]).exists()  # stale socket left behind by the killed daemon
        # A stale socket fails on the first try, not after connect_timeout x tries of silence.
        with Client(endpoint, token=read_token(), retries=2, connect_timeout=600) as c:
            with pytest.raises(DaemonUnavailable, match="stale socket file"):
                c.ping()
        proc = spawn_daemon(endpoint, "fast")
        with Client(endpoint, token=read_token(), retries=0) as c:
            assert c.ping()["pong"] is True
            assert c.refine(tagged_image(3), np.zeros((16, 16), np.uint8), model="x").alpha[0, 0] == 3
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


class SlowStartEngine(FakeEngine):
    """Its capabilities take until ``release`` is set, as a first torch import does."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def capabilities(self):
        assert self.release.wait(60)
        return super().capabilities()


def test_a_slow_capability_read_never_stalls_the_io_loop(start_daemon):
    eng = SlowStartEngine()
    d = start_daemon(engine=eng)
    s = dealer(d.endpoint)
    try:
        hello = P.make_header("hello", token=d.token)
        ping = P.make_header("ping", token=d.token)
        s.send_multipart([P.encode_header(hello)])
        s.send_multipart([P.encode_header(ping)])
        h, _ = recv(s)
        assert h["id"] == ping["id"] and h["pong"] is True  # answered while the capabilities are being read
        eng.release.set()
        h, _ = recv(s)
        assert h["id"] == hello["id"] and h["models"]["guided"] == ["fake"]
    finally:
        eng.release.set()
        s.close()


def test_a_job_stopped_by_shutdown_is_not_reported_as_a_user_cancel(start_daemon):
    eng = FakeEngine(steps=100_000, step_s=0.02)
    d = start_daemon(engine=eng)
    s = dealer(d.endpoint)
    try:
        jid, queued = running_and_queued(d, eng, s)
        d.stop()  # what SIGTERM does
        replies = final_replies(s, [jid, queued])
        assert {r["code"] for r in replies.values()} == {P.E_SHUTTING_DOWN}, replies
    finally:
        s.close()


def test_the_job_memory_limit_follows_the_machine():
    from mattekit import config
    from mattekit.daemon import estimate_job_bytes

    assert config.max_job_bytes(8 * 2**30) == 4 * 2**30
    assert config.max_job_bytes(256 * 2**30) == config.max_job_bytes(None) == 16 * 2**30
    ram = config.physical_memory_bytes()
    assert ram and config.MAX_JOB_BYTES <= ram // 2
    # On a machine with less than ~27 GB, the largest accepted image is refused for its memory.
    biggest = P.BufferSpec("image", 20_000, config.MAX_PIXELS // 20_000, "u8", "RGBA")
    assert (estimate_job_bytes([biggest]) > config.MAX_JOB_BYTES) == (min(ram // 2, 16 * 2**30) < estimate_job_bytes([biggest]))


def test_every_stage_of_a_job_reports_progress_and_a_cancel_ends_it_in_that_stage(start_daemon, monkeypatch):
    """#22.6: a huge job must show progress at least every second and stop soon after a cancel, so
    each full-frame pass runs in strips with a checkpoint after each. Small strips make a small
    job show them all: decode, trimap, alpha, foreground and encode each report several times."""
    from mattekit import config
    from mattekit.client import Client, MatteError
    from mattekit.engine import Engine

    class HeldEngine(Engine):
        """With `hold`, the foreground stage waits, after its first report, until the client's cancel
        has reached the daemon, then runs on: its own checkpoints must stop it (no race with a
        job small enough to finish before the cancel arrives)."""

        hold = False
        daemon = None

        def foreground(self, wire, image, alpha, layer_alpha, amount, ispec, method, params, progress):
            waited = [not self.hold]

            def report(stage, frac, **kw):
                progress(stage, frac, **kw)
                if stage == "foreground" and not waited[0]:
                    waited[0] = True
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not any(j.cancel.is_set() for j in list(self.daemon.jobs.values())):
                        time.sleep(0.005)

            return super().foreground(wire, image, alpha, layer_alpha, amount, ispec, method, params, report)

    monkeypatch.setattr(config, "STRIP_PX", 4000)  # 10 rows of 400 px
    from mattekit import foreground

    monkeypatch.setattr(foreground, "PROGRESS_INTERVAL_S", 0.0)  # the colour estimate reports after each of its passes
    eng = HeldEngine(learned=False)
    d = start_daemon(engine=eng)
    eng.daemon = d
    c = Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=300)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    disc = (np.hypot(yy - 150, xx - 200) < 90).astype(np.uint8) * 255
    img = np.dstack([rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), np.full((300, 400), 255, np.uint8)])
    img[disc > 0, :3] //= 2
    seen: list[tuple[str, float]] = []
    try:
        c.refine(img, disc, band_px=12, outputs=["alpha", "foreground"], order="RGBA",
                 progress=lambda stage, frac, header: seen.append((stage, frac)))
        stages = [s for s, _ in seen]
        for stage in ("decode", "trimap", "alpha", "foreground", "encode"):
            assert stages.count(stage) >= 3, (stage, stages.count(stage))
        fracs = [f for _, f in seen]
        assert fracs == sorted(fracs)
        # Cancel as soon as the foreground stage starts: the job ends there, nothing is encoded.
        eng.hold = True
        after: list[str] = []

        def cancel_in_foreground(stage, frac, header):
            after.append(stage)
            return stage != "foreground"

        with pytest.raises(MatteError) as e:
            c.refine(img, disc, band_px=12, outputs=["alpha", "foreground"], order="RGBA", progress=cancel_in_foreground)
        assert e.value.code == P.E_CANCELLED
        assert "encode" not in after[after.index("foreground"):]
    finally:
        c.close()
