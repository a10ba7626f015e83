"""The wire codec: an editor's pixels (any supported dtype, channel order and transfer) <-> the
project's conventions (``image`` float32 sRGB (H, W, 3), ``alpha``/``guidance`` float32 (H, W)).

Results go back at the request's precision: a 16-bit or float image never passes through 8 bits.
"""

from __future__ import annotations

import numpy as np

from . import config, imageops
from . import protocol as P
from .imageops import ProgressFn




def _unit(arr: np.ndarray, name: str, *, linear: bool = False, progress: ProgressFn | None = None) -> np.ndarray:
    """A wire channel view (H, W[, C]) → a new contiguous float32 array in [0, 1] (floats clipped;
    `linear`: linear light → sRGB-encoded values). NaN/Inf on the wire is the request's fault
    (`bad_values`, naming the buffer `name`), not ours.

    Made in strips of rows: each strip's channels are gathered (a small copy), checked, scaled
    into the output, and a checkpoint follows: at 100 MP first touching the output alone takes seconds.
    """
    out = np.empty(arr.shape, np.float32)
    floating = not np.issubdtype(arr.dtype, np.integer)

    def strip(y0: int, y1: int) -> None:
        part = imageops.to_float(np.ascontiguousarray(arr[y0:y1]))
        if floating:
            if not imageops.is_finite(part):
                raise P.ProtocolError(P.E_BAD_VALUES, f"'{name}' contains NaN or Inf values")
            np.clip(part, 0.0, 1.0, out=part)
        out[y0:y1] = imageops.linear_to_srgb(part) if linear else part

    imageops.run_strips(arr.shape[0], config.STRIP_PX // max(1, arr.shape[1]), strip, progress=progress, threads=config.THREADS)
    return out


def decode_image(arr: np.ndarray, spec: P.BufferSpec, progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Wire image (H, W, C) → (image float32 sRGB (H, W, 3) in [0, 1], layer alpha (H, W) or None).

    Each output is made from its own channels of the wire array (no float copy of all four).
    Matting works on perceptual values (what the models were trained on): linear light is encoded.
    progress: fraction done, after each strip of rows; raise from it to cancel.
    """
    report = progress or (lambda f: None)
    rgb = _unit(wire_rgb(arr, spec), spec.name, linear=spec.transfer == "linear", progress=lambda f: report(0.8 * f))
    return rgb, decode_layer_alpha(arr, spec, progress=lambda f: report(0.8 + 0.2 * f))


def wire_rgb(arr: np.ndarray, spec: P.BufferSpec) -> np.ndarray:
    """A view (H, W, 3) of the wire image's colour channels in RGB order (no copy; any strides)."""
    return arr[..., 2::-1] if spec.order.startswith("BGR") else arr[..., :3]


def decode_layer_alpha(arr: np.ndarray, spec: P.BufferSpec, progress: ProgressFn | None = None) -> np.ndarray | None:
    """The wire image's own alpha channel as float32 (H, W) in [0, 1], or None without one."""
    return _unit(arr[..., 3], spec.name, progress=progress) if spec.channels == 4 else None


def decode_mask(arr: np.ndarray, spec: P.BufferSpec, progress: ProgressFn | None = None) -> np.ndarray:
    """Wire single-channel buffer → float32 (H, W) in [0, 1]."""
    return _unit(arr[..., 0], spec.name, progress=progress)


def encode_alpha(alpha: np.ndarray, dtype: str, progress: ProgressFn | None = None) -> tuple[P.BufferSpec, np.ndarray]:
    out = imageops.from_float(alpha, P.numpy_dtype(dtype), progress=progress)
    return P.BufferSpec("alpha", alpha.shape[1], alpha.shape[0], dtype, "Y", "srgb"), np.ascontiguousarray(out)


def encode_foreground(rgba: np.ndarray, spec: P.BufferSpec, progress: ProgressFn | None = None) -> tuple[P.BufferSpec, np.ndarray]:
    """Decontaminated RGBA (float32 sRGB, modified in place) → RGBA/BGRA in the image's dtype and transfer."""
    if spec.transfer == "linear":
        rgba[..., :3] = imageops.srgb_to_linear(rgba[..., :3])
    out = imageops.from_float(rgba, P.numpy_dtype(spec.dtype), progress=progress)
    fspec = foreground_spec(spec)
    if fspec.order == "BGRA":
        out = out[..., [2, 1, 0, 3]]  # reorder the (smaller) encoded array, not the float one
    return fspec, np.ascontiguousarray(out)


def foreground_spec(spec: P.BufferSpec) -> P.BufferSpec:
    """The foreground's wire spec for an image of `spec`: four channels in its order, dtype and transfer."""
    order = "BGRA" if spec.order.startswith("BGR") else "RGBA"
    return P.BufferSpec("foreground", spec.width, spec.height, spec.dtype, order, spec.transfer)


def direct_foreground_encoding(spec: P.BufferSpec) -> bool:
    """Whether the classical foreground can be written straight into the wire buffer
    (`foreground.classical_decontaminate_encoded`): integer sRGB-encoded images."""
    return spec.dtype in ("u8", "u16") and spec.transfer != "linear"
