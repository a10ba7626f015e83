"""MG Matting's foreground-colour net (no official checkpoint exists, so no fixture parity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mattekit.models import create_model, get_entry
from mattekit.models.fgnet import (FGNet, FGNetConfig, from_official_state_dict, light_config, official_config,
                                   to_official_state_dict)
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
