"""Pixel plumbing: transfer functions, dtype conversion, resizing, previews.

All functions are pure: arrays in, new arrays out. Float images are float32;
`image` arrays are (H, W, 3) sRGB-encoded in [0, 1] unless a docstring says otherwise.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

#: A stage's progress callback: called with the fraction done (0..1); raise from it to cancel.
ProgressFn = Callable[[float], None]

# IEC 61966-2-1 piecewise sRGB transfer function constants.
_SRGB_A = 0.055
_SRGB_GAMMA = 2.4
_SRGB_SLOPE = 12.92
_SRGB_LIN_THRESHOLD = 0.0031308  # linear-side break point
_SRGB_ENC_THRESHOLD = 0.04045  # encoded-side break point (= 12.92 * 0.0031308, rounded by the standard)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light (IEC 61966-2-1), float32.

    Any shape. Values outside [0, 1] are extended symmetrically (sign-mirrored
    below 0, the power law above 1) so float/HDR data survives a round trip.
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    lin = np.where(
        a <= _SRGB_ENC_THRESHOLD,
        a / _SRGB_SLOPE,
        ((a + _SRGB_A) / (1.0 + _SRGB_A)) ** _SRGB_GAMMA,
    )
    return (np.sign(x) * lin).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values (IEC 61966-2-1), float32. Inverse of `srgb_to_linear`."""
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    enc = np.where(
        a <= _SRGB_LIN_THRESHOLD,
        a * _SRGB_SLOPE,
        (1.0 + _SRGB_A) * a ** (1.0 / _SRGB_GAMMA) - _SRGB_A,
    )
    return (np.sign(x) * enc).astype(np.float32)


_INT_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float16 / float32 / float64 / bool array -> float32, integers scaled to [0, 1].

    Floats are converted without rescaling (a copy is always returned).
    """
    arr = np.asarray(arr)
    dt = arr.dtype
    if dt in _INT_MAX:  # one pass, no integer-to-float temporary
        return np.multiply(arr, np.float32(1.0 / _INT_MAX[dt]), dtype=np.float32)
    if dt in _FLOAT_DTYPES:
        return arr.astype(np.float32, copy=True)
    if dt == np.bool_:
        return arr.astype(np.float32)
    raise TypeError(f"unsupported dtype {dt}; expected uint8, uint16, float16, float32 or float64")


def from_float(arr: np.ndarray, dtype: np.dtype | type | str, progress: Callable[[float], None] | None = None) -> np.ndarray:
    """float array in [0, 1] -> `dtype` (uint8, uint16, float16, float32).

    Integers: clipped to [0, 1], scaled, rounded half-up (x*max + 0.5, floored), NaN -> 0.
    Floats: cast only (no clipping, so out-of-range float data is preserved).
    Conversion runs in chunks into the preallocated output, so a 100 MP RGBA frame needs no
    full-size temporaries (float32 is exact for these integers: < 2**24); `progress` is called
    with the fraction done after each chunk (raise from it to cancel).
    """
    dt = np.dtype(dtype)
    arr = np.asarray(arr)
    if dt not in _INT_MAX and dt not in _FLOAT_DTYPES:
        raise TypeError(f"unsupported dtype {dt}; expected uint8, uint16, float16 or float32")
    out = np.empty(arr.shape, dt)
    src, dst = arr.reshape(-1), out.reshape(-1)
    step = 1 << 22
    m = np.float32(_INT_MAX.get(dt, 1))
    for i in range(0, src.size, step):
        if dt in _INT_MAX:
            c = src[i:i + step].astype(np.float32)
            c[np.isnan(c)] = 0.0
            np.clip(c, 0.0, 1.0, out=c)  # also +-inf
            c *= m
            c += np.float32(0.5)
            np.floor(c, out=c)
            dst[i:i + step] = c
        else:
            dst[i:i + step] = src[i:i + step]
        if progress is not None:
            progress(min(1.0, (i + step) / src.size))
    return out


def disk(radius: int) -> np.ndarray:
    """uint8 elliptical structuring element of radius `radius` (side 2r+1), for cv2 morphology."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _resize(arr: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape[:2] == (h, w):
        return arr.copy()
    if arr.ndim == 3 and arr.shape[2] > 4:
        # cv2.resize handles at most 4 channels for every interpolation mode; go channel by channel.
        return np.stack([_resize(arr[..., c], (h, w), interpolation) for c in range(arr.shape[2])], axis=-1)
    out = cv2.resize(arr, (w, h), interpolation=interpolation)
    if arr.ndim == 3 and out.ndim == 2:  # cv2 drops a singleton channel axis
        out = out[..., None]
    return out


def resize_area(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (H, W) or (H, W, C) array to `size` = (h, w) by area averaging (for shrinking)."""
    return _resize(arr, size, cv2.INTER_AREA)


def resize_linear(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (H, W) or (H, W, C) array to `size` = (h, w) bilinearly (for enlarging)."""
    return _resize(arr, size, cv2.INTER_LINEAR)


def is_finite(arr: np.ndarray) -> bool:
    """True when `arr` holds no NaN or +-Inf (integer arrays are always finite)."""
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        return True
    return bool(np.isfinite(arr).all())


def box_mean(arr: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window around each pixel, float32, same shape; the border is reflected."""
    k = 2 * radius + 1
    return cv2.blur(np.ascontiguousarray(arr, dtype=np.float32), (k, k), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The guided filter's local linear model (He et al., TPAMI 2013, colour guide): src ~ a . guide + b.

    guide: float (H, W, 3) in [0, 1]. src: float (H, W). radius: window radius in px.
    eps: ridge on each window's colour covariance (larger: smoother, less edge-following).
    Returns (a float32 (H, W, 3), b float32 (H, W)), already averaged over the windows covering
    each pixel, so ``(a * guide).sum(-1) + b`` is the filter's output — and the same a, b carried
    up to a finer guide give its output there (He & Sun 2015, "Fast guided filter").
    """
    guide = np.ascontiguousarray(guide, dtype=np.float32)
    src = np.ascontiguousarray(src, dtype=np.float32)
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    cov_ip = box_mean(guide * src[..., None], radius) - mean_i * mean_p[..., None]
    sigma = np.empty(src.shape + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            sigma[..., i, j] = sigma[..., j, i] = box_mean(guide[..., i] * guide[..., j], radius) - mean_i[..., i] * mean_i[..., j]
    sigma += np.float32(eps) * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(-1)
    return box_mean(a, radius), box_mean(b, radius)


def sample_linear(arr: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], full: tuple[int, int]) -> np.ndarray:
    """Rows [r0, r1) x cols [c0, c1) of `arr` (h, w[, C]) bilinearly enlarged to `full` = (H, W).

    The same values as ``resize_linear(arr, full)[r0:r1, c0:c1]`` (cv2's pixel-centre convention,
    edges replicated) without the full-size array, so a large frame can be carried up strip by strip.
    Separable: rows are interpolated on the small array first, then columns.
    """
    (r0, r1), (c0, c1), (hh, ww) = rows, cols, full
    h, w = arr.shape[:2]
    arr = np.asarray(arr, dtype=np.float32)

    def taps(lo: int, hi: int, n_small: int, n_full: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(lo, hi, dtype=np.float64) + 0.5) * (n_small / n_full) - 0.5, 0, n_small - 1)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_small - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    y0, y1, fy = taps(r0, r1, h, hh)
    x0, x1, fx = taps(c0, c1, w, ww)
    extra = (1,) * (arr.ndim - 2)
    fy = fy.reshape((-1, 1) + extra)
    fx = fx.reshape((1, -1) + extra)
    lo, hi = min(y0.min(initial=0), y1.min(initial=0)), max(y0.max(initial=0), y1.max(initial=0)) + 1
    part = arr[lo:hi]  # only the small rows this strip needs
    by_rows = part[y0 - lo] * (1 - fy) + part[y1 - lo] * fy  # (r1-r0, w[, C])
    return by_rows[:, x0] * (1 - fx) + by_rows[:, x1] * fx


def run_strips(
    height: int, rows: int, fn: Callable[[int, int], None], *,
    progress: Callable[[float], None] | None = None, threads: int = 1,
) -> None:
    """Call fn(y0, y1) for consecutive strips of `rows` rows covering [0, height).

    fn must write only its own rows (strips are independent), so `threads` of them may run at once:
    numpy and cv2 release the GIL on large arrays. progress(fraction done) is called on this
    thread after each strip, in order; raise from it to cancel (strips not started are dropped,
    running ones finish, then the exception propagates).
    """
    from concurrent.futures import ThreadPoolExecutor

    rows = max(1, int(rows))
    strips = [(y, min(height, y + rows)) for y in range(0, height, rows)]
    if threads <= 1 or len(strips) <= 1:
        for y0, y1 in strips:
            fn(y0, y1)
            if progress is not None:
                progress(y1 / height)
        return
    with ThreadPoolExecutor(min(threads, len(strips))) as pool:
        futures = [pool.submit(fn, y0, y1) for y0, y1 in strips]
        try:
            for (_, y1), f in zip(strips, futures):
                f.result()
                if progress is not None:
                    progress(y1 / height)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
