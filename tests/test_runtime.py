"""Runtimes: ONNX export parity (every registered model), NumPy predict at odd sizes, device fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mattekit.models.registry import create_model, list_models
from mattekit.runtime import (OrtForward, Runtime, export_onnx, flatten_outputs, load_runtime,
                              resolve_device, unflatten_outputs)

#: Keep predict's internal working size small in tests (MODNet would upscale to 512 otherwise).
SMALL = {"modnet": {"ref_size": 64}}
MODELS = list_models()


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory):
    name = request.param
    torch.manual_seed(0)
    model = create_model(name, **SMALL.get(name, {})).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{name}.onnx", h=64, w=96)
    return name, model, path


def _inputs_for(model, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    ex = model.onnx_example_inputs(h, w)
    return tuple(torch.rand(t.shape, generator=g) * (t.max() - t.min()) + t.min() if t.is_floating_point() else t
                 for t in ex)


def _max_diffs(a, b):
    sa, fa = flatten_outputs(a)
    sb, fb = flatten_outputs(b)
    assert sa == sb
    return [float((x - y).abs().max()) for x, y in zip(fa, fb)]


def test_onnx_sessions_follow_the_memory_arena_setting(exported, monkeypatch):
    """Every ONNX session (our models' and the packaged ones') is opened by one function, with the CPU
    arena off by default: the daemon keeps its sessions, and an arena keeps each one's peak."""
    from mattekit import config
    from mattekit.packaged import PackagedSubject

    _, _, path = exported
    assert config.ORT_MEMORY_ARENA is False
    for arena in (False, True):
        monkeypatch.setattr(config, "ORT_MEMORY_ARENA", arena)
        for session in (OrtForward(path, threads=1).session, PackagedSubject(path, "u2net").session):
            assert session.get_session_options().enable_cpu_mem_arena is arena


def test_onnx_matches_torch(exported):
    name, model, path = exported
    ort_forward = OrtForward(path, threads=1)
    sizes = [(64, 96)] + ([(96, 128)] if model.onnx_dynamic_hw else [])
    extra = getattr(model, "onnx_extra_args", ())
    for h, w in sizes:
        inputs = _inputs_for(model, h, w)
        with torch.no_grad():
            ref = model(*inputs, *extra)
        got = ort_forward(*inputs, *extra)
        diffs = _max_diffs(ref, got)
        print(f"{name} {h}x{w} ORT vs torch max|diff| per output: {diffs}")
        if name == "gfm":  # fusion comes from an argmax of glance: compare it away from near-ties
            top2 = ref[0].topk(2, dim=1).values
            clear = (top2[:, 0] - top2[:, 1] > 1e-4)[:, None]
            print(f"gfm fusion: {float(clear.float().mean()):.1%} of pixels without a glance near-tie")
            diffs[-1] = float(((ref[2] - got[2]).abs() * clear).max())
        assert max(diffs) <= 1e-4


def _task_inputs(task, h, w, rng):
    image = rng.random((h, w, 3), dtype=np.float32)
    guidance = alpha = None
    if task == "guided":
        yy, xx = np.mgrid[0:h, 0:w]
        guidance = (((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 <= 1).astype(np.float32)
    if task == "foreground":
        alpha = rng.random((h, w), dtype=np.float32)
    return image, guidance, alpha


@pytest.mark.parametrize(("h", "w"), [(45, 67), (70, 33)])
def test_runtime_predict_odd_sizes_both_backends(exported, h, w):
    name, model, path = exported
    rng = np.random.default_rng(1)
    image, guidance, alpha = _task_inputs(model.task, h, w, rng)
    rt_torch = load_runtime(model, device="cpu")
    rt_ort = load_runtime(model, device="cpu", backend="onnxruntime", onnx_path=path, threads=1)
    out_t = rt_torch.predict(image, guidance=guidance, alpha=alpha)
    out_o = rt_ort.predict(image, guidance=guidance, alpha=alpha)
    want = (h, w, 3) if model.task == "foreground" else (h, w)
    assert out_t.shape == out_o.shape == want
    assert out_t.dtype == np.float32 and 0 <= out_t.min() and out_t.max() <= 1
    assert rt_torch.backend == "torch" and rt_ort.backend == "onnxruntime"
    if name != "gfm":  # GFM's argmax fusion may flip at near-ties; its network parity is tested above
        assert np.abs(out_t - out_o).max() <= 1e-4


def test_runtime_validates_inputs():
    rt = load_runtime(create_model("modnet", ref_size=32), device="cpu")
    with pytest.raises(ValueError, match="image"):
        rt.predict(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        rt.predict(np.full((8, 8, 3), np.nan, np.float32))
    if "prn" in MODELS:
        rt_g = load_runtime(create_model("prn"), device="cpu")
        with pytest.raises(ValueError, match="guidance"):
            rt_g.predict(np.zeros((8, 8, 3), np.float32))
        with pytest.raises(ValueError, match="image is"):
            rt_g.predict(np.zeros((8, 8, 3), np.float32), guidance=np.zeros((9, 8), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="fallback only happens without CUDA")
def test_cuda_request_falls_back_to_cpu():
    with pytest.warns(RuntimeWarning, match="CUDA"):
        rt = load_runtime(create_model("modnet", ref_size=32), device="cuda")
    assert rt.device.type == "cpu" and "CUDA" in rt.fallback_reason
    assert rt.predict(np.zeros((20, 30, 3), np.float32)).shape == (20, 30)
    assert resolve_device("auto") == (torch.device("cpu"), None)


def test_cpu_runtime_has_no_fallback_or_amp():
    rt = Runtime(create_model("modnet"), torch.device("cpu"))
    assert rt.fallback_reason is None and rt.amp_dtype is None


def test_flatten_round_trip():
    t = [torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)]
    for out in [t[0], (None, None, t[0]), {"a": t[0], "b": t[1]}, (t[0], {"x": t[1], "y": None}, [t[2]])]:
        spec, flat = flatten_outputs(out)
        back = unflatten_outputs(spec, flat)
        s2, f2 = flatten_outputs(back)
        assert s2 == spec and all(a is b for a, b in zip(flat, f2))


def test_registered_weights_runtime_caches_onnx(tmp_path, monkeypatch):
    from mattekit.models.checkpoints import save_weights

    monkeypatch.setenv("MATTEKIT_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = create_model("modnet", hr_channels=8, backbone_alpha=0.5, ref_size=64).eval()
    save_weights(model, name="tiny")
    image = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    rt = load_runtime("tiny", device="cpu", backend="onnxruntime", threads=1)
    cached = list((tmp_path / "weights" / "onnx").glob("modnet-*.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    rt2 = load_runtime("tiny", device="cpu", backend="onnxruntime", threads=1)
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not re-exported
    ref = load_runtime("tiny", device="cpu").predict(image)
    assert np.abs(rt.predict(image) - ref).max() <= 1e-4
    assert np.array_equal(rt.predict(image), rt2.predict(image))
