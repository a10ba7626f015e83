"""Import the authors' released checkpoints into the user weights registry.

Containers (see shared/fixtures/official/README.md):
- MODNet (`modnet`): bare state_dict saved from nn.DataParallel ('module.' prefix), aliases included.
- MG Matting (`mgmatting` -> our `prn`): dict with a 'state_dict' key (plus iter/loss/optimiser state),
  'module.' prefix expected but not guaranteed.
- GFM (`gfm`, variants r34 / r34_2b): bare state_dict, no prefix, aliases included.

Each model module provides `official_config(variant)` and `from_official_state_dict(sd, config)`.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import config as mk_config
from .checkpoints import CheckpointError, save_weights, sha256_file
from .registry import create_model


@dataclass(frozen=True)
class OfficialArch:
    module: str  # mattekit.models.<module>
    model: str  # registered model name
    licence: str
    source: str
    default_variant: str | None = None


OFFICIAL: dict[str, OfficialArch] = {
    "modnet": OfficialArch("modnet", "modnet", "Apache-2.0 (ZHKKKe/MODNet README, since 2022-01-28)",
                           "https://github.com/ZHKKKe/MODNet", "photographic"),
    "mgmatting": OfficialArch("prn", "prn", "CC BY-NC 2.0, research / non-commercial only (MGMatting LICENCE.md)",
                              "https://github.com/yucornetto/MGMatting"),
    "gfm": OfficialArch("gfm", "gfm", "MIT (JizhiziLi/GFM)", "https://github.com/JizhiziLi/GFM"),
}


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an official .ckpt / .pth safely (weights_only) and return its bare state_dict,
    unwrapping a {'state_dict': ...} container. Prefixes are left to the converters."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint with weights_only=True ({exc}); "
                              "it must be the authors' released file") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (name -> tensor)")
    return dict(obj)


def _guess_variant(arch: str, sd: dict) -> str | None:
    if arch == "gfm":  # r34_2b adds two extra encoder stages
        return "r34_2b" if any(".encoder5." in "." + k for k in sd) else "r34"
    return OFFICIAL[arch].default_variant


def import_official(arch: str, path: str | Path, *, name: str | None = None, variant: str | None = None,
                    dest_dir: str | Path | None = None, fp16: bool = False) -> dict:
    """Convert an official checkpoint to safetensors + a registry entry in the user weights dir.

    arch: "modnet", "mgmatting" or "gfm"; variant: passed to the module's `official_config`
    (GFM: "r34" / "r34_2b", guessed from the keys when None). Returns the registry entry (with "name").
    """
    if arch not in OFFICIAL:
        raise CheckpointError(f"unknown official architecture {arch!r}; known: {', '.join(OFFICIAL)}")
    spec = OFFICIAL[arch]
    try:
        module = importlib.import_module(f"mattekit.models.{spec.module}")
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"model module for {arch!r} is not available ({exc})") from None
    path = Path(path)
    raw = read_official_checkpoint(path)
    variant = variant or _guess_variant(arch, raw)
    cfg = module.official_config(variant) if variant is not None else module.official_config()
    try:
        sd = module.from_official_state_dict(raw, cfg)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is not an official {arch} checkpoint: {exc}") from None
    model = create_model(spec.model, cfg)
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path} does not match official {arch} ({variant}): {exc}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not match official {arch} ({variant}): missing {result.missing_keys[:3]} "
            f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:3]} "
            f"({len(result.unexpected_keys)}). Pick the right arch/variant")
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{arch}-{path.stem}")
    dest = Path(dest_dir) if dest_dir is not None else mk_config.user_weights_dir()
    meta = {"licence": spec.licence,
            "recipe": f"official {arch} checkpoint {path.name} (variant {variant}), converted by mattekit",
            "card": f"Official weights from {spec.source}.",
            "source_sha256": sha256_file(path), "variant": variant}
    entry = save_weights(model.eval(), dest / f"{name}.safetensors", name=name, meta=meta, fp16=fp16)
    return {**entry, "name": name}
