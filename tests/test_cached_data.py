"""The "cached" data kind: renders a source once, then serves cheap fresh crops/guidance."""

import numpy as np
import pytest
import torch

from mattekit_training.torchdata import build_dataset, cache_key, render_cache

SOURCE = {"kind": "composite", "foregrounds": "synthetic", "backgrounds": "procedural", "crop": 48,
          "rssn": False, "gca": False, "targets": ["boundary"]}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEKIT_DATA_CACHE", str(tmp_path))
    return tmp_path


def spec(**kw):
    return {"kind": "cached", "source": SOURCE, "items": 3, "crop": 32, "guidance": "mg_perturb", "length": 6, **kw}


def test_cache_is_rendered_once_and_keyed_by_source(cache_dir):
    folder = render_cache(spec())
    assert folder.parent == cache_dir and folder.name == cache_key(spec())
    mtime = (folder / "image.npy").stat().st_mtime_ns
    assert render_cache(spec()) == folder and (folder / "image.npy").stat().st_mtime_ns == mtime
    assert cache_key(spec(items=4)) != cache_key(spec())
    assert cache_key(spec(crop=16, length=99)) == cache_key(spec())  # serving options share the cache
    assert np.load(folder / "image.npy").shape == (3, 48, 48, 3)


def test_items_match_the_composite_contract(cache_dir):
    ds = build_dataset(spec(), seed=0)
    ref = build_dataset({**SOURCE, "length": 2}, seed=0)[0]
    it = ds[0]
    assert set(ref) <= set(it)
    for k in ("image", "alpha", "trimap", "guidance", "known", "foreground", "background"):
        assert it[k].shape[-2:] == (32, 32) and it[k].dtype == torch.float32
        assert 0 <= float(it[k].min()) and float(it[k].max()) <= 1
    assert bool(it["has_alpha"]) and bool(it["has_fg"])
    assert set(np.unique(it["trimap"].numpy())) <= {0.0, 0.5, 1.0}
    # The composite is consistent with its (uint8-quantised) labels: I = aF + (1-a)B.
    comp = it["alpha"] * it["foreground"] + (1 - it["alpha"]) * it["background"]
    assert float((comp - it["image"]).abs().mean()) < 0.01


def test_guidance_is_fresh_each_epoch_and_deterministic(cache_dir):
    ds = build_dataset(spec(length=40), seed=3)
    a = [ds[i]["guidance"] for i in range(40)]
    assert torch.equal(build_dataset(spec(length=40), seed=3)[5]["guidance"], a[5])
    ds.set_epoch(1)
    b = [ds[i]["guidance"] for i in range(40)]
    assert any(not torch.equal(x, y) for x, y in zip(a, b))


def test_crop_larger_than_cache_is_rejected(cache_dir):
    with pytest.raises(ValueError, match="crop"):
        build_dataset(spec(crop=64), seed=0)
