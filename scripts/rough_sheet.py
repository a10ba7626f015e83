"""Contact sheet of Refine Selection from a rough selection (#31): six Oxford-IIIT Pet test photos
(CC BY-SA 4.0, Parkhi et al.), each with a loose lasso and a rectangle drawn by the evaluation
harness (`mattekit-eval --guidance loose|rectangle`): the guidance over the photo, today's band-only
refine (`--pipeline classical`) and Refine Selection with the rough stage (`--pipeline refine`), as
cut-outs. Writes docs/img/rough_selection.png.

    PYTHONPATH=backend:training .venv/bin/python scripts/rough_sheet.py [N_PHOTOS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "training")]

from mattekit import contact  # noqa: E402
from mattekit_training import evaluate as E  # noqa: E402
from mattekit_training.datasets import open_dataset  # noqa: E402

KINDS = ("loose", "rectangle")


def shown(image: np.ndarray, guidance: np.ndarray) -> np.ndarray:
    """The photo with the selection as an editor shows it: the outside dimmed."""
    return (image * (0.35 + 0.65 * (guidance[..., None] >= 0.5))).astype(np.float32)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 6
    ds = open_dataset("pets", "test")
    rows = []
    for i in range(n):
        s = ds[i]
        row = []
        for kind in KINDS:
            g = E.make_guidance(kind, s)
            today = E.classical_alpha(s.image, g)
            new = E.refine_alpha(s.image, g)
            row += [(f"{kind} selection", shown(s.image, g)), ("today", contact.cutout(s.image, today)),
                    ("rough stage", contact.cutout(s.image, new))]
        rows.append(row)
        print(s.name, "done", flush=True)
    out = contact.save_png(ROOT / "docs" / "img" / "rough_selection.png", contact.contact_sheet(rows, thumb=168), colors=256)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
