"""A throw-away Krita plug-in used by test_krita.py: inspects the real GUI, then quits.

Installed next to mattekit_krita as ``pykrita/mattekit_probe/__init__.py``. Once the
main window is up it records where mattekit's actions landed (menu, shortcut),
opens the plug-in's options dialog, drives its widgets, saves screenshots and
exits (``os._exit``: closing Krita from inside a handler is not reliable).
"""

import json
import os
import traceback

from krita import Extension, Krita

try:
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication, QProgressDialog, QPushButton
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication, QProgressDialog, QPushButton

OUT = os.environ.get("MATTEKIT_KRITA_PROBE_OUT", "")
IDS = ("mattekit_select_subject", "mattekit_refine_selection", "mattekit_decontaminate", "mattekit_options")


def _probe():
    info = {}
    try:
        window = Krita.instance().activeWindow() or Krita.instance().windows()[0]
        qwin = window.qwindow()
        menus = {}
        for top in qwin.menuBar().actions():
            if top.menu() is not None:
                menus[top.objectName()] = [a.objectName() for a in top.menu().actions()]
        info["menus"] = {i: [m for m, names in menus.items() if i in names] for i in IDS}
        info["shortcuts"] = {i: (Krita.instance().action(i).shortcut().toString() if Krita.instance().action(i) else None) for i in IDS}
        info["texts"] = {i: (Krita.instance().action(i).text() if Krita.instance().action(i) else None) for i in IDS}

        from mattekit_krita import core
        from mattekit_krita.bridge import editor_core
        from mattekit_krita.dialog import OptionsDialog
        from mattekit_krita.logic import Options

        doc = Krita.instance().createDocument(640, 400, "probe", "RGBA", "U8", "", 72.0)
        window.addView(doc)
        hello = editor_core.fetch_hello(timeout_s=5.0)  # the dialog lists what the daemon reports as installed
        dlg = OptionsDialog(Options(), supports_mask=core.supports_transparency_mask(doc), hello=hello, parent=qwin)
        info["refine_models"] = [dlg.refine_model.itemData(i) for i in range(dlg.refine_model.count())]
        info["subject_models"] = [dlg.model.itemData(i) for i in range(dlg.model.count())]
        info["refine_labels"] = [dlg.refine_model.itemText(i) for i in range(dlg.refine_model.count())]
        dlg.show()
        for _ in range(20):
            QApplication.processEvents()
        dlg.grab().save(os.path.join(OUT, "dialog.png"))
        dlg.band_auto.setChecked(False)
        dlg.band.setValue(24)
        dlg.amount_slider.setValue(35)
        dlg.model.setCurrentIndex(dlg.model.findData("portrait"))
        dlg.output.setCurrentIndex(dlg.output.findData("foreground"))
        dlg.edges["feather"].setValue(1.5)
        dlg.edges["shift_edge"].setValue(-0.25)
        info["edited"] = dlg.options().to_json()
        dlg.close()
        # The Select menu, opened for real, as the user sees it.
        top = next(a for a in qwin.menuBar().actions() if a.objectName().lower() == "select")
        bar = qwin.menuBar()
        top.menu().popup(bar.mapToGlobal(bar.actionGeometry(top).bottomLeft()))
        for _ in range(20):
            QApplication.processEvents()
        geo = top.menu().geometry()
        QApplication.primaryScreen().grabWindow(0, geo.x(), geo.y(), geo.width(), geo.height()).save(os.path.join(OUT, "menu.png"))
        top.menu().close()
        info["action_run"] = _run_action_through_ui(doc)
        info["cancel_run"] = _cancel_through_ui(window)
    except Exception:
        info["error"] = traceback.format_exc()
    with open(os.path.join(OUT, "probe.json"), "w") as f:
        json.dump(info, f)
    os._exit(0)


def _disc_layer(doc, radius):
    """A new paint layer of `doc`: a dark disc of `radius` px in the middle of a light background (BGRA)."""
    w, h = doc.width(), doc.height()
    layer = doc.createNode("Photo", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    px = bytearray()
    for y in range(h):  # one row at a time: a 6 MP document is filled in a second
        half = int(max(0.0, radius ** 2 - (y - h / 2) ** 2) ** 0.5)
        lo, hi = max(0, int(w / 2) - half), min(w, int(w / 2) + half)
        px += b"\xe0\xd0\xc0\xff" * lo + b"\x20\x30\x40\xff" * (hi - lo) + b"\xe0\xd0\xc0\xff" * (w - hi)
    layer.setPixelData(bytes(px), 0, 0, w, h)
    return layer


def _trigger_refine(doc, layer, rect):
    """Select `rect` (x, y, w, h) on `layer` and trigger Refine Selection like a user: -> (the
    selection's bytes before, the time it was triggered, whether the selection had already
    changed when the action returned: it must not, the job runs on a worker thread)."""
    import time

    from krita import Selection

    sel = Selection()
    sel.select(*rect, 255)
    doc.setSelection(sel)
    doc.setActiveNode(layer)
    for _ in range(10):
        QApplication.processEvents()
    before = bytes(doc.selection().pixelData(0, 0, doc.width(), doc.height()))
    t0 = time.perf_counter()
    Krita.instance().action("mattekit_refine_selection").trigger()
    done_at_return = bytes(doc.selection().pixelData(0, 0, doc.width(), doc.height())) != before
    return before, t0, done_at_return


def _run_action_through_ui(doc):
    """Trigger Refine Selection like a user (menu action -> worker thread -> result) and wait for it."""
    import time

    w, h = doc.width(), doc.height()
    layer = _disc_layer(doc, h / 4)
    before, t0, done_at_return = _trigger_refine(doc, layer, (int(w / 2 - h / 4 - 12), int(h / 4 - 12), int(h / 2 + 24), int(h / 2 + 24)))
    responsive = 0
    modality = set()
    while time.perf_counter() - t0 < 60:
        QApplication.processEvents()  # the UI thread keeps turning while the job runs
        responsive += 1
        modality |= {str(w.windowModality()) for w in QApplication.topLevelWidgets() if isinstance(w, QProgressDialog)}
        now = doc.selection()
        if now is not None and bytes(now.pixelData(0, 0, w, h)) != before:
            break
        time.sleep(0.01)
    after = doc.selection()
    data = bytes(after.pixelData(0, 0, w, h)) if after is not None else b""
    return {"changed": data != before and len(data) == w * h, "seconds": time.perf_counter() - t0, "progress_modality": sorted(modality),
            "event_loop_turns": responsive, "done_when_the_action_returned": done_at_return, "soft_pixels": sum(1 for v in data if 0 < v < 255),
            "selected_before": sum(1 for v in before if v > 127), "selected_after": sum(1 for v in data if v > 127)}


def _cancel_through_ui(window):
    """Refine Selection on a 6 MP photo, then the progress dialog's Cancel once the daemon reports
    progress: the job must end without touching the selection, and the UI must keep turning."""
    import time

    w, h = 3000, 2000
    doc = Krita.instance().createDocument(w, h, "cancel", "RGBA", "U8", "", 72.0)
    window.addView(doc)
    layer = _disc_layer(doc, h / 3)
    before, t0, _ = _trigger_refine(doc, layer, (w // 2 - h // 3 - 40, h // 6 - 40, 2 * h // 3 + 80, 2 * h // 3 + 80))
    cancelled_at = None
    value = label = None
    while time.perf_counter() - t0 < 120:
        QApplication.processEvents()
        dialogs = [d for d in QApplication.topLevelWidgets() if isinstance(d, QProgressDialog) and d.isVisible()]
        if cancelled_at is None and dialogs and dialogs[0].value() >= 10:  # the daemon is working on it
            value = dialogs[0].value()
            label = dialogs[0].labelText()
            dialogs[0].findChild(QPushButton).click()  # the user's click (cancel() alone would not emit `canceled`)
            cancelled_at = time.perf_counter()
        if cancelled_at is not None and not dialogs:
            break
        time.sleep(0.01)
    for _ in range(50):
        QApplication.processEvents()
        time.sleep(0.01)
    closed = None if cancelled_at is None else time.perf_counter() - cancelled_at
    # Krita is still running: the daemon must have stopped the job on the plug-in's cancel itself.
    from mattekit_krita.bridge import EditorClient

    c = EditorClient(connect_timeout=5, retries=0)
    try:
        t = time.perf_counter()
        while c.ping()["running"] and time.perf_counter() - t < 20:
            time.sleep(0.05)
        pong = c.ping()
    finally:
        c.close()
    now = doc.selection()
    after = bytes(now.pixelData(0, 0, w, h)) if now is not None else b""
    return {"cancelled_at_percent": value, "label": label, "closed_after_s": closed, "selection_unchanged": after == before,
            "daemon": {k: pong.get(k) for k in ("jobs", "cancel_requests", "queued")},
            "daemon_running": pong["running"], "daemon_jobs_cancelled": pong["jobs_cancelled"],
            "daemon_peers_gone": pong["peers_gone"]}


class Probe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        # The Window passed here is a temporary wrapper: look the window up again later.
        QTimer.singleShot(3000, _probe)


Krita.instance().addExtension(Probe(Krita.instance()))
