"""Benchmark every registered model: parameters, GFLOPs, CPU latency of torch vs ONNX Runtime.

    PYTHONPATH=backend python bench/models.py [--sizes 512 1024] [--runs 3] [--threads 2] [--models modnet gfm]

Latency is the network call (`forward` on `onnx_example_inputs(s, s)`), median of `--runs` after one warm-up,
random-init weights in eval mode. FLOPs are counted by torch.utils.flop_counter (1 multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from mattekit.models.registry import create_model, list_models  # noqa: E402
from mattekit.runtime import OrtForward, export_onnx  # noqa: E402


def gflops(model: torch.nn.Module, size: int) -> float:
    inputs = model.onnx_example_inputs(size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs, *getattr(model, "onnx_extra_args", ()))
    return fc.get_total_flops() / 1e9


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (allocations, ORT graph caches)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_model(name: str, sizes: list[int], runs: int, threads: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    extra = getattr(model, "onnx_extra_args", ())
    row = {"model": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
           "gflops_512": gflops(model, 512)}
    onnx_path = export_onnx(model, workdir / f"{name}.onnx", 512, 512)
    ort_fwd = OrtForward(onnx_path, threads=threads)
    for s in sizes:
        inputs = model.onnx_example_inputs(s, s)
        with torch.no_grad():
            t_torch = median_time(lambda: model(*inputs, *extra), runs)
        t_ort = median_time(lambda: ort_fwd(*inputs, *extra), runs)
        row[f"torch_{s}_ms"] = t_torch * 1e3
        row[f"ort_{s}_ms"] = t_ort * 1e3
        row[f"ratio_{s}"] = t_torch / t_ort
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.models or list_models()
    cols = ["model", "params_M", "gflops_512"] + [f"{k}_{s}" for s in args.sizes
                                                  for k in ("torch", "ort", "ratio")]
    print(f"# CPU, {args.threads} threads, median of {args.runs}; torch {torch.__version__}; latency in ms; "
          f"ratio = torch / ORT; load average at start {os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(c.replace("_ms", " ms") for c in cols) + " |")
    print("|" + "---|" * len(cols))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = bench_model(name, args.sizes, args.runs, args.threads, Path(tmp))
            cells = []
            for c in cols:
                v = next((row[k] for k in (c, c + "_ms") if k in row), "")
                cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
