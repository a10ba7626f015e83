"""Loading the official-model fixtures in ../shared/fixtures/official (see its README).

The fill rule below is the fixture README's own definition; it rebuilds the official
state_dict from the keys file alone so the parity tests need no official code.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"


def fixture_meta(name: str) -> dict:
    path = FIXTURES / f"{name}.keys.json"
    if not path.exists():
        pytest.skip(f"official fixture {name} not present at {FIXTURES}")
    return json.loads(path.read_text())


def fixture_io(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{name}.io.npz"))


def _fill_value(key: str, shape: list[int], rule: str, gain: float) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    if key.endswith("running_var"):
        return 1.0 + torch.rand(shape, generator=g)
    r = torch.randn(shape, generator=g)
    if rule == "A" or key.endswith("running_mean"):
        return r * (0.02 if rule == "A" else 0.1)
    if len(shape) >= 2:
        return r * (gain / math.sqrt(math.prod(shape) // shape[0]))
    if key.endswith(".weight"):
        return 1.0 + 0.1 * r
    return 0.1 * r


def make_state_dict(meta: dict, rule: str) -> dict[str, torch.Tensor]:
    """The official state_dict filled by rule "A" or "B" (aliases included)."""
    sd: dict[str, torch.Tensor] = {}
    gain = meta["fill_B_gain"]
    for key, shape, _dtype in meta["keys"]:
        alias_of = meta["aliases"].get(key)
        sd[key] = sd[alias_of].clone() if alias_of else _fill_value(key, shape, rule, gain)
    if rule == "B":
        for key in [k for k in sd if k.endswith(".weight_bar")]:
            p = key[: -len("weight_bar")]
            w = sd[key].reshape(sd[key].shape[0], -1).double()
            g = torch.Generator().manual_seed(zlib.crc32((p + "weight_u").encode("utf-8")))
            v = w.t().mv(torch.randn(w.shape[0], generator=g).double())
            v = v / v.norm()
            u = w.mv(v)
            u = u / u.norm()
            sd[p + "weight_u"], sd[p + "weight_v"] = u.float(), v.float()
    return sd


def fill_sha256(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k, t in sd.items():
        h.update(k.encode("utf-8"))
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()
