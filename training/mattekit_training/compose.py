"""Compositing, augmentation and training targets: small pure functions on NumPy arrays.

Conventions: ``image``/``fg``/``bg`` float32 HxWx3 in [0, 1]; ``alpha`` float32 HxW in
[0, 1]; ``trimap`` float32 {0, 0.5, 1}; masks float32 {0, 1}; every random choice comes
from the ``rng: np.random.Generator`` argument, so a seed reproduces a sample exactly.

Sources: GFM's RSSN route and RoSTa targets, MG Matting's guidance perturbation and Random
Alpha Blending, GCA's augmentation, MODNet's transition band, POMAGAN's border band, DDC's
random-erosion trimaps (see /shared/docs/seeds-digest.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_EPS = 1e-6


def _disk(k: int) -> np.ndarray:
    """Elliptic structuring element of diameter k >= 1 (GFM/MG use cv2 ellipses too)."""
    k = max(1, int(k))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Binary dilation of a {0,1} HxW mask with a k-px disk -> float32 {0,1}."""
    return cv2.dilate((mask > 0.5).astype(np.uint8), _disk(k)).astype(np.float32)


def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """Binary erosion of a {0,1} HxW mask with a k-px disk -> float32 {0,1}.

    Pixels outside the image count as foreground (cv2's default border), so a subject
    touching the frame is not eroded from the frame side.
    """
    return cv2.erode((mask > 0.5).astype(np.uint8), _disk(k)).astype(np.float32)


# ----------------------------------------------------------------------------- compositing


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """I = alpha F + (1 - alpha) B, exactly, in float32. fg, bg HxWx3; alpha HxW -> HxWx3."""
    a = alpha.astype(np.float32)[:, :, None]
    return (a * fg.astype(np.float32) + (1.0 - a) * bg.astype(np.float32)).astype(np.float32)


def match_background(bg: np.ndarray, shape: Sequence[int], rng: np.random.Generator,
                     scale: tuple[float, float] = (1.0, 1.5)) -> np.ndarray:
    """Resolution matching (RSSN): resize `bg` (float [0,1] or uint8) so it covers
    `shape[:2]` (times a random zoom in `scale`), then take a random crop of exactly that
    size. -> HxWx3 float32 [0,1]."""
    h, w = int(shape[0]), int(shape[1])
    bh, bw = bg.shape[:2]
    s = max(h / bh, w / bw) * float(rng.uniform(*scale))
    nh, nw = max(h, int(np.ceil(bh * s))), max(w, int(np.ceil(bw * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    r = cv2.resize(bg, (nw, nh), interpolation=interp)
    y, x = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
    out = np.ascontiguousarray(r[y:y + h, x:x + w, :3]).astype(np.float32)
    if bg.dtype == np.uint8:
        out *= np.float32(1 / 255)
    return out


def denoise(img: np.ndarray, method: str = "bilateral") -> np.ndarray:
    """Denoise HxWx3 in [0,1] -> float32 HxWx3, the RSSN stand-in for BM3D (not available).

    "bilateral": cv2.bilateralFilter (d=5, sigma_color=0.1, sigma_space=5) on float32 —
    fast, keeps precision. "nlmeans": cv2.fastNlMeansDenoisingColored (h=5) — closer to
    BM3D but quantises to 8 bits and is ~20x slower.
    """
    if method == "nlmeans":
        u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        return cv2.fastNlMeansDenoisingColored(u8, None, 5, 5, 5, 15).astype(np.float32) / 255.0
    if method != "bilateral":
        raise ValueError(f"unknown denoise method {method!r}")
    return np.clip(cv2.bilateralFilter(img.astype(np.float32), 5, 0.1, 5), 0, 1)


def bokeh_blur(bg: np.ndarray, k: int) -> np.ndarray:
    """RSSN's averaging blur of the background (box kernel k x k) -> float32 HxWx3."""
    return cv2.blur(bg.astype(np.float32), (int(k), int(k)), borderType=cv2.BORDER_REFLECT)


def add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 10 / 255) -> np.ndarray:
    """Add N(0, sigma^2) noise per pixel and channel, clip to [0, 1]."""
    n = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(img + n, 0.0, 1.0).astype(np.float32)


def rssn_composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
                   p_denoise: float = 0.5, p_bokeh: float = 0.5, p_noise: float = 0.5,
                   bokeh_sizes: Sequence[int] = (20, 30, 40, 50, 60),
                   denoise_method: str = "bilateral") -> dict[str, np.ndarray]:
    """GFM's RSSN route: match bg to fg, denoise F and B (p), bokeh-blur B (p), blend,
    add Gaussian noise sigma = 10/255 (p).

    Returns {"image", "foreground", "background"} where image = composite(foreground,
    background, alpha) + the optional noise, i.e. the labels are exact up to that noise.
    """
    bg = match_background(bg, alpha.shape, rng)
    if rng.random() < p_denoise:
        fg, bg = denoise(fg, denoise_method), denoise(bg, denoise_method)
    if rng.random() < p_bokeh:
        bg = bokeh_blur(bg, int(rng.choice(np.asarray(bokeh_sizes))))
    image = composite(fg, bg, alpha)
    if rng.random() < p_noise:
        image = add_gaussian_noise(image, rng)
    return {"image": image, "foreground": fg.astype(np.float32), "background": bg}


# ----------------------------------------------------------------------------- guidance


def binarize(alpha: np.ndarray, t: float) -> np.ndarray:
    """alpha > t as float32 {0,1} (t in [0, 1))."""
    return (alpha > t).astype(np.float32)


def random_dilate_erode(mask: np.ndarray, rng: np.random.Generator, kmin: int = 1, kmax: int = 30) -> np.ndarray:
    """MG Matting: dilate and erode in random order with independent kernels k ~ U{kmin..kmax}."""
    k1, k2 = (int(v) for v in rng.integers(kmin, kmax + 1, size=2))
    if rng.random() < 0.5:
        return erode(dilate(mask, k1), k2)
    return dilate(erode(mask, k1), k2)


def cut_mask(mask: np.ndarray, rng: np.random.Generator, p: float = 0.25,
             frac: tuple[float, float] = (0.25, 0.5)) -> np.ndarray:
    """MG CutMask: with probability p copy a patch (sides a random ¼–½ of the image's)
    from one random location onto another. Returns a new float32 HxW array."""
    out = mask.astype(np.float32).copy()
    if rng.random() >= p:
        return out
    h, w = mask.shape[:2]
    ph = max(1, int(h * rng.uniform(*frac)))
    pw = max(1, int(w * rng.uniform(*frac)))
    y1, x1 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    y2, x2 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out[y2:y2 + ph, x2:x2 + pw] = mask[y1:y1 + ph, x1:x1 + pw]
    return out


def mg_perturb(alpha: np.ndarray, rng: np.random.Generator, kmax: int = 30, p_cut: float = 0.25) -> np.ndarray:
    """MG guidance from GT alpha: binarise at t ~ U(0,1), random-order dilate/erode
    (k in 1..kmax), CutMask with p_cut. -> float32 {0,1} HxW."""
    m = binarize(alpha, float(rng.uniform(0.0, 1.0)))
    m = random_dilate_erode(m, rng, 1, kmax)
    return cut_mask(m, rng, p_cut)


def lasso_guidance(alpha: np.ndarray, rng: np.random.Generator, margin: tuple[float, float] = (0.01, 0.05),
                   n_vertices: tuple[int, int] = (10, 40)) -> np.ndarray:
    """A coarse hand-drawn "lasso" selection around the subject: a polygon through roughly
    evenly spaced points of the subject's outline grown by a random margin, each point
    jittered. -> float32 {0,1} HxW (an empty alpha gives zeros)."""
    h, w = alpha.shape
    m = (alpha > 0.5).astype(np.uint8)
    if m.sum() == 0:
        return np.zeros((h, w), np.float32)
    d = max(2, int(min(h, w) * rng.uniform(*margin)))
    grown = cv2.dilate(m, _disk(2 * d + 1))
    contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros((h, w), np.uint8)
    for c in contours:
        c = c[:, 0, :].astype(np.float32)
        if len(c) < 3:
            continue
        nv = min(len(c), int(rng.integers(n_vertices[0], n_vertices[1] + 1)))
        step = len(c) / nv
        idx = (np.arange(nv) * step + rng.uniform(0, step, size=nv)).astype(np.int64) % len(c)
        pts = c[np.sort(idx)] + rng.normal(0, d / 3, size=(nv, 2)).astype(np.float32)
        cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- augmentation


def snap_alpha(alpha: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Set alpha within `tol` of 0 or 1 to exactly 0 or 1 (interpolation in warps and
    resizes leaves 0.99999 in opaque cores, which would empty the "alpha == 1" targets)."""
    return np.where(alpha < tol, 0.0, np.where(alpha > 1 - tol, 1.0, alpha)).astype(np.float32)


def over(fg1: np.ndarray, a1: np.ndarray, fg2: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-foreground composite: layer 1 over layer 2 -> (fg, alpha), exact:
    composite(fg, B, alpha) == composite(fg1, composite(fg2, B, a2), a1) for every B.
    (GCA's version blends fg colours with a1 only, which is not exact.)"""
    alpha = 1.0 - (1.0 - a1) * (1.0 - a2)
    pre = a1[..., None] * fg1 + ((1.0 - a1) * a2)[..., None] * fg2
    fg = np.where(alpha[..., None] > _EPS, pre / np.maximum(alpha, _EPS)[..., None], fg1)
    return np.clip(fg, 0, 1).astype(np.float32), alpha.astype(np.float32)


def random_affine_matrix(rng: np.random.Generator, shape: Sequence[int], degrees: float = 30,
                         scale: tuple[float, float] = (0.8, 1.25), shear: float = 10,
                         flip: float = 0.5) -> np.ndarray:
    """GCA's RandomAffine parameters as a 2x3 matrix about the image centre."""
    h, w = shape[:2]
    ang = np.deg2rad(rng.uniform(-degrees, degrees))
    s = rng.uniform(*scale)
    sh = np.deg2rad(rng.uniform(-shear, shear))
    fx = -1.0 if rng.random() < flip else 1.0
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    shm = np.array([[1.0, np.tan(sh)], [0.0, 1.0]])
    a = rot @ shm @ np.diag([s * fx, s])
    c = np.array([w / 2, h / 2])
    return np.hstack([a, (c - a @ c)[:, None]]).astype(np.float64)


def warp_affine(fg: np.ndarray, alpha: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply one 2x3 matrix to fg (reflect border) and alpha (zero border), bilinear."""
    h, w = alpha.shape
    f = cv2.warpAffine(fg, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(f, 0, 1), np.clip(a, 0, 1)


def color_jitter(img: np.ndarray, rng: np.random.Generator, hue: float = 0.1, sat: float = 0.3,
                 val: float = 0.3) -> np.ndarray:
    """GCA-style HSV jitter: hue shift ±hue turns, saturation and value scaled by 1±sat/val."""
    hsv = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-hue, hue)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - sat, 1 + sat), 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(1 - val, 1 + val), 0, 1)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)


_INTERPS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_LANCZOS4)


def random_resize(arrays: Sequence[np.ndarray], rng: np.random.Generator, scale: tuple[float, float] = (0.5, 1.5),
                  size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Resize every array (same HxW) by one random factor (or to `size` = (h, w)) with one
    random interpolation (nearest/linear/cubic/area/lanczos); results clipped to [0, 1]."""
    h, w = arrays[0].shape[:2]
    if size is None:
        s = rng.uniform(*scale)
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
    interp = int(rng.choice(np.asarray(_INTERPS)))
    return [np.clip(cv2.resize(a, (size[1], size[0]), interpolation=interp), 0, 1).astype(np.float32)
            for a in arrays]


def crop_centered(arrays: Sequence[np.ndarray], focus: np.ndarray, crop: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Crop `crop` x `crop` around a random pixel of `focus` (HxW bool/{0,1}: the unknown
    region), or a random window when `focus` is empty. Arrays smaller than the crop are
    first upscaled (bilinear) so the short side equals `crop`."""
    h, w = arrays[0].shape[:2]
    if min(h, w) < crop:
        s = crop / min(h, w)
        nh, nw = max(crop, int(np.ceil(h * s))), max(crop, int(np.ceil(w * s)))
        arrays = [cv2.resize(a, (nw, nh), interpolation=cv2.INTER_LINEAR) for a in arrays]
        focus = cv2.resize(focus.astype(np.float32), (nw, nh), interpolation=cv2.INTER_NEAREST)
        h, w = nh, nw
    ys, xs = np.nonzero(focus > 0.5)
    if len(ys):
        j = int(rng.integers(len(ys)))
        cy, cx = int(ys[j]), int(xs[j])
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y = int(np.clip(cy - crop // 2, 0, h - crop))
    x = int(np.clip(cx - crop // 2, 0, w - crop))
    return [np.ascontiguousarray(a[y:y + crop, x:x + crop]) for a in arrays]


def edge_region(alpha: np.ndarray) -> np.ndarray:
    """Pixels with 0 < alpha < 1 (plus a 15 px grown margin), bool HxW, for crop centring."""
    band = (alpha > 1 / 255) & (alpha < 254 / 255)
    return dilate(band.astype(np.float32), 15) > 0.5


def gca_augment(fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator,
                second: tuple[np.ndarray, np.ndarray] | None = None, p_second: float = 0.5,
                p_affine: float = 1.0, p_jitter: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """GCA augmentation of one foreground: optional second foreground layered under it
    (probability p_second; resized to match), random affine, colour jitter of F.
    -> (fg, alpha), same size as the input. Compositing happens afterwards, so labels stay exact."""
    if second is not None and rng.random() < p_second:
        f2, a2 = second
        if f2.shape[:2] != alpha.shape:
            f2, a2 = (cv2.resize(x, (alpha.shape[1], alpha.shape[0]), interpolation=cv2.INTER_LINEAR)
                      for x in (f2, a2))
        fg, alpha = over(fg, alpha, np.clip(f2, 0, 1), np.clip(a2, 0, 1))
    if rng.random() < p_affine:
        fg, alpha = warp_affine(fg, alpha, random_affine_matrix(rng, alpha.shape))
    if rng.random() < p_jitter:
        fg = color_jitter(fg, rng)
    return fg.astype(np.float32), alpha.astype(np.float32)


# ----------------------------------------------------------------------------- targets


def transition_px(shape: Sequence[int]) -> int:
    """MODNet's transition width: 5 % of the mean side (its SOC code), at least 3 px."""
    return max(3, int(round(0.05 * (shape[0] + shape[1]) / 2)))


def boundary_mask(alpha: np.ndarray, k: int | None = None) -> np.ndarray:
    """MODNet transition band m_d = dilate(alpha > 0) - erode(alpha >= 1) with a k-px disk
    (default `transition_px`). -> float32 {0,1}; every 0 < alpha < 1 pixel is inside."""
    k = transition_px(alpha.shape) if k is None else k
    return np.clip(dilate(alpha > 1e-4, k) - erode(alpha > 1 - 1e-4, k), 0, 1)


def rosta_targets(alpha: np.ndarray, mode: str = "tt", k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GFM RoSTa glance target and focus (transition) mask.

    - "tt" (k=25): classes 0 background, 1 transition, 2 foreground; fg = erode(alpha==1)
      (alpha >= 1 - 1e-4),
      transition = dilate(alpha>0) - fg (GFM's gen_trimap_with_dilate).
    - "ft" (k=50): classes 0 / 1 where 1 = erode(alpha>0) (the foreground core);
      transition = 1(alpha>0) - core; CM fusion alpha = glance + focus.
    - "bt" (k=50): classes 0 / 1 where 1 = dilate(alpha>0); transition = dilated - 1(alpha>0);
      CM fusion alpha = glance - focus.
    Returns (glance int64 HxW, transition float32 {0,1} HxW).
    """
    mode = mode.lower().removeprefix("rosta_")
    support = (alpha > 0).astype(np.float32)
    if mode == "tt":
        k = 25 if k is None else k
        fg = erode(alpha >= 1.0 - 1e-4, k)
        trans = np.clip(dilate(support, k) - fg, 0, 1)
        glance = np.where(fg > 0, 2, np.where(trans > 0, 1, 0))
    elif mode == "ft":
        k = 50 if k is None else k
        core = erode(support, k)
        trans = np.clip(support - core, 0, 1)
        glance = core
    elif mode == "bt":
        k = 50 if k is None else k
        grown = dilate(support, k)
        trans = np.clip(grown - support, 0, 1)
        glance = grown
    else:
        raise ValueError(f"unknown RoSTa mode {mode!r} (tt, ft, bt)")
    return glance.astype(np.int64), trans.astype(np.float32)


def trimap_to_glance(trimap: np.ndarray) -> np.ndarray:
    """A trimap {0,0.5,1} as RoSTa-TT classes 0 bg / 1 unknown / 2 fg (int64)."""
    return np.rint(trimap * 2).astype(np.int64)


def pomagan_border(alpha: np.ndarray, k: int = 10) -> np.ndarray:
    """POMAGAN border band alpha_b = dilate(bin alpha) - erode(bin alpha), bin at 0.5,
    k-px disk (kernel size not in the paper). -> float32 {0,1}."""
    b = alpha > 0.5
    return np.clip(dilate(b, k) - erode(b, k), 0, 1)


def trimap_from_alpha(alpha: np.ndarray, k: int = 10) -> np.ndarray:
    """DIM-style trimap: known fg = erode(alpha==1, k), known bg = erode(alpha==0, k),
    else unknown. -> float32 {0,0.5,1}."""
    fg = erode(alpha >= 1.0 - 1e-4, k)
    bg = erode(alpha <= 1e-4, k)
    return np.where(fg > 0, 1.0, np.where(bg > 0, 0.0, 0.5)).astype(np.float32)


def ddc_trimap(alpha: np.ndarray, rng: np.random.Generator, kmin: int = 1, kmax: int = 30) -> np.ndarray:
    """DDC random-erosion trimap: fg and bg regions eroded with independent k ~ U{kmin..kmax}."""
    k1, k2 = (int(v) for v in rng.integers(kmin, kmax + 1, size=2))
    fg = erode(alpha >= 1.0 - 1e-4, k1)
    bg = erode(alpha <= 1e-4, k2)
    return np.where(fg > 0, 1.0, np.where(bg > 0, 0.0, 0.5)).astype(np.float32)


def segmentation_to_trimap(seg: np.ndarray, hi: float = 0.95, lo: float = 0.05, k: int = 20) -> np.ndarray:
    """MG's baseline trimap from a soft segmentation: > hi fg, < lo bg, the rest and the
    fg/bg edge unknown, the unknown band dilated by a k-px disk. -> float32 {0,0.5,1}."""
    fg, bg = seg > hi, seg < lo
    unk = ~(fg | bg)
    edge = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    unk = dilate((unk | edge).astype(np.float32), k) > 0.5
    return np.where(unk, 0.5, np.where(fg, 1.0, 0.0)).astype(np.float32)


def random_alpha_blending(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> dict[str, np.ndarray]:
    """MG Random Alpha Blending sample for the foreground net: F, B and alpha are
    unrelated; F is a valid label on the whole image. -> {"image","foreground","background","alpha"}."""
    return {"image": composite(fg, bg, alpha), "foreground": fg.astype(np.float32),
            "background": bg.astype(np.float32), "alpha": alpha.astype(np.float32)}
