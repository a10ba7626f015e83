import numpy as np
import pytest

from mattekit import config, refine


def synth(h=96, w=96, soft=4.0):
    """Smooth F and B composited with a wavy soft disc: the colour-line model holds."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h / 2, xx - w / 2)
    ang = np.arctan2(yy - h / 2, xx - w / 2)
    alpha = np.clip((h * 0.3 + 3 * np.sin(5 * ang) - r) / soft + 0.5, 0, 1).astype(np.float32)
    fg = np.stack([0.8 + 0.1 * np.sin(xx / 9), 0.3 + 0.1 * np.cos(yy / 7), 0.2 + 0 * xx], -1)
    bg = np.stack([0.1 + 0.05 * np.cos(xx / 11), 0.5 + 0.2 * np.sin(yy / 13), 0.9 - 0.1 * np.sin((xx + yy) / 17)], -1)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha


def test_default_band_px_follows_config():
    assert refine.default_band_px(100, 200) == config.BAND_MIN_PX
    assert refine.default_band_px(4000, 3000) == round(3000 * config.BAND_FRACTION)


@pytest.mark.parametrize("band_px", [4, 10])
def test_band_width_straddles_a_straight_edge(band_px):
    g = np.zeros((40, 60), np.float32)
    g[:, 30:] = 1.0
    tri = refine.guidance_to_trimap(g, band_px)
    assert set(np.unique(tri)) == {0.0, 0.5, 1.0}
    row = tri[20]
    unknown = np.flatnonzero(row == 0.5)
    assert len(unknown) == band_px and unknown.min() == 30 - band_px // 2
    assert (row[: unknown.min()] == 0).all() and (row[unknown.max() + 1 :] == 1).all()
    # the image border is not an edge
    assert (tri[:, 0] == 0).all() and (tri[:, -1] == 1).all()


def test_soft_guidance_is_unknown_and_hard_values_are_not():
    g = np.zeros((30, 30), np.float32)
    g[:, 15:] = 1.0
    g[5, 2] = 0.3  # a stray feathered pixel far from the edge
    g[5, 27] = 0.97  # close enough to 1 to be trusted
    tri = refine.guidance_to_trimap(g, 4)
    assert tri[5, 2] == 0.5 and tri[5, 27] == 1.0 and tri[10, 2] == 0.0


def test_trimap_guidance_keeps_its_unknown_region():
    t = np.zeros((20, 20), np.float32)
    t[:, 10:] = 1.0
    t[3:6, 3:6] = 0.5  # an unknown island the band rule would never produce
    out = refine.guidance_to_trimap(t, 8)
    np.testing.assert_array_equal(out, t)


def test_closed_form_in_band_recovers_alpha_and_matches_full_frame():
    from pymatting import estimate_alpha_cf

    image, alpha = synth()
    guidance = (alpha > 0.5).astype(np.float32)
    tri = refine.guidance_to_trimap(guidance, 12)
    pred = refine.closed_form_in_band(image, tri)
    assert pred.dtype == np.float32 and pred.shape == alpha.shape
    assert np.abs(pred - alpha).sum() < 0.1 * np.abs(guidance - alpha).sum()
    known = tri != 0.5
    np.testing.assert_array_equal(pred[known], tri[known])
    full = estimate_alpha_cf(image.astype(np.float64), tri.astype(np.float64))
    np.testing.assert_allclose(pred, full, atol=1e-5)  # one tile covers it: same system
    # forced into many small tiles, the margin keeps it close to the full solve
    labels, tiles = refine.band_tiles(tri == 0.5, 24)
    assert len(tiles) > 4
    tiled = refine.closed_form_in_band(image, tri, tile=24, margin=16)
    assert np.abs(tiled - full).max() < 0.01


def test_progress_is_reported_and_can_cancel():
    image, alpha = synth(64, 64)
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), 8)
    seen = []
    refine.closed_form_in_band(image, tri, progress=seen.append, tile=16)
    assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 1.0

    class Cancelled(Exception):
        pass

    def cancel(frac):
        if frac > 0:
            raise Cancelled

    with pytest.raises(Cancelled):
        refine.closed_form_in_band(image, tri, progress=cancel, tile=16)


def test_edge_cases_no_band_border_tiny_all_unknown():
    rng = np.random.default_rng(1)
    image = rng.random((12, 12, 3)).astype(np.float32)
    tri = np.zeros((12, 12), np.float32)
    tri[:, 6:] = 1
    np.testing.assert_array_equal(refine.closed_form_in_band(image, tri), tri)  # nothing unknown
    # band touching the border
    tri[:, 4:8] = 0.5
    out = refine.closed_form_in_band(image, tri)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # all unknown: falls back to the given guidance
    fb = rng.random((12, 12)).astype(np.float32)
    np.testing.assert_array_equal(refine.closed_form_in_band(image, np.full((12, 12), 0.5, np.float32), fallback=fb), fb)
    # tiny images
    for shape in [(1, 1), (2, 3)]:
        t = np.full(shape, 0.5, np.float32)
        t.flat[0] = 1.0
        out = refine.closed_form_in_band(rng.random(shape + (3,)).astype(np.float32), t)
        assert out.shape == shape and np.isfinite(out).all()


def test_tile_seeing_one_label_gets_the_constant_solution():
    rng = np.random.default_rng(2)
    image = rng.random((40, 40, 3)).astype(np.float32)
    tri = np.zeros((40, 40), np.float32)
    tri[10:20, 10:20] = 0.5  # an unknown hole inside known background only
    out = refine.closed_form_in_band(image, tri, fallback=np.full((40, 40), 0.7, np.float32))
    np.testing.assert_array_equal(out, 0.0)
    tri[30:, :] = 1.0  # foreground in the crop but coupled to no unknown pixel: still 0
    np.testing.assert_array_equal(refine.closed_form_in_band(image, tri, margin=16)[10:20, 10:20], 0.0)
    # a long band whose far end touches foreground: tiles near the other end see only
    # background; the result stays close to the full-frame solve
    from pymatting import estimate_alpha_cf

    tri[:] = 0.0
    tri[5:8, 2:38] = 0.5
    tri[4:9, 36:40] = 1.0
    tri[5:8, 36:] = 1.0
    out = refine.closed_form_in_band(image, tri, tile=8, margin=2)
    full = estimate_alpha_cf(image.astype(np.float64), tri.astype(np.float64))
    assert np.abs(out - full).max() < 0.02


def test_pymatting_console_warnings_do_not_reach_stdout(monkeypatch, capsys, caplog):
    import pymatting

    from mattekit import refine

    def noisy(image, trimap):
        print("PERFORMANCE WARNING:\n    shift = 1e-4\nTry decreasing discard_threshold")
        return trimap

    monkeypatch.setattr(pymatting, "estimate_alpha_cf", noisy)
    tri = np.zeros((4, 4))
    with caplog.at_level("DEBUG", logger="mattekit.refine"):
        assert np.array_equal(refine._solve_cf(np.zeros((4, 4, 3)), tri), tri)
    assert capsys.readouterr().out == "" and "PERFORMANCE WARNING" in caplog.text
