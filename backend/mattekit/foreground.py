"""Foreground colour estimation and edge-colour decontamination.

Where alpha is 1 the foreground is the image; where alpha is 0 it does not matter
(it is multiplied by 0). Only the soft pixels need the multi-level solver
(Germer et al. 2020, pymatting `estimate_foreground_ml`), so our numba port of it
(`estimate_foreground_ml_band`) iterates only pixels near them: the work follows the
band's area, not the photo's, at the same or better accuracy (docs/benchmarks.md,
"High resolution and speed"). Every pass of the solver runs on
several threads (red-black order, so the result does not depend on their number); optionally
the frame is cut into tiles to bound memory, and then the tiles run on the threads.
"""

from __future__ import annotations

import mmap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np

from . import config, imageops
from .imageops import ProgressFn


#: Alpha within this of 0 or 1 counts as fully transparent / opaque (below half an 8-bit step).
ALPHA_EPS = 1.0 / 512.0
#: Context kept around the soft pixels of a crop so the solver sees the nearby colours.
FOREGROUND_MARGIN_PX = 32
#: How often a running solve reports progress (and so how soon a cancel is seen), seconds.
PROGRESS_INTERVAL_S = 0.2
#: Threads running tiles at once (the machine's cores; tiles are independent).
FOREGROUND_THREADS = config.THREADS


def soft_region(alpha: np.ndarray, eps: float = ALPHA_EPS) -> np.ndarray:
    """bool (H, W): pixels with eps < alpha < 1 - eps."""
    return (alpha > eps) & (alpha < 1.0 - eps)


def soft_tiles(soft: np.ndarray, tile: int) -> list[tuple[int, int, int, int]]:
    """Cores (y0, y1, x0, x1) of the `tile`-px grid cells holding at least one True pixel of `soft`."""
    h, w = soft.shape
    gh, gw = -(-h // tile), -(-w // tile)
    # Any-reduce per grid cell without a full-frame copy: pad only the ragged last row/column of cells.
    cells = np.zeros((gh, gw), bool)
    hh, ww = (h // tile) * tile, (w // tile) * tile
    if hh and ww:
        cells[: h // tile, : w // tile] = soft[:hh, :ww].reshape(h // tile, tile, w // tile, tile).any(axis=(1, 3))
    for gy in range(gh):
        for gx in range(gw):
            if (gy * tile >= hh or gx * tile >= ww) and soft[gy * tile : (gy + 1) * tile, gx * tile : (gx + 1) * tile].any():
                cells[gy, gx] = True
    return [(gy * tile, min(h, (gy + 1) * tile), gx * tile, min(w, (gx + 1) * tile)) for gy, gx in zip(*np.nonzero(cells))]


# --------------------------------------------------------------------------- band-limited multi-level solver
#
# The solver is a Python driver over small numba kernels, each working on a range of rows (or
# columns) so that the driver can run `threads` ranges at once (the kernels release the GIL). The
# iterations use red-black ordering: a pixel's four neighbours have the other colour, so all pixels
# of one colour update in parallel with a deterministic result (pymatting's raster-order
# Gauss-Seidel converges to the same fixed point, but cannot be split).

_KERNELS = None


def _kernels():
    """The numba-compiled pieces of the band-limited solver (compiled once, cached on disk)."""
    global _KERNELS
    if _KERNELS is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def sums(image, alpha, out, y0, y1):  # pragma: no cover - numba
            """out[y] = sum of foreground rgb, count, sum of background rgb, count, for rows [y0, y1)
            (per row, so the total does not depend on how the rows were split)."""
            for y in range(y0, y1):
                for x in range(image.shape[1]):
                    av = alpha[y, x]
                    if av > 0.9:
                        for c in range(3):
                            out[y, c] += image[y, x, c]
                        out[y, 3] += 1
                    if av < 0.1:
                        for c in range(3):
                            out[y, 4 + c] += image[y, x, c]
                        out[y, 7] += 1

        @njit(cache=True, nogil=True)
        def initialise(image, alpha, my, mx, py, px, F_prev, B_prev, F, B, active, last_level, y0, y1):  # pragma: no cover - numba
            """Start from the coarser level; settled pixels take the exact solution for alpha in {0, 1}
            (the observed colour is the layer they show), the hidden layer keeps its value."""
            w = F.shape[1]
            for y in range(y0, y1):
                ys = my[y]
                yp = py[y]
                for x in range(w):
                    if last_level and not active[y, x]:
                        continue  # never read: the final pass writes F there, B is not returned
                    xs = mx[x]
                    xp = px[x]
                    for c in range(3):
                        F[y, x, c] = F_prev[yp, xp, c]
                        B[y, x, c] = B_prev[yp, xp, c]
                    if not active[y, x]:
                        if alpha[ys, xs] >= 0.5:
                            for c in range(3):
                                F[y, x, c] = image[ys, xs, c]
                        else:
                            for c in range(3):
                                B[y, x, c] = image[ys, xs, c]

        @njit(cache=True, nogil=True)
        def sweep(image, alpha, my, mx, F, B, active, last_level, regularization, gradient_weight, parity, y0, y1):  # pragma: no cover - numba
            """One half of a red-black iteration: update the active pixels with (x + y) % 2 == parity."""
            h, w = F.shape[0], F.shape[1]
            for y in range(y0, y1):
                ys = my[y]
                for x in range((y + parity) % 2, w, 2):
                    if not active[y, x]:
                        continue
                    if last_level and not (active[y, max(0, x - 1)] and active[y, min(w - 1, x + 1)]
                                           and active[max(0, y - 1), x] and active[min(h - 1, y + 1), x]):
                        continue  # on the rim: its neighbours outside were not initialised
                    xs = mx[x]
                    a0 = alpha[ys, xs]
                    a1 = 1.0 - a0
                    a00 = a0 * a0
                    a01 = a0 * a1
                    a11 = a1 * a1
                    f0 = a0 * image[ys, xs, 0]
                    f1 = a0 * image[ys, xs, 1]
                    f2 = a0 * image[ys, xs, 2]
                    g0 = a1 * image[ys, xs, 0]
                    g1 = a1 * image[ys, xs, 1]
                    g2 = a1 * image[ys, xs, 2]
                    for d in range(4):
                        x2 = x
                        y2 = y
                        if d == 0:
                            x2 = max(0, x - 1)
                        elif d == 1:
                            x2 = min(w - 1, x + 1)
                        elif d == 2:
                            y2 = max(0, y - 1)
                        else:
                            y2 = min(h - 1, y + 1)
                        da = regularization + gradient_weight * abs(a0 - alpha[my[y2], mx[x2]])
                        a00 += da
                        a11 += da
                        f0 += da * F[y2, x2, 0]
                        f1 += da * F[y2, x2, 1]
                        f2 += da * F[y2, x2, 2]
                        g0 += da * B[y2, x2, 0]
                        g1 += da * B[y2, x2, 1]
                        g2 += da * B[y2, x2, 2]
                    inv = 1.0 / (a00 * a11 - a01 * a01)
                    b00 = inv * a11
                    b01 = -inv * a01
                    b11 = inv * a00
                    F[y, x, 0] = max(0.0, min(1.0, b00 * f0 + b01 * g0))
                    F[y, x, 1] = max(0.0, min(1.0, b00 * f1 + b01 * g1))
                    F[y, x, 2] = max(0.0, min(1.0, b00 * f2 + b01 * g2))
                    B[y, x, 0] = max(0.0, min(1.0, b01 * f0 + b11 * g0))
                    B[y, x, 1] = max(0.0, min(1.0, b01 * f1 + b11 * g1))
                    B[y, x, 2] = max(0.0, min(1.0, b01 * f2 + b11 * g2))

        @njit(cache=True, nogil=True)
        def finish(image, alpha, lo, eps, F, y0, y1):  # pragma: no cover - numba
            """Outside lo < alpha < 1 - eps the answer is the image itself (exact for alpha = 1, and what
            decontamination keeps where alpha = 0): one pass here saves a masked copy after."""
            for y in range(y0, y1):
                for x in range(F.shape[1]):
                    av = alpha[y, x]
                    if not (av > lo and av < 1.0 - eps):
                        for c in range(3):
                            F[y, x, c] = image[y, x, c]

        @njit(cache=True, nogil=True)
        def emit(image, alpha, F, lo, eps, amount, layer_alpha, rgb_at, scale, out, y0, y1):  # pragma: no cover - numba
            """The decontaminated RGBA straight into an integer buffer: rgb = image + amount (F - image)
            on the soft pixels (F itself when amount is 1; F is read nowhere else), the image
            elsewhere; a = alpha (times the layer's alpha when it has one); each value clipped to
            [0, 1], times `scale`, rounded half up -- exactly `imageops.from_float` of the float path."""
            half = np.float32(0.5)
            one = np.float32(1.0)
            zero = np.float32(0.0)
            has_layer = layer_alpha.shape[0] == alpha.shape[0]
            for y in range(y0, y1):
                for x in range(alpha.shape[1]):
                    av = alpha[y, x]
                    soft = av > lo and av < one - eps
                    for c in range(3):
                        v = image[y, x, c]
                        if soft:
                            v = F[y, x, c] if amount == one else (F[y, x, c] - v) * amount + v
                        out[y, x, rgb_at[c]] = np.floor(max(zero, min(one, v)) * scale + half)
                    if has_layer:
                        av = av * layer_alpha[y, x]
                    out[y, x, 3] = np.floor(max(zero, min(one, av)) * scale + half)

        _KERNELS = {"sums": sums, "initialise": initialise, "sweep": sweep, "finish": finish, "emit": emit}
    return _KERNELS


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: Below this many pixels a level's pass runs on the calling thread (a hand-off costs more).
PARALLEL_MIN_PX = 1 << 16


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """[0, n) cut into `parts` contiguous ranges of near-equal size (fewer if n is small)."""
    parts = max(1, min(parts, n))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def _in_parallel(fn: Callable[..., object], args: tuple, n: int, threads: int) -> None:
    """fn(*args, lo, hi) for `threads` ranges covering [0, n): the first on this thread, the rest on a
    shared pool (the kernels release the GIL)."""
    global _POOL
    spans = _ranges(n, threads)
    if len(spans) == 1:
        fn(*args, *spans[0])
        return
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < len(spans) - 1:  # noqa: SLF001 - grow once, rarely
            _POOL = ThreadPoolExecutor(max(len(spans) - 1, FOREGROUND_THREADS - 1), thread_name_prefix="foreground-pool")
        pool = _POOL
    futures = [pool.submit(fn, *args, lo, hi) for lo, hi in spans[1:]]
    try:
        fn(*args, *spans[0])
    finally:
        for f in futures:  # never leave a pass running on the pool after we return
            f.result()


def _sparse_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array whose memory is committed page by page as it is touched,
    in small pages: numpy asks the kernel for transparent huge pages on large arrays, and then
    one touched pixel commits and zeroes 2 MB around it."""
    n = int(np.prod(shape)) * 4
    buf = mmap.mmap(-1, max(n, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, np.float32, count=n // 4).reshape(shape)


def _index_map(n: int, n_from: int) -> np.ndarray:
    """int64 (n,): nearest-neighbour index of each of n cells into n_from cells (floor(i n_from / n))."""
    return np.minimum(n_from - 1, np.arange(n, dtype=np.int64) * n_from // n)


def estimate_foreground_ml_band(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    eps: float = ALPHA_EPS,
    reach: int = 5,
    dense_px: int = 1 << 18,
    regularization: float = 1e-5,
    n_small_iterations: int = 10,
    n_big_iterations: int = 2,
    small_size: int = 32,
    gradient_weight: float = 1.0,
    progress: ProgressFn | None = None,
    threads: int = FOREGROUND_THREADS,
    out: np.ndarray | None = None,
    fill_settled: bool = True,
    soft: np.ndarray | None = None,
) -> np.ndarray:
    """Germer et al.'s multi-level foreground estimation, updating only pixels near soft alpha.

    image: float (h, w, 3) in [0, 1]; alpha: float (h, w) in [0, 1].
    Same pyramid, update rule and defaults as pymatting's `estimate_foreground_ml`, with two
    differences. (1) At every level with more than `dense_px` pixels only pixels within `reach` px
    of a pixel with 0 < alpha < 1 - eps are iterated (smaller levels are iterated whole: cheap, and
    they carry colour into the settled regions as the full solver does); the others hold their
    exact solution (F = image where alpha ~ 1, B = image where alpha ~ 0). The iterations' cost
    follows the band's area, not the frame's; a few cheap O(h w) passes remain (level masks,
    initialisation, writing the output). (2) Red-black instead of raster order, so every pass runs
    on `threads` threads with a result that does not depend on their number.
    progress: called with the fraction done at most every PROGRESS_INTERVAL_S, between passes;
        raise from it to cancel (the exception propagates once the running pass ends).
    out: float32 (h, w, 3), may be a view (e.g. the colour channels of an RGBA buffer): written and
        returned instead of a new array, which saves a full-frame array and its first touches.
    soft: uint8 (h, w), 1 where 0 < alpha < 1 - eps, when the caller has it already (saves a pass).
    fill_settled: False skips the last pass that copies the image to the pixels outside
        0 < alpha < 1 - eps, for a caller that reads F only on the soft pixels (`emit`): those
        pixels then hold arbitrary values, and the output's pages are touched only near the band.
    Returns float32 (h, w, 3) in [0, 1]: the estimate where 0 < alpha < 1 - eps, the image elsewhere.
    Memory: the output (12 B/px), two masks (2 B/px), B at the finest level (allocated, but its
    pages are touched only near the band) and the coarser levels (~1/3 of that); the image and
    alpha are read through index maps, never copied.
    """
    k = _kernels()
    img = np.ascontiguousarray(image, np.float32)
    a = np.ascontiguousarray(alpha, np.float32)
    h0, w0 = a.shape
    if out is not None and (out.shape != (h0, w0, 3) or out.dtype != np.float32):
        raise ValueError(f"out must be float32 {(h0, w0, 3)}, got {out.dtype} {out.shape}")
    lo, eps32 = np.float32(0.0), np.float32(eps)
    reg, gw = np.float32(regularization), np.float32(gradient_weight)
    n_levels = max(1, int(np.ceil(np.log2(max(w0, h0)))))  # a 1x1 image still has one level
    sizes = [(round(h0 ** (lev / n_levels)), round(w0 ** (lev / n_levels))) for lev in range(n_levels + 1)]
    iterations = [n_small_iterations if (h <= small_size and w <= small_size) else n_big_iterations for h, w in sizes]
    total = float(sum(h * w * (3 + n) for (h, w), n in zip(sizes, iterations)) + 2 * h0 * w0)
    done = 0.0
    last_report = time.perf_counter()

    def advance(work: float) -> None:
        nonlocal done, last_report
        done += work
        if progress is not None and time.perf_counter() - last_report >= PROGRESS_INTERVAL_S:
            last_report = time.perf_counter()
            progress(min(1.0, done / total))

    def par(fn: Callable[..., object], args: tuple, n: int, px: int) -> None:
        _in_parallel(fn, args, n, threads if px >= PARALLEL_MIN_PX else 1)

    row_sums = np.zeros((h0, 8))
    par(k["sums"], (img, a, row_sums), h0, h0 * w0)
    s = row_sums.sum(axis=0)
    F_prev = (s[0:3] / (s[3] + 1e-5)).astype(np.float32).reshape(1, 1, 3)
    B_prev = (s[4:7] / (s[7] + 1e-5)).astype(np.float32).reshape(1, 1, 3)
    advance(h0 * w0)
    F = F_prev
    soft0 = None if soft is None else np.ascontiguousarray(soft).view(np.uint8)
    for lev, ((h, w), n_iter) in enumerate(zip(sizes, iterations)):
        px = h * w
        hp, wp = F_prev.shape[:2]
        my, mx, py, pxm = _index_map(h, h0), _index_map(w, w0), _index_map(h, hp), _index_map(w, wp)
        if px <= dense_px:
            # Small levels are cheap: iterate everything, so colours diffuse into the settled
            # regions as in the full solver and seed the finer levels well.
            active = np.ones((h, w), np.bool_)
        else:
            # The level's soft pixels (its alpha is the finest one's through the index maps),
            # dilated by a (2 reach + 1)-px square: cv2's separable min/max filter.
            if soft0 is None:
                soft0 = ((a > lo) & (a < 1.0 - eps32)).view(np.uint8)
            level_soft = soft0 if (h, w) == (h0, w0) else soft0[my[:, None], mx[None, :]]
            active = cv2.dilate(level_soft, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).view(np.bool_)
            del level_soft
        last_level = lev == n_levels
        # At the last level only the band's pixels are touched: small pages, so that a strand does not
        # fault in (and zero) a whole 2 MB huge page of F and of B around it.
        sparse = last_level and px > dense_px
        F = out if (last_level and out is not None) else (_sparse_empty((h, w, 3)) if sparse and not fill_settled else np.empty((h, w, 3), np.float32))
        B = _sparse_empty((h, w, 3)) if sparse else np.empty((h, w, 3), np.float32)
        par(k["initialise"], (img, a, my, mx, py, pxm, F_prev, B_prev, F, B, active, last_level), h, px)
        advance(3 * px)
        for _ in range(n_iter):
            for parity in (0, 1):
                par(k["sweep"], (img, a, my, mx, F, B, active, last_level, reg, gw, parity), h, px)
            advance(px)
        F_prev, B_prev = F, B
    if fill_settled:
        par(k["finish"], (img, a, lo, eps32, F), h0, h0 * w0)
    if progress is not None:
        progress(1.0)
    return F


def estimate_foreground(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    progress: ProgressFn | None = None,
    margin: int = FOREGROUND_MARGIN_PX,
    tile: int | None = None,
    threads: int = FOREGROUND_THREADS,
    iterations: int = 2,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Foreground colour F with I = alpha F + (1 - alpha) B, solved only near soft pixels.

    image: float (H, W, 3) in [0, 1]; alpha: float (H, W) in [0, 1].
    progress: called with the fraction done (per tile when tiled, else every
        PROGRESS_INTERVAL_S while the solver runs); raise from it to cancel.
    tile: None (default) solves the whole frame in one band-limited pass
        (`estimate_foreground_ml_band`: only pixels near soft alpha are iterated, so the cost
        follows the band's area; ~15-20 B/px touched beyond the output). An int bounds memory: each
        `tile`-px grid cell holding a soft pixel is solved on the cell plus `margin` px of
        context (clipped at the border), `threads` cells at once; the coarse levels then see
        only the crop, which costs a little accuracy.
    iterations: the solver's iterations per level above 32 px (pymatting's default 2; the
        daemon uses `config.FOREGROUND_ITERATIONS`, see `classical_foreground`).
    out: float32 (H, W, 3) to write the result into (may be a view), instead of a new array.
    Returns float32 (H, W, 3) in [0, 1]: the multi-level estimate where 0 < alpha < 1 - eps,
    the image's own colour everywhere else (exact where alpha = 1,
    which full-frame estimation only approximates).

    Inside the soft region the whole-frame result matches pymatting's full-frame
    `estimate_foreground_ml` to mean |dF| < 0.005 (tests/test_highres.py); tiled, to
    mean |dF| < 0.02 and alpha-weighted max < 0.05 (tests/test_foreground.py).
    """
    image = np.asarray(image, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape} and alpha {alpha.shape} differ in size")
    h, w = alpha.shape
    # Every covered pixel short of opaque is solved: even alpha = 1/1000 shows some F.
    soft = (alpha > 0) & (alpha < 1.0 - ALPHA_EPS)
    if not soft.any():
        if progress is not None:
            progress(1.0)
        if out is None:
            return image.copy()
        out[...] = image
        return out
    if tile is None or (h <= tile and w <= tile):
        # Whole frame in one call: the solver's coarse levels see the whole picture (best quality);
        # its cost follows the band.
        fg = estimate_foreground_ml_band(image, alpha, n_big_iterations=iterations, progress=progress, threads=threads, out=out)  # the image itself outside 0 < alpha < 1 - eps
        if progress is not None:
            progress(1.0)
        return fg
    fg = image.copy() if out is None else out
    if out is not None:
        out[...] = image
    cores = soft_tiles(soft, tile)

    def solve(core: tuple[int, int, int, int]) -> None:
        y0, y1, x0, x1 = core
        cy0, cy1, cx0, cx1 = max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)
        est = estimate_foreground_ml_band(image[cy0:cy1, cx0:cx1], alpha[cy0:cy1, cx0:cx1], n_big_iterations=iterations,
                                          threads=1)  # the tiles themselves run on `threads`
        est = est[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
        sel = soft[y0:y1, x0:x1]
        # Cores do not overlap, so threads never write the same pixel.
        fg[y0:y1, x0:x1][sel] = np.clip(est[sel], 0.0, 1.0)

    if threads <= 1 or len(cores) <= 1:
        for i, core in enumerate(cores):
            solve(core)
            if progress is not None:
                progress((i + 1) / len(cores))
    else:
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(solve, c) for c in cores]
            try:
                for i, f in enumerate(futures):
                    f.result()
                    if progress is not None:
                        progress((i + 1) / len(cores))
            except BaseException:
                for f in futures:  # cancel: drop the tiles not started yet
                    f.cancel()
                raise
    return fg


def classical_foreground(image: np.ndarray, alpha: np.ndarray, *, progress: ProgressFn | None = None,
                         out: np.ndarray | None = None) -> np.ndarray:
    """The daemon's classical foreground colour: `estimate_foreground` with
    `classical_iterations(alpha)` iterations per level (closer to the energy's minimum than
    pymatting's default). image float (H, W, 3), alpha float (H, W), both in [0, 1] ->
    float32 (H, W, 3) in [0, 1] (`out` when given)."""
    return estimate_foreground(image, alpha, progress=progress, iterations=classical_iterations(alpha), out=out)


def classical_decontaminate(image: np.ndarray, alpha: np.ndarray, amount: float, *,
                            progress: ProgressFn | None = None) -> np.ndarray:
    """`decontaminate(image, alpha, classical_foreground(image, alpha), amount)` in one RGBA buffer.

    The estimate is written straight into the buffer's colour channels, so no separate full-frame
    F exists (12 B/px less, and on a VM each fresh array costs its first touches: ~0.5 s per
    144 MB here). With amount 1 there is nothing to blend: the estimate already is the image
    wherever alpha is 0 or 1. image float (H, W, 3), alpha float (H, W) in [0, 1] -> float32 (H, W, 4).
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    h, w = np.shape(alpha)[:2]
    rgba = np.empty((h, w, 4), np.float32)
    report = progress or (lambda f: None)
    classical_foreground(image, alpha, progress=lambda f: report(0.9 * f), out=rgba[..., :3])
    if amount == 1.0:
        def put_alpha(y0: int, y1: int) -> None:
            rgba[y0:y1, :, 3] = alpha[y0:y1]

        imageops.run_strips(h, config.STRIP_PX // max(1, w), put_alpha, threads=config.THREADS,
                            progress=lambda f: report(0.9 + 0.1 * f))
        return rgba
    return decontaminate(image, alpha, rgba[..., :3], amount, out=rgba, progress=lambda f: report(0.9 + 0.1 * f))


def classical_decontaminate_encoded(image: np.ndarray, alpha: np.ndarray, amount: float, dtype: np.dtype | type | str, *,
                                    bgr: bool = False, layer_alpha: np.ndarray | None = None,
                                    progress: ProgressFn | None = None,
                                    encode_progress: ProgressFn | None = None) -> np.ndarray:
    """`classical_decontaminate` written straight into an integer RGBA buffer, without a float RGBA frame.

    image float32 (H, W, 3), alpha float32 (H, W), layer_alpha float32 (H, W) or None, all in
    [0, 1]; dtype uint8 or uint16. Returns (H, W, 4) `dtype`, RGBA (BGRA with `bgr`): bit for bit
    `imageops.from_float` of `classical_decontaminate(image, alpha, amount)` with its alpha times
    `layer_alpha`. The estimate is kept only near the band (its pages are touched there), and
    one pass composes and rounds every pixel: at 12 MP this saves 144 MB of float RGBA, its
    conversion, and on a VM its first touches.
    progress: fraction done of the estimate; encode_progress: of the pass that writes the buffer
        (without it, the last tenth of `progress`). Raise from either to cancel.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise TypeError(f"unsupported dtype {dt}; expected uint8 or uint16")
    img = np.ascontiguousarray(image, np.float32)
    a = np.ascontiguousarray(alpha, np.float32)
    h, w = a.shape
    if img.shape != (h, w, 3) or (layer_alpha is not None and np.shape(layer_alpha) != (h, w)):
        raise ValueError(f"image {img.shape}, alpha {a.shape} and layer alpha {np.shape(layer_alpha)} differ in size")
    report = progress or (lambda f: None)
    if encode_progress is None:
        estimate_share = 0.9
        encode_progress = lambda f: report(0.9 + 0.1 * f)  # noqa: E731
    else:
        estimate_share = 1.0
    soft = ((a > 0) & (a < 1.0 - ALPHA_EPS)).view(np.uint8)  # covered, short of opaque: even alpha = 1/1000 shows some F
    n_soft = cv2.countNonZero(soft)
    if n_soft:
        # The budget counts `soft_region` (eps < alpha), as `classical_foreground` does: 2-4 ms at 12 MP.
        budgeted = int(np.count_nonzero(a[soft.view(np.bool_)] > ALPHA_EPS))
        F = estimate_foreground_ml_band(img, a, n_big_iterations=classical_iterations(a, soft_pixels=budgeted), fill_settled=False,
                                        soft=soft, progress=lambda f: report(estimate_share * f))
    else:
        F = np.empty((1, 1, 3), np.float32)  # never read: no pixel is soft
    la = np.empty((0, 0), np.float32) if layer_alpha is None else np.ascontiguousarray(layer_alpha, np.float32)
    out = np.empty((h, w, 4), dt)
    rgb_at = np.array([2, 1, 0] if bgr else [0, 1, 2], np.int64)
    emit = _kernels()["emit"]
    args = (img, a, F, np.float32(0.0), np.float32(ALPHA_EPS), np.float32(amount), la, rgb_at,
            np.float32(np.iinfo(dt).max), out)
    imageops.run_strips(h, config.STRIP_PX // max(1, w), lambda y0, y1: emit(*args, y0, y1), threads=config.THREADS,
                        progress=encode_progress)
    return out


def classical_iterations(alpha: np.ndarray, soft_pixels: int | None = None) -> int:
    """`config.FOREGROUND_ITERATIONS`, fewer (down to 2) when the soft region is so large that they
    would exceed `config.FOREGROUND_ITERATION_BUDGET` soft-pixel iterations. soft_pixels: the
    soft region's size when the caller has counted it (else `soft_region(alpha)` is counted)."""
    soft = max(1, int(np.count_nonzero(soft_region(np.asarray(alpha))) if soft_pixels is None else soft_pixels))
    return int(max(2, min(config.FOREGROUND_ITERATIONS, config.FOREGROUND_ITERATION_BUDGET // soft)))


def decontaminate(image: np.ndarray, alpha: np.ndarray, foreground: np.ndarray, amount: float,
                  *, progress: ProgressFn | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Replace edge colours by the estimated foreground.

    image, foreground: float (H, W, 3) in [0, 1]; alpha: float (H, W) in [0, 1];
    amount in [0, 1]: 0 keeps the image's colours, 1 uses the foreground estimate.
    progress: called with the fraction done after each strip of rows; raise from it to cancel.
    out: float32 (H, W, 4) to write into; `foreground` may be its own colour channels (each strip
        reads its rows before writing them).
    Returns float32 (H, W, 4) RGBA: rgb = image + amount (foreground - image) where alpha > 0
    (the image elsewhere), a = alpha.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    h, w = np.shape(alpha)[:2]
    out = np.empty((h, w, 4), np.float32) if out is None else out

    def strip(y0: int, y1: int) -> None:  # one strip's temporaries, not a frame's (this runs at 100 MP)
        img = np.asarray(image[y0:y1], np.float32)
        a = np.asarray(alpha[y0:y1], np.float32)
        rgb = np.subtract(np.asarray(foreground[y0:y1], np.float32), img)
        rgb *= np.where(a > 0, np.float32(amount), np.float32(0))[..., None]
        rgb += img  # weight 0 (amount 0, or alpha 0) gives the image bit for bit
        out[y0:y1, :, :3] = rgb
        out[y0:y1, :, 3] = a

    imageops.run_strips(h, config.STRIP_PX // max(1, w), strip, progress=progress, threads=config.THREADS)
    return out
