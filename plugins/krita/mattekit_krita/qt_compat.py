"""PyQt5 (Krita 5) / PyQt6 (Krita 6) shim: import Qt from here, never from PyQt5 directly.

Krita 6 has already imported PyQt6 when a plug-in loads, so whichever binding is
loaded wins; otherwise PyQt5 is tried first. PyQt6 only accepts scoped enums
(``QMessageBox.StandardButton.Yes``), which PyQt5 >= 5.11 accepts too, so the plug-in
uses scoped names throughout and ``exec_`` hides the exec/exec_ rename.
"""

from __future__ import annotations

import sys

if "PyQt6" in sys.modules or "PyQt5" not in sys.modules and "PyQt6.QtCore" in sys.modules:
    _order = ("PyQt6", "PyQt5")
else:
    _order = ("PyQt5", "PyQt6")

QT_API = None
for _name in _order:
    try:
        if _name == "PyQt5":
            from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401
        else:
            from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
        QT_API = _name
        break
    except ImportError:
        continue
if QT_API is None:
    raise ImportError("mattekit needs PyQt5 or PyQt6 (Krita ships one of them)")

Qt = QtCore.Qt
QThread = QtCore.QThread
QTimer = QtCore.QTimer
Signal = QtCore.pyqtSignal
QKeySequence = QtGui.QKeySequence
QAction = getattr(QtGui, "QAction", None) or QtWidgets.QAction  # moved to QtGui in Qt 6

QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QFormLayout = QtWidgets.QFormLayout
QVBoxLayout = QtWidgets.QVBoxLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QComboBox = QtWidgets.QComboBox
QSpinBox = QtWidgets.QSpinBox
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QSlider = QtWidgets.QSlider
QCheckBox = QtWidgets.QCheckBox
QLabel = QtWidgets.QLabel
QMessageBox = QtWidgets.QMessageBox
QProgressDialog = QtWidgets.QProgressDialog
QApplication = QtWidgets.QApplication
QWidget = QtWidgets.QWidget


def exec_(obj):
    """Run a dialog's/message box's event loop (``exec`` in PyQt6, ``exec_`` in PyQt5)."""
    return obj.exec() if hasattr(obj, "exec") else obj.exec_()
