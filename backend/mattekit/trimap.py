"""Band and trimap rules: how a selection or a coarse alpha becomes a trimap, how wide the band is.

One home for them (the daemon's refine and Select Subject, the evaluation harness and the
plug-ins' defaults use these). A trimap is float32 (H, W) in {0, 0.5, 1}: 0 background, 1
subject, 0.5 unknown (the band, where alpha is solved).
"""

from __future__ import annotations

import cv2
import numpy as np

from mattekit import config, imageops
# The default band width is defined in config, which the editors vendor (stdlib only): one formula.
from mattekit.config import default_band_px  # noqa: F401
from mattekit.imageops import ProgressFn

#: Guidance strictly inside (SOFT_LOW, SOFT_HIGH) counts as uncertain (a feathered selection edge).
SOFT_LOW = 0.05
SOFT_HIGH = 0.95


def is_trimap(guidance: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every value is within `tol` of {0, 0.5, 1} and some pixel is unknown (0.5)."""
    g = np.asarray(guidance, dtype=np.float32).reshape(-1)
    any_half = False
    step = config.STRIP_PX  # strips: small temporaries, and a mask is told apart at its first soft pixel
    for i in range(0, g.size, step):
        part = g[i : i + step]
        near_half = np.abs(part - 0.5) <= tol
        if not (near_half | (part <= tol) | (part >= 1.0 - tol)).all():
            return False
        any_half = any_half or bool(near_half.any())
    return any_half


def guidance_to_trimap(
    guidance: np.ndarray, band_px: int, *, trimap: bool | None = None, progress: ProgressFn | None = None
) -> np.ndarray:
    """Rough selection -> trimap.

    guidance: float (H, W) in [0, 1] — a hard or soft mask, or a trimap.
    band_px: total width of the unknown band straddling the mask edge (about band_px/2 on each side).
    trimap: whether `guidance` is a trimap, when the caller knows (None: `is_trimap` decides).
    progress: called with the fraction done after each strip of rows; raise from it to cancel.
    Returns float32 (H, W) with values {0, 0.5, 1}.

    A trimap (values in {0, 0.5, 1} with some 0.5) keeps its own unknown region. Otherwise the
    mask is thresholded at 0.5 and the unknown region is every pixel within band_px/2 of the other
    label (`near_edge`), plus every pixel whose guidance is strictly between SOFT_LOW and SOFT_HIGH
    (a feathered selection says "not sure here"). Made in strips of rows, each with band_px/2 rows of
    context above and below: exactly the whole-frame answer, with one strip's temporaries.
    """
    g = np.asarray(guidance, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"guidance must be (H, W), got shape {g.shape}")
    as_trimap = is_trimap(g) if trimap is None else trimap
    h, w = g.shape
    radius = max(1, int(round(band_px / 2)))
    out = np.empty((h, w), np.float32)

    def strip(y0: int, y1: int) -> None:
        part = g[y0:y1]
        if as_trimap:
            out[y0:y1] = np.where(part >= 0.75, 1.0, np.where(part <= 0.25, 0.0, 0.5))
            return
        e0, e1 = max(0, y0 - radius), min(h, y1 + radius)  # band_px/2 rows of context each side
        fg = (g[e0:e1] >= 0.5).astype(np.uint8)
        unknown = near_edge(fg, radius)[y0 - e0 : y1 - e0]
        unknown |= (part > SOFT_LOW) & (part < SOFT_HIGH)
        tri = out[y0:y1]
        tri[...] = fg[y0 - e0 : y1 - e0]
        tri[unknown] = 0.5

    imageops.run_strips(h, max(4 * radius, config.STRIP_PX // max(1, w)), strip, progress=progress, threads=config.THREADS)
    return out


def near_edge(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool (H, W): pixels within `radius` px (Euclidean) of a pixel of the other label of `mask`.

    The same as dilate(mask, disk) != erode(mask, disk), but from exact distance transforms, whose
    cost does not grow with the radius (a 160 px band at 100 MP takes seconds as morphology).
    The image border is not an edge of the subject.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.all() or not m.any():
        return np.zeros(m.shape, bool)
    # distance from each pixel to the nearest pixel of the other label
    to_bg = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out = (to_bg > 0) & (to_bg <= radius)
    del to_bg
    to_fg = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out |= (to_fg > 0) & (to_fg <= radius)
    return out


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    """bool (H, W): the trimap's unknown pixels (pymatting's convention: 0.1 < t < 0.9)."""
    return (trimap > 0.1) & (trimap < 0.9)


def snap_trimap(g: np.ndarray) -> np.ndarray:
    """A trimap-like mask snapped to exactly {0, 0.5, 1} (an 8-bit 128 is 0.502)."""
    return np.where(g < 0.25, 0.0, np.where(g > 0.75, 1.0, 0.5)).astype(np.float32)


def uncertain_trimap(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Trimap from a coarse alpha: confident where it is near 0 or 1, unknown in its transition.

    The band is adaptive: a soft edge (hair, fur, motion blur) has a wide transition in the
    coarse alpha and so gets a wide band; a hard edge gets ~`radius` px either side, which
    covers the blur of upsampling a working-resolution alpha.
    """
    unsure = ((alpha > config.UNCERTAIN_LOW) & (alpha < config.UNCERTAIN_HIGH)).astype(np.uint8)
    fg = (alpha >= 0.5).astype(np.uint8)
    k = imageops.disk(radius)
    edge = cv2.dilate(fg, k) != cv2.erode(fg, k)
    band = (cv2.dilate(unsure, k) > 0) | edge
    trimap = fg.astype(np.float32)
    trimap[band] = 0.5
    return trimap


def selection_crop(guidance: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """y0, y1, x0, x1 of the selection's (guidance >= 0.5, (H, W)) bounding box grown by `margin` of its
    long side on each side, within the frame; the whole frame for an empty selection."""
    H, W = guidance.shape
    x, y, w, h = cv2.boundingRect((guidance >= 0.5).astype(np.uint8))
    if w == 0 or h == 0:
        return 0, H, 0, W
    m = int(round(margin * max(w, h)))
    return max(0, y - m), min(H, y + h + m), max(0, x - m), min(W, x + w + m)


def within_selection(alpha: np.ndarray, guidance: np.ndarray, band_px: int | None) -> np.ndarray:
    """Select Subject inside a selection: alpha limited to the selection grown by the band width.

    Growing by the band keeps a subject edge that the quick selection cut through (hair just outside).
    """
    h, w = alpha.shape
    r = max(1, (band_px or default_band_px(h, w)) // 2)
    k = imageops.disk(r)
    region = cv2.dilate((guidance >= 0.5).astype(np.uint8), k) > 0
    return np.where(region, alpha, 0.0).astype(np.float32)
