"""Krita-free logic of the mattekit Krita plug-in: formats, byte packing, options, results.

Nothing here imports Krita, Qt or NumPy, so it runs (and is unit-tested) on any
Python 3.8+. Krita's Python has no NumPy, so pixel work is done with bytes slicing,
which is C-speed: a channel of an interleaved buffer is ``buf[off::stride]`` per byte
of the sample. Only multiplying two alpha channels needs per-sample arithmetic, and
that path is taken only when the layer itself is partly transparent.

Pixel layout facts (Krita 5.x, ``Node.pixelData``): U8 and U16 are BGRA, F16 and F32
are RGBA, little-endian, 4/8/8/16 bytes per pixel; ``Selection.pixelData`` is one byte
per pixel. A float (and often a 16-bit) document made without a profile gets a
*linear* sRGB profile (``sRGB-elle-V2-g10.icc``): the transfer is read from the profile
name and sent with the pixels, so the daemon converts to perceptual values itself.
"""

from __future__ import annotations

import array
import json
import struct
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

#: Krita colour depth -> (wire dtype, channel order, bytes per sample).
DEPTHS: Dict[str, Tuple[str, str, int]] = {
    "U8": ("u8", "BGRA", 1),
    "U16": ("u16", "BGRA", 2),
    "F16": ("f16", "RGBA", 2),
    "F32": ("f32", "RGBA", 4),
}
#: Index of the alpha channel in both orders.
ALPHA_INDEX = 3

ACTIONS = ("select_subject", "refine", "decontaminate")
MODELS = ("auto", "portrait", "general")
#: What a matte becomes: the selection; a transparency mask on the layer (Krita 5.2+,
#: else a new layer with alpha); a new layer with alpha (a cut-out); a new layer with
#: decontaminated colours.
OUTPUTS = ("selection", "mask", "layer", "foreground")
OUTPUT_LABELS = {
    "selection": "Selection",
    "mask": "Transparency mask",
    "layer": "New layer with alpha",
    "foreground": "New layer with decontaminated colours",
}
MODEL_LABELS = {"auto": "Automatic", "portrait": "Portrait", "general": "General objects"}
BAND_MAX_PX = 1024  # protocol.check_job's limit for band_px


class PluginError(Exception):
    """A problem to show the user as it is (no daemon involved)."""


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class PixelFormat:
    """How one Krita node's pixels look on the wire."""

    dtype: str  # "u8" | "u16" | "f16" | "f32"
    order: str  # "BGRA" | "RGBA"
    transfer: str  # "srgb" | "linear"
    itemsize: int  # bytes per sample

    @property
    def pixel_bytes(self) -> int:
        return 4 * self.itemsize


def transfer_from_profile(profile: str) -> str:
    """'linear' for a linear-light ICC profile name (Krita's ``*-g10.icc``, scRGB, "linear"), else 'srgb'.

    Krita names its linear built-ins with a gamma of 1.0 (``g10``); everything else
    in common use (``srgbtrc``, ``g22``, ``sRGB built-in``, camera/Adobe profiles)
    is perceptually encoded and close enough to sRGB for matting.
    """
    p = (profile or "").lower()
    return "linear" if ("g10" in p or "linear" in p or "scrgb" in p) else "srgb"


def pixel_format(color_model: str, color_depth: str, profile: str) -> PixelFormat:
    """The wire format of a node given ``colorModel()``, ``colorDepth()`` and ``colorProfile()``.

    Raises PluginError for colour models other than RGBA (convert the image first).
    """
    if color_model != "RGBA":
        raise PluginError(
            f"mattekit works on RGB layers; this layer is {color_model}. "
            "Convert it with Image ▸ Convert Image Color Space… (RGB/Alpha) first."
        )
    if color_depth not in DEPTHS:
        raise PluginError(f"colour depth {color_depth!r} is not supported; use 8-bit, 16-bit or float.")
    dtype, order, item = DEPTHS[color_depth]
    return PixelFormat(dtype, order, transfer_from_profile(profile), item)


def opaque_sample(dtype: str) -> bytes:
    """The little-endian encoding of full opacity (1.0) in a wire dtype."""
    return {"u8": b"\xff", "u16": b"\xff\xff", "f16": struct.pack("<e", 1.0), "f32": struct.pack("<f", 1.0)}[dtype]


# --------------------------------------------------------------------------- byte packing


def extract_channel(pixels: bytes, fmt: PixelFormat, channel: int = ALPHA_INDEX) -> bytes:
    """One channel of interleaved 4-channel pixels as a packed single-channel buffer (same dtype)."""
    s, step = fmt.itemsize, fmt.pixel_bytes
    n = len(pixels) // step
    out = bytearray(n * s)
    for k in range(s):  # one strided copy per byte of the sample: C-speed, no per-pixel loop
        out[k::s] = pixels[channel * s + k :: step]
    return bytes(out)


def replace_channel(pixels: bytes, fmt: PixelFormat, values: bytes, channel: int = ALPHA_INDEX) -> bytearray:
    """A copy of ``pixels`` whose ``channel`` is ``values`` (packed, same dtype)."""
    s, step = fmt.itemsize, fmt.pixel_bytes
    out = bytearray(pixels)
    if len(values) * step != len(pixels) * s:
        raise ValueError(f"{len(values)} channel bytes do not fit {len(pixels)} pixel bytes")
    for k in range(s):
        out[channel * s + k :: step] = values[k::s]
    return out


def _unpack(data: bytes, dtype: str) -> List[float]:
    if dtype == "f16":
        return list(struct.unpack(f"<{len(data) // 2}e", data))
    code = {"u8": "B", "u16": "H", "f32": "f"}[dtype]
    arr = array.array(code, data)
    if sys.byteorder == "big" and arr.itemsize > 1:
        arr.byteswap()
    return arr  # type: ignore[return-value]


def _pack(values: Any, dtype: str) -> bytes:
    if dtype == "f16":
        return struct.pack(f"<{len(values)}e", *values)
    code = {"u8": "B", "u16": "H", "f32": "f"}[dtype]
    arr = array.array(code, values)
    if sys.byteorder == "big" and arr.itemsize > 1:
        arr.byteswap()
    return arr.tobytes()


def multiply_samples(a: bytes, b: bytes, dtype: str) -> bytes:
    """Element-wise a * b of two packed single-channel buffers read as opacities in [0, 1].

    Integers are rounded (a*b/max); floats are multiplied as they are. Shortcuts:
    if either side is fully opaque the other is returned unchanged (exact).
    """
    if len(a) != len(b):
        raise ValueError("buffers differ in length")
    one = opaque_sample(dtype)
    n = len(a) // len(one)
    full = one * n
    if a == full:
        return bytes(b)
    if b == full:
        return bytes(a)
    va, vb = _unpack(a, dtype), _unpack(b, dtype)
    if dtype in ("u8", "u16"):
        m = 255 if dtype == "u8" else 65535
        half = m // 2
        return _pack([(x * y + half) // m for x, y in zip(va, vb)], dtype)
    return _pack([x * y for x, y in zip(va, vb)], dtype)


def convert_mask(data: bytes, src: str, dst: str) -> bytes:
    """A packed single-channel buffer from dtype ``src`` to ``dst`` (rounded, clamped to [0, 1])."""
    if src == dst:
        return bytes(data)
    vals = _unpack(data, src)
    if src == "u8":
        f = [v / 255.0 for v in vals]
    elif src == "u16":
        f = [v / 65535.0 for v in vals]
    else:
        f = [0.0 if v != v else min(1.0, max(0.0, v)) for v in vals]  # v != v: NaN
    if dst == "u8":
        return bytes(int(v * 255.0 + 0.5) for v in f)
    if dst == "u16":
        return _pack([int(v * 65535.0 + 0.5) for v in f], "u16")
    return _pack(f, dst)


# --------------------------------------------------------------------------- options


@dataclass
class Options:
    """The dialog's settings (also what the actions use)."""

    model: str = "auto"  # MODELS
    band_px: Optional[int] = None  # None = automatic width
    amount: int = 100  # decontaminate amount, percent
    output: str = "selection"  # OUTPUTS

    def validate(self) -> "Options":
        if self.model not in MODELS:
            raise PluginError(f"unknown subject model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.band_px is not None and (isinstance(self.band_px, bool) or not isinstance(self.band_px, int) or not 1 <= self.band_px <= BAND_MAX_PX):
            raise PluginError(f"edge band width must be automatic or 1..{BAND_MAX_PX} px")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or not 0 <= self.amount <= 100:
            raise PluginError("decontaminate amount must be 0..100 %")
        if self.output not in OUTPUTS:
            raise PluginError(f"unknown output {self.output!r}; choose one of {', '.join(OUTPUTS)}")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Options":
        """Options saved earlier; unknown keys and invalid values fall back to defaults."""
        try:
            d = json.loads(text) if text else {}
        except ValueError:
            d = {}
        if not isinstance(d, dict):
            d = {}
        opts = cls()
        for key in ("model", "band_px", "amount", "output"):
            if key in d:
                trial = Options(**{**asdict(opts), key: d[key]})
                try:
                    opts = trial.validate()
                except PluginError:
                    pass
        return opts


def effective_output(output: str, supports_mask: bool) -> str:
    """The output actually produced: a transparency mask falls back to a new layer before Krita 5.2."""
    return "layer" if output == "mask" and not supports_mask else output


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One job to send: op, inputs as (descriptor fields, bytes), params, and what to do with the answer."""

    action: str
    op: str
    width: int
    height: int
    fmt: PixelFormat
    output: str  # an OUTPUTS value after effective_output (decontaminate: "foreground")
    params: Dict[str, Any]
    inputs: List[Tuple[Dict[str, Any], bytes]] = field(default_factory=list)
    x: int = 0
    y: int = 0


def build_request(
    action: str,
    options: Options,
    fmt: PixelFormat,
    width: int,
    height: int,
    pixels: bytes,
    selection: Optional[bytes],
    *,
    supports_mask: bool,
    x: int = 0,
    y: int = 0,
) -> Request:
    """Turn an action, its options and the pixels read from Krita into a daemon request.

    pixels: ``width*height*fmt.pixel_bytes`` bytes as ``Node.pixelData`` returns them.
    selection: ``width*height`` bytes (``Selection.pixelData``) or None when nothing is selected.

    - select_subject: the image; the selection, if any, goes along as guidance.
    - refine: the image and the selection as guidance (a selection is required).
    - decontaminate: the image and, as alpha, the selection or else the layer's own alpha;
      the answer is always a new layer with decontaminated colours.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    options.validate()
    if len(pixels) != width * height * fmt.pixel_bytes:
        raise ValueError(f"{len(pixels)} pixel bytes for {width}x{height} {fmt.dtype} RGBA")
    if selection is not None and len(selection) != width * height:
        raise ValueError(f"{len(selection)} selection bytes for {width}x{height}")
    if selection is not None and selection.count(0) == len(selection):
        selection = None  # an empty selection is no selection
    image = ({"name": "image", "width": width, "height": height, "dtype": fmt.dtype, "order": fmt.order, "transfer": fmt.transfer}, pixels)

    def mask(name: str, data: bytes, dtype: str = "u8") -> Tuple[Dict[str, Any], bytes]:
        return ({"name": name, "width": width, "height": height, "dtype": dtype, "order": "Y", "transfer": "srgb"}, data)

    params: Dict[str, Any] = {"model": options.model, "band_px": options.band_px}
    if action == "decontaminate":
        alpha = mask("alpha", selection) if selection is not None else mask("alpha", extract_channel(pixels, fmt), fmt.dtype)
        params.update(outputs=["foreground"], amount=options.amount / 100.0)
        return Request(action, "decontaminate", width, height, fmt, "foreground", params, [image, alpha], x, y)

    output = effective_output(options.output, supports_mask)
    if action == "refine" and selection is None:
        raise PluginError("Refine Selection needs a rough selection around the subject: select it loosely first.")
    inputs = [image] + ([mask("guidance", selection)] if selection is not None else [])
    if output == "foreground":
        params.update(outputs=["alpha", "foreground"], amount=options.amount / 100.0)
    else:
        params["outputs"] = ["alpha"]
    # Selections and masks are 8-bit in Krita; a cut-out layer's alpha keeps the layer's precision.
    params["alpha_dtype"] = fmt.dtype if output == "layer" else "u8"
    return Request(action, action, width, height, fmt, output, params, inputs, x, y)


# --------------------------------------------------------------------------- results


@dataclass
class Writes:
    """What to write back into Krita for one result."""

    selection: Optional[bytes] = None  # width*height bytes for a new Selection
    mask: Optional[bytes] = None  # width*height bytes (u8) for a transparency mask
    layer: Optional[bytes] = None  # pixels at the node's format for a new paint layer
    layer_name: str = ""


def result_writes(req: Request, pixels: bytes, buffers: Dict[str, Tuple[Dict[str, Any], bytes]], model: Optional[str] = None) -> Writes:
    """Turn the daemon's answer into the bytes to write.

    buffers: name -> (descriptor dict with dtype/order/width/height, bytes), as the
    bridge returns them (a BufferSpec's ``to_json()`` fits).
    """
    def get(name: str) -> Tuple[Dict[str, Any], bytes]:
        if name not in buffers:
            raise PluginError(f"the daemon's answer lacks '{name}'")
        spec, data = buffers[name]
        if (spec["width"], spec["height"]) != (req.width, req.height):
            raise PluginError(f"the daemon answered {spec['width']}x{spec['height']} for a {req.width}x{req.height} request")
        return spec, bytes(data)

    tag = f" ({model})" if model else ""
    if req.output == "foreground":
        spec, fg = get("foreground")
        if (spec["dtype"], spec["order"]) != (req.fmt.dtype, req.fmt.order):
            raise PluginError(f"the daemon answered {spec['dtype']} {spec['order']} for a {req.fmt.dtype} {req.fmt.order} layer")
        # The daemon already multiplied the matte by the layer's own alpha.
        return Writes(layer=fg, layer_name="Decontaminated" + tag)
    spec, alpha = get("alpha")
    if req.output == "selection":
        return Writes(selection=convert_mask(alpha, spec["dtype"], "u8"))
    if req.output == "mask":
        return Writes(mask=convert_mask(alpha, spec["dtype"], "u8"))
    # "layer": the original pixels, their alpha times the matte, at the layer's precision.
    matte = convert_mask(alpha, spec["dtype"], req.fmt.dtype)
    new_alpha = multiply_samples(extract_channel(pixels, req.fmt), matte, req.fmt.dtype)
    return Writes(layer=bytes(replace_channel(pixels, req.fmt, new_alpha)), layer_name="Cut-out" + tag)


def error_text(code: str, message: str) -> str:
    """A user-facing explanation of a daemon error code."""
    hints = {
        "daemon_unavailable": "The mattekit daemon is not running.",
        "no_model": "No suitable model is installed.",
        "too_large": "The image is too large for the daemon's limits.",
        "out_of_memory": "The daemon ran out of memory.",
        "cancelled": "Cancelled.",
        "unauthorized": "The daemon refused the token (was it started by another user, or restarted with a new token?).",
        "busy": "The daemon is busy with other jobs.",
    }
    head = hints.get(code, "mattekit failed.")
    return head if message.strip() in ("", "cancelled") else f"{head}\n\n{message}"
