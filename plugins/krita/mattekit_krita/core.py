"""Krita side of the actions, without any UI: read pixels, run the job, write the result.

The actions call these functions (the job itself in a worker thread); the headless
tests call the very same functions synchronously inside a real Krita. Every Krita
API call here must happen on Krita's main thread; only ``run_request`` may run on
another thread (it touches no Krita object).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

from . import logic
from .logic import Options, PluginError, Request

Buffers = Dict[str, Tuple[Dict[str, Any], Any]]


def supports_transparency_mask(doc: Any) -> bool:
    """Krita 5.2+ can create and fill a transparency mask from Python."""
    return hasattr(doc, "createTransparencyMask")


def doc_rect(doc: Any) -> Tuple[int, int, int, int]:
    """The document's canvas in image coordinates: (x, y, width, height)."""
    r = doc.bounds()
    return r.x(), r.y(), r.width(), r.height()


def target_node(doc: Any) -> Any:
    """The node to work on: the active layer (a mask's parent layer if a mask is active)."""
    node = doc.activeNode()
    if node is not None and node.type().endswith("mask"):
        node = node.parentNode()
    if node is None or node.type() in ("", "colorizemask"):
        raise PluginError("Select a layer to work on first.")
    return node


def read_pixels(node: Any, x: int, y: int, w: int, h: int) -> bytes:
    """The node's pixels as it looks (a group or filter layer: its rendered projection)."""
    if node.type() == "paintlayer":
        return bytes(node.pixelData(x, y, w, h))
    return bytes(node.projectionPixelData(x, y, w, h))


def read_request(doc: Any, node: Any, action: str, options: Options) -> Tuple[Request, bytes]:
    """Read what ``action`` needs from ``doc``/``node`` and build the daemon request.

    Only the selection's bounding box plus a margin is read and sent (the shared crop
    rule, for every action); without a selection, the whole canvas.
    """
    canvas = logic.Rect(*doc_rect(doc))
    fmt = logic.pixel_format(node.colorModel(), node.colorDepth(), node.colorProfile())
    sel = doc.selection()
    selection = bytes(sel.pixelData(canvas.x, canvas.y, canvas.width, canvas.height)) if sel is not None else None
    rect, band_px, selection = logic.plan_crop(action, options, canvas, selection)
    pixels = read_pixels(node, rect.x, rect.y, rect.width, rect.height)
    req = logic.build_request(action, options, fmt, rect.width, rect.height, pixels, selection,
                              supports_mask=supports_transparency_mask(doc), x=rect.x, y=rect.y, band_px=band_px,
                              canvas_size=(canvas.width, canvas.height))
    return req, pixels


def still_there(doc: Any, node: Any) -> bool:
    """Whether ``doc`` is still open and ``node`` still in it (the canvas stays usable while a job runs)."""
    try:
        from krita import Krita

        if not any(d == doc for d in Krita.instance().documents()):
            return False
        return node.parentNode() is not None
    except Exception:  # a wrapper of a deleted object
        return False


def make_client(**kwargs: Any) -> Any:
    """An EditorClient on the configured endpoint; MATTEKIT_TRANSPORT forces pyzmq or zmtp."""
    from .bridge import EditorClient

    kwargs.setdefault("transport", os.environ.get("MATTEKIT_TRANSPORT", "auto"))
    return EditorClient(**kwargs)


def run_request(
    req: Request,
    client: Any = None,
    *,
    progress: Optional[Callable[[str, float, dict], Any]] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
) -> Tuple[dict, Buffers]:
    """Send ``req`` to the daemon and wait for its answer (safe off the main thread).

    Returns (result header, {name: (descriptor dict, bytes)}); raises the bridge's
    EditorError with the daemon's error code.
    """
    from .bridge import BufferSpec

    own = client is None
    client = client or make_client()
    try:
        inputs = [(BufferSpec(**desc), data) for desc, data in req.inputs]
        header, bufs = client.run_job(req.op, inputs, req.params, progress=progress, should_cancel=should_cancel)
        return header, {name: (spec.to_json(), data) for name, (spec, data) in bufs.items()}
    finally:
        if own:
            client.close()


def _selection_from(data: bytes, req: Request) -> Any:
    from krita import Selection

    sel = Selection()
    sel.setPixelData(data, req.x, req.y, req.width, req.height)
    return sel


def apply_result(doc: Any, node: Any, req: Request, pixels: bytes, header: dict, buffers: Buffers) -> Dict[str, Any]:
    """Write the daemon's answer into Krita (main thread). Never overwrites the layer.

    Returns {"output": what was made, "node": the new node or None}.
    """
    writes = logic.result_writes(req, pixels, buffers, header.get("model"))
    made: Dict[str, Any] = {"output": req.output, "node": None}
    if writes.selection is not None:
        doc.setSelection(_selection_from(writes.selection, req))
    elif writes.mask is not None:
        mask = doc.createTransparencyMask("Matte")
        mask.setSelection(_selection_from(writes.mask, req))
        node.addChildNode(mask, None)
        made["node"] = mask
    elif writes.layer is not None:
        layer = doc.createNode(writes.layer_name, "paintlayer")
        # The new layer must hold the bytes in the format they were read in.
        if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (node.colorModel(), node.colorDepth(), node.colorProfile()):
            layer.setColorSpace(node.colorModel(), node.colorDepth(), node.colorProfile())
        parent = node.parentNode() or doc.rootNode()
        parent.addChildNode(layer, node)  # just above the source layer
        layer.setPixelData(writes.layer, req.x, req.y, req.width, req.height)
        made["node"] = layer
    doc.refreshProjection()
    return made


def run_sync(doc: Any, action: str, options: Options, client: Any = None) -> Dict[str, Any]:
    """Read, run and apply in one call on the calling thread (scripts and tests)."""
    node = target_node(doc)
    req, pixels = read_request(doc, node, action, options)
    header, buffers = run_request(req, client)
    made = apply_result(doc, node, req, pixels, header, buffers)
    made.update(header=header, request=req)
    return made
