import numpy as np
import pytest

from mattekit import config, imageops, refine


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


def _step(alpha: np.ndarray, axis: int) -> np.ndarray:
    """|alpha[k] - alpha[k-1]| along `axis` (rows: axis 0)."""
    return np.abs(np.diff(alpha, axis=axis))


def test_closed_form_in_band_recovers_alpha_and_matches_pymatting():
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
    np.testing.assert_allclose(pred, full, atol=2e-3)  # the same system, solved to CG_RTOL


def test_a_large_photo_is_solved_small_and_carried_up_close_to_the_full_solve():
    image, alpha = synth(240, 240, soft=6.0)
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), 24)
    band = tri == 0.5
    full = refine.closed_form_in_band(image, tri, solve_px=240 * 240)
    small = refine.closed_form_in_band(image, tri, solve_px=80 * 80)  # a 9x smaller system
    naive = imageops.resize_linear(imageops.resize_area(full, (80, 80)), (240, 240))
    lasso = (alpha > 0.5).astype(np.float32)
    err = lambda a: float(np.abs(a - alpha)[band].sum())
    # measured: lasso 678, full solve 65, small 103, bilinear 196
    assert err(lasso) - err(small) > 0.9 * (err(lasso) - err(full))  # most of the full solve's gain
    assert err(small) < 0.6 * err(naive)  # the linear model carries detail bilinear upsampling loses
    known = ~band
    np.testing.assert_array_equal(small[known], tri[known])


def test_strips_leave_no_seam(monkeypatch):
    """The full-resolution alpha does not depend on how it is cut into strips."""
    image, alpha = synth(200, 160)
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), 16)
    ref = refine.closed_form_in_band(image, tri, solve_px=3000)
    monkeypatch.setattr(config, "STRIP_PX", 7 * 160)  # strips of 7 rows
    np.testing.assert_allclose(refine.closed_form_in_band(image, tri, solve_px=3000), ref, atol=1e-6)


@pytest.mark.slow
def test_twelve_megapixel_band_has_no_step_at_any_region_border():
    """A 12 MP composite whose edge crosses every strip and every working pixel row: the alpha
    steps across those borders no more than between any two neighbouring rows of the band."""
    h, w = 3000, 4000
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h / 2, xx - w / 2)
    ang = np.arctan2(yy - h / 2, xx - w / 2)
    alpha = np.clip((1200 + 40 * np.sin(7 * ang) - r) / 12 + 0.5, 0, 1).astype(np.float32)
    del r, ang
    fg = np.stack([0.8 + 0.1 * np.sin(xx / 90), 0.3 + 0 * xx, 0.2 + 0.1 * np.cos(yy / 70)], -1)
    bg = np.stack([0.1 + 0 * xx, 0.5 + 0.2 * np.sin(yy / 130), 0.9 - 0.1 * np.sin((xx + yy) / 170)], -1)
    del xx, yy
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
    del fg, bg
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), refine.default_band_px(h, w))
    pred = refine.closed_form_in_band(image, tri)
    band = tri == 0.5
    inside = band[1:] & band[:-1]
    steps = _step(pred, 0)
    typical = np.quantile(steps[inside], 0.999)
    rows = config.STRIP_PX // w
    borders = np.arange(rows, h, rows) - 1
    assert steps[borders][inside[borders]].max() <= typical
    assert float(np.abs(pred - alpha)[band].mean()) < 0.02


def test_progress_is_reported_and_can_cancel():
    image, alpha = synth(64, 64)
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), 8)
    for solve_px in (None, 1000):  # solved whole, and solved small then carried up
        seen = []
        refine.closed_form_in_band(image, tri, progress=seen.append, solve_px=solve_px)
        assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 1.0

    class Cancelled(Exception):
        pass

    def cancel(frac):
        if frac > 0.3:
            raise Cancelled

    with pytest.raises(Cancelled):
        refine.closed_form_in_band(image, tri, progress=cancel)


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
    # tiny images, and thin ones solved small
    for shape in [(1, 1), (2, 3), (1, 5000), (3, 4000)]:
        t = np.full(shape, 0.5, np.float32)
        t.flat[-1] = 0.0
        t.flat[0] = 1.0
        out = refine.closed_form_in_band(rng.random(shape + (3,)).astype(np.float32), t, solve_px=2000)
        assert out.shape == shape and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert out.flat[0] == 1.0 and (out.size == 1 or out.flat[-1] == 0.0)


def test_unknown_region_anchored_by_one_label_gets_the_constant_solution():
    rng = np.random.default_rng(2)
    image = rng.random((40, 40, 3)).astype(np.float32)
    tri = np.zeros((40, 40), np.float32)
    tri[10:20, 10:20] = 0.5  # an unknown hole inside known background only
    out = refine.closed_form_in_band(image, tri, fallback=np.full((40, 40), 0.7, np.float32))
    np.testing.assert_array_equal(out, 0.0)
    tri[:] = 1.0
    tri[10:20, 10:20] = 0.5  # inside foreground only
    out = refine.closed_form_in_band(image, tri, fallback=np.full((40, 40), 0.3, np.float32))
    np.testing.assert_allclose(out, 1.0, atol=1e-4)


def test_a_region_no_known_pixel_reaches_keeps_the_fallback():
    rng = np.random.default_rng(3)
    image = rng.random((40, 60, 3)).astype(np.float32)
    tri = np.zeros((40, 60), np.float32)
    tri[:, 30:] = 1.0
    tri[:, 28:32] = 0.5  # the band: anchored by both labels
    assert refine._anchored(tri == 0.5, tri != 0.5)[tri == 0.5].all()
    isolated = np.zeros((40, 60), bool)
    isolated[5:8, 5:8] = True
    assert not refine._anchored(isolated, np.zeros_like(isolated)).any()
    # an unknown island > 2 px from any known pixel inside an unknown frame border... is the whole
    # frame: nothing anchors it, so it keeps the fallback while the band is solved
    tri[:, :12] = 0.5
    fb = np.full((40, 60), 0.7, np.float32)
    out = refine.closed_form_in_band(image, tri, fallback=fb)
    assert np.isfinite(out).all() and out[:, 28:32].std() > 0


def test_trimap_in_strips_is_the_whole_frame_answer_and_matches_morphology(monkeypatch):
    import cv2

    monkeypatch.setattr(config, "STRIP_PX", 2000)
    rng = np.random.default_rng(4)
    blobs = cv2.GaussianBlur(rng.random((300, 200)).astype(np.float32), (0, 0), 12)
    g = (blobs > np.median(blobs)).astype(np.float32)
    g[50:60, 50:60] = 0.4  # a feathered patch
    seen = []
    tri = refine.guidance_to_trimap(g, 40, progress=seen.append)  # strips of 80 rows, 20 of context
    assert len(seen) > 2 and seen[-1] == 1.0
    whole = refine.near_edge(g >= 0.5, 20) | ((g > refine.SOFT_LOW) & (g < refine.SOFT_HIGH))
    np.testing.assert_array_equal(tri == 0.5, whole)
    np.testing.assert_array_equal(tri[~whole], (g >= 0.5)[~whole])
    # the Euclidean band agrees with the elliptical-kernel morphology it replaced
    fg = (g >= 0.5).astype(np.uint8)
    k = imageops.disk(20)
    morph = cv2.dilate(fg, k, borderType=cv2.BORDER_REPLICATE) != cv2.erode(fg, k, borderType=cv2.BORDER_REPLICATE)
    assert (refine.near_edge(fg, 20) != morph).mean() < 0.01


def test_a_solve_that_jacobi_does_not_finish_continues_with_incomplete_cholesky(monkeypatch, capsys, caplog):
    from pymatting import estimate_alpha_cf

    image, alpha = synth(64, 64)
    tri = refine.guidance_to_trimap((alpha > 0.5).astype(np.float32), 16)
    monkeypatch.setattr(refine, "JACOBI_MAX_ITER", 3)
    calls = []
    real = refine._ichol
    monkeypatch.setattr(refine, "_ichol", lambda m: calls.append(m.shape) or real(m))
    with caplog.at_level("DEBUG", logger="mattekit.refine"):
        out = refine.closed_form_in_band(image, tri)
    assert calls  # three Jacobi steps are far from converged: the factorisation took over
    full = estimate_alpha_cf(image.astype(np.float64), tri.astype(np.float64))
    np.testing.assert_allclose(out, full, atol=2e-3)
    assert capsys.readouterr().out == ""  # pymatting's console warnings, if any, went to the log


def test_the_solver_loads_three_pymatting_modules_without_the_whole_package():
    """pymatting's package __init__ loads every one of its numba kernels (about 1 s of a fresh
    daemon's first request); refine needs three self-contained modules. A fresh process, so that
    no earlier test has imported pymatting. A later `import pymatting` reuses the same modules."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys; from mattekit.engine import warm_up; warm_up(); "
             "print(sorted(m for m in sys.modules if m.startswith('pymatting'))); "
             "import pymatting; "
             "print(pymatting.cg is sys.modules['pymatting.solver.cg'].cg, "
             "pymatting.cf_laplacian is sys.modules['pymatting.laplacian.cf_laplacian'].cf_laplacian, "
             "pymatting.ichol is sys.modules['pymatting.preconditioner.ichol'].ichol)")
    src = str(Path(__file__).resolve().parents[1] / "backend")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": src})
    assert run.returncode == 0, run.stderr
    loaded, reused = run.stdout.strip().splitlines()[-2:]
    assert loaded == str(["pymatting.laplacian.cf_laplacian", "pymatting.preconditioner.ichol", "pymatting.solver.cg"])
    assert reused == "True True True"
