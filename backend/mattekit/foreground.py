"""Foreground colour estimation and edge-colour decontamination.

Where alpha is 1 the foreground is the image; where alpha is 0 it does not matter
(it is multiplied by 0). Only the soft pixels need the multi-level solver
(Germer et al. 2020, pymatting `estimate_foreground_ml`), so we run it on crops
around them instead of the whole frame.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

ProgressFn = Callable[[float], None]

#: Alpha within this of 0 or 1 counts as fully transparent / opaque (below half an 8-bit step).
ALPHA_EPS = 1.0 / 512.0
#: Context kept around the soft pixels of a crop so the solver sees the nearby colours.
FOREGROUND_MARGIN_PX = 32


def soft_region(alpha: np.ndarray, eps: float = ALPHA_EPS) -> np.ndarray:
    """bool (H, W): pixels with eps < alpha < 1 - eps."""
    return (alpha > eps) & (alpha < 1.0 - eps)


def _boxes(mask: np.ndarray, margin: int) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (y0, y1, x0, x1) of mask's components grown by `margin`, overlaps merged."""
    h, w = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for lab in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[lab, :4])
        boxes.append([max(0, y - margin), min(h, y + bh + margin), max(0, x - margin), min(w, x + bw + margin)])
    merged = True
    while merged:  # few boxes in practice; quadratic merge is fine
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = [min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]  # type: ignore[misc]


def _estimate_ml(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    from pymatting import estimate_foreground_ml  # heavy import (numba), only when needed

    return estimate_foreground_ml(image.astype(np.float32), alpha.astype(np.float32))


def estimate_foreground(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    progress: ProgressFn | None = None,
    margin: int = FOREGROUND_MARGIN_PX,
) -> np.ndarray:
    """Foreground colour F with I = alpha F + (1 - alpha) B, solved only around soft pixels.

    image: float (H, W, 3) in [0, 1]; alpha: float (H, W) in [0, 1].
    progress: called with the fraction done after each crop; raise from it to cancel.
    Returns float32 (H, W, 3) in [0, 1]: the multi-level estimate (pymatting
    `estimate_foreground_ml`) on soft pixels, the image's own colour everywhere else.

    Each crop is a soft component's bounding box + `margin` px. Inside the soft region the
    result matches full-frame estimation to within a small colour error weighted by alpha
    (mean |dF| < 0.02, alpha-weighted max < 0.05 in
    tests/test_foreground.py); the multi-level solver's coarse levels differ
    slightly because they see the crop instead of the frame.
    """
    image = np.asarray(image, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape} and alpha {alpha.shape} differ in size")
    fg = image.copy()
    soft = soft_region(alpha)
    boxes = _boxes(soft, margin) if soft.any() else []
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        est = _estimate_ml(image[y0:y1, x0:x1], alpha[y0:y1, x0:x1])
        sel = soft[y0:y1, x0:x1]
        fg[y0:y1, x0:x1][sel] = est[sel]
        if progress is not None:
            progress((i + 1) / len(boxes))
    if not boxes and progress is not None:
        progress(1.0)
    return np.clip(fg, 0.0, 1.0)


def decontaminate(image: np.ndarray, alpha: np.ndarray, foreground: np.ndarray, amount: float) -> np.ndarray:
    """Replace edge colours by the estimated foreground.

    image, foreground: float (H, W, 3) in [0, 1]; alpha: float (H, W) in [0, 1];
    amount in [0, 1]: 0 keeps the image's colours, 1 uses the foreground estimate.
    Returns float32 (H, W, 4) RGBA: rgb = image + amount (foreground - image) where alpha > 0
    (the image elsewhere), a = alpha.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    image = np.asarray(image, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    foreground = np.asarray(foreground, dtype=np.float32)
    mixed = image + np.float32(amount) * (foreground - image)
    rgb = np.where((alpha > 0)[..., None], mixed, image)
    return np.concatenate([rgb, alpha[..., None]], axis=2).astype(np.float32)
