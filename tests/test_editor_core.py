"""The editor core both plug-ins vendor (backend/mattekit/editor_core.py): every shared rule, checked against NumPy and the daemon."""

from __future__ import annotations

import itertools
import os
import struct
import time

import numpy as np
import pytest

from mattekit import config
from mattekit import editor_core as C
from mattekit import protocol as P
from mattekit.refine import default_band_px as daemon_band

NP = {"u8": np.uint8, "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}
DTYPES = list(NP)


def rand(rng, shape, dtype):
    if dtype in ("u8", "u16"):
        return rng.integers(0, np.iinfo(NP[dtype]).max, shape, endpoint=True).astype(NP[dtype])
    return rng.random(shape).astype(NP[dtype])


# --------------------------------------------------------------------------- samples and channels


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_value_is_full_coverage(dtype):
    v = np.frombuffer(C.one_value(dtype), NP[dtype])[0]
    assert float(v) == (1.0 if dtype[0] == "f" else np.iinfo(NP[dtype]).max)
    assert len(C.one_value(dtype)) == C.ITEMSIZE[dtype] == P.DTYPES[dtype]


@pytest.mark.parametrize("dtype,channels", list(itertools.product(DTYPES, [4, 3])))
def test_extract_replace_fill_channel_match_numpy(dtype, channels):
    rng = np.random.default_rng(1)
    px = rand(rng, (5, 7, channels), dtype)
    item = C.ITEMSIZE[dtype]
    for ch in range(channels):
        got = np.frombuffer(C.extract_channel(px.tobytes(), item, ch, channels), NP[dtype]).reshape(5, 7)
        np.testing.assert_array_equal(got, px[..., ch])
    plane = rand(rng, (5, 7), dtype)
    ch = channels - 1
    out = np.frombuffer(bytes(C.replace_channel(px.tobytes(), item, plane.tobytes(), ch, channels)), NP[dtype]).reshape(px.shape)
    np.testing.assert_array_equal(out[..., ch], plane)
    np.testing.assert_array_equal(out[..., :ch], px[..., :ch])
    out = np.frombuffer(bytes(C.fill_channel(px.tobytes(), item, C.one_value(dtype), ch, channels)), NP[dtype]).reshape(px.shape)
    assert (out[..., ch].astype(np.float64) == float(np.frombuffer(C.one_value(dtype), NP[dtype])[0])).all()
    np.testing.assert_array_equal(out[..., :ch], px[..., :ch])
    with pytest.raises(ValueError):
        C.replace_channel(px.tobytes(), item, plane.tobytes()[:-item], ch, channels)
    with pytest.raises(ValueError):
        C.fill_channel(px.tobytes(), item, b"\x00" * (item + 1), ch, channels)


@pytest.mark.parametrize("dtype", ["u8", "u16"])
def test_multiply_samples_rounds_like_numpy(dtype):
    rng = np.random.default_rng(2)
    hi = np.iinfo(NP[dtype]).max
    a, b = rand(rng, 1000, dtype), rand(rng, 1000, dtype)
    got = np.frombuffer(C.multiply_samples(a.tobytes(), b.tobytes(), dtype), NP[dtype])
    np.testing.assert_array_equal(got, (a.astype(np.int64) * b + hi // 2) // hi)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply_by_opaque_is_exact(dtype):
    a = rand(np.random.default_rng(4), 50, dtype)
    one = C.one_value(dtype) * 50
    assert C.multiply_samples(a.tobytes(), one, dtype) == a.tobytes() == C.multiply_samples(one, a.tobytes(), dtype)
    with pytest.raises(ValueError):
        C.multiply_samples(a.tobytes(), one[:-1], dtype)


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_multiply_samples_floats(dtype):
    rng = np.random.default_rng(3)
    a, b = rand(rng, 300, dtype), rand(rng, 300, dtype)
    got = np.frombuffer(C.multiply_samples(a.tobytes(), b.tobytes(), dtype), NP[dtype]).astype(np.float32)
    np.testing.assert_allclose(got, a.astype(np.float32) * b.astype(np.float32), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("src,dst", list(itertools.product(DTYPES, ["u8", "u16", "f32"])))
def test_convert_mask_matches_numpy(src, dst):
    m = rand(np.random.default_rng(5), 64, src)
    got = np.frombuffer(C.convert_mask(m.tobytes(), src, dst), NP[dst]).astype(np.float64)
    f = np.clip(m.astype(np.float64) / {"u8": 255.0, "u16": 65535.0}.get(src, 1.0), 0, 1)
    if dst in ("u8", "u16"):
        np.testing.assert_array_equal(got, np.floor(f * np.iinfo(NP[dst]).max + 0.5))
    else:
        np.testing.assert_allclose(got, f, atol=1e-6)
    assert C.convert_mask(struct.pack("<4f", -0.5, 1.5, float("nan"), 0.5), "f32", "u8") == bytes([0, 255, 0, 128])


def test_is_all_zero():
    assert C.is_all_zero(bytes(10)) and C.is_all_zero(bytes(100_000)) and C.is_all_zero(b"")
    assert not C.is_all_zero(bytes(99_999) + b"\x01") and not C.is_all_zero(b"\x00\x02")
    assert not C.is_all_zero(struct.pack("<f", 1e-30))


@pytest.mark.parametrize("dtype", ["u8", "u16", "f32"])
def test_cutout_multiplies_the_layers_alpha_by_the_matte(dtype):
    rng = np.random.default_rng(6)
    px = rand(rng, (4, 6, 4), dtype)
    matte = rand(rng, (4, 6), "u8")
    out = np.frombuffer(bytes(C.cutout_pixels(px.tobytes(), dtype, matte.tobytes(), "u8")), NP[dtype]).reshape(px.shape)
    np.testing.assert_array_equal(out[..., :3], px[..., :3])
    m = np.frombuffer(C.convert_mask(matte.tobytes(), "u8", dtype), NP[dtype]).reshape(4, 6)
    if dtype == "f32":
        np.testing.assert_allclose(out[..., 3], px[..., 3] * m, rtol=1e-6)
    else:
        hi = np.iinfo(NP[dtype]).max
        np.testing.assert_array_equal(out[..., 3], (px[..., 3].astype(np.int64) * m + hi // 2) // hi)


# --------------------------------------------------------------------------- rectangles


def test_rect_algebra():
    a = C.Rect(10, 20, 100, 50)
    assert a.intersect(C.Rect(0, 0, 30, 30)) == C.Rect(10, 20, 20, 10)
    assert a.intersect(C.Rect(500, 500, 5, 5)).empty
    g = a.grow(5)
    assert (g.x, g.y, g.x2, g.y2) == (a.x - 5, a.y - 5, a.x2 + 5, a.y2 + 5)
    assert a.translate(-10, -20) == C.Rect(0, 0, 100, 50)


@pytest.mark.parametrize("item,channels", [(1, 1), (2, 1), (4, 4)])
def test_crop_and_paste_planes(item, channels):
    dt = {1: np.uint8, 2: np.uint16, 4: np.float32}[item]
    src = (np.random.default_rng(5).random((30, 40, channels)) * 200).astype(dt)
    rect = C.Rect(7, 4, 13, 9)
    got = np.frombuffer(C.crop_plane(src.tobytes(), 40, rect, channels, item), dt).reshape(9, 13, channels)
    np.testing.assert_array_equal(got, src[4:13, 7:20])
    dest = bytearray(np.zeros((30, 40, channels), dt).tobytes())
    C.paste_plane(dest, 40, got.tobytes(), rect, item, channels)
    back = np.frombuffer(bytes(dest), dt).reshape(30, 40, channels)
    np.testing.assert_array_equal(back[4:13, 7:20], src[4:13, 7:20])
    assert back.sum() == src[4:13, 7:20].sum()  # nothing written outside the rect


@pytest.mark.parametrize("seed,item", list(itertools.product(range(6), [1, 2])))
def test_plane_bounds_match_numpy(seed, item):
    rng = np.random.default_rng(seed)
    h, w = 23, 31
    plane = np.zeros((h, w), np.uint8 if item == 1 else "<u2")
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    y1, x1 = rng.integers(y0, h), rng.integers(x0, w)
    plane[y0:y1 + 1, x0:x1 + 1] = rng.integers(0, 2, (y1 - y0 + 1, x1 - x0 + 1)) * 256  # high byte only when u16
    plane[y0, x0] = plane[y1, x1] = 1  # low byte only: both ends of the box are set
    ys, xs = np.nonzero(plane)
    want = C.Rect(int(xs.min()) + 5, int(ys.min()) - 3, int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    assert C.plane_bounds(plane.tobytes(), w, item, (5, -3)) == want
    assert C.plane_bounds(bytes(h * w * item), w, item) is None


def test_band_rule_has_one_definition_equal_to_the_daemons():
    for h, w in [(48, 64), (3000, 4000), (5, 9000), (1024, 1024)]:
        assert config.default_band_px(h, w) == daemon_band(h, w)
        assert C.resolve_band_px(None, w, h) == C.resolve_band_px(0, w, h) == daemon_band(h, w)
        assert C.resolve_band_px(12, w, h) == 12  # the user's width wins


def test_work_rect_is_selection_box_plus_margin_clipped_to_the_layer():
    layer = C.Rect(-50, 30, 2000, 1500)  # a layer offset partly outside the image
    sel = C.Rect(400, 500, 100, 80)
    assert C.work_rect(layer, sel, band_px=20) == sel.grow(80)  # 4 bands when that beats the minimum
    assert C.work_rect(layer, sel, band_px=5) == sel.grow(C.MIN_MARGIN_PX)
    big = C.Rect(400, 500, 300, 200)  # the rough stage's context around a rough selection: 0.6 x 300 px
    assert C.work_rect(layer, big, band_px=20) == big.grow(round(config.ROUGH_CONTEXT * 300)) == big.grow(180)
    near_edge = C.work_rect(layer, C.Rect(-50, 30, 10, 10), band_px=20)
    assert near_edge == C.Rect(-50, 30, 90, 90)  # clipped at the layer's corner
    assert C.work_rect(layer, None, 20) == layer and C.work_rect(layer, C.Rect(0, 0, 0, 0), 20) == layer
    assert C.work_rect(layer, C.Rect(5000, 5000, 10, 10), 20).empty


def test_decontaminate_matte_source_order():
    assert C.decontaminate_matte_source(True, True, True) == "selection"
    assert C.decontaminate_matte_source(False, True, True) == "mask"
    assert C.decontaminate_matte_source(False, False, True) == "alpha"
    with pytest.raises(C.PluginError, match="matte"):
        C.decontaminate_matte_source(False, False, False)


# --------------------------------------------------------------------------- outputs, models, params


def test_one_output_vocabulary_and_old_names():
    assert C.OUTPUTS == ("selection", "mask", "layer", "foreground") and set(C.OUTPUT_LABELS) == set(C.OUTPUTS)
    assert [C.normalize_output(o) for o in C.OUTPUTS] == list(C.OUTPUTS)
    assert C.normalize_output("layer-mask") == "mask" and C.normalize_output("new-layer") == "foreground"
    assert C.normalize_output("new-layer-mask") == "foreground"
    with pytest.raises(C.PluginError):
        C.normalize_output("overwrite")


HELLO = {"models": {"trimap_free": ["u2netp", "modnet-photographic", "auto", "bad name!"], "guided": ["classical", "mattekit-prn-light"],
                    "foreground": ["classical"]}}


def test_model_choices_put_the_base_first_then_the_installed_ones():
    base = [("auto", "Automatic"), ("portrait", "Portrait (people)"), ("general", "General objects")]
    assert C.model_choices("select_subject", None) == base
    assert C.model_choices("select_subject", {"server": "mattekit"}) == base  # a hello without a token has no models
    assert C.model_choices("select_subject", HELLO) == base + [("u2netp", "u2netp"), ("modnet-photographic", "modnet-photographic")]
    assert [k for k, _ in C.model_choices("refine", HELLO)] == ["auto", "portrait", "general", "classical", "mattekit-prn-light"]
    kept = C.model_choices("refine", None, current="mattekit-prn-light")
    assert kept[-1][0] == "mattekit-prn-light" and "not reported" in kept[-1][1]
    assert C.model_choices("refine", HELLO, current="classical") == C.model_choices("refine", HELLO)  # listed once


def test_fetch_hello_is_quick_and_none_without_a_daemon(mk_env, monkeypatch):
    monkeypatch.setenv("MATTEKIT_ENDPOINT", f"ipc://{mk_env}/rt/nobody.sock")
    t0 = time.monotonic()
    assert C.fetch_hello(timeout_s=0.3) is None
    assert time.monotonic() - t0 < 5


def test_fetch_hello_lists_what_the_daemon_reports(start_daemon, mk_env, monkeypatch):
    class Caps:
        def capabilities(self):
            return {"models": HELLO["models"], "devices": ["cpu"]}

    d = start_daemon(engine=Caps())
    monkeypatch.setenv("MATTEKIT_ENDPOINT", d.endpoint)
    hello = None
    deadline = time.monotonic() + 20
    while hello is None or "models" not in hello:  # the full hello waits for the worker to read the models
        assert time.monotonic() < deadline, hello
        hello = C.fetch_hello(timeout_s=2.0)
    assert [k for k, _ in C.model_choices("refine", hello)][3:] == ["classical", "mattekit-prn-light"]


@pytest.mark.parametrize("op,output", list(itertools.product(["select_subject", "refine", "decontaminate"], C.OUTPUTS)))
def test_job_params_pass_the_daemons_validation(op, output):
    params = C.job_params(op, model="portrait", band_px=12, amount_percent=40, output=output)
    specs = [P.BufferSpec("image", 8, 8, "u16", "RGBA")]
    specs += [P.BufferSpec({"refine": "guidance", "decontaminate": "alpha"}[op], 8, 8, "u16", "Y")] if op != "select_subject" else []
    checked = P.check_job(op, params, specs)
    assert checked["amount"] == pytest.approx(0.4)
    if op == "decontaminate":
        assert checked["outputs"] == ["foreground"] and "model" not in params
    else:
        assert checked["outputs"] == (["alpha", "foreground"] if output == "foreground" else ["alpha"])
        assert checked["model"] == "portrait" and checked["band_px"] == 12  # the resolved band goes with every matte job


def test_job_params_reject_bad_values():
    ok = dict(model="auto", band_px=16, amount_percent=0, output="selection")
    with pytest.raises(C.PluginError):
        C.job_params("refine", **dict(ok, output="clipboard"))
    with pytest.raises(C.PluginError):
        C.job_params("refine", **dict(ok, model="no spaces"))
    for band in (0, BAND := P.BAND_MAX_PX + 1, True):
        with pytest.raises(C.PluginError):
            C.job_params("refine", **dict(ok, band_px=band))
    assert BAND > C.BAND_MAX_PX
    assert C.job_params("refine", **dict(ok, amount_percent=250))["amount"] == 1.0
    assert C.job_params("refine", **dict(ok, output="new-layer"))["outputs"] == ["alpha", "foreground"]  # old GIMP name
    assert C.job_params("select_subject", **ok, alpha_dtype="u8")["alpha_dtype"] == "u8"
    with pytest.raises(ValueError):
        C.job_params("paint", **ok)


def test_texts():
    assert "modnet" in C.progress_text("subject", "modnet") and C.progress_text("subject") == C.STAGES["subject"]
    assert C.progress_text("a_new_stage") == "A new stage" and C.progress_text("") == "Working"
    assert "not running" in C.error_text(P.E_UNAVAILABLE, "start it with `mattekit serve`")
    assert "mattekit serve" in C.error_text(P.E_UNAVAILABLE, "start it with `mattekit serve`")
    assert C.error_text(P.E_CANCELLED, "cancelled") == "Cancelled."
    assert "weird" in C.error_text("internal", "weird")


def test_core_is_standard_library_only():
    """Vendored into editors whose Python has no NumPy: only the stdlib and the bridge's own modules."""
    import ast
    import sys

    tree = ast.parse(open(C.__file__).read())
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            top.add(node.module.split(".")[0])
    assert top <= set(sys.stdlib_module_names) | {"__future__"}, top
    assert os.path.basename(C.__file__) in __import__("mattekit.install", fromlist=["x"]).BRIDGE_MODULES


# --------------------------------------------------------------------------- edge controls and model notes


def test_edge_controls_are_off_by_default_and_sent_in_pixels_of_the_whole_layer():
    ok = dict(model="auto", band_px=16, amount_percent=0, output="selection")
    assert not set(C.job_params("refine", **ok)) & set(P.EDGE_SIZES + ("contrast",))  # defaults: nothing sent
    edges = {"smooth": 0.5, "feather": 1.0, "contrast": 40, "shift_edge": -0.25}
    params = C.job_params("refine", **ok, edges=edges, layer_size=(4000, 3000))
    assert params["smooth"] == "15px" and params["feather"] == "30px" and params["shift_edge"] == "-7.5px" and params["contrast"] == 40
    # a crop of the layer is sent: the pixels (so the result) are those of the whole layer's percentages
    specs = [P.BufferSpec("image", 300, 200), P.BufferSpec("guidance", 300, 200, "u8", "Y")]
    checked = P.check_job("refine", params, specs)
    assert P.edge_size_px("feather", checked["feather"], 300, 200) == 30.0
    # out-of-range dialog values are clamped like the sliders; decontaminate keeps the user's matte as it is
    wild = C.job_params("refine", **ok, edges={"feather": 99, "contrast": -5, "shift_edge": float("nan")}, layer_size=(100, 100))
    assert wild["feather"] == f"{P.EDGE_MAX_PERCENT:g}px" and "contrast" not in wild and "shift_edge" not in wild
    P.check_job("refine", wild, [P.BufferSpec("image", 100, 100), P.BufferSpec("guidance", 100, 100, "u8", "Y")])
    assert not set(C.job_params("decontaminate", **ok, edges=edges, layer_size=(40, 30))) & set(edges)
    assert [name for name, *_ in C.EDGE_CONTROLS] == ["smooth", "feather", "contrast", "shift_edge"]  # the daemon's order


def test_model_choices_label_installed_models_with_the_daemons_note():
    hello = {**HELLO, "model_notes": {"u2netp": "General salient-object segmentation; Apache-2.0", "classical": "closed-form",
                                      "mattekit-prn-light": "x" * 200, "auto": "never shown"}}
    choices = dict(C.model_choices("select_subject", hello))
    assert choices["u2netp"] == "u2netp — General salient-object segmentation; Apache-2.0"
    assert choices["modnet-photographic"] == "modnet-photographic" and choices["auto"] == "Automatic"  # no note: the name
    refine = dict(C.model_choices("refine", hello))
    assert refine["classical"] == "classical — closed-form"
    assert len(refine["mattekit-prn-light"]) == C.MODEL_LABEL_CHARS and refine["mattekit-prn-light"].endswith("…")
    assert dict(C.model_choices("refine", {**HELLO, "model_notes": ["not", "a", "map"]}))["classical"] == "classical"
