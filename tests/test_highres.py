"""High-resolution paths at small sizes: band-limited foreground, tiling through the engine, precision."""

import numpy as np

from mattekit import config, foreground
from mattekit import protocol as P
from mattekit.engine import Engine
from synth import soft_disc


def synth(h, w, radius, seed=0, ramp=5.0):
    return soft_disc(h, w, radius, seed=seed, ramp=ramp)


def test_band_limited_foreground_converges_to_the_full_frame_solution_inside_the_band():
    from pymatting import estimate_foreground_ml

    image, alpha, fg_true = synth(200, 240, 60)
    soft = foreground.soft_region(alpha)
    assert soft.mean() < 0.2  # most of the frame is skipped: a real test of the restriction
    # Red-black and pymatting's raster order differ after a few iterations but share the fixed point:
    # with 10 per level the band-limited solve is within mean |dF| < 0.002 of the full frame's.
    est = foreground.estimate_foreground(image, alpha, iterations=10)
    full = estimate_foreground_ml(image, alpha, n_big_iterations=10)
    diff = np.abs(est - full)[soft]
    assert diff.mean() < 0.002
    assert (alpha[soft][:, None] * diff).max() < 0.01
    # Quality at pymatting's default 2: F-MSE over alpha > 0 no worse than full-frame (exact where alpha = 1).
    est = foreground.estimate_foreground(image, alpha)
    full = estimate_foreground_ml(image, alpha)
    cov = alpha > 0
    assert ((est - fg_true)[cov] ** 2).mean() <= ((full - fg_true)[cov] ** 2).mean()
    opaque = alpha >= 1
    np.testing.assert_array_equal(est[opaque], image[opaque])


def test_band_limited_foreground_does_not_depend_on_the_number_of_threads():
    image, alpha, _ = synth(300, 320, 90)  # every level above PARALLEL_MIN_PX is split
    assert alpha.size > foreground.PARALLEL_MIN_PX
    one = foreground.estimate_foreground_ml_band(image, alpha, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(foreground.estimate_foreground_ml_band(image, alpha, threads=threads), one)


def test_band_kernel_iterates_only_near_soft_pixels():
    """Pixels far from the band keep their exact value: F = image where alpha = 1."""
    image, alpha, _ = synth(96, 96, 25)
    raw = foreground.estimate_foreground_ml_band(image, alpha, reach=2)
    opaque_far = alpha >= 1
    from scipy.ndimage import binary_dilation

    opaque_far &= ~binary_dilation(alpha > 0.5 * foreground.ALPHA_EPS, structure=np.ones((9, 9), bool))
    np.testing.assert_array_equal(raw[opaque_far], image[opaque_far])


def test_tiled_foreground_matches_whole_frame():
    image, alpha, _ = synth(160, 200, 50)
    soft = foreground.soft_region(alpha)
    whole = foreground.estimate_foreground(image, alpha)
    seen = []
    tiled = foreground.estimate_foreground(image, alpha, tile=64, margin=24, threads=2, progress=seen.append)
    assert len(seen) > 4 and seen[-1] == 1.0
    assert np.abs(tiled - whole)[soft].mean() < 0.02


class FakeRuntime:
    """A 'network' that is a smooth function of position plus per-call noise: tiles must not show."""

    def __init__(self, truth):
        self.truth = truth
        self.calls = 0
        self.rng = np.random.default_rng(0)

    def predict(self, image, guidance=None, alpha=None):
        self.calls += 1
        y0, x0 = image[0, 0, :2].round().astype(int)  # the image encodes its own coordinates
        h, w = image.shape[:2]
        return self.truth[y0 : y0 + h, x0 : x0 + w] + self.rng.normal(0, 0.01, (h, w)).astype(np.float32)


def test_engine_tiles_blend_without_seams(monkeypatch):
    monkeypatch.setattr(config, "TILE_PX", 96)
    monkeypatch.setattr(config, "TILE_OVERLAP_PX", 16)
    h, w = 260, 330
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    truth = ((np.sin(xx / 37) * np.cos(yy / 23) + 1) / 2).astype(np.float32)
    image = np.stack([yy, xx, 0 * xx], -1)  # coordinates, read back by the fake runtime
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:20] = 0  # a known strip: tiles that only see it are skipped
    eng = Engine(learned=False)
    fake = FakeRuntime(truth)
    eng._runtimes["fake@cpu"] = fake
    out = eng.solve_band(image, trimap, trimap, "fake", {"device": "cpu"}, lambda f: None)
    band = trimap == 0.5
    err = np.abs(out - truth)
    from mattekit import tiling

    tiles = tiling.grid_tiles(h, w, 96, 16)
    seams = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in tiles:
        seams[[y0, y1 - 1], x0:x1] = True
        seams[y0:y1, [x0, x1 - 1]] = True
    assert fake.calls == len(tiling.tiles_touching(band, tiles)) > 6
    assert err[seams & band].mean() <= 1.1 * err[~seams & band].mean()
    assert np.array_equal(out[~band], trimap[~band])


def _run(op, inputs, specs, **params):
    p = P.check_job(op, params, specs)
    return Engine(learned=False).run(op, p, inputs, specs, lambda *a, **k: None)


def test_u16_alpha_keeps_more_than_256_levels_through_the_engine():
    image, alpha, _ = synth(120, 140, 40, ramp=30.0)  # a wide soft edge: many distinct alpha values
    img16 = (image * 65535).astype(np.uint16)
    a16 = (alpha * 65535).astype(np.uint16)[..., None]
    specs = [P.BufferSpec("image", 140, 120, "u16", "RGB"), P.BufferSpec("guidance", 140, 120, "u16", "Y")]
    out = _run("refine", {"image": img16, "guidance": a16}, specs, band_px=40, outputs=["alpha"])
    spec, arr = out.buffers["alpha"]
    assert spec.dtype == "u16" and arr.dtype == np.uint16
    assert len(np.unique(arr)) > 256


def test_f32_foreground_with_amount_zero_is_the_input_exactly():
    image, alpha, _ = synth(64, 80, 20)
    image = image + np.float32(1e-7) * np.arange(3, dtype=np.float32)  # values no 8- or 16-bit grid holds
    specs = [P.BufferSpec("image", 80, 64, "f32", "RGB"), P.BufferSpec("alpha", 80, 64, "f32", "Y")]
    out = _run("decontaminate", {"image": image, "alpha": alpha[..., None]}, specs, amount=0.0)
    spec, fg = out.buffers["foreground"]
    assert spec.dtype == "f32"
    np.testing.assert_array_equal(fg[..., :3], image)
    np.testing.assert_array_equal(fg[..., 3], alpha)
