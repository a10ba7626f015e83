"""Shared machinery of the per-method trainers: model building, input normalisation, the
generic optimisation step and validation prediction."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor
Batch = dict[str, Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tuplify(cfg_cls: type, overrides: dict) -> dict:
    """TOML has arrays, the config dataclasses have tuples: convert where the default is one."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg_cls)}
    return {k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v for k, v in overrides.items()}


def build_model(spec: dict) -> nn.Module:
    """[model] section -> module: `name` in the registry, `config` overrides, optional `preset`
    ('light' / 'official'), optional `init` weights file (safetensors or torch state dict)."""
    from mattekit.models import create_model, get_entry

    name = spec["name"]
    entry = get_entry(name)
    overrides = dict(spec.get("config", {}))
    base = None
    preset = spec.get("preset")
    if preset:
        import importlib

        mod = importlib.import_module(entry.cls.__module__)
        fn = getattr(mod, f"{preset}_config", None)
        if fn is None:
            raise ValueError(f"model {name!r} has no preset {preset!r}")
        base = fn()
    model = create_model(name, base, **_tuplify(entry.config_cls, overrides))
    init = spec.get("init")
    if init:
        load_init(model, init)
    return model


def load_init(model: nn.Module, path: str | Path) -> None:
    """Load initial weights (strict) from safetensors or a torch state dict."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    model.load_state_dict(sd)


def normalise_input(model: nn.Module, image: Tensor) -> Tensor:
    """sRGB [0, 1] (N,3,H,W) -> what the model's `forward` expects."""
    name = getattr(model, "registry_name", "")
    if name == "gfm":
        return image * model.config.input_scale
    norm = getattr(model, "normalization", None)
    if isinstance(norm, dict) and "mean" in norm:
        mean = image.new_tensor(norm["mean"]).view(1, 3, 1, 1)
        std = image.new_tensor(norm["std"]).view(1, 3, 1, 1)
        return (image - mean) / std
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") and isinstance(m, nn.parallel.DistributedDataParallel) else m


def alpha_forward(net: nn.Module, image: Tensor, guidance: Tensor | None = None) -> Tensor:
    """Differentiable full-resolution alpha (N,1,H,W) from any alpha model, for losses that
    only need a matte (DDC). `net` may be DDP-wrapped; H, W multiples of 32."""
    model = unwrap(net)
    name = getattr(model, "registry_name", "")
    if name == "u2netp":
        return net(model.normalise(image))[0]
    x = normalise_input(model, image)
    if name == "modnet":
        return net(x, False)[2]
    if name == "gfm":
        return net(x)[2]
    if name == "prn":
        from mattekit.models.prn import prepare_guidance, progressive_refine

        g = prepare_guidance(guidance, model.config.guidance_threshold)
        out = net(x, g)
        return progressive_refine(out["alpha_os8"], out["alpha_os4"], out["alpha_os1"],
                                  model.config.refine_kernel_os4, model.config.refine_kernel_os1)
    raise ValueError(f"no alpha forward for model {name!r}")


class Method:
    """One training method. Subclasses set up models in `__init__` and implement `losses`.

    - `modules()`: everything checkpointed (name -> module); `trainable()` those wrapped in DDP.
    - `param_groups()`: optimiser name -> parameters (most methods: one optimiser "main").
    - `train_step`: forward, backward (AMP-scaled), clip, optimiser steps; returns float logs.
    - `predict(batch)`: alpha (N,1,H,W) in [0,1] for validation (`None` for non-alpha models).
    """

    name = "base"
    #: trainable modules whose forward leaves some parameters out of the loss (DDP must know).
    unused_parameters: frozenset[str] = frozenset()

    def __init__(self, recipe: dict, device: torch.device, log: Callable[[str], None] = print):
        self.recipe = recipe
        self.device = device
        self.log = log
        self.loss_cfg: dict[str, Any] = dict(recipe.get("loss", {}))
        self.model = build_model(recipe["model"]).to(device)
        self.net: nn.Module = self.model  # replaced by a DDP wrapper under torchrun

    # -- structure
    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def trainable(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def wrap(self, name: str, wrapped: nn.Module) -> None:
        if name == "model":
            self.net = wrapped

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": [p for p in self.model.parameters() if p.requires_grad]}

    def train_mode(self) -> None:
        self.model.train()

    def eval_mode(self) -> None:
        self.model.eval()

    # -- optimisation
    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def train_step(self, batch: Batch, step: int, optims: dict, scaler, amp: bool, clip: float) -> dict[str, float]:
        opt = optims["main"]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=amp):
            out = self.losses(batch, step)
        scaler.scale(out["total"]).backward()
        if clip and clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.param_groups()["main"], clip)
        scaler.step(opt)
        scaler.update()
        return {k: float(v.detach()) for k, v in out.items()}

    # -- validation
    @torch.no_grad()
    def predict(self, batch: Batch, model: nn.Module | None = None) -> Tensor | None:
        model = model or self.model
        return model.predict(batch["image"], guidance=batch.get("guidance"), alpha=batch.get("alpha"))

    def validation_target(self, batch: Batch) -> tuple[str, Tensor] | None:
        """(what, target) that validation compares `predict` to: 'alpha' when labelled."""
        if "alpha" in batch and bool(batch.get("has_alpha", torch.ones(1)).all()):
            return "alpha", batch["alpha"]
        return None


def get_band(batch: Batch, size: int = 7) -> Tensor:
    """Transition band (N,1,H,W) float: the dataset's `boundary` or dilate - erode of alpha."""
    from ..losses import boundary_band

    if "boundary" in batch:
        return batch["boundary"].float()
    return boundary_band(batch["alpha"], size, threshold=-1.0)


def unknown_from_trimap(trimap: Tensor) -> Tensor:
    """GT-derived guidance region (trimap == 0.5) as float (N,1,H,W)."""
    return ((trimap > 0.25) & (trimap < 0.75)).float()


def resize_like(x: Tensor, ref: Tensor) -> Tensor:
    return x if x.shape[-2:] == ref.shape[-2:] else F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)
