"""MODNet: official-checkpoint parity (fixture rule B), key round trip, predict contract, e-ASPP, overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mattekit.models import modnet as M
from mattekit.models.registry import create_model, get_entry
from official_fixtures import fill_sha256, fixture_io, fixture_meta, make_state_dict


@pytest.fixture(scope="module")
def official():
    meta = fixture_meta("modnet")
    sd = make_state_dict(meta, "B")
    assert fill_sha256(sd) == meta["fill_sha256"]["B"], "fill rule drifted from the fixture"
    return meta, sd, fixture_io("modnet")


@pytest.fixture(scope="module")
def loaded(official):
    meta, sd, _ = official
    model = M.MODNet(M.official_config("photographic")).eval()
    # As released: DataParallel prefix on all 751 keys.
    model.load_state_dict(M.from_official_state_dict({"module." + k: v for k, v in sd.items()}), strict=True)
    return model


def test_registered():
    entry = get_entry("modnet")
    assert entry.task == "trimap_free" and entry.cls is M.MODNet


def test_official_parity_rule_b(official, loaded):
    _, _, io = official
    x = torch.from_numpy(io["input_image"])
    with torch.no_grad():
        semantic, detail, matte = loaded(x, False)
        none_s, none_d, matte_inf = loaded(x, True)
    assert none_s is None and none_d is None
    diffs = {
        "pred_matte": np.abs(matte.numpy() - io["B__pred_matte"]).max(),
        "pred_semantic": np.abs(semantic.numpy() - io["B__pred_semantic_noninference"]).max(),
        "pred_detail": np.abs(detail.numpy() - io["B__pred_detail_noninference"]).max(),
        "matte_inference": np.abs(matte_inf.numpy() - io["B__pred_matte"]).max(),
    }
    print("MODNet rule-B max |diff|:", diffs)
    assert semantic.shape == (1, 1, 4, 6) and detail.shape == matte.shape == (1, 1, 64, 96)
    assert max(diffs.values()) <= 1e-4


def test_official_tap_conv_lr8x(official, loaded):
    _, _, io = official
    got = {}
    h = loaded.lr_branch.conv_lr8x.register_forward_hook(lambda m, i, o: got.setdefault("t", o))
    with torch.no_grad():
        loaded(torch.from_numpy(io["input_image"]), True)
    h.remove()
    ref = io["B__tap__lr_branch.conv_lr8x"]
    assert np.abs(got["t"].numpy() - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_to_official_round_trip(official, loaded):
    meta, sd, _ = official
    back = M.to_official_state_dict(loaded.state_dict())
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in back.items()] == meta["keys"]
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert len(loaded.state_dict()) == len(meta["keys"]) - len(meta["aliases"])


def test_alias_mismatch_rejected(official):
    _, sd, _ = official
    bad = dict(sd)
    key = next(k for k in bad if k.startswith("lr_branch.backbone.") and k.endswith(".weight"))
    bad[key] = bad[key] + 1
    with pytest.raises(ValueError, match="differs"):
        M.from_official_state_dict(bad)


@pytest.mark.parametrize(("h", "w", "ref", "want"), [
    (300, 450, 512, (512, 768)),   # wholly smaller: short side -> 512, long int(450/300*512)
    (333, 517, 512, (320, 512)),   # straddles 512: keep size, floor to x32
    (600, 900, 512, (512, 768)),   # wholly larger
    (700, 400, 512, (672, 384)),   # portrait, straddling
    (1000, 600, 512, (832, 512)),  # portrait, wholly larger: int(1000/600*512)=853
    (20, 10, 16, (32, 32)),        # never below one 32 block
])
def test_input_size_rule(h, w, ref, want):
    assert M.modnet_input_size(h, w, ref) == want


def test_predict_odd_size_shape_and_range():
    model = create_model("modnet", ref_size=128).eval()
    image = torch.rand(2, 3, 333, 517)
    with torch.no_grad():
        alpha = model.predict(image)
    assert alpha.shape == (2, 1, 333, 517)
    assert alpha.min() >= 0 and alpha.max() <= 1 and torch.isfinite(alpha).all()


def test_predict_uses_given_forward():
    model = create_model("modnet", ref_size=64).eval()
    seen = []

    def fake_forward(x, inference):
        seen.append((tuple(x.shape), float(x.min()), inference))
        return None, None, torch.full((x.shape[0], 1, *x.shape[-2:]), 0.25)

    out = model.predict(torch.zeros(1, 3, 50, 70), forward=fake_forward)
    assert seen == [((1, 3, 32, 64), -1.0, True)]  # normalised to [-1, 1], x32 sizes
    assert out.shape == (1, 1, 50, 70) and torch.allclose(out, torch.tensor(0.25))


def test_easpp_variant_shapes_and_params():
    model = create_model("modnet", semantic_head="easpp").eval()
    with torch.no_grad():
        s, d, a = model(torch.rand(1, 3, 64, 96) * 2 - 1, False)
    assert s.shape == (1, 1, 4, 6) and d.shape == a.shape == (1, 1, 64, 96)
    # Paper: conv parameters (2c^2 + (k^2+1) m c) / 4 with c=1280, k=3, m=5.
    e = model.lr_branch.easpp
    convs = sum(m.weight.numel() for m in e.modules() if isinstance(m, torch.nn.Conv2d))
    c, k, m = 1280, 3, 5
    assert convs == (2 * c * c + (k * k + 1) * m * c) // 4
    assert not hasattr(model.lr_branch, "se_block")
    with pytest.raises(ValueError):
        M.from_official_state_dict({}, M.MODNetConfig(semantic_head="easpp"))


def _blob_composites(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n composites I = aF + (1-a)B with a smooth random blob alpha and flat random colours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, alphas = [], []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        ry, rx = rng.uniform(0.15, 0.3, 2)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        a = 1 / (1 + np.exp((d - 1) * 6))  # soft edge
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        images.append(a[..., None] * fg + (1 - a[..., None]) * bg)
        alphas.append(a)
    img = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2)).float()
    return img, torch.from_numpy(np.stack(alphas)[:, None]).float()


@pytest.mark.slow
def test_overfit_tiny_set():
    torch.manual_seed(0)
    model = create_model("modnet").train()
    image, alpha = _blob_composites(4, 64, seed=1)
    x = (image - 0.5) / 0.5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        _, _, matte = model(x, False)
        loss = (matte - alpha).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"MODNet overfit L1: {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] * 3 < losses[0]
