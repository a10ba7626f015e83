"""The Krita plug-in's Krita-free logic (plugins/krita/mattekit_krita/logic.py), checked against NumPy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "krita"))

from mattekit_krita import logic  # noqa: E402  (no Krita here: the package registers nothing)
from mattekit_krita.logic import Options, PixelFormat, PluginError  # noqa: E402

from mattekit import protocol as P  # noqa: E402

NP = {"u8": np.uint8, "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}


def fmt_of(depth: str, profile: str = "sRGB-elle-V2-srgbtrc.icc") -> PixelFormat:
    return logic.pixel_format("RGBA", depth, profile)


def random_pixels(rng, h, w, dtype):
    if dtype in ("u8", "u16"):
        hi = 255 if dtype == "u8" else 65535
        return rng.integers(0, hi + 1, (h, w, 4)).astype(NP[dtype])
    return rng.random((h, w, 4)).astype(NP[dtype])


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "depth,dtype,order,nbytes",
    [("U8", "u8", "BGRA", 4), ("U16", "u16", "BGRA", 8), ("F16", "f16", "RGBA", 8), ("F32", "f32", "RGBA", 16)],
)
def test_pixel_format_matches_krita_layouts(depth, dtype, order, nbytes):
    f = fmt_of(depth)
    assert (f.dtype, f.order, f.pixel_bytes) == (dtype, order, nbytes)
    assert f.itemsize == P.DTYPES[dtype]  # agrees with the wire format


@pytest.mark.parametrize(
    "profile,transfer",
    [
        ("sRGB-elle-V2-g10.icc", "linear"),  # Krita's default for float (and new 16-bit) documents
        ("Rec2020-elle-V4-g10.icc", "linear"),
        ("scRGB (linear)", "linear"),
        ("sRGB-elle-V2-srgbtrc.icc", "srgb"),
        ("sRGB built-in", "srgb"),
        ("ACEScg-elle-V4-g10.icc", "linear"),
        ("AdobeRGB1998-elle-V2-g22.icc", "srgb"),
        ("", "srgb"),
    ],
)
def test_transfer_from_profile(profile, transfer):
    assert logic.transfer_from_profile(profile) == transfer


def test_pixel_format_refuses_other_colour_models_with_a_fix():
    with pytest.raises(PluginError, match="Convert"):
        logic.pixel_format("CMYKA", "U8", "")
    with pytest.raises(PluginError):
        logic.pixel_format("RGBA", "U32", "")


# Byte packing (channels, multiply, convert) is the shared core's: tests/test_editor_core.py.


def test_krita_logic_uses_the_shared_core():
    from mattekit import editor_core

    assert logic.core is editor_core and logic.PluginError is editor_core.PluginError
    assert logic.OUTPUTS == editor_core.OUTPUTS
    src = (Path(logic.__file__)).read_text()
    for name in ("def extract_channel", "def multiply_samples", "def convert_mask", "STAGES = {", "hints = {"):
        assert name not in src and name not in (Path(logic.__file__).with_name("extension.py")).read_text()


# --------------------------------------------------------------------------- options


def test_options_round_trip_and_defaults():
    o = Options(model="portrait", refine_model="mattekit-prn-light", band_px=24, amount=35, output="layer").validate()
    assert Options.from_json(o.to_json()) == o
    assert Options.from_json("") == Options()
    assert Options.from_json("not json") == Options()
    # One bad value falls back to its default only; the valid ones survive.
    back = Options.from_json('{"model": "no pe", "band_px": 8, "amount": 250, "output": "mask", "x": 1}')
    assert back == Options(band_px=8, output="mask")
    # Any installed model's name survives; the old GIMP output names map onto the shared vocabulary.
    assert Options.from_json('{"refine_model": "classical", "output": "layer-mask"}') == Options(refine_model="classical", output="mask")
    assert Options.from_json('{"output": "new-layer"}').output == "foreground"


@pytest.mark.parametrize(
    "kwargs", [{"model": "not a name"}, {"model": ""}, {"refine_model": 3}, {"band_px": 0}, {"band_px": 5000}, {"band_px": True}, {"amount": 101}, {"amount": 0.5}, {"output": "overwrite"},
               {"smooth": -0.1}, {"feather": P.EDGE_MAX_PERCENT + 1}, {"contrast": 101}, {"shift_edge": -P.EDGE_MAX_PERCENT - 1}, {"feather": "2"},
               {"contrast": True}]
)
def test_options_validate_rejects(kwargs):
    with pytest.raises(PluginError):
        Options(**kwargs).validate()


def test_effective_output():
    assert logic.effective_output("mask", supports_mask=False) == "layer"
    assert logic.effective_output("mask", supports_mask=True) == "mask"
    for o in ("selection", "layer", "foreground"):
        assert logic.effective_output(o, supports_mask=False) == o


# --------------------------------------------------------------------------- requests


def _req(action, options=Options(), depth="U8", profile="sRGB-elle-V2-srgbtrc.icc", sel=True, supports_mask=False, h=6, w=9):
    rng = np.random.default_rng(6)
    f = fmt_of(depth, profile)
    px = random_pixels(rng, h, w, f.dtype)
    s = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255 if sel else None
    req = logic.build_request(action, options, f, w, h, px.tobytes(), None if s is None else s.tobytes(), supports_mask=supports_mask)
    return req, px, s


def _check_against_protocol(req):
    """The request passes the daemon's own validation (same code path as the daemon)."""
    specs = P.parse_buffers({"buffers": [d for d, _ in req.inputs]}, [b for _, b in req.inputs], max_pixels=10**8, max_side=65535)
    return P.check_job(req.op, req.params, specs)


@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
def test_refine_request_is_valid_for_the_daemon(depth):
    req, px, s = _req("refine", Options(output="layer", band_px=10), depth=depth, profile="sRGB-elle-V2-g10.icc")
    p = _check_against_protocol(req)
    assert [d["name"] for d, _ in req.inputs] == ["image", "guidance"]
    img = req.inputs[0][0]
    assert img["transfer"] == "linear" and img["order"] == ("BGRA" if depth in ("U8", "U16") else "RGBA")
    assert p["alpha_dtype"] == img["dtype"]  # a cut-out layer keeps the layer's precision
    assert p["band_px"] == 10 and p["outputs"] == ["alpha"]
    assert req.inputs[1][1] == s.tobytes()


def test_selection_and_mask_outputs_ask_for_8_bit_alpha():
    for output in ("selection", "mask"):
        req, *_ = _req("refine", Options(output=output), depth="U16", supports_mask=True)
        assert req.output == output and _check_against_protocol(req)["alpha_dtype"] == "u8"


def test_refine_needs_a_selection():
    with pytest.raises(PluginError, match="selection"):
        _req("refine", sel=False)
    # An all-zero selection counts as none.
    f = fmt_of("U8")
    with pytest.raises(PluginError):
        logic.build_request("refine", Options(), f, 2, 2, bytes(16), bytes(4), supports_mask=False)


def test_select_subject_sends_selection_as_optional_guidance():
    req, *_ = _req("select_subject", Options(model="portrait"))
    assert [d["name"] for d, _ in req.inputs] == ["image", "guidance"]
    assert _check_against_protocol(req)["model"] == "portrait"
    req, *_ = _req("select_subject", sel=False)
    assert [d["name"] for d, _ in req.inputs] == ["image"]
    _check_against_protocol(req)


@pytest.mark.parametrize("depth", ["U8", "F32"])
def test_decontaminate_alpha_comes_from_selection_or_layer(depth):
    req, px, s = _req("decontaminate", Options(amount=40), depth=depth)
    p = _check_against_protocol(req)
    assert p["outputs"] == ["foreground"] and p["amount"] == pytest.approx(0.4)
    assert req.inputs[1][1] == s.tobytes() and req.inputs[1][0]["dtype"] == "u8"
    req, px, _ = _req("decontaminate", depth=depth, sel=False)
    _check_against_protocol(req)
    assert req.inputs[1][1] == np.ascontiguousarray(px[..., 3]).tobytes()
    assert req.inputs[1][0]["dtype"] == fmt_of(depth).dtype


def test_foreground_output_asks_for_both():
    req, *_ = _req("refine", Options(output="foreground", amount=70))
    p = _check_against_protocol(req)
    assert p["outputs"] == ["alpha", "foreground"] and p["amount"] == pytest.approx(0.7)


def _canvas_selection(canvas, box):
    sel = np.zeros((canvas.height, canvas.width), np.uint8)
    x, y, w, h = box
    sel[y - canvas.y:y - canvas.y + h, x - canvas.x:x - canvas.x + w] = 255
    return sel


@pytest.mark.parametrize("action", ["select_subject", "refine", "decontaminate"])
def test_every_action_crops_to_the_selection_box_plus_margin(action):
    canvas = logic.Rect(0, 0, 1200, 900)
    sel = _canvas_selection(canvas, (500, 400, 100, 50))
    rect, band, cropped = logic.plan_crop(action, Options(), canvas, sel.tobytes())
    assert band == logic.core.resolve_band_px(None, 1200, 900)  # from the whole canvas, not the crop
    assert rect == logic.Rect(500, 400, 100, 50).grow(max(logic.core.MIN_MARGIN_PX, logic.core.MARGIN_BANDS * band, 60))  # 60: 0.6 x 100
    assert cropped == np.ascontiguousarray(sel[rect.y:rect.y2, rect.x:rect.x2]).tobytes()
    # Near the canvas edge the crop is clipped, and the user's band sets the margin.
    rect, band, _ = logic.plan_crop(action, Options(band_px=40), canvas, _canvas_selection(canvas, (0, 0, 10, 10)).tobytes())
    assert band == 40 and rect == logic.Rect(0, 0, 170, 170)


def test_no_selection_sends_the_whole_canvas_except_for_refine():
    canvas = logic.Rect(0, 0, 64, 48)
    for sel in (None, bytes(64 * 48)):  # none, or an empty one
        assert logic.plan_crop("select_subject", Options(), canvas, sel) == (canvas, 16, None)
        assert logic.plan_crop("decontaminate", Options(), canvas, sel)[0] == canvas
        with pytest.raises(PluginError, match="selection"):
            logic.plan_crop("refine", Options(), canvas, sel)


def test_cropped_request_carries_its_origin_and_the_canvas_band():
    f = fmt_of("U8")
    req = logic.build_request("refine", Options(), f, 4, 3, bytes(48), b"\xff" * 12, supports_mask=False, x=30, y=20, band_px=55)
    assert (req.x, req.y, req.width, req.height) == (30, 20, 4, 3)
    assert _check_against_protocol(req)["band_px"] == 55 and req.params["model"] == "auto"
    req = logic.build_request("refine", Options(refine_model="classical", model="portrait"), f, 4, 3, bytes(48), b"\xff" * 12, supports_mask=False)
    assert req.params["model"] == "classical"  # Refine uses its own model choice
    req = logic.build_request("select_subject", Options(refine_model="classical", model="portrait"), f, 4, 3, bytes(48), None, supports_mask=False)
    assert req.params["model"] == "portrait"


def test_build_request_checks_sizes():
    f = fmt_of("U8")
    with pytest.raises(ValueError):
        logic.build_request("refine", Options(), f, 2, 2, bytes(15), bytes(4), supports_mask=False)
    with pytest.raises(ValueError):
        logic.build_request("refine", Options(), f, 2, 2, bytes(16), bytes(3), supports_mask=False)
    with pytest.raises(ValueError):
        logic.build_request("paint", Options(), f, 2, 2, bytes(16), bytes(4), supports_mask=False)


# --------------------------------------------------------------------------- results


def _alpha_buf(req, matte):
    spec, arr = P.buffer_from_array("alpha", matte, order="Y")
    return {"alpha": (spec.to_json(), arr.tobytes())}


def test_selection_result_is_the_u8_matte():
    req, px, _ = _req("refine")
    matte = np.random.default_rng(7).integers(0, 256, (req.height, req.width)).astype(np.uint8)
    w = logic.result_writes(req, px.tobytes(), _alpha_buf(req, matte))
    assert w.selection == matte.tobytes() and w.layer is None and w.mask is None


@pytest.mark.parametrize("depth", ["U8", "U16", "F32"])
def test_layer_result_multiplies_layer_alpha_and_keeps_colours(depth):
    req, px, _ = _req("refine", Options(output="layer"), depth=depth)
    dt = NP[req.fmt.dtype]
    rng = np.random.default_rng(8)
    matte = random_pixels(rng, req.height, req.width, req.fmt.dtype)[..., 0]
    w = logic.result_writes(req, px.tobytes(), _alpha_buf(req, matte), model="classical")
    out = np.frombuffer(w.layer, dt).reshape(px.shape)
    np.testing.assert_array_equal(out[..., :3], px[..., :3])
    if depth == "F32":
        np.testing.assert_allclose(out[..., 3], px[..., 3] * matte, rtol=1e-6)
    else:
        hi = 255 if depth == "U8" else 65535
        np.testing.assert_array_equal(out[..., 3], (px[..., 3].astype(np.int64) * matte + hi // 2) // hi)
    assert w.layer_name == "Cut-out (classical)"


def test_mask_result_and_size_checks():
    req, px, _ = _req("refine", Options(output="mask"), supports_mask=True)
    matte = np.full((req.height, req.width), 200, np.uint8)
    assert logic.result_writes(req, px.tobytes(), _alpha_buf(req, matte)).mask == matte.tobytes()
    wrong = np.zeros((req.height + 1, req.width), np.uint8)
    with pytest.raises(PluginError, match="answered"):
        logic.result_writes(req, px.tobytes(), _alpha_buf(req, wrong))
    with pytest.raises(PluginError, match="lacks"):
        logic.result_writes(req, px.tobytes(), {})


def test_foreground_result_must_match_layer_format():
    req, px, _ = _req("decontaminate", depth="U16")
    fg = random_pixels(np.random.default_rng(9), req.height, req.width, "u16")
    spec, arr = P.buffer_from_array("foreground", fg, order="BGRA")
    w = logic.result_writes(req, px.tobytes(), {"foreground": (spec.to_json(), arr.tobytes())})
    assert w.layer == fg.tobytes() and w.layer_name.startswith("Decontaminated")
    spec, arr = P.buffer_from_array("foreground", fg, order="RGBA")
    with pytest.raises(PluginError):
        logic.result_writes(req, px.tobytes(), {"foreground": (spec.to_json(), arr.tobytes())})


def test_error_text_explains_codes():
    assert "not running" in logic.error_text("daemon_unavailable", "start it with `mattekit serve`")
    assert "mattekit serve" in logic.error_text("daemon_unavailable", "start it with `mattekit serve`")
    assert logic.error_text("cancelled", "cancelled") == "Cancelled."
    assert "weird" in logic.error_text("internal", "weird")


def test_action_file_declares_the_extensions_actions_and_shortcuts():
    """mattekit_krita.action (Krita's default shortcuts) agrees with extension.ACTIONS (read without Krita)."""
    import ast
    import xml.etree.ElementTree as ET

    pkg = Path(__file__).resolve().parents[1] / "plugins" / "krita" / "mattekit_krita"
    tree = ast.parse((pkg / "extension.py").read_text())
    table = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ACTIONS")
    actions = ast.literal_eval(table)
    root = ET.parse(pkg / "mattekit_krita.action").getroot()
    declared = {a.get("name"): (a.findtext("text"), a.findtext("shortcut") or "") for a in root.iter("Action")}
    assert declared == {k: (v[0], v[2]) for k, v in actions.items()}
    assert {v[1] for v in actions.values()} <= {"select", "filter", "layer"}
    shortcuts = [s for _, s in declared.values() if s]
    assert len(shortcuts) == len(set(shortcuts)) == 3


def test_edge_controls_default_to_off_round_trip_and_are_sized_from_the_whole_canvas():
    assert Options().edges() == {"smooth": 0.0, "feather": 0.0, "contrast": 0.0, "shift_edge": 0.0}
    o = Options(smooth=0.5, feather=1.0, contrast=30, shift_edge=-0.5).validate()
    assert Options.from_json(o.to_json()) == o
    assert Options.from_json('{"feather": 2.5, "contrast": 900}') == Options(feather=2.5)  # the bad one falls back alone
    plain, *_ = _req("refine", Options())
    assert not set(plain.params) & set(o.edges())  # off: nothing sent
    # a 9x6 crop of a 2000x1000 canvas: the percentages are of the canvas's short side, sent as pixels
    req = logic.build_request("refine", o, fmt_of("U8", "sRGB-elle-V2-srgbtrc.icc"), 9, 6, bytes(9 * 6 * 4), b"\xff" * 54,
                              supports_mask=False, canvas_size=(2000, 1000))
    p = _check_against_protocol(req)
    assert (p["smooth"], p["feather"], p["contrast"], p["shift_edge"]) == ("5px", "10px", 30.0, "-5px")
    select, *_ = _req("select_subject", o)  # no canvas given: the request's own size (6 px short side)
    assert _check_against_protocol(select)["feather"] == "0.06px"


def test_the_dialog_has_a_field_per_edge_control():
    src = (Path(logic.__file__).with_name("dialog.py")).read_text()
    assert "for name, label, lo, hi in shared.EDGE_CONTROLS:" in src and "box.setValue(float(getattr(o, name)))" in src
    assert "**{name: float(box.value()) for name, box in self.edges.items()}" in src
