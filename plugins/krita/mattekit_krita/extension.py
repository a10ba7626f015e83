"""Krita actions, the worker thread and the user-facing messages.

The job runs in a QThread so Krita's UI stays responsive; a progress dialog (not
modal: the canvas stays usable) shows the daemon's stages and its Cancel button sends
``cancel``. Reading and writing pixels stay on the main thread (Krita's API is not
thread-safe). Stage labels and messages are the shared editor core's.
"""

from __future__ import annotations

import traceback
from typing import Any, Dict, Optional

from krita import Extension, Krita

from . import core, logic
from .bridge import editor_core as shared
from .logic import Options, PluginError
from .qt_compat import QMessageBox, QProgressDialog, QThread, Qt, Signal, exec_

SETTINGS_GROUP = "mattekit"

#: action id -> (menu text, menu location, default shortcut (as in mattekit_krita.action), job action or None for the dialog)
ACTIONS = {
    "mattekit_select_subject": ("Select Subject", "select", "Ctrl+Alt+Shift+S", "select_subject"),
    "mattekit_refine_selection": ("Refine Selection (mattekit)", "select", "Ctrl+Alt+Shift+R", "refine"),
    "mattekit_decontaminate": ("Decontaminate Edge Colors", "filter", "Ctrl+Alt+Shift+D", "decontaminate"),
    "mattekit_options": ("mattekit Options…", "select", "", None),
}


def install_action_file() -> bool:
    """Put the default shortcuts (``mattekit_krita.action``) where Krita reads them.

    Krita takes default shortcuts only from ``<resources>/actions/*.action``; without
    the file the actions still work and can be bound by hand, but show no default.
    The file is refreshed when the plug-in's copy changes; returns True when written.
    """
    import os
    import shutil

    src = os.path.join(os.path.dirname(__file__), "mattekit_krita.action")
    try:
        dest_dir = os.path.join(Krita.instance().getAppDataLocation(), "actions")
        dest = os.path.join(dest_dir, "mattekit_krita.action")
        with open(src, "rb") as f:
            want = f.read()
        if os.path.exists(dest):
            with open(dest, "rb") as f:
                if f.read() == want:
                    return False
        os.makedirs(dest_dir, exist_ok=True)
        shutil.copyfile(src, dest)
        return True
    except (OSError, AttributeError):  # read-only resources or an old API: defaults are cosmetic
        return False


def load_options() -> Options:
    return Options.from_json(Krita.instance().readSetting(SETTINGS_GROUP, "options", ""))


def save_options(options: Options) -> None:
    Krita.instance().writeSetting(SETTINGS_GROUP, "options", options.to_json())


class JobThread(QThread):
    """Runs one request against the daemon (optionally starting the daemon first)."""

    progressed = Signal(str, float)
    failed = Signal(str, str)  # code, message

    def __init__(self, req: logic.Request, *, start_daemon: bool = False, parent: Any = None):
        super().__init__(parent)
        self.req = req
        self.start_daemon = start_daemon
        self.cancelled = False
        self.result: Optional[tuple] = None

    def run(self) -> None:  # worker thread: no Krita API here
        try:
            if self.start_daemon:
                from .bridge import start_daemon

                self.progressed.emit("starting", 0.0)
                if not start_daemon():
                    self.failed.emit("daemon_unavailable", "The daemon did not start. Run `mattekit serve` in a terminal to see why.")
                    return
            self.result = core.run_request(
                self.req,
                progress=lambda stage, frac, _h: self.progressed.emit(stage, frac),
                should_cancel=lambda: self.cancelled,
            )
        except Exception as exc:  # EditorError carries the daemon's code; anything else is a bug
            code = getattr(exc, "code", "internal")
            message = getattr(exc, "message", None) or "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.failed.emit(code, message)


class MattekitExtension(Extension):
    def __init__(self, parent: Any):
        super().__init__(parent)
        self._job: Optional[Dict[str, Any]] = None

    def setup(self) -> None:
        install_action_file()

    def createActions(self, window: Any) -> None:
        for action_id, (text, menu, shortcut, job) in ACTIONS.items():
            # Registered Krita actions: default shortcuts come from mattekit_krita.action
            # (see install_action_file); users rebind them in Configure Krita ▸ Keyboard Shortcuts.
            action = window.createAction(action_id, text, menu)
            if job is None:
                action.triggered.connect(self.show_options)
            else:
                action.triggered.connect(lambda _checked=False, job=job: self.start(job))

    # ---- UI helpers

    @staticmethod
    def _parent() -> Any:
        win = Krita.instance().activeWindow()
        return win.qwindow() if win is not None else None

    def _message(self, title: str, text: str, icon: str = "warning") -> None:
        box = QMessageBox(self._parent())
        box.setIcon(getattr(QMessageBox.Icon, "Warning" if icon == "warning" else "Critical"))
        box.setWindowTitle(title)
        box.setText(text)
        exec_(box)

    def show_options(self) -> None:
        from .dialog import edit_options

        doc = Krita.instance().activeDocument()
        supports = core.supports_transparency_mask(doc) if doc is not None else hasattr(__import__("krita").Document, "createTransparencyMask")
        new = edit_options(load_options(), supports_mask=supports, parent=self._parent())
        if new is not None:
            save_options(new)

    # ---- running a job

    def start(self, action: str, *, start_daemon: bool = False, req_pixels: Any = None) -> None:
        if self._job is not None:
            self._message("mattekit", shared.MESSAGES["job_running"])
            return
        doc = Krita.instance().activeDocument()
        if doc is None:
            self._message("mattekit", "Open an image first.")
            return
        try:
            node = core.target_node(doc)
            req, pixels = req_pixels or core.read_request(doc, node, action, load_options())
        except PluginError as exc:
            self._message("mattekit", str(exc))
            return
        title = shared.TITLES[action]
        dlg = QProgressDialog(f"{title}: {shared.progress_text('sending')} ({req.width}×{req.height})…", "Cancel", 0, 100, self._parent())
        dlg.setWindowTitle("mattekit")
        # Not modal: painting and navigating go on while the daemon works (one job at a time, see above).
        dlg.setWindowModality(Qt.WindowModality.NonModal)
        dlg.setMinimumDuration(300)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        thread = JobThread(req, start_daemon=start_daemon)
        self._job = {"doc": doc, "node": node, "req": req, "pixels": pixels, "thread": thread, "dialog": dlg,
                     "action": action, "title": title, "error": None}

        def on_progress(stage: str, frac: float) -> None:
            dlg.setLabelText(f"{title}: {shared.progress_text(stage)}…")
            dlg.setValue(int(100 * max(0.0, min(1.0, frac))))

        def on_cancel() -> None:
            thread.cancelled = True
            dlg.setLabelText(f"{title}: {shared.progress_text('cancelling')}…")

        thread.progressed.connect(on_progress)
        thread.failed.connect(lambda code, msg: self._job is not None and self._job.update(error=(code, msg)))
        thread.finished.connect(self._finished)
        dlg.canceled.connect(on_cancel)
        thread.start()

    def _finished(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        job["dialog"].close()
        if job["error"] is not None:
            self._report(job, *job["error"])
            return
        header, buffers = job["thread"].result
        if not core.still_there(job["doc"], job["node"]):  # closed or deleted while the job ran
            self._message("mattekit", shared.MESSAGES["source_gone"])
            return
        try:
            core.apply_result(job["doc"], job["node"], job["req"], job["pixels"], header, buffers)
        except PluginError as exc:
            self._message("mattekit", str(exc))
            return
        from .bridge import warnings_text

        if warnings_text(header):
            self._message(f"mattekit: {job['title']}", warnings_text(header))

    def _report(self, job: Dict[str, Any], code: str, message: str) -> None:
        if code == "cancelled":
            return
        if code == "daemon_unavailable" and not job["thread"].start_daemon:
            from .bridge import daemon_command, sandbox_name

            if sandbox_name():  # the message says what to run on the host; a sandbox cannot start it
                self._message("mattekit", logic.error_text(code, message))
                return
            if daemon_command() is None:
                self._message("mattekit", logic.error_text(code, message) + "\n\nInstall mattekit (pip install mattekit) and run `mattekit serve`.")
                return
            ask = QMessageBox(self._parent())
            ask.setIcon(QMessageBox.Icon.Question)
            ask.setWindowTitle("mattekit")
            ask.setText("The mattekit daemon is not running. Start it now?")
            ask.setInformativeText(message)
            ask.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
            exec_(ask)
            if ask.clickedButton() == ask.button(QMessageBox.StandardButton.Yes):
                self.start(job["action"], start_daemon=True, req_pixels=(job["req"], job["pixels"]))
            return
        self._message(f"mattekit: {job['title']}", logic.error_text(code, message), "critical" if code == "internal" else "warning")
