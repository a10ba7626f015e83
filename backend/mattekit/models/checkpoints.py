"""Weights registry: safetensors files described by a `registry.json` beside them.

Two registries share one format: the shipped one (`mattekit.config.weights_dir()`) and the user's
(`mattekit.config.user_weights_dir()`; imported and trained weights). A user entry with the same name
shadows a shipped one. Each entry::

    {name: {"file": "name.safetensors",          # relative to the registry's directory
            "sha256": hex, "arch": registered model name, "config": {config dataclass fields},
            "normalization": {...} | null, "licence": str, "recipe": str, "metrics": {...}, "card": str}}

The safetensors header also carries `arch` and `config`, so a bare file loads by path.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import config as mk_config
from ..weights_index import (  # noqa: F401  (re-exported: the index is read without torch)
    REGISTRY_FILE, CheckpointError, _write_registry, list_weights, read_registry, registry_dirs, sha256_file,
)
from .registry import create_model, get_entry, list_models

ENTRY_FIELDS = ("file", "sha256", "arch", "config", "normalization", "licence", "recipe", "metrics", "card")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg or {})


def config_from_dict(arch: str, values: dict) -> Any:
    """Rebuild `arch`'s config dataclass from JSON values (lists back to tuples where the default is one)."""
    cls = get_entry(arch).config_cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CheckpointError(f"config for {arch!r} has unknown fields {unknown}: the weights were saved by a "
                              "newer/different mattekit; update mattekit or re-export them")
    default = cls()
    kw = {k: tuple(v) if isinstance(getattr(default, k), tuple) and isinstance(v, list) else v
          for k, v in values.items()}
    return cls(**kw)


def save_weights(model: nn.Module, path: str | Path | None = None, *, name: str,
                 meta: dict | None = None, fp16: bool = False, register: bool = True) -> dict:
    """Write `model`'s weights to safetensors and register them in `path.parent/registry.json`.

    path: target file (default: user weights dir / f"{name}.safetensors").
    meta: entry fields to set (licence, recipe, metrics, card, normalization...).
    fp16: store floating tensors as float16 (half the size; loaded back as float32).
    Returns the registry entry.
    """
    from safetensors.torch import save_file

    arch = getattr(model, "registry_name", None)
    if arch is None:
        raise ValueError("model is not a registered mattekit model (no registry_name)")
    path = Path(path) if path is not None else mk_config.user_weights_dir() / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = config_to_dict(getattr(model, "config", None))
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if fp16 and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    save_file(tensors, str(path), metadata={"arch": arch, "config": json.dumps(cfg), "name": name})
    entry = {"file": path.name, "sha256": sha256_file(path), "arch": arch, "config": cfg,
             "normalization": getattr(model, "normalization", None), "licence": "", "recipe": "",
             "metrics": {}, "card": ""}
    entry.update(meta or {})
    if register:
        reg = read_registry(path.parent)
        reg[name] = entry
        _write_registry(path.parent, reg)
    return entry


def _resolve(name_or_path: str | Path) -> tuple[Path, dict | None, str]:
    """-> (file, registry entry or None, label for messages)."""
    reg = list_weights()
    key = str(name_or_path)
    if key in reg:
        return Path(reg[key]["path"]), reg[key], key
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        entry = read_registry(path.parent).get(path.stem) if path.exists() else None
        if entry is not None and entry.get("file") != path.name:
            entry = None
        return path, entry, str(path)
    known = ", ".join(sorted(reg)) or "(none)"
    raise CheckpointError(f"no weights named {key!r}; registered: {known}. Import official weights with "
                          "mattekit.models.official.import_official(...) or pass a .safetensors path")


def load_weights(name_or_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build the registered model for `name_or_path` and load its weights (eval mode, float32).

    Raises CheckpointError for a missing file, a bad checksum, an unknown or mismatched architecture,
    and missing / unexpected / misshapen keys.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path, entry, label = _resolve(name_or_path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} for {label!r} is missing; re-import or re-download it, "
                              f"or remove the entry from {path.parent / REGISTRY_FILE}")
    if entry is not None and entry.get("sha256"):
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise CheckpointError(f"checksum mismatch for {label!r} ({path}): expected {entry['sha256']}, got "
                                  f"{actual}. The file is corrupt or was replaced; re-import or re-download it")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); re-import it") from None
    arch = (entry or {}).get("arch") or header.get("arch")
    if header.get("arch") and entry is not None and header["arch"] != entry.get("arch"):
        raise CheckpointError(f"{label!r}: registry says architecture {entry.get('arch')!r} but the file holds "
                              f"{header['arch']!r}; fix the registry entry or re-import the weights")
    if arch not in list_models():
        raise CheckpointError(f"{label!r}: unknown architecture {arch!r}; known: {', '.join(list_models())}")
    cfg_values = (entry or {}).get("config")
    if cfg_values is None:
        cfg_values = json.loads(header.get("config", "{}"))
    model = create_model(arch, config_from_dict(arch, cfg_values))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        parts = [f"{n} {len(v)} (e.g. {', '.join(v[:3])})" for n, v in
                 (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if v]
        raise CheckpointError(f"{label!r} does not fit architecture {arch!r}: {'; '.join(parts)}. The file was "
                              "saved for another architecture or config; check the entry's arch/config")
    model.load_state_dict(state, strict=True)  # copy_ casts fp16 files back to float32
    model.weights_entry = {**(entry or {}), "name": label, "path": str(path)}
    return model.to(device).eval()
