"""MG Matting's foreground-colour net (no official checkpoint exists, so no fixture parity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mattekit.models import create_model, get_entry
from mattekit.foreground import classical_foreground
from mattekit.models.fgnet import (FGNet, FGNetConfig, from_official_state_dict, light_config, multilevel_base,
                                   official_config, residual_config, to_official_state_dict)
from mattekit.models.prn import normalize_image

SLIM = dict(width=0.25, encoder_layers=(1, 1, 1, 1), decoder_layers=(1, 1, 1, 1))


def test_registered():
    entry = get_entry("fgnet")
    assert entry.task == "foreground" and entry.cls is FGNet
    assert isinstance(create_model("fgnet", **SLIM), FGNet)
    assert official_config() == FGNetConfig()


@pytest.mark.parametrize("encoder", ["resnet_shortcut", "mobilenetv2"])
def test_predict_odd_size(encoder):
    h, w = 333, 517
    model = FGNet(FGNetConfig(encoder=encoder, **SLIM)).eval()
    g = torch.Generator().manual_seed(0)
    image, alpha = torch.rand(2, 3, h, w, generator=g), torch.rand(2, 1, h, w, generator=g)
    seen = []

    def fwd(x, a):
        seen.append((tuple(x.shape), tuple(a.shape)))
        return model(x, a)

    fg = model.predict(image, alpha=alpha, forward=fwd)
    assert seen == [((2, 3, 416, 608), (2, 1, 416, 608))]
    assert fg.shape == (2, 3, h, w) and fg.dtype == torch.float32
    assert torch.isfinite(fg).all() and fg.min() >= 0 and fg.max() <= 1
    # the matte is an input: changing it changes the estimated colours
    assert (model.predict(image, alpha=1 - alpha) - fg).abs().max() > 1e-6


def test_predict_needs_alpha():
    with pytest.raises(ValueError):
        FGNet(FGNetConfig(**SLIM)).predict(torch.rand(1, 3, 32, 32))


def test_light_config_builds():
    model = FGNet(light_config()).eval()
    with torch.no_grad():
        out = model(*model.onnx_example_inputs(64, 96))
    assert list(out) == list(model.onnx_output_names) and out["foreground"].shape == (1, 3, 64, 96)


def test_state_dict_round_trip_through_sn_layout():
    model = FGNet(FGNetConfig(**SLIM)).eval()
    sd = model.state_dict()
    off = to_official_state_dict(sd, model.config)
    assert any(k.endswith(".module.weight_bar") for k in off)
    back = from_official_state_dict(off, model.config)
    assert set(back) == set(sd)
    for k, v in sd.items():
        torch.testing.assert_close(back[k], v, rtol=1e-5, atol=1e-7)


def _rab_batch(n=4, h=64, w=64, seed=0):
    """Random Alpha Blending: random smooth F and B, and an unrelated random smooth alpha."""
    rng = np.random.default_rng(seed)

    def smooth(c, cells):
        x = torch.from_numpy(rng.random((n, c, cells, cells)).astype(np.float32))
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    fg, bg = smooth(3, 6), smooth(3, 6)
    alpha = (smooth(1, 4) * 3 - 1).clamp(0, 1)  # large opaque / clear areas plus soft transitions
    return alpha * fg + (1 - alpha) * bg, alpha, fg


def test_tiny_overfit_random_alpha_blending():
    torch.manual_seed(0)
    image, alpha, fg = _rab_batch()
    model = FGNet(FGNetConfig(**SLIM)).train()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    x = normalize_image(image)
    losses = []
    for _ in range(40):
        loss = F.l1_loss(model(x, alpha)["foreground"], fg)  # whole image, as RAB allows
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] / np.mean(losses[-5:]) > 3.0, losses


RESIDUAL = dict(SLIM, base="multilevel")


def test_residual_untrained_is_the_multilevel_estimate():
    """Zero-initialised correction: before training the net returns exactly F_ml."""
    image, alpha, _ = _rab_batch(n=2, h=70, w=90)
    model = FGNet(FGNetConfig(**RESIDUAL)).eval()
    fg = model.predict(image, alpha=alpha)
    want = np.stack([classical_foreground(image[i].permute(1, 2, 0).numpy(), alpha[i, 0].numpy())
                     for i in range(2)])
    np.testing.assert_allclose(fg.permute(0, 2, 3, 1).numpy(), want, atol=1e-6)
    assert model.onnx_input_names == ("image", "alpha", "base")
    assert FGNet(residual_config()).residual and not FGNet(light_config()).residual


def test_residual_corrects_only_where_alpha_is_soft():
    image, alpha, _ = _rab_batch(n=2, h=64, w=64, seed=1)
    model = FGNet(FGNetConfig(**RESIDUAL)).eval()
    torch.nn.init.normal_(model.decoder.refine_OS1[-1].weight, std=0.5)  # a non-zero correction
    base = multilevel_base(image, alpha)
    fg = model.predict(image, alpha=alpha, base=base)
    soft = ((alpha > 0) & (alpha < 1 - 1 / 512)).expand_as(fg)
    assert (fg - base)[soft].abs().max() > 1e-3
    assert (fg - base)[~soft].abs().max() == 0
    assert (fg - base).abs().max() <= model.config.max_correction + 1e-6


def test_residual_needs_a_base_in_forward():
    model = FGNet(FGNetConfig(**RESIDUAL))
    with pytest.raises(ValueError, match="base"):
        model(torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="base"):
        FGNet(FGNetConfig(base="guess"))


def test_residual_training_beats_the_multilevel_estimate():
    """On RAB data the correction learns something F_ml gets wrong: its error drops below F_ml's."""
    torch.manual_seed(0)
    image, alpha, fg = _rab_batch(n=4, h=64, w=64, seed=2)
    model = FGNet(FGNetConfig(**RESIDUAL)).train()
    base = multilevel_base(image, alpha)
    x = normalize_image(image)
    covered = (alpha > 0).expand_as(fg)
    start = (base - fg)[covered].abs().mean().item()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(40):
        loss = (model(x, alpha, base)["foreground"] - fg)[covered].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = (model(x, alpha, base)["foreground"] - fg)[covered].abs().mean().item()
    assert end < 0.8 * start, (start, end)
