"""Classical refine: guidance -> trimap -> closed-form alpha solved only in the unknown band.

Levin et al.'s closed-form matting is one sparse linear system over the band's pixels. Its
cost grows with them, so a large photo is solved once, whole, on a working frame of at most
config.REFINE_SOLVE_PX pixels, and the answer is carried to full resolution by the model the
closed form itself assumes: alpha is locally a linear function of colour, alpha ~ a . I + b.
The a, b of each small window (the guided filter's, He et al. 2013) are enlarged and
evaluated on the full-resolution colours (He & Sun 2015), so hair finer than a working pixel
still follows the photo. One system over the whole band: no tiles, so no seams.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
import threading
import types
from pathlib import Path

import cv2
import numpy as np

from mattekit import config
from mattekit import imageops
from mattekit.imageops import ProgressFn
# The band and trimap rules have their own module; refine uses them (and keeps their old names here).
from mattekit.trimap import SOFT_HIGH, SOFT_LOW, default_band_px, guidance_to_trimap, is_trimap, near_edge, unknown_region  # noqa: F401

log = logging.getLogger(__name__)

#: Conjugate gradients stop when the residual is this fraction of the right-hand side's norm
#: (mean |change| below 1e-4 of alpha measured against a 1e-10 solve).
CG_RTOL = 1e-5
CG_MAX_ITER = 5000
#: Jacobi-preconditioned iterations tried first: a narrow band converges within them or soon after
#: (~0.2-0.5 s at 50 k unknowns); a wide, weakly anchored one (Select Subject's uncertain regions
#: take ~1000-1700) switches to an incomplete-Cholesky preconditioner, 1.3-2x faster there
#: (measured on feral cats).
JACOBI_MAX_ITER = 250
#: The incomplete Cholesky's drop threshold and first diagonal shift (pymatting's: 1e-4 and 0,
#: which on these systems fails once and retries, then keeps 3 M entries for 40 k unknowns).
#: Coarser factors need a few more iterations after Jacobi's 250 but cost half the time: on 9
#: Select Subject photos that reached it (feral cats, Pets) 11.7 s vs 18.5 s of alpha in total,
#: the same tolerance reached (max |change| of alpha 0.05, mean 2e-4).
ICHOL_DISCARD = 1e-3
ICHOL_SHIFTS = (1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
#: The guided filter that carries the working alpha up: window radius (working px) and ridge.
GUIDED_RADIUS = 1
GUIDED_EPS = 1e-4


def _work_trimap(trimap: np.ndarray, size: tuple[int, int], progress: ProgressFn | None = None) -> np.ndarray:
    """The trimap on a smaller frame: known only where every pixel under a working pixel is known alike.

    The indicators are uint16 (65535 = known), half the memory traffic of float32 at 100 MP: an area
    average short of all-known is at most 65535 (1 - 1/n) and rounds to 65535 only for n > 131070
    pixels under one working pixel, far more than any working frame's (< 5000 at MAX_PIXELS).
    """
    full = np.uint16(65535)
    out = np.full(size, 0.5, np.float32)
    h, w = trimap.shape
    indicator = np.empty((h, w), np.uint16)  # one buffer for both labels, filled in strips (checkpoints)
    for k, (test, value) in enumerate(((np.greater_equal, 0.9), (np.less_equal, 0.1))):
        def fill(y0: int, y1: int) -> None:
            np.multiply(test(trimap[y0:y1], np.float32(value)), full, out=indicator[y0:y1], casting="unsafe")

        imageops.run_strips(h, config.STRIP_PX // max(1, w), fill, threads=config.THREADS,
                            progress=None if progress is None else (lambda f: progress((k + 0.8 * f) / 2)))
        small = cv2.resize(indicator, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        out[small == full] = 1.0 if value > 0.5 else 0.0
        if progress is not None:
            progress((k + 1) / 2)
    return out


def _anchored(unknown: np.ndarray, known: np.ndarray) -> np.ndarray:
    """bool (H, W): unknown pixels whose 8-connected component is coupled to some known pixel.

    Known pixels enter the system only through the 3x3 windows they share with unknown pixels
    (<= 2 px apart); a component that reaches none has no unique solution.
    """
    n, labels = cv2.connectedComponents(unknown.astype(np.uint8), connectivity=8)
    near_known = cv2.dilate(known.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ok = np.zeros(n, bool)
    ok[np.unique(labels[near_known & unknown])] = True
    ok[0] = False  # label 0: the known pixels themselves
    return ok[labels]


def solve_closed_form(
    image: np.ndarray, trimap: np.ndarray, initial: np.ndarray, progress: ProgressFn | None = None
) -> np.ndarray:
    """Closed-form alpha (Levin et al. 2008) of every unknown pixel, as one system.

    image: float (H, W, 3) in [0, 1]. trimap: float (H, W) in {0, 0.5, 1}.
    initial: float (H, W) alpha to start from (the guidance); also the answer for unknown
        pixels that no known pixel anchors.
    progress: called with the fraction done; raise from it to cancel (checked every few ms).
    Returns float32 (H, W) alpha in [0, 1]; known pixels copied from the trimap.

    The Laplacian is pymatting's (3x3 windows); the system over the unknown pixels is solved
    by conjugate gradients started from `initial`, Jacobi-preconditioned for JACOBI_MAX_ITER
    iterations (2-3x faster than pymatting's incomplete Cholesky on a narrow band), then with
    pymatting's incomplete Cholesky; interruptible between iterations.
    """
    cf_laplacian = pymatting_module("laplacian.cf_laplacian").cf_laplacian
    cg = pymatting_module("solver.cg").cg

    h, w = trimap.shape
    known = ~unknown_region(trimap)
    alpha = np.where(trimap >= 0.9, 1.0, 0.0).astype(np.float32)
    free = np.asarray(initial, np.float32)
    alpha[~known] = np.clip(free[~known], 0, 1)
    solve = _anchored(~known, known)
    if not solve.any() or min(h, w) < 3:  # the Laplacian needs 3x3 windows
        return alpha
    # Crop to the solved pixels plus the 2 px that share windows with them: the same system.
    ys, xs = np.nonzero(solve)
    y0, y1, x0, x1 = max(0, ys.min() - 2), min(h, ys.max() + 3), max(0, xs.min() - 2), min(w, xs.max() + 3)
    crop = (slice(y0, y1), slice(x0, x1))
    is_known = ~solve[crop]
    lap = cf_laplacian(np.asarray(image[crop], np.float64), is_known=is_known)
    u = np.flatnonzero(~is_known)
    fg = np.flatnonzero(is_known & (trimap[crop] >= 0.9))
    rows = lap[u]
    lap_u = rows[:, u].tocsr()
    rhs = -(rows[:, fg] @ np.ones(len(fg))) if len(fg) else np.zeros(len(u))
    if progress is not None:
        progress(0.2)
    if not rhs.any():  # anchored by background only: alpha 0 is the exact solution
        alpha[crop][~is_known] = 0.0
        return alpha
    inv_diag = 1.0 / lap_u.diagonal()
    norm_b = float(np.linalg.norm(rhs))
    x0 = free[crop].ravel()[u].astype(np.float64)
    latest = [x0]
    first: list[float] = []
    last = [0.0]
    done = [0.0]
    goal_r = CG_RTOL * norm_b

    def step(A, x, b, norm_b, r, norm_r) -> None:  # noqa: N803 - pymatting's callback signature
        latest[0] = x
        if not first:
            first.append(max(norm_r, 1e-300))
        last[0] = max(norm_r, 1e-300)
        if progress is None:
            return
        # Fraction of the way, in log residual, from the first residual to the goal (CG's residual
        # is not monotone, so the reported fraction is its running maximum).
        goal = math.log(first[0] / goal_r) if first[0] > goal_r else 1.0
        done[0] = max(done[0], min(1.0, math.log(first[0] / last[0]) / goal))
        progress(0.2 + 0.8 * done[0])

    jacobi = lambda r: inv_diag * r  # noqa: E731
    try:
        x = cg(lap_u, rhs, x0=x0, rtol=CG_RTOL, maxiter=JACOBI_MAX_ITER, M=jacobi, callback=step)
    except ValueError:
        # Not converged. Close to it at the rate seen so far (the 12 MP hair composite: 19 more
        # projected, 36 taken)? Then Jacobi finishes. Otherwise the band is wide and weakly
        # anchored, Jacobi's residual stalls (the sample cat: 231 projected, 937 taken) and the
        # factorisation pays for itself.
        rate = math.log(first[0] / last[0]) / JACOBI_MAX_ITER if first else 0.0
        needed = math.log(last[0] / goal_r) / rate if rate > 0 else math.inf
        log.debug("closed form: %d unknowns, Jacobi projected to need %.0f more iterations", len(u), needed)
        pre = jacobi if needed <= JACOBI_MAX_ITER / 2 else _ichol(lap_u)
        try:
            x = cg(lap_u, rhs, x0=latest[0], rtol=CG_RTOL, maxiter=CG_MAX_ITER, M=pre, callback=step)
        except ValueError:  # the last iterate is still the best there is
            log.warning("closed-form solve stopped after %d iterations before converging", CG_MAX_ITER)
            x = latest[0]
    alpha[crop][~is_known] = np.clip(x, 0, 1)
    return alpha


def _ichol(matrix):
    """pymatting's incomplete-Cholesky preconditioner; its console warnings (dozens per photo when it
    retries with a larger shift) become debug lines. They are caught by giving pymatting's module
    its own `print`, not by redirecting sys.stdout, which would silence every other thread (the
    daemon's I/O thread, progress bars) while this runs."""
    module = pymatting_module("preconditioner.ichol")  # the module: its package exports a function by that name
    module.print = _pymatting_print  # module globals shadow the builtin, for that module only
    return module.ichol(matrix, discard_threshold=ICHOL_DISCARD, shifts=list(ICHOL_SHIFTS))


def pymatting_module(name: str) -> types.ModuleType:
    """pymatting's submodule `name` (e.g. "solver.cg"), without running pymatting's package
    `__init__` when that has not run yet: it imports every one of pymatting's modules and loads
    each of their eagerly compiled numba kernels, 1.1 s of a fresh daemon's first request, for the
    three self-contained modules refine uses. A later `import pymatting` finds them in sys.modules
    and reuses them. Falls back to a plain import if the package is laid out otherwise.

    Locked: the module is in sys.modules before it has run, so a second thread (the daemon's warm-up
    beside an in-process job) would otherwise get it half-initialised."""
    with _PYMATTING_LOCK:
        return _pymatting_module(name)


_PYMATTING_LOCK = threading.RLock()


def _pymatting_module(name: str) -> types.ModuleType:
    full = f"pymatting.{name}"
    if full in sys.modules or "pymatting" in sys.modules:
        return importlib.import_module(full)
    top = importlib.util.find_spec("pymatting")  # locates the package without running it
    path = Path(next(iter(top.submodule_search_locations or [""])), *name.split(".")).with_suffix(".py") if top else None
    if path is None or not path.is_file():
        return importlib.import_module(full)
    spec = importlib.util.spec_from_file_location(full, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
    return module


def _pymatting_print(*args, **kwargs) -> None:
    log.debug("pymatting: %s", " ".join(" ".join(map(str, args)).split())[:300])


def warm_up_ichol() -> None:
    """Load (or compile, the first time) the incomplete-Cholesky kernels on a tiny system."""
    import scipy.sparse

    n = 8
    matrix = scipy.sparse.diags([-np.ones(n - 1), 2.1 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csc")
    _ichol(matrix)(np.ones(n))


def carry_up(
    image: np.ndarray, band: np.ndarray, work_image: np.ndarray, work_alpha: np.ndarray,
    out: np.ndarray, progress: ProgressFn | None = None,
) -> None:
    """Write alpha into `out` (H, W) at the band's pixels from a working-resolution solve.

    image: float (H, W, 3), the full-resolution colours. band: bool (H, W), pixels to write.
    work_image, work_alpha: the working frame's colours (h, w, 3) and alpha (h, w).
    The guided filter's a, b (working resolution) are enlarged one strip of rows at a time and
    alpha = a . I + b is evaluated on the full-resolution colours: memory is one strip, not a frame.
    """
    a, b = imageops.guided_coefficients(work_image, work_alpha, GUIDED_RADIUS, GUIDED_EPS)
    ab = np.concatenate([a, b[..., None]], axis=-1)
    h, w = band.shape

    def strip(y0: int, y1: int) -> None:
        cols = np.flatnonzero(band[y0:y1].any(axis=0))
        if len(cols):
            x0, x1 = int(cols[0]), int(cols[-1]) + 1
            coef = imageops.sample_linear(ab, (y0, y1), (x0, x1), (h, w))
            q = np.einsum("yxc,yxc->yx", coef[..., :3], image[y0:y1, x0:x1]) + coef[..., 3]
            sel = band[y0:y1, x0:x1]
            out[y0:y1, x0:x1][sel] = np.clip(q[sel], 0.0, 1.0)

    imageops.run_strips(h, config.STRIP_PX // max(1, w), strip, progress=progress, threads=config.THREADS)


def closed_form_in_band(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    progress: ProgressFn | None = None,
    fallback: np.ndarray | None = None,
    solve_px: int | None = None,
    solve_unknown: int | None = None,
) -> np.ndarray:
    """Closed-form matting in the trimap's unknown band, at any size.

    image: float (H, W, 3) in [0, 1]. trimap: float (H, W) in {0, 0.5, 1}.
    progress: called with the fraction done (0..1]; raise from it to cancel (the exception
        propagates, nothing is returned). Called at least every few hundred ms at any size.
    fallback: float (H, W) alpha the solve starts from (e.g. the guidance), kept for unknown
        pixels that no known pixel anchors; 0.5 when omitted.
    solve_px, solve_unknown: most pixels, and most unknown pixels, of the working frame (default
        config.REFINE_SOLVE_PX / REFINE_SOLVE_UNKNOWN); a photo with more is solved on a smaller
        frame that fits both and carried up (`carry_up`).
    Returns float32 (H, W) alpha in [0, 1]; known pixels are copied from the trimap.
    """
    trimap = np.asarray(trimap, dtype=np.float32)
    h, w = trimap.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image {image.shape} and trimap {trimap.shape} differ in size")
    report = progress or (lambda f: None)
    # band and the known alpha in strips: single full-frame passes take ~1 s each at 100 MP
    band = np.empty((h, w), bool)
    alpha = np.empty((h, w), np.float32)

    def split(y0: int, y1: int) -> None:
        band[y0:y1] = unknown_region(trimap[y0:y1])
        alpha[y0:y1] = trimap[y0:y1] >= 0.9

    imageops.run_strips(h, config.STRIP_PX // max(1, w), split, threads=config.THREADS)
    report(0.0)
    fb = np.full((h, w), 0.5, np.float32) if fallback is None else np.asarray(fallback, np.float32)
    n_unknown = int(np.count_nonzero(band))
    if not n_unknown:
        report(1.0)
        return alpha
    scale = min(1.0, math.sqrt((solve_px or config.REFINE_SOLVE_PX) / (h * w)),
                math.sqrt((solve_unknown or config.REFINE_SOLVE_UNKNOWN) / n_unknown))
    if scale == 1.0:
        return solve_closed_form(image, trimap, fb, progress=report)
    # Each full-frame pass below takes ~0.5 s at 100 MP: a checkpoint after each.
    size = (max(3, round(h * scale)), max(3, round(w * scale)))
    work_image = imageops.resize_area(image, size)
    report(0.02)
    work_trimap = _work_trimap(trimap, size, progress=lambda f: report(0.02 + 0.02 * f))
    report(0.04)
    work_alpha = solve_closed_form(work_image, work_trimap, imageops.resize_area(fb, size),
                                   progress=lambda f: report(0.05 + 0.6 * f))
    report(0.66)
    carry_up(image, band, work_image, work_alpha, alpha, progress=lambda f: report(0.66 + 0.34 * f))
    return alpha
