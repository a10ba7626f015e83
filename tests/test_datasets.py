"""Dataset adapters (layouts, conventions, errors) and the torch datasets built on them."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mattekit_training import compose as C
from mattekit_training import datasets as D
from mattekit_training.contact import contact_sheet, cutout, save_png
from mattekit_training.torchdata import build_dataset, build_loader

H, W = 24, 32


def _rgb(seed=0):
    return (np.random.default_rng(seed).random((H, W, 3)) * 255).astype(np.uint8)


def _alpha8():
    a = np.zeros((H, W), np.uint8)
    a[6:18, 8:24] = 255
    a[6:18, 8] = 128
    return a


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


def _folder(root: Path, spec: dict[str, np.ndarray | None], names=("a", "b")) -> Path:
    """spec: subfolder -> array written for every name (None: empty folder)."""
    for sub, arr in spec.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        if arr is not None:
            for n in names:
                _write(root / sub / f"{n}.png", arr)
    return root


LAYOUT_CASES = {
    "am2k": {"original": _rgb(), "mask": _alpha8()},
    "p3m": {"blurred_image": _rgb(), "mask": _alpha8()},
    "ppm": {"image": _rgb(), "matte": _alpha8()},
    "image_alpha": {"images": _rgb(), "alpha": _alpha8()},
    "image_trimap": {"images": _rgb(), "trimaps": np.where(_alpha8() == 128, 3, np.where(_alpha8() > 0, 1, 2)).astype(np.uint8)},
    "image_mask": {"images": _rgb(), "masks": (_alpha8() > 0).astype(np.uint8) * 255},
    "adobe": {"fg": _rgb(1), "alpha": _alpha8(), "bg": _rgb(2)},
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_CASES))
def test_layout_detection_and_loading(tmp_path, layout):
    root = _folder(tmp_path / layout, LAYOUT_CASES[layout])
    assert D.detect_layout(root) == layout
    ds = D.open_dataset(str(root))
    assert ds.layout == layout and len(ds) == 2 and ds.names == ["a", "b"]
    s = ds[1]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.float32
    case = LAYOUT_CASES[layout]
    img_key = next((k for k in case if k in ("original", "blurred_image", "image", "images")), None)
    if img_key is not None:
        np.testing.assert_allclose(s.image, case[img_key] / 255, atol=1e-6)
    if layout in ("am2k", "p3m", "ppm", "image_alpha", "adobe"):
        np.testing.assert_allclose(s.alpha, _alpha8() / 255, atol=1e-6)
        assert s.mask is None
    if layout == "image_trimap":
        np.testing.assert_array_equal(s.trimap, np.where(_alpha8() == 128, 0.5, (_alpha8() > 0) * 1.0))
        assert s.alpha is None
    if layout == "image_mask":
        assert s.alpha is None  # a rough mask is never alpha
        assert set(np.unique(s.mask)) == {0.0, 1.0}
        assert set(np.unique(s.trimap)) <= {0.0, 0.5, 1.0} and (s.trimap == 0.5).any()
    if layout == "adobe":
        np.testing.assert_allclose(s.image, C.composite(s.foreground, s.background, s.alpha), atol=1e-6)
    # The same folder through an explicit layout prefix.
    assert D.open_dataset(f"{layout}:{root}").layout == layout


@pytest.mark.parametrize("layout,present,missing", [
    ("ppm", {"image": _rgb()}, "matte/"),
    ("am2k", {"mask": _alpha8()}, "original/"),
    ("p3m", {"blurred_image": _rgb()}, "mask/"),
    ("adobe", {"fg": _rgb(), "alpha": _alpha8()}, "bg/"),
    ("image_trimap", {"trimaps": _alpha8()}, "image/"),
    ("image_alpha", {"image": _rgb()}, "alpha/"),
    ("image_mask", {"images": _rgb()}, "mask/"),
])
def test_forced_layout_lists_missing_folder(tmp_path, layout, present, missing):
    root = _folder(tmp_path / "d", present)
    with pytest.raises(D.DatasetLayoutError, match=missing):
        D.open_dataset(f"{layout}:{root}")


def test_undetectable_folder_lists_what_is_there(tmp_path):
    root = _folder(tmp_path / "d", {"photos": _rgb(), "labels": _alpha8()})
    with pytest.raises(D.DatasetLayoutError, match="labels/, photos/"):
        D.open_dataset(str(root))
    with pytest.raises(D.DatasetLayoutError, match="neither a built-in"):
        D.open_dataset(str(tmp_path / "nope"))
    with pytest.raises(D.DatasetLayoutError, match="unknown layout"):
        D.open_dataset("weird:" + str(root))


def test_missing_label_files_are_named(tmp_path):
    root = _folder(tmp_path / "d", {"image": _rgb(), "matte": None}, names=("a",))
    _folder(root, {"image": _rgb()}, names=("b", "c"))
    _write(root / "matte" / "a.png", _alpha8())
    with pytest.raises(D.DatasetLayoutError, match=r"2 image\(s\) have no matte/ file: b, c"):
        D.open_dataset(str(root))


def test_adobe_merged_names_map_to_their_foreground(tmp_path):
    root = _folder(tmp_path / "c1k", {"fg": _rgb(1), "alpha": _alpha8()}, names=("cat",))
    _folder(root, {"merged": _rgb(5)}, names=("cat_0", "cat_1"))
    _folder(root, {"trimaps": np.where(_alpha8() == 128, 128, _alpha8()).astype(np.uint8)}, names=("cat_0", "cat_1"))
    ds = D.open_dataset(str(root))
    assert ds.layout == "adobe" and ds.names == ["cat_0", "cat_1"]
    s = ds[0]
    np.testing.assert_allclose(s.image, _rgb(5) / 255, atol=1e-6)
    np.testing.assert_allclose(s.alpha, _alpha8() / 255, atol=1e-6)
    assert (s.trimap == 0.5).sum() == (_alpha8() == 128).sum()


def test_trimap_conventions():
    pet = np.array([[1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(D.trimap_from_labels(pet), [[1.0, 0.0, 0.5]])
    grey = np.array([[0, 128, 255, 127]], np.uint8)
    np.testing.assert_array_equal(D.trimap_from_labels(grey), [[0.0, 0.5, 1.0, 0.5]])
    g16 = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(D.trimap_from_labels(g16), [[0.0, 0.5, 1.0]])


def test_sixteen_bit_and_mislabelled_files(tmp_path):
    img16 = np.full((4, 5, 3), 1000, np.uint16)
    img16[..., 2] = 65535
    _write(tmp_path / "x16.png", img16)
    im = D.load_image(tmp_path / "x16.png")
    np.testing.assert_allclose(im[0, 0], [1000 / 65535, 1000 / 65535, 1.0], rtol=1e-6)
    a16 = np.full((4, 5), 30000, np.uint16)
    _write(tmp_path / "a16.png", a16)
    np.testing.assert_allclose(D.load_gray(tmp_path / "a16.png"), 30000 / 65535, rtol=1e-6)
    # A GIF saved with a .jpg name (the Pets set has one) still loads, through PIL.
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "odd.jpg", format="GIF")
    assert D.load_image(tmp_path / "odd.jpg").shape == (H, W, 3)
    grey = (np.arange(20, dtype=np.uint8).reshape(4, 5) * 10)
    _write(tmp_path / "g.png", grey)
    g3 = D.load_image(tmp_path / "g.png")
    assert g3.shape == (4, 5, 3) and np.allclose(g3[..., 0], grey / 255)


def test_mask_to_trimap_band_straddles_edge():
    m = np.zeros((60, 60), np.float32)
    m[15:45, 15:45] = 1
    t = D.mask_to_trimap(m, band=9)
    assert t[30, 30] == 1 and t[0, 0] == 0
    assert t[15, 30] == 0.5 and t[13, 30] == 0.5 and t[17, 30] == 0.5


def test_split_files_are_disjoint_and_recorded():
    for name in ("pets", "coco128", "feral-cats"):
        tr, te = set(D.read_split(name, "train")), set(D.read_split(name, "test"))
        assert tr and te and not tr & te
    assert not set(D.read_split("backgrounds", "train")) & set(D.read_split("backgrounds", "val"))
    with pytest.raises(ValueError, match="available: test, train"):
        D.read_split("pets", "val")


@pytest.mark.kit("pets", "coco128", "feral-cats", "backgrounds")
def test_builtin_real_sets():
    pets = D.open_dataset("pets", "test")
    assert len(pets) == 298 and len(D.open_dataset("pets", "train")) == 300
    s = pets[0]
    assert s.alpha is None and set(np.unique(s.trimap)) == {0.0, 0.5, 1.0}
    assert s.trimap.shape == s.image.shape[:2]
    coco = D.open_dataset("coco128", "test")
    c = coco[0]
    assert c.alpha is None and c.mask is not None and (c.trimap == 0.5).any()
    cats = D.open_dataset("feral-cats", "test")
    assert len(cats) == 101 and cats[0].mask is not None


def test_synthetic_val_is_fixed():
    ds = D.open_dataset("synthetic-val")
    assert len(ds) == D.SYNTHETIC_VAL["n"]
    a, b = ds[3], ds[3]
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_allclose(a.image, C.composite(a.foreground, a.background, a.alpha), atol=1e-6)


# ----------------------------------------------------------------------------- torch datasets

COMPOSITE = {"kind": "composite", "foregrounds": "synthetic", "backgrounds": "procedural", "crop": 48,
             "rssn": True, "guidance": "mg_perturb", "targets": ["boundary", "rosta_tt", "rosta_bt", "pomagan_border"],
             "length": 6}


def _same(x, y):
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_composite_items_keys_and_consistency():
    ds = build_dataset(COMPOSITE, seed=1)
    it = ds[0]
    assert it["image"].shape == (3, 48, 48) and it["image"].dtype == torch.float32
    for k in ("alpha", "trimap", "guidance", "known", "boundary", "transition_tt", "border"):
        assert it[k].shape == (1, 48, 48) and it[k].dtype == torch.float32, k
    assert it["glance"].shape == (48, 48) and it["glance"].dtype == torch.int64
    assert it["glance_bt"].dtype == torch.int64
    assert bool(it["has_alpha"]) and bool(it["has_fg"])
    a = it["alpha"][0]
    g = it["glance"]
    assert torch.all(a[g == 2] == 1) and torch.all(a[g == 0] == 0)
    assert set(torch.unique(it["guidance"]).tolist()) <= {0.0, 1.0}


def test_composite_is_exact_without_noise():
    spec = dict(COMPOSITE, rssn=False)
    it = build_dataset(spec, 2)[1]
    img = C.composite(it["foreground"].permute(1, 2, 0).numpy(), it["background"].permute(1, 2, 0).numpy(),
                      it["alpha"][0].numpy())
    np.testing.assert_allclose(it["image"].permute(1, 2, 0).numpy(), img, atol=1e-6)


def test_determinism_under_seed_and_epoch():
    a, b, c = build_dataset(COMPOSITE, 5), build_dataset(COMPOSITE, 5), build_dataset(COMPOSITE, 6)
    assert _same(a[2], b[2])
    assert not torch.equal(a[2]["image"], c[2]["image"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["image"], b[2]["image"])


def _trimap_folder(tmp_path):
    tri = np.full((40, 50), 2, np.uint8)
    tri[10:30, 10:40] = 1
    tri[10:30, 10:12] = 3
    root = _folder(tmp_path / "tri", {"images": (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8),
                                      "trimaps": tri}, names=("p", "q", "r"))
    return str(root)


def test_trimap_kind_known_matches_trimap(tmp_path):
    ds = build_dataset({"kind": "trimap", "source": _trimap_folder(tmp_path), "crop": 32}, seed=0)
    assert len(ds) == 3
    it = ds[0]
    t = it["trimap"]
    assert set(torch.unique(t).tolist()) <= {0.0, 0.5, 1.0}
    assert torch.equal(it["known"], (t != 0.5).float())
    assert not bool(it["has_alpha"]) and not bool(it["has_fg"])
    assert torch.equal(it["glance"], torch.round(t[0] * 2).long())


def test_rab_and_mix_and_loader_with_two_workers(tmp_path):
    rab = {"kind": "rab", "crop": 48, "backgrounds": "procedural", "length": 4}
    it = build_dataset(rab, 0)[0]
    img = C.composite(it["foreground"].permute(1, 2, 0).numpy(), it["background"].permute(1, 2, 0).numpy(),
                      it["alpha"][0].numpy())
    np.testing.assert_allclose(it["image"].permute(1, 2, 0).numpy(), img, atol=1e-6)
    mix = build_dataset({"kind": "mix", "parts": [COMPOSITE, rab, {"kind": "trimap", "source": _trimap_folder(tmp_path),
                                                                     "crop": 48}],
                         "weights": [1, 1, 1], "length": 8}, seed=3)
    direct = [mix[i] for i in range(4)]
    loader = build_loader(mix, batch_size=2, epoch=0, num_workers=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == 4 and batches[0]["image"].shape == (2, 3, 48, 48)
    assert torch.equal(batches[0]["image"][1], direct[1]["image"])
    assert torch.equal(batches[1]["glance"][0], direct[2]["glance"])
    with pytest.raises(ValueError, match="kind"):
        build_dataset({"kind": "nope"}, 0)


def test_contact_sheet_and_preview_cli(tmp_path):
    a = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    rgb = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    sheet = contact_sheet([[("img", rgb), ("alpha", a), ("cut", cutout(rgb, a))], [("cls", (a * 3).astype(np.int64))]],
                          thumb=64)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[1] == 3 * 68 + 4
    assert sheet.shape[0] == 2 * (64 + 22 + 4) + 4
    p = save_png(tmp_path / "s.png", sheet)
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), sheet)
    from mattekit_training.data_cli import main

    out = tmp_path / "prev.png"
    assert main(["preview", _trimap_folder(tmp_path), "--n", "2", "--thumb", "64", "-o", str(out)]) == 0
    assert cv2.imread(str(out)).shape[0] == 2 * (64 + 22 + 4) + 4
