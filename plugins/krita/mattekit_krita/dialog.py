"""The options dialog: subject and refine models, edge band width, edge controls, decontaminate amount, output.

The model lists are auto / portrait / general, then what the daemon's ``hello`` reports
as installed (the shared core's ``model_choices``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from . import logic
from .bridge import editor_core as shared
from .logic import Options
from .qt_compat import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
    QSlider, QSpinBox, QVBoxLayout, Qt, exec_,
)


class OptionsDialog(QDialog):
    """Edits an Options; ``options()`` returns the edited copy."""

    def __init__(self, options: Options, *, supports_mask: bool = True, hello: Optional[Mapping[str, Any]] = None, parent: Any = None):
        super().__init__(parent)
        self.setWindowTitle("mattekit Options")
        form = QFormLayout()

        self.model = QComboBox()
        for key, label in shared.model_choices("select_subject", hello, options.model):
            self.model.addItem(label, key)
        self.model.setToolTip("Which model Select Subject uses (Automatic picks the best installed one).")
        form.addRow("Subject model:", self.model)

        self.refine_model = QComboBox()
        for key, label in shared.model_choices("refine", hello, options.refine_model):
            self.refine_model.addItem(label, key)
        self.refine_model.setToolTip("Which method Refine Selection uses (Automatic: the one measured best; classical: the closed-form solve).")
        form.addRow("Refine model:", self.refine_model)

        band_row = QHBoxLayout()
        self.band_auto = QCheckBox("Automatic")
        self.band = QSpinBox()
        self.band.setRange(1, logic.BAND_MAX_PX)
        self.band.setSuffix(" px")
        self.band.setToolTip("Width of the uncertain band around the selection edge where alpha is solved.")
        self.band_auto.toggled.connect(lambda on: self.band.setEnabled(not on))
        band_row.addWidget(self.band_auto)
        band_row.addWidget(self.band, 1)
        form.addRow("Edge band width:", band_row)

        # Select and Mask's edge controls, applied by the daemon in this order (shared.EDGE_CONTROLS).
        self.edges: dict = {}
        for name, label, lo, hi in shared.EDGE_CONTROLS:
            box = QDoubleSpinBox()
            box.setRange(lo, hi)
            box.setDecimals(2 if name != "contrast" else 0)
            box.setSingleStep(0.1 if name != "contrast" else 5)
            box.setSuffix(" %")
            box.setToolTip("0 = off. Sizes are a percentage of the canvas's short side.")
            self.edges[name] = box
            form.addRow(label.replace("_", "").split(" (")[0] + ":", box)

        amount_row = QHBoxLayout()
        self.amount_slider = QSlider(Qt.Orientation.Horizontal)
        self.amount_slider.setRange(0, 100)
        self.amount = QSpinBox()
        self.amount.setRange(0, 100)
        self.amount.setSuffix(" %")
        self.amount_slider.valueChanged.connect(self.amount.setValue)
        self.amount.valueChanged.connect(self.amount_slider.setValue)
        self.amount.setToolTip("How much of the background colour to remove from edge pixels (0 % keeps the original colours).")
        amount_row.addWidget(self.amount_slider, 1)
        amount_row.addWidget(self.amount)
        form.addRow("Decontaminate amount:", amount_row)

        self.output = QComboBox()
        for key in logic.OUTPUTS:
            label = logic.OUTPUT_LABELS[key]
            if key == "mask" and not supports_mask:
                label += " (needs Krita 5.2: new layer with alpha)"
            self.output.addItem(label, key)
        self.output.setToolTip("What Select Subject and Refine Selection produce. The layer itself is never overwritten.")
        form.addRow("Output:", self.output)

        note = QLabel("Select ▸ Select Subject, Select ▸ Refine Selection and Filter ▸ Decontaminate Edge Colors use these "
                      "settings. Shortcuts: Settings ▸ Configure Krita ▸ Keyboard Shortcuts (search “mattekit”).")
        note.setWordWrap(True)
        note.setStyleSheet("color: gray;")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.set_options(options)

    def set_options(self, o: Options) -> None:
        self.model.setCurrentIndex(max(0, self.model.findData(o.model)))
        self.refine_model.setCurrentIndex(max(0, self.refine_model.findData(o.refine_model)))
        self.band_auto.setChecked(o.band_px is None)
        self.band.setValue(o.band_px or 16)
        self.band.setEnabled(o.band_px is not None)
        self.amount.setValue(o.amount)
        self.output.setCurrentIndex(max(0, self.output.findData(o.output)))
        for name, box in self.edges.items():
            box.setValue(float(getattr(o, name)))

    def options(self) -> Options:
        return Options(
            model=self.model.currentData(),
            refine_model=self.refine_model.currentData(),
            band_px=None if self.band_auto.isChecked() else int(self.band.value()),
            amount=int(self.amount.value()),
            output=self.output.currentData(),
            **{name: float(box.value()) for name, box in self.edges.items()},
        ).validate()


def edit_options(options: Options, *, supports_mask: bool = True, parent: Any = None) -> Optional[Options]:
    """Show the dialog modally (it edits settings, not the canvas); the new options, or None when cancelled."""
    hello = shared.fetch_hello(transport=os.environ.get("MATTEKIT_TRANSPORT", "auto"))  # the installed models; None: base list only
    dlg = OptionsDialog(options, supports_mask=supports_mask, hello=hello, parent=parent)
    return dlg.options() if exec_(dlg) else None
