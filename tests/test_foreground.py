import numpy as np
import pytest

from mattekit import config, foreground, imageops
from synth import soft_disc


def synth(h, w, radius, seed=0):
    return soft_disc(h, w, radius, seed=seed, centre=(h / 3, w / 3))


def test_region_restricted_estimate_matches_full_frame():
    from pymatting import estimate_foreground_ml

    image, alpha, fg_true = synth(160, 160, 20)
    seen = []
    est = foreground.estimate_foreground(image, alpha, margin=16, progress=seen.append)
    assert seen[-1] == 1.0
    assert est.shape == image.shape and est.dtype == np.float32
    full = estimate_foreground_ml(image, alpha)
    soft = foreground.soft_region(alpha)
    # the crop is much smaller than the frame, so this is a real test of the restriction
    ys, xs = np.nonzero(soft)
    assert (ys.max() - ys.min() + 33) * (xs.max() - xs.min() + 33) < 0.5 * alpha.size
    diff = np.abs(est - full)[soft]
    # Stated tolerance: mean |dF| < 0.02 and alpha-weighted max |dF| < 0.05 in the soft band
    # (below the estimator's own error against the true F on this noisy background, ~0.025).
    assert diff.mean() < 0.02
    assert (alpha[soft][:, None] * diff).max() < 0.05
    # as good as full-frame against the truth, and better than doing nothing
    err_est = np.abs(est - fg_true)[soft].mean()
    assert err_est < 1.2 * np.abs(full - fg_true)[soft].mean()
    assert err_est < 0.5 * np.abs(image - fg_true)[soft].mean()
    opaque = alpha >= 1
    np.testing.assert_array_equal(est[opaque], image[opaque])


def test_hard_alpha_needs_no_solve():
    image, alpha, _ = synth(32, 32, 8)
    hard = (alpha > 0.5).astype(np.float32)
    np.testing.assert_array_equal(foreground.estimate_foreground(image, hard), image)


def test_progress_can_cancel():
    image, alpha, _ = synth(64, 64, 10)

    def cancel(frac):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        foreground.estimate_foreground(image, alpha, progress=cancel)


def test_decontaminate_amounts():
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 3)).astype(np.float32)
    fg = rng.random((8, 8, 3)).astype(np.float32)
    alpha = rng.random((8, 8)).astype(np.float32)
    alpha[0] = 0.0
    out0 = foreground.decontaminate(image, alpha, fg, 0.0)
    assert out0.shape == (8, 8, 4) and out0.dtype == np.float32
    np.testing.assert_array_equal(out0[..., :3], image)
    np.testing.assert_array_equal(out0[..., 3], alpha)
    out1 = foreground.decontaminate(image, alpha, fg, 1.0)
    np.testing.assert_allclose(out1[1:, :, :3], fg[1:], atol=1e-6)
    np.testing.assert_array_equal(out1[0, :, :3], image[0])  # alpha == 0 keeps the image
    half = foreground.decontaminate(image, alpha, fg, 0.5)
    np.testing.assert_allclose(half[1:, :, :3], (image[1:] + fg[1:]) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        foreground.decontaminate(image, alpha, fg, 1.5)


def test_daemon_iterations_get_closer_to_the_truth_than_pymatting_defaults():
    """`classical_foreground` iterates the same solver longer (config.FOREGROUND_ITERATIONS):
    on a composite with exact F its colour error is lower than with pymatting's 2 iterations."""
    from mattekit import config

    assert config.FOREGROUND_ITERATIONS > 2
    errs = []
    for seed in range(3):
        image, alpha, fg_true = soft_disc(120, 140, 30, seed=seed, ramp=25.0)
        soft = foreground.soft_region(alpha)
        daemon = foreground.classical_foreground(image, alpha)
        default = foreground.estimate_foreground(image, alpha)
        errs.append((np.square(daemon - fg_true)[soft].mean(), np.square(default - fg_true)[soft].mean()))
    ours, base = np.mean(errs, axis=0)
    assert ours < base, errs


def test_iterations_shrink_for_huge_soft_regions(monkeypatch):
    from mattekit import config

    alpha = np.zeros((100, 100), np.float32)
    alpha[:, :10] = 0.5  # 1000 soft pixels
    assert foreground.classical_iterations(alpha) == config.FOREGROUND_ITERATIONS
    monkeypatch.setattr(config, "FOREGROUND_ITERATION_BUDGET", 5000)
    assert foreground.classical_iterations(alpha) == 5
    monkeypatch.setattr(config, "FOREGROUND_ITERATION_BUDGET", 10)
    assert foreground.classical_iterations(alpha) == 2


def test_a_long_solve_reports_progress_while_it_runs_and_stops_when_cancelled(monkeypatch):
    import threading
    import time

    monkeypatch.setattr(foreground, "PROGRESS_INTERVAL_S", 0.001)
    image, alpha, _ = soft_disc(900, 900, 300, ramp=150.0)  # a wide soft region: a solve of ~1 s
    foreground.estimate_foreground_ml_band(image[:64, :64], alpha[:64, :64])  # compiled before timing
    seen = []
    t0 = time.perf_counter()
    foreground.estimate_foreground_ml_band(image, alpha, progress=seen.append)
    full = time.perf_counter() - t0
    assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[0] < 1

    class Cancelled(Exception):
        pass

    def cancel(frac):
        raise Cancelled

    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        foreground.estimate_foreground_ml_band(image, alpha, progress=cancel)
    # the kernel saw the cancel at its next row and returned before the exception propagated
    assert time.perf_counter() - t0 < 0.5 * full
    assert not any(t.name == "foreground" for t in threading.enumerate())


@pytest.mark.parametrize("amount", [1.0, 0.6, 0.0])
def test_decontaminating_in_one_buffer_equals_estimating_then_blending(amount):
    image, alpha, _ = synth(300, 320, 90)  # large enough that every pass is split over threads
    alpha[:5] = 0.0  # some fully transparent rows: the image's colour is kept there
    one = foreground.classical_decontaminate(image, alpha, amount)
    two = foreground.decontaminate(image, alpha, foreground.classical_foreground(image, alpha), amount)
    assert one.shape == (300, 320, 4) and one.dtype == np.float32
    np.testing.assert_allclose(one, two, atol=1e-6)
    np.testing.assert_array_equal(one[..., 3], alpha)
    if amount == 0.0:
        np.testing.assert_array_equal(one[..., :3], image)  # amount 0 keeps the photo's colours bit for bit
    else:
        assert np.abs(one[..., :3] - image)[foreground.soft_region(alpha)].max() > 0.01  # edge colours changed


@pytest.mark.parametrize("amount", [1.0, 0.6, 0.0])
def test_a_foreground_written_straight_into_the_wire_buffer_equals_the_float_path_encoded(amount):
    """The daemon's integer fast path: bit for bit what the float RGBA would encode to, in both
    channel orders and depths, with and without a layer alpha; a frame large enough (> dense_px)
    that the estimate is kept only near the band and the rest is never read."""
    image, alpha, _ = synth(560, 600, 160)
    alpha[:7] = 0.0
    alpha[-7:] = 1.0
    assert alpha.size > (1 << 18)
    layer = np.random.default_rng(3).random(alpha.shape, dtype=np.float32)
    rgba = foreground.classical_decontaminate(image, alpha, amount)
    for la in (None, layer):
        ref = rgba.copy()
        if la is not None:
            ref[..., 3] *= la
        for dtype in (np.uint8, np.uint16):
            want = imageops.from_float(ref, dtype)
            for bgr in (False, True):
                got = foreground.classical_decontaminate_encoded(image, alpha, amount, dtype, bgr=bgr, layer_alpha=la)
                assert got.dtype == dtype and got.shape == (560, 600, 4)
                np.testing.assert_array_equal(got, want[..., [2, 1, 0, 3]] if bgr else want)


def test_the_wire_s_own_pixels_give_the_decoded_image_s_foreground_bit_for_bit():
    """The daemon's decontaminate reads the wire's 8- or 16-bit pixels (RGB, or a view of RGBA or
    BGRA) instead of a decoded float image: the same answer, on a frame above dense_px."""
    from mattekit import codec
    from mattekit import protocol as P

    image, alpha, _ = synth(560, 600, 160)
    alpha[:, :4] = 0.4  # soft pixels on the frame's edge: the stencil's clamp
    for dtype, code in ((np.uint8, "u8"), (np.uint16, "u16")):
        rgba = imageops.from_float(np.dstack([image, alpha]), dtype)
        for order in ("RGB", "RGBA", "BGRA"):
            wire = {"RGB": np.ascontiguousarray(rgba[..., :3]), "RGBA": rgba, "BGRA": np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])}[order]
            spec = P.BufferSpec("image", 600, 560, code, order, "srgb")
            decoded, _ = codec.decode_image(wire, spec)
            want = foreground.classical_decontaminate_encoded(decoded, alpha, 0.7, dtype, bgr=order == "BGRA")
            got = foreground.classical_decontaminate_encoded(codec.wire_rgb(wire, spec), alpha, 0.7, dtype, bgr=order == "BGRA")
            np.testing.assert_array_equal(got, want)
            assert np.abs(got[..., :3].astype(int) - wire[..., :3])[foreground.soft_region(alpha)].max() > 0  # colours were estimated
        np.testing.assert_array_equal(foreground.estimate_foreground_ml_band(rgba[..., :3], alpha),
                                      foreground.estimate_foreground_ml_band(imageops.to_float(rgba[..., :3]), alpha))


@pytest.mark.parametrize("iterations", [1, 2])
def test_the_finest_level_s_band_gives_every_soft_pixel_the_whole_level_s_answer(iterations):
    """At the finest level only the pixels within 2 x iterations (L1) of a soft pixel are kept and
    iterated, packed: each soft pixel's answer is bit for bit what iterating the whole level gives
    (the coarser levels solved alike, whole), with soft pixels on the frame's edges and in holes."""
    image, alpha, _ = synth(300, 320, 90)
    alpha[:, :2] = 0.3
    alpha[-3:, :] = 0.6
    alpha[150:154, 40:44] = 0.5  # a tiny island: its band is a few runs
    n = alpha.size
    soft = (alpha > 0) & (alpha < 1 - foreground.ALPHA_EPS)  # what the solver estimates
    band = foreground.estimate_foreground_ml_band(image, alpha, dense_px=n - 1, n_big_iterations=iterations)
    whole = foreground.estimate_foreground_ml_band(image, alpha, dense_px=n, n_big_iterations=iterations)
    np.testing.assert_array_equal(band[soft], whole[soft])
    np.testing.assert_array_equal(band[~soft], image[~soft])
    # ... and the cut is real: iterating a band one step too narrow changes the answer.
    narrow = foreground.estimate_foreground_ml_band(image, alpha, dense_px=n - 1, n_big_iterations=iterations, reach=2 * iterations - 1)
    assert not np.array_equal(narrow[soft], whole[soft])


def test_the_direct_path_spends_the_float_path_s_iteration_budget_when_alpha_barely_covers_pixels():
    """Alpha in (0, eps] (a 16-bit or float matte's faint haze) is estimated by both paths but not
    counted against the iteration budget (`classical_iterations`): here it would tip 10 iterations to 9."""
    image, alpha, _ = synth(600, 600, 160)
    soft = foreground.soft_region(alpha)
    haze = ~soft & (alpha < 0.5)
    budget = config.FOREGROUND_ITERATION_BUDGET
    n_soft = int(soft.sum())
    assert budget // n_soft >= 10 > budget // (n_soft + int(haze.sum()))  # the haze would cross a step
    alpha = np.where(haze, np.float32(foreground.ALPHA_EPS / 2), alpha).astype(np.float32)
    want = imageops.from_float(foreground.classical_decontaminate(image, alpha, 1.0), np.uint16)
    np.testing.assert_array_equal(foreground.classical_decontaminate_encoded(image, alpha, 1.0, np.uint16), want)


def test_a_directly_encoded_foreground_without_soft_pixels_is_the_image_and_rejects_bad_arguments():
    image, alpha, _ = synth(40, 50, 12)
    hard = (alpha > 0.5).astype(np.float32)
    got = foreground.classical_decontaminate_encoded(image, hard, 1.0, np.uint8)
    np.testing.assert_array_equal(got, imageops.from_float(np.dstack([image, hard]), np.uint8))
    with pytest.raises(TypeError, match="float32"):
        foreground.classical_decontaminate_encoded(image, alpha, 1.0, np.float32)
    with pytest.raises(ValueError, match="amount"):
        foreground.classical_decontaminate_encoded(image, alpha, 1.5, np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        foreground.classical_decontaminate_encoded(image, alpha[1:], 1.0, np.uint8)


def test_warm_up_compiles_every_kernel_of_the_foreground_solver():
    """No first big job may wait for numba: the band masks' kernels run only on levels above
    dense_px, which the 24 px warm-up image has none of unless it asks. A fresh process, so that
    no earlier test has compiled them already."""
    import ast
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("from mattekit.engine import warm_up; from mattekit import foreground as f; warm_up(); "
             "print({n: len(k.signatures) for n, k in f._kernels().items()})")
    src = str(Path(__file__).resolve().parents[1] / "backend")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": src})
    assert run.returncode == 0, run.stderr
    counts = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert len(counts) >= 5 and all(n >= 1 for n in counts.values()), counts
    # What a pass reads: a float image, or the wire's 8- or 16-bit pixels, RGB (C order) or within RGBA (a view).
    assert counts["sweep"] >= 5 and counts["statistics"] >= 5
    assert counts["emit"] >= 6  # ... each into an 8- or a 16-bit buffer (a float image into either)
    assert counts["finish"] >= 2  # a new array and the colour channels of an RGBA buffer
