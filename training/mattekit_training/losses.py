"""Training losses of the five seed methods (MODNet, MG Matting, GFM, POMAGAN, DDC).

Every loss is a small pure function on torch tensors in the training layout:
``alpha``/``pred`` ``(N, 1, H, W)`` in [0, 1], ``image``/``foreground``/``background``
``(N, 3, H, W)`` in [0, 1], masks ``(N, 1, H, W)`` in {0, 1} (float or bool).
Reductions are means (over pixels, or over masked pixels where a mask is given) so the
weights from the papers keep their meaning across crop sizes.

Formulas and weights: ``/work/shared/docs/seeds-digest.md`` sections 1-5.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

_EPS = 1e-8


# --------------------------------------------------------------------------- basics


def masked_mean(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of `x` over the pixels where `mask` is set (all pixels when None).

    `mask` broadcasts against `x`; an empty mask gives 0 (and zero gradient), not NaN.
    """
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype).expand_as(x)
    return (x * mask).sum() / (mask.sum() + _EPS)


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error, optionally over a mask."""
    return masked_mean((pred - target).abs(), mask)


def charbonnier_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2): a differentiable L1 (DIM, GFM; eps = 1e-6)."""
    return masked_mean(torch.sqrt((pred - target) ** 2 + eps * eps), mask)


def composite(alpha: Tensor, foreground: Tensor, background: Tensor) -> Tensor:
    """I = alpha F + (1 - alpha) B; alpha (N,1,H,W), F and B (N,3,H,W)."""
    return alpha * foreground + (1.0 - alpha) * background


def composition_loss(
    alpha: Tensor,
    foreground: Tensor,
    background: Tensor,
    image: Tensor,
    mask: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """DIM composition loss: Charbonnier distance between `image` and the re-composite
    from the predicted `alpha` with ground-truth `foreground` and `background`."""
    return charbonnier_loss(composite(alpha, foreground, background), image, mask, eps)


def gaussian_kernel2d(size: int, sigma: float | None = None) -> Tensor:
    """Normalised (size, size) Gaussian; sigma defaults to OpenCV's rule for `size`."""
    if sigma is None or sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma * sigma))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def gaussian_blur(x: Tensor, size: int = 3, sigma: float | None = None) -> Tensor:
    """Depth-wise Gaussian blur with reflect padding; keeps the shape of x (N,C,H,W)."""
    c = x.shape[1]
    k = gaussian_kernel2d(size, sigma).to(x)[None, None].repeat(c, 1, 1, 1)
    p = size // 2
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    return F.conv2d(F.pad(x, (p, p, p, p), mode=mode), k, groups=c)


def dilate(mask: Tensor, size: int) -> Tensor:
    """Grey dilation with a size x size square (max-pool), shape preserved."""
    if size <= 1:
        return mask
    pad_lo = (size - 1) // 2
    pad_hi = size - 1 - pad_lo
    x = F.pad(mask, (pad_lo, pad_hi, pad_lo, pad_hi), mode="replicate")
    return F.max_pool2d(x, size, stride=1)


def erode(mask: Tensor, size: int) -> Tensor:
    """Grey erosion with a size x size square, shape preserved."""
    return -dilate(-mask, size)


def boundary_band(alpha: Tensor, size: int, threshold: float = 0.5) -> Tensor:
    """dilate(bin alpha) - erode(bin alpha) as a float mask (N,1,H,W) in {0, 1}.

    With threshold < 0 the grey alpha itself is used, so every pixel whose
    neighbourhood is not constant belongs to the band (MODNet's m_d from alpha).
    """
    a = alpha if threshold < 0 else (alpha > threshold).to(alpha.dtype)
    return (dilate(a, size) - erode(a, size) > 0).to(alpha.dtype)


# --------------------------------------------------------------------------- Laplacian pyramid

_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])


def _gauss5(x: Tensor) -> Tensor:
    c = x.shape[1]
    k = (torch.outer(_BINOMIAL5, _BINOMIAL5) / 256.0).to(x)[None, None].repeat(c, 1, 1, 1)
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=mode), k, groups=c)


def laplacian_pyramid(x: Tensor, levels: int = 5) -> list[Tensor]:
    """Laplacian pyramid (Hou & Liu / MG Matting code): 5x5 binomial Gaussian,
    stride-2 decimation, zero-insertion upsampling x4. Level i has size ~H/2^i."""
    pyr = []
    cur = x
    for _ in range(levels):
        down = _gauss5(cur)[:, :, ::2, ::2]
        up = torch.zeros(
            down.shape[0], down.shape[1], down.shape[2] * 2, down.shape[3] * 2, dtype=x.dtype, device=x.device
        )
        up[:, :, ::2, ::2] = down
        up = _gauss5(up * 4.0)[:, :, : cur.shape[2], : cur.shape[3]]
        pyr.append(cur - up)
        cur = down
    return pyr


def laplacian_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    levels: int = 5,
    level_scale: bool = True,
) -> Tensor:
    """L1 between Laplacian pyramids, summed over `levels` levels.

    `level_scale` weights level i by 2^i (MG Matting's code); GFM sums levels unweighted.
    `mask` (N,1,H,W) is decimated with the pyramid and restricts each level's L1.
    """
    pp, pt = laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)
    m = None if mask is None else mask.to(pred.dtype)
    total = pred.new_zeros(())
    for i, (a, b) in enumerate(zip(pp, pt)):
        total = total + (2.0**i if level_scale else 1.0) * l1_loss(a, b, m)
        if m is not None:
            m = m[:, :, ::2, ::2]
    return total


# --------------------------------------------------------------------------- MODNet


@dataclass
class ModnetWeights:
    """MODNet loss weights; the paper's 1 / 10 / 1 (the public code uses 10 / 10 / 1)."""

    semantic: float = 1.0
    detail: float = 10.0
    matte: float = 1.0


def modnet_semantic_target(alpha: Tensor, stride: int = 16) -> Tensor:
    """G(alpha): bilinear 1/`stride` downsampling then a 3x3 Gaussian blur (MODNet code)."""
    small = F.interpolate(alpha, scale_factor=1.0 / stride, mode="bilinear", align_corners=False)
    return gaussian_blur(small, 3)


def modnet_semantic_loss(pred_semantic: Tensor, alpha: Tensor) -> Tensor:
    """L_s = 1/2 mean (s_p - G(alpha))^2; pred_semantic (N,1,H/16,W/16)."""
    target = modnet_semantic_target(alpha)
    if target.shape[-2:] != pred_semantic.shape[-2:]:
        target = F.interpolate(target, size=pred_semantic.shape[-2:], mode="bilinear", align_corners=False)
    return 0.5 * F.mse_loss(pred_semantic, target)


def modnet_detail_loss(pred_detail: Tensor, alpha: Tensor, band: Tensor) -> Tensor:
    """L_d = mean over the transition band m_d of |d_p - alpha| (zero gradient outside)."""
    return l1_loss(pred_detail, alpha, band)


def modnet_matte_loss(
    pred_matte: Tensor, alpha: Tensor, image: Tensor, foreground: Tensor, background: Tensor
) -> Tensor:
    """L_alpha = L1(alpha_p, alpha) + composition loss."""
    return l1_loss(pred_matte, alpha) + composition_loss(pred_matte, foreground, background, image)


def modnet_loss(
    pred_semantic: Tensor,
    pred_detail: Tensor,
    pred_matte: Tensor,
    alpha: Tensor,
    band: Tensor,
    image: Tensor,
    foreground: Tensor,
    background: Tensor,
    weights: ModnetWeights = ModnetWeights(),
) -> dict[str, Tensor]:
    """Supervised MODNet objective; returns the terms and `total`."""
    out = {
        "semantic": modnet_semantic_loss(pred_semantic, alpha),
        "detail": modnet_detail_loss(pred_detail, alpha, band),
        "matte": modnet_matte_loss(pred_matte, alpha, image, foreground, background),
    }
    out["total"] = weights.semantic * out["semantic"] + weights.detail * out["detail"] + weights.matte * out["matte"]
    return out


def soc_band(pred_matte: Tensor, pred_semantic: Tensor, frac: float = 0.05) -> Tensor:
    """SOC transition band m~_d (MODNet code): dilate - erode of {alpha > 0.1 and s > 0.1},
    square side 5 % of (H+W)/2. Detached: it only selects pixels."""
    with torch.no_grad():
        s = F.interpolate(pred_semantic, size=pred_matte.shape[-2:], mode="bilinear", align_corners=False)
        fg = ((pred_matte > 0.1) & (s > 0.1)).to(pred_matte.dtype)
        h, w = pred_matte.shape[-2:]
        side = max(3, int((h + w) / 2 * frac))
        return boundary_band(fg, side, threshold=-1.0)


def modnet_soc_loss(
    pred_semantic: Tensor,
    pred_detail: Tensor,
    pred_matte: Tensor,
    frozen_detail: Tensor,
    semantic_weight: float = 1.0,
    detail_weight: float = 1.0,
    frozen_weight: float = 1.0,
    band: Tensor | None = None,
) -> dict[str, Tensor]:
    """SOC on unlabelled images: L_cons + L_dd (paper weights 1/1/1; code uses 100 for semantic).

    - semantic consistency 1/2 ||G(alpha~) - s~||^2, with G(alpha~) detached (the blurred,
      downsampled matte is the pseudo label; gradients through it would erase detail);
    - detail consistency ||m~ (alpha~ - d~)||_1 in the band (both branches move);
    - L_dd = ||m~ (d~' - d~)||_1 against the frozen copy's detail `frozen_detail`.
    """
    if band is None:
        band = soc_band(pred_matte, pred_semantic)
    target = modnet_semantic_target(pred_matte.detach())
    if target.shape[-2:] != pred_semantic.shape[-2:]:
        target = F.interpolate(target, size=pred_semantic.shape[-2:], mode="bilinear", align_corners=False)
    out = {
        "soc_semantic": 0.5 * F.mse_loss(pred_semantic, target),
        "soc_detail": l1_loss(pred_detail, pred_matte, band),
        "soc_frozen": l1_loss(pred_detail, frozen_detail.detach(), band),
    }
    out["total"] = (
        semantic_weight * out["soc_semantic"] + detail_weight * out["soc_detail"] + frozen_weight * out["soc_frozen"]
    )
    return out


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm in eval mode with frozen affine parameters (SOC). Returns the count.

    Call again after each `model.train()`, which would switch them back to batch statistics.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            n += 1
    return n


# --------------------------------------------------------------------------- MG Matting


def matting_trio_loss(
    pred: Tensor,
    alpha: Tensor,
    image: Tensor | None,
    foreground: Tensor | None,
    background: Tensor | None,
    mask: Tensor | None = None,
    comp: bool = True,
) -> dict[str, Tensor]:
    """MG's per-head loss L1 + composition + Laplacian (weights 1:1:1) restricted to `mask`.

    Set `comp=False` for the real-world variant (augmented colours break the composite).
    """
    # L(pred g, alpha g): mask the mattes before the pyramid so that errors outside g
    # cannot leak in through the band-pass filters.
    m = None if mask is None else mask.to(pred.dtype)
    lap = laplacian_loss(pred, alpha) if m is None else laplacian_loss(pred * m, alpha * m, m)
    out = {"l1": l1_loss(pred, alpha, mask), "lap": lap}
    if comp and image is not None and foreground is not None and background is not None:
        out["comp"] = composition_loss(pred, foreground, background, image, mask)
    else:
        out["comp"] = pred.new_zeros(())
    out["total"] = out["l1"] + out["comp"] + out["lap"]
    return out


def uncertain_region(alpha: Tensor, low: float = 1.0 / 255, high: float = 254.0 / 255) -> Tensor:
    """g = 1 where low < alpha < high (MG's PRM self-guidance before dilation), float (N,1,H,W)."""
    return ((alpha > low) & (alpha < high)).to(alpha.dtype)


def self_guidance(
    alpha_prev: Tensor, width: int | Sequence[int], generator: torch.Generator | None = None, random_width: bool = False
) -> Tensor:
    """Self-guidance mask from the previous level's prediction, dilated per sample.

    random_width=True draws each sample's dilation radius from U[1, width) as MG's training
    does (K1 = 30 for OS8 -> OS4, K2 = 15 for OS4 -> OS1); otherwise radius width // 2
    (test-time 15 / 7). Radius r dilates with a (2r+1)-square. Detached; (N,1,H,W) float.
    """
    with torch.no_grad():
        g = uncertain_region(alpha_prev)
        n = g.shape[0]
        if isinstance(width, int):
            if random_width:
                hi = max(2, width)
                radii = torch.randint(1, hi, (n,), generator=generator).tolist()
            else:
                radii = [max(1, width // 2)] * n
        else:
            radii = list(width)
        return torch.cat([dilate(g[i : i + 1], 2 * r + 1) for i, r in enumerate(radii)], 0)


def prm_fuse(alpha_prev: Tensor, alpha_cur: Tensor, guidance: Tensor) -> Tensor:
    """PRM: alpha_l = alpha'_l g + alpha_{l-1} (1 - g); keeps confident coarser regions."""
    return alpha_cur * guidance + alpha_prev * (1.0 - guidance)


@dataclass
class MGWeights:
    """Head weights OS8 : OS4 : OS1 = 1 : 2 : 3 and whether the composition term is used."""

    os8: float = 1.0
    os4: float = 2.0
    os1: float = 3.0
    comp: bool = True


def mg_loss(
    alpha_os8: Tensor,
    alpha_os4: Tensor,
    alpha_os1: Tensor,
    alpha: Tensor,
    g4: Tensor,
    g1: Tensor,
    image: Tensor | None = None,
    foreground: Tensor | None = None,
    background: Tensor | None = None,
    weights: MGWeights = MGWeights(),
) -> dict[str, Tensor]:
    """MG Matting deep supervision: sum_l w_l L(alpha_l g_l, alpha g_l) with g_OS8 = 1.

    `alpha_os4`/`alpha_os1` are the raw head outputs (full size); g4 / g1 the guidance
    masks for OS4 / OS1 (GT-derived or self-guidance, see `self_guidance`).
    """
    l8 = matting_trio_loss(alpha_os8, alpha, image, foreground, background, None, weights.comp)
    l4 = matting_trio_loss(alpha_os4, alpha, image, foreground, background, g4, weights.comp)
    l1 = matting_trio_loss(alpha_os1, alpha, image, foreground, background, g1, weights.comp)
    out = {"os8": l8["total"], "os4": l4["total"], "os1": l1["total"]}
    out["total"] = weights.os8 * out["os8"] + weights.os4 * out["os4"] + weights.os1 * out["os1"]
    return out


def guidance_stage(step: int, gt_until: int, mixed_until: int) -> str:
    """MG curriculum: 'gt' before `gt_until`, 'mixed' (50/50) before `mixed_until`, then 'self'."""
    if step < gt_until:
        return "gt"
    if step < mixed_until:
        return "mixed"
    return "self"


def foreground_loss(
    pred_fg: Tensor, foreground: Tensor, alpha: Tensor, background: Tensor, image: Tensor
) -> dict[str, Tensor]:
    """MG foreground net on RAB data: L1 + composition (alpha F^ + (1 - alpha) B vs I) +
    Laplacian, all on the whole image (RAB labels are exact everywhere)."""
    out = {
        "l1": l1_loss(pred_fg, foreground),
        "comp": charbonnier_loss(composite(alpha, pred_fg, background), image),
        "lap": laplacian_loss(pred_fg, foreground),
    }
    out["total"] = out["l1"] + out["comp"] + out["lap"]
    return out


# --------------------------------------------------------------------------- GFM


def glance_ce_loss(glance: Tensor, target: Tensor, mode: str = "official", eps: float = 1e-7) -> Tensor:
    """Cross-entropy of the glance decoder output (N,K,H,W) against int64 RoSTa classes
    (N,H,W) (TT: 0 = background, 1 = transition, 2 = foreground).

    mode 'official': F.cross_entropy with the model's (sigmoid) outputs as logits - what the
    GFM code trains its sigmoid glance head with; mode 'probs': NLL of log(glance) for a head
    that outputs probabilities (softmax).
    """
    if target.dim() == 4:
        target = target[:, 0]
    target = target.long()
    if mode == "official":
        return F.cross_entropy(glance, target)
    if mode == "probs":
        return F.nll_loss(torch.log(glance.clamp_min(eps)), target)
    raise ValueError(f"unknown glance CE mode {mode!r}")


def gfm_focus_loss(focus: Tensor, alpha: Tensor, transition: Tensor, eps: float = 1e-6) -> dict[str, Tensor]:
    """Focus decoder loss inside the transition mask W: Charbonnier (sum / sum W) +
    5-level Laplacian of the W-masked mattes (levels unweighted, as GFM's code)."""
    w = transition.to(focus.dtype)
    out = {
        "focus_alpha": charbonnier_loss(focus, alpha, w, eps),
        "focus_lap": laplacian_loss(focus * w, alpha * w, None, 5, level_scale=False),
    }
    out["total"] = out["focus_alpha"] + out["focus_lap"]
    return out


def gfm_fusion_loss(
    fusion: Tensor, alpha: Tensor, image: Tensor, foreground: Tensor, background: Tensor, eps: float = 1e-6
) -> dict[str, Tensor]:
    """Collaborative-matting loss on the whole image: alpha + Laplacian + composition."""
    out = {
        "cm_alpha": charbonnier_loss(fusion, alpha, None, eps),
        "cm_lap": laplacian_loss(fusion, alpha, None, 5, level_scale=False),
        "cm_comp": composition_loss(fusion, foreground, background, image, None, eps),
    }
    out["total"] = out["cm_alpha"] + out["cm_lap"] + out["cm_comp"]
    return out


def gfm_loss(
    glance_prob: Tensor,
    focus: Tensor,
    fusion: Tensor,
    glance_target: Tensor,
    alpha: Tensor,
    image: Tensor,
    foreground: Tensor,
    background: Tensor,
    transition_class: int = 1,
    glance_mode: str = "official",
) -> dict[str, Tensor]:
    """L = CE(GD) + L_FD + L_CM (all weights 1); W = pixels of class `transition_class`."""
    tgt = glance_target[:, 0] if glance_target.dim() == 4 else glance_target
    w = (tgt == transition_class).unsqueeze(1).to(alpha.dtype)
    fd = gfm_focus_loss(focus, alpha, w)
    cm = gfm_fusion_loss(fusion, alpha, image, foreground, background)
    out = {"glance": glance_ce_loss(glance_prob, tgt, glance_mode), "focus": fd["total"], "cm": cm["total"]}
    out["total"] = out["glance"] + out["focus"] + out["cm"]
    return out


# --------------------------------------------------------------------------- DDC


def known_mask(trimap: Tensor) -> Tensor:
    """1 where the trimap is known (0 or 1), 0 in the unknown band (0.5)."""
    return ((trimap < 0.25) | (trimap > 0.75)).to(trimap.dtype)


def known_l1_loss(pred: Tensor, trimap: Tensor) -> Tensor:
    """L1 to the trimap's value on known pixels only, i.e. mean L1 x N / N_known (ViTMatte)."""
    return l1_loss(pred, (trimap > 0.5).to(pred.dtype), known_mask(trimap))


def ddc_loss(
    alpha: Tensor,
    image: Tensor,
    window: int = 11,
    k: int = 11,
    max_elements: int = 1 << 24,
) -> Tensor:
    """Directional distance consistency (DDC) loss, mean over pixels and neighbour pairs.

    For pixel i and its k nearest neighbours j in RGB inside a window x window patch
    (centre excluded): | ||I_i - I_j||_2 - (alpha_i - alpha_j) |. The signed difference lets
    flat regions stay flat while alpha cannot change faster than colour.

    alpha (N,1,H,W) with gradient, image (N,3,H,W) in [0,1] (no gradient used).
    Rows are processed in chunks so that the unfolded tensors hold about
    `max_elements` values (memory stays bounded for large crops).
    """
    n, _, h, w = alpha.shape
    r = window // 2
    kk = window * window
    image = image.detach().to(alpha.dtype)
    # Pad the image with a far-away colour: padded pixels are never nearest neighbours.
    img_p = F.pad(image, (r, r, r, r), value=1e3)
    a_p = F.pad(alpha, (r, r, r, r), value=0.0)
    rows = max(1, min(h, max_elements // max(1, n * 4 * kk * w)))
    total = alpha.new_zeros(())
    centre = kk // 2
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        ip = img_p[:, :, y0 : y1 + 2 * r]
        ap = a_p[:, :, y0 : y1 + 2 * r]
        iu = F.unfold(ip, window).view(n, 3, kk, -1)  # (N,3,K,L), L = (y1-y0) * w
        au = F.unfold(ap, window).view(n, kk, -1)  # (N,K,L)
        ic = iu[:, :, centre : centre + 1]
        ac = au[:, centre : centre + 1]
        dist = ((iu - ic) ** 2).sum(1).sqrt()  # (N,K,L)
        dist[:, centre] = float("inf")
        d_k, idx = torch.topk(dist, k, dim=1, largest=False)
        a_k = torch.gather(au, 1, idx)
        total = total + (d_k - (ac - a_k)).abs().sum()
    return total / (n * h * w * k)


def ddc_total_loss(pred: Tensor, trimap: Tensor, image: Tensor, lam: float = 10.0, **ddc_kw) -> dict[str, Tensor]:
    """L = L_known + lambda L_DDC (DDC on the whole matte; lambda = 10 as the code)."""
    out = {"known": known_l1_loss(pred, trimap), "ddc": ddc_loss(pred, image, **ddc_kw)}
    out["total"] = out["known"] + lam * out["ddc"]
    return out


# --------------------------------------------------------------------------- POMAGAN


class _InstanceNorm(nn.InstanceNorm2d):
    """InstanceNorm that passes 1x1 maps through (tiny crops at the coarsest scale)."""

    def forward(self, x: Tensor) -> Tensor:
        return x if x.shape[-1] * x.shape[-2] == 1 else super().forward(x)


class PatchDiscriminator(nn.Module):
    """pix2pixHD / PatchGAN discriminator: n_layers stride-2 4x4 convs, InstanceNorm,
    LeakyReLU(0.2), 1-channel patch logits."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = min(ch * 2, 512)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride, 1), _InstanceNorm(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.min_side = 4 * 2**n_layers

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_side:  # tiny crops at the coarsest scale: pad to a valid size
            ph, pw = max(0, self.min_side - h), max(0, self.min_side - w)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """Three identical PatchGAN discriminators at scales 1, 1/2, 1/4 (pix2pixHD)."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3, num_d: int = 3):
        super().__init__()
        self.ds = nn.ModuleList(PatchDiscriminator(in_ch, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


def gan_loss(logits: Sequence[Tensor], real: bool, mode: str = "lsgan", for_discriminator: bool = True) -> Tensor:
    """cGAN loss summed over the discriminator scales.

    mode 'lsgan' (pix2pixHD's default, our default): mean (D - 1)^2 for real, mean D^2 for fake.
    mode 'hinge': D loss mean relu(1 -+ D); G loss -mean D.
    """
    total = logits[0].new_zeros(())
    for lg in logits:
        if mode == "lsgan":
            total = total + ((lg - 1.0) ** 2).mean() if real else total + (lg**2).mean()
        elif mode == "hinge":
            if for_discriminator:
                total = total + (F.relu(1.0 - lg).mean() if real else F.relu(1.0 + lg).mean())
            else:
                total = total - lg.mean()
        else:
            raise ValueError(f"unknown GAN loss mode {mode!r}")
    return total


def pomagan_alpha_terms(
    pred: Tensor, alpha: Tensor, image: Tensor, background: Tensor, mask: Tensor | None = None
) -> Tensor:
    """POMAGAN's three L1 terms: ||alpha* - alpha|| + ||F* - F|| + ||I - I'|| with F = I alpha
    (not decontaminated) and re-composites I = I* alpha* + B (1 - alpha*) on background B."""
    f_gt, f_pred = image * alpha, image * pred
    c_gt, c_pred = f_gt + background * (1 - alpha), f_pred + background * (1 - pred)
    return l1_loss(pred, alpha, mask) + l1_loss(f_pred, f_gt, mask) + l1_loss(c_pred, c_gt, mask)


def pomagan_border(alpha: Tensor, size: int = 15) -> Tensor:
    """Border band alpha_b = dilate(bin alpha*) - erode(bin alpha*) (kernel absent in the
    paper; 15 px here)."""
    return boundary_band(alpha, size, threshold=0.5)


# VGG-19 feature layers (torchvision's `features` indices): conv layer configuration.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
#: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 indices in torchvision's vgg19().features.
VGG19_LAYERS = (1, 6, 11, 20, 29)
#: pix2pixHD's per-layer weights c_i.
VGG19_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


class VGG19Features(nn.Module):
    """VGG-19 `features` trunk up to relu5_1 with torchvision's parameter names
    (`features.0.weight`, ...), returning the five relu*_1 activations."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                ch = int(v)
        self.features = nn.Sequential(*layers[: VGG19_LAYERS[-1] + 1])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_LAYERS:
                outs.append(x)
        return outs


def load_vgg19(path: str | Path) -> VGG19Features:
    """VGG-19 features from a user-given file: safetensors or a torch state dict with
    torchvision names (a full `vgg19` state dict works; classifier keys are ignored)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
    net = VGG19Features()
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        raise ValueError(f"{path}: not a VGG-19 state dict (missing {missing[:3]} ...)")
    net.load_state_dict({k: sd[k] for k in own})
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class PerceptualLoss(nn.Module):
    """VGG-19 perceptual loss sum_i c_i ||V_i(a) - V_i(b)||_1 over relu1_1 .. relu5_1.

    Pretrained VGG weights cannot be downloaded here: pass `weights_path` to a user-given
    file. Without it the loss is OFF (returns 0) and says so once, loudly (a warning and
    a logged message) - it never falls back to random VGG weights.
    """

    def __init__(self, weights_path: str | Path | None = None, log=None):
        super().__init__()
        self.vgg: VGG19Features | None = None
        if weights_path and Path(weights_path).is_file():
            self.vgg = load_vgg19(weights_path)
        else:
            why = "no `perceptual_weights` given" if not weights_path else f"{weights_path} not found"
            msg = f"POMAGAN perceptual loss is OFF: {why} (VGG-19 weights cannot be downloaded; never random)."
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            if log is not None:
                log(msg)

    @property
    def enabled(self) -> bool:
        return self.vgg is not None

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if self.vgg is None:
            return a.new_zeros(())
        fa, fb = self.vgg(a), self.vgg(b.detach())
        return sum(c * (x - y).abs().mean() for c, x, y in zip(VGG19_LAYER_WEIGHTS, fa, fb))


@dataclass
class PomaganWeights:
    """Alpha-net weights from the paper: lambda (perceptual) 10, beta (L_alpha) 100,
    gamma (border) 100; GAN loss mode 'lsgan' or 'hinge'."""

    perceptual: float = 10.0
    alpha: float = 100.0
    border: float = 100.0
    gan_mode: str = "lsgan"
    border_size: int = 15


def pomagan_generator_loss(
    d_fake: Sequence[Tensor],
    pred: Tensor,
    alpha: Tensor,
    image: Tensor,
    background: Tensor,
    perceptual: PerceptualLoss | None = None,
    weights: PomaganWeights = PomaganWeights(),
) -> dict[str, Tensor]:
    """Generator objective of POMAGAN's alpha net: cGAN + beta L_alpha + gamma L_border +
    lambda perceptual(alpha, I alpha)."""
    band = pomagan_border(alpha, weights.border_size)
    out = {
        "gan_g": gan_loss(d_fake, True, weights.gan_mode, for_discriminator=False),
        "alpha": pomagan_alpha_terms(pred, alpha, image, background),
        "border": pomagan_alpha_terms(pred, alpha, image, background, band),
    }
    if perceptual is not None and perceptual.enabled:
        out["perceptual"] = perceptual(pred, alpha) + perceptual(image * pred, image * alpha)
    else:
        out["perceptual"] = pred.new_zeros(())
    out["total"] = (
        out["gan_g"]
        + weights.alpha * out["alpha"]
        + weights.border * out["border"]
        + weights.perceptual * out["perceptual"]
    )
    return out


def pomagan_discriminator_loss(d_real: Sequence[Tensor], d_fake: Sequence[Tensor], mode: str = "lsgan") -> Tensor:
    """D objective, averaged over real and fake: 1/2 (L(real) + L(fake))."""
    return 0.5 * (gan_loss(d_real, True, mode) + gan_loss(d_fake, False, mode))

