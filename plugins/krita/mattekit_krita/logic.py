"""Krita-free logic of the mattekit Krita plug-in: Krita's pixel layouts, options, requests, results.

Every rule both plug-ins share (channels, rectangles and the crop rule, the band rule,
outputs, models, job parameters, texts) lives in the shared editor core
(``mattekit_bridge.editor_core``, vendored beside the client core); this module only
maps Krita's layouts and settings onto it. Nothing here imports Krita, Qt or NumPy,
so it runs (and is unit-tested) on any Python 3.9+.

Pixel layout facts (Krita 5.x, ``Node.pixelData``): U8 and U16 are BGRA, F16 and F32
are RGBA, little-endian, 4/8/8/16 bytes per pixel; ``Selection.pixelData`` is one byte
per pixel. A float (and often a 16-bit) document made without a profile gets a
*linear* sRGB profile (``sRGB-elle-V2-g10.icc``): the transfer is read from the profile
name and sent with the pixels, so the daemon converts to perceptual values itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .bridge import editor_core as core

PluginError = core.PluginError
Rect = core.Rect

#: Krita colour depth -> (wire dtype, channel order, bytes per sample).
DEPTHS: Dict[str, Tuple[str, str, int]] = {
    "U8": ("u8", "BGRA", 1),
    "U16": ("u16", "BGRA", 2),
    "F16": ("f16", "RGBA", 2),
    "F32": ("f32", "RGBA", 4),
}
#: Index of the alpha channel in both orders.
ALPHA_INDEX = core.ALPHA

ACTIONS = ("select_subject", "refine", "decontaminate")
#: The shared output vocabulary; a transparency mask needs Krita 5.2 (else: a new layer with alpha).
OUTPUTS = core.OUTPUTS
OUTPUT_LABELS = dict(core.OUTPUT_LABELS, mask="Transparency mask on the layer")
BAND_MAX_PX = core.BAND_MAX_PX


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


# --------------------------------------------------------------------------- options


@dataclass
class Options:
    """The dialog's settings (also what the actions use)."""

    model: str = "auto"  # Select Subject's model: auto / portrait / general or an installed name
    refine_model: str = "auto"  # Refine Selection's model: auto or an installed name (classical, a PRN...)
    band_px: Optional[int] = None  # None = automatic width
    amount: int = 100  # decontaminate amount, percent
    output: str = "selection"  # OUTPUTS
    # Edge controls (core.EDGE_CONTROLS): sizes in percent of the canvas's short side, contrast in percent; 0 = off.
    smooth: float = 0.0
    feather: float = 0.0
    contrast: float = 0.0
    shift_edge: float = 0.0

    def validate(self) -> "Options":
        for key in ("model", "refine_model"):
            if not core.valid_model_name(getattr(self, key)):
                raise PluginError(f"unknown model {getattr(self, key)!r}")
        if self.band_px is not None and (isinstance(self.band_px, bool) or not isinstance(self.band_px, int) or not 1 <= self.band_px <= BAND_MAX_PX):
            raise PluginError(f"edge band width must be automatic or 1..{BAND_MAX_PX} px")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or not 0 <= self.amount <= 100:
            raise PluginError("decontaminate amount must be 0..100 %")
        for name, label, lo, hi in core.EDGE_CONTROLS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise PluginError(f"{label.replace('_', '')} must be {lo:g}..{hi:g}")
        if not isinstance(self.output, str):
            raise PluginError(f"unknown output {self.output!r}")
        self.output = core.normalize_output(self.output)
        return self

    def edges(self) -> Dict[str, float]:
        """The edge controls by job parameter name (for core.job_params)."""
        return {name: float(getattr(self, name)) for name, _, _, _ in core.EDGE_CONTROLS}

    def model_for(self, action: str) -> str:
        return self.refine_model if action == "refine" else self.model

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Options":
        """Options saved earlier; unknown keys and invalid values fall back to defaults, old output names are mapped."""
        try:
            d = json.loads(text) if text else {}
        except ValueError:
            d = {}
        if not isinstance(d, dict):
            d = {}
        opts = cls()
        for key in ("model", "refine_model", "band_px", "amount", "output", *(c[0] for c in core.EDGE_CONTROLS)):
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
    """One job to send: op, inputs as (descriptor fields, bytes), params, and where the answer goes.

    (x, y, width, height) is the rectangle sent, in image coordinates: the crop.
    """

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


def plan_crop(action: str, options: Options, canvas: Rect, selection: Optional[bytes]) -> Tuple[Rect, int, Optional[bytes]]:
    """What to send for ``action``: (rect in image coordinates, band in px, the selection cropped to it or None).

    ``selection`` is the canvas-sized ``Selection.pixelData`` (one byte per pixel) or None.
    The shared crop rule (selection's box plus margin, clipped) applies to every action;
    the band is fixed from the whole canvas so the crop never changes the result.
    """
    band_px = core.resolve_band_px(options.band_px, canvas.width, canvas.height)
    bounds = core.plane_bounds(selection, canvas.width, 1, (canvas.x, canvas.y)) if selection is not None else None
    if bounds is None:
        if action == "refine":
            raise PluginError(core.MESSAGES["refine_needs_selection"])
        return canvas, band_px, None
    rect = core.work_rect(canvas, bounds, band_px)
    return rect, band_px, core.crop_plane(selection, canvas.width, rect.translate(-canvas.x, -canvas.y), 1, 1)


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
    band_px: Optional[int] = None,
    canvas_size: Optional[Tuple[int, int]] = None,
) -> Request:
    """Turn an action, its options and the pixels read from Krita (already cropped) into a daemon request.

    pixels: ``width*height*fmt.pixel_bytes`` bytes as ``Node.pixelData`` returns them.
    selection: ``width*height`` bytes (``Selection.pixelData``) or None when nothing is selected.
    band_px: the resolved band (``plan_crop``); None: resolved from this request's size.
    canvas_size: (width, height) of the whole canvas, which the edge controls' percentages are of
    (a crop must not change them); None: this request's size.

    - select_subject: the image; the selection, if any, goes along as guidance (the subject stays inside it).
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
    if selection is not None and core.is_all_zero(selection):
        selection = None  # an empty selection is no selection
    band = core.resolve_band_px(band_px or options.band_px, width, height)
    image = ({"name": "image", "width": width, "height": height, "dtype": fmt.dtype, "order": fmt.order, "transfer": fmt.transfer}, pixels)

    def mask(name: str, data: bytes, dtype: str = "u8") -> Tuple[Dict[str, Any], bytes]:
        return ({"name": name, "width": width, "height": height, "dtype": dtype, "order": "Y", "transfer": "srgb"}, data)

    if action == "decontaminate":
        source = core.decontaminate_matte_source(selection is not None, False, True)  # Krita layers always have alpha
        alpha = mask("alpha", selection) if source == "selection" else mask("alpha", core.extract_channel(pixels, fmt.itemsize), fmt.dtype)
        params = core.job_params("decontaminate", model="auto", band_px=band, amount_percent=options.amount, output="foreground")
        return Request(action, "decontaminate", width, height, fmt, "foreground", params, [image, alpha], x, y)

    output = effective_output(options.output, supports_mask)
    if action == "refine" and selection is None:
        raise PluginError(core.MESSAGES["refine_needs_selection"])
    inputs = [image] + ([mask("guidance", selection)] if selection is not None else [])
    # Selections and masks are 8-bit in Krita; a cut-out layer's alpha keeps the layer's precision.
    params = core.job_params(action, model=options.model_for(action), band_px=band, amount_percent=options.amount, output=output,
                             alpha_dtype=fmt.dtype if output == "layer" else "u8", edges=options.edges(),
                             layer_size=canvas_size or (width, height))
    return Request(action, action, width, height, fmt, output, params, inputs, x, y)


# --------------------------------------------------------------------------- results


@dataclass
class Writes:
    """What to write back into Krita for one result (each covers the request's rectangle)."""

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
        return Writes(selection=core.convert_mask(alpha, spec["dtype"], "u8"))
    if req.output == "mask":
        return Writes(mask=core.convert_mask(alpha, spec["dtype"], "u8"))
    return Writes(layer=bytes(core.cutout_pixels(pixels, req.fmt.dtype, alpha, spec["dtype"])), layer_name="Cut-out" + tag)


def error_text(code: str, message: str) -> str:
    """A user-facing explanation of a daemon error code (the shared texts)."""
    return core.error_text(code, message)
