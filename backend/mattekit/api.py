"""The Python API for scripts and notebooks::

    import mattekit
    alpha = mattekit.select_subject("dog.jpg")             # float32 (H, W) in [0, 1]
    cut = mattekit.cutout(pil_image, background="white")   # PIL in -> PIL out
    alpha = mattekit.refine_selection(photo, rough_mask)
    rgba = mattekit.decontaminate(photo, alpha)

The names are the editors' actions (Select Subject, Refine Selection, Decontaminate Edge Colors);
`mattekit.refine` stays the module of the classical solver.

Images may be a path, a PIL image or a NumPy array ((H, W) grey or (H, W, 3|4) RGB(A): uint8, uint16,
or float in [0, 1]). Results follow the input: PIL in gives PIL out; otherwise NumPy, with alpha as
float32 in [0, 1] and colour in the input's integer type (float32 for float input).

`backend`: "daemon" sends the job to the mattekit daemon (started if needed), "local" runs the same
engine in this process (no daemon; the models load on first use and stay loaded), "auto" (default)
uses a daemon that is already running, else local. Warnings (an empty selection, a CPU fallback)
are issued with `warnings.warn`; failures raise `MatteError`.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import imageops
from . import protocol as P
from .editor_client import EditorError as MatteError

_ENGINE: Any = None
_ENGINE_LOCK = threading.Lock()


def _to_array(image: Any, name: str) -> np.ndarray:
    """A path, PIL image or array -> the pixels as an array (checked: grey, RGB or RGBA; uint8, uint16 or float32)."""
    if isinstance(image, (str, Path)):
        from .files import read_picture

        return read_picture(image).pixels
    if _is_pil(image):
        mode = image.mode
        if mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(image, dtype=np.uint16)
        if mode == "I":
            return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
        if mode == "L":
            return np.asarray(image)
        return np.asarray(image.convert("RGBA" if "A" in mode or mode == "P" else "RGB"))
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{name} must be (H, W) or (H, W, 3|4), got shape {arr.shape}")
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{name} must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
    return arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _grey(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[..., 3] if arr.shape[2] == 4 else arr[..., :3].mean(axis=2).astype(arr.dtype)
    return np.ascontiguousarray(arr)


def _daemon_running() -> bool:
    from .client import Client

    try:
        with Client(autostart=False, connect_timeout=0.5, retries=0) as c:
            c.ping()
        return True
    except MatteError:
        return False


def _local(op: str, inputs: dict[str, tuple[np.ndarray, str | None, str]], params: dict[str, Any]) -> tuple[dict, dict]:
    """The daemon's engine in this process -> (header-like meta, {output name: array})."""
    global _ENGINE
    from .engine import Engine

    bufs = [P.buffer_from_array(name, arr, order=order, transfer=transfer) for name, (arr, order, transfer) in inputs.items()]
    specs = [spec for spec, _ in bufs]
    checked = P.check_job(op, params, specs)
    with _ENGINE_LOCK:  # one engine, one job at a time, as in the daemon
        if _ENGINE is None:
            _ENGINE = Engine()
        try:
            out = _ENGINE.run(op, checked, {spec.name: np.asarray(data).reshape(spec.height, spec.width, spec.channels)
                                            for spec, data in bufs}, specs, lambda *a, **k: None)
        except P.ProtocolError as exc:
            raise MatteError(exc.code, exc.message) from None
    return out.meta, {name: arr for name, (spec, arr) in out.buffers.items()}


def run(op: str, image: Any, *, guidance: Any = None, alpha: Any = None, backend: str = "auto", **params: Any) -> dict[str, Any]:
    """Run job `op` ("select_subject", "refine", "decontaminate") -> {"alpha": float32 (H, W) | None,
    "foreground": RGBA in the input's type | None, "model": str, "warnings": [str]}. params: the
    protocol's job parameters (outputs, model, band_px, amount, the edge controls smooth / feather /
    contrast / shift_edge, ...)."""
    if backend not in ("auto", "daemon", "local"):
        raise ValueError(f"backend must be 'auto', 'daemon' or 'local', got {backend!r}")
    pixels = _to_array(image, "image")
    inputs: dict[str, tuple[np.ndarray, str | None, str]] = {"image": (_rgb(pixels), "RGB", "srgb")}
    if guidance is not None:
        inputs["guidance"] = (_grey(_to_array(guidance, "guidance")), "Y", "srgb")
    if alpha is not None:
        inputs["alpha"] = (_grey(_to_array(alpha, "alpha")), "Y", "srgb")
    params = {"alpha_dtype": "f32", **params}
    if backend == "daemon" or (backend == "auto" and _daemon_running()):
        from .client import Client

        with Client(autostart=True) as c:
            result = c.run_job(op, inputs, params)
        meta, out = result.header, {"alpha": result.alpha, "foreground": result.foreground}
    else:
        meta, out = _local(op, inputs, params)
    a = out.get("alpha")
    if a is not None:
        a = np.asarray(a, np.float32).reshape(a.shape[0], a.shape[1])
    fg = out.get("foreground")
    said = list(meta.get("warnings", []))  # the engine's, an empty selection's included
    for w in said:
        warnings.warn(f"mattekit: {w}", stacklevel=3)
    return {"alpha": a, "foreground": None if fg is None else np.asarray(fg), "model": meta.get("model"), "warnings": said}


def _alpha_out(alpha: np.ndarray, as_pil: bool) -> Any:
    if not as_pil:
        return alpha
    from PIL import Image

    return Image.fromarray(imageops.from_float(alpha, np.uint8), "L")


def _rgba_out(rgba: np.ndarray, as_pil: bool) -> Any:
    if not as_pil:
        return rgba
    from PIL import Image

    if rgba.dtype != np.uint8:
        rgba = imageops.from_float(imageops.to_float(rgba), np.uint8)
    return Image.fromarray(np.ascontiguousarray(rgba), "RGBA" if rgba.shape[2] == 4 else "RGB")


def select_subject(image: Any, *, guidance: Any = None, box: tuple[int, int, int, int] | None = None, model: str = "auto",
                   backend: str = "auto", **edge: Any) -> Any:
    """The subject's alpha matte: float32 (H, W) in [0, 1] (PIL "L" for a PIL image). With a selection
    (``guidance``, a mask (H, W); or ``box``, (x, y, width, height) px) the subject inside it, found on its crop.
    ``edge``: the edge controls (smooth=, feather=, contrast=, shift_edge=; see docs/protocol.md)."""
    return _alpha_out(run("select_subject", image, guidance=guidance, backend=backend, model=model, outputs=["alpha"],
                          box=_box(box), **edge)["alpha"], _is_pil(image))


def refine_selection(image: Any, guidance: Any = None, *, box: tuple[int, int, int, int] | None = None, model: str = "auto",
                     band_px: int | None = None, backend: str = "auto", **edge: Any) -> Any:
    """A rough selection refined into a soft alpha matte: ``guidance`` a mask (H, W) (a loose lasso is
    fine) or a trimap 0 / 0.5 / 1, or ``box`` (x, y, width, height) px, "the object in here".
    ``edge``: the edge controls (smooth=, feather=, contrast=, shift_edge=; see docs/protocol.md)."""
    if (guidance is None) == (box is None):
        raise ValueError("refine_selection needs one selection: guidance= (a mask or trimap) or box=(x, y, width, height)")
    return _alpha_out(run("refine", image, guidance=guidance, box=_box(box), backend=backend, model=model, band_px=band_px,
                          outputs=["alpha"], **edge)["alpha"], _is_pil(image))


def _box(box: Any) -> list[int] | None:
    """A box as the protocol takes it: [x, y, width, height] of ints (the daemon checks it lies in the image)."""
    if box is None:
        return None
    try:
        out = [int(v) for v in box]
    except (TypeError, ValueError):
        out = []
    if len(out) != 4 or any(o != v for o, v in zip(out, box)):
        raise ValueError(f"box must be four integers (x, y, width, height), got {box!r}")
    return out


def decontaminate(image: Any, alpha: Any, *, amount: float = 1.0, backend: str = "auto") -> Any:
    """The cut-out (H, W, 4): edge colours freed of the old background by `amount` (0..1), alpha as given."""
    return _rgba_out(run("decontaminate", image, alpha=alpha, backend=backend, amount=amount, outputs=["foreground"])["foreground"],
                     _is_pil(image))


def cutout(image: Any, *, model: str = "auto", background: Any = None, backend: str = "auto") -> Any:
    """rembg's `remove`: the subject as RGBA (decontaminated edges), or on `background` (a colour
    "#rrggbb" / (r, g, b) in 0..1 / an image) as RGB."""
    from .files import over_background, parse_colour

    rgba = run("select_subject", image, backend=backend, model=model, outputs=["foreground"])["foreground"]
    if background is not None:
        if isinstance(background, str) and parse_colour(background) is not None:
            background = parse_colour(background)
        elif not isinstance(background, tuple):
            background = _rgb(_to_array(background, "background"))
        rgba = over_background(rgba, background)
    return _rgba_out(rgba, _is_pil(image))


def _is_pil(image: Any) -> bool:
    return hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray)


__all__ = ["MatteError", "cutout", "decontaminate", "refine_selection", "run", "select_subject"]
