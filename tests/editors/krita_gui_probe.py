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
    from PyQt5.QtWidgets import QApplication
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

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
        from mattekit_krita.dialog import OptionsDialog
        from mattekit_krita.logic import Options

        doc = Krita.instance().createDocument(640, 400, "probe", "RGBA", "U8", "", 72.0)
        window.addView(doc)
        dlg = OptionsDialog(Options(), supports_mask=core.supports_transparency_mask(doc), parent=qwin)
        dlg.show()
        for _ in range(20):
            QApplication.processEvents()
        dlg.grab().save(os.path.join(OUT, "dialog.png"))
        dlg.band_auto.setChecked(False)
        dlg.band.setValue(24)
        dlg.amount_slider.setValue(35)
        dlg.model.setCurrentIndex(dlg.model.findData("portrait"))
        dlg.output.setCurrentIndex(dlg.output.findData("foreground"))
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
    except Exception:
        info["error"] = traceback.format_exc()
    with open(os.path.join(OUT, "probe.json"), "w") as f:
        json.dump(info, f)
    os._exit(0)


class Probe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        # The Window passed here is a temporary wrapper: look the window up again later.
        QTimer.singleShot(3000, _probe)


Krita.instance().addExtension(Probe(Krita.instance()))
