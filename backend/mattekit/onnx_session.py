"""One way to open an ONNX Runtime session, for every ONNX model the daemon or a tool runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from . import config as mk_config


def new_session(path: str | Path, *, threads: int | None = mk_config.ORT_THREADS,
                providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An `onnxruntime.InferenceSession` for the model file `path`.

    threads: intra-op threads (None: ONNX Runtime's default, the machine's cores); the model's ops run
        one after another, so a single inter-op thread.
    The CPU memory arena follows `config.ORT_MEMORY_ARENA`: off by default, because the daemon keeps
    its sessions for its whole life and an arena keeps its peak for that long.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = mk_config.ORT_MEMORY_ARENA
    return ort.InferenceSession(str(path), opts, providers=list(providers))
