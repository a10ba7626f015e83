"""Soak: a subprocess daemon (classical engine) under mixed load, its RSS and fds measured.

Four client threads loop over valid jobs, invalid requests, cancelled jobs, clients that
vanish mid-job and pings, on loopback only. Resident memory (VmRSS) and open file
descriptors of the daemon process are read after a warm-up and at the end; growth must
stay under ``RSS_GROWTH_KIB`` / ``FD_GROWTH``.

The short version runs by default (``MATTEKIT_SOAK_S``, default 30 s); the 10-minute one
runs with ``pytest -m soak tests/test_soak.py`` (or ``MATTEKIT_SOAK=1``).
"""

from __future__ import annotations

import collections
import os
import threading
import time

import numpy as np
import pytest

from mattekit import protocol as P
from mattekit.client import Client, MatteError, read_token
from test_daemon import composite, to_u8
from test_reliability import dealer, proc_usage, spawn_daemon

#: Bounds on the daemon's growth between the end of warm-up and the end of the run.
RSS_GROWTH_KIB = 40 * 1024
FD_GROWTH = 4


def _worker(endpoint: str, token: str, seed: int, deadline: float, counts: collections.Counter, errors: list) -> None:
    rng = np.random.default_rng(seed)
    img, _, g = composite(48, 56, seed=seed)
    img8, g8 = to_u8(img), to_u8(g)
    bad_nan = img.copy()
    bad_nan[3, 4, 1] = np.nan
    try:
        with Client(endpoint, token=token, retries=0, connect_timeout=60, timeout=120, silence_timeout=60) as c:
            while time.monotonic() < deadline:
                kind = str(rng.choice(["valid", "invalid", "nan", "cancel", "vanish", "ping", "bad_token"], p=[0.35, 0.15, 0.1, 0.15, 0.1, 0.1, 0.05]))
                if kind == "valid":
                    r = c.refine(img8, g8, band_px=6, outputs=["alpha", "foreground"])
                    assert r.alpha.shape == g8.shape and r.foreground.shape == g8.shape + (4,)
                elif kind == "invalid":
                    try:
                        c.refine(img8, g8[:-1], band_px=6)  # guidance of the wrong size
                        raise AssertionError("a bad request was accepted")
                    except MatteError as e:
                        assert e.code == P.E_BAD_PARAMS
                elif kind == "nan":
                    try:
                        c.refine(bad_nan, g, band_px=6)
                        raise AssertionError("NaN was accepted")
                    except MatteError as e:
                        assert e.code == P.E_BAD_VALUES
                elif kind == "cancel":
                    stop = threading.Event()
                    stop.set()
                    try:
                        c.refine(img8, g8, band_px=6, cancel=stop)
                        kind = "cancel_too_late"  # it finished before the cancel arrived
                    except MatteError as e:
                        assert e.code == P.E_CANCELLED
                elif kind == "vanish":
                    s = dealer(endpoint)
                    si, a = P.buffer_from_array("image", img8)
                    sg, gg = P.buffer_from_array("guidance", g8, order="Y")
                    s.send_multipart([P.encode_header(P.make_header("refine", token=token, params={"band_px": 6}, buffers=[si.to_json(), sg.to_json()])), a, gg])
                    s.poll(2000)  # its `queued` arrives, then the client is gone
                    s.close()
                elif kind == "ping":
                    assert c.ping()["pong"] is True
                else:
                    with Client(endpoint, token=token[::-1], retries=0) as bad:
                        try:
                            bad.ping()
                            raise AssertionError("a wrong token was accepted")
                        except MatteError as e:
                            assert e.code == P.E_UNAUTHORIZED
                counts[kind] += 1
    except BaseException as exc:  # reported by the test
        errors.append(repr(exc))


def _wait_idle(c: Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.ping()
        if not r["queued"] and not r["running"]:
            return
        time.sleep(0.1)
    raise AssertionError("daemon never became idle")


def run_soak(endpoint: str, duration_s: float, n_clients: int = 4) -> dict:
    proc = spawn_daemon(endpoint, "classical", keepalive=0.5)
    try:
        token = read_token()
        counts: collections.Counter = collections.Counter()
        errors: list = []
        warmup = max(5.0, duration_s * 0.2)

        def load(seconds, seed0):
            deadline = time.monotonic() + seconds
            ts = [threading.Thread(target=_worker, args=(endpoint, token, seed0 + i, deadline, counts, errors)) for i in range(n_clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(seconds + 300)

        samples: list = []
        done = threading.Event()

        def sample():
            while not done.wait(max(1.0, duration_s / 30)):
                samples.append(proc_usage(proc.pid)[0])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with Client(endpoint, token=token, retries=0) as probe:
            start = proc_usage(proc.pid)
            # Every code path once before the clock starts: lazy imports are not growth.
            img, _, g = composite(48, 56)
            probe.refine(to_u8(img), to_u8(g), band_px=6, outputs=["alpha", "foreground"])
            probe.decontaminate(img, g)
            load(warmup, 0)
            _wait_idle(probe)
            warm = proc_usage(proc.pid)
            load(duration_s - warmup, 100)
            _wait_idle(probe)
            end = proc_usage(proc.pid)
        done.set()
        return {"start": start, "warm": warm, "end": end, "counts": dict(counts), "errors": errors, "alive": proc.poll() is None, "rss_samples": samples}
    finally:
        proc.terminate()
        proc.wait(30)


def _check(report: dict) -> None:
    (rss_s, fd_s), (rss_w, fd_w), (rss_e, fd_e) = report["start"], report["warm"], report["end"]
    print(
        f"\nsoak: {sum(report['counts'].values())} requests {report['counts']}; daemon RSS KiB start {rss_s} "
        f"after warm-up {rss_w} end {rss_e} (+{rss_e - rss_w}); fds {fd_s} / {fd_w} / {fd_e}; RSS samples {report['rss_samples']}"
    )
    assert not report["errors"], report["errors"][:5]
    assert report["alive"]
    for kind in ("valid", "invalid", "nan", "ping"):
        assert report["counts"].get(kind, 0) > 0, kind
    assert rss_e - rss_w < RSS_GROWTH_KIB, f"RSS grew by {rss_e - rss_w} KiB after warm-up"
    assert fd_e - fd_w <= FD_GROWTH, f"open fds grew from {fd_w} to {fd_e}"


@pytest.mark.slow
def test_soak_short(mk_env):
    _check(run_soak(f"ipc://{mk_env}/rt/s.sock", float(os.environ.get("MATTEKIT_SOAK_S", "30"))))


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_10_minutes(mk_env, request):
    if "soak" not in (request.config.getoption("markexpr") or "") and not os.environ.get("MATTEKIT_SOAK"):
        pytest.skip("the 10-minute soak is opt-in: pytest -m soak tests/test_soak.py")
    _check(run_soak(f"ipc://{mk_env}/rt/s.sock", 600.0))
