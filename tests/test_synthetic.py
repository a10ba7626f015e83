"""Procedural foregrounds: exact alpha, determinism, the ingredients that make them hard."""

import numpy as np

from mattekit_training import compose as C
from mattekit_training import synthetic as S


def test_make_foreground_shapes_ranges_and_soft_alpha():
    partial = 0
    for seed in range(6):
        fg, a = S.make_foreground(np.random.default_rng(seed), (96, 80))
        assert fg.shape == (96, 80, 3) and a.shape == (96, 80)
        assert fg.dtype == np.float32 and a.dtype == np.float32
        assert 0 <= a.min() and a.max() <= 1 and 0 <= fg.min() and fg.max() <= 1
        assert (a == 1).any() and (a == 0).any()
        partial += int(((a > 0) & (a < 1)).sum())
    assert partial > 0


def test_make_foreground_is_deterministic_under_seed():
    f1, a1 = S.make_foreground(np.random.default_rng(11), 64)
    f2, a2 = S.make_foreground(np.random.default_rng(11), 64)
    f3, a3 = S.make_foreground(np.random.default_rng(12), 64)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(f1, f2)
    assert not np.array_equal(a1, a3)


def test_strands_have_subpixel_partial_coverage():
    body = np.zeros((64, 64), np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    body[:] = np.clip(20 - np.hypot(yy - 32, xx - 32), 0, 1)
    cov = S._strands(np.random.default_rng(0), 64, 64, body, 40)
    drawn = cov[body == 0]
    assert drawn.max() > 0  # strands leave the body
    on = drawn[drawn > 0]
    assert np.median(on) < 0.6  # mostly thinner than a pixel: partial coverage


def test_textures_from_photos_and_procedural():
    photo = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    kinds = set()
    for seed in range(12):
        t = S.make_texture(np.random.default_rng(seed), (40, 30), [photo])
        assert t.shape == (40, 30, 3) and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
        kinds.add(round(float(t.std()), 3))
    assert len(kinds) > 6


def test_synthetic_sample_is_an_exact_composite():
    s = S.synthetic_sample(np.random.default_rng(3), 72, (), "x")
    assert s.alpha is not None and s.foreground is not None and s.background is not None
    np.testing.assert_allclose(s.image, C.composite(s.foreground, s.background, s.alpha), atol=1e-6)
    assert set(np.unique(s.trimap)) <= {0.0, 0.5, 1.0}
    assert np.all(s.alpha[s.trimap == 1] == 1) and np.all(s.alpha[s.trimap == 0] == 0)
