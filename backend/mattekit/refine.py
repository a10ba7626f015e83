"""Classical refine: guidance -> trimap -> closed-form alpha solved only in the unknown band.

Levin et al.'s closed-form matting (via pymatting) is a sparse linear solve whose cost
grows with the number of unknown pixels *and* with the crop it is built on, so we build
the Laplacian only on bounded tiles around the band instead of on the whole frame.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Callable

import cv2
import numpy as np

from mattekit import config
from mattekit.imageops import disk

log = logging.getLogger(__name__)

ProgressFn = Callable[[float], None]

#: Guidance strictly inside (SOFT_LOW, SOFT_HIGH) counts as uncertain (a feathered selection edge).
SOFT_LOW = 0.05
SOFT_HIGH = 0.95
#: Largest tile (core, without margin) on which one closed-form system is built.
TILE_PX = 512
#: Known pixels kept around each tile so its unknown pixels see their context.
TILE_MARGIN_PX = 16


def default_band_px(h: int, w: int) -> int:
    """Default total width of the unknown band for an (h, w) image, in pixels."""
    return int(max(config.BAND_MIN_PX, round(min(h, w) * config.BAND_FRACTION)))


def is_trimap(guidance: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every value is within `tol` of {0, 0.5, 1} and some pixel is unknown (0.5)."""
    g = np.asarray(guidance, dtype=np.float32)
    near_half = np.abs(g - 0.5) <= tol
    near_ends = (g <= tol) | (g >= 1.0 - tol)
    return bool(near_half.any() and (near_half | near_ends).all())


def guidance_to_trimap(guidance: np.ndarray, band_px: int) -> np.ndarray:
    """Rough selection -> trimap.

    guidance: float (H, W) in [0, 1] — a hard or soft mask, or a trimap.
    band_px: total width of the unknown band straddling the mask edge (about band_px/2 on each side).
    Returns float32 (H, W) with values {0, 0.5, 1}.

    A trimap (values in {0, 0.5, 1} with some 0.5) keeps its own unknown region. Otherwise the
    mask is thresholded at 0.5 and the unknown region is dilate(mask) - erode(mask) with an
    elliptical kernel, plus every pixel whose guidance is strictly between SOFT_LOW and SOFT_HIGH
    (a feathered selection says "not sure here").
    """
    g = np.asarray(guidance, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"guidance must be (H, W), got shape {g.shape}")
    if is_trimap(g):
        out = np.where(g >= 0.75, 1.0, np.where(g <= 0.25, 0.0, 0.5))
        return out.astype(np.float32)
    fg = (g >= 0.5).astype(np.uint8)
    radius = max(1, int(round(band_px / 2)))
    kernel = disk(radius)
    # BORDER_REPLICATE: the image border is not an edge of the subject.
    dil = cv2.dilate(fg, kernel, borderType=cv2.BORDER_REPLICATE)
    ero = cv2.erode(fg, kernel, borderType=cv2.BORDER_REPLICATE)
    unknown = (dil != ero) | ((g > SOFT_LOW) & (g < SOFT_HIGH))
    trimap = fg.astype(np.float32)
    trimap[unknown] = 0.5
    return trimap


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    """bool (H, W): the trimap's unknown pixels (pymatting's convention: 0.1 < t < 0.9)."""
    return (trimap > 0.1) & (trimap < 0.9)


def _split_range(lo: int, hi: int, tile: int) -> list[tuple[int, int]]:
    """Split [lo, hi) into near-equal consecutive pieces no longer than `tile`."""
    n = max(1, -(-(hi - lo) // tile))
    edges = np.linspace(lo, hi, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def band_tiles(
    band: np.ndarray, tile: int = TILE_PX
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """Cover a band with tiles: for each 8-connected component, its bounding box cut into
    pieces of at most `tile` x `tile`.

    Returns (labels int32 (H, W), [(component label, (y0, y1, x0, x1)), ...]).
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(band.astype(np.uint8), connectivity=8)
    out = []
    for lab in range(1, n):
        x, y, w, h = (int(v) for v in stats[lab, :4])
        for y0, y1 in _split_range(y, y + h, tile):
            for x0, x1 in _split_range(x, x + w, tile):
                if (labels[y0:y1, x0:x1] == lab).any():
                    out.append((lab, (y0, y1, x0, x1)))
    return labels, out


def _solve_cf(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    from pymatting import estimate_alpha_cf  # heavy import (numba), only when solving

    # pymatting prints a multi-line "PERFORMANCE WARNING" each time its incomplete Cholesky
    # retries with a larger shift: dozens per photo. It is not the user's concern: one debug line.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        alpha = estimate_alpha_cf(image.astype(np.float64), trimap.astype(np.float64))
    if printed.getvalue():
        log.debug("pymatting: %s", " ".join(printed.getvalue().split())[:300])
    return alpha


def _solve_tile(
    image: np.ndarray, trimap: np.ndarray, band: np.ndarray, box: tuple[int, int, int, int], margin: int
) -> np.ndarray | None:
    """Solve one tile's crop; returns alpha over the core box, or None when nothing anchors it.

    Known pixels enter the system only through the 3x3 windows they share with unknown
    pixels. A crop whose unknown pixels are coupled to one label only has a constant exact
    solution (the Laplacian's null space) — and pymatting's CG divides by zero on that
    zero right-hand side — which may just mean the margin is too small to reach the other
    label along the band, so the margin is grown (x2, x4, x8) before accepting the constant.
    A solve that still fails (CG not converging) leaves the tile to the fallback.
    """
    h, w = trimap.shape
    y0, y1, x0, x1 = box
    reach = np.ones((5, 5), np.uint8)  # pixels sharing a 3x3 window are <= 2 apart
    for m in (margin, 2 * margin, 4 * margin, 8 * margin):
        cy0, cy1, cx0, cx1 = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
        unknown = band[cy0:cy1, cx0:cx1]
        coupled = (cv2.dilate(unknown.astype(np.uint8), reach) > 0) & ~unknown
        crop_tri = trimap[cy0:cy1, cx0:cx1]
        has_fg = bool((coupled & (crop_tri >= 0.9)).any())
        has_bg = bool((coupled & (crop_tri <= 0.1)).any())
        whole = (cy0, cy1, cx0, cx1) == (0, h, 0, w)
        if has_fg and has_bg:
            if min(cy1 - cy0, cx1 - cx0) < 3:  # the Laplacian needs 3x3 windows
                return None
            try:
                crop_alpha = _solve_cf(image[cy0:cy1, cx0:cx1], crop_tri)
            except ValueError:  # pymatting: CG did not converge
                return None
            return crop_alpha[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0].astype(np.float32)
        if whole or m == 8 * margin:
            break
    if not (has_fg or has_bg):
        return None
    return np.full((y1 - y0, x1 - x0), 1.0 if has_fg else 0.0, np.float32)


def closed_form_in_band(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    progress: ProgressFn | None = None,
    fallback: np.ndarray | None = None,
    tile: int = TILE_PX,
    margin: int = TILE_MARGIN_PX,
) -> np.ndarray:
    """Closed-form matting (Levin et al. 2008, pymatting `estimate_alpha_cf`) solved only in the band.

    image: float (H, W, 3) in [0, 1]. trimap: float (H, W) in {0, 0.5, 1}.
    progress: called with the fraction done (0..1] after each tile; raise from it to cancel
        (the exception propagates, nothing is returned).
    fallback: float (H, W) alpha used for unknown pixels whose tile has no known pixel to
        anchor the solve (e.g. the guidance); 0.5 when omitted. A tile that sees only known
        foreground (background) even with an 8x margin gets alpha 1 (0), the exact solution.
    tile, margin: tile core size and the context added around it (clipped at the border).
    Returns float32 (H, W) alpha in [0, 1]; known pixels are copied from the trimap.

    Each tile is a component's bounding box (or a piece of it) plus `margin` px; its unknown
    pixels are solved with the crop's known pixels as boundary conditions and only the
    core's pixels of that component are pasted back, so seams are margin px from context.
    """
    trimap = np.asarray(trimap, dtype=np.float32)
    h, w = trimap.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image {image.shape} and trimap {trimap.shape} differ in size")
    band = unknown_region(trimap)
    alpha = np.where(trimap >= 0.9, 1.0, 0.0).astype(np.float32)
    fb = np.full((h, w), 0.5, np.float32) if fallback is None else np.asarray(fallback, np.float32)
    alpha[band] = fb[band]
    if not band.any():
        if progress is not None:
            progress(1.0)
        return alpha
    labels, tiles = band_tiles(band, tile)
    for i, (lab, (y0, y1, x0, x1)) in enumerate(tiles):
        core = _solve_tile(image, trimap, band, (y0, y1, x0, x1), margin)
        if core is not None:
            sel = labels[y0:y1, x0:x1] == lab
            alpha[y0:y1, x0:x1][sel] = core[sel]
        if progress is not None:
            progress((i + 1) / len(tiles))
    return np.clip(alpha, 0.0, 1.0)
