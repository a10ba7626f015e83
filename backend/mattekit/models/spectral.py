"""Spectral normalisation as MG Matting (GCA-Matting's `networks/ops.py`) stores it, and as
our models use it.

The official `SpectralNorm` wrapper keeps `<path>.module.weight_bar` (the raw weight), `weight_u`
(shape `[weight_bar.shape[0]]`) and `weight_v` (shape `[prod(weight_bar.shape[1:])]`). In `eval()`
it uses the stored vectors without a power iteration:

    W = weight_bar / (u . (weight_bar.view(h, -1) @ v))

Our modules hold the plain effective weight `W` (`<path>.weight`); conversion happens here:

- `fold_official`: official triple -> `W` (exact float32 replica of the official eval formula).
- `unfold_official`: `W` -> triple with `weight_bar = W`, `u` = unit top left singular vector,
  `v` = top right singular vector divided by sigma(W). Then `u . (W @ v) = 1`, so official
  eval reproduces `W` exactly; official training (one power iteration that re-normalises `u`, `v`)
  sees `weight_bar = W` with its true spectral norm, i.e. the usual SN semantics.

For training fidelity a model may wrap the same convs with
`torch.nn.utils.parametrizations.spectral_norm` (`apply_spectral_norm`); its `state_dict` then holds
`<path>.parametrizations.weight.original` and `<path>.parametrizations.weight.0._u/_v`.
`convert_state_dict_for` turns either layout into the other so a checkpoint saved with or without
spectral norm loads into a model built with or without it (`plain_state_dict` gives the plain form).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

_OFFICIAL_SUFFIXES = (".module.weight_bar", ".module.weight_u", ".module.weight_v")
_PARAM_ORIG = ".parametrizations.weight.original"
_PARAM_U = ".parametrizations.weight.0._u"
_PARAM_V = ".parametrizations.weight.0._v"


def fold_official(weight_bar: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Effective weight of an official SN conv in eval mode: `weight_bar / (u . (Wbar_mat @ v))`.

    weight_bar: any shape (O, ...); u: (O,); v: (prod(shape[1:]),). Same float dtype as given.
    """
    height = weight_bar.shape[0]
    sigma = u.dot(weight_bar.view(height, -1).mv(v))
    return weight_bar / sigma.expand_as(weight_bar)


def top_singular_pair(mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top singular triple (u, sigma, v) of a 2-D matrix (O, K), computed in float64.

    Eigen-decomposes the smaller Gram matrix (exact up to float64 rounding, and fast for the
    512 x 8192 ConvTranspose matrices where a full SVD or a power iteration is slow).
    """
    m = mat.detach().double()
    if m.shape[0] <= m.shape[1]:
        evals, evecs = torch.linalg.eigh(m @ m.t())
        u = evecs[:, -1]
        v = m.t().mv(u)
        s = v.norm()
        v = v / s if s > 0 else v
    else:
        evals, evecs = torch.linalg.eigh(m.t() @ m)
        v = evecs[:, -1]
        u = m.mv(v)
        s = u.norm()
        u = u / s if s > 0 else u
    return u, s, v


def unfold_official(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain weight W (O, ...) -> official (weight_bar, u, v) whose official eval weight is W.

    weight_bar = W; u = unit top left singular vector of W.view(O, -1); v = top right singular
    vector / sigma, so that u . (W @ v) = 1 (rescaled in float32 so the official float32 formula
    gives sigma = 1 to rounding).
    """
    mat = weight.reshape(weight.shape[0], -1)
    u, s, v = top_singular_pair(mat)
    if float(s) == 0.0:
        s = torch.ones((), dtype=torch.float64)
    u32 = u.to(weight.dtype)
    v32 = (v / s).to(weight.dtype)
    # One float32 correction so that the official formula's sigma is 1 in its own arithmetic.
    v32 = v32 / u32.dot(mat.mv(v32))
    return weight.detach().clone(), u32.contiguous(), v32.contiguous()


def fold_official_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every official `<p>.module.weight_{bar,u,v}` triple by a plain `<p>.weight`.

    Other keys are copied unchanged. Float tensors are cast to float32 as the official loader does.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.endswith(".module.weight_bar"):
            p = key[: -len(".module.weight_bar")]
            bar = t.float()
            u = sd[p + ".module.weight_u"].float()
            v = sd[p + ".module.weight_v"].float()
            out[p + ".weight"] = fold_official(bar, u, v)
        elif key.endswith(_OFFICIAL_SUFFIXES):
            continue
        else:
            out[key] = t.float() if t.is_floating_point() else t
    return out


def unfold_official_state_dict(sd: Mapping[str, torch.Tensor], sn_paths: Iterable[str]) -> dict[str, torch.Tensor]:
    """Inverse of `fold_official_state_dict` for the module paths `sn_paths` (key order kept)."""
    sn = set(sn_paths)
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        p = key[: -len(".weight")] if key.endswith(".weight") else None
        if p in sn:
            bar, u, v = unfold_official(t.float())
            out[p + ".module.weight_u"] = u
            out[p + ".module.weight_v"] = v
            out[p + ".module.weight_bar"] = bar
        else:
            out[key] = t
    missing = sn - {k[: -len(".module.weight_bar")] for k in out if k.endswith(".module.weight_bar")}
    if missing:
        raise KeyError(f"no plain weight for spectral-norm modules: {sorted(missing)[:5]}")
    return out


# --------------------------------------------------------------------------- torch parametrization


def sn_dim(module: nn.Module) -> int:
    """The official normalises `weight.view(weight.shape[0], -1)`: dim 0, also for ConvTranspose."""
    return 0


def apply_spectral_norm(model: nn.Module, paths: Iterable[str]) -> None:
    """Wrap `model.<path>.weight` with torch's spectral-norm parametrization (official dim 0).

    The initial u, v are the exact top singular vectors, so the wrapped model starts out computing
    W / sigma(W) (as the official training forward would).
    """
    for path in paths:
        mod = model.get_submodule(path)
        _torch_spectral_norm(mod, name="weight", n_power_iterations=1, dim=sn_dim(mod))
        _set_uv_exact(mod)


def remove_spectral_norm(model: nn.Module) -> None:
    """Bake every spectral-norm parametrization into a plain weight (eval value: stored u, v)."""
    was_training = model.training
    model.eval()  # bake with the stored u, v (no power-iteration side effect)
    for mod in model.modules():
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
    model.train(was_training)


def has_spectral_norm(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m, "weight") for m in model.modules())


def _set_uv_exact(mod: nn.Module) -> None:
    sn = mod.parametrizations.weight[0]
    w = mod.parametrizations.weight.original
    u, _, v = top_singular_pair(w.reshape(w.shape[0], -1))
    with torch.no_grad():
        sn._u.copy_(u.to(sn._u.dtype))
        sn._v.copy_(v.to(sn._v.dtype))


def _plain_to_param(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain W -> (original, u, v) such that torch's eval-mode SN (W_orig / (u . W_orig v)) gives W."""
    _, u, v = unfold_official(weight)
    return weight.detach().clone(), u, v


def convert_state_dict_for(model: nn.Module, sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Return `sd` in the layout `model` expects: plain `<p>.weight` or SN-parametrized keys.

    Works in both directions, so a plain (exported / safetensors) checkpoint loads into a model with
    spectral norm for training, and a training checkpoint loads into a plain inference model.
    """
    own = model.state_dict(keep_vars=True)
    out = dict(sd)
    for key in list(sd):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        if local.endswith(_PARAM_ORIG):
            p = local[: -len(_PARAM_ORIG)]
            if p + ".weight" in own and p + _PARAM_ORIG not in own:
                orig = out.pop(key)
                u = out.pop(prefix + p + _PARAM_U)
                v = out.pop(prefix + p + _PARAM_V)
                # torch's eval-mode SN: original / (u . original_mat @ v), same as the official formula.
                out[prefix + p + ".weight"] = fold_official(orig.float(), u.float(), v.float())
        elif local.endswith(".weight"):
            p = local[: -len(".weight")]
            if p + _PARAM_ORIG in own and local not in own:
                orig, u, v = _plain_to_param(out.pop(key).float())
                out[prefix + p + _PARAM_ORIG] = orig
                out[prefix + p + _PARAM_U] = u
                out[prefix + p + _PARAM_V] = v
    return out


def plain_state_dict_from(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict with every SN parametrization (`<p>.parametrizations.weight.*`) folded to a
    plain `<p>.weight` (eval value: stored u, v). Plain state_dicts pass through unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.endswith(_PARAM_ORIG):
            p = key[: -len(_PARAM_ORIG)]
            out[p + ".weight"] = fold_official(t.float(), sd[p + _PARAM_U].float(), sd[p + _PARAM_V].float())
        elif not key.endswith((_PARAM_U, _PARAM_V)):
            out[key] = t
    return out


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with spectral-norm parametrizations folded to plain `.weight`s.

    This is the layout to save for inference (safetensors, ONNX export, `to_official_state_dict`).
    """
    return plain_state_dict_from({k: v.detach() for k, v in model.state_dict().items()})


def load_state_dict_pre_hook(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """`nn.Module` load pre-hook: convert `state_dict` in place to the module's SN layout."""
    converted = convert_state_dict_for(module, state_dict, prefix)
    state_dict.clear()
    state_dict.update(converted)
