"""`mattekit-eval`: run a matting pipeline over a dataset and score it.

    mattekit-eval --pipeline classical --data pets --split test --guidance trimap -o out/
    mattekit-eval --pipeline classical --data synthetic-val --guidance dilate:20
    mattekit-eval --pipeline model:prn --data synthetic-val --guidance tight
    mattekit-eval --pipeline band:mattekit-prn-light --data synthetic-val --guidance tight   # as the daemon refines
    mattekit-eval --task foreground --pipeline classical --data synthetic-val

Writes OUTDIR/report.json (per image + mean, raw and literature-scaled), report.csv
(per image + a MEAN row) and contact_worst_best.png (worst and best cases: image,
guidance, prediction, ground truth, error).

Scoring depends on what the dataset knows (see `score_alpha`):
- exact alpha (synthetic, AIM/Adobe-style folders): SAD / MSE / MAD / Grad / Conn on the whole
  image and SAD / MSE / MAD on the unknown (t), fg and bg regions of the sample's trimap
  (or one derived from alpha), Grad / Conn also on t;
- trimap only (Oxford-IIIT Pet): the trimap's known regions — agreement of alpha > 0.5 with
  the labels, SAD / MSE / MAD against 0/1 on known pixels;
- rough mask only (COCO, feral cats): IoU of alpha > 0.5 with the mask.
Metric conventions: `mattekit_training.metrics`.
"""

from __future__ import annotations

import argparse
import functools
import csv
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattekit.imageops import disk

from . import metrics as M

AlphaPipeline = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
ForegroundPipeline = Callable[[np.ndarray, np.ndarray], np.ndarray]

GUIDANCE_KINDS = ("auto", "trimap", "tight", "erode:K", "dilate:K", "blur:S", "lasso", "mask", "none",
                  "loose", "wandering", "crossing", "rectangle")
#: The rough selections a person draws (issue #31), each drawn per sample from a seed of its name:
#: loose: the subject grown by 2-8 % of the short side; wandering: grown by 1-6 %, varying along the
#: edge; crossing: -2 % (inside) to +4 %, varying along the edge; rectangle: the bounding box + 1-5 %.
ROUGH_KINDS = ("loose", "wandering", "crossing", "rectangle")


# ----------------------------------------------------------------------------- pipelines


def classical_alpha(image: np.ndarray, guidance: np.ndarray | None, band_px: int | None = None) -> np.ndarray:
    """The daemon's classical refine: guidance -> trimap (default band) -> closed form in the band."""
    from mattekit import refine
    from mattekit import trimap as trimap_rules

    if guidance is None:
        raise ValueError("the classical pipeline needs guidance (use --guidance other than none)")
    band = band_px or trimap_rules.default_band_px(*guidance.shape)
    trimap = trimap_rules.guidance_to_trimap(guidance, band)
    return refine.closed_form_in_band(image, trimap, fallback=np.clip(guidance, 0, 1))


def guidance_alpha(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
    """Reference "pipeline" that returns the guidance itself: how good is the input already?"""
    if guidance is None:
        raise ValueError("the guidance pipeline needs guidance")
    return np.clip(guidance, 0, 1).astype(np.float32)


def runtime_alpha(name_or_path: str, device: str = "auto") -> AlphaPipeline:
    """A pipeline around `mattekit.runtime.load_runtime` (registered model name or weights path)."""
    from mattekit.runtime import load_runtime  # lazy: torch + models only when asked for

    rt = load_runtime(name_or_path, device=device)
    task = getattr(rt, "task", "guided")

    def run(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
        if task == "trimap_free":
            return rt.predict(image)
        return rt.predict(image, guidance=guidance)

    return run


def band_alpha(name: str, device: str = "auto", band_px: int | None = None) -> AlphaPipeline:
    """The daemon's Refine Selection with a registered guided model: the network's alpha only in
    the guidance's unknown band (same band as the classical pipeline), the guidance elsewhere.
    `model:NAME` scores the bare network over the whole image instead."""
    from mattekit.engine import Engine

    engine = Engine()
    params = {"model": name, "band_px": band_px, "device": device}

    def run(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
        if guidance is None:
            raise ValueError("the band pipeline needs guidance (use --guidance other than none)")
        alpha, _ = engine.refine(image, np.clip(guidance, 0, 1).astype(np.float32), params, lambda *a, **k: None)
        return alpha

    return run


def subject_alpha(model: str, device: str = "auto", *, coarse_only: bool = False) -> AlphaPipeline:
    """The daemon's Select Subject, no guidance: ``model`` (auto | general | portrait | a weights
    name) at working size, stretched to its own range, then the band solve at full resolution.
    ``coarse_only``: the subject model's stretched output upsampled, without the band solve."""
    from mattekit import imageops
    from mattekit import protocol as P
    from mattekit.engine import Engine

    engine = Engine()
    params = {"model": model, "device": device, "preview": False, "band_px": None}
    quiet = lambda *a, **k: None  # noqa: E731

    def run(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
        h, w = image.shape[:2]
        wire = np.ascontiguousarray(imageops.from_float(image, np.uint8))
        spec = P.BufferSpec("image", w, h, "u8", "RGB", "srgb")
        coarse, method = engine.coarse_subject(wire, spec, params, quiet)
        if coarse_only:
            return imageops.resize_linear(coarse, (h, w)) if coarse.shape != (h, w) else coarse
        alpha, _ = engine.select_subject(image, coarse, method, params, quiet)
        return alpha

    return run


def runtime_foreground(name_or_path: str, device: str = "auto") -> ForegroundPipeline:
    from mattekit.runtime import load_runtime

    rt = load_runtime(name_or_path, device=device)
    return lambda image, alpha: rt.predict(image, alpha=alpha)


def classical_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What the daemon does (`mattekit.foreground.classical_foreground`)."""
    from mattekit.foreground import classical_foreground as daemon_foreground

    return daemon_foreground(image, alpha)


def multilevel_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Germer et al.'s multi-level estimate with pymatting's default iterations (band-limited): the baseline."""
    from mattekit.foreground import estimate_foreground

    return estimate_foreground(image, alpha)


#: name -> callable(image, guidance) -> alpha
def grabcut_alpha(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
    """The baseline for rough selections (#31): OpenCV's GrabCut seeded with the selection alone
    (outside background, inside probably subject; 5 iterations at the photo's size), then the
    classical band solve around what it found."""
    from mattekit import rough

    if guidance is None:
        raise ValueError("the grabcut pipeline needs guidance")
    seeds = np.where(guidance >= 0.5, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    return classical_alpha(image, rough.grabcut(image, seeds, 5, settled=0.0).astype(np.float32))


def refine_alpha(image: np.ndarray, guidance: np.ndarray | None) -> np.ndarray:
    """The daemon's Refine Selection with the classical solver: a mask's subject found first
    (`mattekit.rough`), then the band solve; a trimap solved as given."""
    return _classical_refine()(image, guidance)


@functools.cache
def _classical_refine() -> AlphaPipeline:
    return band_alpha("classical")


ALPHA_PIPELINES: dict[str, AlphaPipeline] = {"classical": classical_alpha, "guidance": guidance_alpha,
                                             "grabcut": grabcut_alpha, "refine": refine_alpha}
#: name -> callable(image, alpha) -> foreground
FOREGROUND_PIPELINES: dict[str, ForegroundPipeline] = {
    "classical": classical_foreground,
    "multilevel": multilevel_foreground,
    "image": lambda image, alpha: image,  # no decontamination: the baseline to beat
}


def _is_model_ref(name: str) -> str | None:
    if name.startswith("model:"):
        return name[len("model:"):]
    if name.endswith(".safetensors") or Path(name).exists():
        return name
    return None


def get_pipeline(name: str, task: str = "alpha", device: str = "auto", band_px: int | None = None) -> Callable:
    """Resolve a pipeline name: a registry key, `model:NAME`, `band:NAME` (alpha only: as the
    daemon's refine runs it), `select:MODEL` (as the daemon's Select Subject runs it: auto,
    general, portrait or a weights name), `coarse:MODEL` (its subject model alone), or a weights path."""
    registry: dict[str, Callable] = ALPHA_PIPELINES if task == "alpha" else FOREGROUND_PIPELINES
    if name in registry:
        fn = registry[name]
        if fn is classical_alpha and band_px:
            return lambda image, guidance: classical_alpha(image, guidance, band_px)
        return fn
    if task == "alpha" and name.startswith("band:"):
        return band_alpha(name[len("band:"):], device, band_px)
    if task == "alpha" and name.startswith(("select:", "coarse:")):
        kind, _, model = name.partition(":")
        return subject_alpha(model, device, coarse_only=kind == "coarse")
    ref = _is_model_ref(name)
    if ref is not None:
        return runtime_alpha(ref, device) if task == "alpha" else runtime_foreground(ref, device)
    raise SystemExit(f"unknown pipeline {name!r}; known: {', '.join(registry)}, model:NAME, or a .safetensors path")


# ----------------------------------------------------------------------------- guidance


def reference_mask(sample: Any) -> np.ndarray:
    """The binary subject the guidance kinds start from: alpha > 0.5, else the rough mask,
    else the trimap's known foreground (Pets: the subject without its unknown band)."""
    if sample.alpha is not None:
        return (sample.alpha > 0.5).astype(np.float32)
    if sample.mask is not None:
        return (sample.mask > 0.5).astype(np.float32)
    if sample.trimap is not None:
        return (sample.trimap >= 0.75).astype(np.float32)
    raise ValueError(f"{sample.name}: no alpha, mask or trimap to derive guidance from")


def lasso(mask: np.ndarray) -> np.ndarray:
    """A coarse user lasso: each blob's convex hull, grown by 3 % of the short side and
    simplified to a polygon with few vertices (approxPolyDP at 2 % of its perimeter)."""
    h, w = mask.shape
    grow = max(2, int(round(0.03 * min(h, w))))
    m = cv2.dilate((mask > 0.5).astype(np.uint8), disk(grow))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros((h, w), np.uint8)
    for c in contours:
        hull = cv2.convexHull(c)
        poly = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)
        cv2.fillPoly(out, [poly], 1)
    return out.astype(np.float32)


def _sample_rng(kind: str, name: str) -> np.random.Generator:
    """The same draw for the same sample and kind on every run and machine (not Python's salted hash)."""
    import zlib

    return np.random.default_rng([zlib.crc32(kind.encode()), zlib.crc32(name.encode())])


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], lo: float, hi: float, cells: int = 6) -> np.ndarray:
    """float32 (H, W) in [lo, hi]: a random field that varies slowly (a few cells across the frame),
    like the distance a hand keeps from an edge while drawing around it."""
    h, w = shape
    coarse = rng.random((cells, cells)).astype(np.float32)
    f = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    f = (f - f.min()) / max(1e-6, float(f.max() - f.min()))
    return (lo + (hi - lo) * f).astype(np.float32)


def _polygon(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """A binary mask's blobs redrawn as polygons (what a lasso tool makes), vertices within
    `tolerance` px of the outline."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros(mask.shape, np.uint8)
    polys = [cv2.approxPolyDP(c, tolerance, True) for c in contours]
    cv2.fillPoly(out, polys, 1)
    return out.astype(np.float32)


def rough_guidance(kind: str, ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of `ROUGH_KINDS` drawn around the binary reference `ref` (H, W): float32 {0, 1}."""
    h, w = ref.shape
    short = min(h, w)
    m = (ref > 0.5).astype(np.uint8)
    if not m.any():
        return m.astype(np.float32)
    if kind == "rectangle":
        x, y, bw, bh = cv2.boundingRect(m)
        g = int(round(rng.uniform(0.01, 0.05) * short))
        out = np.zeros((h, w), np.float32)
        out[max(0, y - g):min(h, y + bh + g), max(0, x - g):min(w, x + bw + g)] = 1
        return out
    # signed distance to the subject's edge: > 0 outside, < 0 inside
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    signed = outside - inside
    if kind == "loose":
        reach = np.float32(rng.uniform(0.02, 0.08) * short)
    elif kind == "wandering":
        reach = _smooth_field(rng, (h, w), 0.01 * short, 0.06 * short)
    elif kind == "crossing":
        reach = _smooth_field(rng, (h, w), -0.02 * short, 0.04 * short)
    else:
        raise ValueError(f"unknown rough guidance kind {kind!r}; known: {', '.join(ROUGH_KINDS)}")
    drawn = (signed <= reach).astype(np.uint8)
    return _polygon(drawn, max(1.0, 0.004 * short))


def make_guidance(kind: str, sample: Any) -> np.ndarray | None:
    """Guidance float32 (H, W) in [0, 1] for one sample, derived from its labels.

    trimap: the sample's trimap ({0, 0.5, 1}); tight: the reference mask (alpha > 0.5);
    erode:K / dilate:K: the reference eroded / dilated by a disc of radius K px;
    blur:S: the reference blurred by a Gaussian of sigma S px (a feathered selection);
    lasso: a coarse polygon around the subject; mask: the dataset's rough mask;
    loose / wandering / crossing / rectangle: a person's rough selection (`rough_guidance`);
    none: None; auto: trimap when the sample has one, else tight.
    """
    name, _, arg = kind.partition(":")
    if name == "auto":
        name = "trimap" if sample.trimap is not None else "tight"
    if name == "none":
        return None
    if name == "trimap":
        if sample.trimap is None:
            raise ValueError(f"{sample.name}: the dataset has no trimap")
        return sample.trimap.astype(np.float32)
    if name == "mask":
        if sample.mask is None:
            raise ValueError(f"{sample.name}: the dataset has no rough mask")
        return sample.mask.astype(np.float32)
    ref = reference_mask(sample)
    if name == "tight":
        return ref
    if name == "lasso":
        return lasso(ref)
    if name in ROUGH_KINDS:
        return rough_guidance(name, ref, _sample_rng(name, sample.name))
    if name in ("erode", "dilate", "blur"):
        if not arg:
            raise ValueError(f"guidance {name} needs a size, e.g. {name}:10")
        k = float(arg)
        if name == "blur":
            return np.clip(cv2.GaussianBlur(ref, (0, 0), sigmaX=k, borderType=cv2.BORDER_REPLICATE), 0, 1)
        op = cv2.erode if name == "erode" else cv2.dilate
        return op(ref.astype(np.uint8), disk(int(round(k))), borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    raise ValueError(f"unknown guidance kind {kind!r}; known: {', '.join(GUIDANCE_KINDS)}")


# ----------------------------------------------------------------------------- scoring


def scoring_trimap(alpha: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Scoring trimap for exact alpha: unknown = soft pixels (0 < α < 1) grown by `radius`
    (default 1 % of the short side, >= 3 px)."""
    h, w = alpha.shape
    r = radius if radius is not None else max(3, int(round(0.01 * min(h, w))))
    soft = ((alpha > 0) & (alpha < 1)).astype(np.uint8)
    unknown = cv2.dilate(soft, disk(r)) > 0
    t = (alpha >= 0.5).astype(np.float32)
    t[unknown] = 0.5
    return t


def score_alpha(pred: np.ndarray, sample: Any) -> tuple[dict[str, float], str, np.ndarray]:
    """-> (metrics, kind of ground truth, error map (H, W) in [0, 1] for the contact sheet)."""
    if sample.alpha is not None:
        tri = sample.trimap if sample.trimap is not None else scoring_trimap(sample.alpha)
        return M.alpha_metrics(pred, sample.alpha, tri), "alpha", np.abs(pred - sample.alpha)
    if sample.trimap is not None:
        t = sample.trimap
        known = (t <= 0.25) | (t >= 0.75)
        err = np.where(known, np.abs(pred - (t >= 0.75)), 0.0)
        metrics = M.known_region_metrics(pred, t)
        if sample.mask is not None:  # a rough mask (COCO, cats): its trimap for agreement, IoU beside it
            metrics["iou"] = M.iou(pred, sample.mask)
        else:  # Pets: IoU with the trimap's subject, its unknown band left out
            metrics["iou"] = M.iou(pred, t >= 0.75, where=known)
        return metrics, "trimap", err.astype(np.float32)
    if sample.mask is not None:
        err = ((pred > 0.5) != (sample.mask > 0.5)).astype(np.float32)
        return {"iou": M.iou(pred, sample.mask)}, "mask", err
    raise ValueError(f"{sample.name}: nothing to score against (no alpha, trimap or mask)")


#: The metric that ranks images worst -> best, and whether larger is worse.
RANK_BY = {"alpha": ("sad", True), "trimap": ("sad_known", True), "mask": ("iou", False),
           "foreground": ("afg_sad", True)}


# ----------------------------------------------------------------------------- the loop


@dataclass
class _Keep:
    """The k worst and k best cases seen so far, as small thumbnails (bounded memory)."""

    k: int
    larger_is_worse: bool
    worst: list = field(default_factory=list)
    best: list = field(default_factory=list)

    def offer(self, score: float, name: str, cells: Callable[[], list[tuple[str, np.ndarray | None]]]) -> None:
        badness = score if self.larger_is_worse else -score
        need_w = len(self.worst) < self.k or badness > self.worst[-1][0]
        need_b = len(self.best) < self.k or badness < self.best[-1][0]
        if not (need_w or need_b):
            return
        item = (badness, name, cells())
        if need_w:
            self.worst = sorted(self.worst + [item], key=lambda x: -x[0])[: self.k]
        if need_b:
            self.best = sorted(self.best + [item], key=lambda x: x[0])[: self.k]


def _small(a: np.ndarray | None, thumb: int) -> np.ndarray | None:
    if a is None:
        return None
    from mattekit.imageops import resize_area

    h, w = a.shape[:2]
    s = thumb / max(h, w)
    if s >= 1:
        return np.asarray(a, np.float32)
    return resize_area(np.asarray(a, np.float32), (max(1, round(h * s)), max(1, round(w * s))))


def _mean(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def _default_band_rule() -> str:
    from mattekit import config

    return f"default: max({config.BAND_MIN_PX}, round({config.BAND_FRACTION} * short side))"


def machine_description() -> str:
    """e.g. "Intel(R) Xeon(R) Processor (x86_64), 2 CPUs, Python 3.11.2"."""
    import os

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def evaluate(
    pipeline: str,
    data: str,
    *,
    split: str | None = "test",
    guidance: str = "auto",
    limit: int | None = None,
    outdir: str | Path = "eval-out",
    task: str = "alpha",
    device: str = "auto",
    band_px: int | None = None,
    keep: int = 3,
    thumb: int = 224,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `pipeline` over `data` and write report.json / report.csv / contact_worst_best.png
    into `outdir`. Returns the report dict (what report.json holds)."""
    from tqdm import tqdm

    from .contact import contact_sheet, cutout, save_png
    from .datasets import open_dataset

    if task not in ("alpha", "foreground"):
        raise ValueError(f"task must be alpha or foreground, got {task!r}")
    ds = open_dataset(data, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    fn = get_pipeline(pipeline, task, device, band_px)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    kept: _Keep | None = None
    gt_kind = "foreground" if task == "foreground" else None
    t_start = time.perf_counter()
    for i in tqdm(range(n), desc=f"{pipeline} on {data}", unit="img", disable=not progress, file=sys.stderr):
        s = ds[i]
        h, w = s.image.shape[:2]
        if task == "alpha":
            g = make_guidance(guidance, s)
            t0 = time.perf_counter()
            pred = np.asarray(fn(s.image, g), np.float32)
            dt = time.perf_counter() - t0
            if pred.shape != (h, w):
                raise ValueError(f"{pipeline} returned {pred.shape} for a {h}x{w} image")
            m, gt_kind, err = score_alpha(pred, s)
            gt = s.alpha if gt_kind == "alpha" else s.trimap if gt_kind == "trimap" else s.mask

            def cells(s=s, g=g, pred=pred, gt=gt, err=err, gk=gt_kind):
                return [(s.name, _small(s.image, thumb)), ("guidance", _small(g, thumb)),
                        ("prediction", _small(pred, thumb)), (f"GT {gk}", _small(gt, thumb)),
                        ("|error|", _small(err, thumb))]
        else:
            if s.alpha is None or s.foreground is None:
                raise ValueError(f"{s.name}: --task foreground needs exact alpha and foreground (synthetic data)")
            t0 = time.perf_counter()
            pred = np.asarray(fn(s.image, s.alpha), np.float32)
            dt = time.perf_counter() - t0
            m = M.foreground_metrics(pred, s.foreground, s.alpha)
            err = np.abs(pred - s.foreground).mean(axis=2) * (s.alpha > 0)

            def cells(s=s, pred=pred, err=err):
                return [(s.name, _small(s.image, thumb)), ("alpha", _small(s.alpha, thumb)),
                        ("predicted F", _small(cutout(pred, s.alpha), thumb)),
                        ("GT F", _small(cutout(s.foreground, s.alpha), thumb)),
                        ("|F error| x4", _small(np.clip(4 * err, 0, 1), thumb))]
        row = {"name": s.name, "height": h, "width": w, "seconds": dt, **m}
        rows.append(row)
        key, larger_is_worse = RANK_BY[gt_kind]
        if kept is None:
            kept = _Keep(keep, larger_is_worse)
        kept.offer(float(m[key]), s.name, cells)
    total = time.perf_counter() - t_start
    metric_keys = [k for k in rows[0] if k not in ("name", "height", "width")] if rows else []
    mean = _mean(rows, metric_keys)
    report = {
        "pipeline": pipeline,
        "data": data,
        "split": split,
        "task": task,
        "guidance": guidance if task == "alpha" else "ground-truth alpha",
        "ground_truth": gt_kind,
        "n": len(rows),
        "limit": limit,
        "band_px": band_px if band_px else _default_band_rule(),
        "total_seconds": total,
        "machine": machine_description(),
        "convention": ("raw: alpha in [0,1]; sad and grad and conn are sums, mse and mad means over "
                       "the region; suffix _t/_fg/_bg = trimap unknown/fg/bg region; mean_scaled uses "
                       "SAD/1000, MSE*1e3, MAD*1e3, Grad/1000, Conn/1000 (DIM code divisors)"),
        "mean": mean,
        "mean_scaled": M.scaled(mean),
        "images": rows,
    }
    (outdir / "report.json").write_text(json.dumps(report, indent=1))
    with open(outdir / "report.csv", "w", newline="") as f:
        cols = ["name", "height", "width", *metric_keys]
        wr = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        wr.writerow({"name": "MEAN", **{k: f"{v:.6g}" for k, v in mean.items()}})
    if kept is not None:
        sheet_rows = [[(f"worst {j + 1} " + c[0][0], c[0][1]), *c[1:]] for j, (_, _, c) in enumerate(kept.worst)]
        sheet_rows += [[(f"best {j + 1} " + c[0][0], c[0][1]), *c[1:]] for j, (_, _, c) in enumerate(kept.best)]
        save_png(outdir / "contact_worst_best.png", contact_sheet(sheet_rows, thumb=thumb))
    return report


def _format_summary(report: dict[str, Any]) -> str:
    lines = [f"{report['pipeline']} on {report['data']} ({report['n']} images, guidance {report['guidance']}, "
             f"{report['total_seconds']:.1f} s)"]
    for k, v in report["mean"].items():
        sv = report["mean_scaled"][k]
        lines.append(f"  {k:16s} {v:12.6g}" + (f"   (scaled {sv:.4g})" if sv != v else ""))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mattekit-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", required=True,
                   help="classical | guidance | model:NAME | band:NAME | PATH.safetensors (task foreground: classical | multilevel | image | model:NAME)")
    p.add_argument("--data", required=True, help="pets | coco128 | feral-cats | synthetic-val | FOLDER | LAYOUT:FOLDER")
    p.add_argument("--split", default="test", help="split of the built-in real sets (default: test)")
    p.add_argument("--guidance", default="auto", help=" | ".join(GUIDANCE_KINDS))
    p.add_argument("--task", default="alpha", choices=("alpha", "foreground"))
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--band-px", type=int, default=None, help="classical unknown band width (default: the daemon's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--keep", type=int, default=3, help="worst / best cases on the contact sheet")
    p.add_argument("-o", "--outdir", default=None, help="output folder (default eval-out/PIPELINE_DATA_GUIDANCE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.outdir
    if out is None:
        safe = "_".join(x.replace(":", "-").replace("/", "-") for x in (args.pipeline, args.data, args.guidance))
        out = Path("eval-out") / safe
    try:
        report = evaluate(args.pipeline, args.data, split=args.split, guidance=args.guidance, limit=args.limit,
                          outdir=out, task=args.task, device=args.device, band_px=args.band_px,
                          keep=args.keep, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"mattekit-eval: error: {e}", file=sys.stderr)
        return 2
    print(_format_summary(report))
    print(f"wrote {out}/report.json, report.csv, contact_worst_best.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
