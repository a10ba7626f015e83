"""Matting dataset adapters: folders and built-in sets as lazy sequences of `Sample`.

`open_dataset(spec, split)` accepts

- a built-in name: ``pets``, ``coco128``, ``feral-cats``, ``synthetic-val``, ``synthetic-train``
  (real data is found under ``$MATTEKIT_SHARED_DATA`` or ``<repo>/../shared/data``; the
  splits are the fixed lists in ``mattekit_training/splits/``);
- a folder path whose layout is detected from its sub-folders, or ``layout:path`` to force one.

Layouts (sub-folder names are matched case-insensitively; aliases in brackets):

==============  ===========================================  ==========================
layout          folders                                      what a Sample gets
==============  ===========================================  ==========================
``adobe``       fg/ + alpha/ [GT] + (bg/ or merged/),        image, alpha, foreground,
                optional trimaps/ (Composition-1k,           background (when composed)
                Distinctions-646, AIM-style fg/alpha sets)
``am2k``        original/ + mask/ (alpha), optional trimap/  image, alpha (+ trimap)
                (AM-2k, AIM-500)
``p3m``         blurred_image/ + mask/ (alpha), optional     image, alpha (+ trimap)
                trimap/ (P3M-10k, P3M-500-P/NP)
``ppm``         image/ + matte/ (PPM-100)                    image, alpha
``image_alpha`` image/ [images] + alpha/ [alphas]            image, alpha
``image_mask``  image/ [images] + mask/ [masks] (binary)     image, mask, trimap (band)
``image_trimap`` image/ [images] + trimap/ [trimaps]         image, trimap
==============  ===========================================  ==========================

Trimap files may use the Oxford-Pet convention (1 = subject, 2 = background, 3 = unknown)
or grey levels (0 / 128 / 255, or 16-bit); both become {0, 0.5, 1}. Binary polygon masks
are rough subject labels: they fill ``Sample.mask`` (never ``alpha``) and a trimap with an
unknown band around their edge.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SPLITS_DIR = Path(__file__).parent / "splits"
BUILTIN = ("pets", "coco128", "coco128-dominant", "coco128-persons", "feral-cats", "synthetic-val", "synthetic-train")
#: Fixed sizes and seeds of the synthetic sets (changing them changes every reported number).
SYNTHETIC_VAL = {"n": 60, "size": 512, "seed": 20240601, "backgrounds": "val"}
SYNTHETIC_TRAIN = {"n": 2000, "size": 512, "seed": 7, "backgrounds": "train"}


class DatasetLayoutError(ValueError):
    """A folder does not match the requested / any known layout."""


# ----------------------------------------------------------------------------- file io


from .samples import Sample, _read_raw, _to_float, load_gray, load_image  # noqa: E402,F401 - re-exported


def trimap_from_labels(raw: np.ndarray) -> np.ndarray:
    """Integer trimap file contents -> float32 HxW trimap in {0, 0.5, 1}.

    Oxford-Pet files hold {1 = subject, 2 = background, 3 = unknown} (detected when every
    value is in 1..3); otherwise grey levels are scaled to [0, 1] and quantised
    (< 1/4 -> 0, > 3/4 -> 1, else 0.5), which covers 0/128/255 and 16-bit files.
    """
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    if raw.size and np.issubdtype(raw.dtype, np.integer) and raw.min() >= 1 and raw.max() <= 3:
        lut = np.array([0.0, 1.0, 0.0, 0.5], np.float32)
        return lut[raw.astype(np.intp)]
    g = _to_float(raw)
    return np.where(g < 0.25, 0.0, np.where(g > 0.75, 1.0, 0.5)).astype(np.float32)


def load_trimap(path: str | Path) -> np.ndarray:
    """Read a trimap file (Pet 1/2/3 or 0/128/255 convention) as float32 {0, 0.5, 1}."""
    return trimap_from_labels(_read_raw(path))


def load_mask(path: str | Path) -> np.ndarray:
    """Read a binary label mask as float32 {0, 1} (threshold at half range)."""
    return (load_gray(path) > 0.5).astype(np.float32)


def mask_band_px(shape: tuple[int, ...]) -> int:
    """Width (kernel diameter, px) of the unknown band put around a rough polygon mask."""
    return max(7, int(round(0.04 * min(shape[:2]))))


def mask_to_trimap(mask: np.ndarray, band: int | None = None) -> np.ndarray:
    """Rough binary mask HxW -> trimap {0,0.5,1} with an unknown band of diameter `band` px
    on both sides of the mask edge (default `mask_band_px`)."""
    band = mask_band_px(mask.shape) if band is None else int(band)
    m = (mask > 0.5).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (band, band))
    fg = cv2.erode(m, k)
    maybe = cv2.dilate(m, k)
    return np.where(fg > 0, 1.0, np.where(maybe > 0, 0.5, 0.0)).astype(np.float32)


# ----------------------------------------------------------------------------- datasets


class MattingDataset(Sequence):
    """A lazy, indexable sequence of `Sample`s. Loading happens in `__getitem__`."""

    def __init__(self, names: list[str], loader: Callable[[int], Sample], layout: str, root: str = ""):
        self.names = list(names)
        self._loader = loader
        self.layout = layout
        self.root = root

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._loader(i)

    def __repr__(self) -> str:
        return f"MattingDataset(layout={self.layout!r}, root={self.root!r}, n={len(self)})"


def _subdir(root: Path, aliases: Sequence[str]) -> Path | None:
    """The first sub-folder of `root` whose name matches one of `aliases` (case-insensitive)."""
    if not root.is_dir():
        return None
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for a in aliases:
        if a.lower() in children:
            return children[a.lower()]
    return None


def _files(folder: Path) -> dict[str, Path]:
    """stem -> path of the image files in `folder` (sorted, non-recursive)."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS}


#: layout -> {role: aliases}; roles ending in '?' are optional.
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "adobe": {"fg": ("fg", "foreground"), "alpha": ("alpha", "gt", "alpha_copy"),
              "bg|merged": ("bg", "background", "merged", "image", "composite"),
              "trimap?": ("trimaps", "trimap")},
    "am2k": {"image": ("original",), "alpha": ("mask",), "trimap?": ("trimap", "trimaps")},
    "p3m": {"image": ("blurred_image",), "alpha": ("mask",), "trimap?": ("trimap", "trimaps")},
    "ppm": {"image": ("image",), "alpha": ("matte",)},
    "image_alpha": {"image": ("image", "images"), "alpha": ("alpha", "alphas")},
    "image_trimap": {"image": ("image", "images"), "trimap": ("trimap", "trimaps")},
    "image_mask": {"image": ("image", "images"), "mask": ("mask", "masks")},
}
# Detection order: the most specific folder sets first.
_DETECT_ORDER = ("adobe", "am2k", "p3m", "ppm", "image_alpha", "image_trimap", "image_mask")


def _find_roles(root: Path, layout: str) -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    for role, aliases in LAYOUTS[layout].items():
        optional = role.endswith("?")
        role = role.rstrip("?")
        d = _subdir(root, aliases)
        if role == "bg|merged" and d is not None:
            role = "merged" if d.name.lower() in ("merged", "image", "composite") else "bg"
        if d is None:
            if not optional:
                missing.append(" or ".join(a + "/" for a in aliases))
        else:
            found[role] = d
    return found, missing


def detect_layout(root: str | Path) -> str:
    """Name of the first layout whose required folders all exist under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder does not exist: {root}")
    for layout in _DETECT_ORDER:
        if not _find_roles(root, layout)[1]:
            return layout
    present = sorted(p.name + "/" for p in root.iterdir() if p.is_dir()) or ["(no sub-folders)"]
    need = "; ".join(f"{k}: " + " + ".join(
        "/".join(a) + "/" for r, a in v.items() if not r.endswith("?")) for k, v in LAYOUTS.items())
    raise DatasetLayoutError(
        f"cannot detect the dataset layout of {root}: it has {', '.join(present)}. Known layouts need {need}")


def _match(names: list[str], files: dict[str, Path], what: str, root: Path) -> list[Path]:
    """Paths in `files` for each of `names` (an exact stem, else the stem before the last
    '_' for composites like NAME_3 -> NAME); raise listing every name without a file."""
    out, missing = [], []
    for n in names:
        p = files.get(n)
        if p is None and "_" in n:
            p = files.get(n.rsplit("_", 1)[0])
        if p is None:
            missing.append(n)
        out.append(p)  # type: ignore[arg-type]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise DatasetLayoutError(f"{root}: {len(missing)} image(s) have no {what} file: {shown}")
    return out


def _open_folder(root: Path, layout: str, names_filter: list[str] | None = None) -> MattingDataset:
    if layout not in LAYOUTS:
        raise DatasetLayoutError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder does not exist: {root}")
    found, missing = _find_roles(root, layout)
    if missing:
        raise DatasetLayoutError(f"{root} is not a {layout!r} dataset: missing {', '.join(missing)}")
    if layout == "adobe":
        return _open_adobe(root, found)
    images = _files(found["image"])
    names = list(images)
    if names_filter is not None:
        names = [n for n in names if n in set(names_filter)]
    if not names:
        raise DatasetLayoutError(f"{root}: no image files in {found['image'].name}/")
    img_paths = [images[n] for n in names]
    label_role = next(r for r in ("alpha", "trimap", "mask") if r in found)
    label_paths = _match(names, _files(found[label_role]), found[label_role].name + "/", root)
    tri_paths = (_match(names, _files(found["trimap"]), found["trimap"].name + "/", root)
                 if label_role == "alpha" and "trimap" in found else None)

    def load(i: int) -> Sample:
        s = Sample(name=names[i], image=load_image(img_paths[i]))
        if label_role == "alpha":
            s.alpha = load_gray(label_paths[i])
            if tri_paths is not None:
                s.trimap = load_trimap(tri_paths[i])
        elif label_role == "trimap":
            s.trimap = load_trimap(label_paths[i])
        else:
            s.mask = load_mask(label_paths[i])
            s.trimap = mask_to_trimap(s.mask)
        _check_shapes(s)
        return s

    return MattingDataset(names, load, layout, str(root))


def _open_adobe(root: Path, found: dict[str, Path]) -> MattingDataset:
    fgs = _files(found["fg"])
    alphas = _files(found["alpha"])
    fg_names = list(fgs)
    if not fg_names:
        raise DatasetLayoutError(f"{root}: no image files in {found['fg'].name}/")
    alpha_paths = dict(zip(fg_names, _match(fg_names, alphas, found["alpha"].name + "/", root)))
    tris = _files(found["trimap"]) if "trimap" in found else {}
    if "merged" in found:
        # Pre-composed test set: one sample per merged image, NAME_k -> fg NAME.
        merged = _files(found["merged"])
        names = list(merged)
        fg_for = _match(names, fgs, found["fg"].name + "/", root)
        bg_for: list[Path | None] = [None] * len(names)
        bgs = _files(found["bg"]) if "bg" in found else {}
    else:
        bgs = _files(found["bg"])
        if not bgs:
            raise DatasetLayoutError(f"{root}: no image files in {found['bg'].name}/")
        # Paired by name when every fg has a same-named bg, else a fixed round-robin.
        names = fg_names
        fg_for = [fgs[n] for n in names]
        bg_list = list(bgs.values())
        bg_for = [bgs.get(n, bg_list[i % len(bg_list)]) for i, n in enumerate(names)]
        merged = {}

    def load(i: int) -> Sample:
        fg = load_image(fg_for[i])
        a = load_gray(alpha_paths[fg_for[i].stem])
        name = names[i]
        s = Sample(name=name, image=fg, alpha=a, foreground=fg)
        if "merged" in found:
            s.image = load_image(merged[name])
        else:
            bg = load_image(bg_for[i])  # type: ignore[arg-type]
            from .compose import composite, match_background  # local: compose imports us

            bg = match_background(bg, a.shape, np.random.default_rng(i))
            s.background = bg
            s.image = composite(fg, bg, a)
        t = tris.get(name) or tris.get(fg_for[i].stem)
        if t is not None:
            s.trimap = load_trimap(t)
        _check_shapes(s)
        return s

    return MattingDataset(names, load, "adobe", str(root))


def _check_shapes(s: Sample) -> None:
    h, w = s.image.shape[:2]
    for k in ("alpha", "trimap", "mask", "foreground", "background"):
        v = getattr(s, k)
        if v is not None and v.shape[:2] != (h, w):
            raise DatasetLayoutError(f"{s.name}: {k} is {v.shape[1]}x{v.shape[0]}, image is {w}x{h}")


# ----------------------------------------------------------------------------- built-ins


#: The data kit's folder behind each built-in set (under `shared_data_dir()`); "backgrounds" feeds the synthetic sets.
KIT_FOLDERS = {"pets": "oxford-pets-subset", "coco128": "coco128-instances", "coco128-dominant": "coco128-instances",
               "coco128-persons": "coco128-instances", "feral-cats": "feral-cats", "backgrounds": "backgrounds"}


def kit_missing(names: Iterable[str]) -> list[Path]:
    """The kit folders that ``names`` (keys of `KIT_FOLDERS`) need and that are not on this machine."""
    paths = [shared_data_dir() / KIT_FOLDERS[n] for n in names]
    return [p for p in dict.fromkeys(paths) if not p.is_dir()]


def shared_data_dir() -> Path:
    """The real data kit: $MATTEKIT_SHARED_DATA, else <repo>/../shared/data."""
    env = os.environ.get("MATTEKIT_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def read_split(name: str, split: str) -> list[str]:
    """Names listed in splits/{name}_{split}.txt (the project's fixed split record)."""
    p = SPLITS_DIR / f"{name}_{split}.txt"
    if not p.exists():
        have = sorted(q.stem.split("_", 1)[1] for q in SPLITS_DIR.glob(f"{name}_*.txt"))
        raise ValueError(f"no split {split!r} for {name!r}; available: {', '.join(have)}")
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found at {path}; set MATTEKIT_SHARED_DATA to the data kit folder")
    return path


def _open_pets(split: str | None) -> MattingDataset:
    root = _need(shared_data_dir() / KIT_FOLDERS["pets"], "Oxford-Pet subset")
    names = (read_split("pets", split) if split else
             sorted(p.stem for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTS))
    images, trimaps = _files(root / "images"), _files(root / "trimaps")
    ip = _match(names, images, "images/", root)
    tp = _match(names, trimaps, "trimaps/", root)

    def load(i: int) -> Sample:
        s = Sample(name=names[i], image=load_image(ip[i]), trimap=load_trimap(tp[i]))
        _check_shapes(s)
        return s

    return MattingDataset(names, load, "pets", str(root))


def _open_coco128(split: str | None) -> MattingDataset:
    """One Sample per instance mask (name = mask stem); split by image id."""
    root = _need(shared_data_dir() / KIT_FOLDERS["coco128"], "coco128-instances")
    manifest = json.loads((root / "manifest.json").read_text())
    keep = set(read_split("coco128", split)) if split else None
    items = [(m["image"], inst["mask"]) for m in sorted(manifest, key=lambda m: m["image"])
             for inst in m["instances"] if keep is None or Path(m["image"]).stem in keep]
    names = [Path(mk).stem for _, mk in items]

    def load(i: int) -> Sample:
        img, mk = items[i]
        mask = load_mask(root / "masks" / mk)
        s = Sample(name=names[i], image=load_image(root / "images" / img), mask=mask,
                   trimap=mask_to_trimap(mask))
        _check_shapes(s)
        return s

    return MattingDataset(names, load, "coco128", str(root))


def _open_coco128_dominant(split: str | None, persons: bool = False) -> MattingDataset:
    """One Sample per image, its mask the image's largest instance (the subject Select Subject
    should find); ``persons``: only images whose largest instance is a person, the mask then the
    union of all its person instances (a group photo's subject is the group)."""
    root = _need(shared_data_dir() / KIT_FOLDERS["coco128"], "coco128-instances")
    manifest = json.loads((root / "manifest.json").read_text())
    keep = set(read_split("coco128", split)) if split else None
    items = []
    for m in sorted(manifest, key=lambda m: m["image"]):
        if (keep is not None and Path(m["image"]).stem not in keep) or not m["instances"]:
            continue
        top = max(m["instances"], key=lambda inst: inst["area_frac"])
        if not persons:
            items.append((m["image"], [top["mask"]]))
        elif top["category"] == "person":
            items.append((m["image"], [inst["mask"] for inst in m["instances"] if inst["category"] == "person"]))
    names = [Path(img).stem for img, _ in items]

    def load(i: int) -> Sample:
        img, masks = items[i]
        mask = np.max([load_mask(root / "masks" / mk) for mk in masks], axis=0)
        s = Sample(name=names[i], image=load_image(root / "images" / img), mask=mask, trimap=mask_to_trimap(mask))
        _check_shapes(s)
        return s

    return MattingDataset(names, load, "coco128-persons" if persons else "coco128-dominant", str(root))


def _open_feral_cats(split: str | None) -> MattingDataset:
    root = _need(shared_data_dir() / KIT_FOLDERS["feral-cats"], "feral-cats")
    names = read_split("feral-cats", split) if split else sorted(_files(root / "images"))
    ip = _match(names, _files(root / "images"), "images/", root)
    mp = _match(names, _files(root / "masks"), "masks/", root)

    def load(i: int) -> Sample:
        mask = load_mask(mp[i])
        s = Sample(name=names[i], image=load_image(ip[i]), mask=mask, trimap=mask_to_trimap(mask))
        _check_shapes(s)
        return s

    return MattingDataset(names, load, "feral-cats", str(root))


def background_paths(split: str | None = "train") -> list[Path]:
    """The kit's background photos (fixed train / val lists; None = all 40)."""
    root = _need(shared_data_dir() / KIT_FOLDERS["backgrounds"] / "images", "backgrounds")
    names = read_split("backgrounds", split) if split else sorted(p.name for p in root.iterdir())
    return [root / n for n in names]


def _open_synthetic(which: str, n: int | None = None) -> MattingDataset:
    from .synthetic import synthetic_sample  # local: synthetic imports compose, which imports us

    cfg = SYNTHETIC_VAL if which == "val" else SYNTHETIC_TRAIN
    n = cfg["n"] if n is None else n
    try:
        bgs: list[Path] = background_paths(cfg["backgrounds"])
    except FileNotFoundError:
        bgs = []  # procedural backgrounds: still usable without the kit (tests, CI)
    names = [f"synthetic-{which}-{i:04d}" for i in range(n)]

    def load(i: int) -> Sample:
        return synthetic_sample(np.random.default_rng([cfg["seed"], i]), cfg["size"], bgs, names[i])

    return MattingDataset(names, load, f"synthetic-{which}", "")


def open_dataset(spec: str, split: str | None = None) -> MattingDataset:
    """Open a built-in set or a folder (see the module docstring) as a lazy `MattingDataset`.

    spec: ``pets`` | ``coco128`` | ``feral-cats`` | ``synthetic-val`` | ``synthetic-train``
    | ``PATH`` | ``LAYOUT:PATH``. split: ``train`` / ``test`` for the real built-ins (None =
    every file); ignored by the synthetic sets and by folders.
    """
    if spec == "pets":
        return _open_pets(split)
    if spec == "coco128":
        return _open_coco128(split)
    if spec in ("coco128-dominant", "coco128-persons"):
        return _open_coco128_dominant(split, persons=spec == "coco128-persons")
    if spec == "feral-cats":
        return _open_feral_cats(split)
    if spec in ("synthetic-val", "synthetic-train"):
        return _open_synthetic(spec.split("-")[1])
    layout, sep, rest = spec.partition(":")
    if sep and layout in LAYOUTS:
        return _open_folder(Path(rest).expanduser(), layout)
    if sep and not Path(spec).exists() and len(layout) > 1:
        raise DatasetLayoutError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    root = Path(spec).expanduser()
    if not root.exists():
        raise DatasetLayoutError(
            f"{spec!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor an existing folder")
    return _open_folder(root, detect_layout(root))
