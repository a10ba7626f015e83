"""Contact sheets: a grid of labelled thumbnails for looking at data and results.

Cells are (label, array) pairs; what an array shows depends on its form:

- HxW float (alpha, trimap, mask, error map): grey, 0 = black, 1 = white (clipped);
- HxW integer (class map, e.g. a RoSTa glance target): a fixed colour per class;
- HxWx3 float in [0,1] or uint8: RGB;
- HxWx4 (RGBA cut-out): composited over a grey checkerboard.

Use `cutout(rgb, alpha)` to build the RGBA for "subject over checkerboard".
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_LABEL_H = 22
_PAD = 4
_BG = np.array([40, 40, 40], np.uint8)
#: Colours of class maps: bg dark blue, 1 orange, 2 white, then distinct hues.
_PALETTE = np.array([[20, 30, 90], [240, 140, 30], [245, 245, 245], [60, 180, 75], [230, 25, 75],
                     [70, 240, 240], [145, 30, 180], [255, 225, 25]], np.uint8)


def checkerboard(h: int, w: int, cell: int = 12) -> np.ndarray:
    """HxWx3 float32 light/dark grey checkerboard."""
    yy, xx = np.mgrid[0:h, 0:w]
    c = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return np.repeat((0.6 + 0.25 * c)[..., None], 3, axis=2)


def cutout(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Stack colour HxWx3 and alpha HxW into an RGBA float32 HxWx4 cell."""
    return np.concatenate([rgb.astype(np.float32), alpha.astype(np.float32)[..., None]], axis=2)


def to_rgb8(arr: np.ndarray) -> np.ndarray:
    """Any cell array (see module docstring) -> HxWx3 uint8 for display."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, 2)  # CHW tensor layout
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2 and np.issubdtype(a.dtype, np.integer) and a.dtype not in (np.uint8, np.uint16):
        return _PALETTE[np.clip(a.astype(np.int64), 0, len(_PALETTE) - 1)]
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    else:
        f = np.nan_to_num(a.astype(np.float32))
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    elif f.shape[2] == 4:
        al = np.clip(f[..., 3:4], 0, 1)
        f = al * f[..., :3] + (1 - al) * checkerboard(f.shape[0], f.shape[1])
    elif f.shape[2] == 2:
        f = np.concatenate([f, np.zeros_like(f[..., :1])], axis=2)
    return (np.clip(f[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)


def _thumb(a: np.ndarray, thumb: int) -> np.ndarray:
    img = to_rgb8(a)
    h, w = img.shape[:2]
    s = thumb / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    small = cv2.resize(img, (nw, nh), interpolation=interp)
    out = np.empty((thumb, thumb, 3), np.uint8)
    out[:] = _BG
    y, x = (thumb - nh) // 2, (thumb - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


def contact_sheet(rows: list[list[tuple[str, np.ndarray]]], thumb: int = 256) -> np.ndarray:
    """Draw a grid: one row per list, each cell a `thumb`-px thumbnail under its label.

    rows: [[(label, array), ...], ...]; rows may differ in length; a None array leaves
    an empty cell. -> HxWx3 uint8 RGB.
    """
    ncol = max((len(r) for r in rows), default=1)
    cw, ch = thumb + _PAD, thumb + _LABEL_H + _PAD
    sheet = np.empty((max(1, len(rows)) * ch + _PAD, ncol * cw + _PAD, 3), np.uint8)
    sheet[:] = _BG // 2
    scale = 0.45 if thumb >= 160 else 0.35
    for r, row in enumerate(rows):
        for c, (label, arr) in enumerate(row):
            y, x = _PAD + r * ch, _PAD + c * cw
            if arr is not None:
                sheet[y + _LABEL_H:y + _LABEL_H + thumb, x:x + thumb] = _thumb(arr, thumb)
            text = str(label)
            max_chars = max(4, int(thumb / (19 * scale)))
            if len(text) > max_chars:
                text = text[:max_chars - 1] + "~"
            cv2.putText(sheet, text, (x + 2, y + _LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (230, 230, 230), 1, cv2.LINE_AA)
    return sheet


def save_png(path: str | Path, img: np.ndarray, colors: int | None = None) -> Path:
    """Write an HxWx3 (or HxW) uint8 RGB array as a compressed PNG; creates the folder.

    colors: quantise to a palette of this many colours (<= 256) for small files (docs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_rgb8(img) if img.dtype != np.uint8 or img.ndim == 2 else img
    if colors:
        from PIL import Image

        Image.fromarray(arr).quantize(colors=int(colors), dither=Image.Dither.NONE).save(path, optimize=True)
        return path
    if not cv2.imwrite(str(path), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
    return path


def matting_sheet(
    path: str | Path,
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    guidance: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
    thumb: int = 384,
) -> Path:
    """The picture of one matting result: input, guidance, alpha, cut-out over a checkerboard.

    image: HxWx3 (any dtype to_rgb8 reads); alpha, guidance: HxW; foreground: HxWx4 RGBA
    (the decontaminated layer) or None, in which case the input colours are cut out.
    """
    a = to_rgb8(alpha)[..., 0].astype(np.float32) / 255.0
    cells = [("input", image)]
    if guidance is not None:
        cells.append(("guidance", guidance))
    cells.append(("alpha", a))
    rgb = to_rgb8(image).astype(np.float32) / 255.0 if foreground is None else to_rgb8(foreground[..., :3]).astype(np.float32) / 255.0
    cells.append(("cut-out" if foreground is None else "decontaminated cut-out", cutout(rgb, a)))
    return save_png(path, contact_sheet([cells], thumb=thumb))
