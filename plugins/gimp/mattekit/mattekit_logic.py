"""The GIMP side of the shared editor core: which Babl formats read and write each precision.

Everything both plug-ins share (channels, rectangles, the crop and band rules, outputs,
models, job parameters, texts) is in ``mattekit_bridge.editor_core``, vendored beside
the client core by ``mattekit install-plugin``; this module adds only what is GIMP's own,
free of GIMP so it runs in plain unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass

try:
    from mattekit_bridge import editor_core as core  # installed layout: the vendored copy
except ImportError:  # pragma: no cover - running from a source checkout with backend/ on the path
    from mattekit import editor_core as core  # type: ignore[no-redef]

#: Choice labels of the GIMP procedures (nick -> label), in the shared vocabulary.
OUTPUTS = {k: core.OUTPUT_LABELS[k] for k in core.OUTPUTS}
DECONTAMINATE_OUTPUTS = {k: core.OUTPUT_LABELS[k] for k in core.DECONTAMINATE_OUTPUTS}


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
        return core.ITEMSIZE[self.dtype]


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
