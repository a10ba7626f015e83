"""Imports every model module so that it registers itself. Add new model files here."""

import importlib

for _mod in ("modnet", "prn", "fgnet", "gfm", "selfie", "u2net"):
    try:
        importlib.import_module(f"{__package__}.{_mod}")
    except ModuleNotFoundError as exc:  # a model file not written yet must not break the others
        if exc.name != f"{__package__}.{_mod}":
            raise
