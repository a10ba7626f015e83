"""Rough selection -> the subject it means: Refine Selection's first stage.

A person's lasso is loose (drawn around the subject, some way off its edge), wanders, or cuts
into the subject here and there; a rectangle means "the object in here". The band solve only
moves an edge inside a thin band, so this stage first finds the subject's real outline from image
evidence, and the band solve then refines that outline at full resolution.

The evidence is a colour model and a graph cut (OpenCV's GrabCut, Rother et al. 2004) seeded by
the selection, run on a working-size crop of each separate blob of the selection:
- far outside the selection: background; just outside it (`near_px`): probably background, so a
  lasso that cuts into the subject can grow back out to the real edge;
- inside: probably subject;
- a rectangle (a blob that fills its bounding box): outside it is background and a subject model's
  output on the crop (where one is installed) says which of the inside is probably background.
Each blob is one object, found in its own region. A selection whose found outline stays within
the band of the drawn one was already tight: it is kept as drawn, so a good selection never
gets worse.

All functions take float32 (H, W) masks in [0, 1] (>= 0.5 selected) and float32 (H, W, 3)
images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from mattekit import config
from mattekit.imageops import ProgressFn
from mattekit.trimap import selection_crop

#: GrabCut runs on each blob's crop at most this many px on its long side (the band solve restores
#: full resolution; GrabCut's time grows with the pixels, ~0.1 s per iteration here at 512 px).
WORKING_SIDE = 512
#: GrabCut iterations at most (one per call, so a cancel is seen between them) ...
ITERATIONS = 5
#: ... stopping early once an iteration changes under this fraction of the crop's labels.
SETTLED_FRACTION = 0.002
#: Outside the lasso within this fraction of the image's short side is only probably background (a
#: hand that crosses the edge strays a few % of it inside).
NEAR_FRACTION = 0.03
#: A selection drawn near the edge (the first, unconstrained cut moved it by under a band) is cut again
#: with everything inside deeper than this fraction of the blob's short side surely subject: a lasso
#: that crosses the edge cuts in by a few % at most, and the colour model alone gives up parts whose
#: colours the background shares. A loose lasso's inside is not constrained so (between two cats is
#: background).
INNER_FRACTION = 0.08
#: Whether a lasso's crop also gets the subject model's prior (a rectangle always does).
LASSO_PRIOR = False
#: A blob that covers at least this fraction of its bounding box is a rectangle: "the object in here".
BOX_FILL = 0.97
#: A cut that keeps under this fraction of a blob's selected area lost the subject (its colours are the
#: background's): a loose lasso 8 % of the short side around a subject a tenth of it across still holds
#: ~15 % subject. The blob then falls back to the subject model's answer in it, else to the drawing.
MIN_FOUND_FRACTION = 0.1
#: Blobs under this fraction of the frame are stray marks, not objects.
MIN_BLOB_FRACTION = 0.0005
#: A selection whose found outline moves it by at most this fraction of the band on average was drawn
#: near the edge: it is kept, and where the found subject disagrees with it is left to the band solve
#: (on synthetic-val the found outline of exact masks moves 0-0.3 band, crossing lassos 0.2-0.55).
TIGHT_MOVE = 0.5

Subject = Callable[[np.ndarray], np.ndarray]
"""A subject model: float32 (h, w, 3) crop in [0, 1] -> its alpha (h, w) in [0, 1]."""


class Cancelled(Exception):
    """Raised by a progress callback to stop the stage."""


@dataclass
class Found:
    """What the stage found: the subject's mask at full resolution and how it read the selection."""

    mask: np.ndarray  # float32 (H, W) in {0, 1}
    kind: str  # "tight" (kept as drawn) | "lasso" | "box" | "mixed"
    moved_px: float  # mean distance between the drawn and the found outline, full-resolution px
    blobs: int
    notes: list[str] = field(default_factory=list)
    #: bool (H, W) or None: for a selection drawn near the edge ("tight"), where the found subject
    #: disagrees with it: unknown for the band solve, which decides there from the image.
    disputed: np.ndarray | None = None


def is_box(blob: np.ndarray) -> bool:
    """Whether a binary blob (H, W) is a rectangle drawn around an object: it fills its own bounding
    box, and that box meets at most two sides of the frame (a band across the frame, such as "the
    right half", is a region, not a box around something) or is the whole frame."""
    x, y, w, h = cv2.boundingRect(blob.astype(np.uint8))
    H, W = blob.shape
    sides = (x == 0) + (y == 0) + (x + w == W) + (y + h == H)
    return w * h > 0 and sides in (0, 1, 2, 4) and np.count_nonzero(blob) >= BOX_FILL * w * h


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """float32 (H, W): 1 inside the box (x, y, width, height), 0 elsewhere. The box must lie in the frame
    with a positive area (`check_box`)."""
    check_box(shape, box)
    x, y, w, h = box
    out = np.zeros(shape, np.float32)
    out[y:y + h, x:x + w] = 1
    return out


def check_box(shape: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """ValueError naming the problem when `box` (x, y, width, height) is not a positive-area box
    within an (H, W) frame."""
    if len(box) != 4 or not all(isinstance(v, (int, np.integer)) for v in box):
        raise ValueError(f"box must be four integers X,Y,WIDTH,HEIGHT, got {box!r}")
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box {x},{y},{w},{h} has no area (width and height must be positive)")
    H, W = shape
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise ValueError(f"box {x},{y},{w},{h} is outside the {W}x{H} image")


def moved_px(drawn: np.ndarray, found: np.ndarray) -> float:
    """Mean distance in px between two binary masks' outlines: their disagreeing area over the drawn
    outline's length."""
    d = drawn.astype(np.uint8)
    contours, _ = cv2.findContours(d, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return float(np.count_nonzero(d != found.astype(np.uint8))) / max(1.0, perimeter)


def _blobs(selected: np.ndarray) -> list[np.ndarray]:
    """The selection's separate blobs (8-connected), stray marks dropped: bool (H, W) each."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(selected.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= MIN_BLOB_FRACTION * selected.size]
    if not keep and n > 1:  # only small marks: the largest is still what the person selected
        keep = [1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return [labels == i for i in keep]


def grabcut(image: np.ndarray, seeds: np.ndarray, iterations: int = ITERATIONS, progress: ProgressFn | None = None,
            settled: float | None = None) -> np.ndarray:
    """OpenCV's GrabCut from a seed map, one iteration per call so `progress` (raise to cancel)
    runs between them; it stops early once an iteration changes at most `settled` (default
    `SETTLED_FRACTION`; 0: only a fixed point, i.e. plain GrabCut) of the labels.

    image: float32 (h, w, 3) in [0, 1]; seeds: uint8 (h, w) of cv2.GC_BGD / GC_FGD / GC_PR_BGD / GC_PR_FGD.
    Returns bool (h, w): the subject. A seed map with no background or no subject returns its own
    probable labels (GrabCut needs both to fit its two colour models).
    """
    probable = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    if probable.all() or not probable.any():
        return probable
    img8 = np.ascontiguousarray(np.clip(image[..., :3] * 255 + 0.5, 0, 255).astype(np.uint8)[..., ::-1])
    mask = seeds.copy()
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from this thread's RNG: the same answer for the same input
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    settled = SETTLED_FRACTION if settled is None else settled
    before = probable
    for i in range(iterations):
        cv2.grabCut(img8, mask, None, bgd, fgd, 1, cv2.GC_INIT_WITH_MASK if i == 0 else cv2.GC_EVAL)
        now = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        done = i > 0 and np.count_nonzero(now != before) <= settled * now.size
        before = now
        if progress is not None:
            progress(1.0 if done else (i + 1) / iterations)
        if done:
            break
    return before


def seed_map(inside: np.ndarray, *, box: bool, near_px: float, inner_px: float, prior: np.ndarray | None = None) -> np.ndarray:
    """GrabCut's seeds for one blob's crop. inside: bool (h, w), the selection; prior: a subject
    model's alpha (h, w) in [0, 1] on the crop, or None.

    Outside: background beyond `near_px`, probably background within it (none for a box, whose
    outside is background). Inside: probably subject; for a box with a prior, probably background
    where the prior says background.
    """
    seeds = np.full(inside.shape, cv2.GC_BGD, np.uint8)
    if not box and near_px > 0:
        outside = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
        seeds[outside <= near_px] = cv2.GC_PR_BGD
    seeds[inside] = cv2.GC_PR_FGD
    if not box and inner_px > 0:
        depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
        seeds[depth > inner_px] = cv2.GC_FGD
    if prior is not None:
        seeds[inside & (prior < 0.5) & (seeds != cv2.GC_FGD)] = cv2.GC_PR_BGD
    return seeds


def find_subject(image: np.ndarray, guidance: np.ndarray, band_px: int, *, subject: Subject | None = None,
                 progress: ProgressFn | None = None) -> Found:
    """The subject a rough selection means, at full resolution (see `_find`): a first cut with no
    sure subject, and for a selection that cut moves by under a band a second with the deep inside
    sure (`INNER_FRACTION`). A first cut that lost the subject (a note says so) is the answer: the
    drawing is kept rather than cut again around a core forced to be subject."""
    half = None if progress is None else (lambda f: progress(0.5 * f))
    first = _find(image, guidance, band_px, subject=subject, progress=half, inner=0.0)
    if first.kind == "box" or first.moved_px > band_px or first.notes or INNER_FRACTION <= 0:
        if progress is not None:
            progress(1.0)
        return first
    return _find(image, guidance, band_px, subject=subject, inner=INNER_FRACTION,
                 progress=None if progress is None else (lambda f: progress(0.5 + 0.5 * f)))


def _find(image: np.ndarray, guidance: np.ndarray, band_px: int, *, subject: Subject | None,
          progress: ProgressFn | None, inner: float) -> Found:
    """The subject a rough selection means, at full resolution.

    image: float32 (H, W, 3) in [0, 1]; guidance: float32 (H, W) in [0, 1] (>= 0.5 selected), not empty;
    band_px: the band the solve after this stage will use (a found outline within half of it of the
    drawn one keeps the drawing); subject: a subject model run on each rectangle's crop, or None.
    progress: called with the fraction done; raise from it to cancel.
    Returns `Found` (mask float32 {0, 1}).
    """
    selected = np.asarray(guidance) >= 0.5
    if not selected.any():
        raise ValueError("the selection is empty")
    H, W = selected.shape
    blobs = _blobs(selected)
    found = np.zeros((H, W), bool)
    kinds, notes = [], []
    for b, blob in enumerate(blobs):
        y0, y1, x0, x1 = selection_crop(blob, config.ROUGH_CONTEXT)
        scale = min(1.0, WORKING_SIDE / max(y1 - y0, x1 - x0))
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        crop = image[y0:y1, x0:x1]
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) if scale < 1 else crop
        inside = cv2.resize(blob[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        box = is_box(blob)
        kinds.append("box" if box else "lasso")
        bx, by, bw, bh = cv2.boundingRect(inside.astype(np.uint8))
        prior = None
        if subject is not None and (box or LASSO_PRIOR):
            prior = np.zeros(inside.shape, np.float32)
            prior[by:by + bh, bx:bx + bw] = subject(small[by:by + bh, bx:bx + bw])
        seeds = seed_map(inside, box=box, near_px=NEAR_FRACTION * scale * min(H, W),
                         inner_px=inner * min(bw, bh), prior=prior)
        part = None if progress is None else (lambda f, b=b: progress((b + f) / len(blobs)))
        got = grabcut(small, seeds, progress=part)
        floor = MIN_FOUND_FRACTION * np.count_nonzero(inside)
        if np.count_nonzero(got) < floor:
            model = None if prior is None else inside & (prior >= 0.5)
            got = model if model is not None and np.count_nonzero(model) >= floor else inside
            notes.append("the subject could not be told from its background by colour: "
                         + ("the subject model's outline was used" if got is model else "the selection was kept as drawn"))
        if scale < 1:
            got = cv2.resize(got.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5
        found[y0:y1, x0:x1] |= got
    notes = list(dict.fromkeys(notes))  # one line per problem, not per blob
    moved = moved_px(selected, found)
    kind = kinds[0] if len(set(kinds)) == 1 else "mixed"
    if not found.any():
        return Found(selected.astype(np.float32), "tight", 0.0, len(blobs), ["no subject was found in the selection: it was kept as drawn"])
    if "box" not in kinds and moved <= TIGHT_MOVE * band_px:
        return Found(selected.astype(np.float32), "tight", moved, len(blobs), notes, disputed=found != selected)
    return Found(found.astype(np.float32), kind, moved, len(blobs), notes)
