"""Behaviour of the training losses (mattekit_training.losses)."""

import warnings

import pytest
import torch

from mattekit_training import losses as L

torch.manual_seed(0)


def _rand(n=2, c=1, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g)


def _soft_alpha(h=32, w=32):
    x = torch.linspace(-1, 1, w)
    a = torch.sigmoid(x * 8).expand(h, w).clone()
    return a[None, None].repeat(2, 1, 1, 1)


# ---------------------------------------------------------------- basics


def test_masked_mean_known_value_and_empty_mask():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert L.masked_mean(x, m).item() == pytest.approx(2.5, abs=1e-6)
    assert L.masked_mean(x, torch.zeros_like(m)).item() == 0.0


def test_composition_loss_zero_at_truth_and_l1_like_off_truth():
    a = _soft_alpha()
    fg, bg = _rand(c=3, seed=1), _rand(c=3, seed=2)
    img = L.composite(a, fg, bg)
    assert L.composition_loss(a, fg, bg, img).item() == pytest.approx(0.0, abs=1e-5)
    # alpha off by 0.1 everywhere: |0.1 (F - B)| averaged.
    expected = (0.1 * (fg - bg)).abs().mean().item()
    assert L.composition_loss(a + 0.1, fg, bg, img).item() == pytest.approx(expected, rel=1e-3)


def test_laplacian_pyramid_reconstructs_and_loss_zero_at_truth():
    x = _rand(h=40, w=36)
    pyr = L.laplacian_pyramid(x, 3)
    assert [p.shape[-2:] for p in pyr] == [(40, 36), (20, 18), (10, 9)]
    assert L.laplacian_loss(x, x).item() == 0.0
    # a constant offset has no band-pass content except the lowpass residue -> tiny loss,
    # while noise of the same mean magnitude gives a large one.
    off = L.laplacian_loss(x + 0.1, x).item()
    noisy = L.laplacian_loss(x + 0.1 * torch.sign(torch.randn_like(x)), x).item()
    assert off < 0.05 * noisy


def test_dilate_erode_band():
    a = torch.zeros(1, 1, 9, 9)
    a[..., 3:6, 3:6] = 1
    band = L.boundary_band(a, 3)
    # dilation -> 5x5 square, erosion -> single pixel; band = 25 - 1 pixels
    assert band.sum().item() == 24
    assert band[0, 0, 4, 4] == 0


# ---------------------------------------------------------------- MODNet


def test_modnet_semantic_target_and_loss():
    a = torch.ones(1, 1, 64, 64)
    t = L.modnet_semantic_target(a)
    assert t.shape == (1, 1, 4, 4)
    assert torch.allclose(t, torch.ones_like(t))
    assert L.modnet_semantic_loss(t, a).item() == pytest.approx(0.0, abs=1e-7)
    # known value: prediction 0 against target 1 -> 1/2 * 1
    assert L.modnet_semantic_loss(torch.zeros_like(t), a).item() == pytest.approx(0.5)


def test_modnet_detail_loss_gradient_only_in_band():
    a = _soft_alpha()
    band = torch.zeros_like(a)
    band[..., 10:20] = 1
    d = torch.rand_like(a).requires_grad_(True)
    loss = L.modnet_detail_loss(d, a, band)
    loss.backward()
    assert (d.grad[band == 0] == 0).all()
    assert (d.grad[band == 1] != 0).any()
    expected = ((d.detach() - a).abs() * band).sum() / band.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_modnet_loss_zero_at_truth_and_weights():
    a = _soft_alpha(64, 64)
    fg, bg = _rand(c=3, h=64, w=64, seed=1), _rand(c=3, h=64, w=64, seed=2)
    img = L.composite(a, fg, bg)
    band = L.boundary_band(a, 5, threshold=-1)
    s = L.modnet_semantic_target(a)
    out = L.modnet_loss(s, a, a, a, band, img, fg, bg)
    assert out["total"].item() == pytest.approx(0.0, abs=1e-4)
    d = a + 0.1 * band
    out = L.modnet_loss(s, d, a, a, band, img, fg, bg, L.ModnetWeights(1, 10, 1))
    assert out["detail"].item() == pytest.approx(0.1, rel=1e-4)
    assert out["total"].item() == pytest.approx(10 * 0.1, rel=1e-3)


def test_modnet_soc_consistent_prediction_has_only_frozen_term():
    a = _soft_alpha(64, 64)
    s = L.modnet_semantic_target(a)
    out = L.modnet_soc_loss(s, a, a, a)
    assert out["total"].item() == pytest.approx(0.0, abs=1e-6)
    band = L.soc_band(a, s)
    assert band.sum() > 0
    out = L.modnet_soc_loss(s, a, a, a + 0.2, band=band)
    assert out["soc_frozen"].item() == pytest.approx(0.2, rel=1e-4)


def test_freeze_batchnorm_keeps_running_stats():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net.train()
    assert L.freeze_batchnorm(net) == 1
    before = net[1].running_mean.clone()
    net(torch.randn(2, 3, 8, 8) + 5)
    assert torch.equal(before, net[1].running_mean)
    assert not net[1].weight.requires_grad


# ---------------------------------------------------------------- MG Matting


def test_mg_loss_masks_and_weights():
    a = _soft_alpha()
    fg, bg = _rand(c=3, seed=1), _rand(c=3, seed=2)
    img = L.composite(a, fg, bg)
    ones = torch.ones_like(a)
    zero = L.mg_loss(a, a, a, a, ones, ones, img, fg, bg)
    assert zero["total"].item() == pytest.approx(0.0, abs=1e-4)
    # OS4 wrong only outside its guidance: no loss, no gradient there.
    g4 = torch.zeros_like(a)
    g4[..., 8:24] = 1
    p4 = a.clone()
    p4[..., :8] += 0.3
    p4.requires_grad_(True)
    out = L.mg_loss(a, p4, a, a, g4, ones, img, fg, bg)
    assert out["os4"].item() == pytest.approx(0.0, abs=1e-4)
    out["total"].backward()
    assert (p4.grad[..., :6] == 0).all()
    # weights: the same error on each head scales 1:2:3
    w = L.MGWeights(comp=False)
    e8 = L.mg_loss(a + 0.1, a, a, a, ones, ones, weights=w)["total"].item()
    e1 = L.mg_loss(a, a, a + 0.1, a, ones, ones, weights=w)["total"].item()
    assert e1 == pytest.approx(3 * e8, rel=1e-4)


def test_self_guidance_dilation_and_prm():
    a = torch.zeros(2, 1, 32, 32)
    a[..., 16, 16] = 0.5  # one uncertain pixel
    g = L.self_guidance(a, 15)  # test-time radius 7 -> 15x15 square
    assert g[0].sum().item() == 225
    gen = torch.Generator().manual_seed(0)
    gr = L.self_guidance(a, 30, generator=gen, random_width=True)
    sides = gr.sum((1, 2, 3)).sqrt()
    assert ((sides >= 3) & (sides <= 59)).all()
    fused = L.prm_fuse(torch.zeros_like(a), torch.ones_like(a), g)
    assert torch.equal(fused, g)


def test_guidance_stage_curriculum():
    assert [L.guidance_stage(s, 5, 15) for s in (0, 4, 5, 14, 15)] == ["gt", "gt", "mixed", "mixed", "self"]


def test_foreground_loss_zero_at_truth_positive_otherwise():
    a = _rand(seed=3)
    fg, bg = _rand(c=3, seed=1), _rand(c=3, seed=2)
    img = L.composite(a, fg, bg)
    assert L.foreground_loss(fg, fg, a, bg, img)["total"].item() == pytest.approx(0, abs=1e-4)
    assert L.foreground_loss(bg, fg, a, bg, img)["total"].item() > 0.1


# ---------------------------------------------------------------- GFM


def test_glance_ce_known_value():
    p = torch.full((1, 3, 2, 2), 0.25)
    p[:, 1] = 0.5
    t = torch.ones(1, 2, 2, dtype=torch.long)
    assert L.glance_ce_loss(p, t, "probs").item() == pytest.approx(-torch.log(torch.tensor(0.5)).item(), rel=1e-5)
    # official: the (sigmoid) outputs act as logits -> softmax(0.25, 0.5, 0.25)[1]
    e = torch.exp(torch.tensor([0.25, 0.5, 0.25]))
    assert L.glance_ce_loss(p, t).item() == pytest.approx(-torch.log(e[1] / e.sum()).item(), rel=1e-5)


def test_gfm_loss_zero_at_truth_and_focus_only_in_transition():
    a = _soft_alpha()
    fg, bg = _rand(c=3, seed=1), _rand(c=3, seed=2)
    img = L.composite(a, fg, bg)
    cls = torch.zeros(2, 32, 32, dtype=torch.long)
    cls[..., 12:20] = 1
    cls[..., 20:] = 2
    onehot = torch.nn.functional.one_hot(cls, 3).permute(0, 3, 1, 2).float()
    out = L.gfm_loss(onehot, a, a, cls, a, img, fg, bg, glance_mode="probs")
    assert out["total"].item() < 1e-3
    focus = a.clone().requires_grad_(True)
    L.gfm_loss(onehot, focus + 0.2, a, cls, a, img, fg, bg)["total"].backward()
    trans = (cls == 1).unsqueeze(1)
    # Laplacian of the masked matte leaks at most a few pixels past the mask edge
    assert (focus.grad[..., :8] == 0).all() and (focus.grad[..., 24:] == 0).all()
    assert (focus.grad[trans] != 0).all()


# ---------------------------------------------------------------- DDC


def test_known_l1_ignores_unknown_and_scales_by_known_count():
    tri = torch.full((1, 1, 4, 4), 0.5)
    tri[..., 0, :] = 1.0
    tri[..., 3, :] = 0.0
    pred = torch.full_like(tri, 0.5).requires_grad_(True)
    loss = L.known_l1_loss(pred, tri)
    assert loss.item() == pytest.approx(0.5)  # mean over known pixels only
    loss.backward()
    assert (pred.grad[..., 1:3, :] == 0).all()
    assert (pred.grad[..., 0, :] != 0).all()


def test_ddc_zero_gradient_on_flat_region_at_label():
    img = torch.zeros(1, 3, 24, 24)
    img[..., 12:] = 1.0  # two flat colour halves
    a = torch.zeros(1, 1, 24, 24)
    a[..., 12:] = 1.0
    a.requires_grad_(True)
    loss = L.ddc_loss(a, img, window=5, k=4)
    loss.backward()
    # every nearest neighbour lies in the same flat half: zero loss and zero gradient
    assert loss.item() == 0.0
    assert (a.grad == 0).all()


def test_ddc_known_value_and_sign():
    # 1x3 image; with window 3 and k = 1 each pixel pairs with its nearest colour.
    img = torch.tensor([0.0, 0.1, 0.5]).view(1, 1, 1, 3).expand(1, 3, 1, 3).contiguous()
    a = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 1, 3)
    d01 = (3 * 0.1**2) ** 0.5
    d12 = (3 * 0.4**2) ** 0.5
    # pixel0 -> 1: |d01 - 0|; pixel1 -> 0: |d01 - 0|; pixel2 -> 1: |d12 - (1 - 0)|
    expected = (d01 + d01 + abs(d12 - 1.0)) / 3
    assert L.ddc_loss(a, img, window=3, k=1).item() == pytest.approx(expected, rel=1e-5)


def test_ddc_chunking_matches_full():
    img, a = _rand(c=3, h=20, w=17, seed=4), _rand(h=20, w=17, seed=5)
    full = L.ddc_loss(a, img)
    chunked = L.ddc_loss(a, img, max_elements=3000)
    assert chunked.item() == pytest.approx(full.item(), rel=1e-5)


# ---------------------------------------------------------------- POMAGAN


def test_discriminator_scales_and_gan_losses():
    d = L.MultiScaleDiscriminator(4, ndf=8)
    outs = d(torch.rand(2, 4, 128, 128))
    assert all(o.shape[-1] >= 1 for o in d(torch.rand(1, 4, 16, 16)))
    assert len(outs) == 3 and outs[0].shape[-1] > outs[1].shape[-1] > outs[2].shape[-1]
    ones = [torch.ones(2, 1, 4, 4)] * 3
    assert L.gan_loss(ones, True).item() == 0.0
    assert L.gan_loss(ones, False).item() == pytest.approx(3.0)
    assert L.gan_loss(ones, True, "hinge").item() == 0.0
    assert L.gan_loss(ones, False, "hinge").item() == pytest.approx(6.0)


def test_pomagan_terms_zero_at_truth_and_border_band():
    a = _soft_alpha()
    img, bg = _rand(c=3, seed=1), _rand(c=3, seed=2)
    assert L.pomagan_alpha_terms(a, a, img, bg).item() == 0.0
    band = L.pomagan_border(a, 5)
    assert 0 < band.mean().item() < 0.5


def test_perceptual_off_without_weights_warns_once(tmp_path):
    msgs = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        p = L.PerceptualLoss(None, log=msgs.append)
        for _ in range(3):
            v = p(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    assert not p.enabled and v.item() == 0.0
    assert len([w for w in rec if "perceptual loss is OFF" in str(w.message)]) == 1
    assert len(msgs) == 1


def test_perceptual_loads_user_weights(tmp_path):
    from safetensors.torch import save_file

    ref = L.VGG19Features()
    path = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    p = L.PerceptualLoss(path)
    assert p.enabled
    x = torch.rand(1, 3, 32, 32)
    assert p(x, x).item() == 0.0
    assert p(x, torch.rand(1, 3, 32, 32)).item() > 0
