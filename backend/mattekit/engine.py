"""The job pipeline: wire arrays in, matting stages, wire arrays out.

The engine turns an editor's pixels into the project's conventions (`mattekit.codec`),
runs the op, and converts the results back to the request's precision.

Which method runs is decided by `mattekit.catalog` from one snapshot of the weights registry per
job (``choose_method``), and reported in the result header as ``model``.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import config, imageops
from . import protocol as P
from . import trimap as trimap_rules
from .catalog import Catalog, read_catalog
from .edges import apply_edge_params
from .model_notes import model_notes
# The wire codec and the band rules have their own modules; their names stay importable from here.
from .codec import decode_image, decode_layer_alpha, decode_mask, direct_foreground_encoding, encode_alpha, encode_foreground, foreground_spec, wire_rgb  # noqa: F401
from .trimap import selection_crop, snap_trimap, uncertain_trimap, within_selection  # noqa: F401

log = logging.getLogger("mattekit.engine")

Progress = Callable[..., None]


@dataclass
class EngineOutput:
    buffers: dict[str, tuple[P.BufferSpec, np.ndarray]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- engine


class Engine:
    """Runs jobs. Holds loaded models (resident between jobs)."""

    def __init__(self, *, learned: bool = True) -> None:
        #: False: classical methods only (no weights are looked up), e.g. for a baseline daemon.
        self.learned = learned
        self._job_catalog: Catalog | None = None  # read once at the start of each job
        self._runtimes: dict[str, Any] = {}
        #: Things the user must be told about the current job (e.g. a GPU fallback), sent in the result.
        self.warnings: list[str] = []

    # ---- what is installed

    def capabilities(self) -> dict[str, Any]:
        """hello's models by task, a one-line note on each (`model_notes`) and the devices: one registry read."""
        catalog = self.catalog()
        return {"models": catalog.by_task, "model_notes": model_notes(catalog.by_task, catalog.entries),
                "devices": self.devices()}

    @staticmethod
    def devices() -> list[str]:
        devs = ["cpu"]
        if "torch" not in sys.modules and _cpu_only_torch():
            return devs  # importing torch (~2 s) to learn there is no GPU would delay the first job
        try:
            import torch

            if torch.cuda.is_available():
                devs.append("cuda")
        except Exception:  # torch missing or broken: classical path only
            pass
        return devs

    def catalog(self) -> Catalog:
        """What is installed and how `auto` ranks it: read once per job (`run` holds it), else now."""
        return self._job_catalog or read_catalog(self.learned)

    def available_models(self) -> dict[str, list[str]]:
        """Installed weights by task, plus the always-available classical methods."""
        return self.catalog().by_task

    def choose_method(self, task: str, requested: str) -> str:
        """The weights name (or 'classical') to use for ``task`` given the request's ``model``
        (`catalog.Catalog.choose`)."""
        return self.catalog().choose(task, requested)

    def prepare(self) -> None:
        """Before the first job (the daemon's worker calls it at start): compile or load the solvers'
        kernels and load the default subject model, so the first Select Subject waits for neither.
        The two run at once (loading the kernels is mostly imports, the model's runs release the
        GIL); ONNX Runtime's first two runs are slow (0.5-1.0 s vs 0.33 s for u2netp), so both
        happen here."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="warm-up") as pool:
            kernels = pool.submit(warm_up)
            try:
                method = self.choose_method("trimap_free", "auto")
            except P.ProtocolError:  # no subject model installed
                method = None
            if method is not None:
                rt = self.runtime(method, P.JOB_PARAMS["device"])
                for _ in range(2):
                    rt.predict(np.full((64, 64, 3), 0.5, np.float32))
                self.warnings = []  # a CPU fallback said here is said again by the job that meets it
            kernels.result()  # warm_up's own failure, if any, is the caller's to report

    def runtime(self, name: str, device: str) -> Any:
        key = f"{name}@{device}"
        if key not in self._runtimes:
            onnx = self.catalog().onnx
            if name in onnx:
                from .packaged import load_packaged

                self._runtimes[key] = load_packaged(onnx[name], device=device)
            else:
                from .runtime import load_runtime

                self._runtimes[key] = load_runtime(name, device=device)
        rt = self._runtimes[key]
        if getattr(rt, "fallback_reason", None) and rt.fallback_reason not in self.warnings:
            self.warnings.append(rt.fallback_reason)  # never fall back silently
        return rt

    # ---- jobs

    def run(self, op: str, params: dict[str, Any], inputs: dict[str, np.ndarray], specs: list[P.BufferSpec], progress: Progress) -> EngineOutput:
        """One job: the wire inputs -> the wire outputs and the result's header fields."""
        self._job_catalog = read_catalog(self.learned)  # one snapshot of the registry per job
        try:
            return self._run(op, params, inputs, specs, progress)
        finally:
            self._job_catalog = None

    def _run(self, op: str, params: dict[str, Any], inputs: dict[str, np.ndarray], specs: list[P.BufferSpec], progress: Progress) -> EngineOutput:
        specs_by = {s.name: s for s in specs}
        ispec = specs_by["image"]
        self.warnings = []
        meta: dict[str, Any] = {"job": op}
        timings: dict[str, float] = {}
        guidance = None
        if "guidance" in inputs:
            kind = params["guidance_kind"]
            g = decode_mask(inputs["guidance"], specs_by["guidance"], lambda f: progress("decode", 0.01 * f))
            from .trimap import is_trimap as looks_like_trimap

            # tol 0.01: an 8-bit trimap's 128 is 0.502, not 0.5.
            is_trimap = kind == "trimap" or (kind == "auto" and looks_like_trimap(g, tol=0.01))
            guidance = snap_trimap(g) if is_trimap else g
            meta["guidance_kind"] = "trimap" if is_trimap else "mask"
            params = {**params, "guidance_kind": meta["guidance_kind"]}  # decided once, for refine
        elif params.get("box") is not None:
            from .rough import box_mask

            guidance = box_mask((ispec.height, ispec.width), tuple(params["box"]))
            meta["guidance_kind"] = "box"
            params = {**params, "guidance_kind": "mask"}
        coarse = crop = None
        if op == "select_subject":
            # The subject model needs only a working-size image: run it (and send the preview)
            # before the full-resolution decode, so the editor sees something at once. Inside a
            # selection it runs on the selection's crop: more of its pixels on the subject.
            if guidance is not None:
                crop = selection_crop(guidance, config.SELECT_CROP_MARGIN)
                meta["crop"] = [crop[2], crop[0], crop[3] - crop[2], crop[1] - crop[0]]  # x, y, width, height
            t = time.perf_counter()
            coarse, subject = self.coarse_subject(inputs["image"], ispec, params, progress, crop=crop)
            timings["subject_s"] = time.perf_counter() - t
        wants_foreground = "foreground" in params["outputs"] or op == "decontaminate"
        fg_method = self.foreground_method(params, (ispec.height, ispec.width)) if wants_foreground else None
        t0 = time.perf_counter()
        at = 0.36 if coarse is not None else 0.02
        progress("decode", at)
        if op == "decontaminate" and self.direct_foreground(fg_method, ispec):
            # The colour stage reads the wire's own pixels: no float image (12 B/px) is needed.
            image, layer_alpha = None, decode_layer_alpha(inputs["image"], ispec, lambda f: progress("decode", at + 0.02 * f))
        else:
            image, layer_alpha = decode_image(inputs["image"], ispec, lambda f: progress("decode", at + 0.02 * f))
        timings["decode_s"] = time.perf_counter() - t0
        progress("decode", at + 0.04)

        t1 = time.perf_counter()
        if op == "decontaminate":
            alpha = decode_mask(inputs["alpha"], specs_by["alpha"])
            meta["model"] = None
        elif op == "refine":
            alpha, meta["model"] = self.refine(image, guidance, params, progress, meta)
            meta["coverage"] = selected_fraction(alpha)
            self.warnings += coverage_warnings(meta["coverage"])
        else:  # select_subject
            alpha, meta["model"] = self.select_subject(image, coarse, subject, params, progress, crop=crop)
            if guidance is not None:
                alpha = within_selection(alpha, guidance, params["band_px"])
            meta["coverage"] = selected_fraction(alpha)
            self.warnings += coverage_warnings(meta["coverage"])
        # Select and Mask's edge controls; none asked: alpha untouched
        alpha = apply_edge_params(alpha, params, lambda f: progress("edges", 0.8 + 0.01 * f))
        timings["alpha_s"] = time.perf_counter() - t1

        out = EngineOutput(meta=meta)
        alpha_dtype = params["alpha_dtype"] or ispec.dtype
        if "alpha" in params["outputs"] and op != "decontaminate":
            out.buffers["alpha"] = encode_alpha(alpha, alpha_dtype, progress=lambda f: progress("encode", 0.8 + 0.01 * f))
        if wants_foreground:
            t2 = time.perf_counter()
            amount = config.DECONTAMINATE_AMOUNT if params["amount"] is None else float(params["amount"])
            out.buffers["foreground"] = self.foreground(inputs["image"], image, alpha, layer_alpha, amount, ispec, fg_method, params, progress)
            meta["foreground_model"] = fg_method
            timings["foreground_s"] = time.perf_counter() - t2
        progress("encode", 0.99)
        meta["timings"] = {k: round(v, 4) for k, v in timings.items()}
        if self.warnings:
            meta["warnings"] = list(self.warnings)
        return out

    def refine(self, image: np.ndarray, guidance: np.ndarray, params: dict[str, Any], progress: Progress,
               meta: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
        """Refine Selection: a mask's subject found first (`rough`), then alpha solved in the band
        around it; a trimap's band is solved as given. ``meta`` gets how the selection was read."""
        h, w = guidance.shape
        method = self.classical_if_thin(self.choose_method("guided", params["model"]), (h, w))
        band_px = params["band_px"] or trimap_rules.default_band_px(h, w)
        kind = params.get("guidance_kind", "auto")
        if kind == "auto":  # a caller in process (the daemon's jobs decided it in `run`)
            kind = "trimap" if trimap_rules.is_trimap(guidance, tol=0.01) else "mask"
        disputed = None
        if kind == "mask":
            guidance, disputed = self.rough_subject(image, guidance, band_px, params, progress, {} if meta is None else meta)
        progress("trimap", 0.08)
        trimap = trimap_rules.guidance_to_trimap(guidance, band_px, trimap=kind == "trimap",
                                           progress=lambda f: progress("trimap", 0.08 + 0.02 * f))
        if disputed is not None:
            trimap[disputed] = 0.5
        alpha = self.solve_band(image, trimap, guidance, method, params, lambda f: progress("alpha", 0.1 + 0.7 * f, model=method))
        return alpha, method

    def rough_subject(self, image: np.ndarray, guidance: np.ndarray, band_px: int, params: dict[str, Any], progress: Progress,
                      meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """The subject a rough mask selection means (`rough.find_subject`), at full resolution, and
        the pixels left to the band solve beside its band (None: none)."""
        from . import rough

        selected = np.count_nonzero(guidance >= 0.5)
        if selected == 0:
            raise P.ProtocolError(P.E_BAD_PARAMS, "the guidance selects nothing: draw a selection around the subject")
        if min(guidance.shape) < config.NET_MIN_SIDE:  # a strip: no room for a colour model around the selection
            return guidance, None
        subject = None
        if self.learned:
            try:
                name = self.choose_method("trimap_free", "auto")
            except P.ProtocolError:  # no subject model installed: the colour model alone
                name = None
            if name is not None and name not in self.catalog().people:
                rt = self.runtime(name, params["device"])
                subject = lambda crop: stretch_confidence(rt.predict(crop))[0]  # noqa: E731
        if selected >= (1 - config.SUBJECT_EMPTY_FRACTION) * guidance.size:
            self.warnings.append("the selection covers the whole image, so the subject was looked for in all of it")
        t = time.perf_counter()
        found = rough.find_subject(image, guidance, band_px, subject=subject, progress=lambda f: progress("segment", 0.06 + 0.02 * f))
        meta["selection"] = {"read_as": found.kind, "moved_px": round(found.moved_px, 2), "objects": found.blobs,
                             "segment_s": round(time.perf_counter() - t, 4)}
        self.warnings += found.notes
        # A selection kept as drawn keeps its own soft values (a feathered edge).
        return (guidance, found.disputed) if found.kind == "tight" else (found.mask, None)

    def classical_if_thin(self, method: str, shape: tuple[int, int]) -> str:
        """`method`, or "classical" (with a warning) for an image too thin for a network: one pads
        a thin strip to 64x its pixels and sees no context across it."""
        if method == "classical" or min(shape) >= config.NET_MIN_SIDE:
            return method
        self.warnings.append(
            f"the image is {shape[1]}x{shape[0]} px: too thin for {method} "
            f"(under {config.NET_MIN_SIDE} px across), so the classical solve was used")
        return "classical"

    def solve_band(self, image: np.ndarray, trimap: np.ndarray, guidance: np.ndarray, method: str, params: dict[str, Any], progress: Callable[[float], None]) -> np.ndarray:
        """Alpha at full resolution in the trimap's unknown band; known pixels copied from it."""
        from . import refine, tiling

        if method == "classical":
            return refine.closed_form_in_band(image, trimap, progress=progress, fallback=guidance)
        rt = self.runtime(method, params["device"])
        band = trimap_rules.unknown_region(trimap)

        def tile(box: tiling.Box) -> np.ndarray:
            y0, y1, x0, x1 = box
            return rt.predict(image[y0:y1, x0:x1], guidance=guidance[y0:y1, x0:x1])

        return tiling.run_tiled(tile, trimap.shape, band, trimap, tile=config.TILE_PX, overlap=config.TILE_OVERLAP_PX, progress=progress)

    def coarse_subject(self, wire: np.ndarray, spec: P.BufferSpec, params: dict[str, Any], progress: Progress,
                       crop: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, str]:
        """The subject model's alpha at working size (long side <= SUBJECT_WORKING_SIDE), from the wire
        image or its `crop` (y0, y1, x0, x1; the alpha is then the crop's).

        The area downscale runs on the wire array (8/16-bit or float) before any full-size float
        copy exists, which is most of the time to the preview at 12+ MP.
        """
        import cv2

        if params["model"] == "classical":
            raise P.ProtocolError(P.E_NO_MODEL, "Select Subject has no classical method: it needs a subject model")
        method = self.choose_method("trimap_free", params["model"])
        if params["model"] == "auto" and method in self.catalog().people:
            self.warnings.append(
                f"only a people model ({method}) is installed, so only people can be selected: "
                "run `mattekit models fetch u2netp` for any subject")
        progress("subject", 0.05, model=method)
        full = wire.shape[:2]
        if crop is not None:
            wire = wire[crop[0]:crop[1], crop[2]:crop[3]]
        h, w = wire.shape[:2]
        scale = min(1.0, config.SUBJECT_WORKING_SIDE / max(h, w))
        small = wire
        if scale < 1:
            src = wire if wire.dtype != np.float16 else wire.astype(np.float32)  # cv2 has no float16 resize
            small = cv2.resize(np.ascontiguousarray(src), (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            small = small.reshape(small.shape[:2] + (wire.shape[2],))
        small_image, _ = decode_image(small, spec)
        coarse, spread = stretch_confidence(self.runtime(method, params["device"]).predict(small_image))
        if spread < config.SUBJECT_MIN_SPREAD:
            self.warnings.append(
                f"the subject model ({method}) found no clear subject: its output spans only {spread:.2f} of 0..1")
        if params["preview"]:
            self.send_preview(coarse if crop is None else pasted(coarse, crop, full, config.PREVIEW_SIDE), progress)
        return coarse, method

    def select_subject(self, image: np.ndarray, coarse: np.ndarray, method: str, params: dict[str, Any], progress: Progress,
                       crop: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, str]:
        """Coarse-to-fine: the working-size alpha (of `crop`, y0, y1, x0, x1, when given) upsampled,
        then full-resolution alpha in the uncertain band only."""
        h, w = image.shape[:2]
        crop = crop or (0, h, 0, w)
        scale = coarse.shape[0] / (crop[1] - crop[0])
        up = pasted(coarse, crop, (h, w))
        trimap = uncertain_trimap(up, radius=max(2, int(np.ceil(1 / scale))))
        refiner = self.classical_if_thin(self.choose_method("guided", "auto"), (h, w))
        progress("refine", 0.4, model=refiner)
        alpha = self.solve_band(image, trimap, up, refiner, params, lambda f: progress("refine", 0.4 + 0.4 * f, model=refiner))
        return np.clip(alpha, 0, 1).astype(np.float32), f"{method}+{refiner}"

    @staticmethod
    def send_preview(alpha: np.ndarray, progress: Progress) -> None:
        """A low-resolution 8-bit alpha in a progress message, for the editor to show at once."""
        h, w = alpha.shape
        s = min(1.0, config.PREVIEW_SIDE / max(h, w))
        small = imageops.resize_area(alpha, (max(1, round(h * s)), max(1, round(w * s)))) if s < 1 else alpha
        spec, arr = encode_alpha(small, "u8")
        progress("preview", 0.35, buffers=[spec.to_json()], frames=[arr])

    def foreground_method(self, params: dict[str, Any], shape: tuple[int, int]) -> str:
        """The colour estimator for a job's foreground output. The `model` parameter names the alpha
        model; the colour estimator follows it only for "classical"."""
        return self.classical_if_thin(
            self.choose_method("foreground", "classical" if params["model"] == "classical" else "auto"), shape)

    @staticmethod
    def direct_foreground(method: str | None, ispec: P.BufferSpec) -> bool:
        """Whether the foreground is written straight into the wire buffer from the wire's own pixels."""
        return method == "classical" and direct_foreground_encoding(ispec)

    def foreground(self, wire: np.ndarray, image: np.ndarray | None, alpha: np.ndarray, layer_alpha: np.ndarray | None, amount: float,
                   ispec: P.BufferSpec, method: str, params: dict[str, Any], progress: Progress) -> tuple[P.BufferSpec, np.ndarray]:
        """The decontaminated foreground, alpha times the layer's own -> the wire buffer in the
        image's dtype, order and transfer. wire: the request's image; image: it decoded (None when
        `direct_foreground`, which needs only the wire)."""
        from . import foreground as fg

        progress("foreground", 0.82, model=method)
        if self.direct_foreground(method, ispec):
            fspec = foreground_spec(ispec)
            # Bit for bit what the decoded float image gives, reading 1-2 B per channel instead of 4.
            rgba = fg.classical_decontaminate_encoded(wire_rgb(wire, ispec), alpha, amount, P.numpy_dtype(ispec.dtype), bgr=fspec.order == "BGRA",
                                                      layer_alpha=layer_alpha, progress=lambda f: progress("foreground", 0.82 + 0.13 * f),
                                                      encode_progress=lambda f: progress("encode", 0.95 + 0.04 * f))
            return fspec, rgba
        if method == "classical":
            rgba = fg.classical_decontaminate(image, alpha, amount, progress=lambda f: progress("foreground", 0.82 + 0.13 * f))
        else:
            est = self.learned_foreground(image, alpha, method, params, lambda f: progress("foreground", 0.82 + 0.1 * f))
            rgba = fg.decontaminate(image, alpha, est, amount, progress=lambda f: progress("foreground", 0.92 + 0.03 * f))
        if layer_alpha is not None:
            rgba[..., 3] *= layer_alpha
        progress("encode", 0.95)
        return encode_foreground(rgba, ispec, progress=lambda f: progress("encode", 0.95 + 0.04 * f))

    def learned_foreground(self, image: np.ndarray, alpha: np.ndarray, method: str, params: dict[str, Any], progress: Callable[[float], None]) -> np.ndarray:
        """The colour network on tiles around the soft pixels only; elsewhere F is the image (alpha 0 or 1)."""
        import cv2

        from . import foreground as fg, tiling

        rt = self.runtime(method, params["device"])
        soft = cv2.dilate(fg.soft_region(alpha).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        # A net that corrects the classical estimate gets one full-frame solve (its coarse
        # levels see the whole picture) instead of one per tile.
        base = fg.classical_foreground(image, alpha) if getattr(rt.model, "residual", False) else None

        def tile(box: tiling.Box) -> np.ndarray:
            y0, y1, x0, x1 = box
            b = None if base is None else base[y0:y1, x0:x1]
            return rt.predict(image[y0:y1, x0:x1], alpha=alpha[y0:y1, x0:x1], base=b)

        return tiling.run_tiled(tile, alpha.shape, soft, image, tile=config.TILE_PX, overlap=config.TILE_OVERLAP_PX, progress=progress)


def warm_up() -> None:
    """Compile (the first time after install; numba caches it on disk) or load the solvers' kernels,
    so that no user's job waits for a compiler. `make setup` runs it; the daemon runs it on its
    worker at start, before the first job."""
    from . import foreground, refine

    yy, xx = np.mgrid[0:24, 0:24].astype(np.float32)
    alpha = np.clip((xx - 12) / 4 + 0.5, 0, 1)
    image = np.stack([alpha, 1 - alpha, 0.5 + 0 * alpha], -1).astype(np.float32)
    tri = trimap_rules.guidance_to_trimap((alpha > 0.5).astype(np.float32), 6)
    refine.closed_form_in_band(image, tri)
    refine.warm_up_ichol()  # a wide band's solve factorises; loading those kernels took ~0.5 s of a first job
    # dense_px=0: the band masks' kernels run too (a 24 px image is otherwise solved densely)
    foreground.estimate_foreground_ml_band(image, alpha, dense_px=0)
    foreground.classical_decontaminate(image, alpha, 0.5)  # the kernels' variants for a view into RGBA
    for dtype in (np.uint8, np.uint16):  # the integer buffers a foreground is written into directly ...
        foreground.classical_decontaminate_encoded(image, alpha, 1.0, dtype)  # ... from a decoded image
        rgba = imageops.from_float(np.dstack([image, alpha]), dtype)
        for wire in (rgba[..., :3], np.ascontiguousarray(rgba[..., :3])):  # ... from the wire's RGBA / RGB pixels
            foreground.classical_decontaminate_encoded(wire, alpha, 1.0, dtype)


def stretch_confidence(coarse: np.ndarray) -> tuple[np.ndarray, float]:
    """A subject model's output (H, W) mapped onto its own levels -> (alpha in [0, 1], spread).

    "Surely background / foreground" (config.UNCERTAIN_LOW/HIGH) must be relative to the model:
    one whose background never goes below 0.03 (or whose subject never reaches 0.98) would
    otherwise leave the whole frame unknown. Otsu's threshold splits the output into background
    and subject; their medians become 0 and 1 (a calibrated model, 0 and 1 already, is unchanged).
    ``spread`` is the distance between the medians; below SUBJECT_MIN_SPREAD (a flat output:
    no clear subject) the output is returned as is.
    """
    import cv2

    c = np.clip(coarse, 0.0, 1.0).astype(np.float32, copy=False)
    t, _ = cv2.threshold(np.round(c * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    below, above = c[c <= t / 255], c[c > t / 255]
    if below.size == 0 or above.size == 0:
        return c, 0.0
    lo, hi = float(np.median(below)), float(np.median(above))
    spread = hi - lo
    if spread < config.SUBJECT_MIN_SPREAD:
        return c, spread
    return np.clip((c - lo) / spread, 0.0, 1.0).astype(np.float32), spread


def pasted(alpha: np.ndarray, crop: tuple[int, int, int, int], shape: tuple[int, int], side: int | None = None) -> np.ndarray:
    """A crop's alpha (any size) resized onto its place (y0, y1, x0, x1) in a zero frame of `shape`
    (H, W), or of that shape scaled to at most `side` px on its long side: float32."""
    H, W = shape
    s = 1.0 if side is None else min(1.0, side / max(H, W))
    y0, y1, x0, x1 = (round(v * s) for v in crop)
    out = np.zeros((max(1, round(H * s)), max(1, round(W * s))), np.float32)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = alpha if alpha.shape == (y1 - y0, x1 - x0) else imageops.resize_linear(alpha, (y1 - y0, x1 - x0))
    return out


def selected_fraction(alpha: np.ndarray) -> float:
    """The fraction of the image that a matte selects (alpha > 0.5)."""
    return round(float(np.count_nonzero(alpha > 0.5)) / max(1, alpha.size), 6)


def coverage_warnings(covered: float) -> list[str]:
    """What the user must be told about a Select Subject result that selects nothing (``covered``
    below SUBJECT_EMPTY_FRACTION) or everything."""
    if covered < config.SUBJECT_EMPTY_FRACTION:
        return [f"no subject was found: {covered:.2%} of the image is selected"]
    if covered > 1 - config.SUBJECT_EMPTY_FRACTION:
        return [f"the whole image was selected ({covered:.2%}): no separate subject was found"]
    return []


def _cpu_only_torch() -> bool:
    """True when the installed torch is a CPU-only build (its version says `+cpu`) or absent, told
    from the package metadata without importing it."""
    from importlib import metadata

    try:
        return "+cpu" in metadata.version("torch")
    except metadata.PackageNotFoundError:
        return True
