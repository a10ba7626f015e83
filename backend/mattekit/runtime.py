"""Inference runtimes: run a registered model on NumPy arrays with PyTorch or ONNX Runtime.

The model's `predict` holds all pre/post-processing once; the ONNX Runtime backend only swaps the
network call (`predict(..., forward=OrtForward)`), so both backends share it.

    rt = load_runtime("modnet-photographic", device="auto", backend="torch")
    alpha = rt.predict(image)            # image float32 (H, W, 3) in [0, 1] -> alpha float32 (H, W)
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import config as mk_config

#: Smallest ONNX opset we export (LayerNorm, modern Resize semantics).
ONNX_OPSET = 17
_STRUCTURE_KEY = "mattekit.output_structure"


# ---- output (un)flattening: ONNX has flat named outputs, `forward` may return tuples/dicts/None ----

def flatten_outputs(out: Any) -> tuple[Any, list[torch.Tensor]]:
    """-> (JSON structure spec, tensors in order). Spec: "T" tensor, None, [specs], {"keys", "items"}."""
    if out is None:
        return None, []
    if isinstance(out, torch.Tensor):
        return "T", [out]
    if isinstance(out, (tuple, list)):
        specs, flat = [], []
        for o in out:
            s, f = flatten_outputs(o)
            specs.append(s)
            flat += f
        return specs, flat
    if isinstance(out, dict):
        s, f = flatten_outputs(list(out.values()))
        return {"keys": list(out), "items": s}, f
    raise TypeError(f"cannot export an output of type {type(out).__name__}")


def unflatten_outputs(spec: Any, flat: Sequence[torch.Tensor]) -> Any:
    it = iter(flat)

    def build(s: Any) -> Any:
        if s is None:
            return None
        if s == "T":
            return next(it)
        if isinstance(s, dict):
            return dict(zip(s["keys"], build(s["items"])))
        return tuple(build(x) for x in s)

    return build(spec)


class _ExportWrapper(nn.Module):
    """Calls `model.forward(*tensors, *model.onnx_extra_args)` and returns the flat tensor tuple."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.spec: Any = None

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs, *getattr(self.model, "onnx_extra_args", ()))
        self.spec, flat = flatten_outputs(out)
        return tuple(flat)


def export_onnx(model: nn.Module, path: str | Path, h: int = 512, w: int = 512,
                opset: int = ONNX_OPSET) -> Path:
    """Export `model.forward` to ONNX (dynamic batch, and H/W when `model.onnx_dynamic_hw`).

    Uses the TorchScript exporter (`dynamo=False`), robust for these conv nets. The output structure
    of `forward` (tuple / dict / None entries) is stored in the model's metadata for `OrtForward`.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    was_training = model.training
    model.eval()
    inputs = tuple(model.onnx_example_inputs(h, w))
    in_names = list(model.onnx_input_names)
    out_names = list(model.onnx_output_names)
    wrapper = _ExportWrapper(model)
    with torch.no_grad():
        spec, flat = flatten_outputs(wrapper.model(*inputs, *getattr(model, "onnx_extra_args", ())))
    if len(flat) != len(out_names):
        raise ValueError(f"{type(model).__name__}.forward returns {len(flat)} tensors but onnx_output_names "
                         f"has {len(out_names)}")
    dyn: dict[str, dict[int, str]] = {}
    for name, t in zip(in_names, inputs):
        dyn[name] = {0: "batch"}
        if model.onnx_dynamic_hw and t.dim() == 4:
            dyn[name].update({2: "height", 3: "width"})
    for name, t in zip(out_names, flat):
        dyn[name] = {0: "batch"}
        if model.onnx_dynamic_hw and t.dim() == 4:
            dyn[name].update({2: f"{name}_height", 3: f"{name}_width"})
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript exporter deprecation / tracer chatter
            torch.onnx.export(wrapper, inputs, str(tmp), input_names=in_names, output_names=out_names,
                              dynamic_axes=dyn, opset_version=max(opset, ONNX_OPSET), dynamo=False,
                              do_constant_folding=True, external_data=False)
        proto = onnx.load(str(tmp))
        for k, v in {_STRUCTURE_KEY: json.dumps(spec),
                     "mattekit.arch": getattr(model, "registry_name", type(model).__name__)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)  # never leave a half-written export at `path` (it may be a cache)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


class OrtForward:
    """Callable with `forward`'s tensor inputs and outputs, running an ONNX Runtime session.

    Non-tensor arguments (e.g. MODNet's `inference` flag, fixed at export) are ignored."""

    def __init__(self, onnx_path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None):
        from .onnx_session import new_session

        self.session = new_session(onnx_path, threads=threads, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = json.loads(meta.get(_STRUCTURE_KEY, '"T"'))
        self.inputs = self.session.get_inputs()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *args: Any, **_: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) != len(self.inputs):
            raise ValueError(f"ONNX model takes {len(self.inputs)} tensors, got {len(tensors)}")
        device = tensors[0].device
        feeds = {}
        for meta, t in zip(self.inputs, tensors):
            a = t.detach().cpu()
            if meta.type == "tensor(float)":
                a = a.float()
            feeds[meta.name] = a.numpy()
        outs = self.session.run(self.output_names, feeds)
        return unflatten_outputs(self.spec, [torch.from_numpy(o).to(device) for o in outs])


def resolve_device(device: str | torch.device = "auto") -> tuple[torch.device, str | None]:
    """-> (device, fallback reason or None). "auto": cuda when available, else cpu."""
    dev = str(device)
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), None
    d = torch.device(dev)
    if d.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu"), "CUDA was requested but is not available (no GPU or CPU-only PyTorch); using CPU"
    return d, None


class Runtime:
    """A loaded model ready for NumPy-in / NumPy-out inference.

    Attributes: model, device, backend ("torch" | "onnxruntime"), fallback_reason (str | None),
    amp_dtype (autocast dtype on CUDA, None on CPU).
    """

    def __init__(self, model: nn.Module, device: torch.device, backend: str = "torch",
                 fallback_reason: str | None = None, amp: bool = True, channels_last: bool = True,
                 forward: OrtForward | None = None):
        self.model = model.eval()
        self.device = device
        self.backend = backend
        self.fallback_reason = fallback_reason
        self.task = getattr(model, "task", "trimap_free")
        self.forward = forward
        self.amp_dtype = None
        if device.type == "cuda" and backend == "torch":
            if amp:
                self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)

    def _tensor(self, a: np.ndarray | None, channels: int, label: str, hw: tuple[int, int] | None) -> torch.Tensor | None:
        if a is None:
            return None
        a = np.asarray(a, dtype=np.float32)
        if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        want = 3 if channels == 3 else 2
        if a.ndim != want or (channels == 3 and a.shape[2] != 3):
            raise ValueError(f"{label} must be float32 {'(H, W, 3)' if channels == 3 else '(H, W)'}, got {a.shape}")
        if hw is not None and a.shape[:2] != hw:
            raise ValueError(f"{label} is {a.shape[:2]} but image is {hw}")
        if not np.isfinite(a).all():
            raise ValueError(f"{label} has NaN or infinite values")
        t = torch.from_numpy(np.ascontiguousarray(np.clip(a, 0.0, 1.0)))
        t = t.permute(2, 0, 1)[None] if channels == 3 else t[None, None]
        return t.to(self.device)

    @torch.no_grad()
    def predict(self, image: np.ndarray, guidance: np.ndarray | None = None,
                alpha: np.ndarray | None = None, base: np.ndarray | None = None) -> np.ndarray:
        """image float32 (H, W, 3) sRGB in [0, 1] (+ guidance / alpha (H, W) in [0, 1] for guided /
        foreground models) -> alpha float32 (H, W), or foreground float32 (H, W, 3), in [0, 1].
        base (H, W, 3): the classical foreground estimate, for foreground nets that correct it
        (computed by the model when omitted)."""
        img = self._tensor(image, 3, "image", None)
        hw = tuple(image.shape[:2])
        g = self._tensor(guidance, 1, "guidance", hw)
        a = self._tensor(alpha, 1, "alpha", hw)
        extra = {"base": self._tensor(base, 3, "base", hw)} if base is not None else {}
        if self.task == "guided" and g is None:
            raise ValueError(f"{self.model.registry_name} needs guidance (a mask or trimap)")
        if self.task == "foreground" and a is None:
            raise ValueError(f"{self.model.registry_name} needs alpha")
        if self.forward is None and self.device.type == "cuda":
            img = img.contiguous(memory_format=torch.channels_last)
        ctx = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext())
        with ctx:
            out = self.model.predict(img, guidance=g, alpha=a, forward=self.forward, **extra)
        out = out[0].float().clamp(0, 1).cpu().numpy()
        return out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0)


def _onnx_cache_path(model: nn.Module, hw: tuple[int, int]) -> Path:
    """Registered weights export once to the user weights dir (keyed by their sha256); others to a temp dir."""
    arch = getattr(model, "registry_name", "model")
    sha = (getattr(model, "weights_entry", None) or {}).get("sha256")
    if sha:
        suffix = "" if getattr(model, "onnx_dynamic_hw", False) else f"-{hw[0]}x{hw[1]}"
        return mk_config.user_weights_dir() / "onnx" / f"{arch}-{sha[:16]}-torch{torch.__version__}{suffix}.onnx"
    return Path(tempfile.mkdtemp(prefix="mattekit-onnx-")) / f"{arch}.onnx"


def load_runtime(name_or_model: str | Path | nn.Module, *, device: str | torch.device = "auto",
                 backend: str = "torch", amp: bool = mk_config.RUNTIME_AMP,
                 channels_last: bool = mk_config.RUNTIME_CHANNELS_LAST,
                 threads: int | None = mk_config.ORT_THREADS, onnx_path: str | Path | None = None,
                 onnx_hw: tuple[int, int] = (512, 512)) -> Runtime:
    """Load registered weights (name or .safetensors path) or wrap a model, on `device`.

    device "cuda" without CUDA falls back to CPU with a RuntimeWarning and `fallback_reason` set.
    backend "onnxruntime": exports to `onnx_path` (default: a cache in the user weights dir keyed by
    the weights sha256 for registered weights, else a temporary file) and runs the network
    with ONNX Runtime (CUDA provider when on CUDA and installed), pre/post-processing in torch.
    """
    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    dev, reason = resolve_device(device)
    if reason:
        warnings.warn(reason, RuntimeWarning, stacklevel=2)
    if isinstance(name_or_model, nn.Module):
        model = name_or_model
    else:
        from .models.checkpoints import load_weights

        model = load_weights(name_or_model, device="cpu")
    model = model.eval()
    if backend == "torch":
        return Runtime(model.to(dev), dev, "torch", reason, amp=amp, channels_last=channels_last)
    import onnxruntime as ort

    if onnx_path is None:
        onnx_path = _onnx_cache_path(model, onnx_hw)
    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        export_onnx(model.cpu(), onnx_path, *onnx_hw)
    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    fwd = OrtForward(onnx_path, providers, threads=threads)
    # Pre/post-processing tensors stay on CPU: ORT copies through NumPy anyway.
    return Runtime(model.cpu(), torch.device("cpu"), "onnxruntime", reason, forward=fwd)
