"""Huge jobs through a real daemon: how often progress arrives and how soon a cancel ends the job.

    PYTHONPATH=backend:training python -m bench.scale [--mp 100] [--op refine]

One 3:2 RGBA8 photo of `--mp` megapixels with a soft-edged subject (and, for refine, a lasso
20 px off) goes to an in-process daemon over ipc, outputs alpha and foreground:
1. run to the end: the longest gap between two progress messages (keep-alives excluded), per stage;
2. run again and cancel at `--cancel-at` of the first run's time: seconds from the cancel to the
   daemon's `cancelled` reply.
The goal (#22): progress at least every second and a cancel answered within ~1 s, at any size.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import threading
import time
from typing import Any

import numpy as np

from bench.common import machine


def photo(megapixels: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGBA8 (H, W, 4), lasso guidance u8 (H, W)): a wavy soft-edged disc over grain, built in strips."""
    h = int(round(math.sqrt(megapixels * 1e6 / 1.5)))
    w = int(round(h * 1.5))
    rng = np.random.default_rng(seed)
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., 3] = 255
    guidance = np.empty((h, w), np.uint8)
    xx = np.arange(w, dtype=np.float32)[None, :]
    r0, soft = 0.35 * h, max(4.0, h / 400)
    for y0 in range(0, h, 512):
        yy = np.arange(y0, min(h, y0 + 512), dtype=np.float32)[:, None]
        r = np.hypot(yy - h / 2, xx - w / 2)
        edge = r0 + 0.03 * h * np.sin(7 * np.arctan2(yy - h / 2, xx - w / 2))
        a = np.clip((edge - r) / soft + 0.5, 0, 1)
        fg = np.stack([0.8 + 0 * xx + 0 * yy, 0.4 + 0.1 * np.sin(xx / 50) + 0 * yy, 0.2 + 0.1 * np.cos(yy / 40) + 0 * xx], -1)
        bg = 0.3 + 0.3 * rng.random(fg.shape, dtype=np.float32)
        rgba[y0 : y0 + 512, :, :3] = np.clip((a[..., None] * fg + (1 - a[..., None]) * bg) * 255 + 0.5, 0, 255)
        guidance[y0 : y0 + 512] = np.where(r < edge + 20, 255, 0)
    return rgba, guidance


def run(op: str, mp: float, cancel_at: float) -> dict[str, Any]:
    from mattekit.client import Client, MatteError
    from mattekit.daemon import Daemon
    from mattekit.engine import Engine

    tmp = tempfile.mkdtemp(prefix="mkscale-")
    d = Daemon(f"ipc://{tmp}/d.sock", engine=Engine())
    ready = threading.Event()
    th = threading.Thread(target=d.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
    th.start()
    assert ready.wait(60)
    t0 = time.perf_counter()
    rgba, guidance = photo(mp)
    print(f"[{rgba.shape[1]}x{rgba.shape[0]} photo in {time.perf_counter() - t0:.1f} s]", flush=True)
    inputs: dict[str, Any] = {"image": (rgba, "RGBA", "srgb")}
    if op == "refine":
        inputs["guidance"] = (guidance, "Y", "srgb")
    # Refine: the classical solve; Select Subject: the installed subject model (`auto`), then the band.
    params = {"outputs": ["alpha", "foreground"], "model": "classical" if op == "refine" else "auto"}
    c = Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=3600)
    try:
        events: list[tuple[float, str]] = []

        def progress(stage: str, frac: float, header: dict) -> None:
            events.append((time.perf_counter(), f"{stage} {frac:.3f}"))

        t0 = time.perf_counter()
        res = c.run_job(op, inputs, params, progress=progress)
        total = time.perf_counter() - t0
        times = [t0] + [t for t, _ in events] + [t0 + total]
        gaps = np.diff(times)
        worst = int(np.argmax(gaps))
        stage_of_worst = events[worst - 1][1] if worst > 0 else "(start)"
        row = {"op": op, "MP": round(rgba.shape[0] * rgba.shape[1] / 1e6, 1), "total s": round(total, 1),
               "model": res.model, "progress messages": len(events), "longest gap s": round(float(gaps.max()), 2),
               "gap after": stage_of_worst, "gaps over 1 s": [(events[i - 1][1] if i else "(start)", round(float(g), 2)) for i, g in enumerate(gaps) if g > 1],
               "timings": res.header.get("timings")}
        del res
        cancel = threading.Event()
        fired: list[float] = []

        def fire() -> None:
            time.sleep(cancel_at * total)
            fired.append(time.perf_counter())
            cancel.set()

        threading.Thread(target=fire, daemon=True).start()
        try:
            c.run_job(op, inputs, params, cancel=cancel)
            row["cancel s"] = None  # finished before the cancel
        except MatteError as e:
            row["cancel s"] = round(time.perf_counter() - fired[0], 2) if fired else None
            row["cancel reply"] = e.code
        return row
    finally:
        c.close()
        d.stop()
        th.join(60)


def main(argv: list[str] | None = None) -> int:
    from bench import common  # noqa: F401  (sys.path)

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mp", type=float, default=100)
    ap.add_argument("--op", choices=["refine", "select_subject"], default="refine")
    ap.add_argument("--cancel-at", type=float, default=0.6, help="fraction of the full run's time")
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    print(run(args.op, args.mp, args.cancel_at), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
