# Runs inside gimp-console-3.0 (python-fu-eval): exec(open(".../gimp_batch.py").read())
#
# Drives the mattekit procedures through the PDB as a script would, and dumps what a
# test needs to check them against the daemon: the layer's pixels and the selection as
# the plug-in reads them (same Babl formats), then the selection / mask / new layer each
# procedure leaves behind. Reads SPEC (a JSON file, path in $MATTEKIT_BATCH_SPEC):
#   {"out": DIR, "cases": [{"name", "file", "precision", "canvas": [w, h, dx, dy],
#     "select": [x, y, w, h] | null (an ellipse), "select_rect": [x, y, w, h] | null,
#     "select_mask": FILE | null (raw bytes of an image-sized channel in the precision's "channel" format),
#     "select_from": CASE_NAME | null,
#     "premask": true | absent (give the layer a white mask first), "procedure", "args": {...}}]}
# The plug-in's timing lines ($MATTEKIT_GIMP_TIMINGS) written during a case go into its meta.
# Every failure is written to DIR/<case>/error.txt: a batch script that raises makes
# gimp-console wait forever, so nothing may escape.

import json as _json
import os as _os
import time as _time
import traceback as _tb

import gi as _gi

_gi.require_version("Gimp", "3.0")
_gi.require_version("Gegl", "0.4")
from gi.repository import Gegl as _Gegl, Gimp as _Gimp, Gio as _Gio  # noqa: E402


def _mk_main():
    spec = _json.load(open(_os.environ["MATTEKIT_BATCH_SPEC"]))
    out = spec["out"]
    pdb = _Gimp.get_pdb()
    fmts = spec["formats"]  # precision nick -> {"rgba": ..., "mask": ...} (from mattekit_logic)
    selections = {}

    def dump(d, name, drawable_or_buffer, rect, fmt):
        buf = drawable_or_buffer if isinstance(drawable_or_buffer, _Gegl.Buffer) else drawable_or_buffer.get_buffer()
        data = buf.get(_Gegl.Rectangle.new(*rect), 1.0, fmt, _Gegl.AbyssPolicy.NONE)
        with open(_os.path.join(d, name), "wb") as f:
            f.write(bytes(data))

    for case in spec["cases"]:
        d = _os.path.join(out, case["name"])
        _os.makedirs(d, exist_ok=True)
        meta = {}
        try:
            image = _Gimp.file_load(_Gimp.RunMode.NONINTERACTIVE, _Gio.File.new_for_path(case["file"]))
            prec = getattr(_Gimp.Precision, case["precision"].upper().replace("-", "_"))
            if image.get_precision() != prec:
                image.convert_precision(prec)
            layer = image.get_layers()[0]
            if not layer.has_alpha():
                layer.add_alpha()
            if case.get("canvas"):
                w, h, dx, dy = case["canvas"]
                image.resize(w, h, dx, dy)  # moves the layer: offsets in image coordinates
            fmt = fmts[case["precision"]]
            _, ox, oy = layer.get_offsets()
            lw, lh = layer.get_width(), layer.get_height()
            meta.update(offsets=[ox, oy], size=[lw, lh], image_size=[image.get_width(), image.get_height()],
                        precision=image.get_precision().value_nick)
            if case.get("select"):
                image.select_ellipse(_Gimp.ChannelOps.REPLACE, *case["select"])
            elif case.get("select_rect"):
                image.select_rectangle(_Gimp.ChannelOps.REPLACE, *case["select_rect"])
            elif case.get("select_from") or case.get("select_mask"):
                ch = _Gimp.Channel.new(image, "sel", image.get_width(), image.get_height(), 100.0, _Gegl.Color.new("black"))
                image.insert_channel(ch, None, 0)
                src = selections[case["select_from"]] if case.get("select_from") else open(case["select_mask"], "rb").read()
                # Raw copy: select_item takes a channel's stored values as they are (see mattekit_logic.PixelFormat.channel).
                ch.get_buffer().set(_Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()), fmt["channel"], src)
                ch.get_buffer().flush()
                image.select_item(_Gimp.ChannelOps.REPLACE, ch)
                image.remove_channel(ch)
            if case.get("premask"):
                layer.add_mask(layer.create_mask(_Gimp.AddMaskType.WHITE))
            dump(d, "in_rgba.bin", layer, (0, 0, lw, lh), fmt["rgba"])
            dump(d, "in_selection.bin", image.get_selection().get_buffer(), (ox, oy, lw, lh), fmt["mask"])
            n_layers = len(image.get_layers())

            proc = pdb.lookup_procedure(case["procedure"])
            config = proc.create_config()
            config.set_property("run-mode", _Gimp.RunMode.NONINTERACTIVE)
            config.set_property("image", image)
            config.set_core_object_array("drawables", [layer])
            for k, v in case.get("args", {}).items():
                config.set_property(k, v)
            timings = _os.environ.get("MATTEKIT_GIMP_TIMINGS", "")
            seen = len(open(timings).readlines()) if timings and _os.path.exists(timings) else 0
            t0 = _time.perf_counter()
            result = proc.run(config)
            meta["call_s"] = _time.perf_counter() - t0
            if timings and _os.path.exists(timings):
                meta["timings"] = [_json.loads(line) for line in open(timings).readlines()[seen:]]
            status = result.index(0)
            meta["status"] = status.value_nick
            if status != _Gimp.PDBStatusType.SUCCESS:
                err = result.index(1) if result.length() > 1 else None
                meta["message"] = getattr(err, "message", str(err))
            else:
                dump(d, "out_selection.bin", image.get_selection().get_buffer(), (ox, oy, lw, lh), fmt["mask"])
                selections[case["name"]] = bytes(image.get_selection().get_buffer().get(
                    _Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()), 1.0, fmt["mask"], _Gegl.AbyssPolicy.NONE))
                if layer.get_mask() is not None:
                    dump(d, "out_mask.bin", layer.get_mask(), (0, 0, lw, lh), fmt["mask"])
                layers = image.get_layers()
                meta["n_layers"] = [n_layers, len(layers)]
                if len(layers) > n_layers:
                    new = layers[image.get_item_position(layer) - 1]
                    _, nx, ny = new.get_offsets()
                    nw, nh = new.get_width(), new.get_height()
                    meta["new_layer"] = {"name": new.get_name(), "offsets": [nx, ny], "size": [nw, nh],
                                         "has_mask": new.get_mask() is not None}
                    dump(d, "new_rgba.bin", new, (0, 0, nw, nh), fmt["rgba"])
                    if new.get_mask() is not None:
                        dump(d, "new_mask.bin", new.get_mask(), (0, 0, nw, nh), fmt["mask"])
            image.delete()
        except Exception:
            with open(_os.path.join(d, "error.txt"), "w") as f:
                f.write(_tb.format_exc())
        with open(_os.path.join(d, "meta.json"), "w") as f:
            _json.dump(meta, f)


try:
    _mk_main()
except Exception:
    with open(_os.environ.get("MATTEKIT_BATCH_SPEC", "/tmp/spec") + ".error", "w") as _f:
        _f.write(_tb.format_exc())
