"""torch Datasets for training, built from recipe dicts (the `[data]` tables of a TOML recipe).

`build_dataset(spec, seed)` understands five kinds:

- ``{"kind": "composite", "foregrounds": "synthetic" | DATASET_SPEC, "backgrounds": "shared" |
  "shared-val" | "procedural" | FOLDER, "crop": 512, "rssn": true, "gca": true,
  "guidance": "mg_perturb" | "lasso" | "trimap" | "ddc" | "mixed" | none,
  "targets": ["boundary", "rosta_tt", "rosta_ft", "rosta_bt", "pomagan_border"], "length": 2000}``
  — foreground + exact alpha composited on a background photo (GFM RSSN route when
  ``rssn``; GCA augmentation when ``gca``: second foreground, affine, colour jitter, random
  resize with random interpolation, crop centred on the unknown region).
  A real DATASET_SPEC (see `datasets.open_dataset`, e.g. ``"adobe:/data/Comp1k/train"``)
  needs alpha; its ``foreground`` is used when known, else its image (an approximation).
- ``{"kind": "trimap", "source": "pets" | "coco128" | "feral-cats" | DATASET_SPEC,
  "split": "train", "crop": 320, "zoom": [1.0, 1.6], "guidance": "trimap" | "mask" | "mg_perturb" | "lasso"}``
  — real photos with trimaps (Pets) or rough masks turned into trimaps (COCO, cats): alpha
  is only known outside the unknown band (``known``).
- ``{"kind": "rab", "crop": 512, "backgrounds": "shared"}`` — MG Random Alpha Blending for
  the foreground net: random F (photo crop or procedural texture), random B, unrelated
  procedural alpha; ``foreground`` is a valid label on the whole image.
- ``{"kind": "mix", "parts": [spec, ...], "weights": [w, ...], "length": N}`` — each item
  drawn from one part with the given probabilities (parts must share ``crop``).
- ``{"kind": "cached", "source": SPEC, "items": 800, "crop": 192, "guidance": "mg_perturb"}``
  — ``items`` items of any other spec rendered once into ``~/.cache/mattekit/data/KEY/*.npy``
  (`render_cache`), then served as random crops + flips with a fresh guidance per item
  (see `CachedDataset`); ``python -m mattekit_training.torchdata RECIPE`` pre-renders.

Every item is a dict with **all** of these keys (zeros where a source lacks the label;
the ``has_*`` flags say which are real), so items from different kinds batch together:

=============== ================ ====================================================
key             dtype / shape    meaning
=============== ================ ====================================================
``image``       float32 (3,H,W)  sRGB [0,1] input photo / composite
``alpha``       float32 (1,H,W)  alpha target; for trimap sources the trimap's 0/1
                                 (0.5 in the unknown band, where ``known`` is 0)
``trimap``      float32 (1,H,W)  {0, 0.5, 1}; from alpha (10 px erosion) for composites
``guidance``    float32 (1,H,W)  [0,1] coarse user-like selection (per ``guidance``)
``known``       float32 (1,H,W)  1 where ``alpha`` is a trustworthy label
``boundary``    float32 (1,H,W)  MODNet transition band (dilate - erode of alpha;
                                 the unknown band for trimap sources)
``glance``      int64   (H,W)    GFM RoSTa glance classes (TT: 0 bg, 1 transition,
                                 2 fg; FT/BT: 0/1) — the first rosta_* in ``targets``
``foreground``  float32 (3,H,W)  F (exact for composites and RAB)
``background``  float32 (3,H,W)  B
``has_alpha``   bool    ()       alpha is exact everywhere (composite, rab)
``has_trimap``  bool    ()       ``trimap`` is a label (all kinds but rab)
``has_fg``      bool    ()       ``foreground``/``background`` are exact
=============== ================ ====================================================

Extra keys on request (``targets``): ``glance_tt`` / ``glance_ft`` / ``glance_bt`` (int64
(H,W)) and ``transition_tt`` / ``_ft`` / ``_bt`` (float32 (1,H,W)) for every rosta mode,
``border`` (POMAGAN border band, float32 (1,H,W)).

Determinism: item i of epoch e is made from ``np.random.default_rng([seed, e, i])`` only,
so it is identical in any worker and any process. Call ``dataset.set_epoch(e)`` before
iterating epoch e (non-persistent workers pick it up; `build_loader` does this).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import compose as C
from .datasets import IMAGE_EXTS, Sample, background_paths, open_dataset
from .synthetic import load_photo, make_foreground, make_texture, random_background

ROSTA = ("rosta_tt", "rosta_ft", "rosta_bt")
GUIDANCES = ("mg_perturb", "lasso", "trimap", "ddc", "mixed", "mask", None)


# ----------------------------------------------------------------------------- helpers


def _photo_paths(spec: str | None) -> list[Path]:
    """Background photo files for a `backgrounds` spec (empty list = procedural)."""
    if spec in (None, "procedural"):
        return []
    if spec in ("shared", "shared-train"):
        return background_paths("train")
    if spec == "shared-val":
        return background_paths("val")
    folder = Path(spec)
    if not folder.is_dir():
        raise ValueError(f"backgrounds: {spec!r} is not 'shared', 'shared-val', 'procedural' or a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ValueError(f"backgrounds: no image files in {folder}")
    return files


def _chw(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())


def make_guidance(kind: str | None, alpha: np.ndarray, rng: np.random.Generator,
                  trimap: np.ndarray | None = None) -> np.ndarray:
    """Guidance HxW float32 [0,1] of the given kind from an alpha (or trimap) label."""
    if kind == "mixed":
        kind = ("mg_perturb", "lasso", "trimap")[int(rng.integers(3))]
    if kind is None:
        return np.zeros_like(alpha, dtype=np.float32)
    if kind == "mg_perturb":
        return C.mg_perturb(alpha, rng)
    if kind == "lasso":
        return C.lasso_guidance(alpha, rng)
    if kind == "trimap":
        return trimap if trimap is not None else C.trimap_from_alpha(alpha)
    if kind == "ddc":
        return C.ddc_trimap(alpha, rng)
    if kind == "mask":
        return (alpha >= 0.5).astype(np.float32)
    raise ValueError(f"unknown guidance {kind!r}; choose from {GUIDANCES}")


def _targets(item: dict[str, Any], alpha: np.ndarray, targets: Sequence[str]) -> None:
    """Add glance (+ requested RoSTa / border extras) computed from an exact alpha."""
    modes = [t for t in targets if t in ROSTA] or ["rosta_tt"]
    for j, m in enumerate(modes):
        g, tr = C.rosta_targets(alpha, m)
        if j == 0:
            item["glance"] = torch.from_numpy(g)
        if m in targets:
            item["glance_" + m[-2:]] = torch.from_numpy(g)
            item["transition_" + m[-2:]] = _chw(tr)
    if "pomagan_border" in targets:
        item["border"] = _chw(C.pomagan_border(alpha))
    unknown = set(targets) - set(ROSTA) - {"boundary", "pomagan_border"}
    if unknown:
        raise ValueError(f"unknown targets {sorted(unknown)}")


def _item(image, alpha, trimap, guidance, known, boundary, fg=None, bg=None, *, has_alpha: bool,
          has_trimap: bool = True) -> dict[str, Any]:
    h, w = image.shape[:2]
    z3 = np.zeros((h, w, 3), np.float32)
    return {
        "image": _chw(image), "alpha": _chw(alpha), "trimap": _chw(trimap), "guidance": _chw(guidance),
        "known": _chw(known), "boundary": _chw(boundary),
        "foreground": _chw(fg if fg is not None else z3), "background": _chw(bg if bg is not None else z3),
        "has_alpha": torch.tensor(has_alpha), "has_trimap": torch.tensor(has_trimap),
        "has_fg": torch.tensor(fg is not None and bg is not None),
    }


class SeededDataset(Dataset):
    """Base: a fixed-length dataset whose item i is a pure function of (seed, epoch, i)."""

    def __init__(self, seed: int, length: int):
        self.seed, self.epoch, self.length = int(seed), 0, int(length)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        return self.make(i, self.rng(i))

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------------------- kinds


class CompositeDataset(SeededDataset):
    """Foreground + exact alpha over a background (see module docstring, kind "composite")."""

    def __init__(self, spec: dict, seed: int):
        self.crop = int(spec.get("crop", 512))
        self.fg_spec = spec.get("foregrounds", "synthetic")
        self.real = None if self.fg_spec == "synthetic" else open_dataset(self.fg_spec, spec.get("split"))
        length = int(spec.get("length", 2000 if self.real is None else len(self.real)))
        super().__init__(seed, length)
        self.bg_paths = _photo_paths(spec.get("backgrounds", "shared"))
        self.rssn = bool(spec.get("rssn", True))
        self.gca = bool(spec.get("gca", True))
        self.guidance = spec.get("guidance", "mg_perturb")
        self.targets = list(spec.get("targets", ["boundary", "rosta_tt"]))
        self.denoise = spec.get("denoise", "bilateral")
        if self.guidance not in GUIDANCES:
            raise ValueError(f"unknown guidance {self.guidance!r}; choose from {GUIDANCES}")

    def _foreground(self, rng: np.random.Generator, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        if self.real is None:
            photos = [load_photo(str(self.bg_paths[int(rng.integers(len(self.bg_paths)))]))] if self.bg_paths else []
            return make_foreground(rng, max(16, int(self.crop * scale * rng.uniform(1.0, 1.3))), photos)
        s: Sample = self.real[int(rng.integers(len(self.real)))]
        if s.alpha is None:
            raise ValueError(f"{self.fg_spec}: sample {s.name} has no alpha; composites need alpha")
        return (s.foreground if s.foreground is not None else s.image), s.alpha

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:
        fg, alpha = self._foreground(rng)
        if self.gca:
            # The second (background) subject is made at 0.6x and upscaled: it is mostly hidden.
            second = self._foreground(rng, 0.6) if rng.random() < 0.5 else None
            fg, alpha = C.gca_augment(fg, alpha, rng, second=second, p_second=1.0)
            s = self.crop / min(alpha.shape) * rng.uniform(1.0, 1.25)
            fg, alpha = C.random_resize([fg, alpha], rng, size=(max(self.crop, round(alpha.shape[0] * s)),
                                                                max(self.crop, round(alpha.shape[1] * s))))
        fg, alpha = C.crop_centered([fg, alpha], C.edge_region(alpha), self.crop, rng)
        alpha = C.snap_alpha(alpha)  # before compositing, so image and labels stay consistent
        bg_src = (load_photo(str(self.bg_paths[int(rng.integers(len(self.bg_paths)))])) if self.bg_paths
                  else random_background(rng, alpha.shape))
        if self.rssn:
            out = C.rssn_composite(fg, alpha, bg_src, rng, denoise_method=self.denoise)
            image, fg, bg = out["image"], out["foreground"], out["background"]
        else:
            bg = C.match_background(bg_src, alpha.shape, rng)
            image = C.composite(fg, bg, alpha)
        trimap = C.trimap_from_alpha(alpha)
        guidance = make_guidance(self.guidance, alpha, rng, trimap)
        item = _item(image, alpha, trimap, guidance, np.ones_like(alpha), C.boundary_mask(alpha), fg, bg,
                     has_alpha=True)
        _targets(item, alpha, self.targets)
        return item


class TrimapDataset(SeededDataset):
    """Real photos with trimaps or rough masks (kind "trimap")."""

    def __init__(self, spec: dict, seed: int):
        self.source = spec.get("source", "pets")
        self.ds = open_dataset(self.source, spec.get("split", "train"))
        super().__init__(seed, int(spec.get("length", len(self.ds))))
        self.crop = int(spec.get("crop", 320))
        self.guidance = spec.get("guidance", "trimap")
        # The crop spans 1/zoom of the short side: (1, 1.6) keeps context and avoids heavy upscaling.
        self.zoom = tuple(spec.get("zoom", (1.0, 1.6)))
        #: "crop": a random crop around the edge at a random zoom; "squash": the whole frame
        self.fit = spec.get("fit", "crop")
        if self.fit not in ("crop", "squash"):
            raise ValueError(f"trimap data: fit must be 'crop' or 'squash', got {self.fit!r}")
        if self.guidance not in GUIDANCES:
            raise ValueError(f"unknown guidance {self.guidance!r}; choose from {GUIDANCES}")

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:
        # Epoch e visits a seeded permutation of the files: each file once per len(ds) items.
        perm = np.random.default_rng([self.seed, self.epoch, 1 << 30]).permutation(len(self.ds))
        s = self.ds[int(perm[i % len(self.ds)])]
        if s.trimap is None:
            raise ValueError(f"{self.source}: sample {s.name} has no trimap")
        image, trimap = s.image, s.trimap
        if self.fit == "squash":
            # The whole frame squashed to crop x crop: what a subject model sees at inference.
            size = (self.crop, self.crop)
            shrink = min(image.shape[:2]) > self.crop
            image = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR), 0, 1)
            trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
            if rng.random() < 0.5:
                image, trimap = image[:, ::-1], trimap[:, ::-1]
            image, trimap = np.ascontiguousarray(image), np.ascontiguousarray(trimap)
        else:
            # Random scale relative to the crop; trimaps resized with nearest to keep {0,0.5,1}.
            f = self.crop / min(image.shape[:2]) * rng.uniform(*self.zoom)
            nh, nw = max(self.crop, round(image.shape[0] * f)), max(self.crop, round(image.shape[1] * f))
            image = np.clip(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR), 0, 1)
            trimap = cv2.resize(trimap, (nw, nh), interpolation=cv2.INTER_NEAREST)
            if rng.random() < 0.5:
                image, trimap = image[:, ::-1], trimap[:, ::-1]
            image, trimap = C.crop_centered([image, trimap], trimap == 0.5, self.crop, rng)
        known = (trimap != 0.5).astype(np.float32)
        boundary = 1.0 - known
        if self.guidance == "trimap":
            guidance = trimap
        else:
            fgmask = (trimap >= 0.5).astype(np.float32)  # the subject incl. its unsure edge
            guidance = make_guidance(self.guidance, fgmask, rng, trimap)
        item = _item(image, trimap, trimap, guidance, known, boundary, has_alpha=False)
        item["glance"] = torch.from_numpy(C.trimap_to_glance(trimap))
        return item


class RABDataset(SeededDataset):
    """MG Random Alpha Blending for the foreground net (kind "rab")."""

    def __init__(self, spec: dict, seed: int):
        super().__init__(seed, int(spec.get("length", 2000)))
        self.crop = int(spec.get("crop", 512))
        self.bg_paths = _photo_paths(spec.get("backgrounds", "shared"))

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:
        size = (self.crop, self.crop)
        photos = [load_photo(str(p)) for p in rng.choice(np.asarray(self.bg_paths, dtype=object), 1)] \
            if self.bg_paths else []
        fg = make_texture(rng, size, photos)
        if rng.random() < 0.5:
            fg = C.color_jitter(fg, rng)
        bg = random_background(rng, size, self.bg_paths)
        _, alpha = make_foreground(rng, size)  # unrelated to F and B on purpose
        out = C.random_alpha_blending(fg, bg, alpha)
        trimap = C.trimap_from_alpha(alpha)
        item = _item(out["image"], alpha, trimap, alpha, np.ones_like(alpha), C.boundary_mask(alpha), fg, bg,
                     has_alpha=True, has_trimap=False)
        item["glance"] = torch.from_numpy(C.rosta_targets(alpha, "tt")[0])
        return item


class MixDataset(SeededDataset):
    """Weighted mixture of other datasets (kind "mix"); pads keys missing in a part with zeros."""

    def __init__(self, spec: dict, seed: int):
        parts = spec.get("parts") or []
        if not parts:
            raise ValueError("mix: 'parts' is empty")
        # Each part gets its own derived seed so two identical parts do not repeat each other.
        self.parts = [build_dataset(p, seed * 1000 + 17 * (k + 1)) for k, p in enumerate(parts)]
        w = np.asarray(spec.get("weights", [1.0] * len(parts)), np.float64)
        if len(w) != len(parts) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("mix: 'weights' must be one non-negative number per part")
        self.weights = w / w.sum()
        super().__init__(seed, int(spec.get("length", sum(len(p) for p in self.parts))))

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for p in self.parts:
            p.set_epoch(epoch)

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:
        k = int(rng.choice(len(self.parts), p=self.weights))
        part = self.parts[k]
        item = part[int(rng.integers(len(part)))]
        return _pad_extras(item)


_EXTRA_FLOAT = ("transition_tt", "transition_ft", "transition_bt", "border")
_EXTRA_INT = ("glance_tt", "glance_ft", "glance_bt")


def _pad_extras(item: dict[str, Any]) -> dict[str, Any]:
    """Give a mix item every optional key (zeros) so parts with different targets collate."""
    h, w = item["image"].shape[-2:]
    for k in _EXTRA_FLOAT:
        item.setdefault(k, torch.zeros(1, h, w))
    for k in _EXTRA_INT:
        item.setdefault(k, torch.zeros(h, w, dtype=torch.int64))
    return item


KINDS = {"composite": CompositeDataset, "trimap": TrimapDataset, "rab": RABDataset, "mix": MixDataset}


def build_dataset(spec: dict, seed: int) -> SeededDataset:
    """A torch Dataset for a recipe's data table (see the module docstring for keys)."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"data spec kind {kind!r}; choose from {', '.join(KINDS)}")
    return KINDS[kind](spec, seed)


def worker_init_fn(worker_id: int) -> None:
    """Keep each DataLoader worker single-threaded (the items are seeded per index, so no
    per-worker RNG state is needed)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def build_loader(dataset: SeededDataset, batch_size: int, epoch: int = 0, num_workers: int = 2,
                 shuffle: bool = True, drop_last: bool = True) -> DataLoader:
    """A DataLoader for epoch `epoch`: sets the dataset's epoch and seeds the shuffle from
    (dataset seed, epoch), so the batches of an epoch are reproducible."""
    dataset.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(dataset.seed * 100003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      worker_init_fn=worker_init_fn, generator=g, drop_last=drop_last,
                      persistent_workers=False, pin_memory=False)


# ----------------------------------------------------------------------------- cached kind

#: Arrays stored per cached item (uint8 unless noted); "flags" is (N, 3) bool: has_alpha,
#: has_trimap, has_fg.
_CACHE_ARRAYS = ("image", "alpha", "trimap", "known", "foreground", "background", "flags")


def cache_root() -> Path:
    """Folder of rendered caches: $MATTEKIT_DATA_CACHE or ~/.cache/mattekit/data."""
    return Path(os.environ.get("MATTEKIT_DATA_CACHE", Path.home() / ".cache" / "mattekit" / "data"))


def cache_key(spec: dict) -> str:
    """Stable hash of what a cache holds: the inner spec, item count and render seed."""
    src = {"source": spec["source"], "items": int(spec.get("items", 1000)), "render_seed": int(spec.get("render_seed", 0))}
    return hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()[:16]


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(a, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _render_range(args: tuple[dict, int, int, int]) -> dict[str, np.ndarray]:
    """Render items [lo, hi) of the inner dataset (epoch 0) as HWC uint8 arrays."""
    source, seed, lo, hi = args
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = build_dataset(source, seed)
    out: dict[str, list] = {k: [] for k in _CACHE_ARRAYS}
    for i in range(lo, hi):
        it = ds[i % len(ds)]
        hwc = {k: it[k].numpy().transpose(1, 2, 0) for k in ("image", "foreground", "background")}
        for k in ("image", "foreground", "background"):
            out[k].append(_u8(hwc[k]))
        for k in ("alpha", "trimap", "known"):
            out[k].append(_u8(it[k].numpy()[0]))
        out["flags"].append(np.array([bool(it["has_alpha"]), bool(it["has_trimap"]), bool(it["has_fg"])]))
    return {k: np.stack(v) for k, v in out.items()}


def render_cache(spec: dict, workers: int = 1, progress: bool = False) -> Path:
    """Render the `items` items of a cached spec's `source` once into
    ``cache_root()/cache_key(spec)/*.npy`` (returned); a no-op when that folder exists.

    Items are epoch-0 items of the source (seeded by ``render_seed``), so a cache is
    reproducible and shared by every recipe with the same source. Written to a temporary
    folder and renamed, so concurrent renderers never expose a half cache.
    """
    final = cache_root() / cache_key(spec)
    if (final / "flags.npy").is_file():
        return final
    n = int(spec.get("items", 1000))
    seed = int(spec.get("render_seed", 0))
    chunk = max(1, min(64, -(-n // max(1, workers * 4))))
    jobs = [(spec["source"], seed, lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = list(pool.imap(_render_range, jobs))
    else:
        parts = []
        for j, job in enumerate(jobs):
            parts.append(_render_range(job))
            if progress:
                print(f"cache {final.name}: {min(n, (j + 1) * chunk)}/{n}", flush=True)
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for k in _CACHE_ARRAYS:
        np.save(tmp / f"{k}.npy", np.concatenate([p[k] for p in parts]))
    (tmp / "spec.json").write_text(json.dumps({k: spec[k] for k in ("source", "items") if k in spec}, indent=1))
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: keep its cache
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return final


class CachedDataset(SeededDataset):
    """Pre-rendered items of any other kind, served with cheap fresh augmentation (kind "cached").

    ``{"kind": "cached", "source": SPEC, "items": 2000, "crop": 256, "guidance": "mg_perturb",
    "flip": true, "length": 20000, "render_seed": 0, "workers": 1}``

    The expensive synthesis (RSSN, GCA, photo decoding) runs once per cache (`render_cache`);
    each served item is a random `crop` (<= the source's crop) with a random horizontal flip
    and a **fresh** guidance drawn from the cached alpha (MG perturbation is cheap), so the
    guidance never repeats even though the images do. Items with exact alpha get
    ``guidance`` from their alpha; trimap-only items (Pets, masks) from their trimap's
    subject (``trimap >= 0.5``), or the trimap itself for ``guidance = "trimap"``.
    Labels are stored as uint8 (alpha quantised to 1/255).
    """

    def __init__(self, spec: dict, seed: int):
        if "source" not in spec:
            raise ValueError("cached: 'source' (the spec to pre-render) is missing")
        self.spec = spec
        self.crop = int(spec.get("crop", spec["source"].get("crop", 512)))
        self.guidance = spec.get("guidance", "mg_perturb")
        if self.guidance not in GUIDANCES:
            raise ValueError(f"unknown guidance {self.guidance!r}; choose from {GUIDANCES}")
        self.flip = bool(spec.get("flip", True))
        self.targets = list(spec.get("targets", []))
        folder = render_cache(spec, workers=int(spec.get("workers", 1)))
        self.arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in _CACHE_ARRAYS}
        self.n_items = len(self.arrays["flags"])
        h, w = self.arrays["alpha"].shape[1:3]
        if self.crop > min(h, w):
            raise ValueError(f"cached: crop {self.crop} is larger than the cached items ({h}x{w})")
        super().__init__(seed, int(spec.get("length", self.n_items)))

    def make(self, i: int, rng: np.random.Generator) -> dict[str, Any]:
        j = int(rng.integers(self.n_items))
        a = self.arrays
        h, w = a["alpha"].shape[1:3]
        y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        sl = (j, slice(y, y + self.crop), slice(x, x + self.crop))
        f = {k: np.asarray(a[k][sl], np.float32) / 255.0 for k in ("image", "foreground", "background", "alpha", "known")}
        trimap = np.asarray(a["trimap"][sl], np.float32) / 255.0
        trimap = np.where(trimap < 0.25, 0.0, np.where(trimap > 0.75, 1.0, 0.5)).astype(np.float32)
        has_alpha, has_trimap, has_fg = (bool(v) for v in a["flags"][j])
        if self.flip and rng.random() < 0.5:
            f = {k: v[:, ::-1] for k, v in f.items()}
            trimap = trimap[:, ::-1]
        alpha, known = f["alpha"], f["known"]
        if has_alpha:
            guidance = make_guidance(self.guidance, alpha, rng, trimap)
            boundary = C.boundary_mask(alpha)
        else:
            alpha = np.where(known > 0.5, np.rint(alpha), 0.5).astype(np.float32)
            guidance = trimap if self.guidance == "trimap" else \
                make_guidance(self.guidance, (trimap >= 0.5).astype(np.float32), rng, trimap)
            boundary = 1.0 - known
        item = _item(f["image"], alpha, trimap, guidance, known, boundary,
                     f["foreground"] if has_fg else None, f["background"] if has_fg else None,
                     has_alpha=has_alpha, has_trimap=has_trimap)
        if has_alpha and self.targets:
            _targets(item, alpha, self.targets)
        else:
            item["glance"] = torch.from_numpy(C.trimap_to_glance(trimap))
        return _pad_extras(item) if self.targets else item


KINDS["cached"] = CachedDataset


def _render_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mattekit_training.torchdata RECIPE.toml [--workers N]``: render every
    cached data spec of a recipe (train and val) ahead of training."""
    import argparse

    from .recipe import load_recipe

    ap = argparse.ArgumentParser(prog="python -m mattekit_training.torchdata")
    ap.add_argument("recipe")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    data = load_recipe(args.recipe).get("data", {})
    for part in ("train", "val"):
        spec = data.get(part)
        specs = [spec] + list((spec or {}).get("parts", []))
        for s in specs:
            if s and s.get("kind") == "cached":
                print(f"{part}: {render_cache(s, workers=args.workers, progress=True)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_render_main())
