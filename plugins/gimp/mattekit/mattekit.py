#!/usr/bin/env python3
# -*- coding: utf-8 -*-
#   mattekit for GIMP 3: Select Subject, Refine Selection, Decontaminate Edge Colors.
#   Copyright (C) 2025 the mattekit authors
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
#
#   The matting runs in the local mattekit daemon (`mattekit serve`); this plug-in
#   reads pixels and the selection, sends them, shows progress and writes the answer
#   back at the image's own precision. Every rule both plug-ins share (crop, band,
#   outputs, models, job parameters, texts) is in mattekit_bridge.editor_core; the
#   Babl formats are in mattekit_logic; this file holds only GIMP API calls.

import json
import os
import signal
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mattekit_logic as L  # noqa: E402
from mattekit_bridge import editor_core as C  # noqa: E402
from mattekit_bridge import protocol as P  # noqa: E402
from mattekit_bridge.editor_client import EditorClient, EditorError, sandbox_name, start_daemon, warnings_text  # noqa: E402

PROC_SELECT = "plug-in-mattekit-select-subject"
PROC_REFINE = "plug-in-mattekit-refine-selection"
PROC_DECONTAMINATE = "plug-in-mattekit-decontaminate"
_RW = GObject.ParamFlags.READWRITE


def _choice(items):
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(items.items()):
        choice.add(nick, i, label, "")
    return choice


def _pair(ret):
    """(x, y) from a libgimp call that returns (ok, x, y) or (x, y)."""
    ret = tuple(ret)
    return ret[-2], ret[-1]


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


# --------------------------------------------------------------------------- pixels


def _read(buffer, rect, fmt):
    data = buffer.get(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), 1.0, fmt, Gegl.AbyssPolicy.NONE)
    return bytes(data)


def _write(drawable, rect, fmt, data):
    """Write a packed buffer at ``rect`` (drawable coordinates) and refresh the view."""
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), fmt, bytes(data))
    buffer.flush()
    drawable.update(rect.x, rect.y, rect.width, rect.height)


def _selection_bounds(image):
    ret = tuple(Gimp.Selection.bounds(image))
    non_empty, x1, y1, x2, y2 = ret[-5:]
    return C.Rect(x1, y1, x2 - x1, y2 - y1) if non_empty else None


def _layer_rect(layer):
    x, y = _pair(layer.get_offsets())
    return C.Rect(x, y, layer.get_width(), layer.get_height())


# --------------------------------------------------------------------------- the daemon


def _client():
    return EditorClient(transport=os.environ.get("MATTEKIT_TRANSPORT", "auto"))


def _ask_to_start(message):
    """Interactive only: offer to start the daemon. True once it answers."""
    from gi.repository import Gtk

    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION,
        buttons=Gtk.ButtonsType.YES_NO,
        text="The mattekit daemon is not running",
    )
    dialog.format_secondary_text(message + "\n\nStart it now? The first start loads the models and takes a few seconds.")
    answer = dialog.run()
    dialog.destroy()
    if answer != Gtk.ResponseType.YES:
        return False
    Gimp.progress_init("Starting the mattekit daemon")
    return start_daemon()


class _Terminated(BaseException):
    """Raised in the plug-in when it is asked to stop mid-job, so the client cancels the daemon's job."""


def _terminate(signum, frame):
    raise _Terminated()


def _run_job(op, inputs, params, run_mode):
    """Send one job with GIMP progress; on a missing daemon, offer to start it (interactive).

    Cancel: GIMP's progress Cancel ends the plug-in process (gimp_plug_in_close), so there
    is no callback to poll. A plug-in stopped by a signal cancels the job itself (run_job
    sends ``cancel`` on any exception); one killed outright closes its connection, and the
    daemon cancels the jobs of a client that went away (daemon._peer_gone).
    """
    def progress(stage, fraction, header):
        Gimp.progress_set_text(C.progress_text(stage, header.get("model")))
        Gimp.progress_update(max(0.0, min(1.0, fraction)))

    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        for attempt in (0, 1):
            client = _client()
            try:
                return client.run_job(op, inputs, params, progress=progress)
            except EditorError as exc:
                # In a sandbox there is nothing to offer: the message says what to run on the host.
                if (exc.code == P.E_UNAVAILABLE and attempt == 0 and run_mode == Gimp.RunMode.INTERACTIVE and not sandbox_name()
                        and _ask_to_start(exc.message)):
                    continue
                raise
            finally:
                client.close()
    finally:
        signal.signal(signal.SIGTERM, old)


_HELLO = []  # the daemon's hello, asked once per plug-in process (the model lists)


def _daemon_hello():
    if not _HELLO:
        _HELLO.append(C.fetch_hello(transport=os.environ.get("MATTEKIT_TRANSPORT", "auto")))
    return _HELLO[0]


def _log_timing(entry):
    path = os.environ.get("MATTEKIT_GIMP_TIMINGS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


# --------------------------------------------------------------------------- results


def _new_layer(image, source, name, rect, fmt, rgba):
    kind = Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY else Gimp.ImageType.RGBA_IMAGE
    layer = Gimp.Layer.new(image, name, rect.width, rect.height, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
    layer.set_offsets(rect.x, rect.y)
    _write(layer, C.Rect(0, 0, rect.width, rect.height), fmt, rgba)
    return layer


def _add_mask(layer, layer_rect, rect, pf, alpha):
    """Give ``layer`` (which has no mask) the mask ``alpha`` covering ``rect`` (image coordinates); zero elsewhere."""
    mask = layer.create_mask(Gimp.AddMaskType.BLACK)
    layer.add_mask(mask)
    _write(mask, rect.translate(-layer_rect.x, -layer_rect.y), pf.mask, alpha)
    return mask


def _set_selection(image, rect, pf, alpha):
    """Replace the selection by ``alpha`` covering ``rect`` (image coordinates)."""
    inside = rect.intersect(C.Rect(0, 0, image.get_width(), image.get_height()))
    if inside.empty:
        Gimp.Selection.none(image)
        return
    if inside != rect:
        alpha = C.crop_plane(alpha, rect.width, inside.translate(-rect.x, -rect.y), 1, pf.itemsize)
    channel = Gimp.Channel.new(image, "mattekit", image.get_width(), image.get_height(), 100.0, Gegl.Color.new("black"))
    image.insert_channel(channel, None, 0)
    _write(channel, inside, pf.channel, alpha)
    image.select_item(Gimp.ChannelOps.REPLACE, channel)
    image.remove_channel(channel)


def _apply(image, layer, layer_rect, rect, fmt, output, rgba, buffers, name):
    """Write the result for ``output`` (the shared vocabulary). The source layer and its mask are never overwritten."""
    if output == "foreground":
        return _new_layer(image, layer, name, rect, fmt.rgba, bytes(buffers["foreground"][1]))
    alpha = bytes(buffers["alpha"][1])
    if output == "selection":
        _set_selection(image, rect, fmt, alpha)
    elif output == "layer":
        _new_layer(image, layer, name, rect, fmt.rgba, C.cutout_pixels(rgba, fmt.dtype, alpha, fmt.dtype))
    elif layer.get_mask() is None:  # "mask" on a layer without one: the layer's pixels stay as they are
        _add_mask(layer, layer_rect, rect, fmt, alpha)
    else:  # "mask" on a layer that has one: keep it, and put the matte on a copy of the pixels
        copy = _new_layer(image, layer, name, rect, fmt.rgba, rgba)
        _add_mask(copy, rect, rect, fmt, alpha)
    return None


# --------------------------------------------------------------------------- actions


def _source_layer(procedure, drawables):
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return None, _error(procedure, C.MESSAGES["one_layer"], Gimp.PDBStatusType.CALLING_ERROR)
    return drawables[0], None


def _job(procedure, run_mode, image, layer, op, params, fmt, band_px):
    """Crop to the selection's box plus margin (every op), read, run. (rect, rgba, matte source, header, buffers) or an error."""
    layer_rect = _layer_rect(layer)
    sel = _selection_bounds(image)
    if op == "refine" and sel is None:
        return _error(procedure, C.MESSAGES["refine_needs_selection"])
    rect = C.work_rect(layer_rect, sel, band_px)
    if rect.empty:
        return _error(procedure, C.MESSAGES["selection_misses_layer"])
    local = rect.translate(-layer_rect.x, -layer_rect.y)
    rgba = _read(layer.get_buffer(), local, fmt.rgba)
    image_spec = P.BufferSpec("image", rect.width, rect.height, fmt.dtype, "RGBA", fmt.transfer)
    selection = _read(image.get_selection().get_buffer(), rect, fmt.mask) if sel is not None else None
    if selection is not None and C.is_all_zero(selection):
        if op != "decontaminate":
            return _error(procedure, C.MESSAGES["selection_misses_layer"])
        selection, rect, local = None, layer_rect, C.Rect(0, 0, layer_rect.width, layer_rect.height)  # no matte there: as if none
        rgba = _read(layer.get_buffer(), local, fmt.rgba)
        image_spec = P.BufferSpec("image", rect.width, rect.height, fmt.dtype, "RGBA", fmt.transfer)
    source = None
    if op == "decontaminate":
        try:
            source = C.decontaminate_matte_source(selection is not None, layer.get_mask() is not None, layer.has_alpha())
        except C.PluginError as exc:
            return _error(procedure, str(exc))
        if source == "mask":
            matte = _read(layer.get_mask().get_buffer(), local, fmt.mask)
        elif source == "alpha":
            matte = C.extract_channel(rgba, fmt.itemsize)
        else:
            matte = selection
        # When the matte *is* the layer's alpha, send opaque pixels so the daemon does not multiply it in twice.
        sent = C.fill_channel(rgba, fmt.itemsize, C.one_value(fmt.dtype)) if source == "alpha" else rgba
        inputs = [(image_spec, sent), (P.BufferSpec("alpha", rect.width, rect.height, fmt.dtype, "Y", "srgb"), matte)]
    else:
        inputs = [(image_spec, rgba)]
        if selection is not None:  # Refine's guidance; Select Subject stays inside it
            inputs.append((P.BufferSpec("guidance", rect.width, rect.height, fmt.dtype, "Y", "srgb"), selection))
    Gimp.progress_init(f"{C.TITLES[op]}: {C.progress_text('sending')}")
    t_read = time.perf_counter()
    try:
        header, buffers = _run_job(op, inputs, params, run_mode)
    except EditorError as exc:
        Gimp.progress_end()
        return _error(procedure, f"mattekit: {C.error_text(exc.code, exc.message)}")
    return rect, rgba, source, header, buffers, t_read


def matte_action(procedure, run_mode, image, drawables, config, op):
    """Select Subject and Refine Selection."""
    layer, err = _source_layer(procedure, drawables)
    if err:
        return err
    t0 = time.perf_counter()
    try:
        output = C.normalize_output(config.get_property("output"))
    except C.PluginError as exc:
        return _error(procedure, str(exc), Gimp.PDBStatusType.CALLING_ERROR)
    fmt = L.pixel_format(image.get_precision().value_nick)
    layer_rect = _layer_rect(layer)
    band_px = C.resolve_band_px(config.get_property("band-width"), layer_rect.width, layer_rect.height)
    edges = {name: config.get_property(name.replace("_", "-")) for name, _, _, _ in C.EDGE_CONTROLS}
    try:
        params = C.job_params(op, model=config.get_property("model"), band_px=band_px, amount_percent=config.get_property("amount"), output=output,
                              edges=edges, layer_size=(layer_rect.width, layer_rect.height))
    except C.PluginError as exc:
        return _error(procedure, str(exc), Gimp.PDBStatusType.CALLING_ERROR)
    got = _job(procedure, run_mode, image, layer, op, params, fmt, band_px)
    if not isinstance(got, tuple):
        return got
    rect, rgba, _, header, buffers, t_read = got
    t_daemon = time.perf_counter()
    image.undo_group_start()
    try:
        _apply(image, layer, layer_rect, rect, fmt, output, rgba, buffers, f"{layer.get_name()} (mattekit)")
    finally:
        image.undo_group_end()
    Gimp.progress_end()
    Gimp.displays_flush()
    if warnings_text(header):
        Gimp.message(warnings_text(header))
    _log_timing({"op": op, "rect": [rect.x, rect.y, rect.width, rect.height], "pixels": rect.width * rect.height, "read_s": t_read - t0, "job_s": t_daemon - t_read,
                 "write_s": time.perf_counter() - t_daemon, "total_s": time.perf_counter() - t0,
                 "daemon": header.get("timings", {}), "model": header.get("model"), "params": params})
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def decontaminate_action(procedure, run_mode, image, drawables, config):
    layer, err = _source_layer(procedure, drawables)
    if err:
        return err
    t0 = time.perf_counter()
    fmt = L.pixel_format(image.get_precision().value_nick)
    layer_rect = _layer_rect(layer)
    band_px = C.resolve_band_px(0, layer_rect.width, layer_rect.height)  # only sizes the crop's margin
    params = C.job_params("decontaminate", model="auto", band_px=band_px, amount_percent=config.get_property("amount"), output="foreground")
    got = _job(procedure, run_mode, image, layer, "decontaminate", params, fmt, band_px)
    if not isinstance(got, tuple):
        return got
    rect, rgba, source, header, buffers, t_read = got
    t_daemon = time.perf_counter()
    image.undo_group_start()
    try:
        _apply(image, layer, layer_rect, rect, fmt, "foreground", rgba, buffers, f"{layer.get_name()} (decontaminated)")
    finally:
        image.undo_group_end()
    Gimp.progress_end()
    Gimp.displays_flush()
    _log_timing({"op": "decontaminate", "rect": [rect.x, rect.y, rect.width, rect.height], "pixels": rect.width * rect.height, "read_s": t_read - t0,
                 "job_s": t_daemon - t_read, "write_s": time.perf_counter() - t_daemon, "total_s": time.perf_counter() - t0,
                 "daemon": header.get("timings", {}), "alpha_source": source, "params": params})
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


# --------------------------------------------------------------------------- the plug-in


class MatteKit(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_SELECT, PROC_REFINE, PROC_DECONTAMINATE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_attribution("mattekit authors", "mattekit authors", "2025")
        if name == PROC_SELECT:
            procedure.set_menu_label("Select S_ubject")
            procedure.add_menu_path("<Image>/Select/")
            procedure.set_documentation(
                "Select the main subject with a local matting model",
                "Finds the subject of the active layer and makes a soft selection, a layer mask or a cut-out layer. "
                "Needs the mattekit daemon (`mattekit serve`).",
                name,
            )
        elif name == PROC_REFINE:
            procedure.set_menu_label("Refine Se_lection...")
            procedure.add_menu_path("<Image>/Select/")
            procedure.set_documentation(
                "Refine a rough selection into a soft matte (hair, fur, fine edges)",
                "Solves the edge band around the current selection on the active layer. "
                "Needs the mattekit daemon (`mattekit serve`).",
                name,
            )
        else:
            procedure.set_menu_label("_Decontaminate Edge Colors...")
            procedure.add_menu_path("<Image>/Layer/Transparency/")
            procedure.set_documentation(
                "Remove background colour from soft edges",
                "Estimates the foreground colour where the matte (selection, layer mask or alpha) is partly transparent "
                "and writes a new layer. Needs the mattekit daemon (`mattekit serve`).",
                name,
            )
        if name != PROC_DECONTAMINATE:
            op = "refine" if name == PROC_REFINE else "select_subject"
            # auto / portrait / general, then what the daemon reports as installed for this op.
            models = dict(C.model_choices(op, _daemon_hello()))
            procedure.add_choice_argument("model", "_Model", "Which model finds the subject or solves the edge", _choice(models), "auto", _RW)
            procedure.add_int_argument("band-width", "Edge _band width", "Width of the uncertain edge band in pixels (0 = automatic)",
                                       0, P.BAND_MAX_PX, 0, _RW)
            # Select and Mask's edge controls (the shared core's list; the daemon applies them in this order).
            for key, label, lo, hi in C.EDGE_CONTROLS:
                procedure.add_double_argument(key.replace("_", "-"), label, "0 = off; sizes are a percentage of the layer's short side",
                                              lo, hi, 0.0, _RW)
        procedure.add_double_argument("amount", "Decontaminate _amount", "How much background colour to remove from edges (%)",
                                      0.0, 100.0, 100.0, _RW)
        outputs = L.OUTPUTS if name != PROC_DECONTAMINATE else L.DECONTAMINATE_OUTPUTS
        default = {PROC_SELECT: "selection", PROC_REFINE: "selection"}.get(name, "foreground")
        procedure.add_choice_argument("output", "Out_put", "Where the result goes", _choice(outputs), default, _RW)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, run_data):
        name = procedure.get_name()
        if run_mode == Gimp.RunMode.INTERACTIVE:
            from gi.repository import GimpUi

            GimpUi.init("mattekit")
            title = {PROC_SELECT: "Select Subject", PROC_REFINE: "Refine Selection"}.get(name, "Decontaminate Edge Colors")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
            dialog.fill(None)
            ok = dialog.run()
            dialog.destroy()
            if not ok:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        try:
            if name == PROC_DECONTAMINATE:
                return decontaminate_action(procedure, run_mode, image, drawables, config)
            return matte_action(procedure, run_mode, image, drawables, config, "refine" if name == PROC_REFINE else "select_subject")
        except Exception as exc:  # a plug-in crash loses the user's undo group: report instead
            import traceback

            traceback.print_exc()
            return _error(procedure, f"mattekit failed: {type(exc).__name__}: {exc}")


Gimp.main(MatteKit.__gtype__, sys.argv)
