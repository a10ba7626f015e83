"""Contact sheet of Select Subject on the sample photos: each subject model alone (its stretched
output at full size, as `mattekit-eval --pipeline coarse:NAME` scores it) and what `auto` returns
(the band solve at full resolution, decontaminated cut-out). Writes docs/img/subject_models.png.

    PYTHONPATH=backend:training .venv/bin/python scripts/subject_sheet.py

Models that are not installed (`mattekit models fetch NAME`) get an empty column.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "training")]

from mattekit import contact, files, foreground, imageops  # noqa: E402
from mattekit_training.evaluate import subject_alpha  # noqa: E402

PHOTOS = ["chelsea.png", "astronaut.jpg", "coffee.jpg", "rocket.jpg"]
MODELS = ["u2netp", "isnet", "modnet-photographic", "selfie", "mattekit-subject-light"]


def main() -> int:
    from mattekit.engine import Engine

    available = set(Engine().available_models().get("trimap_free", []))
    coarse = {m: subject_alpha(m, coarse_only=True) for m in MODELS if m in available}
    final = subject_alpha("auto")
    rows = []
    for name in PHOTOS:
        image = imageops.to_float(files.read_picture(ROOT / "examples" / name).pixels[..., :3])
        row = [(name, image)]
        for m in MODELS:
            row.append((m, coarse[m](image, None) if m in coarse else None))
        alpha = final(image, None)
        rgba = foreground.classical_decontaminate(image, alpha, 1.0)
        row += [("auto: alpha", alpha), ("auto: cut-out", rgba)]
        rows.append(row)
        print(name, "done", flush=True)
    out = contact.save_png(ROOT / "docs" / "img" / "subject_models.png", contact.contact_sheet(rows, thumb=176), colors=256)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
