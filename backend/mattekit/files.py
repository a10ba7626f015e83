"""Image files for the command line and the Python API: read, check and write, never losing work.

Pixels go through OpenCV (8/16-bit and float TIFF, which Pillow cannot do in colour); Pillow reads
only the metadata: the EXIF orientation (applied, so a phone photo comes out upright) and the ICC
profile (kept and embedded again in PNG and TIFF output). Every failure is an `ImageFileError`
with one line naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Extensions read as images (folders in batch mode are searched for these).
READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
#: Extensions that can hold transparency (a cut-out) and 16 bits: what we write without a background.
ALPHA_EXTENSIONS = (".png", ".tif", ".tiff")
#: Extensions we write at all (a mask or a cut-out on a background may go to any of them).
WRITE_EXTENSIONS = ALPHA_EXTENSIONS + (".jpg", ".jpeg", ".webp", ".bmp")
#: Stands for standard input / output.
STDIO = "-"


class ImageFileError(Exception):
    """A file that cannot be read or written as asked; str() is one line naming it."""


@dataclass
class Picture:
    """pixels: (H, W) or (H, W, 3|4) RGB(A) uint8 / uint16 / float32, upright; icc: the embedded profile."""

    pixels: np.ndarray
    icc: bytes | None = None


def _orientation_and_icc(data: bytes) -> tuple[int, bytes | None]:
    from PIL import Image, UnidentifiedImageError

    if data[:8] == PNG_SIGNATURE:
        return _png_orientation_and_icc(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            return orientation, im.info.get("icc_profile")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1, None  # OpenCV may still read it (e.g. a float TIFF); then it has no metadata we use


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_orientation_and_icc(data: bytes) -> tuple[int, bytes | None]:
    """A PNG's EXIF orientation and ICC profile, read from its eXIf and iCCP chunks without decoding the
    pixels: Pillow's getexif() decodes the whole image to look for an eXIf chunk after the pixel data
    (2.2 s for a 40 MP 16-bit PNG, on top of OpenCV's own decode)."""
    from PIL import Image

    view = memoryview(data)
    exif = icc = None
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        if kind == b"eXIf":
            exif = bytes(view[pos + 8:pos + 8 + length])
        elif kind == b"iCCP":  # name, 0, compression method 0, zlib data
            body = bytes(view[pos + 8:pos + 8 + length])
            with contextlib.suppress(zlib.error, ValueError):
                icc = zlib.decompress(body[body.index(b"\0") + 2:])
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    orientation = 1
    if exif:
        with contextlib.suppress(Exception):  # a damaged EXIF block: the picture as stored
            tags = Image.Exif()
            tags.load(exif)
            orientation = int(tags.get(0x0112, 1) or 1)
    return orientation, icc


def swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) RGB(A) <-> BGR(A), a new C-contiguous array. cv2's swap for the depths it has (5-10x
    numpy's strided copy: 0.7 s for a 40 MP 16-bit photo), numpy's for any other (a float64 TIFF)."""
    import cv2

    if pixels.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(pixels[..., [2, 1, 0, 3]] if pixels.shape[2] == 4 else pixels[..., ::-1])


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to (H, W[, C]) pixels: the upright picture."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return np.ascontiguousarray(ops[orientation](pixels)) if orientation in ops else pixels


def _is_truncated_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]


def read_picture(path: str | Path) -> Picture:
    """Read an image file (or standard input for "-") -> upright `Picture`. Raises ImageFileError."""
    import cv2

    name = "standard input" if str(path) == STDIO else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == STDIO else Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageFileError(f"{name} is a folder, not an image") from None
    except FileNotFoundError:
        raise ImageFileError(f"{name} does not exist") from None
    except OSError as exc:
        raise ImageFileError(f"cannot read {name}: {exc.strerror}") from None
    if not data:
        raise ImageFileError(f"{name} is empty")
    if _is_truncated_jpeg(data):
        raise ImageFileError(f"{name} is a truncated JPEG (no end marker): the file is incomplete")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageFileError(f"{name} is not an image this program can read (PNG, JPEG, TIFF, WebP, BMP)")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = swap_red_blue(arr)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim != 2:
        raise ImageFileError(f"{name} has {arr.shape[2]} channels; only grey, RGB and RGBA are supported")
    orientation, icc = _orientation_and_icc(data)
    return Picture(orient(np.ascontiguousarray(arr), orientation), icc)


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A grey mask the size of the image: a colour file gives its alpha if it has one, else its luminance."""
    m = read_picture(path).pixels
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 else m[..., :3].mean(axis=2).astype(m.dtype)
    if m.shape != tuple(shape):
        raise ImageFileError(f"mask {path} is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}")
    return np.ascontiguousarray(m)


def check_output(path: str | Path, *, transparent: bool, flag: str = "-o") -> None:
    """Before any work: can `path` be written and hold the result? Raises ImageFileError naming the flag.

    transparent: the result has transparency (a cut-out with no background), so the format must keep it.
    """
    if str(path) == STDIO:
        return
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        raise ImageFileError(f"{flag} {path} is a folder: give a file name (a folder is for several inputs)")
    ext = p.suffix.lower()
    if not ext:
        raise ImageFileError(f"{flag} {path} has no extension: end it in {', '.join(WRITE_EXTENSIONS)}")
    if ext not in WRITE_EXTENSIONS:
        raise ImageFileError(f"{flag} {path}: cannot write {ext} files; use {', '.join(WRITE_EXTENSIONS)}")
    if transparent and ext not in ALPHA_EXTENSIONS:
        raise ImageFileError(f"{flag} {path}: {ext} cannot hold the cut-out's transparency; write .png or .tif, "
                             "ask for the mask only (--output alpha), or give --background")
    check_folder(p.parent, flag=f"{flag} {path}")


def check_folder(folder: Path, *, flag: str) -> None:
    """Make `folder` (and its parents) and prove a file can be created in it, before any work."""
    import tempfile

    probe = Path(os.path.abspath(folder))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ImageFileError(f"{flag}: {probe} is a file, so no folder can be made inside it")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mattekit-probe-"):
            pass
    except OSError as exc:
        raise ImageFileError(f"{flag}: cannot write in {folder}: {exc.strerror}") from None


def _png_with_icc(png: memoryview, icc: bytes) -> list[Any]:
    """The PNG's pieces with an iCCP chunk after IHDR (PNG spec 11.3.3.3: name, 0, method 0, zlib data)."""
    body = b"ICC Profile\0\0" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return [png[:end_of_ihdr], chunk, png[end_of_ihdr:]]


def encode(pixels: np.ndarray, ext: str, icc: bytes | None = None) -> bytes:
    """(H, W[, 3|4]) RGB(A) uint8/uint16 (float: in [0, 1], written as 16 bits) -> file bytes of `ext`.

    JPEG and WebP take 8 bits (16-bit input is rounded); the ICC profile is kept in PNG and TIFF.
    """
    return b"".join(_encoded_pieces(pixels, ext, icc))


def _encoded_pieces(pixels: np.ndarray, ext: str, icc: bytes | None = None) -> list[Any]:
    """`encode`'s file as consecutive buffers, not copied into one (a 40 MP 16-bit PNG is 200+ MB)."""
    import cv2

    from . import imageops

    ext = ext.lower()
    eight_bit = ext in (".jpg", ".jpeg", ".webp", ".bmp")
    if pixels.dtype != np.uint8 and (eight_bit or pixels.dtype != np.uint16):
        pixels = imageops.from_float(imageops.to_float(pixels), np.uint8 if eight_bit else np.uint16)
    shape, dtype = pixels.shape, pixels.dtype
    if pixels.ndim == 3:
        pixels = swap_red_blue(pixels)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, pixels, params)
    del pixels  # the channel-swapped copy
    if not ok:
        raise ImageFileError(f"cannot encode a {shape} {dtype} image as {ext}")
    data = memoryview(buf).cast("B")
    if icc and ext == ".png":
        return _png_with_icc(data, icc)
    if icc and ext in (".tif", ".tiff"):
        return [_tiff_with_icc(data, icc)]
    return [data]


def _tiff_with_icc(data: memoryview, icc: bytes) -> Any:
    """The TIFF re-saved by Pillow with the profile when it is 8-bit; a 16-bit colour TIFF is kept as
    OpenCV wrote it, without the profile (OpenCV cannot embed one, and Pillow would lose the bits)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in ("L", "RGB", "RGBA"):
                return data  # 16-bit colour: Pillow would lose bits; the profile is dropped instead
            out = io.BytesIO()
            im.save(out, format="TIFF", icc_profile=icc, compression="tiff_lzw")
            return out.getvalue()
    except OSError:
        return data


def write_picture(path: str | Path, pixels: np.ndarray, icc: bytes | None = None) -> None:
    """Write to `path` (standard output for "-", as PNG) atomically: a partial file never replaces a good one."""
    if str(path) == STDIO:
        for piece in _encoded_pieces(pixels, ".png", icc):
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return
    p = Path(path)
    pieces = _encoded_pieces(pixels, p.suffix or ".png", icc)
    tmp = p.with_name(f".{p.name}.part")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # no half-written file left beside the result
        raise ImageFileError(f"cannot write {path}: {exc.strerror}") from None


def parse_colour(text: str) -> tuple[float, float, float] | None:
    """'#rrggbb', 'r,g,b' (0-255) or a few names -> RGB in [0, 1]; None when `text` is not a colour."""
    names = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128),
             "green": (0, 177, 64), "blue": (0, 71, 187)}
    t = text.strip().lower()
    rgb: tuple[int, ...] | None = None
    if t in names:
        rgb = names[t]
    elif t.startswith("#") and len(t) == 7:
        try:
            rgb = tuple(int(t[i : i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            return None
    elif t.count(",") == 2:
        try:
            rgb = tuple(int(v) for v in t.split(","))
        except ValueError:
            return None
        if not all(0 <= v <= 255 for v in rgb):
            return None
    return None if rgb is None else tuple(v / 255 for v in rgb)  # type: ignore[return-value]


def over_background(rgba: np.ndarray, background: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """Composite a straight-alpha RGBA cut-out (uint8/uint16/float) over a colour (RGB in [0, 1]) or an
    image (H, W, 3, any size: resized to cover) -> RGB of the cut-out's dtype."""
    import cv2

    from . import imageops

    f = imageops.to_float(rgba)
    h, w = f.shape[:2]
    if isinstance(background, tuple):
        bg = np.broadcast_to(np.asarray(background, np.float32), (h, w, 3))
    else:
        b = imageops.to_float(np.asarray(background))[..., :3]
        bg = cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA if b.shape[0] > h else cv2.INTER_LINEAR)
    a = f[..., 3:4]
    out = f[..., :3] * a + bg * (1 - a)
    return imageops.from_float(out, rgba.dtype if rgba.dtype in (np.uint8, np.uint16) else np.float32)
