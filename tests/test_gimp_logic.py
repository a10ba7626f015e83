"""The GIMP plug-in's own logic (no GIMP needed): Babl formats per precision, on top of the shared core.

The shared rules (channels, rectangles, crop, band, outputs, models, params) are tested in test_editor_core.py."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from mattekit import editor_core
from mattekit import protocol as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "gimp" / "mattekit"))
import mattekit_logic as L  # noqa: E402

COMPONENTS = ["u8", "u16", "u32", "half", "float", "double"]
TRCS = ["linear", "non-linear", "perceptual"]
NP = {"u8": np.uint8, "u16": np.uint16, "f16": np.float16, "f32": np.float32}


@pytest.mark.parametrize("comp,trc", list(itertools.product(COMPONENTS, TRCS)))
def test_pixel_format_keeps_precision_and_transfer(comp, trc):
    pf = L.pixel_format(f"{comp}-{trc}")
    assert pf.dtype in P.DTYPES and pf.itemsize == P.DTYPES[pf.dtype]
    # Never narrower than the image: 16-bit stays 16-bit, 32-bit and double go as float32.
    assert pf.itemsize >= {"u8": 1, "u16": 2, "half": 2}.get(comp, 4)
    linear = trc == "linear"
    assert pf.transfer == ("linear" if linear else "srgb")
    # Babl: ' (space TRC) and ~ (sRGB TRC) mark non-linear formats; coverage is never encoded.
    marker = {"linear": "", "non-linear": "'", "perceptual": "~"}[trc]
    assert pf.rgba.startswith(f"R{marker}G{marker}B{marker}A ") and pf.rgb == pf.rgba.replace("A ", " ", 1)
    assert pf.mask.startswith("Y ")
    # Only 8-bit non-linear images keep channels perceptual (GIMP 2.x compatibility).
    assert pf.channel == (pf.mask.replace("Y ", "Y' ") if (comp, trc) == ("u8", "non-linear") else pf.mask)
    suffix = pf.rgba.split()[-1]
    assert pf.rgb.split()[-1] == pf.mask.split()[-1] == suffix
    assert {"u8": "u8", "u16": "u16", "f16": "half", "f32": "float"}[pf.dtype] == suffix


def test_pixel_format_accepts_enum_names_and_rejects_nonsense():
    assert L.pixel_format("U16_LINEAR") == L.pixel_format("u16-linear") == L.pixel_format("GIMP_PRECISION_U16_LINEAR")
    for bad in ("u12-linear", "u8", "float-gamma", ""):
        with pytest.raises(ValueError):
            L.pixel_format(bad)


def test_the_plug_in_uses_the_shared_core_and_vocabulary():
    assert L.core is editor_core  # the same module (vendored as mattekit_bridge.editor_core when installed)
    assert list(L.OUTPUTS) == list(editor_core.OUTPUTS) and list(L.DECONTAMINATE_OUTPUTS) == ["foreground"]
    src = (Path(L.__file__).with_name("mattekit.py")).read_text()
    # No second copy of a shared rule in the plug-in: it calls the core.
    for name in ("def work_rect", "def default_band_px", "def job_params", "def progress_text", "def alpha_plane", "class Rect"):
        assert name not in src and name not in Path(L.__file__).read_text()


@pytest.mark.parametrize("precision", ["u8-non-linear", "u16-linear", "float-linear", "half-perceptual"])
def test_pixel_format_reads_match_the_core_sample_types(precision):
    pf = L.pixel_format(precision)
    assert pf.itemsize == editor_core.ITEMSIZE[pf.dtype]
    rgba = np.zeros((2, 3, 4), NP[pf.dtype]).tobytes()
    filled = editor_core.fill_channel(rgba, pf.itemsize, editor_core.one_value(pf.dtype))
    assert np.frombuffer(bytes(filled), NP[pf.dtype]).reshape(2, 3, 4)[..., 3].astype(float).min() > 0


def test_the_dialogs_offer_every_edge_control_and_send_them_sized_from_the_layer():
    src = (Path(L.__file__).with_name("mattekit.py")).read_text()
    # one argument per shared control (GIMP's names use dashes), read back under the same names
    assert "for key, label, lo, hi in C.EDGE_CONTROLS:" in src and 'add_double_argument(key.replace("_", "-")' in src
    assert 'config.get_property(name.replace("_", "-")) for name, _, _, _ in C.EDGE_CONTROLS' in src
    assert "edges=edges, layer_size=(layer_rect.width, layer_rect.height)" in src
    for name, label, lo, hi in editor_core.EDGE_CONTROLS:
        assert lo <= 0 < hi and "_" in label  # default 0 is in range; a mnemonic for GIMP's dialog
    mnemonics = [label[label.index("_") + 1].lower() for _, label, _, _ in editor_core.EDGE_CONTROLS]
    assert len(set(mnemonics)) == len(mnemonics) and not set(mnemonics) & {"m", "b", "a", "p"}  # _Model, _band, _amount, Out_put
