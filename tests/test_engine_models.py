"""Learned models wired through the real daemon: select_subject, refine, decontaminate.

Weights here are randomly initialised (quality is not the point): the test proves that
each registered architecture is found, loaded, run band-limited at full resolution on
CPU, and reported in the result header.
"""

import numpy as np
import pytest
import torch

from mattekit import config, tiling
from mattekit import protocol as P
from mattekit.client import Client
from mattekit.engine import Engine, uncertain_trimap
from mattekit.models import create_model
from mattekit.models.checkpoints import save_weights


def _register(name, arch, config=None, **cfg):
    torch.manual_seed(0)
    model = create_model(arch, config, **cfg).eval()
    save_weights(model, name=name, meta={"licence": "test", "task": model.task})


@pytest.fixture
def model_daemon(mk_env, start_daemon):
    from mattekit.models import gfm, prn, fgnet

    _register("test-gfm", "gfm", backbone="mobilenetv2", light_width=32)
    _register("test-prn", "prn", prn.light_config())
    _register("test-fgnet", "fgnet", fgnet.light_config())
    d = start_daemon(engine=Engine())
    c = Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=600)
    yield d, c
    c.close()


def _image(h=150, w=210):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:h, :w]
    disc = (np.hypot(yy - h / 2, xx - w / 2) < h / 3).astype(np.float32)
    img = 0.2 + 0.6 * disc[..., None] * np.array([0.9, 0.4, 0.2]) + rng.normal(0, 0.02, (h, w, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), disc


def test_hello_lists_installed_models(model_daemon):
    _, c = model_daemon
    models = c.hello()["models"]
    assert models["trimap_free"] == ["test-gfm"]
    assert "test-prn" in models["guided"] and "test-fgnet" in models["foreground"]


def test_select_subject_runs_subject_model_then_refiner_with_preview(model_daemon):
    _, c = model_daemon
    img, _ = _image()
    previews = []

    def progress(stage, frac, header):
        if stage == "preview":
            previews.append(header["buffers"][0])

    res = c.run_job("select_subject", {"image": (img, "RGB", "srgb")}, {"outputs": ["alpha", "foreground"], "preview": True}, progress=progress)
    assert res.model == "test-gfm+test-prn" and res.header["foreground_model"] == "test-fgnet"
    assert res.alpha.shape == img.shape[:2] and res.alpha.dtype == np.uint8
    assert res.foreground.shape == img.shape[:2] + (4,)
    assert previews and previews[0]["order"] == "Y"


def test_refine_uses_prn_and_keeps_confident_guidance(model_daemon):
    _, c = model_daemon
    img, disc = _image()
    res = c.refine(img, (disc * 255).astype(np.uint8), band_px=10)
    assert res.model == "test-prn"
    a = res.alpha
    # Far from the edge the user's selection is kept exactly.
    from scipy.ndimage import distance_transform_edt

    far = np.minimum(distance_transform_edt(disc), distance_transform_edt(1 - disc)) > 8
    assert np.array_equal(a[far], (disc[far] * 255).astype(np.uint8))


def test_an_image_too_thin_for_a_network_is_refined_classically_and_says_so(model_daemon):
    from mattekit import config

    _, c = model_daemon
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 5000, 3), dtype=np.uint8)  # a strip: the PRN would pad it to 64x
    guidance = np.zeros((3, 5000), np.uint8)
    guidance[:, 2500:] = 255
    res = c.refine(img, guidance, band_px=10, outputs=["alpha", "foreground"])
    assert res.model == "classical" and res.header["foreground_model"] == "classical"
    assert any(f"under {config.NET_MIN_SIDE} px" in w for w in res.header["warnings"])
    assert res.alpha.shape == (3, 5000) and res.alpha[:, :2490].max() == 0 and res.alpha[:, 2510:].min() == 255


def test_classical_is_still_selectable(model_daemon):
    _, c = model_daemon
    img, disc = _image()
    res = c.refine(img, (disc * 255).astype(np.uint8), band_px=10, model="classical", outputs=["alpha", "foreground"])
    assert res.model == "classical" and res.header["foreground_model"] == "classical"


def test_unknown_model_name_is_no_model(model_daemon):
    _, c = model_daemon
    img, disc = _image()
    from mattekit.client import MatteError

    with pytest.raises(MatteError) as e:
        c.refine(img, (disc * 255).astype(np.uint8), model="does-not-exist")
    assert e.value.code == P.E_NO_MODEL


def test_uncertain_trimap_is_wide_on_soft_edges_narrow_on_hard():
    x = np.arange(200, dtype=np.float32)
    hard = (x >= 50).astype(np.float32)
    soft = np.clip((x - 130) / 40 + 0.5, 0, 1)  # a 40 px ramp centred at 130
    alpha = np.repeat(np.stack([hard, soft]), 32, axis=0)  # rows 0-31 hard, 32-63 soft
    tri = uncertain_trimap(alpha, radius=3)
    hard_width = (tri[10] == 0.5).sum()
    soft_width = (tri[50] == 0.5).sum()
    assert 4 <= hard_width <= 8 and soft_width >= 40


def test_tiles_blend_without_seams():
    """A smooth function evaluated per tile and cross-faded equals the function itself."""
    h, w = 300, 470
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    truth = (np.sin(xx / 37) * np.cos(yy / 23) + 1) / 2
    noise = np.random.default_rng(0).normal(0, 0.01, (h, w)).astype(np.float32)

    def fn(box):
        y0, y1, x0, x1 = box
        return truth[y0:y1, x0:x1] + noise[y0:y1, x0:x1]

    band = np.ones((h, w), bool)
    out = tiling.run_tiled(fn, (h, w), band, np.zeros((h, w), np.float32), tile=128, overlap=24)
    err = np.abs(out - truth)
    tiles = tiling.grid_tiles(h, w, 128, 24)
    seams = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in tiles:
        for v in (y0, y1 - 1):
            seams[v, x0:x1] = True
        for u in (x0, x1 - 1):
            seams[y0:y1, u] = True
    assert len(tiles) > 6
    assert err[seams].mean() <= 1.1 * err[~seams].mean()


def test_only_tiles_touching_the_band_run():
    calls = []
    band = np.zeros((400, 400), bool)
    band[10:20, 10:20] = True

    def fn(box):
        calls.append(box)
        return np.ones((box[1] - box[0], box[3] - box[2]), np.float32)

    out = tiling.run_tiled(fn, (400, 400), band, np.zeros((400, 400), np.float32), tile=128, overlap=16)
    assert len(calls) == 1 and out[15, 15] == 1 and out[300, 300] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_gpu_falls_back_to_cpu_and_says_so(model_daemon):
    _, c = model_daemon
    img, disc = _image()
    res = c.refine(img, (disc * 255).astype(np.uint8), band_px=10, device="cuda")
    assert res.model == "test-prn"
    assert any("CUDA" in w and "CPU" in w for w in res.header.get("warnings", []))


def test_portrait_prefers_people_models_and_general_avoids_them(mk_env):
    from mattekit.engine import Engine

    _register("a-general", "gfm", backbone="mobilenetv2", light_width=16)
    _register("b-people", "modnet", hr_channels=8)
    e = Engine()
    assert e.choose_method("trimap_free", "portrait") == "b-people"
    assert e.choose_method("trimap_free", "general") == "a-general"
    assert e.choose_method("trimap_free", "auto") == "a-general"


def test_auto_skips_weights_marked_unfit_but_they_stay_selectable(mk_env):
    from mattekit.engine import Engine
    from mattekit.models import prn

    _register("weak-prn", "prn", prn.light_config())
    _register("weak-subject", "gfm", backbone="mobilenetv2", light_width=16)
    from mattekit.models.checkpoints import read_registry, _write_registry
    from mattekit import config as cfg

    reg = read_registry(cfg.user_weights_dir())
    for name in reg:
        reg[name]["auto"] = False
    _write_registry(cfg.user_weights_dir(), reg)
    e = Engine()
    assert e.choose_method("guided", "auto") == "classical"  # classical beats the weak refiner
    assert e.choose_method("guided", "weak-prn") == "weak-prn"  # still there by name
    assert e.choose_method("trimap_free", "auto") == "weak-subject"  # better than no subject model at all


def test_select_subject_inside_a_selection_stays_inside_it(model_daemon):
    _, c = model_daemon
    img, _ = _image()
    h, w = img.shape[:2]
    sel = np.zeros((h, w), np.uint8)
    sel[:, : w // 2] = 255  # only the left half
    res = c.run_job("select_subject", {"image": (img, "RGB", "srgb"), "guidance": (sel, "Y", "srgb")}, {"band_px": 10})
    assert not res.alpha[:, w // 2 + 6:].any()  # nothing beyond the selection grown by half the band


def test_residual_foreground_net_gets_the_full_frame_estimate(mk_env, start_daemon):
    """A colour net that corrects the multi-level estimate, untrained (zero correction), must give
    the full-frame classical answer through the daemon: the engine hands it one full-frame
    estimate, so the tiles (forced small here) change nothing."""
    from scipy.ndimage import gaussian_filter

    from mattekit import foreground
    from mattekit.models import fgnet

    _register("test-fgnet-residual", "fgnet", fgnet.residual_config())
    d = start_daemon(engine=Engine())
    img, disc = _image(130, 170)
    alpha = (np.clip(gaussian_filter(disc, 4), 0, 1) * 255).astype(np.uint8)
    with Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=600) as c, \
            pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "TILE_PX", 64)
        mp.setattr(config, "TILE_OVERLAP_PX", 16)
        learned = c.decontaminate(img, alpha, outputs=["foreground"])
    assert learned.header["foreground_model"] == "test-fgnet-residual"
    want = foreground.classical_foreground(img / np.float32(255), alpha / np.float32(255))
    soft = foreground.soft_region(alpha / 255.0)
    diff = np.abs(learned.foreground[..., :3].astype(int) - np.round(want * 255).astype(int))[soft]
    assert diff.max() <= 1, diff.max()


def test_capabilities_are_read_without_importing_torch(mk_env):
    """`hello` and job planning read the weights index only: importing torch (~2 s) would delay the
    daemon's first job. A CPU-only torch build is told from its package metadata."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mattekit.engine import _cpu_only_torch

    code = ("import sys; from mattekit.engine import Engine; caps = Engine().capabilities(); "
            "print('torch' in sys.modules, caps['devices'], sorted(caps['models']))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "backend"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("['foreground', 'guided', 'trimap_free']")
    if _cpu_only_torch():
        assert out.stdout.startswith("False ['cpu'] ")


def test_a_job_reads_the_weights_registry_once_and_a_new_model_is_seen_by_the_next_job(mk_env, monkeypatch):
    """Model choice is one snapshot per job (mattekit.catalog): a refine asks for its refiner and its
    colour estimator, but the registry is read once; weights registered between jobs are used."""
    from mattekit import protocol as P
    from mattekit import weights_index
    from mattekit.engine import Engine
    from mattekit.models import prn

    reads = []
    real = weights_index.list_weights
    monkeypatch.setattr(weights_index, "list_weights", lambda: reads.append(1) or real())
    img, disc = _image()
    si, a = P.buffer_from_array("image", img)
    sg, g = P.buffer_from_array("guidance", (disc * 255).astype(np.uint8), order="Y")
    params = P.check_job("refine", {"band_px": 6, "outputs": ["alpha", "foreground"]}, [si, sg])
    e = Engine()
    out = e.run("refine", params, {"image": a, "guidance": g}, [si, sg], lambda *a, **k: None)
    assert out.meta["model"] == "classical" and len(reads) == 1
    _register("late-prn", "prn", prn.light_config())
    out = e.run("refine", params, {"image": a, "guidance": g}, [si, sg], lambda *a, **k: None)
    assert out.meta["model"] == "late-prn" and len(reads) == 2
