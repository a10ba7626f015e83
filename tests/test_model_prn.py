"""MG Matting PRN: official parity (fixture rule B), checkpoint layouts, predict, PRM, overfit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mattekit.models import create_model, get_entry, spectral
from mattekit.models.prn import (PRN, PRNConfig, ellipse_kernel, from_official_state_dict, normalize_image,
                                 official_config, official_padding, progressive_refine, reflect_pad,
                                 to_official_state_dict)
from official_fixtures import fill_sha256, fixture_io, fixture_meta, make_state_dict

NAME = "mgmatting_rs29_rsd22"
SLIM = dict(width=0.25, encoder_layers=(1, 1, 1, 1), decoder_layers=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def official_b():
    meta = fixture_meta(NAME)
    sd = make_state_dict(meta, "B")
    assert fill_sha256(sd) == meta["fill_sha256"]["B"]
    return meta, sd


@pytest.fixture(scope="module")
def official_model(official_b):
    _, sd = official_b
    model = PRN(official_config("MGMatting-RWP-100k"))
    model.load_state_dict(from_official_state_dict(sd), strict=True)
    return model.eval()


def test_registered():
    entry = get_entry("prn")
    assert entry.task == "guided" and entry.cls is PRN
    assert isinstance(create_model("prn", width=0.25), PRN)


def test_official_parity_rule_b(official_model):
    io = fixture_io(NAME)
    taps = {}
    hook = official_model.aspp.register_forward_hook(lambda m, i, o: taps.__setitem__("aspp", o))
    with torch.no_grad():
        out = official_model(torch.from_numpy(io["input_image"]), torch.from_numpy(io["input_mask"]))
    hook.remove()
    assert list(out) == ["alpha_os1", "alpha_os4", "alpha_os8"]
    for key, pred in out.items():
        ref = io[f"B__{key}"]
        assert pred.shape == ref.shape
        # README: independent implementations within 1e-5 (never above 1e-4); we measure ~2e-7.
        assert np.abs(pred.numpy() - ref).max() <= 1e-5, key
    ref = io["B__tap__aspp"]
    assert np.abs(taps["aspp"].numpy() - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_official_checkpoint_container_and_prefix(official_b, official_model):
    _, sd = official_b
    ckpt = {"iter": 100000, "state_dict": {"module." + k: v for k, v in sd.items()}}
    ours = from_official_state_dict(ckpt)
    ref = official_model.state_dict()
    assert set(ours) == set(ref)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)


def test_to_official_keys_and_eval_reproduces_weights(official_b, official_model):
    meta, _ = official_b
    ours = official_model.state_dict()
    off = to_official_state_dict(ours, official_model.config)
    assert [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in off.items()] == \
        [tuple(x) for x in meta["keys"]]
    # The official eval formula (stored u, v, no power iteration) gives back our weights...
    back = from_official_state_dict(off)
    for k, w in ours.items():
        torch.testing.assert_close(back[k], w, rtol=1e-5, atol=1e-7)
    # ... and the official training step (one power iteration from the stored u) normalises by
    # the true spectral norm, i.e. u is the top singular vector.
    p = "decoder.layer1.0.conv1.module."
    bar, u = off[p + "weight_bar"].double(), off[p + "weight_u"].double()
    mat = bar.reshape(bar.shape[0], -1)
    v1 = F.normalize(mat.t().mv(u), dim=0)
    u1 = F.normalize(mat.mv(v1), dim=0)
    sigma = u1.dot(mat.mv(v1))
    assert float(sigma) == pytest.approx(float(torch.linalg.matrix_norm(mat, 2)), rel=1e-6)


def test_spectral_norm_layouts_load_both_ways(tmp_path):
    from safetensors.torch import load_file, save_file

    x = PRN(PRNConfig(**SLIM)).onnx_example_inputs(64, 96)
    sn = PRN(PRNConfig(spectral_norm=True, **SLIM))
    assert any(k.endswith("parametrizations.weight.original") for k in sn.state_dict())
    sn.train()
    with torch.no_grad():
        sn(*(t.repeat(2, 1, 1, 1) for t in x))  # one power iteration moves u, v and the running BN stats
    sn.eval()
    with torch.no_grad():
        ref = sn(*x)["alpha_os1"]
    save_file(spectral.plain_state_dict(sn), tmp_path / "w.safetensors")
    plain = PRN(PRNConfig(**SLIM)).eval()
    plain.load_state_dict(load_file(tmp_path / "w.safetensors"), strict=True)
    sn2 = PRN(PRNConfig(spectral_norm=True, **SLIM)).eval()
    sn2.load_state_dict(plain.state_dict(), strict=True)  # plain -> parametrized
    plain2 = PRN(PRNConfig(**SLIM)).eval()
    plain2.load_state_dict(sn.state_dict(), strict=True)  # parametrized -> plain
    with torch.no_grad():
        for m in (plain, sn2, plain2):
            torch.testing.assert_close(m(*x)["alpha_os1"], ref, rtol=0, atol=1e-5)


def test_ellipse_kernel_matches_cv2():
    for size in range(1, 31):
        ref = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        assert torch.equal(ellipse_kernel(size), torch.from_numpy(ref).float()), size


def test_reflect_pad_matches_numpy_even_when_pad_exceeds_size():
    for h, w in [(5, 7), (1, 3), (40, 50)]:
        pad = official_padding(h, w)
        x = torch.rand(1, 1, h, w)
        ref = np.pad(x[0, 0].numpy(), ((pad[2], pad[3]), (pad[0], pad[1])), mode="reflect")
        np.testing.assert_array_equal(reflect_pad(x, pad)[0, 0].numpy(), ref)


def _official_refine(os8, os4, os1, k1=15, k2=7):
    """The official infer.py refinement, with cv2 (per image, uint8), as a reference."""
    def unknown(pred, k):
        u = np.ones_like(pred, dtype=np.uint8)
        u[pred < 1.0 / 255.0] = 0
        u[pred > 1 - 1.0 / 255.0] = 0
        kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        return np.stack([cv2.dilate(u[n, 0], kern)[None] for n in range(len(u))])
    a = os8.copy()
    w4 = unknown(a, k1)
    a[w4 > 0] = os4[w4 > 0]
    w1 = unknown(a, k2)
    a[w1 > 0] = os1[w1 > 0]
    return a


def test_progressive_refine_matches_official_reference():
    g = torch.Generator().manual_seed(1)
    # Mostly confident maps with scattered uncertain pixels and values right at the 1/255 edges.
    os8 = (torch.rand(2, 1, 48, 80, generator=g) > 0.5).float()
    os8[torch.rand(os8.shape, generator=g) < 0.01] = 0.5
    os8[0, 0, 5, 5], os8[0, 0, 30, 60] = 1.0 / 255.0, 1 - 1.0 / 255.0
    os4 = torch.where(torch.rand(os8.shape, generator=g) < 0.9, torch.rand(os8.shape, generator=g), os8)
    os1 = torch.rand(os8.shape, generator=g)
    ours = progressive_refine(os8, os4, os1, 15, 7)
    ref = _official_refine(os8.numpy(), os4.numpy(), os1.numpy())
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_progressive_refine_keeps_confident_coarse_regions():
    h, w, col = 40, 64, 32
    os8 = torch.zeros(1, 1, h, w)
    os8[..., col:] = 1.0
    os8[..., col] = 0.5  # one uncertain column
    os4 = torch.full_like(os8, 0.3)  # uncertain everywhere: only the dilated band may take it
    os1 = torch.full_like(os8, 0.7)
    out = progressive_refine(os8, os4, os1, 15, 7)
    # OS8 -> OS4 in the column dilated by radius 7; OS4 -> OS1 in that band dilated by radius 3.
    band = (torch.arange(w) >= col - 7 - 3) & (torch.arange(w) <= col + 7 + 3)
    expected = torch.where(band, torch.tensor(0.7), os8)
    assert torch.equal(out, expected)
    assert torch.equal(out[..., :col - 10], os8[..., :col - 10])  # confident coarse regions kept


def _scene(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    d = np.sqrt(((yy - h * 0.5) / (0.3 * h)) ** 2 + ((xx - w * 0.45) / (0.3 * w)) ** 2)
    alpha = np.clip((1 - d) * 8 + 0.5, 0, 1).astype(np.float32)
    image = rng.random((3, h, w), dtype=np.float32) * 0.3 + alpha[None] * 0.6
    return torch.from_numpy(image)[None], torch.from_numpy(alpha)[None, None]


@pytest.mark.parametrize("encoder", ["resnet_shortcut", "mobilenetv2"])
def test_predict_odd_size_binary_soft_trimap(encoder):
    h, w = 333, 517
    model = PRN(PRNConfig(encoder=encoder, **SLIM)).eval()
    image, alpha = _scene(h, w)
    binary = (alpha > 0.5).float()
    soft = F.avg_pool2d(binary, 9, 1, 4)  # blurred edges, values strictly between 0 and 1 there
    trimap = torch.where(soft <= 0.05, 0.0, torch.where(soft >= 0.95, 1.0, 0.5))
    seen = []

    def fwd(x, g):
        seen.append((tuple(x.shape), tuple(g.shape), g.unique().numel()))
        return model(x, g)

    images = image.repeat(3, 1, 1, 1)
    out = model.predict(images, torch.cat([binary, soft, trimap]), forward=fwd)
    assert out.shape == (3, 1, h, w) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # official padding: 32 + up to a multiple of 32 (333 -> 416, 517 -> 608) and binarised guidance
    assert seen == [((3, 3, 416, 608), (3, 1, 416, 608), 2)]
    # threshold 0.5 (official 128/255): soft and trimap guidance act as their binarised masks
    ref = model.predict(image.repeat(3, 1, 1, 1), torch.cat([binary, soft >= 0.5, trimap >= 0.5]).float())
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # guidance_threshold=None passes the soft values through, which changes the result
    model.config.guidance_threshold = None
    soft_out = model.predict(image, soft)
    assert soft_out.shape == (1, 1, h, w)
    assert (soft_out - out[1:2]).abs().max() > 1e-6


def test_predict_crops_the_padded_prediction():
    model = PRN(PRNConfig(progressive_refine=False, **SLIM)).eval()
    image, alpha = _scene(70, 45)
    pad = official_padding(70, 45)
    full = model(reflect_pad(normalize_image(image), pad), reflect_pad((alpha >= 0.5).float(), pad))["alpha_os1"]
    out = model.predict(image, alpha)
    torch.testing.assert_close(out, full[:, :, 32:102, 32:77], rtol=0, atol=0)


def test_predict_needs_guidance():
    with pytest.raises(ValueError):
        PRN(PRNConfig(**SLIM)).predict(torch.rand(1, 3, 32, 32))


def test_onnx_example_inputs_run_forward():
    model = PRN(PRNConfig(**SLIM)).eval()
    inputs = model.onnx_example_inputs(64, 96)
    assert len(inputs) == len(model.onnx_input_names) == 2
    with torch.no_grad():
        out = model(*inputs)
    assert list(out) == list(model.onnx_output_names)
    assert all(v.shape == (1, 1, 64, 96) for v in out.values())


def _composites(n=4, h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    alphas = []
    for _ in range(n):
        cy, cx, r = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(10, 18)
        alphas.append(np.clip((r - np.hypot(yy - cy, xx - cx)) / 4 + 0.5, 0, 1))
    alpha = torch.from_numpy(np.stack(alphas)[:, None].astype(np.float32))

    def smooth():
        x = torch.from_numpy(rng.random((n, 3, h // 8 + 1, w // 8 + 1)).astype(np.float32))
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    fg, bg = smooth(), smooth()
    return alpha * fg + (1 - alpha) * bg, alpha


def test_tiny_overfit():
    torch.manual_seed(0)
    image, alpha = _composites()
    model = PRN(PRNConfig(**SLIM)).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, g = normalize_image(image), (alpha > 0.5).float()
    losses = []
    for _ in range(40):
        out = model(x, g)
        loss = sum(F.l1_loss(out[k], alpha) for k in out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] / np.mean(losses[-5:]) > 3.0, losses


def test_onnx_export_dynamic_size_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = PRN(PRNConfig(**SLIM)).eval()
    path = tmp_path / "prn.onnx"
    names = model.onnx_input_names + model.onnx_output_names
    torch.onnx.export(model, model.onnx_example_inputs(64, 96), str(path), input_names=list(model.onnx_input_names),
                      output_names=list(model.onnx_output_names), dynamic_axes={n: {2: "h", 3: "w"} for n in names},
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def fwd(x, g):
        outs = session.run(None, {"image": x.numpy(), "guidance": g.numpy()})
        return dict(zip(model.onnx_output_names, map(torch.from_numpy, outs)))

    image, alpha = _scene(75, 130)  # a different size than the export's
    ref = model.predict(image, alpha)
    torch.testing.assert_close(model.predict(image, alpha, forward=fwd), ref, rtol=0, atol=1e-4)
