"""Measure, on the TRAIN splits, a candidate `auto` rule for Select Subject: when should the people model answer?

The rule: run the general model and the people model; take the people model's matte when the
two agree that the subject is people: IoU(general > 0.5, people > 0.5) of at least a threshold,
and the people mask covering at least MIN_AREA of the frame. This prints, for a grid of
thresholds, the coarse (working-size) score of the rule on each train set.

Result (docs/benchmarks.md): no threshold beats "never" by more than 0.002 on the train mean,
and at every threshold the people model also "agrees" on cats and dogs (it answers "the salient
subject", not "a person"), so `auto` uses the general model alone.

    PYTHONPATH=backend:training .venv/bin/python scripts/tune_auto_subject.py [--limit 100]
"""

from __future__ import annotations

import argparse

import numpy as np

from mattekit import imageops
from mattekit.engine import Engine, stretch_confidence
from mattekit_training import metrics as M
from mattekit_training.datasets import open_dataset

SETS = ("coco128-dominant", "coco128-persons", "feral-cats", "pets")
GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01)  # 1.01: never the people model
MIN_AREA = 0.02


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--general", default="u2netp")
    ap.add_argument("--people", default="modnet-photographic")
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()
    eng = Engine()
    eng.available_models()
    rts = {n: eng.runtime(n, "cpu") for n in (args.general, args.people)}
    rows = {}
    for name in SETS:
        ds = open_dataset(name, "train")
        rows[name] = []
        for i in range(min(len(ds), args.limit)):
            s = ds[i]
            h, w = s.image.shape[:2]
            scale = min(1.0, 1024 / max(h, w))
            small = imageops.resize_area(s.image, (max(1, round(h * scale)), max(1, round(w * scale)))) if scale < 1 else s.image
            g = stretch_confidence(rts[args.general].predict(small))[0]
            p = stretch_confidence(rts[args.people].predict(small))[0]
            agree = M.iou(g, (p > 0.5).astype(np.float32))
            up = lambda a: imageops.resize_linear(a, (h, w)) if a.shape != (h, w) else a  # noqa: E731
            score = (lambda a: M.iou(a, s.mask)) if s.mask is not None else (lambda a: M.known_region_agreement(a, s.trimap))
            rows[name].append((agree, float((p > 0.5).mean()), score(up(g)), score(up(p))))
    print(f"{'agreement >=':>13} " + " ".join(f"{n:>17}" for n in SETS) + "   mean")
    for t in GRID:
        means = []
        for name in SETS:
            r = rows[name]
            means.append(np.mean([sp if a >= t and area >= MIN_AREA else sg for a, area, sg, sp in r]))
        print(f"{t:>13.2f} " + " ".join(f"{m:>17.3f}" for m in means) + f"   {np.mean(means):.3f}")
    print("metric: IoU (coco128, feral-cats), known agreement (pets); train splits, first", args.limit, "images")


if __name__ == "__main__":
    main()
