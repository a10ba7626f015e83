"""`mattekit-data`: look at training data.

    mattekit-data preview SPEC [--split S] [--n 8] [--seed 0] [--thumb 192] [--colors K] -o sheet.png

SPEC is a dataset spec for `datasets.open_dataset` (``pets``, ``synthetic-val``, a folder,
``layout:folder``), a JSON data spec for `torchdata.build_dataset`
(``'{"kind": "composite", "crop": 512}'``), or a TOML recipe file (its ``[data.train]`` or
``[data]`` table, or the dotted table named by ``--table``, e.g. ``data.val``). Each sheet row is one sample: image, alpha or trimap,
guidance, the subject over a checkerboard, and the RoSTa glance target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import compose as C
from .contact import contact_sheet, cutout, save_png
from .datasets import Sample, open_dataset


def sample_row(s: Sample, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Contact-sheet cells for one dataset Sample."""
    row: list[tuple[str, Any]] = [(s.name, s.image)]
    if s.alpha is not None:
        a = s.alpha
        row.append(("alpha", a))
        guid = C.mg_perturb(a, rng)
        glance = C.rosta_targets(a, "tt")[0]
    else:
        a = s.trimap if s.trimap is not None else (s.mask if s.mask is not None else np.zeros(s.image.shape[:2]))
        guid = C.lasso_guidance((a >= 0.5).astype(np.float32), rng)
        glance = C.trimap_to_glance(s.trimap) if s.trimap is not None else None
    row.append(("trimap", s.trimap))
    if s.mask is not None:
        row.append(("mask (rough)", s.mask))
    row.append(("guidance mg" if s.alpha is not None else "guidance lasso", guid))
    fg = s.foreground if s.foreground is not None else s.image
    row.append(("cut-out" if s.alpha is not None else "cut-out (trimap)", cutout(fg, a)))
    row.append(("glance TT", glance))
    return row


def item_row(item: dict[str, Any], name: str) -> list[tuple[str, np.ndarray]]:
    """Contact-sheet cells for one torch dataset item (CHW tensors)."""
    def hw(k: str) -> np.ndarray:
        t = item[k].numpy()
        return t[0] if t.ndim == 3 and t.shape[0] == 1 else t.transpose(1, 2, 0)

    image, alpha = hw("image"), hw("alpha")
    fg = hw("foreground") if bool(item["has_fg"]) else image
    row = [(name, image), ("alpha" if bool(item["has_alpha"]) else "alpha (known only)", alpha),
           ("trimap", hw("trimap")), ("guidance", hw("guidance")), ("cut-out", cutout(fg, alpha)),
           ("glance", item["glance"].numpy()), ("boundary", hw("boundary"))]
    if bool(item["has_fg"]):
        row.append(("background", hw("background")))
    return row


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_recipe(path: Path) -> dict:
    """A TOML recipe with its `extends = "base.toml"` chain merged (tables merge deeply)."""
    import tomllib

    doc = tomllib.loads(path.read_text())
    base = doc.pop("extends", None)
    return _merge(_load_recipe(path.parent / base), doc) if base else doc


def _recipe_table(path: Path, table: str | None) -> dict:
    """The data spec in a recipe: --table (dotted), else [data.train], [data], or any table with `kind`."""
    doc = _load_recipe(path)
    if table:
        node: Any = doc
        for part in table.split("."):
            node = node[part]
        return node
    data = doc.get("data")
    if isinstance(data, dict):
        if "kind" in data:
            return data
        if isinstance(data.get("train"), dict) and "kind" in data["train"]:
            return data["train"]
    if "kind" in doc:
        return doc
    for v in doc.values():
        if isinstance(v, dict) and "kind" in v:
            return v
    raise SystemExit(f"{path}: no data spec ([data.train], [data] or a table with 'kind'); use --table")


def preview(spec: str, n: int = 8, seed: int = 0, split: str | None = None, thumb: int = 192,
            table: str | None = None) -> np.ndarray:
    """Build the preview contact sheet (HxWx3 uint8) for SPEC (see module docstring)."""
    rows = []
    if spec.lstrip().startswith("{") or spec.endswith(".toml"):
        from .torchdata import build_dataset

        d = json.loads(spec) if spec.lstrip().startswith("{") else _recipe_table(Path(spec), table)
        ds = build_dataset(d, seed)
        for i in range(min(n, len(ds))):
            rows.append(item_row(ds[i], f"{d.get('kind')} #{i}"))
    else:
        ds = open_dataset(spec, split)
        if len(ds) == 0:
            raise SystemExit(f"{spec}: empty dataset")
        pick = np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False)
        for i in sorted(int(j) for j in pick):
            rows.append(sample_row(ds[i], np.random.default_rng([seed, i])))
    return contact_sheet(rows, thumb=thumb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mattekit-data", description="Inspect mattekit training data.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preview", help="write a contact sheet of samples and their targets")
    p.add_argument("spec", help="dataset spec (pets, synthetic-val, FOLDER, LAYOUT:FOLDER), JSON data spec, or recipe .toml")
    p.add_argument("--split", default=None, help="split of a built-in set (train / test)")
    p.add_argument("--n", type=int, default=8, help="number of samples (rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thumb", type=int, default=192, help="thumbnail size in px")
    p.add_argument("--table", default=None, help="dotted TOML table holding the data spec (default: data.train or data)")
    p.add_argument("--colors", type=int, default=None, help="palette size for a smaller PNG (e.g. 128)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    args = ap.parse_args(argv)
    sheet = preview(args.spec, args.n, args.seed, args.split, args.thumb, args.table)
    out = save_png(args.output, sheet, args.colors)
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
