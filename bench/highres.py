"""High resolution and speed: decontaminate, refine and select subject on 1-24 MP synthetic composites.

    PYTHONPATH=backend:training python -m bench.highres [--sizes 1 12 24] [--write-docs]

Everything runs in ONE process, ours and the baseline interleaved, so ratios hold on a loaded machine.
Composites have exact alpha and foreground: a procedural subject (`make_foreground`) made at ~1.5 MP
is upscaled smoothly (alpha and premultiplied colour), then 1 px anti-aliased strands are drawn at full
resolution, and I = αF + (1 − α)B is composed at full resolution.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from bench.common import ROOT, PeakRSS, machine, measure, table

MB = 2**20


# --------------------------------------------------------------------------- data


def big_composite(megapixels: float, seed: int = 0, base_mp: float = 1.5, strands: int = 400) -> dict[str, np.ndarray]:
    """A 3:2 composite of `megapixels` MP with exact alpha and foreground.

    Returns {"image", "foreground", "alpha"}: float32 (H, W, 3) / (H, W) in [0, 1].
    """
    from mattekit_training.synthetic import make_foreground, make_texture

    rng = np.random.default_rng(seed)
    h = int(round(math.sqrt(megapixels * 1e6 / 1.5)))
    w = int(round(h * 1.5))
    bh = int(round(math.sqrt(min(base_mp, megapixels) * 1e6 / 1.5)))
    bw = int(round(bh * 1.5))
    fg0, a0 = make_foreground(rng, (bh, bw))
    # Upscale alpha and *premultiplied* colour alike, so F = pre / alpha stays a valid colour.
    alpha = np.clip(cv2.resize(a0, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
    pre = cv2.resize(fg0 * a0[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
    f_body = cv2.resize(fg0, (w, h), interpolation=cv2.INTER_LINEAR)
    del fg0
    # Fine strands at full resolution: 1 px anti-aliased polylines growing outwards from the edge.
    canvas = np.zeros((h, w), np.uint8)
    ys, xs = np.nonzero((a0 > 0.3) & (a0 < 0.7))
    if len(ys):
        gy, gx = np.gradient(cv2.GaussianBlur(a0, (0, 0), 3))
        sy, sx = h / bh, w / bw
        for j in rng.integers(0, len(ys), strands):
            y, x = ys[j], xs[j]
            d = -np.array([gy[y, x], gx[y, x]])
            d = d / (np.linalg.norm(d) + 1e-9)
            p = np.array([y * sy, x * sx])
            pts = [p.copy()]
            for _ in range(int(rng.integers(8, 30))):
                ang = rng.normal(0, 0.25)
                d = np.array([d[0] * math.cos(ang) - d[1] * math.sin(ang), d[0] * math.sin(ang) + d[1] * math.cos(ang)])
                p = p + d * rng.uniform(5, 15) * max(1.0, sy / 2)
                pts.append(p.copy())
            cv2.polylines(canvas, [np.array(pts)[:, ::-1].round().astype(np.int32)], False, 255, 1, cv2.LINE_AA)
    s = canvas.astype(np.float32) / 255
    del canvas
    tint = np.clip(f_body.reshape(-1, 3)[:: max(1, h * w // 10000)].mean(0) * 0.7, 0, 1).astype(np.float32)
    pre = s[..., None] * tint + (1 - s[..., None]) * pre
    alpha = s + (1 - s) * alpha
    del s
    fg = np.where((alpha > 1e-4)[..., None], pre / np.maximum(alpha, 1e-4)[..., None], f_body)
    del pre, f_body
    fg = np.clip(fg, 0, 1).astype(np.float32)
    alpha = np.where(alpha < 1e-4, 0, np.where(alpha > 1 - 1e-4, 1, alpha)).astype(np.float32)
    bg = cv2.resize(make_texture(rng, (bh, bw)), (w, h), interpolation=cv2.INTER_LINEAR)
    bg += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(0.02)  # full-resolution grain
    np.clip(bg, 0, 1, out=bg)
    image = alpha[..., None] * fg
    image += (1 - alpha[..., None]) * bg
    del bg
    return {"image": image, "foreground": fg, "alpha": alpha}


def fg_mse(pred: np.ndarray, gt: np.ndarray, alpha: np.ndarray) -> float:
    """Mean squared colour error over pixels with alpha > 0 (MG Matting's foreground MSE), chunked (no float64 frame)."""
    tot, n = 0.0, 0
    for y in range(0, alpha.shape[0], 512):
        sel = alpha[y : y + 512] > 0
        d = (pred[y : y + 512][sel] - gt[y : y + 512][sel]).astype(np.float64)
        tot += float((d * d).sum())
        n += d.size
    return tot / max(n, 1)


# --------------------------------------------------------------------------- (a) decontaminate


def bench_foreground(data: dict[str, np.ndarray], runs: int = 3, full_frame: bool = True) -> dict[str, Any]:
    """Band-limited estimator (ours, pymatting's iteration counts) vs pymatting's full-frame
    estimate_foreground_ml, interleaved `runs` times; plus the daemon's setting (more iterations).

    Times are the best of the runs (the least disturbed by other load); the ratio of medians is given too.
    """
    from pymatting import estimate_foreground_ml

    from mattekit import foreground as fgmod

    image, alpha, gt = data["image"], data["alpha"], data["foreground"]
    fgmod.estimate_foreground(image[:64, :64], np.full((64, 64), 0.5, np.float32))  # compile / load the kernels first
    estimate_foreground_ml(image[:64, :64], alpha[:64, :64])
    ours_t, ours_m, full_t, full_m, daemon_t = [], [], [], [], []
    est = full_err = daemon = None
    for _ in range(runs):
        est, dt, mem = measure(lambda: fgmod.estimate_foreground(image, alpha))
        ours_t.append(dt)
        ours_m.append(mem)
        # What the daemon runs: the same solver with config.FOREGROUND_ITERATIONS per level.
        daemon, dt, _ = measure(lambda: fgmod.classical_foreground(image, alpha))
        daemon_t.append(dt)
        if full_frame:
            full, dt, mem = measure(lambda: estimate_foreground_ml(image, alpha))
            full_t.append(dt)
            full_m.append(mem)
            full_err = fg_mse(full, gt, alpha)
            del full
            gc.collect()
    row = {
        "MP": round(alpha.size / 1e6, 1),
        "soft %": 100 * float(fgmod.soft_region(alpha).mean()),
        "ours s": min(ours_t),
        "ours MB": max(ours_m) / MB,
        "ours F-MSE": fg_mse(est, gt, alpha),
        "daemon s": min(daemon_t),
        "daemon F-MSE": fg_mse(daemon, gt, alpha),
        "no-op F-MSE": fg_mse(image, gt, alpha),
    }
    if full_frame:
        row.update({"full s": min(full_t), "full MB": max(full_m) / MB, "full F-MSE": full_err,
                    "speed-up": min(full_t) / min(ours_t),
                    "speed-up (medians)": statistics.median(full_t) / statistics.median(ours_t)})
    return row


# --------------------------------------------------------------------------- (b) refine selection


def rough_selection(alpha: np.ndarray, dilate_px: int) -> np.ndarray:
    """A quick lasso: the true mask (alpha > 0.5) dilated by `dilate_px`, float32 {0, 1}."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
    return cv2.dilate((alpha > 0.5).astype(np.uint8), k).astype(np.float32)


def _noop(*args: Any, **kwargs: Any) -> None:
    pass


def bench_refine(data: dict[str, np.ndarray], dilate_px: int = 20, baseline: bool = True) -> dict[str, Any]:
    """Engine.refine (today's path) vs the tiled closed form it replaced, in the same band and process.

    SAD is given over the whole frame and over the band alone (the only pixels either changes;
    the composite's strands reach far past any band, which dominates the whole-frame figure).
    """
    from mattekit import refine
    from mattekit.engine import Engine
    from mattekit_training import metrics

    from bench.refine_baseline import tiled_closed_form

    image, gt = data["image"], data["alpha"]
    guidance = rough_selection(gt, dilate_px)
    eng = Engine()
    # The band must hold the true edge: a lasso `dilate_px` off needs a band of > 2 * dilate_px.
    band_px = max(refine.default_band_px(*gt.shape), 3 * dilate_px)
    params = {"model": "auto", "band_px": band_px, "device": "cpu"}
    method = eng.choose_method("guided", "auto")
    trimap = refine.guidance_to_trimap(guidance, band_px)
    band = refine.unknown_region(trimap)
    refine.closed_form_in_band(image[:256, :256].copy(), trimap[:256, :256].copy())  # load the numba kernels first
    (ours, _), t_ours, m_ours = measure(lambda: eng.refine(image, guidance, params, _noop))
    row: dict[str, Any] = {
        "MP": round(gt.size / 1e6, 1), "method": method, "band px": band_px, "ours s": t_ours, "ours MB": m_ours / MB,
        "ours SAD/1000": metrics.sad(ours, gt) / 1000, "ours band SAD/1000": metrics.sad(ours, gt, band) / 1000,
        "lasso band SAD/1000": metrics.sad(guidance, gt, band) / 1000,
    }
    if baseline:
        before, t_before, m_before = measure(lambda: tiled_closed_form(image, trimap, fallback=guidance))
        row.update({"tiled CF s": t_before, "tiled CF MB": m_before / MB, "tiled CF SAD/1000": metrics.sad(before, gt) / 1000,
                    "tiled CF band SAD/1000": metrics.sad(before, gt, band) / 1000, "speed-up": t_before / t_ours})
    return row


# --------------------------------------------------------------------------- (c, d) select subject via a daemon


class _RecordedSubject:
    """Wraps the subject runtime: keeps its last coarse alpha (the naive baseline upsamples the same one).

    With `truth` (no trained subject model installed: a random one runs for its time), the answer is
    the true alpha at the working size instead: a random network's alpha is noise, which would make
    the uncertain band the whole frame.
    """

    def __init__(self, rt: Any, truth: np.ndarray | None) -> None:
        self.rt, self.truth, self.coarse = rt, truth, None

    def predict(self, image: np.ndarray, **kw: Any) -> np.ndarray:
        from mattekit import imageops

        out = self.rt.predict(image, **kw)
        if self.truth is not None:
            out = imageops.resize_area(self.truth, out.shape[:2])
        self.coarse = out
        return out


@contextlib.contextmanager
def bench_daemon(tmp: str, engine: Any = None) -> Iterator[Any]:
    """A real daemon on an ipc socket in this process (its own thread) and a Client for it."""
    import threading

    from mattekit.client import Client
    from mattekit.daemon import Daemon
    from mattekit.engine import Engine

    d = Daemon(f"ipc://{tmp}/rt/hr.sock", engine=engine or Engine())
    ready = threading.Event()
    th = threading.Thread(target=d.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
    th.start()
    assert ready.wait(60)
    c = Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=900)
    try:
        yield c
    finally:
        c.close()
        d.stop()
        th.join(30)


def bench_refine_job(data: dict[str, np.ndarray], tmp: str, dilate_px: int = 20, loose: float | None = None) -> dict[str, Any]:
    """Refine Selection end to end through a real daemon: RGB8 photo and lasso in, alpha and foreground out.

    loose: None, a lasso `dilate_px` off the edge in a band that holds it (the band solve alone); or a
    fraction of the short side, a loose lasso that far off in the automatic band (the rough stage finds
    the subject first: its "segment s" and the band solve's "band s" are given apart)."""
    from mattekit.trimap import default_band_px

    h, w = data["alpha"].shape
    if loose is not None:
        dilate_px = int(round(loose * min(h, w)))
    img8 = np.clip(data["image"] * 255 + 0.5, 0, 255).astype(np.uint8)
    lasso = (rough_selection(data["alpha"], dilate_px) * 255).astype(np.uint8)
    # As bench_refine: the band holds the true edge; a loose lasso gets the automatic band.
    band_px = None if loose is not None else max(default_band_px(h, w), 3 * dilate_px)
    params = {"outputs": ["alpha", "foreground"], "band_px": band_px}
    with bench_daemon(tmp) as c:
        warm = np.zeros((64, 96), np.uint8)
        warm[16:48, 24:72] = 255  # a small selection (an empty one is refused)
        c.run_job("refine", {"image": (img8[:64, :96], "RGB", "srgb"), "guidance": (warm, "Y", "srgb")}, params)
        totals = []
        for _ in range(2):  # the first big job also pays for the daemon's first touch of its memory
            t0 = time.perf_counter()
            res = c.run_job("refine", {"image": (img8, "RGB", "srgb"), "guidance": (lasso, "Y", "srgb")}, params)
            totals.append(time.perf_counter() - t0)
    row = {"MP": round(h * w / 1e6, 1), "lasso px off": dilate_px, "model": res.model, "total s": totals[1], "first job s": totals[0],
           **(res.header.get("timings") or {})}
    selection = res.header.get("selection")
    if selection:
        row.update({"read as": selection["read_as"], "segment s": selection["segment_s"],
                    "band s": row.get("alpha_s", 0.0) - selection["segment_s"]})
    if loose is not None:
        truth, got = data["alpha"] >= 0.5, np.asarray(res.alpha).reshape(h, w) >= 128
        row.update({"lasso IoU": float((truth & (lasso >= 128)).sum() / (truth | (lasso >= 128)).sum()),
                    "result IoU": float((truth & got).sum() / (truth | got).sum())})
    return row


def bench_decontaminate_job(data: dict[str, np.ndarray], tmp: str, runs: int = 3) -> dict[str, Any]:
    """Decontaminate end to end through a real daemon: RGB8 photo and 8-bit alpha in, RGBA8 out.
    Times: the first big job of a fresh daemon, then the best of `runs` more (as for the other rows)."""
    img8 = np.clip(data["image"] * 255 + 0.5, 0, 255).astype(np.uint8)
    a8 = np.clip(data["alpha"] * 255 + 0.5, 0, 255).astype(np.uint8)
    with bench_daemon(tmp) as c:
        c.run_job("decontaminate", {"image": (img8[:64, :96], "RGB", "srgb"), "alpha": (a8[:64, :96], "Y", "srgb")}, {"outputs": ["foreground"]})
        totals, stages = [], []
        for _ in range(1 + runs):  # the first big job also pays for the daemon's first touch of its memory
            t0 = time.perf_counter()
            res = c.run_job("decontaminate", {"image": (img8, "RGB", "srgb"), "alpha": (a8, "Y", "srgb")}, {"outputs": ["foreground"]})
            totals.append(time.perf_counter() - t0)
            stages.append((res.header.get("timings") or {}).get("foreground_s"))
    fg = np.asarray(res.foreground[..., :3], np.float32) / 255
    return {"job s": min(totals[1:]), "first job s": totals[0], "job foreground s": min(stages[1:]),
            "job F-MSE": fg_mse(fg, data["foreground"], a8.astype(np.float32) / 255)}


def fetched_data_dir(user_weights: Path, dest: Path) -> Path | None:
    """A data dir (for MATTEKIT_DATA_DIR) holding only the user's weights fetched from pinned registry
    packages (what `make setup` installs: u2netp, MODNet, ...), linked, not copied; None if there are none.
    Weights a user imported or trained stay out, so the numbers are reproducible from a fresh clone."""
    from mattekit.weights_index import REGISTRY_FILE, read_registry

    entries = {n: e for n, e in read_registry(user_weights).items()
               if str(e.get("source", "")).startswith("fetched from") and (user_weights / e.get("file", "")).is_file()}
    if not entries:
        return None
    (dest / "weights").mkdir(parents=True, exist_ok=True)
    for e in entries.values():
        link = dest / "weights" / e["file"]
        if not link.exists():
            link.symlink_to(user_weights / e["file"])
    (dest / "weights" / REGISTRY_FILE).write_text(json.dumps(entries, indent=2))
    return dest


def bench_select_subject(data: dict[str, np.ndarray], tmp: str) -> dict[str, Any]:
    """Select Subject end to end through a real daemon (ipc, in-process thread): time, preview latency,
    peak RSS of the job (daemon and client: one process), Grad and SAD against a naive upsampling."""
    import torch

    from mattekit import imageops
    from mattekit.engine import Engine
    from mattekit.models import create_model
    from mattekit.models.checkpoints import list_weights, save_weights
    from mattekit_training import metrics

    gt = data["alpha"]
    try:  # what Select Subject uses by default (a packaged model such as u2netp when fetched)
        subject = [Engine().choose_method("trimap_free", "auto")]
    except Exception:  # noqa: BLE001 - no subject model installed
        subject = [n for n, e in list_weights().items() if (e.get("task") or "") == "trimap_free"]
    oracle = not subject
    if oracle:  # no trained subject model: a random light GFM, for speed only
        torch.manual_seed(0)
        model = create_model("gfm", backbone="mobilenetv2", light_width=32).eval()
        save_weights(model, name="bench-gfm-random", meta={"licence": "bench", "task": model.task})
        subject = ["bench-gfm-random"]

    wrapped: dict[str, _RecordedSubject] = {}

    class BenchEngine(Engine):
        def runtime(self, name: str, device: str) -> Any:
            rt = super().runtime(name, device)
            if name != subject[0]:
                return rt
            if name not in wrapped:
                wrapped[name] = _RecordedSubject(rt, gt if oracle else None)
            return wrapped[name]

    img8 = np.clip(data["image"] * 255 + 0.5, 0, 255).astype(np.uint8)
    first: list[float] = []
    t0 = [0.0]

    def progress(stage: str, frac: float, header: dict) -> None:
        if stage == "preview" and not first:
            first.append(time.perf_counter() - t0[0])

    small = np.zeros((64, 96, 3), np.uint8)  # warm-up: load the model, numba kernels
    with bench_daemon(tmp, BenchEngine()) as c:
        c.run_job("select_subject", {"image": (small, "RGB", "srgb")}, {"outputs": ["alpha", "foreground"], "model": subject[0]})
        with PeakRSS() as peak:
            t0[0] = time.perf_counter()
            res = c.run_job("select_subject", {"image": (img8, "RGB", "srgb")},
                            {"outputs": ["alpha", "foreground"], "preview": True, "model": subject[0], "alpha_dtype": "f32"},
                            progress=progress)
            total = time.perf_counter() - t0[0]
    from mattekit.engine import uncertain_trimap

    ours = res.alpha
    h, w = gt.shape
    coarse = wrapped[subject[0]].coarse
    naive = imageops.resize_linear(coarse, (h, w))  # the same model output, squashed and upsampled
    radius = max(2, int(np.ceil(max(h, w) / max(coarse.shape))))
    band = float((uncertain_trimap(naive, radius) == 0.5).mean()) * 100
    return {
        "MP": round(gt.size / 1e6, 1), "model": res.model + (" (random init, oracle output)" if oracle else ""),
        "band %": band, "total s": total, "preview s": first[0] if first else None, "peak MB": peak.peak / 2**20,
        "timings": res.header.get("timings"),
        "ours Grad/1000": metrics.gradient_error(ours, gt) / 1000, "naive Grad/1000": metrics.gradient_error(naive, gt) / 1000,
        "ours SAD/1000": metrics.sad(ours, gt) / 1000, "naive SAD/1000": metrics.sad(naive, gt) / 1000,
    }


# --------------------------------------------------------------------------- (f) memory of a whole job


def bench_job_memory(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Peak RSS of Engine.run('decontaminate') on an RGBA8 job, per pixel, beyond its wire inputs."""
    from mattekit import protocol as P
    from mattekit.engine import Engine

    h, w = data["alpha"].shape
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.clip(data["image"] * 255 + 0.5, 0, 255)
    rgba[..., 3] = 255
    a8 = np.clip(data["alpha"] * 255 + 0.5, 0, 255).astype(np.uint8)[..., None]
    specs = [P.BufferSpec("image", w, h, "u8", "RGBA"), P.BufferSpec("alpha", w, h, "u8", "Y")]
    params = P.check_job("decontaminate", {"model": "classical"}, specs)
    eng = Engine(learned=False)
    out, dt, peak = measure(lambda: eng.run("decontaminate", params, {"image": rgba, "alpha": a8}, specs, _noop))
    del out
    per_px = peak / (h * w)
    return {"MP": round(h * w / 1e6, 1), "job s": dt, "peak MB": peak / MB, "B/px": per_px, "100 MP GB (scaled)": per_px * 1e8 / 2**30}


# --------------------------------------------------------------------------- (e) daemon overhead


def bench_daemon_overhead(tmp: str, repeats: int = 5) -> dict[str, Any] | None:
    """bench/daemon.py's 12 MP round trip: real daemon + Client vs bare pyzmq; None when that module is absent."""
    try:
        from bench import daemon as bd
    except ImportError:
        return None
    h, w = 3000, 4000
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    guidance = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
    if not hasattr(bd, "round_trips"):  # bench/daemon.py is another helper's; its API may move
        return None
    bare_t, full_t = bd.round_trips(bd.endpoint(tmp, "ipc", "bare"), bd.endpoint(tmp, "ipc", "daemon"), image, guidance, repeats)
    bare, full = statistics.median(bare_t), statistics.median(full_t)
    return {"MP": 12.0, "bare pyzmq ms": bare * 1e3, "daemon ms": full * 1e3, "ratio": full / bare}


# --------------------------------------------------------------------------- main


SECTION = "## High resolution and speed"
NOTES = "### What the numbers mean"  # hand-written under the tables; kept when they are regenerated


#: Select Subject's end-to-end targets by size (MP -> s): #15's 12 MP and #17's 24 MP.
SELECT_GOAL_S = {12: 3.0, 24: 6.0}


def report(fg_rows: list[dict], refine_row: dict | None, select_rows: list[dict], daemon_row: dict | None,
           mem_row: dict | None, desc: str, refine_job_row: dict | None = None, loose_job_row: dict | None = None) -> str:
    """The markdown section for docs/benchmarks.md."""
    out = [SECTION, "", f"Measured by `python -m bench` (`bench/highres.py`) in one process, ours and the baseline interleaved. "
           f"Machine: {desc}; load average {os.getloadavg()[0]:.1f} when the report was written. "
           "Absolute times move with other load on the machine; the interleaved ratios are the point.", "",
           "Composites have exact alpha and foreground: a procedural subject made at 1.5 MP, upscaled smoothly, "
           "with 1 px anti-aliased strands drawn at full resolution, over a textured background with full-resolution grain.", ""]
    out += ["### (a) Decontaminate: band-limited multi-level estimator vs pymatting `estimate_foreground_ml` (full frame)", "",
            "Times: best of 3 interleaved runs (ratio of medians alongside). F-MSE: mean squared colour error over α > 0 "
            "against the exact foreground. MB: peak RSS above the level before the call. 50 MP: ours only.", "",
            table([{**r, **{k.replace("F-MSE", "F-MSE ×1e3"): f"{1e3 * v:.4f}" for k, v in r.items() if "F-MSE" in k}} for r in fg_rows],
                  ["MP", "soft %", "ours s", "full s", "speed-up", "speed-up (medians)", "ours MB", "full MB",
                   "ours F-MSE ×1e3", "full F-MSE ×1e3", "no-op F-MSE ×1e3", "daemon s", "daemon F-MSE ×1e3",
                   "first job s", "job s", "job foreground s", "job speed-up", "job F-MSE ×1e3"]), "",
            "\"daemon\": the daemon's setting (`foreground.classical_foreground`: the same band-limited solver with "
            "`classical_iterations` per level: `config.FOREGROUND_ITERATIONS` within `config.FOREGROUND_ITERATION_BUDGET`, "
            "else pymatting's 2). \"job\": a decontaminate job through a real daemon (RGB8 and 8-bit alpha in, RGBA8 out); "
            "job s is the client's wall time, the best of the 2nd to 4th jobs of a fresh daemon (first job s: the first, which also "
            "pays for first touches of the daemon's memory), job foreground s the best of those jobs' "
            "colour stages (estimate and decontaminate), "
            "and job speed-up is full s over that stage; its F-MSE includes the 8-bit alpha and output.", ""]
    if mem_row:
        out += ["### Peak memory of a whole decontaminate job (`Engine.run`, RGBA8 in and out)", "",
                "Peak RSS above the level before the call (the wire inputs are already resident), scaled linearly to 100 MP.", "",
                table([mem_row], list(mem_row)), ""]
    if refine_row:
        out += ["### (b) Refine Selection, rough lasso (true mask dilated 20 px)", "",
                "ours: `Engine.refine`, the closed-form system solved whole on a ≤ `config.REFINE_SOLVE_PX` frame and "
                "carried up by its local linear model; tiled CF: the path it replaced (`bench/refine_baseline.py`, "
                "pymatting per ≤ 512 px tile). Band SAD: over the unknown band only, the pixels either method sets.", "",
                table([refine_row], [k for k in refine_row]), ""]
    if refine_job_row:
        out += ["### (b') Refine Selection end to end through a real daemon (the same lasso; alpha and foreground out)", "",
                table([refine_job_row], list(refine_job_row)), ""]
    if loose_job_row:
        out += ["### (b'') Refine Selection from a loose lasso (4 % of the short side off the edge) through a real daemon", "",
                "The rough stage (`rough.find_subject`, GrabCut at ≤ `rough.WORKING_SIDE` px) finds the subject, then the band "
                "is solved at full resolution in the automatic band; segment s and band s are those two stages (engine timings), "
                "the rest is decode, foreground and transfer. IoU: α > 0.5 against the composite's true alpha.", "",
                table([loose_job_row], list(loose_job_row)), ""]
    if select_rows:
        out += ["### (c, d) Select Subject through a real daemon, and naive squash-to-1024-and-upsample", "",
                "Each size with the subject model a fresh clone has: the shipped light model alone, and the models "
                "`make setup` fetches from pinned registry packages (`auto` picks u2netp), when fetched. Peak MB: RSS "
                "above the level before the job, daemon and client together (one process, the result received).", "",
                table(select_rows, [k for k in select_rows[0] if k != "timings"]), "",
                "Engine timings (header): " + "; ".join(f"{r['MP']:g} MP {r['model']}: `{r.get('timings')}`" for r in select_rows) + ".", ""]
    out += ["### Targets", ""]
    big = [r for r in fg_rows if "speed-up" in r]
    if big:
        r = max(big, key=lambda r: r["MP"])
        out.append(f"- Decontaminate ≥ 8× faster than full-frame at {r['MP']:g} MP with ≤ F error: "
                   f"{r['speed-up']:.1f}× ({'met' if r['speed-up'] >= 8 else 'not met'}), F-MSE×1e3 {1e3 * r['ours F-MSE']:.4f} vs "
                   f"{1e3 * r['full F-MSE']:.4f} ({'met' if r['ours F-MSE'] <= r['full F-MSE'] else 'not met'}).")
    jobs = [r for r in fg_rows if "job speed-up" in r]
    for r in jobs:
        out.append(f"- Decontaminate through the daemon at {r['MP']:g} MP ≥ 8× full-frame at ≤ its F error: colour stage "
                   f"{r['job foreground s']:.2f} s, {r['job speed-up']:.1f}× ({'met' if r['job speed-up'] >= 8 else 'not met'}); "
                   f"whole job {r['job s']:.2f} s ({r['full s'] / r['job s']:.1f}×); F-MSE×1e3 {1e3 * r['job F-MSE']:.4f} vs "
                   f"{1e3 * r['full F-MSE']:.4f} ({'met' if r['job F-MSE'] <= r['full F-MSE'] else 'not met'}).")
    if refine_job_row:
        out.append(f"- Refine Selection end to end at {refine_job_row['MP']:g} MP ≤ 3 s (alpha and foreground, through the daemon): "
                   f"{refine_job_row['total s']:.1f} s ({'met' if refine_job_row['total s'] <= 3 else 'not met'}).")
    if loose_job_row and refine_job_row:
        r = loose_job_row
        out.append(f"- Refine Selection from a loose lasso at {r['MP']:g} MP ≤ 3 s end to end: {r['total s']:.1f} s "
                   f"(segment {r.get('segment s', 0):.2f} s, band {r.get('band s', 0):.2f} s; "
                   f"{r['total s'] / refine_job_row['total s']:.2f}× the band-only job in the same run; "
                   f"{'met' if r['total s'] <= 3 else 'not met'}).")
    if refine_row:
        out.append(f"- Refine Selection's alpha at {refine_row['MP']:g} MP ≤ 3 s: {refine_row['ours s']:.1f} s with `{refine_row['method']}` "
                   f"({'met' if refine_row['ours s'] <= 3 else 'not met'}).")
        if "tiled CF band SAD/1000" in refine_row:
            ours, before = refine_row["ours band SAD/1000"], refine_row["tiled CF band SAD/1000"]
            out.append(f"- … with band SAD ≤ 1.05 × the tiled closed form's: {ours:.0f} vs {before:.0f} "
                       f"({ours / before:.3f}×, {'met' if ours <= 1.05 * before else 'not met'}); "
                       f"{refine_row['speed-up']:.0f}× faster in the same run.")
    for r in select_rows:
        goal = SELECT_GOAL_S.get(r["MP"])
        timed = f"≤ {goal:g} s with {r['model']}: {r['total s']:.1f} s ({'met' if r['total s'] <= goal else 'not met'})" \
            if goal else f"with {r['model']}: {r['total s']:.1f} s"
        out.append(f"- Select Subject at {r['MP']:g} MP {timed}, peak {r['peak MB']:.0f} MB; preview ≤ 0.5 s: "
                   f"{r['preview s'] if r['preview s'] is None else round(r['preview s'], 2)} s "
                   f"({'met' if (r['preview s'] or 99) <= 0.5 else 'not met'}); sharper than naive "
                   f"(lower Grad): {'met' if r['ours Grad/1000'] < r['naive Grad/1000'] else 'not met'}.")
    out.append("")
    if daemon_row:
        out += ["### (e) Daemon overhead (`bench/daemon.py`): 12 MP RGBA8 refine round trip, compute stubbed", "",
                table([daemon_row], list(daemon_row)), ""]
    return "\n".join(out)


def write_docs(section: str, path: Path = ROOT / "docs" / "benchmarks.md", heading: str = SECTION) -> None:
    """Replace (or append) the section under `heading` (this module's by default), leaving the others alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pat = re.compile(re.escape(heading) + r".*?(?=\n## |\Z)", re.S)
    old = pat.search(text)
    if old and NOTES in old.group(0) and NOTES not in section:  # the hand-written reading of the numbers stays
        section = section.rstrip() + "\n\n" + old.group(0)[old.group(0).index(NOTES):].rstrip() + "\n"
    text = pat.sub(lambda m: section.rstrip() + "\n", text) if pat.search(text) else text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    import os
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 24], help="decontaminate sizes, MP")
    ap.add_argument("--full-max", type=float, default=24, help="largest size that also runs full-frame pymatting")
    ap.add_argument("--select-mp", type=float, nargs="+", default=[12, 24],
                    help="sizes for select subject; refine runs at the first (0 skips both)")
    ap.add_argument("--memory-mp", type=float, default=24, help="size of the whole-job memory measurement")
    ap.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    desc = machine()
    print(desc, flush=True)
    tmp = tempfile.mkdtemp(prefix="mkhr-")
    from mattekit import config

    fetched = fetched_data_dir(config.user_weights_dir(), Path(tmp) / "fetched")  # before the private dirs below
    # Private daemon dirs and user weights: a user's imported models do not change the numbers.
    for k, sub in (("MATTEKIT_RUNTIME_DIR", "rt"), ("MATTEKIT_CONFIG_DIR", "cfg"), ("MATTEKIT_DATA_DIR", "data")):
        os.environ[k] = f"{tmp}/{sub}"
    os.makedirs(f"{tmp}/rt", mode=0o700, exist_ok=True)
    fg_rows = []
    mem_row = None
    for mp in args.sizes:
        t0 = time.perf_counter()
        data = big_composite(mp, seed=1)
        print(f"[{mp} MP composite in {time.perf_counter() - t0:.1f} s]", flush=True)
        fg_rows.append(bench_foreground(data, full_frame=mp <= args.full_max))
        fg_rows[-1].update(bench_decontaminate_job(data, tmp))
        if "full s" in fg_rows[-1]:
            fg_rows[-1]["job speed-up"] = fg_rows[-1]["full s"] / fg_rows[-1]["job foreground s"]
        print(fg_rows[-1], flush=True)
        if mp == args.memory_mp:
            mem_row = bench_job_memory(data)
            print(mem_row, flush=True)
        del data
        gc.collect()
    refine_row = refine_job_row = loose_job_row = None
    select_rows: list[dict] = []
    for k, mp in enumerate(mp for mp in args.select_mp if mp):
        data = big_composite(mp, seed=2)
        if k == 0:
            refine_row = bench_refine(data)
            print(refine_row, flush=True)
            refine_job_row = bench_refine_job(data, tmp)
            print(refine_job_row, flush=True)
            loose_job_row = bench_refine_job(data, tmp, loose=0.04)
            print(loose_job_row, flush=True)
        for data_dir in (f"{tmp}/data", fetched):
            if data_dir is None:
                continue
            os.environ["MATTEKIT_DATA_DIR"] = str(data_dir)
            select_rows.append(bench_select_subject(data, tmp))
            print(select_rows[-1], flush=True)
        os.environ["MATTEKIT_DATA_DIR"] = f"{tmp}/data"
        del data
        gc.collect()
    daemon_row = bench_daemon_overhead(tmp)
    print(daemon_row, flush=True)
    section = report(fg_rows, refine_row, select_rows, daemon_row, mem_row, desc, refine_job_row, loose_job_row)
    print(section)
    if args.write_docs:
        write_docs(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
