"""Training recipes: TOML files, each optionally `extends` another (bundled ones live in recipes/)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

RECIPES_DIR = Path(__file__).parent / "recipes"


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`; tables merge recursively, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        mergeable = isinstance(v, dict) and isinstance(out.get(k), dict)
        if mergeable and "kind" in v and v["kind"] != out[k].get("kind"):
            mergeable = False  # a data spec of another kind replaces the table entirely
        out[k] = deep_merge(out[k], v) if mergeable else copy.deepcopy(v)
    return out


def load_recipe(path: str | Path) -> dict:
    """Read a TOML recipe, resolving `extends` (relative to the file, or a bundled recipe name)."""
    path = Path(path)
    if not path.is_file() and (RECIPES_DIR / path).is_file():
        path = RECIPES_DIR / path
    with open(path, "rb") as f:
        recipe = tomllib.load(f)
    recipe.setdefault("name", path.stem)  # each file names itself unless it says otherwise
    parent = recipe.pop("extends", None)
    if parent:
        p = (path.parent / parent) if (path.parent / parent).is_file() else RECIPES_DIR / parent
        recipe = deep_merge(load_recipe(p), recipe)
    return recipe


__all__ = ["RECIPES_DIR", "deep_merge", "load_recipe"]
