"""One matting example (`Sample`) and reading its image files: the layer under datasets and synthetic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


@dataclass
class Sample:
    """One matting example; optional fields are None when the source lacks them."""

    name: str
    image: np.ndarray  # HxWx3 float32 [0,1] sRGB
    alpha: np.ndarray | None = None  # HxW float32 [0,1], exact alpha when known
    trimap: np.ndarray | None = None  # HxW float32 {0,0.5,1}
    mask: np.ndarray | None = None  # HxW float32 {0,1}: rough subject label, never alpha
    foreground: np.ndarray | None = None  # HxWx3 float32, when known exactly
    background: np.ndarray | None = None  # HxWx3 float32


def _read_raw(path: str | Path) -> np.ndarray:
    """Read an image file without conversion (uint8/uint16, HxW or HxWxC, RGB order)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:  # GIF, odd formats, or a file with a wrong extension: let PIL try
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LA"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.array(im)
        return arr
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.divide(arr, np.float32(255), dtype=np.float32)
    if arr.dtype == np.uint16:
        return np.divide(arr, np.float32(65535), dtype=np.float32)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as float32 HxWx3 in [0, 1] (8- or 16-bit; grey expanded; alpha dropped)."""
    arr = _read_raw(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = arr[:, :, :3]
    return np.ascontiguousarray(_to_float(arr))


def load_gray(path: str | Path) -> np.ndarray:
    """Read a single-channel map (alpha, mask) as float32 HxW in [0, 1].

    Colour files use their first channel; an RGBA file with a non-trivial alpha channel
    uses that channel (some alpha sets are stored as cut-outs).
    """
    arr = _read_raw(path)
    if arr.ndim == 3:
        if arr.shape[2] == 4 and arr[:, :, 3].min() < arr[:, :, 3].max():
            arr = arr[:, :, 3]
        else:
            arr = arr[:, :, 0]
    return np.ascontiguousarray(_to_float(arr))


__all__ = ["Sample", "load_gray", "load_image"]
