"""Protocol v1: encode/decode round trips and every validation error, without sockets."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mattekit import config
from mattekit import protocol as P

LIMITS = {"max_pixels": 200_000_000, "max_side": 65_535}
NP = {"u8": np.uint8, "u16": np.uint16, "f16": np.float16, "f32": np.float32}


def _random(shape, code, rng):
    if code.startswith("u"):
        return rng.integers(0, np.iinfo(NP[code]).max + 1, size=shape, dtype=NP[code])
    return rng.random(shape).astype(NP[code])


@pytest.mark.parametrize("code", list(P.DTYPES))
@pytest.mark.parametrize("order", list(P.ORDERS))
def test_buffer_round_trip_every_dtype_and_order(code, order):
    rng = np.random.default_rng(0)
    arr = _random((7, 11, P.ORDERS[order]), code, rng)
    spec, frame = P.buffer_from_array("image", arr, order=order, transfer="linear")
    assert (spec.dtype, spec.order, spec.transfer, spec.channels) == (code, order, "linear", P.ORDERS[order])
    # Through JSON and raw bytes, as on the wire.
    desc = json.loads(P.encode_header({"buffers": [spec.to_json()]}))["buffers"][0]
    spec2 = P.parse_buffer_spec(desc, **LIMITS)
    back = P.array_from_buffer(spec2, memoryview(frame).cast("B"))
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_array_from_buffer_is_zero_copy():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    spec, frame = P.buffer_from_array("image", arr)
    view = P.array_from_buffer(spec, memoryview(frame).cast("B"))
    arr[0, 0, 0] = 99
    assert view[0, 0, 0] == 99


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 5), code=st.sampled_from(list(P.DTYPES)))
def test_row_stride_padding(h, w, pad, code):
    rng = np.random.default_rng(h * 100 + w)
    arr = _random((h, w, 4), code, rng)
    item = P.DTYPES[code]
    stride = w * 4 * item + pad * item
    rows = np.zeros((h, stride), np.uint8)
    rows[:, : w * 4 * item] = arr.view(np.uint8).reshape(h, -1)
    spec = P.BufferSpec("image", w, h, code, "RGBA", "srgb", stride)
    frame = rows.tobytes()[: spec.nbytes]  # the last row carries no padding
    assert np.array_equal(P.array_from_buffer(spec, frame), arr)


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\xff\xfe", P.E_BAD_JSON),
        (b"{not json", P.E_BAD_JSON),
        (b"[1, 2]", P.E_BAD_MESSAGE),
        (b'{"a": NaN}', P.E_BAD_JSON),
        (b'{"a":' + b"[" * 50 + b"]" * 50 + b"}", P.E_BAD_JSON),
        (b'{"a": "' + b"x" * 70_000 + b'"}', P.E_BAD_JSON),
    ],
)
def test_decode_header_errors(frame, code):
    with pytest.raises(P.ProtocolError) as e:
        P.decode_header(frame)
    assert e.value.code == code


def test_deep_nesting_inside_strings_is_not_counted():
    h = P.decode_header(json.dumps({"s": "[[[[[[[[[[[[[[[[[["}).encode())
    assert h["s"].startswith("[[")


@pytest.mark.parametrize(
    "header, code",
    [
        ({"op": "ping", "id": "x"}, P.E_VERSION),
        ({"protocol": 2, "op": "ping", "id": "x"}, P.E_VERSION),
        ({"protocol": True, "op": "ping", "id": "x"}, P.E_VERSION),
        ({"protocol": 1, "op": "explode", "id": "x"}, P.E_UNKNOWN_OP),
        ({"protocol": 1, "op": 5, "id": "x"}, P.E_BAD_PARAMS),
        ({"protocol": 1, "op": "ping"}, P.E_BAD_PARAMS),
        ({"protocol": 1, "op": "ping", "id": ""}, P.E_BAD_PARAMS),
    ],
)
def test_envelope_errors(header, code):
    with pytest.raises(P.ProtocolError) as e:
        P.check_envelope(header)
    assert e.value.code == code


def _desc(**kw):
    d = {"name": "image", "width": 4, "height": 3, "dtype": "u8", "order": "RGBA", "transfer": "srgb"}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "desc, nbytes, code",
    [
        (_desc(width=0), 0, P.E_BAD_PARAMS),
        (_desc(height=-3), 0, P.E_BAD_PARAMS),
        (_desc(width="4"), 48, P.E_BAD_PARAMS),
        (_desc(width=True), 48, P.E_BAD_PARAMS),
        (_desc(width=20000, height=20000), 16, P.E_TOO_LARGE),
        (_desc(width=70000, height=1), 16, P.E_TOO_LARGE),
        (_desc(dtype="f64"), 48, P.E_UNSUPPORTED),
        (_desc(order="CMYK"), 48, P.E_UNSUPPORTED),
        (_desc(transfer="pq"), 48, P.E_UNSUPPORTED),
        (_desc(stride=3), 48, P.E_BAD_PARAMS),
        (_desc(), 47, P.E_BAD_BUFFER),
        (_desc(), 49, P.E_BAD_BUFFER),
        (_desc(channels=3), 48, P.E_BAD_PARAMS),
    ],
)
def test_buffer_descriptor_errors(desc, nbytes, code):
    with pytest.raises(P.ProtocolError) as e:
        P.parse_buffers({"buffers": [desc]}, [b"\0" * nbytes], **LIMITS)
    assert e.value.code == code


def test_frame_count_must_match():
    with pytest.raises(P.ProtocolError) as e:
        P.parse_buffers({"buffers": [_desc()]}, [], **LIMITS)
    assert e.value.code == P.E_BAD_MESSAGE


def _specs(*names, w=4, h=3):
    out = [P.BufferSpec("image", w, h)]
    out += [P.BufferSpec(n, w, h, "u8", "Y") for n in names]
    return out


@pytest.mark.parametrize(
    "op, params, specs, code",
    [
        ("refine", {"bogus": 1}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"amount": 1.5}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"amount": float("nan")}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"band_px": 0}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"outputs": []}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"outputs": ["cutout"]}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {"alpha_dtype": "f64"}, _specs("guidance"), P.E_UNSUPPORTED),
        ("refine", {"preview": "yes"}, _specs("guidance"), P.E_BAD_PARAMS),
        ("refine", {}, _specs(), P.E_BAD_MESSAGE),
        ("refine", {}, _specs("guidance", "alpha"), P.E_BAD_MESSAGE),
        ("decontaminate", {}, _specs("guidance"), P.E_BAD_MESSAGE),
        ("refine", "x", _specs("guidance"), P.E_BAD_PARAMS),
    ],
)
def test_job_param_errors(op, params, specs, code):
    with pytest.raises(P.ProtocolError) as e:
        P.check_job(op, params, specs)
    assert e.value.code == code


def test_job_inputs_must_share_the_image_size():
    specs = [P.BufferSpec("image", 4, 3), P.BufferSpec("guidance", 3, 4, "u8", "Y")]
    with pytest.raises(P.ProtocolError) as e:
        P.check_job("refine", {}, specs)
    assert e.value.code == P.E_BAD_PARAMS


def test_job_defaults_filled():
    p = P.check_job("refine", {"amount": 0.5}, _specs("guidance"))
    assert p["amount"] == 0.5 and p["outputs"] == ["alpha"] and p["model"] == "auto"


def test_nan_cannot_be_encoded():
    with pytest.raises(ValueError):
        P.encode_header({"x": float("nan")})


def test_nesting_at_the_documented_limit_is_accepted_and_one_more_refused():
    limit = config.MAX_HEADER_DEPTH  # the header object itself is level 1
    inner = "[" * (limit - 1) + "1" + "]" * (limit - 1)
    assert P.decode_header(f'{{"x":{inner}}}'.encode(), max_depth=limit)["x"]
    with pytest.raises(P.ProtocolError) as e:
        P.decode_header(f'{{"x":[{inner}]}}'.encode(), max_depth=limit)
    assert e.value.code == P.E_BAD_JSON


@pytest.mark.parametrize("value", ["1.0", "true", "1e999", "1e-999"])
def test_the_version_must_be_the_integer_one(value):
    header = json.loads(P.encode_header(P.make_header("ping")))
    text = json.dumps(header).replace('"protocol": 1', f'"protocol": {value}')
    with pytest.raises(P.ProtocolError) as e:
        P.check_envelope(P.decode_header(text.encode()))
    assert e.value.code == P.E_VERSION


@pytest.mark.parametrize("field", ["width", "height"])
def test_integers_past_float_range_are_refused_not_overflowed(field):
    d = dict(name="image", width=4, height=4, dtype="u8", order="RGBA")
    d[field] = 10**309
    with pytest.raises(P.ProtocolError) as e:
        P.parse_buffer_spec(d, max_pixels=config.MAX_PIXELS, max_side=config.MAX_SIDE)
    assert e.value.code == P.E_TOO_LARGE
    spec = P.parse_buffer_spec(dict(name="image", width=4, height=4), max_pixels=100, max_side=100)
    for amount in (10**309, -(10**309)):
        with pytest.raises(P.ProtocolError) as e:
            P.check_job("refine", {"amount": amount}, [spec, P.BufferSpec("guidance", 4, 4, "u8", "Y", "srgb")])
        assert e.value.code == P.E_BAD_PARAMS


# --------------------------------------------------------------------------- edge controls


@pytest.mark.parametrize("name, value", [
    ("smooth", -1), ("smooth", P.EDGE_MAX_PERCENT + 0.1), ("smooth", f"{P.EDGE_MAX_PX + 1:g}px"), ("smooth", "3"),
    ("feather", "wide"), ("feather", "px"), ("feather", True), ("feather", None), ("feather", [1]), ("feather", float("nan")),
    ("feather", 10**400), ("shift_edge", -P.EDGE_MAX_PERCENT - 0.1), ("shift_edge", f"-{P.EDGE_MAX_PX + 1:g}px"),
    ("contrast", -1), ("contrast", 100.5), ("contrast", "50%"), ("contrast", True),
])
def test_out_of_range_edge_controls_are_refused_naming_the_parameter(name, value):
    with pytest.raises(P.ProtocolError) as e:
        P.check_job("refine", {name: value}, _specs("guidance"))
    assert e.value.code == P.E_BAD_PARAMS and f"'{name}'" in e.value.message


def test_edge_sizes_are_percent_of_the_short_side_or_pixels():
    ok = P.check_job("refine", {"smooth": "2%", "feather": 1.5, "contrast": 100, "shift_edge": "-12.5 px"}, _specs("guidance"))
    assert ok["shift_edge"] == "-12.5 px" and P.JOB_PARAMS["smooth"] == P.JOB_PARAMS["contrast"] == 0
    assert P.edge_size_px("feather", 1.5, 400, 200) == pytest.approx(3.0)  # 1.5 % of the short side, 200
    assert P.edge_size_px("smooth", "2%", 400, 200) == pytest.approx(4.0)
    assert P.edge_size_px("shift_edge", "-12.5 px", 400, 200) == -12.5
