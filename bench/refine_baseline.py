"""The refine path before full-resolution matting became one system (mattekit <= 0.3): pymatting's
closed-form solve on independent <= 512 px tiles around the band. Kept only as the baseline that
bench.highres measures today's path against in the same process; nothing in mattekit uses it.
"""

from __future__ import annotations

import contextlib
import io

import cv2
import numpy as np

from mattekit.trimap import unknown_region

TILE_PX = 512
TILE_MARGIN_PX = 16


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
    from pymatting import estimate_alpha_cf

    with contextlib.redirect_stdout(io.StringIO()):  # its ichol "PERFORMANCE WARNING"s
        return estimate_alpha_cf(image.astype(np.float64), trimap.astype(np.float64))


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


def tiled_closed_form(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    progress=None,
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
