import csv
import json

import cv2
import numpy as np
import pytest

from mattekit_training import evaluate as E
from mattekit_training.datasets import Sample


def _disc_alpha(h, w, cy, cx, r, soft=3.0):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.clip((r - np.hypot(yy - cy, xx - cx)) / soft + 0.5, 0, 1).astype(np.float32)


def _write(path, arr):
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


@pytest.fixture
def alpha_folder(tmp_path):
    """image/ + alpha/: four 64x64 composites of a soft disc, smooth fg over smooth bg."""
    root = tmp_path / "tiny"
    (root / "image").mkdir(parents=True)
    (root / "alpha").mkdir()
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 64
    for i in range(4):
        a = _disc_alpha(64, 64, 28 + 2 * i, 30 + i, 14 + 2 * i)
        fg = np.stack([0.9 - 0.2 * yy, 0.4 + 0.1 * xx, 0.1 + 0.05 * i + 0 * xx], -1)
        bg = np.stack([0.1 + 0.2 * xx, 0.3 + 0 * xx, 0.8 - 0.3 * yy], -1)
        img = a[..., None] * fg + (1 - a[..., None]) * bg
        _write(root / "image" / f"s{i}.png", np.round(img * 255).astype(np.uint8))
        _write(root / "alpha" / f"s{i}.png", np.round(a * 255).astype(np.uint8))
    return root


def test_harness_writes_sane_reports(alpha_folder, tmp_path):
    out = tmp_path / "out"
    assert E.main(["--pipeline", "classical", "--data", str(alpha_folder), "--guidance", "tight",
                   "--keep", "2", "--quiet", "-o", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["n"] == 4 and len(rep["images"]) == 4 and rep["ground_truth"] == "alpha"
    for k in ("sad", "mse", "mad", "grad", "conn", "sad_t", "mse_t", "sad_fg", "sad_bg"):
        assert np.isfinite(rep["mean"][k]) and rep["mean"][k] >= 0
    assert rep["mean"]["sad"] > 0
    assert rep["mean"]["sad"] == pytest.approx(np.mean([r["sad"] for r in rep["images"]]))
    assert rep["mean_scaled"]["sad"] == pytest.approx(rep["mean"]["sad"] / 1000)
    # the classical refine beats the hard guidance it started from
    base = tmp_path / "base"
    E.main(["--pipeline", "guidance", "--data", str(alpha_folder), "--guidance", "tight", "--quiet", "-o", str(base)])
    ref = json.loads((base / "report.json").read_text())
    assert rep["mean"]["sad"] < 0.5 * ref["mean"]["sad"]
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["s0", "s1", "s2", "s3", "MEAN"]
    assert float(rows[-1]["sad"]) == pytest.approx(rep["mean"]["sad"], rel=1e-4)
    sheet = cv2.imread(str(out / "contact_worst_best.png"))
    from mattekit_training.contact import contact_sheet

    # 2 worst + 2 best rows of image, guidance, prediction, GT, error
    assert sheet.shape == contact_sheet([[("", None)] * 5] * 4, thumb=224).shape


def test_limit_and_trimap_and_mask_scoring(tmp_path):
    root = tmp_path / "tri"
    (root / "image").mkdir(parents=True)
    (root / "trimap").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        a = _disc_alpha(48, 48, 24, 24, 12)
        img = np.clip(a[..., None] * [0.9, 0.2, 0.2] + (1 - a[..., None]) * [0.1, 0.6, 0.9]
                      + rng.normal(0, 0.01, (48, 48, 3)), 0, 1)
        tri = np.where(a >= 1, 255, np.where(a <= 0, 0, 128)).astype(np.uint8)
        tri = cv2.dilate((tri == 128).astype(np.uint8), np.ones((5, 5), np.uint8)) * 128 + \
            ((tri == 255) & (cv2.dilate((tri == 128).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0)) * 255
        _write(root / "image" / f"t{i}.png", np.round(img * 255).astype(np.uint8))
        _write(root / "trimap" / f"t{i}.png", tri.astype(np.uint8))
    rep = E.evaluate("classical", str(root), guidance="trimap", limit=2, outdir=tmp_path / "o", progress=False)
    assert rep["n"] == 2 and rep["ground_truth"] == "trimap"
    assert rep["mean"]["known_agreement"] == 1.0  # known pixels are copied from the trimap
    assert rep["mean"]["sad_known"] == 0.0

    s = Sample(name="m", image=np.zeros((20, 20, 3), np.float32), mask=np.zeros((20, 20), np.float32))
    s.mask[5:15, 5:15] = 1
    m, kind, err = E.score_alpha(s.mask.copy(), s)
    assert kind == "mask" and m["iou"] == 1.0 and err.max() == 0


def test_guidance_kinds_behave():
    a = _disc_alpha(80, 80, 40, 40, 20)
    s = Sample(name="g", image=np.zeros((80, 80, 3), np.float32), alpha=a)
    ref = E.make_guidance("tight", s)
    assert set(np.unique(ref)) <= {0.0, 1.0}
    area = ref.sum()
    assert E.make_guidance("erode:5", s).sum() < area < E.make_guidance("dilate:5", s).sum()
    blur = E.make_guidance("blur:4", s)
    assert ((blur > 0.05) & (blur < 0.95)).sum() > 0
    las = E.make_guidance("lasso", s)
    assert (las[ref > 0] == 1).all() and las.sum() > area
    assert E.make_guidance("none", s) is None
    assert E.make_guidance("auto", s).sum() == area  # no trimap: tight
    with pytest.raises(ValueError):
        E.make_guidance("trimap", s)
    with pytest.raises(ValueError):
        E.make_guidance("sideways", s)


def test_foreground_task(tmp_path):
    root = tmp_path / "adobe"
    for d in ("fg", "alpha", "bg"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        a = _disc_alpha(48, 48, 24, 24, 12, soft=6)
        fg = np.full((48, 48, 3), [0.9, 0.3, 0.1]) + rng.normal(0, 0.01, (48, 48, 3))
        bg = np.full((48, 48, 3), [0.1, 0.5, 0.9])
        _write(root / "fg" / f"f{i}.png", np.round(np.clip(fg, 0, 1) * 255).astype(np.uint8))
        _write(root / "bg" / f"f{i}.png", np.round(bg * 255).astype(np.uint8))
        _write(root / "alpha" / f"f{i}.png", np.round(a * 255).astype(np.uint8))
    est = E.evaluate("classical", str(root), task="foreground", outdir=tmp_path / "fo", progress=False)
    raw = E.evaluate("image", str(root), task="foreground", outdir=tmp_path / "fi", progress=False)
    assert est["n"] == 2 and (tmp_path / "fo" / "contact_worst_best.png").exists()
    # estimating F beats keeping the contaminated image colours
    assert est["mean"]["fg_mse"] < 0.5 * raw["mean"]["fg_mse"]
    assert est["mean"]["afg_sad"] < raw["mean"]["afg_sad"]


def test_band_pipeline_refines_only_inside_the_guidance_band(mk_env):
    """`band:NAME` scores a guided model as the daemon's refine runs it: the network inside the
    guidance's unknown band, the guidance untouched outside it."""
    import torch

    from mattekit import refine
    from mattekit.models import create_model, prn
    from mattekit.models.checkpoints import save_weights

    torch.manual_seed(0)
    save_weights(create_model("prn", prn.light_config()).eval(), name="test-band-prn",
                 meta={"licence": "test", "task": "guided"})
    rng = np.random.default_rng(0)
    image = rng.random((96, 128, 3)).astype(np.float32)
    guidance = np.zeros((96, 128), np.float32)
    guidance[20:80, 30:100] = 1
    fn = E.get_pipeline("band:test-band-prn", device="cpu", band_px=12)
    alpha = fn(image, guidance)
    band = refine.unknown_region(refine.guidance_to_trimap(guidance, 12))
    assert alpha.shape == guidance.shape
    assert np.array_equal(alpha[~band], guidance[~band])
    bare = E.get_pipeline("model:test-band-prn", device="cpu")(image, guidance)
    np.testing.assert_allclose(alpha[band], bare[band], atol=1e-5)
    assert np.abs(bare[~band] - guidance[~band]).max() > 0.01  # the bare net does change known pixels
