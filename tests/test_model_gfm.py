"""GFM and the torchvision-compatible ResNet: official parity, checkpoint round trip,
test-time strategies, ONNX-safe pooling, and a tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mattekit.models import create_model, get_entry
from mattekit.models.gfm import (GFM, GFMConfig, PSPModule, collaborative_matting, from_official_state_dict,
                                 official_config, to_official_state_dict)
from mattekit.models.resnet import resnet34
from official_fixtures import fixture_io, fixture_meta, make_state_dict

VARIANTS = [("gfm_r34_tt", "r34"), ("gfm_r34_2b_tt", "r34_2b")]


def _official_model(name: str, variant: str):
    meta = fixture_meta(name)
    sd = make_state_dict(meta, "B")
    cfg = official_config(variant)
    with torch.device("meta"):  # skip the random init of ~10^8 parameters
        model = GFM(cfg)
    model.load_state_dict(from_official_state_dict(sd, cfg), strict=True, assign=True)
    return model.eval(), sd, meta, cfg


# --------------------------------------------------------------------------- resnet


def test_resnet34_torchvision_layout_and_features():
    net = resnet34().eval()
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 21_797_672  # torchvision resnet34
    assert list(sd)[:2] == ["conv1.weight", "bn1.weight"] and "layer2.0.downsample.0.weight" in sd
    assert tuple(sd["fc.weight"].shape) == (1000, 512)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        feats = net.features(x)
        assert net(x).shape == (2, 1000)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 48), (64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    stemless = resnet34(num_classes=None, stem=False)
    assert not any(k.startswith(("conv1", "bn1", "fc")) for k in stemless.state_dict())
    with torch.no_grad():
        assert [f.shape[-1] for f in stemless.features(torch.rand(1, 64, 32, 32))] == [32, 16, 8, 4]


# --------------------------------------------------------------------------- official parity


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_official_parity_rule_b(name, variant):
    model, _, _, _ = _official_model(name, variant)
    io = fixture_io(name)
    taps: dict[str, torch.Tensor] = {}
    for tap in ("psp_module", "bridge_block"):
        model.get_submodule(tap).register_forward_hook(lambda m, i, o, tap=tap: taps.__setitem__(tap, o))
    with torch.no_grad():
        glance, focus, fusion = model(torch.from_numpy(io["B__input_image"]))

    ref_g, ref_f, ref_fu = io["B__glance_sigmoid"], io["B__focus_sigmoid"], io["B__fusion_sigmoid"]
    d_glance = np.abs(glance.numpy() - ref_g).max()
    d_focus = np.abs(focus.numpy() - ref_f).max()
    print(f"{name}: max|d glance| {d_glance:.3g}, max|d focus| {d_focus:.3g}")
    assert d_glance <= 1e-4 and d_focus <= 1e-4

    # Fusion comes from an argmax: exact class agreement except where the reference's top-2
    # glance values are within 1e-4; there fusion values then follow focus.
    top2 = np.sort(ref_g, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0] >= 1e-4)[:, None]
    assert np.array_equal(glance.argmax(1, keepdim=True).numpy()[clear], ref_g.argmax(1)[:, None][clear])
    assert np.abs(fusion.numpy() - ref_fu)[clear].max() <= 1e-4
    assert np.array_equal(fusion.numpy()[clear] == 1, ref_fu[clear] == 1)  # fg pixels exactly 1
    assert np.array_equal(fusion.numpy()[clear] == 0, ref_fu[clear] == 0)

    for tap, out in taps.items():
        ref = io[f"B__tap__{tap}"]
        assert np.abs(out.numpy() - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), tap


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_leaf_modules_match_official(name, variant):
    meta = fixture_meta(name)
    with torch.device("meta"):
        model = GFM(official_config(variant))
    ours = {n: repr(m) for n, m in model.named_modules() if not list(m.children())}
    official = dict(meta["leaf_modules"])
    assert all(official.get(n) == r for n, r in ours.items()), [n for n, r in ours.items() if official.get(n) != r]
    # all official leaves exist here except the unused ones and resnet's classifier head
    unused = ("resnet.fc", "resnet.avgpool") + (("resnet.conv1", "resnet.bn1", "resnet.relu", "resnet.maxpool",
                                                 "psp1.") if variant == "r34_2b" else ())
    assert sorted(n for n in official if not n.startswith(unused)) == sorted(ours)


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_official_state_dict_round_trip(name, variant):
    model, sd, meta, cfg = _official_model(name, variant)
    ours = model.state_dict()
    dropped = ("encoder1.", "encoder2.", "resnet.fc.") + (("resnet.conv1.", "psp1.") if variant == "r34_2b" else ())
    assert not any(k.startswith(dropped) for k in ours)
    off = to_official_state_dict(ours, cfg)
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in off.items()] == meta["keys"]
    for alias, canonical in meta["aliases"].items():
        assert torch.equal(off[alias], off[canonical])
    used = from_official_state_dict(sd, cfg)
    for k, v in used.items():
        assert torch.equal(off[k], v), k
    # `module.` prefixes are stripped; an alias that disagrees with its canonical is refused.
    assert from_official_state_dict({"module." + k: v for k, v in sd.items()}, cfg).keys() == used.keys()
    bad = dict(sd)
    bad["encoder2.0.conv1.weight"] = bad["encoder2.0.conv1.weight"] + 1
    with pytest.raises(ValueError, match="encoder2.0.conv1.weight"):
        from_official_state_dict(bad, cfg)


def test_registry_and_configs():
    assert get_entry("gfm").task == "trimap_free"
    assert official_config("r34_2b").backbone == "r34_2b" and official_config("r34").rosta == "TT"
    with pytest.raises(ValueError):
        official_config("d121")
    with pytest.raises(ValueError):
        GFM(GFMConfig(rosta="RIM"))
    with pytest.raises(ValueError):
        from_official_state_dict({}, GFMConfig(backbone="mobilenetv2"))


@pytest.mark.parametrize("rosta", ["FT", "BT"])
def test_two_class_rostas(rosta):
    model = create_model("gfm", backbone="mobilenetv2", light_width=32, rosta=rosta).eval()
    with torch.no_grad():
        glance, focus, fusion = model(torch.rand(1, 3, 64, 96) * 255)
    assert glance.shape == (1, 2, 64, 96) and focus.shape == fusion.shape == (1, 1, 64, 96)
    assert torch.equal(fusion, collaborative_matting(rosta, glance, focus))


# --------------------------------------------------------------------------- fusion and predict


def test_collaborative_matting_rules():
    # pixels: bg, transition, fg, and a bg/fg tie (first index wins -> bg)
    glance = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.7], [0.6, 0.1, 0.6]]).T.reshape(1, 3, 1, 4)
    focus = torch.full((1, 1, 1, 4), 0.4)
    assert collaborative_matting("TT", glance, focus).flatten().tolist() == pytest.approx([0, 0.4, 1, 0])
    two = torch.tensor([[0.9, 0.1], [0.2, 0.7]]).T.reshape(1, 2, 1, 2)  # classes 0, 1
    f2 = torch.tensor([0.3, 0.5]).reshape(1, 1, 1, 2)
    assert collaborative_matting("FT", two, f2).flatten().tolist() == pytest.approx([0.3, 1.0])
    assert collaborative_matting("BT", two, f2).flatten().tolist() == pytest.approx([0.0, 0.5])


class _FakeNet:
    """A `forward` stand-in: glance = fg on the left third, transition in the middle, bg on the
    right (by column of the network input); focus = 0.3. Records the input sizes it saw."""

    def __init__(self):
        self.sizes: list[tuple[int, int]] = []
        self.max_input = 0.0

    def __call__(self, x):
        n, _, h, w = x.shape
        self.sizes.append((h, w))
        self.max_input = max(self.max_input, float(x.max()))
        col = torch.arange(w).expand(h, w)
        cls = torch.where(col < w // 3, 2, torch.where(col < 2 * w // 3, 1, 0))
        glance = F.one_hot(cls, 3).permute(2, 0, 1)[None].float().expand(n, 3, h, w) * 0.8 + 0.1
        focus = torch.full((n, 1, h, w), 0.3)
        return glance, focus, collaborative_matting("TT", glance, focus)


def test_predict_hybrid_pass_sizes_and_fusion():
    model = GFM(GFMConfig(backbone="mobilenetv2"))
    fake = _FakeNet()
    image = torch.rand(1, 3, 333, 517)
    alpha = model.predict(image, forward=fake)
    # glance at int(h/3), int(w/3) and focus at int(h/2), int(w/2), each floored to x32
    assert fake.sizes == [(96, 160), (160, 256)]
    assert 200 < fake.max_input <= 255.0  # the official 0..255 input range
    assert alpha.shape == (1, 1, 333, 517)
    a = alpha[0, 0]
    assert torch.all(a[:, :150] == 1) and torch.all(a[:, 380:] == 0)
    middle = a[:, 190:320]
    assert torch.allclose(middle, torch.full_like(middle, 0.3))
    # every value is 0, 1 or focus: the interpolated seams take focus, as in the official fusion
    assert torch.equal(torch.unique(a), torch.tensor([0.0, 0.3, 1.0]))


def test_predict_single_and_caps():
    model = GFM(GFMConfig(backbone="mobilenetv2", test_strategy="single", single_scale=0.5))
    fake = _FakeNet()
    alpha = model.predict(torch.rand(2, 3, 333, 517), forward=fake)
    assert fake.sizes == [(160, 256)] and alpha.shape == (2, 1, 333, 517)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    # short side capped at 1080 first (official demo), then x32 floor and the 1600 cap
    assert model.pass_size(2160, 4320, 0.5) == (512, 1056)
    assert GFM(GFMConfig(backbone="mobilenetv2", max_short_side=None)).pass_size(2160, 9000, 0.5) == (1056, 1600)
    assert model.pass_size(40, 50, 1 / 3) == (32, 32)  # tiny images still give a valid input


@pytest.mark.parametrize("strategy", ["hybrid", "single"])
def test_predict_real_network_odd_size(strategy):
    torch.manual_seed(0)
    model = create_model("gfm", backbone="r34", test_strategy=strategy).eval()
    with torch.no_grad():
        alpha = model.predict(torch.rand(1, 3, 333, 517))
    assert alpha.shape == (1, 1, 333, 517) and alpha.dtype == torch.float32
    assert torch.isfinite(alpha).all() and float(alpha.min()) >= 0 and float(alpha.max()) <= 1


# --------------------------------------------------------------------------- export


def test_psp_pooling_exports_with_dynamic_hw():
    """The native adaptive pool exports with the example's kernel baked in; ours must not."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    psp = PSPModule(8, 8).eval()
    dims = {2: torch.export.Dim("h", min=1, max=256), 3: torch.export.Dim("w", min=1, max=256)}
    prog = torch.onnx.export(psp, (torch.rand(1, 8, 4, 6),), None, dynamic_shapes={"feats": dims},
                             dynamo=True, verbose=False)
    sess = ort.InferenceSession(prog.model_proto.SerializeToString())
    for h, w in [(4, 6), (7, 10), (2, 3), (13, 5)]:
        x = torch.rand(1, 8, h, w)
        with torch.no_grad():
            ref = psp(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), (h, w)


# --------------------------------------------------------------------------- training


def _synthetic_batch(n: int = 4, size: int = 64):
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    images, alphas = [], []
    for _ in range(n):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([24, 24, 8]) + torch.tensor([20, 20, 10])).tolist()
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        a = (r + 3 - d).clamp(0, 6) / 6  # disc with a 6-px soft edge
        fg, bg = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        images.append(a * fg + (1 - a) * bg + 0.05 * torch.rand(3, size, size, generator=g))
        alphas.append(a[None])
    alpha = torch.stack(alphas)
    trimap = torch.ones_like(alpha, dtype=torch.long)[:, 0]
    trimap[alpha[:, 0] == 0] = 0
    trimap[alpha[:, 0] == 1] = 2
    return torch.stack(images).clamp(0, 1), alpha, trimap


def test_tiny_overfit_light_variant():
    torch.manual_seed(0)
    model = create_model("gfm", backbone="mobilenetv2", light_width=64).train()
    image, alpha, trimap = _synthetic_batch()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        glance, focus, fusion = model(image * model.config.input_scale)
        loss = F.cross_entropy(torch.logit(glance, eps=1e-6), trimap) + (fusion - alpha).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"overfit loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < losses[0] / 3
