"""Select and Mask's edge controls on an alpha matte: smooth, feather, contrast, shift edge.

Pure functions in the pymatting style: ``alpha`` is float32 (H, W) in [0, 1] and each function
returns a new float32 (H, W) in [0, 1]; sizes are in pixels (``apply_edge_params`` turns the job's
sizes, a percentage of the image's short side or "Npx", into pixels with
``protocol.edge_size_px``). Applied in Photoshop's order: smooth, feather, contrast, shift edge.
A control at 0 is the identity (the very array, untouched).

Big frames: the filters run in strips of rows (``imageops.run_strips``) with just enough rows of
context for the filter's reach, into one preallocated output, so a 100 MP matte needs the input,
the output and a strip's temporaries; a feather wider than FEATHER_DIRECT_SIGMA is blurred on an
area-reduced copy (a wide Gaussian has no detail to lose) and carried up strip by strip.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import cv2
import numpy as np

from . import config, imageops
from . import protocol as P
from .imageops import ProgressFn

#: Above this sigma (px) a feather is computed on a copy reduced so that its sigma is about this.
FEATHER_DIRECT_SIGMA = 8.0
#: Disk filters up to this radius (px) are repeated dilations by discrete disks of at most DISK_STEP_PX
#: (cost grows with the radius); wider ones use distance transforms on DILATE_LEVELS levels of alpha.
DIRECT_DISK_PX = 32
DISK_STEP_PX = 8
DILATE_LEVELS = 16
#: Contrast 100 % divides the transition's width by this (a hard threshold, but 0.5 stays 0.5).
_MAX_GAIN = 1e6


def _strips(alpha: np.ndarray, reach: int, fn: Callable[[np.ndarray], np.ndarray], progress: ProgressFn | None) -> np.ndarray:
    """fn applied to ``alpha`` strip by strip, each with ``reach`` rows of context above and below;
    exact when fn looks at most ``reach`` rows away (cv2 borders: the strip's context rows stand in
    for the image; at the frame's top and bottom fn's own border rule applies)."""
    h, w = alpha.shape
    out = np.empty((h, w), np.float32)

    def strip(y0: int, y1: int) -> None:
        e0, e1 = max(0, y0 - reach), min(h, y1 + reach)
        out[y0:y1] = fn(np.ascontiguousarray(alpha[e0:e1], dtype=np.float32))[y0 - e0:y1 - e0]

    rows = max(4 * reach + 1, config.STRIP_PX // max(1, w))
    imageops.run_strips(h, rows, strip, progress=progress, threads=config.THREADS)
    return out


def _disk_steps(radius: int) -> list[int]:
    """Radii of at most DISK_STEP_PX whose discrete disks, applied one after another, make a disk of
    ``radius`` (a Minkowski sum of disks is the disk of the summed radius; within 1 px up to
    DIRECT_DISK_PX)."""
    n = -(-radius // DISK_STEP_PX)
    return [radius // n + (1 if i < radius % n else 0) for i in range(n)]


def _dilate_by_levels(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a disk of ``radius`` from Euclidean distance transforms: the cost does not
    grow with the radius. By threshold decomposition (a flat disk commutes with thresholds), each of
    DILATE_LEVELS level sets {alpha >= t} is grown by ``radius`` with a 1-px anti-aliased rim."""
    out = np.zeros(alpha.shape, np.float32)
    step = np.float32(1.0 / DILATE_LEVELS)
    for k in range(1, DILATE_LEVELS + 1):
        outside = (alpha < (k - 0.5) * step).astype(np.uint8)  # level k's complement
        if outside.all():
            break  # no pixel reaches this level, nor any higher one
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        np.subtract(np.float32(radius + 0.5), dist, out=dist)
        out += np.clip(dist, 0.0, 1.0, out=dist) * step
    return np.maximum(out, alpha, out=out)  # a dilation never lowers a pixel


def disk_filter(alpha: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Grey dilation (``dilate``) or erosion of float32 (H, W) ``alpha`` by a flat disk of ``radius`` px.

    Up to DIRECT_DISK_PX: repeated dilations by discrete disks (exact steps, within 1 px in all);
    beyond: distance transforms on DILATE_LEVELS levels (``_dilate_by_levels``). Erosion is the
    dilation of 1 - alpha. The frame's edge is no subject edge (its pixels are repeated outward).
    """
    if radius <= 0:
        return alpha
    if not dilate:
        return 1.0 - disk_filter(1.0 - alpha, radius, True)
    if radius > DIRECT_DISK_PX:
        return _dilate_by_levels(alpha, radius)
    out = alpha
    for r in _disk_steps(radius):
        out = cv2.dilate(out, imageops.disk(r), borderType=cv2.BORDER_REPLICATE)
    return out


def shift_edge(alpha: np.ndarray, px: float, progress: ProgressFn | None = None) -> np.ndarray:
    """Move the edge by ``px`` pixels: > 0 out (grey dilation by a disk), < 0 in (erosion).

    alpha: float32 (H, W) in [0, 1]. The disk's radius is |px| rounded, so the 0.5 contour of a
    hard or soft edge moves by |px| within 1 px; the transition's profile is kept (a flat
    structuring element translates it; beyond DIRECT_DISK_PX in DILATE_LEVELS steps).
    Returns float32 (H, W) in [0, 1].
    """
    r = int(round(abs(px)))
    if r == 0:
        return alpha
    return _strips(alpha, r + 1, lambda a: disk_filter(a, r, px > 0), progress)


def transition_width(alpha: np.ndarray) -> float:
    """The mean width (px) of a matte's soft transitions, at least 1 (a hard or anti-aliased edge).

    A linear ramp of width w from 0 to 1 has, per unit of edge length, sum 4·a·(1-a) = 2w/3 and
    sum |grad a| = 1; the ratio of the two sums over the frame (in chunks: no full-size temporary)
    is therefore the ramps' mean width.
    """
    soft = grad = 0.0
    h, w = alpha.shape
    rows = max(2, config.STRIP_PX // max(1, w))
    for y0 in range(0, h, rows):
        part = np.asarray(alpha[y0:min(h, y0 + rows + 1)], dtype=np.float32)  # one row of overlap for the gradient
        core = part[: min(rows, h - y0)]
        soft += float(np.sum(4.0 * core * (1.0 - core), dtype=np.float64))
        grad += float(np.abs(np.diff(part, axis=0)).sum(dtype=np.float64)) + float(np.abs(np.diff(core, axis=1)).sum(dtype=np.float64))
    return max(1.0, 1.5 * soft / grad) if grad > 0 else 1.0


def smooth(alpha: np.ndarray, radius_px: float, progress: ProgressFn | None = None) -> np.ndarray:
    """Reduce a jagged edge: a Gaussian blur of sigma ``radius_px`` (``feather``), then re-thresholded
    toward the original softness.

    The blur puts the 0.5 contour through the middle of the jags (unbiased, unlike a morphological
    opening or closing) and rounds it at the scale of ``radius_px``; a linear stretch about 0.5
    then gives the transition back its original mean width (``transition_width``): a hard edge
    comes back hard, a soft one about as soft. alpha: float32 (H, W) in [0, 1] -> float32 (H, W)
    in [0, 1].
    """
    if radius_px <= 0:
        return alpha
    sigma = float(radius_px)
    # A step blurred by sigma has slope 1/(sigma*sqrt(2*pi)) at 0.5; a ramp of width w0 has 1/w0.
    gain = max(1.0, sigma * math.sqrt(2 * math.pi) / transition_width(alpha))
    return _stretch(feather(alpha, sigma, progress), gain)


def feather(alpha: np.ndarray, sigma_px: float, progress: ProgressFn | None = None) -> np.ndarray:
    """Soften the edge: a Gaussian blur of standard deviation ``sigma_px`` pixels.

    alpha: float32 (H, W) in [0, 1] -> float32 (H, W) in [0, 1]; the frame's border is
    replicated (the image edge does not fade). Sigmas above FEATHER_DIRECT_SIGMA are blurred on
    an area-reduced copy and enlarged bilinearly (the reduction's and enlargement's own blur are
    taken off the sigma used there), so the cost does not grow with the sigma.
    """
    if sigma_px <= 0:
        return alpha
    h, w = alpha.shape

    def blur(a: np.ndarray, s: float) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), s, borderType=cv2.BORDER_REPLICATE)

    if sigma_px <= FEATHER_DIRECT_SIGMA:
        return _strips(alpha, int(math.ceil(4 * sigma_px)) + 1, lambda a: blur(a, sigma_px), progress)
    f = sigma_px / FEATHER_DIRECT_SIGMA
    small_hw = (max(1, round(h / f)), max(1, round(w / f)))
    small = imageops.resize_area(alpha, small_hw)
    fy, fx = h / small_hw[0], w / small_hw[1]
    # Area reduction adds a box of width f (variance f^2/12), bilinear enlargement a tent (f^2/6).
    s_small = math.sqrt(max(0.25, sigma_px ** 2 - max(fy, fx) ** 2 / 4)) / max(fy, fx)
    small = blur(small, s_small)
    out = np.empty((h, w), np.float32)

    def strip(y0: int, y1: int) -> None:
        out[y0:y1] = imageops.sample_linear(small, (y0, y1), (0, w), (h, w))

    imageops.run_strips(h, max(1, config.STRIP_PX // max(1, w)), strip, progress=progress, threads=config.THREADS)
    return out


def contrast(alpha: np.ndarray, percent: float) -> np.ndarray:
    """Sharpen the soft transition: a linear stretch about 0.5 that narrows it by ``percent`` %.

    alpha' = clip(0.5 + (alpha - 0.5) / (1 - percent/100), 0, 1): 50 % halves the transition's
    width, 100 % is a hard threshold at 0.5 (0.5 itself stays). alpha: float32 (H, W) in [0, 1]
    -> float32 (H, W) in [0, 1].
    """
    if percent <= 0:
        return alpha
    return _stretch(np.array(alpha, dtype=np.float32), min(_MAX_GAIN, 1.0 / max(1e-12, 1.0 - percent / 100.0)))


def _stretch(alpha: np.ndarray, gain: float) -> np.ndarray:
    """clip(0.5 + (alpha - 0.5) * gain, 0, 1), in place on float32 ``alpha`` (a new array of the caller's), in chunks."""
    flat = alpha.reshape(-1)
    g = np.float32(gain)
    for i in range(0, flat.size, config.STRIP_PX):
        c = flat[i:i + config.STRIP_PX]
        c -= np.float32(0.5)
        c *= g
        c += np.float32(0.5)
        np.clip(c, 0.0, 1.0, out=c)
    return alpha


def has_edge_params(params: dict[str, Any]) -> bool:
    """True when a job asks for any edge control (all at 0: the alpha is returned untouched)."""
    return any(_amount(k, params.get(k, 0)) != 0 for k in (*P.EDGE_SIZES, "contrast"))


def _amount(name: str, value: Any) -> float:
    return P.parse_contrast(value) if name == "contrast" else P.parse_edge_size(name, value)[0]


def apply_edge_params(alpha: np.ndarray, params: dict[str, Any], progress: ProgressFn | None = None) -> np.ndarray:
    """A job's edge controls (``params``: smooth, feather, contrast, shift_edge as in
    protocol.JOB_PARAMS, already checked) applied to ``alpha`` float32 (H, W) in [0, 1], in
    Photoshop's order. None asked: ``alpha`` itself is returned (bit for bit)."""
    if not has_edge_params(params):
        return alpha
    h, w = alpha.shape
    px = {k: P.edge_size_px(k, params.get(k, 0), w, h) for k in P.EDGE_SIZES}
    steps: list[Callable[[np.ndarray, ProgressFn | None], np.ndarray]] = [
        lambda a, p: smooth(a, px["smooth"], p),
        lambda a, p: feather(a, px["feather"], p),
        lambda a, p: contrast(a, P.parse_contrast(params.get("contrast", 0))),
        lambda a, p: shift_edge(a, px["shift_edge"], p),
    ]
    out = np.asarray(alpha, dtype=np.float32)
    for i, step in enumerate(steps):
        part = None if progress is None else (lambda f, i=i: progress((i + f) / len(steps)))
        out = step(out, part)
    if progress is not None:
        progress(1.0)
    return out
