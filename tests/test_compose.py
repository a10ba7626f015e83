"""Compositing, guidance perturbation, augmentation and target construction."""

import numpy as np
import pytest

from mattekit_training import compose as C


def _rng(s=0):
    return np.random.default_rng(s)


def _disk_alpha(h=96, w=96, r=26, soft=6.0):
    """A soft-edged disc: alpha 1 inside, 0 outside, a linear ramp `soft` px wide."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return np.clip((r + soft / 2 - d) / soft, 0, 1).astype(np.float32)


def test_composite_is_the_formula():
    r = _rng(1)
    fg, bg = r.random((20, 30, 3), dtype=np.float32), r.random((20, 30, 3), dtype=np.float32)
    a = r.random((20, 30), dtype=np.float32)
    out = C.composite(fg, bg, a)
    assert out.dtype == np.float32 and out.shape == (20, 30, 3)
    np.testing.assert_allclose(out, a[..., None] * fg + (1 - a[..., None]) * bg, atol=1e-7)
    np.testing.assert_array_equal(C.composite(fg, bg, np.ones_like(a)), fg)
    np.testing.assert_array_equal(C.composite(fg, bg, np.zeros_like(a)), bg)


def test_over_is_exact_layering():
    r = _rng(2)
    f1, f2, b = (r.random((16, 16, 3), dtype=np.float32) for _ in range(3))
    a1, a2 = r.random((16, 16), dtype=np.float32), r.random((16, 16), dtype=np.float32)
    f, a = C.over(f1, a1, f2, a2)
    np.testing.assert_allclose(C.composite(f, b, a), C.composite(f1, C.composite(f2, b, a2), a1), atol=1e-5)


def test_random_alpha_blending_is_exact():
    r = _rng(3)
    f, b = r.random((8, 8, 3), dtype=np.float32), r.random((8, 8, 3), dtype=np.float32)
    a = r.random((8, 8), dtype=np.float32)
    out = C.random_alpha_blending(f, b, a)
    np.testing.assert_allclose(out["image"], a[..., None] * f + (1 - a[..., None]) * b, atol=1e-7)
    np.testing.assert_array_equal(out["foreground"], f)


def test_match_background_covers_and_crops():
    bg = np.zeros((40, 60, 3), np.float32)
    bg[:, :, 0] = np.linspace(0, 1, 60)[None]
    out = C.match_background(bg, (100, 50), _rng())
    assert out.shape == (100, 50, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    u8 = (bg * 255).astype(np.uint8)
    out8 = C.match_background(u8, (30, 30), _rng())
    assert out8.dtype == np.float32 and out8.max() <= 1.0


def test_rssn_composite_labels_match_image_without_noise():
    r = _rng(4)
    a = _disk_alpha(64, 64)
    fg = r.random((64, 64, 3), dtype=np.float32)
    bg = r.random((100, 80, 3), dtype=np.float32)
    for seed in range(6):
        out = C.rssn_composite(fg, a, bg, _rng(seed), p_denoise=0.5, p_bokeh=0.5, p_noise=0.0)
        assert out["background"].shape == (64, 64, 3)
        np.testing.assert_allclose(out["image"], C.composite(out["foreground"], out["background"], a), atol=1e-6)
    noisy = C.rssn_composite(fg, a, bg, _rng(0), p_denoise=0, p_bokeh=0, p_noise=1.0)
    resid = noisy["image"] - C.composite(noisy["foreground"], noisy["background"], a)
    assert 5 / 255 < resid.std() < 11 / 255  # sigma = 10/255, a little clipped at 0 and 1


def test_bokeh_and_denoise_reduce_noise():
    clean = np.repeat(np.linspace(0.2, 0.8, 48, dtype=np.float32)[None, :, None], 48, 0).repeat(3, 2)
    noisy = C.add_gaussian_noise(clean, _rng(5), sigma=8 / 255)
    for out in (C.bokeh_blur(noisy, 20), C.denoise(noisy), C.denoise(noisy, "nlmeans")):
        assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
        assert np.abs(out - clean)[8:-8, 8:-8].mean() < 0.7 * np.abs(noisy - clean).mean()
    with pytest.raises(ValueError):
        C.denoise(noisy, "bm3d")


def test_mg_perturb_ranges():
    a = _disk_alpha()
    lo = C.erode(a >= 1, 2 * 30 + 1)  # stays selected whatever t and kernels are
    hi = C.dilate(a > 0, 2 * 30 + 1)  # never selected beyond this
    sizes = []
    for seed in range(20):
        g = C.mg_perturb(a, _rng(seed), p_cut=0.0)
        assert set(np.unique(g)) <= {0.0, 1.0}
        assert np.all(g[lo > 0] == 1) and np.all(g[hi == 0] == 0)
        sizes.append(g.sum())
    assert len(set(sizes)) > 5  # actually random


def test_random_dilate_erode_kernel_one_is_identity():
    m = (_disk_alpha() > 0.5).astype(np.float32)
    np.testing.assert_array_equal(C.random_dilate_erode(m, _rng(), 1, 1), m)


def test_cut_mask_patch_size_and_probability():
    m = np.zeros((80, 80), np.float32)
    m[:40] = 1
    np.testing.assert_array_equal(C.cut_mask(m, _rng(), p=0.0), m)
    changed_any = False
    for seed in range(20):
        out = C.cut_mask(m, _rng(seed), p=1.0)
        diff = out != m
        if diff.any():
            changed_any = True
            ys, xs = np.nonzero(diff)
            assert np.ptp(ys) + 1 <= 40 and np.ptp(xs) + 1 <= 40  # patch side <= 1/2 of the image
    assert changed_any


def test_lasso_encloses_subject():
    a = _disk_alpha(128, 128, r=30)
    for seed in range(5):
        g = C.lasso_guidance(a, _rng(seed))
        subj = a > 0.5
        assert g[subj].mean() > 0.95
        assert g.sum() > subj.sum()  # drawn outside the subject
        assert g[0, 0] == 0
    assert C.lasso_guidance(np.zeros((10, 10), np.float32), _rng()).sum() == 0


def test_rosta_tt_classes_consistent_with_alpha():
    a = _disk_alpha(128, 128, r=40, soft=10)
    g, tr = C.rosta_targets(a, "tt")
    assert g.dtype == np.int64 and set(np.unique(g)) == {0, 1, 2}
    assert np.all(a[g == 2] == 1) and np.all(a[g == 0] == 0)
    assert np.all(g[(a > 0) & (a < 1)] == 1)
    np.testing.assert_array_equal(tr, (g == 1).astype(np.float32))


def test_rosta_ft_bt_partition_support():
    a = _disk_alpha(160, 160, r=50, soft=10)
    sup = (a > 0).astype(np.float32)
    core, tr = C.rosta_targets(a, "ft")
    assert set(np.unique(core)) == {0, 1}
    np.testing.assert_array_equal(core + tr, sup)  # core and transition split the support
    grown, tr_b = C.rosta_targets(a, "bt")
    np.testing.assert_array_equal(grown - tr_b, sup)
    assert tr_b.sum() > 0 and core.sum() < sup.sum()
    with pytest.raises(ValueError):
        C.rosta_targets(a, "xx")


def test_boundary_and_border_bands():
    a = _disk_alpha(96, 96, r=25, soft=8)
    b = C.boundary_mask(a, 5)
    assert np.all(b[(a > 0) & (a < 1)] == 1)
    assert b[48, 48] == 0 and b[0, 0] == 0
    p = C.pomagan_border(a, 7)
    assert p[48, 48] == 0 and p.sum() > 0
    assert np.all(p[np.abs(a - 0.5) < 0.05] == 1)  # the 0.5 contour is in the band


def test_trimap_from_alpha_and_ddc():
    a = _disk_alpha(96, 96, r=25, soft=8)
    t = C.trimap_from_alpha(a, 5)
    assert set(np.unique(t)) == {0.0, 0.5, 1.0}
    assert np.all(a[t == 1] == 1) and np.all(a[t == 0] == 0)
    assert np.all(t[(a > 0) & (a < 1)] == 0.5)
    d1 = C.ddc_trimap(a, _rng(1))
    np.testing.assert_array_equal(d1, C.ddc_trimap(a, _rng(1)))
    assert np.all(a[d1 == 1] == 1) and np.all(a[d1 == 0] == 0)
    widths = {int((C.ddc_trimap(a, _rng(s)) == 0.5).sum()) for s in range(10)}
    assert len(widths) > 3


def test_segmentation_to_trimap():
    seg = np.zeros((80, 80), np.float32)
    seg[20:60, 20:60] = 0.99
    seg[35:45, 35:45] = 0.5
    t = C.segmentation_to_trimap(seg, k=9)
    assert t[0, 0] == 0 and t[40, 40] == 0.5 and t[25, 50] == 1.0
    assert t[20, 40] == 0.5 and t[18, 40] == 0.5  # the edge is unknown, grown outwards


def test_crop_centered_hits_focus_and_upscales():
    img = np.zeros((50, 200), np.float32)
    focus = np.zeros((50, 200), np.float32)
    focus[10, 180] = 1
    img[10, 180] = 1
    for seed in range(5):
        (c,) = C.crop_centered([img], focus, 64, _rng(seed))
        assert c.shape == (64, 64) and c.max() > 0  # upscaled to short side 64, around the focus


def test_gca_augment_keeps_ranges_and_shapes():
    r = _rng(6)
    a = _disk_alpha(64, 80)
    fg = r.random((64, 80, 3), dtype=np.float32)
    f2, a2 = r.random((50, 50, 3), dtype=np.float32), _disk_alpha(50, 50, r=10)
    f, al = C.gca_augment(fg, a, _rng(1), second=(f2, a2), p_second=1.0)
    assert f.shape == fg.shape and al.shape == a.shape
    assert 0 <= al.min() and al.max() <= 1 and 0 <= f.min() and f.max() <= 1
    assert not np.array_equal(al, a)
    out = C.random_resize([fg, a], _rng(2), size=(32, 40))
    assert out[0].shape == (32, 40, 3) and out[1].shape == (32, 40)
    j = C.color_jitter(fg, _rng(3), 0, 0, 0)
    np.testing.assert_allclose(j, fg, atol=2e-3)


def test_snap_alpha():
    a = np.array([0.0, 5e-4, 0.5, 0.9995, 1.0], np.float32)
    np.testing.assert_array_equal(C.snap_alpha(a), [0, 0, 0.5, 1, 1])
