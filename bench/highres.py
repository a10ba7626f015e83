"""High resolution and speed: decontaminate, refine and select subject on 1-24 MP synthetic composites.

    PYTHONPATH=backend:training python -m bench.highres [--sizes 1 12 24] [--write-docs]

Everything runs in ONE process, ours and the baseline interleaved, so ratios hold on a loaded machine.
Composites have exact alpha and foreground: a procedural subject (`make_foreground`) made at ~1.5 MP
is upscaled smoothly (alpha and premultiplied colour), then 1 px anti-aliased strands are drawn at full
resolution, and I = αF + (1 − α)B is composed at full resolution.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import ROOT, machine, measure, table

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


def bench_foreground(data: dict[str, np.ndarray], runs: int = 2, full_frame: bool = True) -> dict[str, Any]:
    """Band-limited estimator (ours) vs pymatting's full-frame estimate_foreground_ml, interleaved."""
    from pymatting import estimate_foreground_ml

    from mattekit import foreground as fgmod

    image, alpha, gt = data["image"], data["alpha"], data["foreground"]
    ours_t, ours_m = [], []
    est = None
    for i in range(runs):
        est, dt, mem = measure(lambda: fgmod.estimate_foreground(image, alpha))
        ours_t.append(dt)
        ours_m.append(mem)
        if i == 0 and full_frame:
            full, full_t, full_m = measure(lambda: estimate_foreground_ml(image, alpha))
            full_err = fg_mse(full, gt, alpha)
            del full
            gc.collect()
    soft = fgmod.soft_region(alpha)
    row = {
        "MP": round(alpha.size / 1e6, 1),
        "soft %": 100 * float(soft.mean()),
        "ours s": statistics.median(ours_t),
        "ours MB": max(ours_m) / MB,
        "ours F-MSE": fg_mse(est, gt, alpha),
        "no-op F-MSE": fg_mse(image, gt, alpha),
    }
    if full_frame:
        row.update({"full s": full_t, "full MB": full_m / MB, "full F-MSE": full_err, "speed-up": full_t / row["ours s"]})
    return row


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 24], help="decontaminate sizes, MP")
    ap.add_argument("--full-max", type=float, default=24, help="largest size that also runs full-frame pymatting")
    ap.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    rows = []
    for mp in args.sizes:
        t0 = time.perf_counter()
        data = big_composite(mp, seed=1)
        print(f"[{mp} MP composite in {time.perf_counter() - t0:.1f} s]", flush=True)
        rows.append(bench_foreground(data, full_frame=mp <= args.full_max))
        print(rows[-1], flush=True)
        del data
        gc.collect()
    print(table(rows, ["MP", "soft %", "ours s", "full s", "speed-up", "ours MB", "full MB", "ours F-MSE", "full F-MSE", "no-op F-MSE"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
