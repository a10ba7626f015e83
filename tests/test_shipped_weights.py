"""The weights shipped in backend/mattekit/weights: they load (checksum verified), run, and
the refine model beats the classical path on fixed synthetic-val samples."""

import json
from pathlib import Path

import numpy as np
import pytest

from mattekit.models.checkpoints import sha256_file

WEIGHTS = Path(__file__).resolve().parents[1] / "backend" / "mattekit" / "weights"
# No colour net is shipped: neither fgnet form beat the classical estimator
# (docs/benchmarks.md, "Shipped models vs classical"), so Decontaminate stays classical.
SHIPPED = {"mattekit-prn-light": "guided", "mattekit-subject-light": "trimap_free"}
REGISTRY = json.loads((WEIGHTS / "registry.json").read_text()) if (WEIGHTS / "registry.json").is_file() else {}

pytestmark = pytest.mark.skipif(not set(SHIPPED) <= set(REGISTRY), reason="shipped weights not exported")


@pytest.fixture(scope="module")
def runtimes():
    from mattekit.runtime import load_runtime

    return {name: load_runtime(name, device="cpu") for name in SHIPPED}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_entry_checksum_size_and_card(name):
    e = REGISTRY[name]
    f = WEIGHTS / e["file"]
    assert sha256_file(f) == e["sha256"]
    assert f.stat().st_size <= 30 * 2**20
    assert e["task"] == SHIPPED[name] and "GPL-3.0" in e["licence"]
    assert (WEIGHTS / f"{name}.md").is_file() and e["metrics"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_runs_at_small_odd_size(name, runtimes):
    rng = np.random.default_rng(0)
    image = rng.random((128, 160, 3), dtype=np.float32)
    mask = np.zeros((128, 160), np.float32)
    mask[30:100, 40:120] = 1
    rt = runtimes[name]
    if SHIPPED[name] == "foreground":
        out = rt.predict(image, alpha=mask)
        assert out.shape == (128, 160, 3)
    else:
        out = rt.predict(image) if SHIPPED[name] == "trimap_free" else rt.predict(image, guidance=mask)
        assert out.shape == (128, 160)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_daemon_lists_the_shipped_models():
    from mattekit.engine import Engine

    avail = Engine().available_models()
    for name, task in SHIPPED.items():
        assert name in avail[task]


def test_refine_beats_classical_with_sloppy_guidance(runtimes):
    """3 fixed synthetic-val samples, selection 20 px too wide: the band solve cannot undo
    the included background, the PRN must (lower SAD than classical on every sample)."""
    from mattekit_training import evaluate as E
    from mattekit_training import metrics as M
    from mattekit_training.datasets import open_dataset

    ds = open_dataset("synthetic-val")
    for i in (0, 1, 2):
        s = ds[i]
        g = E.make_guidance("dilate:20", s)
        ours = M.sad(runtimes["mattekit-prn-light"].predict(s.image, guidance=g), s.alpha)
        classical = M.sad(E.classical_alpha(s.image, g), s.alpha)
        assert ours < classical, (i, ours, classical)
