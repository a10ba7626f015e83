"""Procedural foregrounds with exact alpha, and synthetic composites built from them.

`make_foreground(rng, size)` draws a subject layer by layer with the "over" operator
on premultiplied colour, so the returned (fg, alpha) pair is exact by construction:
composite(fg, B, alpha) is the image of that subject in front of any background B.

Ingredients: blobs with hard (anti-aliased) and soft edges, holes, a semi-transparent
veil, hair/fur-like strands drawn at sub-pixel width (4x supersampled, area-averaged, so
a strand pixel holds its partial coverage), and motion or defocus blur applied to alpha
and premultiplied colour together (so the colour stays consistent with the blurred alpha).
Colours: flat / gradient / fractal noise / stripes, or crops of real photographs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .compose import composite, match_background, trimap_from_alpha
from .samples import Sample, load_image

_SS = 4  # supersampling factor for strands


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[0]), int(size[1])


@lru_cache(maxsize=40)
def load_photo(path: str, max_side: int = 1024) -> np.ndarray:
    """A photo as uint8 HxWx3 RGB, downscaled so its long side <= max_side (cached, read-only;
    kept as uint8 so the cache stays small — `match_background` converts its crop to float)."""
    img = cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_2)  # JPEG decodes at half size: ~3x faster
    if img is None or max(img.shape[:2]) < max_side // 2:
        img = (load_image(path) * 255 + 0.5).astype(np.uint8)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    img.setflags(write=False)
    return img


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1], HxW float32."""
    out = np.zeros((h, w), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        n = base * 2 ** o
        g = rng.random((n + 1, n + 1), dtype=np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= 0.5
    out /= tot
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, biased away from pure grey half the time."""
    c = rng.random(3).astype(np.float32)
    if rng.random() < 0.5:
        hsv = np.array([[[rng.uniform(0, 360), rng.uniform(0.4, 1.0), rng.uniform(0.2, 1.0)]]], np.float32)
        c = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return c


def make_texture(rng: np.random.Generator, size: int | Sequence[int],
                 photos: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A colour field HxWx3 float32 in [0,1]: flat+gradient, fractal noise, stripes, or a
    random crop of one of `photos`."""
    h, w = _hw(size)
    kinds = ["gradient", "noise", "stripes"] + (["photo", "photo"] if len(photos) else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    c1, c2 = _colour(rng), _colour(rng)
    if kind == "photo":
        p = photos[int(rng.integers(len(photos)))]
        return match_background(p, (h, w), rng, scale=(1.0, 3.0))
    if kind == "gradient":
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6) * rng.uniform(0.0, 1.0)
    elif kind == "noise":
        t = _noise(rng, h, w, octaves=int(rng.integers(2, 6)), base=int(rng.integers(2, 8)))
    else:
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(4, max(6.0, min(h, w) / 4))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(ang) * xx + np.sin(ang) * yy) / period)
        t = t * (0.5 + 0.5 * _noise(rng, h, w, 2))
    t = t.astype(np.float32)[..., None]
    return np.clip((1 - t) * c1 + t * c2, 0, 1).astype(np.float32)


def _blob(rng: np.random.Generator, h: int, w: int, cy: float, cx: float, r0: float, soft: float) -> np.ndarray:
    """Star-shaped blob with a random harmonic outline; edge ramp `soft` px wide (>= ~1:
    anti-aliased hard edge). -> alpha HxW float32."""
    amps = [r0 * rng.uniform(0, 0.5 / k) for k in range(2, 7)]
    phases = rng.uniform(0, 2 * np.pi, size=5)
    out = np.zeros((h, w), np.float32)
    # Evaluate only inside the blob's bounding box (radius <= r0 + sum(amps) + soft).
    R = r0 + sum(amps) + soft
    y0, y1 = max(0, int(cy - R)), min(h, int(np.ceil(cy + R)) + 1)
    x0, x1 = max(0, int(cx - R)), min(w, int(np.ceil(cx + R)) + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    rho = np.sqrt(dy * dy + dx * dx)
    th = np.arctan2(dy, dx)
    r = np.full_like(rho, r0)
    for k, (a, ph) in enumerate(zip(amps, phases), start=2):
        r += np.float32(a) * np.cos(k * th + np.float32(ph))
    out[y0:y1, x0:x1] = np.clip(0.5 + (r - rho) / np.float32(soft), 0.0, 1.0)
    return out


def _edge_softness(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.45:
        return 1.0  # hard, anti-aliased
    if u < 0.8:
        return float(rng.uniform(1.5, 5))
    return float(rng.uniform(6, 30))


def _over(top_a: np.ndarray, top_f: np.ndarray, a: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied "over": (alpha, premultiplied colour) of top over (a, pre)."""
    return top_a + a * (1 - top_a), top_a[..., None] * top_f + (1 - top_a)[..., None] * pre


def _strands(rng: np.random.Generator, h: int, w: int, body: np.ndarray, n: int) -> np.ndarray:
    """Hair/fur strands growing outwards from the body's edge: thin curves rasterised at
    4x and area-averaged, so each pixel holds the strand's partial coverage. -> HxW [0,1]."""
    edge = np.argwhere((body > 0.2) & (body < 0.95))
    if len(edge) == 0:
        edge = np.argwhere(body > 0.5)
    if len(edge) == 0:
        return np.zeros((h, w), np.float32)
    gy, gx = np.gradient(cv2.GaussianBlur(body, (0, 0), 3))
    canvas = np.zeros((h * _SS, w * _SS), np.uint8)
    length = rng.uniform(0.03, 0.2) * min(h, w)
    curl = rng.uniform(0.0, 0.25)
    width_hi = int(rng.integers(1, 4))  # px at 4x: 0.25..0.75 px at 1x
    steps = 12
    # All strands at once: start on the edge, head outwards (down the alpha gradient), curl.
    y0, x0 = edge[rng.integers(0, len(edge), size=n)].T.astype(np.float64)
    dy, dx = -gy[y0.astype(int), x0.astype(int)], -gx[y0.astype(int), x0.astype(int)]
    ang0 = np.where(np.hypot(dy, dx) > 1e-6, np.arctan2(dy, dx), rng.uniform(0, 2 * np.pi, n))
    ang0 = ang0 + rng.normal(0, 0.4, n)
    seg = (length * rng.uniform(0.4, 1.2, n) / steps)[:, None]
    dang = rng.normal(0, curl, n)[:, None] + rng.normal(0, curl / 2 + 1e-9, (n, steps))
    ang = ang0[:, None] + np.cumsum(dang, axis=1)
    xs = np.concatenate([x0[:, None], x0[:, None] + np.cumsum(seg * np.cos(ang), axis=1)], axis=1)
    ys = np.concatenate([y0[:, None], y0[:, None] + np.cumsum(seg * np.sin(ang), axis=1)], axis=1)
    pts = np.round((np.stack([xs, ys], axis=2) + 0.5) * _SS * 16).astype(np.int32)  # 4 fractional bits
    # Draw in a few (thickness, opacity) groups: one cv2 call per group.
    thick = rng.integers(1, width_hi + 1, size=n)
    level = rng.integers(0, 3, size=n)
    for t in np.unique(thick):
        for lv in range(3):
            sel = (thick == t) & (level == lv)
            if sel.any():
                cv2.polylines(canvas, list(pts[sel]), False, int(255 * (0.5 + 0.25 * lv)), int(t), cv2.LINE_AA,
                              shift=4)
    # Area-averaging the 4x canvas gives each pixel the strands' partial coverage.
    cov = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return cov


def _blur_kernel(rng: np.random.Generator, scale: float) -> np.ndarray:
    """A motion-blur line or a defocus disk, normalised to sum 1."""
    if rng.random() < 0.5:
        L = max(3, int(rng.uniform(0.01, 0.04) * scale)) | 1
        k = np.zeros((L, L), np.float32)
        c = L // 2
        ang = rng.uniform(0, np.pi)
        dx, dy = np.cos(ang) * c, np.sin(ang) * c
        cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1,
                 cv2.LINE_AA)
    else:
        r = max(1.5, rng.uniform(0.004, 0.015) * scale)
        L = int(2 * np.ceil(r) + 1)
        yy, xx = np.mgrid[0:L, 0:L] - L // 2
        k = np.clip(r + 0.5 - np.sqrt(xx ** 2 + yy ** 2), 0, 1).astype(np.float32)
    return k / k.sum()


def make_foreground(rng: np.random.Generator, size: int | Sequence[int],
                    photos: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A procedural subject with exact alpha.

    rng: the only source of randomness (same seed -> same arrays). size: int or (h, w).
    photos: optional real photographs (HxWx3, float [0,1] or uint8) to cut textures from.
    Returns (fg HxWx3 float32 [0,1], defined on the whole image; alpha HxW float32 [0,1]).
    """
    h, w = _hw(size)
    m = min(h, w)
    # Body: 1-3 blobs sharing one material; sometimes anchored to the bottom edge (portrait-like).
    body = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.25:
            cy, cx = h * rng.uniform(0.85, 1.1), w * rng.uniform(0.3, 0.7)
        else:
            cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
        body = np.maximum(body, _blob(rng, h, w, cy, cx, m * rng.uniform(0.12, 0.3), _edge_softness(rng)))
    if rng.random() < 0.5:  # holes punched through the body
        for _ in range(int(rng.integers(1, 4))):
            ys, xs = np.nonzero(body > 0.99)
            if len(ys) == 0:
                break
            j = int(rng.integers(len(ys)))
            hole = _blob(rng, h, w, ys[j], xs[j], m * rng.uniform(0.02, 0.07), _edge_softness(rng))
            body *= 1 - hole
    f_body = make_texture(rng, (h, w), photos)
    alpha, pre = body, body[..., None] * f_body
    if rng.random() < 0.4:  # semi-transparent veil overlapping the body
        cy, cx = h * rng.uniform(0.2, 0.8), w * rng.uniform(0.2, 0.8)
        veil = _blob(rng, h, w, cy, cx, m * rng.uniform(0.1, 0.25), _edge_softness(rng)) * rng.uniform(0.15, 0.8)
        alpha, pre = _over(veil, make_texture(rng, (h, w), photos), alpha, pre)
    if rng.random() < 0.7:  # hair / fur strands, tinted from the body colour
        s = _strands(rng, h, w, body, int(rng.integers(20, 400)))
        tint = np.clip(f_body * rng.uniform(0.6, 1.4) + rng.normal(0, 0.08, 3).astype(np.float32), 0, 1)
        alpha, pre = _over(s, tint, alpha, pre)
    if rng.random() < 0.3:  # motion or defocus blur, applied to alpha and premultiplied colour alike
        k = _blur_kernel(rng, m)
        alpha = cv2.filter2D(alpha, -1, k, borderType=cv2.BORDER_REFLECT)
        pre = cv2.filter2D(pre, -1, k, borderType=cv2.BORDER_REFLECT)
        f_body = cv2.filter2D(f_body, -1, k, borderType=cv2.BORDER_REFLECT)
    alpha = np.clip(alpha, 0, 1).astype(np.float32)
    # Un-premultiply where there is coverage; elsewhere F is the body colour field.
    safe = alpha > 1e-4
    fg = np.where(safe[..., None], pre / np.maximum(alpha, 1e-4)[..., None], f_body)
    alpha = np.where(alpha < 1e-4, 0.0, np.where(alpha > 1 - 1e-4, 1.0, alpha)).astype(np.float32)
    return np.clip(fg, 0, 1).astype(np.float32), alpha


def random_background(rng: np.random.Generator, size: int | Sequence[int],
                      photo_paths: Sequence[str | Path] = ()) -> np.ndarray:
    """A background HxWx3: a resolution-matched crop of a random photo from `photo_paths`,
    or a procedural texture (blurred a little) when none are given."""
    h, w = _hw(size)
    if len(photo_paths):
        p = load_photo(str(photo_paths[int(rng.integers(len(photo_paths)))]))
        return match_background(p, (h, w), rng, scale=(1.0, 2.0))
    t = make_texture(rng, (h, w))
    return cv2.GaussianBlur(t, (0, 0), float(rng.uniform(0.5, 3)))


def synthetic_sample(rng: np.random.Generator, size: int | Sequence[int],
                     photo_paths: Sequence[str | Path] = (), name: str = "synthetic") -> Sample:
    """A full synthetic Sample: exact alpha, foreground, background, image = composite,
    and a trimap from alpha (10 px erosion). Photos (if given) serve as backgrounds and
    as fg texture sources (textures from a different photo than the background)."""
    h, w = _hw(size)
    photos: list[np.ndarray] = []
    if len(photo_paths):
        photos = [load_photo(str(photo_paths[int(rng.integers(len(photo_paths)))]))]
    fg, alpha = make_foreground(rng, (h, w), photos)
    bg = random_background(rng, (h, w), photo_paths)
    return Sample(name=name, image=composite(fg, bg, alpha), alpha=alpha, trimap=trimap_from_alpha(alpha),
                  foreground=fg, background=bg)
