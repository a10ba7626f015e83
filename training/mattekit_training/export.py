"""Export a trained model: safetensors (+ registry entry with sha256, recipe, data, metrics)
and ONNX, ready for the daemon (`mattekit.models.checkpoints.load_weights`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch.nn as nn


def data_summary(recipe: dict) -> list[str]:
    """The data sources a recipe trains on, for the model card (e.g. 'trimap:pets', 'composite:synthetic')."""

    def walk(spec) -> list[str]:
        if not isinstance(spec, dict):
            return []
        kind = spec.get("kind", "?")
        if kind == "mix":
            return [s for p in spec.get("parts", []) for s in walk(p)]
        src = spec.get("source") or spec.get("foregrounds") or spec.get("backgrounds") or ""
        bgs = spec.get("backgrounds")
        tail = f"+bg:{bgs}" if bgs and src != bgs else ""
        return [f"{kind}:{src}{tail}"]

    return walk(recipe.get("data", {}).get("train"))


def export_trained(
    model: nn.Module,
    out_dir: str | Path,
    recipe: dict,
    metrics: dict | None = None,
    name: str | None = None,
    log: Callable[[str], None] = print,
    onnx: bool = True,
    onnx_size: int = 256,
) -> dict:
    """Write `OUT/NAME.safetensors` (registered in `OUT/registry.json`) and `OUT/NAME.onnx`.

    Returns the registry entry (sha256, arch, config, recipe, data, metrics, onnx file).
    ONNX export failures are logged, not raised: the safetensors file is the primary product.
    """
    from mattekit.models.checkpoints import save_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or recipe.get("export_name") or recipe.get("name", "model")
    model = model.cpu().eval()
    meta = {
        "recipe": json.dumps(recipe, sort_keys=True, default=str),
        "data": data_summary(recipe),
        "metrics": dict(metrics or {}),
        "card": recipe.get("card", f"trained with mattekit-train ({recipe.get('method')})"),
        "licence": recipe.get("licence", ""),
    }
    entry = save_weights(model, out / f"{name}.safetensors", name=name, meta=meta)
    log(f"exported {out / (name + '.safetensors')} sha256={entry['sha256'][:12]}")
    if onnx:
        try:
            from mattekit.runtime import export_onnx

            path = export_onnx(model, out / f"{name}.onnx", onnx_size, onnx_size)
            entry["onnx"] = path.name
            log(f"exported {path}")
        except Exception as exc:  # keep the weights even when the ONNX exporter trips
            log(f"ONNX export failed: {type(exc).__name__}: {exc}")
    return entry
