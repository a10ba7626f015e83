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
    """The numba-compiled pieces of the band-limited solver (compiled once, cached on disk).

    `image` may be float32 in [0, 1] (scale 1) or the wire's uint8 / uint16 (scale 1 / max): a
    value is read as float32(v) * scale, exactly the codec's decode (`imageops.to_float`), so both
    give the same answer bit for bit, and the integer one reads 4x (2x) fewer bytes."""
    global _KERNELS
    if _KERNELS is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def statistics(image, scale, alpha, eps, soft, out, y0, y1):  # pragma: no cover - numba
            """One pass over rows [y0, y1): soft[y, x] = 0 < alpha < 1 - eps; per row, out[y] = sum of
            foreground rgb (alpha > 0.9), count, sum of background rgb (alpha < 0.1), count, the soft
            pixels and those of them with alpha > eps (per row, so totals do not depend on the split;
            summed in locals, which the compiler keeps in registers)."""
            one = np.float32(1.0)
            for y in range(y0, y1):
                f0 = f1 = f2 = b0 = b1 = b2 = 0.0
                nf = nb = ns = nbudget = 0
                for x in range(alpha.shape[1]):
                    av = alpha[y, x]
                    if av > 0.9:
                        f0 += np.float32(image[y, x, 0]) * scale
                        f1 += np.float32(image[y, x, 1]) * scale
                        f2 += np.float32(image[y, x, 2]) * scale
                        nf += 1
                    if av < 0.1:
                        b0 += np.float32(image[y, x, 0]) * scale
                        b1 += np.float32(image[y, x, 1]) * scale
                        b2 += np.float32(image[y, x, 2]) * scale
                        nb += 1
                    s = av > 0 and av < one - eps
                    soft[y, x] = s
                    if s:
                        ns += 1
                        if av > eps:
                            nbudget += 1
                out[y, 0] = f0
                out[y, 1] = f1
                out[y, 2] = f2
                out[y, 3] = nf
                out[y, 4] = b0
                out[y, 5] = b1
                out[y, 6] = b2
                out[y, 7] = nb
                out[y, 8] = ns
                out[y, 9] = nbudget

        @njit(cache=True, nogil=True)
        def level_mask(mask, my, mx, out, y0, y1):  # pragma: no cover - numba
            """out[y, x] = mask[my[y], mx[x]] for rows [y0, y1): a level's view of the finest mask."""
            for y in range(y0, y1):
                ys = my[y]
                for x in range(out.shape[1]):
                    out[y, x] = mask[ys, mx[x]]

        @njit(cache=True, nogil=True)
        def count_runs(mask, counts, y0, y1):  # pragma: no cover - numba
            """counts[y + 1] = the number of runs of nonzero pixels in row y of mask."""
            for y in range(y0, y1):
                n = 0
                inside = False
                for x in range(mask.shape[1]):
                    on = mask[y, x] != 0
                    if on and not inside:
                        n += 1
                    inside = on
                counts[y + 1] = n

        @njit(cache=True, nogil=True)
        def fill_runs(mask, ptr, x0s, x1s, y0, y1):  # pragma: no cover - numba
            """Row y's runs of nonzero pixels are [x0s[r], x1s[r]) for r in [ptr[y], ptr[y + 1])."""
            w = mask.shape[1]
            for y in range(y0, y1):
                r = ptr[y]
                inside = False
                for x in range(w):
                    on = mask[y, x] != 0
                    if on and not inside:
                        x0s[r] = x
                    elif inside and not on:
                        x1s[r] = x
                        r += 1
                    inside = on
                if inside:
                    x1s[r] = w

        @njit(cache=True, nogil=True)
        def initialise(image, scale, alpha, my, mx, py, px, F_prev, B_prev, F, B, active, y0, y1):  # pragma: no cover - numba
            """Start from the coarser level; settled pixels take the exact solution for alpha in {0, 1}
            (the observed colour is the layer they show), the hidden layer keeps its value."""
            w = F.shape[1]
            for y in range(y0, y1):
                ys = my[y]
                yp = py[y]
                for x in range(w):
                    xs = mx[x]
                    xp = px[x]
                    for c in range(3):
                        F[y, x, c] = F_prev[yp, xp, c]
                        B[y, x, c] = B_prev[yp, xp, c]
                    if not active[y, x]:
                        if alpha[ys, xs] >= 0.5:
                            for c in range(3):
                                F[y, x, c] = np.float32(image[ys, xs, c]) * scale
                        else:
                            for c in range(3):
                                B[y, x, c] = np.float32(image[ys, xs, c]) * scale

        @njit(cache=True, nogil=True)
        def link_runs(ptr, x0s, base, iptr, ix0s, h, self_at, up_at, down_at, y0, y1):  # pragma: no cover - numba
            """For each inner run (rows [y0, y1) of iptr / ix0s) the packed index of its first pixel and
            of the pixels above and below it (itself at the frame's edge, as the stencil clamps). An
            inner run's pixels and their 4-neighbours are all in the band, and a contiguous stretch
            of band pixels lies within one of its row's (maximal) runs."""
            for y in range(y0, y1):
                for r in range(iptr[y], iptr[y + 1]):
                    x = ix0s[r]
                    for k in range(3):
                        yy = y if k == 0 else (max(0, y - 1) if k == 1 else min(h - 1, y + 1))
                        q = ptr[yy]
                        while q + 1 < ptr[yy + 1] and x0s[q + 1] <= x:
                            q += 1
                        at = base[q] + x - x0s[q]
                        if k == 0:
                            self_at[r] = at
                        elif k == 1:
                            up_at[r] = at
                        else:
                            down_at[r] = at

        @njit(cache=True, nogil=True)
        def initialise_band(py, px, F_prev, B_prev, F, B, ptr, x0s, x1s, base, y0, y1):  # pragma: no cover - numba
            """The finest level, packed: the band's pixels (runs) start from the coarser level."""
            for y in range(y0, y1):
                yp = py[y]
                for r in range(ptr[y], ptr[y + 1]):
                    i = base[r]
                    for x in range(x0s[r], x1s[r]):
                        xp = px[x]
                        for c in range(3):
                            F[i, c] = F_prev[yp, xp, c]
                            B[i, c] = B_prev[yp, xp, c]
                        i += 1

        @njit(cache=True, nogil=True)
        def sweep(image, scale, alpha, my, mx, F, B, iptr, ix0s, ix1s, self_at, up_at, down_at,
                  regularization, gradient_weight, parity, y0, y1):  # pragma: no cover - numba
            """One half of a red-black iteration: update the pixels of rows [y0, y1)'s runs with
            (x + y) % 2 == parity. F, B: (n, 3), a pixel's row-mates adjacent, its neighbours above
            and below at up_at / down_at of its run (a full level is the case n = h w)."""
            h, w = my.shape[0], mx.shape[0]
            for y in range(y0, y1):
                ys = my[y]
                yu = my[max(0, y - 1)]
                yd = my[min(h - 1, y + 1)]
                for r in range(iptr[y], iptr[y + 1]):
                    x_first = ix0s[r]
                    for x in range(x_first + ((x_first + y + parity) & 1), ix1s[r], 2):
                        off = x - x_first
                        i = self_at[r] + off
                        xs = mx[x]
                        a0 = alpha[ys, xs]
                        a1 = 1.0 - a0
                        a00 = a0 * a0
                        a01 = a0 * a1
                        a11 = a1 * a1
                        i0 = np.float32(image[ys, xs, 0]) * scale
                        i1 = np.float32(image[ys, xs, 1]) * scale
                        i2 = np.float32(image[ys, xs, 2]) * scale
                        f0 = a0 * i0
                        f1 = a0 * i1
                        f2 = a0 * i2
                        g0 = a1 * i0
                        g1 = a1 * i1
                        g2 = a1 * i2
                        for d in range(4):
                            if d == 0:
                                j = i - 1 if x > 0 else i
                                a2 = alpha[ys, mx[max(0, x - 1)]]
                            elif d == 1:
                                j = i + 1 if x < w - 1 else i
                                a2 = alpha[ys, mx[min(w - 1, x + 1)]]
                            elif d == 2:
                                j = up_at[r] + off
                                a2 = alpha[yu, xs]
                            else:
                                j = down_at[r] + off
                                a2 = alpha[yd, xs]
                            da = regularization + gradient_weight * abs(a0 - a2)
                            a00 += da
                            a11 += da
                            f0 += da * F[j, 0]
                            f1 += da * F[j, 1]
                            f2 += da * F[j, 2]
                            g0 += da * B[j, 0]
                            g1 += da * B[j, 1]
                            g2 += da * B[j, 2]
                        inv = 1.0 / (a00 * a11 - a01 * a01)
                        b00 = inv * a11
                        b01 = -inv * a01
                        b11 = inv * a00
                        F[i, 0] = max(0.0, min(1.0, b00 * f0 + b01 * g0))
                        F[i, 1] = max(0.0, min(1.0, b00 * f1 + b01 * g1))
                        F[i, 2] = max(0.0, min(1.0, b00 * f2 + b01 * g2))
                        B[i, 0] = max(0.0, min(1.0, b01 * f0 + b11 * g0))
                        B[i, 1] = max(0.0, min(1.0, b01 * f1 + b11 * g1))
                        B[i, 2] = max(0.0, min(1.0, b01 * f2 + b11 * g2))

        @njit(cache=True, nogil=True)
        def finish(image, scale, alpha, lo, eps, F, ptr, x0s, x1s, base, out, y0, y1):  # pragma: no cover - numba
            """The full-frame answer: the packed estimate on lo < alpha < 1 - eps (all within the band's
            runs), the image itself elsewhere (exact for alpha = 1, and what decontamination keeps
            where alpha = 0)."""
            for y in range(y0, y1):
                r = ptr[y]
                for x in range(alpha.shape[1]):
                    av = alpha[y, x]
                    if av > lo and av < 1.0 - eps:
                        while x1s[r] <= x:
                            r += 1
                        i = base[r] + x - x0s[r]
                        for c in range(3):
                            out[y, x, c] = F[i, c]
                    else:
                        for c in range(3):
                            out[y, x, c] = np.float32(image[y, x, c]) * scale

        @njit(cache=True, nogil=True)
        def emit(image, scale, alpha, F, ptr, x0s, x1s, base, lo, eps, amount, layer_alpha, rgb_at, out_max, out, y0, y1):  # pragma: no cover - numba
            """The decontaminated RGBA straight into an integer buffer: rgb = image + amount (F - image)
            on the soft pixels (F itself when amount is 1; F, packed as in `finish`, is read nowhere
            else), the image elsewhere; a = alpha (times the layer's alpha when it has one); each value
            clipped to [0, 1], times `out_max`, rounded half up -- exactly `imageops.from_float` of the
            float path."""
            half = np.float32(0.5)
            one = np.float32(1.0)
            zero = np.float32(0.0)
            has_layer = layer_alpha.shape[0] == alpha.shape[0]
            same_dtype = image.dtype == out.dtype
            for y in range(y0, y1):
                r = ptr[y]
                for x in range(alpha.shape[1]):
                    av = alpha[y, x]
                    soft = av > lo and av < one - eps
                    i = 0
                    if soft:
                        while x1s[r] <= x:
                            r += 1
                        i = base[r] + x - x0s[r]
                    for c in range(3):
                        if soft or not same_dtype:
                            v = np.float32(image[y, x, c]) * scale
                            if soft:
                                v = F[i, c] if amount == one else (F[i, c] - v) * amount + v
                            out[y, x, rgb_at[c]] = np.floor(max(zero, min(one, v)) * out_max + half)
                        else:  # the wire's own value: what rounding it through float gives, exactly
                            out[y, x, rgb_at[c]] = image[y, x, c]
                    if has_layer:
                        av = av * layer_alpha[y, x]
                    out[y, x, 3] = np.floor(max(zero, min(one, av)) * out_max + half)

        _KERNELS = {"statistics": statistics, "level_mask": level_mask, "count_runs": count_runs, "fill_runs": fill_runs,
                    "link_runs": link_runs, "initialise": initialise, "initialise_band": initialise_band, "sweep": sweep,
                    "finish": finish, "emit": emit}
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


def _pass(fn: Callable[..., object], args: tuple, n: int, px: int, threads: int) -> None:
    """A pass of `fn` over rows [0, n) touching about `px` pixels: on `threads` threads, or on this
    one when it is too small for a hand-off to pay (PARALLEL_MIN_PX)."""
    _in_parallel(fn, args, n, threads if px >= PARALLEL_MIN_PX else 1)


def _index_map(n: int, n_from: int) -> np.ndarray:
    """int64 (n,): nearest-neighbour index of each of n cells into n_from cells (floor(i n_from / n))."""
    return np.minimum(n_from - 1, np.arange(n, dtype=np.int64) * n_from // n)


def _pixel_source(image: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(array the kernels read, scale): uint8 / uint16 (H, W, 3) as given, any strides (a view of the
    wire's colour channels), read as v / max; anything else as contiguous float32 in [0, 1]."""
    dt = np.asarray(image).dtype
    if dt in (np.dtype(np.uint8), np.dtype(np.uint16)):
        return np.asarray(image), np.float32(1.0 / np.iinfo(dt).max)  # the codec's rule: float32(v) * float32(1 / max)
    return np.ascontiguousarray(image, np.float32), np.float32(1.0)


def band_statistics(image: np.ndarray, alpha: np.ndarray, eps: float = ALPHA_EPS,
                    threads: int = FOREGROUND_THREADS) -> tuple[np.ndarray, int, int, np.ndarray]:
    """One pass over the frame for what the solver and its iteration budget need.

    image: (H, W, 3) float32 in [0, 1] or uint8 / uint16 (read as v / max); alpha: float32 (H, W) in [0, 1].
    Returns (soft: uint8 (H, W), 1 where 0 < alpha < 1 - eps; its count; the count of those with
    alpha > eps, i.e. `soft_region`'s; float64 (8,): summed rgb and count where alpha > 0.9, then
    where alpha < 0.1 -- the means that start the solver's coarsest level).
    """
    img, scale = _pixel_source(image)
    a = np.ascontiguousarray(alpha, np.float32)
    h, w = a.shape
    soft = np.empty((h, w), np.uint8)
    rows = np.zeros((h, 10))
    _pass(_kernels()["statistics"], (img, scale, a, np.float32(eps), soft, rows), h, h * w, threads)
    total = rows.sum(axis=0)
    return soft, int(total[8]), int(total[9]), total[:8]


Runs = tuple[np.ndarray, np.ndarray, np.ndarray]


def _row_runs(mask: np.ndarray, threads: int) -> Runs:
    """Runs of nonzero pixels of a uint8 (h, w) mask -> (ptr int64 (h + 1), x0 int64, x1 int64): row
    y's runs are [x0[r], x1[r]) for r in [ptr[y], ptr[y + 1]). The sweeps walk these instead of
    scanning the level: at the finest level a scan of every pixel cost more than the band's updates."""
    k = _kernels()
    h, w = mask.shape
    counts = np.zeros(h + 1, np.int64)
    _pass(k["count_runs"], (mask, counts), h, h * w, threads)
    ptr = np.cumsum(counts)
    x0, x1 = np.empty(ptr[-1], np.int64), np.empty(ptr[-1], np.int64)
    _pass(k["fill_runs"], (mask, ptr, x0, x1), h, h * w, threads)
    return ptr, x0, x1


def _whole_rows(h: int, w: int) -> Runs:
    """Every pixel of an (h, w) level: one run per row."""
    return np.arange(h + 1, dtype=np.int64), np.zeros(h, np.int64), np.full(h, w, np.int64)


def _frame_links(runs: Runs, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(self, up, down) packed indices of each run's first pixel in a full (h, w) level (y w + x)."""
    ptr, x0, _ = runs
    ys = np.repeat(np.arange(h, dtype=np.int64), np.diff(ptr))
    at = ys * w + x0
    return at, np.where(ys > 0, at - w, at), np.where(ys < h - 1, at + w, at)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


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
    statistics: tuple[np.ndarray, int, int, np.ndarray] | None = None,
    packed: bool = False,
) -> np.ndarray | tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Germer et al.'s multi-level foreground estimation, updating only pixels near soft alpha.

    image: float (h, w, 3) in [0, 1], or uint8 / uint16 (h, w, 3) read as v / max (any strides:
    the wire's colour channels, which saves the float copy and reads 4x fewer bytes; the answer
    is bit for bit that of the float image the codec decodes); alpha: float (h, w) in [0, 1].
    Same pyramid, update rule and defaults as pymatting's `estimate_foreground_ml`, with two
    differences. (1) At every level with more than `dense_px` pixels only pixels within `reach` px
    of a pixel with 0 < alpha < 1 - eps are iterated (smaller levels are iterated whole: cheap, and
    they carry colour into the settled regions as the full solver does); the others hold their
    exact solution (F = image where alpha ~ 1, B = image where alpha ~ 0). At the finest level the
    band is also cut to what can reach a soft pixel within its iterations (a 4-neighbour
    stencil carries a value 2 px per red-black iteration), which changes no soft pixel's answer,
    and F and B are kept for the band's pixels only. The iterations' cost follows the band's
    area, not the frame's; a few cheap O(h w) passes remain (statistics, level masks, the
    coarser levels' initialisation, writing the output). (2) Red-black instead of raster order,
    so every pass runs on `threads` threads with a result that does not depend on their number.
    progress: called with the fraction done at most every PROGRESS_INTERVAL_S, between passes;
        raise from it to cancel (the exception propagates once the running pass ends).
    out: float32 (h, w, 3), may be a view (e.g. the colour channels of an RGBA buffer): written and
        returned instead of a new array.
    statistics: `band_statistics(image, alpha, eps)` when the caller has it already (saves a pass).
    Returns float32 (h, w, 3) in [0, 1]: the estimate where 0 < alpha < 1 - eps, the image elsewhere.
    packed: instead return the finest level's band as solved (F float32 (n, 3), (ptr, x0, x1, base)):
        row y's runs r in [ptr[y], ptr[y + 1]) cover x in [x0[r], x1[r]), pixel (y, x) at
        F[base[r] + x - x0[r]]; every pixel with 0 < alpha < 1 - eps is in a run. For a caller that
        reads F only there (`classical_decontaminate_encoded`): no full-frame F is made.
    Memory: the output (12 B/px), the masks (~2 B/px), the coarser levels (~1/3 of 24 B/px) and
    24 B per band pixel; the image and alpha are read through index maps, never copied.
    """
    img, scale = _pixel_source(image)
    a = np.ascontiguousarray(alpha, np.float32)
    h, w = a.shape
    if out is not None and (out.shape != (h, w, 3) or out.dtype != np.float32):
        raise ValueError(f"out must be float32 {(h, w, 3)}, got {out.dtype} {out.shape}")
    F, band = _solve_band(img, scale, a, eps=eps, reach=reach, dense_px=dense_px, regularization=regularization,
                          n_small_iterations=n_small_iterations, n_big_iterations=n_big_iterations, small_size=small_size,
                          gradient_weight=gradient_weight, progress=progress, threads=threads, statistics=statistics)
    if packed:
        return F, band
    out = np.empty((h, w, 3), np.float32) if out is None else out
    _pass(_kernels()["finish"], (img, scale, a, np.float32(0.0), np.float32(eps), F, *band, out), h, h * w, threads)
    if progress is not None:
        progress(1.0)
    return out


def _solve_band(img: np.ndarray, scale: np.float32, a: np.ndarray, *, eps: float, reach: int, dense_px: int,
                regularization: float, n_small_iterations: int, n_big_iterations: int, small_size: int,
                gradient_weight: float, progress: ProgressFn | None, threads: int,
                statistics: tuple[np.ndarray, int, int, np.ndarray] | None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """`estimate_foreground_ml_band(..., packed=True)` (img and scale from `_pixel_source`, a contiguous float32)."""
    k = _kernels()
    h0, w0 = a.shape
    if img.shape != (h0, w0, 3):
        raise ValueError(f"image {img.shape} and alpha {a.shape} differ in size")
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

    soft0, _, _, s = statistics if statistics is not None else band_statistics(img, a, eps, threads)
    F_prev = (s[0:3] / (s[3] + 1e-5)).astype(np.float32).reshape(1, 1, 3)
    B_prev = (s[4:7] / (s[7] + 1e-5)).astype(np.float32).reshape(1, 1, 3)
    advance(h0 * w0)
    square = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    for lev, ((h, w), n_iter) in enumerate(zip(sizes, iterations)):
        px = h * w
        hp, wp = F_prev.shape[:2]
        my, mx, py, pxm = _index_map(h, h0), _index_map(w, w0), _index_map(h, hp), _index_map(w, wp)
        last_level = lev == n_levels
        if px <= dense_px:
            # Small levels are cheap: iterate everything, so colours diffuse into the settled
            # regions as in the full solver and seed the finer levels well.
            active = None
        else:
            # The level's soft pixels (its alpha is the finest one's through the index maps), dilated.
            if (h, w) == (h0, w0):
                level_soft = soft0
            else:
                level_soft = np.empty((h, w), np.uint8)
                _pass(k["level_mask"], (soft0, my, mx, level_soft), h, px, threads)
            if last_level and 2 * n_iter < reach:
                # A soft pixel's answer depends only on the pixels within 2 n_iter steps (L1) of it:
                # the rest of the square band would be iterated for nothing.
                active = cv2.dilate(level_soft, _CROSS, iterations=2 * n_iter)
            else:
                active = cv2.dilate(level_soft, square)  # cv2's separable max filter
            del level_soft
        if last_level:
            # Packed: F and B for the band's pixels only, contiguous (no scattered first touches of
            # two full-frame arrays). Pixels on the band's rim (a 4-neighbour outside) are held;
            # cv2.erode counts pixels beyond the frame as inside, as the stencil's clamp does.
            band = _whole_rows(h, w) if active is None else _row_runs(active, threads)
            inner = band if active is None else _row_runs(cv2.erode(active, _CROSS), threads)
            base = np.concatenate([[0], np.cumsum(band[2] - band[1])])
            F, B = np.empty((base[-1], 3), np.float32), np.empty((base[-1], 3), np.float32)
            base = base[:-1]
            _pass(k["initialise_band"], (py, pxm, F_prev, B_prev, F, B, *band, base), h, px, threads)
            links = [np.empty(len(inner[1]), np.int64) for _ in range(3)]
            _pass(k["link_runs"], (band[0], band[1], base, inner[0], inner[1], h, *links), h, px, threads)
        else:
            F, B = np.empty((h, w, 3), np.float32), np.empty((h, w, 3), np.float32)
            _pass(k["initialise"], (img, scale, a, my, mx, py, pxm, F_prev, B_prev, F, B,
                                   np.ones((h, w), np.bool_) if active is None else active.view(np.bool_)), h, px, threads)
            inner = _whole_rows(h, w) if active is None else _row_runs(active, threads)
            links = _frame_links(inner, h, w)
        del active
        advance(3 * px)
        Fp, Bp = F.reshape(-1, 3), B.reshape(-1, 3)
        for _ in range(n_iter):
            for parity in (0, 1):
                _pass(k["sweep"], (img, scale, a, my, mx, Fp, Bp, *inner, *links, reg, gw, parity), h, px, threads)
            advance(px)
        F_prev, B_prev = F, B
    return F, (*band, base)


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
    statistics: tuple[np.ndarray, int, int, np.ndarray] | None = None,
) -> np.ndarray:
    """Foreground colour F with I = alpha F + (1 - alpha) B, solved only near soft pixels.

    image: float (H, W, 3) in [0, 1]; alpha: float (H, W) in [0, 1].
    progress: called with the fraction done (per tile when tiled, else every
        PROGRESS_INTERVAL_S while the solver runs); raise from it to cancel.
    tile: None (default) solves the whole frame in one band-limited pass
        (`estimate_foreground_ml_band`: only pixels near soft alpha are iterated, so the cost
        follows the band's area; ~10 B/px beyond the output, and 24 B per band pixel). An int bounds memory: each
        `tile`-px grid cell holding a soft pixel is solved on the cell plus `margin` px of
        context (clipped at the border), `threads` cells at once; the coarse levels then see
        only the crop, which costs a little accuracy.
    iterations: the solver's iterations per level above 32 px (pymatting's default 2; the
        daemon uses `config.FOREGROUND_ITERATIONS`, see `classical_foreground`).
    out: float32 (H, W, 3) to write the result into (may be a view), instead of a new array.
    statistics: `band_statistics(image, alpha)` when the caller has it already (saves a pass).
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
    # Every covered pixel short of opaque is solved (even alpha = 1/1000 shows some F): the
    # statistics' soft mask, 0 < alpha < 1 - eps.
    statistics = band_statistics(image, alpha, threads=threads) if statistics is None else statistics
    if not statistics[1]:
        if progress is not None:
            progress(1.0)
        if out is None:
            return image.copy()
        out[...] = image
        return out
    if tile is None or (h <= tile and w <= tile):
        # Whole frame in one call: the solver's coarse levels see the whole picture (best quality);
        # its cost follows the band.
        fg = estimate_foreground_ml_band(image, alpha, n_big_iterations=iterations, progress=progress, threads=threads, out=out,
                                         statistics=statistics)  # the image itself outside 0 < alpha < 1 - eps
        if progress is not None:
            progress(1.0)
        return fg
    fg = image.copy() if out is None else out
    if out is not None:
        out[...] = image
    soft = statistics[0].view(np.bool_)
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
    image, alpha = np.asarray(image, np.float32), np.asarray(alpha, np.float32)  # what estimate_foreground reads
    stats = band_statistics(image, alpha)  # once: the iteration budget counts its soft pixels, the solver starts from it
    return estimate_foreground(image, alpha, progress=progress, iterations=classical_iterations(alpha, soft_pixels=stats[2]), out=out,
                               statistics=stats)


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

    image float32 (H, W, 3) in [0, 1], or the wire's uint8 / uint16 colour channels (H, W, 3), any
    strides (no float image is needed then); alpha float32 (H, W), layer_alpha float32 (H, W) or
    None, in [0, 1]; dtype uint8 or uint16. Returns (H, W, 4) `dtype`, RGBA (BGRA with `bgr`): bit
    for bit `imageops.from_float` of `classical_decontaminate(image, alpha, amount)` (of the
    decoded image) with its alpha times `layer_alpha`. The estimate is kept only near the band (its pages are touched there), and
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
    img, scale = _pixel_source(image)
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
    # Covered and short of opaque is solved (even alpha = 1/1000 shows some F); the budget counts
    # `soft_region` (eps < alpha), as `classical_foreground` does.
    stats = band_statistics(img, a)
    if stats[1]:
        F, band = estimate_foreground_ml_band(img, a, n_big_iterations=classical_iterations(a, soft_pixels=stats[2]), statistics=stats,
                                              progress=lambda f: report(estimate_share * f), packed=True)
    else:  # never read: no pixel is soft
        F, band = np.empty((0, 3), np.float32), (*_whole_rows(h, 0), np.zeros(h, np.int64))
    del stats
    la = np.empty((0, 0), np.float32) if layer_alpha is None else np.ascontiguousarray(layer_alpha, np.float32)
    out = np.empty((h, w, 4), dt)
    rgb_at = np.array([2, 1, 0] if bgr else [0, 1, 2], np.int64)
    emit = _kernels()["emit"]
    args = (img, scale, a, F, *band, np.float32(0.0), np.float32(ALPHA_EPS), np.float32(amount), la, rgb_at,
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
