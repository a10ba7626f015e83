"""What both editor plug-ins share: pixel samples, channels, rectangles, rules, texts, job parameters.

Standard library only, and vendored into both plug-ins beside the client core
(``mattekit_bridge/``, by ``mattekit install-plugin``), so every rule here exists once
and GIMP and Krita behave the same. Each plug-in keeps only its editor's API calls:
how to read and write pixels (Babl formats, ``Node.pixelData``), menus and dialogs.

Byte work uses extended slice assignment on ``bytes``/``bytearray`` (one strided copy
per byte of a sample, done in C), never a per-pixel Python loop, and no NumPy: the
editors' Pythons do not promise it. Only multiplying two alpha planes needs
arithmetic per sample, and that is skipped when either side is fully opaque.

Samples are little-endian; ``dtype`` is a wire dtype (``u8``, ``u16``, ``f16``, ``f32``).
"""

from __future__ import annotations

import array
import re
import struct
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import config, editor_client
from . import protocol as P

#: Bytes per sample of each wire dtype (the protocol's own table).
ITEMSIZE: Dict[str, int] = dict(P.DTYPES)
#: Index of alpha in an interleaved 4-channel pixel, in both RGBA and BGRA.
ALPHA = 3
BAND_MAX_PX = P.BAND_MAX_PX
#: Context kept around a selection's bounding box when cropping: at least this many pixels...
MIN_MARGIN_PX = 64
#: ... and at least this many bands (the band is centred on the edge; the solver needs context beyond it).
MARGIN_BANDS = 4


class PluginError(Exception):
    """A problem to show the user as it is (found by the plug-in, before or after the daemon)."""


# --------------------------------------------------------------------------- samples and channels


def one_value(dtype: str) -> bytes:
    """The little-endian encoding of 1.0 (full coverage / opacity) in ``dtype``."""
    return {"u8": b"\xff", "u16": b"\xff\xff", "f16": struct.pack("<e", 1.0), "f32": struct.pack("<f", 1.0)}[dtype]


def extract_channel(pixels: bytes, itemsize: int, channel: int = ALPHA, channels: int = 4) -> bytes:
    """One channel of interleaved pixels as a packed single-channel plane (same sample type)."""
    step = channels * itemsize
    n = len(pixels) // step
    out = bytearray(n * itemsize)
    for k in range(itemsize):
        out[k::itemsize] = pixels[channel * itemsize + k::step]
    return bytes(out)


def replace_channel(pixels: bytes, itemsize: int, values: bytes, channel: int = ALPHA, channels: int = 4) -> bytearray:
    """A copy of interleaved ``pixels`` whose ``channel`` is the packed plane ``values``."""
    step = channels * itemsize
    if len(values) * channels != len(pixels):
        raise ValueError(f"{len(values)} channel bytes do not fit {len(pixels)} pixel bytes ({len(pixels) // channels} expected)")
    out = bytearray(pixels)
    for k in range(itemsize):
        out[channel * itemsize + k::step] = values[k::itemsize]
    return out


def fill_channel(pixels: bytes, itemsize: int, value: bytes, channel: int = ALPHA, channels: int = 4) -> bytearray:
    """A copy of interleaved ``pixels`` with every sample of ``channel`` set to ``value`` (one encoded sample)."""
    if len(value) != itemsize:
        raise ValueError(f"a {itemsize}-byte sample is needed, not {len(value)} bytes")
    out = bytearray(pixels)
    step = channels * itemsize
    n = len(out) // step
    for k in range(itemsize):
        out[channel * itemsize + k::step] = value[k:k + 1] * n
    return out


def _unpack(data: bytes, dtype: str) -> Sequence[float]:
    if dtype == "f16":
        return struct.unpack(f"<{len(data) // 2}e", data)
    arr = array.array({"u8": "B", "u16": "H", "f32": "f"}[dtype], data)
    if sys.byteorder == "big" and arr.itemsize > 1:
        arr.byteswap()
    return arr  # type: ignore[return-value]


def _pack(values: Any, dtype: str) -> bytes:
    if dtype == "f16":
        return struct.pack(f"<{len(values)}e", *values)
    arr = array.array({"u8": "B", "u16": "H", "f32": "f"}[dtype], values)
    if sys.byteorder == "big" and arr.itemsize > 1:
        arr.byteswap()
    return arr.tobytes()


def multiply_samples(a: bytes, b: bytes, dtype: str) -> bytes:
    """Element-wise a * b of two packed planes read as opacities in [0, 1].

    Integers are rounded ((a*b + max//2) // max); floats are multiplied as they are.
    If either side is fully opaque the other is returned unchanged (exact, and fast).
    """
    if len(a) != len(b):
        raise ValueError("buffers differ in length")
    full = one_value(dtype) * (len(a) // ITEMSIZE[dtype])
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
    """A packed plane from dtype ``src`` to ``dst`` (rounded; floats clamped to [0, 1], NaN to 0)."""
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


def is_all_zero(plane: bytes) -> bool:
    """True when a plane selects nothing (any dtype: 0.0 is all-zero bytes too; -0.0 counts as something)."""
    return plane.count(0) == len(plane)


def cutout_pixels(pixels: bytes, dtype: str, matte: bytes, matte_dtype: str) -> bytearray:
    """The ``layer`` output: the original pixels, their alpha multiplied by the matte, at the pixels' precision."""
    itemsize = ITEMSIZE[dtype]
    m = convert_mask(matte, matte_dtype, dtype)
    return replace_channel(pixels, itemsize, multiply_samples(extract_channel(pixels, itemsize), m, dtype))


# --------------------------------------------------------------------------- rectangles


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in pixels: origin (x, y), size (width, height)."""

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


def crop_plane(src: bytes, src_width: int, rect: Rect, channels: int, itemsize: int) -> bytes:
    """Cut ``rect`` (coordinates relative to the plane's origin) out of a packed plane ``src_width`` pixels wide."""
    px = channels * itemsize
    row = rect.width * px
    out = bytearray(row * rect.height)
    for r in range(rect.height):
        s = ((rect.y + r) * src_width + rect.x) * px
        out[r * row:(r + 1) * row] = src[s:s + row]
    return bytes(out)


def paste_plane(dest: bytearray, dest_width: int, src: bytes, src_rect: Rect, itemsize: int, channels: int = 1) -> None:
    """Copy a packed ``src_rect``-sized plane into a packed plane ``dest_width`` pixels wide, at src_rect's origin."""
    px = channels * itemsize
    row = src_rect.width * px
    for r in range(src_rect.height):
        d = ((src_rect.y + r) * dest_width + src_rect.x) * px
        dest[d:d + row] = src[r * row:(r + 1) * row]


def plane_bounds(plane: bytes, width: int, itemsize: int = 1, origin: Tuple[int, int] = (0, 0)) -> Optional[Rect]:
    """The bounding box of a single-channel plane's non-zero samples (offset by ``origin``), or None.

    Row by row with ``bytes`` methods (C speed): a 12 MP selection takes tens of milliseconds.
    """
    row_bytes = width * itemsize
    if row_bytes <= 0 or not plane:
        return None
    height = len(plane) // row_bytes
    top = bottom = None
    left, right = width, -1
    for r in range(height):
        row = plane[r * row_bytes:(r + 1) * row_bytes]
        if row.count(0) == row_bytes:
            continue
        top = r if top is None else top
        bottom = r
        first = (row_bytes - len(row.lstrip(b"\0"))) // itemsize
        last = (len(row.rstrip(b"\0")) - 1) // itemsize
        left, right = min(left, first), max(right, last)
    if top is None:
        return None
    return Rect(origin[0] + left, origin[1] + top, right - left + 1, bottom - top + 1)


# --------------------------------------------------------------------------- the band and the crop rule


def resolve_band_px(band_px: Optional[int], width: int, height: int) -> int:
    """The band to send: the user's width, else the daemon's automatic one for the whole layer.

    Fixed from the whole layer (not the crop), so cropping never changes the result.
    """
    if band_px:
        return int(band_px)
    return config.default_band_px(height, width)


def work_rect(layer: Rect, selection_bounds: Optional[Rect], band_px: int) -> Rect:
    """The part of the layer (image coordinates) to send, for every op.

    The selection's bounding box grown by a margin (``MARGIN_BANDS`` bands, at least
    ``MIN_MARGIN_PX``, and at least the context the rough stage looks at around a rough
    selection, ``config.ROUGH_CONTEXT`` of the box's long side), clipped to the layer; no
    selection: the whole layer. Empty when the selection does not touch the layer.
    """
    if selection_bounds is None or selection_bounds.empty:
        return layer
    context = int(round(config.ROUGH_CONTEXT * max(selection_bounds.width, selection_bounds.height)))
    return selection_bounds.grow(max(MIN_MARGIN_PX, MARGIN_BANDS * band_px, context)).intersect(layer)


def decontaminate_matte_source(has_selection: bool, has_mask: bool, has_alpha: bool) -> str:
    """Where Decontaminate takes its matte: the selection, else the layer mask, else the layer's alpha."""
    if has_selection:
        return "selection"
    if has_mask:
        return "mask"
    if has_alpha:
        return "alpha"
    raise PluginError(MESSAGES["decontaminate_needs_matte"])


# --------------------------------------------------------------------------- outputs and models

#: One output vocabulary for both editors (what a matte becomes). The source layer is never overwritten.
OUTPUTS: Tuple[str, ...] = ("selection", "mask", "layer", "foreground")
OUTPUT_LABELS: Dict[str, str] = {
    "selection": "Selection",
    "mask": "Mask on the layer (an existing mask is kept: then on a copy)",
    "layer": "New layer with alpha (cut-out)",
    "foreground": "New layer with decontaminated colours",
}
#: Decontaminate always makes a new layer with decontaminated colours.
DECONTAMINATE_OUTPUTS: Tuple[str, ...] = ("foreground",)
#: Names the GIMP plug-in used before the vocabularies were merged (saved settings, scripts).
LEGACY_OUTPUTS: Dict[str, str] = {"layer-mask": "mask", "new-layer": "foreground", "new-layer-mask": "foreground"}


def normalize_output(name: str) -> str:
    """An output name in the shared vocabulary; old GIMP names are mapped, anything else is an error."""
    name = LEGACY_OUTPUTS.get(name, name)
    if name not in OUTPUTS:
        raise PluginError(f"unknown output {name!r}; choose one of {', '.join(OUTPUTS)}")
    return name


#: Always offered first: the daemon picks the model for these.
BASE_MODELS: Tuple[str, ...] = ("auto", "portrait", "general")
MODEL_LABELS: Dict[str, str] = {"auto": "Automatic", "portrait": "Portrait (people)", "general": "General objects"}
#: Which of the daemon's model lists (``hello`` → ``models``) serves each op.
MODEL_TASKS: Dict[str, str] = {"select_subject": "trimap_free", "refine": "guided"}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def valid_model_name(name: Any) -> bool:
    """A name the daemon could know: the base choices or a weights name (letters, digits, ``._-``)."""
    return isinstance(name, str) and bool(_MODEL_NAME.match(name))


def installed_models(hello: Optional[Mapping[str, Any]], op: str) -> List[str]:
    """The models the daemon reports as installed for ``op`` (its full ``hello`` reply), in its order."""
    models = (hello or {}).get("models")
    if not isinstance(models, Mapping) or op not in MODEL_TASKS:
        return []
    names = models.get(MODEL_TASKS[op]) or []
    return [n for n in names if valid_model_name(n) and n not in BASE_MODELS]


#: A model's label is its name and the daemon's one-line note, cut to this many characters.
MODEL_LABEL_CHARS = 90


def model_label(name: str, note: Any = None) -> str:
    """A dialog label for an installed model: its name, then the daemon's note (``hello`` → ``model_notes``)."""
    if not isinstance(note, str) or not note.strip():
        return name
    label = f"{name} — {' '.join(note.split())}"
    return label if len(label) <= MODEL_LABEL_CHARS else label[: MODEL_LABEL_CHARS - 1].rstrip() + "…"


def model_choices(op: str, hello: Optional[Mapping[str, Any]], current: Optional[str] = None) -> List[Tuple[str, str]]:
    """(name, label) pairs for a dialog: auto / portrait / general, then what the daemon has installed
    (labelled with its note, ``model_label``).

    A ``current`` choice the daemon does not list (saved earlier, daemon not running) stays
    selectable, marked, so opening the dialog never changes a setting by itself.
    """
    notes = (hello or {}).get("model_notes")
    notes = notes if isinstance(notes, Mapping) else {}
    out = [(m, MODEL_LABELS[m]) for m in BASE_MODELS]
    out += [(n, model_label(n, notes.get(n))) for n in installed_models(hello, op)]
    if current and valid_model_name(current) and current not in dict(out):
        out.append((current, f"{current} (not reported by the daemon)"))
    return out


def fetch_hello(timeout_s: float = 0.5, transport: str = "auto") -> Optional[Dict[str, Any]]:
    """The daemon's full ``hello`` (with its models), or None when it does not answer quickly."""
    try:
        with editor_client.EditorClient(transport=transport, connect_timeout=timeout_s, retries=0) as client:
            return client.hello()
    except (editor_client.EditorError, OSError, ValueError):
        return None


# --------------------------------------------------------------------------- job parameters


#: The dialogs' edge controls (Select and Mask's), in the order the daemon applies them:
#: (job parameter, label, lowest, highest). Sizes are percent of the layer's short side, contrast percent.
EDGE_CONTROLS: Tuple[Tuple[str, str, float, float], ...] = (
    ("smooth", "Smooth e_dge (% of the short side)", 0.0, P.EDGE_MAX_PERCENT),
    ("feather", "_Feather (% of the short side)", 0.0, P.EDGE_MAX_PERCENT),
    ("contrast", "Edge _contrast (%)", 0.0, 100.0),
    ("shift_edge", "_Shift edge (% of the short side; - contracts)", -P.EDGE_MAX_PERCENT, P.EDGE_MAX_PERCENT),
)


def edge_params(edges: Optional[Mapping[str, float]], layer_width: int, layer_height: int) -> Dict[str, Any]:
    """The daemon's edge-control parameters for the dialog's values (``EDGE_CONTROLS`` names; 0 = off).

    The dialog's sizes are percent of the whole layer's short side; they are sent in pixels
    ("12.5px", protocol.parse_edge_size), so a crop never changes what a percentage means.
    Values out of range are clamped as the dialog's own sliders would; controls at 0 are not sent.
    """
    out: Dict[str, Any] = {}
    short = max(1, min(layer_width, layer_height))
    for name, _, lo, hi in EDGE_CONTROLS:
        value = float((edges or {}).get(name, 0.0) or 0.0)
        if value != value:  # NaN: off
            continue
        value = max(lo, min(hi, value))
        if value == 0:
            continue
        if name == "contrast":
            out[name] = value
        else:
            px = max(-P.EDGE_MAX_PX, min(P.EDGE_MAX_PX, value / 100.0 * short))
            out[name] = f"{round(px, 3):g}px"
    return out


def job_params(
    op: str,
    *,
    model: str,
    band_px: int,
    amount_percent: float,
    output: str,
    alpha_dtype: Optional[str] = None,
    edges: Optional[Mapping[str, float]] = None,
    layer_size: Tuple[int, int] = (1, 1),
) -> Dict[str, Any]:
    """The daemon parameters for a plug-in action (see mattekit.protocol.JOB_PARAMS).

    ``band_px`` is the resolved band (``resolve_band_px``); ``alpha_dtype`` None means the
    image's own precision. ``edges``: the dialog's edge controls (``edge_params``), sized from
    ``layer_size`` = (width, height) of the whole layer. Decontaminate sends only its amount:
    it keeps the user's matte as it is.
    """
    if op not in ("select_subject", "refine", "decontaminate"):
        raise ValueError(f"unknown op {op!r}")
    output = normalize_output(output)
    params: Dict[str, Any] = {"amount": max(0.0, min(1.0, float(amount_percent) / 100.0)), "outputs": ["foreground"]}
    if op == "decontaminate":
        return params
    params.update(edge_params(edges, *layer_size))
    if not valid_model_name(model):
        raise PluginError(f"unknown model {model!r}")
    if isinstance(band_px, bool) or not isinstance(band_px, int) or not 1 <= band_px <= BAND_MAX_PX:
        raise PluginError(f"edge band width must be automatic or 1..{BAND_MAX_PX} px")
    params.update(model=model, band_px=band_px, outputs=["alpha", "foreground"] if output == "foreground" else ["alpha"])
    if alpha_dtype is not None:
        params["alpha_dtype"] = alpha_dtype
    return params


# --------------------------------------------------------------------------- texts

TITLES: Dict[str, str] = {"select_subject": "Select Subject", "refine": "Refine Selection", "decontaminate": "Decontaminate Edge Colors"}
#: Progress stages the daemon reports, as the user reads them.
STAGES: Dict[str, str] = {
    "starting": "Starting the mattekit daemon",
    "sending": "Sending pixels",
    "queued": "Waiting for the matting daemon",
    "decode": "Preparing pixels",
    "trimap": "Finding the edge band",
    "alpha": "Solving the edge",
    "subject": "Finding the subject",
    "refine": "Refining the edge",
    "edges": "Adjusting the edge",
    "foreground": "Decontaminating edge colours",
    "encode": "Sending the result",
    "cancelling": "Cancelling",
}
MESSAGES: Dict[str, str] = {
    "one_layer": "mattekit works on one layer: select a single layer (not a mask or channel).",
    "refine_needs_selection": "Refine Selection needs a rough selection around the subject: make one first.",
    "selection_misses_layer": "The selection does not touch the active layer.",
    "decontaminate_needs_matte": "Decontaminate needs a matte: a selection, a layer mask, or a layer with transparency.",
    "job_running": "A mattekit job is still running; wait for it or cancel it first.",
    "source_gone": "The layer the job was started on is gone; the result was not applied.",
}
#: What each daemon error code means for the user (the daemon's message follows).
ERROR_HINTS: Dict[str, str] = {
    P.E_UNAVAILABLE: "The mattekit daemon is not running.",
    P.E_NO_MODEL: "No suitable model is installed.",
    P.E_TOO_LARGE: "The image is too large for the daemon's limits.",
    P.E_OUT_OF_MEMORY: "The daemon ran out of memory.",
    P.E_CANCELLED: "Cancelled.",
    P.E_UNAUTHORIZED: "The daemon refused the token (was it started by another user, or restarted with a new token?).",
    P.E_BUSY: "The daemon is busy with other jobs.",
}


def progress_text(stage: str, model: Optional[str] = None) -> str:
    """A short status line for a daemon progress stage (unknown stages still read well)."""
    text = STAGES.get(stage) or (stage.replace("_", " ").capitalize() if stage else "Working")
    return f"{text} ({model})" if model else text


def error_text(code: str, message: str) -> str:
    """A user-facing explanation of a daemon error: the code's meaning, then the daemon's message."""
    head = ERROR_HINTS.get(code, "mattekit failed.")
    return head if message.strip() in ("", "cancelled") else f"{head}\n\n{message}"
