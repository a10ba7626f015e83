"""Runs inside a real Krita (kritarunner): creates documents, runs the plug-in's actions, dumps results.

Started by tests/editors/test_krita.py as
``kritarunner -s krita_driver -f main`` with ``MATTEKIT_KRITA_JOB`` naming a JSON file:
``{"out": DIR, "cases": [{"name", "width", "height", "depth", "profile", "pixels": FILE,
"selection": FILE|null, "action", "options": {...}, "transport": "auto"|"zmtp"}]}``.
Each case writes ``<out>/<name>.json`` (what happened, timings) and ``<out>/<name>.<what>.bin``
(the selection or new layer's pixels as Krita holds them afterwards). Uses only the plug-in's
own functions (``mattekit_krita.core``), synchronously: the same code the actions run.
"""

import json
import os
import sys
import time
import traceback


def _run_case(k, case, out):
    from krita import Selection
    from mattekit_krita import core, logic

    w, h = case["width"], case["height"]
    doc = k.createDocument(w, h, case["name"], "RGBA", case["depth"], case.get("profile", ""), 72.0)
    layer = doc.createNode("Photo", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    with open(case["pixels"], "rb") as f:
        layer.setPixelData(f.read(), 0, 0, w, h)
    doc.setActiveNode(layer)
    if case.get("selection"):
        with open(case["selection"], "rb") as f:
            sel = Selection()
            sel.setPixelData(f.read(), 0, 0, w, h)
            doc.setSelection(sel)
    doc.refreshProjection()
    os.environ["MATTEKIT_TRANSPORT"] = case.get("transport", "auto")
    info = {"name": case["name"], "profile": doc.colorProfile(), "depth": doc.colorDepth(),
            "active_is_layer": doc.activeNode() is not None and doc.activeNode().name() == "Photo",
            "supports_mask": core.supports_transparency_mask(doc)}
    opts = logic.Options(**case.get("options", {}))
    t0 = time.perf_counter()
    try:
        node = core.target_node(doc) if info["active_is_layer"] else layer
        req, pixels = core.read_request(doc, node, case["action"], opts)
        t1 = time.perf_counter()
        header, buffers = core.run_request(req)
        t2 = time.perf_counter()
        made = core.apply_result(doc, node, req, pixels, header, buffers)
        t3 = time.perf_counter()
        info.update(ok=True, output=made["output"], model=header.get("model"), transfer=req.fmt.transfer, daemon_timings=header.get("timings"),
                    params=req.params, rect=[req.x, req.y, req.width, req.height], timings={"read_s": t1 - t0, "daemon_s": t2 - t1, "apply_s": t3 - t2, "total_s": t3 - t0})
        if made["output"] == "selection":
            data = bytes(doc.selection().pixelData(0, 0, w, h))
        else:
            data = bytes(made["node"].pixelData(0, 0, w, h))
            info["new_node"] = made["node"].name()
            info["layers"] = [n.name() for n in doc.rootNode().childNodes()]
        with open(os.path.join(out, case["name"] + ".bin"), "wb") as f:
            f.write(data)
    except Exception as exc:
        info.update(ok=False, code=getattr(exc, "code", type(exc).__name__), message=str(getattr(exc, "message", exc)),
                    trace=traceback.format_exc())
    with open(os.path.join(out, case["name"] + ".json"), "w") as f:
        json.dump(info, f)
    doc.close()


def main(*_args):
    try:
        with open(os.environ["MATTEKIT_KRITA_JOB"]) as f:
            job = json.load(f)
        from krita import Krita

        k = Krita.instance()
        with open(os.path.join(job["out"], "krita.json"), "w") as f:
            json.dump({"version": k.version(), "python": sys.version}, f)
        for case in job["cases"]:
            _run_case(k, case, job["out"])
        with open(os.path.join(job["out"], "done"), "w") as f:
            f.write("ok")
    except Exception:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # closing Krita from a script can hang or crash; results are on disk
