"""Matting metrics: SAD, MSE, MAD, Grad, Conn on regions; foreground-colour errors; mask agreement.

Conventions (stated once, used everywhere in this project's reports):

- Every function takes `pred` and `gt` alpha as float (H, W) in [0, 1] and an optional
  `region` bool (H, W); `region=None` means the whole image.
- Functions return **raw** values: SAD = sum |dα|, MSE = mean (dα)^2, MAD = mean |dα| over the
  region, Grad and Conn = sums over the region (α in [0, 1], not 0..255).
- Literature scalings (`LITERATURE_SCALE`, `scaled`): SAD / 1000, MSE × 1e3, MAD × 1e3,
  Grad / 1000, Conn / 1000 — the Deep Image Matting (DIM, Xu et al. 2017) evaluation code's
  divisors and MG / GCA tables' "MSE ×10⁻³" presentation. GFM / MODNet tables print MSE and
  MAD raw (e.g. 0.0044); compare with the raw numbers in that case.
- Regions: "whole" (everything), "t" (a trimap's unknown region, = DIM's `trimap == 128`),
  "fg" / "bg" (the trimap's known foreground / background). GFM's SAD-TRAN / SAD-FG / SAD-BG.

`gradient_error` and `connectivity_error` follow DIM's reference MATLAB code
(`compute_gradient_loss.m` + `gaussgradient.m`, `compute_connectivity_error.m`):

- Grad: α is *not* re-normalised with `mat2gray` (DIM rescales each map to its own min..max;
  for matte files spanning 0..255 this is the /255 every Python port uses, which we follow).
  Gradients are 2-D Gaussian-derivative filters with σ = 1.4 and DIM's truncation
  (`halfsize = ceil(σ sqrt(-2 ln(sqrt(2π) σ 0.01)))`, i.e. 9x9 for σ = 1.4), the x-kernel normalised to unit L2 norm, y = its transpose, 'replicate' borders,
  convolution. Error = Σ_region (|∇α_p| − |∇α_g|)².
- Conn: thresholds 0.1, 0.2, ..., 1.0 (step 0.1); at each, Ω = the largest **4-connected**
  component of (α_p ≥ t) ∧ (α_g ≥ t); l(i) = the last threshold before pixel i left Ω
  (1 if it never did); φ = 1 − d·[d ≥ θ] with d = α − l, θ = 0.15;
  error = Σ_region |φ_p − φ_g|. Thresholds are computed exactly (k/10), not by accumulating
  floating steps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Multipliers that turn our raw numbers into the numbers printed in matting papers.
LITERATURE_SCALE = {"sad": 1e-3, "mse": 1e3, "mad": 1e3, "grad": 1e-3, "conn": 1e-3}
#: Which trimap value each named region selects (None = every pixel).
REGIONS = ("whole", "t", "fg", "bg")


def _region(shape: tuple[int, ...], region: np.ndarray | None) -> np.ndarray:
    if region is None:
        return np.ones(shape[:2], dtype=bool)
    region = np.asarray(region, dtype=bool)
    if region.shape != tuple(shape[:2]):
        raise ValueError(f"region {region.shape} does not match {shape}")
    return region


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    return pred, gt


def sad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float:
    """Sum of absolute differences over the region (raw; papers print /1000)."""
    pred, gt = _pair(pred, gt)
    return float(np.abs(pred - gt)[_region(gt.shape, region)].sum())


def mse(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean squared error over the region's pixels (0 for an empty region)."""
    pred, gt = _pair(pred, gt)
    r = _region(gt.shape, region)
    return float(((pred - gt) ** 2)[r].mean()) if r.any() else 0.0


def mad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute difference over the region's pixels (0 for an empty region)."""
    pred, gt = _pair(pred, gt)
    r = _region(gt.shape, region)
    return float(np.abs(pred - gt)[r].mean()) if r.any() else 0.0


def gaussian_gradient_kernels(sigma: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    """DIM's `gaussgradient` kernels (hx, hy): hx[i, j] = g(i - c) g'(j - c), unit L2 norm."""
    epsilon = 1e-2
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2.0 * np.pi) * sigma * epsilon))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dgauss = -u * gauss / sigma**2
    hx = gauss[:, None] * dgauss[None, :]
    hx /= np.sqrt((hx**2).sum())
    return hx, hx.T.copy()


def gradient_magnitude(alpha: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """|∇α| with DIM's Gaussian-derivative filters (convolution, replicate borders), float64 (H, W)."""
    hx, hy = gaussian_gradient_kernels(sigma)
    a = np.asarray(alpha, dtype=np.float64)
    gx = ndimage.convolve(a, hx, mode="nearest")
    gy = ndimage.convolve(a, hy, mode="nearest")
    return np.sqrt(gx**2 + gy**2)


def gradient_error(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None, sigma: float = 1.4) -> float:
    """DIM gradient error Σ_region (|∇pred| − |∇gt|)² (raw; papers print /1000). Symmetric."""
    pred, gt = _pair(pred, gt)
    err = (gradient_magnitude(pred, sigma) - gradient_magnitude(gt, sigma)) ** 2
    return float(err[_region(gt.shape, region)].sum())


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)  # default structure = 4-connectivity in 2-D
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)  # first largest, like MATLAB's max


def connectivity_error(
    pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None, step: float = 0.1, theta: float = 0.15
) -> float:
    """DIM connectivity error Σ_region |φ(pred) − φ(gt)| (raw; papers print /1000). Symmetric."""
    pred, gt = _pair(pred, gt)
    n = int(round(1.0 / step))
    thresholds = np.arange(n + 1) / n  # exact k/n instead of accumulated steps
    l_map = np.full(gt.shape, -1.0)
    for i in range(1, n + 1):
        omega = _largest_component((pred >= thresholds[i]) & (gt >= thresholds[i]))
        l_map[(l_map == -1) & ~omega] = thresholds[i - 1]
    l_map[l_map == -1] = 1.0
    pred_d = pred - l_map
    gt_d = gt - l_map
    pred_phi = 1 - pred_d * (pred_d >= theta)
    gt_phi = 1 - gt_d * (gt_d >= theta)
    return float(np.abs(pred_phi - gt_phi)[_region(gt.shape, region)].sum())


def trimap_regions(trimap: np.ndarray | None, shape: tuple[int, ...]) -> dict[str, np.ndarray | None]:
    """{"whole": None, "t": unknown, "fg": known fg, "bg": known bg} for a {0,0.5,1} trimap."""
    out: dict[str, np.ndarray | None] = {"whole": None}
    if trimap is not None:
        t = np.asarray(trimap)
        out["t"] = (t > 0.25) & (t < 0.75)
        out["fg"] = t >= 0.75
        out["bg"] = t <= 0.25
    return out


def alpha_metrics(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None, *, grad_conn: bool = True
) -> dict[str, float]:
    """All alpha metrics, raw, keyed `metric` (whole image) and `metric_REGION` for the trimap's
    regions t / fg / bg (SAD-T etc.). Grad and Conn are computed for whole and t only
    (fg/bg versions are not reported in the literature)."""
    out: dict[str, float] = {}
    for name, region in trimap_regions(trimap, gt.shape).items():
        suffix = "" if name == "whole" else f"_{name}"
        out["sad" + suffix] = sad(pred, gt, region)
        out["mse" + suffix] = mse(pred, gt, region)
        out["mad" + suffix] = mad(pred, gt, region)
        if grad_conn and name in ("whole", "t"):
            out["grad" + suffix] = gradient_error(pred, gt, region)
            out["conn" + suffix] = connectivity_error(pred, gt, region)
    return out


def scaled(metrics: dict[str, float]) -> dict[str, float]:
    """Apply `LITERATURE_SCALE` by metric prefix (sad_t -> sad); other keys pass unchanged."""
    return {k: v * LITERATURE_SCALE.get(k.split("_")[0], 1.0) for k, v in metrics.items()}


# ----------------------------------------------------------------------------- foreground colour


def foreground_metrics(
    pred_fg: np.ndarray, gt_fg: np.ndarray, alpha: np.ndarray, eps: float = 0.0
) -> dict[str, float]:
    """Foreground-colour errors (MG Matting's evaluation), raw.

    pred_fg, gt_fg: float (H, W, 3) in [0, 1]; alpha: the ground-truth α (H, W).
    fg_mse / fg_sad: mean squared / sum of absolute colour differences over pixels with α > eps
    (all 3 channels; MSE averages over pixels × channels). afg_mse / afg_sad: the same for α·F
    over the whole image (where α = 0 both are 0). Papers print SAD / 1000.
    """
    pred_fg = np.asarray(pred_fg, np.float64)
    gt_fg = np.asarray(gt_fg, np.float64)
    a = np.asarray(alpha, np.float64)[..., None]
    sel = a[..., 0] > eps
    d = (pred_fg - gt_fg)[sel]
    ad = a * pred_fg - a * gt_fg
    return {
        "fg_mse": float((d**2).mean()) if d.size else 0.0,
        "fg_sad": float(np.abs(d).sum()),
        "afg_mse": float((ad**2).mean()),
        "afg_sad": float(np.abs(ad).sum()),
    }


# ----------------------------------------------------------------------------- rough labels


def iou(alpha: np.ndarray, mask: np.ndarray, threshold: float = 0.5, where: np.ndarray | None = None) -> float:
    """Intersection over union of (alpha > threshold) and (mask > 0.5), counted only `where` (bool
    (H, W); None: everywhere, e.g. a trimap's known pixels); 1.0 when both are empty."""
    a = np.asarray(alpha) > threshold
    m = np.asarray(mask) > 0.5
    if where is not None:
        a, m = a & where, m & where
    union = (a | m).sum()
    return float((a & m).sum() / union) if union else 1.0


def known_region_agreement(alpha: np.ndarray, trimap: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of the trimap's known pixels where (alpha > threshold) agrees with the label
    (known fg = 1, known bg = 0); 1.0 when nothing is known."""
    t = np.asarray(trimap)
    fg, bg = t >= 0.75, t <= 0.25
    known = fg | bg
    if not known.any():
        return 1.0
    a = np.asarray(alpha) > threshold
    return float((a[known] == fg[known]).mean())


def known_region_metrics(alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """For trimap-only ground truth (Oxford-IIIT Pet): agreement + SAD/MSE/MAD on known pixels,
    against the known labels (fg = 1, bg = 0)."""
    t = np.asarray(trimap, np.float64)
    known = (t >= 0.75) | (t <= 0.25)
    target = (t >= 0.75).astype(np.float64)
    return {
        "known_agreement": known_region_agreement(alpha, trimap),
        "sad_known": sad(alpha, target, known),
        "mse_known": mse(alpha, target, known),
        "mad_known": mad(alpha, target, known),
    }
