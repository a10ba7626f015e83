"""Shared helpers for the benchmarks: paths, peak-memory measurement, timing, tables, machine description."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
for _sub in ("backend", "training"):
    if str(ROOT / _sub) not in sys.path:
        sys.path.insert(0, str(ROOT / _sub))


def proc_status_kb(key: str = "VmRSS", pid: int | str = "self") -> int:
    """A memory line of /proc/PID/status (VmRSS, VmHWM, ...), KiB; 0 where there is none (not Linux)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    """Current resident set size of this process, bytes (Linux /proc; 0 elsewhere)."""
    return proc_status_kb("VmRSS") * 1024


class PeakRSS:
    """Context manager: peak RSS above the level at entry, bytes, sampled every `period` s.

    A sampling thread rather than VmHWM, so several measurements in one process are independent.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRSS":
        self.base = rss_bytes()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.period)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(fn(), wall seconds, peak extra RSS bytes)."""
    with PeakRSS() as m:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return out, dt, m.peak


def machine() -> str:
    """One line: CPU model, cores, RAM, load, Python/torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(open("/proc/meminfo").readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        import torch

        tv = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        tv = ""
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, load average {load:.1f} at start; Python {platform.python_version()}{tv}"


def table(rows: list[dict[str, Any]], cols: list[str], digits: int = 3) -> str:
    """Markdown table of `rows` (dicts) with columns `cols`; floats to `digits` significant digits."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
