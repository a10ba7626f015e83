"""The GIMP plug-in's pure logic (no GIMP needed): formats, rectangles, byte shuffling, params."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from mattekit import config
from mattekit import protocol as P
from mattekit.refine import default_band_px

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "gimp" / "mattekit"))
import mattekit_logic as L  # noqa: E402

COMPONENTS = ["u8", "u16", "u32", "half", "float", "double"]
TRCS = ["linear", "non-linear", "perceptual"]
NP = {"u8": np.uint8, "u16": np.uint16, "f16": np.float16, "f32": np.float32}


@pytest.mark.parametrize("comp,trc", list(itertools.product(COMPONENTS, TRCS)))
def test_pixel_format_keeps_precision_and_transfer(comp, trc):
    pf = L.pixel_format(f"{comp}-{trc}")
    assert pf.dtype in P.DTYPES and pf.itemsize == P.DTYPES[pf.dtype]
    # Never narrower than the image: 16-bit stays 16-bit, 32-bit and double go as float32.
    assert pf.itemsize >= {"u8": 1, "u16": 2, "half": 2}.get(comp, 4)
    linear = trc == "linear"
    assert pf.transfer == ("linear" if linear else "srgb")
    # Babl: ' (space TRC) and ~ (sRGB TRC) mark non-linear formats; coverage is never encoded.
    marker = {"linear": "", "non-linear": "'", "perceptual": "~"}[trc]
    assert pf.rgba.startswith(f"R{marker}G{marker}B{marker}A ") and pf.rgb == pf.rgba.replace("A ", " ", 1)
    assert pf.mask.startswith("Y ")
    # Only 8-bit non-linear images keep channels perceptual (GIMP 2.x compatibility).
    assert pf.channel == (pf.mask.replace("Y ", "Y' ") if (comp, trc) == ("u8", "non-linear") else pf.mask)
    suffix = pf.rgba.split()[-1]
    assert pf.rgb.split()[-1] == pf.mask.split()[-1] == suffix
    assert {"u8": "u8", "u16": "u16", "f16": "half", "f32": "float"}[pf.dtype] == suffix


def test_pixel_format_accepts_enum_names_and_rejects_nonsense():
    assert L.pixel_format("U16_LINEAR") == L.pixel_format("u16-linear") == L.pixel_format("GIMP_PRECISION_U16_LINEAR")
    for bad in ("u12-linear", "u8", "float-gamma", ""):
        with pytest.raises(ValueError):
            L.pixel_format(bad)


def test_rect_algebra():
    a = L.Rect(10, 20, 100, 50)
    assert a.intersect(L.Rect(0, 0, 30, 30)) == L.Rect(10, 20, 20, 10)
    assert a.intersect(L.Rect(500, 500, 5, 5)).empty
    g = a.grow(5)
    assert (g.x, g.y, g.x2, g.y2) == (a.x - 5, a.y - 5, a.x2 + 5, a.y2 + 5)
    assert a.translate(-10, -20) == L.Rect(0, 0, 100, 50)


@pytest.mark.parametrize("h,w", [(48, 64), (3000, 4000), (5, 9000), (1024, 1024)])
def test_default_band_matches_the_daemon(h, w):
    assert L.default_band_px(w, h, config.BAND_MIN_PX, config.BAND_FRACTION) == default_band_px(h, w)


def test_work_rect_covers_selection_context_inside_layer():
    layer = L.Rect(-50, 30, 2000, 1500)  # a layer offset partly outside the image
    sel = L.Rect(400, 500, 300, 200)
    r = L.work_rect(layer, sel, band_px=20)
    assert r.intersect(layer) == r  # never outside the layer
    assert r.intersect(sel) == sel  # the whole selection is sent
    assert sel.x - r.x >= 80 and r.x2 - sel.x2 >= 80  # 4 bands of context
    assert L.work_rect(layer, None, 20) == layer
    near_edge = L.work_rect(layer, L.Rect(-50, 30, 10, 10), band_px=20)
    assert (near_edge.x, near_edge.y) == (layer.x, layer.y)


@pytest.mark.parametrize("dtype", ["u8", "u16", "f16", "f32"])
def test_channel_shuffles_match_numpy(dtype):
    rng = np.random.default_rng(3)
    h, w = 7, 11
    if dtype.startswith("u"):
        rgba = rng.integers(0, np.iinfo(NP[dtype]).max, (h, w, 4), endpoint=True).astype(NP[dtype])
        plane = rng.integers(0, np.iinfo(NP[dtype]).max, (h, w), endpoint=True).astype(NP[dtype])
    else:
        rgba = rng.random((h, w, 4)).astype(NP[dtype])
        plane = rng.random((h, w)).astype(NP[dtype])
    item = P.DTYPES[dtype]
    raw = rgba.tobytes()

    got = np.frombuffer(L.alpha_plane(raw, item), NP[dtype]).reshape(h, w)
    np.testing.assert_array_equal(got, rgba[..., 3])

    got = np.frombuffer(bytes(L.replace_alpha(raw, plane.tobytes(), item)), NP[dtype]).reshape(h, w, 4)
    np.testing.assert_array_equal(got[..., :3], rgba[..., :3])
    np.testing.assert_array_equal(got[..., 3], plane)

    got = np.frombuffer(bytes(L.fill_opaque_alpha(raw, item, L.one_value(dtype))), NP[dtype]).reshape(h, w, 4)
    one = np.iinfo(NP[dtype]).max if dtype.startswith("u") else 1.0
    np.testing.assert_array_equal(got[..., :3], rgba[..., :3])
    assert (got[..., 3] == one).all()

    with pytest.raises(ValueError):
        L.replace_alpha(raw, plane.tobytes()[:-item], item)


@pytest.mark.parametrize("item,channels", [(1, 1), (2, 1), (4, 4)])
def test_crop_and_paste_planes(item, channels):
    rng = np.random.default_rng(5)
    dt = {1: np.uint8, 2: np.uint16, 4: np.float32}[item]
    src = rng.random((30, 40, channels)).astype(np.float32)
    src = (src * 200).astype(dt)
    rect = L.Rect(7, 4, 13, 9)
    got = np.frombuffer(L.crop_plane(src.tobytes(), 40, rect, channels, item), dt).reshape(9, 13, channels)
    np.testing.assert_array_equal(got, src[4:13, 7:20])
    if channels == 1:
        dest = bytearray(np.zeros((30, 40), dt).tobytes())
        L.paste_plane(dest, 40, got.tobytes(), rect, item)
        back = np.frombuffer(bytes(dest), dt).reshape(30, 40)
        np.testing.assert_array_equal(back[4:13, 7:20], src[4:13, 7:20, 0])
        assert back.sum() == src[4:13, 7:20, 0].sum()  # nothing written outside the rect


def test_is_all_zero():
    assert L.is_all_zero(bytes(10)) and L.is_all_zero(bytes(100_000))
    assert not L.is_all_zero(bytes(99_999) + b"\x01") and not L.is_all_zero(b"\x00\x02")


@pytest.mark.parametrize("op,output,band", list(itertools.product(["select_subject", "refine", "decontaminate"], list(L.OUTPUTS), [0, 12])))
def test_job_params_pass_the_daemons_validation(op, output, band):
    params = L.job_params(op, model="portrait", band_px=band, amount_percent=40, output=output)
    specs = [P.BufferSpec("image", 8, 8, "u16", "RGBA")]
    specs += [P.BufferSpec({"refine": "guidance", "decontaminate": "alpha"}[op], 8, 8, "u16", "Y")] if op != "select_subject" else []
    checked = P.check_job(op, params, specs)  # raises ProtocolError if the plug-in sends anything invalid
    assert checked["amount"] == pytest.approx(0.4)
    if op != "decontaminate":
        assert ("foreground" in checked["outputs"]) is output.startswith("new-layer")
        assert checked["model"] == "portrait"
    assert checked["band_px"] == (band if op == "refine" and band else None)


def test_job_params_rejects_unknown_choices():
    with pytest.raises(ValueError):
        L.job_params("refine", model="auto", band_px=0, amount_percent=0, output="clipboard")
    with pytest.raises(ValueError):
        L.job_params("refine", model="sky", band_px=0, amount_percent=0, output="selection")
    assert L.job_params("refine", model="auto", band_px=0, amount_percent=250, output="selection")["amount"] == 1.0


def test_progress_text_names_the_model():
    assert "modnet" in L.progress_text("subject", "modnet")
    assert L.progress_text("a-new-stage")  # unknown stages still give a line
