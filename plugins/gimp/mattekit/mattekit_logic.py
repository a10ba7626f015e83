"""The mattekit GIMP plug-in's logic, free of GIMP so it runs in plain unit tests.

Pixel formats, rectangles and byte shuffling only: the plug-in (mattekit.py) reads
GEGL buffers with the formats chosen here, sends them through the bridge, and writes
the answers back. Uses no NumPy: extended slice assignment on ``bytearray`` does the
channel work in C, fast enough for 12 MP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Output choices of Select Subject / Refine Selection (nick → label).
OUTPUTS = {
    "selection": "Selection",
    "layer-mask": "Layer mask",
    "new-layer": "New layer with decontaminated colours",
    "new-layer-mask": "New layer with mask",
}
#: Decontaminate always makes a new layer; these are its choices.
DECONTAMINATE_OUTPUTS = {k: OUTPUTS[k] for k in ("new-layer", "new-layer-mask")}
MODELS = {"auto": "Automatic", "portrait": "Portrait", "general": "General"}


@dataclass(frozen=True)
class PixelFormat:
    """How to read one image precision: the Babl format names and the wire description."""

    dtype: str  # wire dtype: u8 | u16 | f16 | f32
    transfer: str  # wire transfer: srgb | linear
    rgba: str  # Babl format for RGBA pixels ("R'G'B'A u8", "RGBA u16", "R~G~B~A float", ...)
    rgb: str  # Babl format for RGB pixels (alpha sent separately or not at all)
    mask: str  # Babl format for single-channel coverage (selection, masks)
    channel: str  # Babl format to fill a channel that then becomes the selection (select_item)

    @property
    def itemsize(self) -> int:
        return {"u8": 1, "u16": 2, "f16": 2, "f32": 4}[self.dtype]


_COMPONENTS = {"U8": ("u8", "u8"), "U16": ("u16", "u16"), "U32": ("f32", "float"), "HALF": ("f16", "half"), "FLOAT": ("f32", "float"), "DOUBLE": ("f32", "float")}


def pixel_format(precision: str) -> PixelFormat:
    """The format to read and write an image of GIMP precision ``precision``.

    ``precision`` is a ``Gimp.Precision`` value name or nick ("U16_LINEAR",
    "u8-non-linear", "float-perceptual", ...). The image is read in its own component
    type and transfer, so nothing is lost on the way: linear images travel as linear
    with ``transfer: "linear"`` and the daemon converts. 32-bit integer and double
    images go as float32 (the wire has no u32/f64).
    """
    p = precision.upper().replace("-", "_")
    if p.startswith("GIMP_PRECISION_"):
        p = p[len("GIMP_PRECISION_"):]
    comp, _, trc = p.partition("_")
    if comp not in _COMPONENTS or trc not in ("LINEAR", "NON_LINEAR", "PERCEPTUAL"):
        raise ValueError(f"unknown GIMP precision {precision!r}")
    dtype, babl = _COMPONENTS[comp]
    linear = trc == "LINEAR"
    # R'G'B' is the image space's own TRC (sRGB for GIMP's built-in profile, no conversion);
    # R~G~B~ is always the sRGB curve, which is what "perceptual" precision stores.
    prefix = "RGB" if linear else ("R~G~B~" if trc == "PERCEPTUAL" else "R'G'B'")
    return PixelFormat(
        dtype=dtype,
        transfer="linear" if linear else "srgb",
        rgba=f"{prefix}A {babl}",
        rgb=f"{prefix} {babl}",
        mask=f"Y {babl}",  # coverage is never gamma-encoded
        # GIMP 3.0 stores channels of 8-bit non-linear images as "Y' u8" and select_item copies
        # their raw values into the (linear "Y u8") selection: write them raw, as Y'.
        channel=f"Y' {babl}" if (dtype, trc) == ("u8", "NON_LINEAR") else f"Y {babl}",
    )


# --------------------------------------------------------------------------- rectangles


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def x2(self) -> int:
        return self.x + self.width

    @property
    def y2(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: "Rect") -> "Rect":
        x, y = max(self.x, other.x), max(self.y, other.y)
        return Rect(x, y, max(0, min(self.x2, other.x2) - x), max(0, min(self.y2, other.y2) - y))

    def grow(self, margin: int) -> "Rect":
        return Rect(self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin)

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def default_band_px(width: int, height: int, band_min: int, band_fraction: float) -> int:
    """The daemon's automatic band for a ``width`` x ``height`` layer (same formula as mattekit.refine)."""
    return int(max(band_min, round(min(width, height) * band_fraction)))


def work_rect(layer: Rect, selection_bounds: Optional[Rect], band_px: int, *, min_margin: int = 64) -> Rect:
    """The part of the layer (image coordinates) to send for a refine.

    Only the selection's surroundings matter: its bounds grown by four bands (the
    band is centred on the edge, and the solver needs context beyond it), at least
    ``min_margin``, clipped to the layer. No selection → the whole layer.
    """
    if selection_bounds is None or selection_bounds.empty:
        return layer
    return selection_bounds.grow(max(min_margin, 4 * band_px)).intersect(layer)


# --------------------------------------------------------------------------- bytes


def fill_opaque_alpha(rgba: bytes, itemsize: int, one: bytes) -> bytearray:
    """A copy of interleaved RGBA samples with every alpha sample set to ``one``.

    ``one`` is the encoded value 1.0 in the sample type (b"\\xff", b"\\xff\\xff",
    struct.pack("<f", 1.0), ...).
    """
    out = bytearray(rgba)
    step = 4 * itemsize
    n = len(out) // step
    for b in range(itemsize):
        out[3 * itemsize + b::step] = one[b:b + 1] * n
    return out


def replace_alpha(rgba: bytes, alpha: bytes, itemsize: int) -> bytearray:
    """Interleaved RGBA with its alpha samples replaced by the plane ``alpha`` (same sample type)."""
    out = bytearray(rgba)
    step = 4 * itemsize
    if len(alpha) * 4 != len(out):
        raise ValueError(f"alpha plane has {len(alpha)} bytes; {len(out) // 4} expected")
    for b in range(itemsize):
        out[3 * itemsize + b::step] = alpha[b::itemsize]
    return out


def alpha_plane(rgba: bytes, itemsize: int) -> bytes:
    """The alpha samples of interleaved RGBA as a packed single-channel plane."""
    step = 4 * itemsize
    n = len(rgba) // step
    out = bytearray(n * itemsize)
    for b in range(itemsize):
        out[b::itemsize] = rgba[3 * itemsize + b::step]
    return bytes(out)


def one_value(dtype: str) -> bytes:
    """The little-endian encoding of full coverage in a wire dtype."""
    import struct

    return {"u8": b"\xff", "u16": b"\xff\xff", "f16": struct.pack("<e", 1.0), "f32": struct.pack("<f", 1.0)}[dtype]


def is_all_zero(plane: bytes) -> bool:
    """True when a mask plane selects nothing (any dtype: 0.0 is all-zero bytes too)."""
    return not any(plane) if len(plane) < 4096 else plane.count(0) == len(plane)


def paste_plane(dest: bytearray, dest_width: int, src: bytes, src_rect: Rect, itemsize: int) -> None:
    """Copy a packed ``src_rect``-sized plane into a packed plane ``dest_width`` samples wide, at src_rect's origin."""
    row = src_rect.width * itemsize
    for r in range(src_rect.height):
        d = ((src_rect.y + r) * dest_width + src_rect.x) * itemsize
        dest[d:d + row] = src[r * row:(r + 1) * row]


def crop_plane(src: bytes, src_width: int, rect: Rect, channels: int, itemsize: int) -> bytes:
    """Cut ``rect`` (coordinates relative to the plane) out of a packed plane."""
    px = channels * itemsize
    row = rect.width * px
    out = bytearray(row * rect.height)
    for r in range(rect.height):
        s = ((rect.y + r) * src_width + rect.x) * px
        out[r * row:(r + 1) * row] = src[s:s + row]
    return bytes(out)


def job_params(op: str, *, model: str, band_px: int, amount_percent: float, output: str) -> dict:
    """The daemon parameters for a plug-in action (see mattekit.protocol.JOB_PARAMS)."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; use one of {list(OUTPUTS)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; use one of {list(MODELS)}")
    params: dict = {"amount": max(0.0, min(1.0, amount_percent / 100.0))}
    if op == "decontaminate":
        return params
    params["model"] = model
    params["outputs"] = ["alpha", "foreground"] if output.startswith("new-layer") else ["alpha"]
    if band_px > 0:
        params["band_px"] = int(band_px)
    if op == "select_subject":
        params.pop("band_px", None)
    return params


def progress_text(stage: str, model: Optional[str] = None) -> str:
    """A short status line for GIMP's progress bar from a daemon progress stage."""
    words = {
        "queued": "Waiting for the matting daemon",
        "decode": "Preparing pixels",
        "trimap": "Finding the edge band",
        "alpha": "Solving the edge",
        "subject": "Finding the subject",
        "refine": "Refining the edge",
        "foreground": "Decontaminating edge colours",
        "encode": "Sending the result",
    }
    text = words.get(stage, stage.capitalize() or "Working")
    return f"{text} ({model})" if model else text
