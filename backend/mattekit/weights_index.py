"""The installed-weights index: `registry.json` files naming the weights beside them (no torch).

Reading which weights are installed must not import torch (~2 s): the daemon answers `hello` and
plans a job from this alone. The file format is described in `mattekit.models.checkpoints`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from . import config as mk_config

REGISTRY_FILE = "registry.json"


class CheckpointError(RuntimeError):
    """A weights file cannot be used; the message says why and what to do."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def registry_dirs() -> list[Path]:
    """Registries in lookup order: shipped, then user (later ones shadow earlier ones)."""
    return [mk_config.weights_dir(), mk_config.user_weights_dir()]


def read_registry(directory: str | Path) -> dict[str, dict]:
    path = Path(directory) / REGISTRY_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object of name -> entry")
    return data


def _write_registry(directory: Path, data: dict[str, dict]) -> None:
    # Write-then-rename so a crash never leaves a half-written registry.
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".registry-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, directory / REGISTRY_FILE)


def list_weights() -> dict[str, dict]:
    """All registered weights: {name: entry + {"path": absolute file path, "registry": dir}}."""
    out: dict[str, dict] = {}
    for d in registry_dirs():
        for name, entry in read_registry(d).items():
            out[name] = {**entry, "path": str((d / entry.get("file", "")).resolve()), "registry": str(d)}
    return out


#: The test-split numbers Select Subject's models are ranked by (`mattekit-eval --pipeline coarse:NAME
#: --guidance none --split test`; docs/benchmarks.md). Every subject model's entry that has them
#: carries all four under these names, so two models are always compared on the same data.
SUBJECT_METRICS = ("COCO128-test dominant IoU", "COCO128-test persons IoU", "feral cats-test IoU",
                   "pets-test (first 100) known agreement")


def subject_score(entry: dict) -> float | None:
    """Mean of an entry's SUBJECT_METRICS (0..1, higher is better); None unless it has all of them."""
    metrics = entry.get("metrics") or {}
    values = [metrics.get(k) for k in SUBJECT_METRICS]
    if any(not isinstance(v, (int, float)) for v in values):
        return None
    return float(sum(values)) / len(values)

