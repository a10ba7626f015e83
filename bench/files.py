"""A photographer's large file through the command line: `mattekit select` on a 40 MP 16-bit PNG.

    PYTHONPATH=backend:training python -m bench.files [--mp 40] [--runs 3] [--write-docs]

The photo is `bench.highres.big_composite` at `--mp` megapixels (exact alpha, 1 px strands) written as a
16-bit RGB PNG. A private daemon serves it with the models `make setup` fetched (u2netp); each run is a
fresh `python -m mattekit select PHOTO -o CUT.png` process, as a user types it:
- wall time, the CLI's peak RSS (its rusage) and the daemon's seconds (what the CLI prints);
- the daemon's resident memory idle (once it holds still after the warm-up) and its peak over the runs (VmRSS / VmHWM);
- the baseline, in this process with the same library: reading the photo and writing the cut-out
  (`files.read_picture`, `files.write_picture`), what any tool pays for the files themselves.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, machine, proc_status_kb, table

SECTION = "## Large files through the command line"


#: `python -m mattekit ARGS` that reports its own peak RSS at exit. Not the child's rusage: that counts
#: the pages it shared with this (large) process between fork and exec.
_CLI_WITH_PEAK = """import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("bench-peak-kb", line.split()[1], file=sys.stderr)
atexit.register(peak)
sys.argv = ["mattekit", *sys.argv[1:]]
runpy.run_module("mattekit", run_name="__main__", alter_sys=True)
"""


def _run_cli(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall s, peak RSS KB, stderr + stdout) of one CLI process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI_WITH_PEAK, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"mattekit {' '.join(args)} exited {proc.returncode}: {out.strip()[-500:]}")
    peak = re.search(r"bench-peak-kb (\d+)", out)
    return wall, int(peak.group(1)) if peak else 0, out


def bench_select_file(mp: float, runs: int, tmp: Path) -> dict[str, Any]:
    from bench.highres import big_composite, fetched_data_dir
    from mattekit import config, files

    data = big_composite(mp, seed=3)
    photo = tmp / "photo.png"
    files.write_picture(photo, np.clip(data["image"] * 65535 + 0.5, 0, 65535).astype(np.uint16))
    h, w = data["alpha"].shape
    del data
    env = {**os.environ, "MATTEKIT_RUNTIME_DIR": str(tmp / "rt"), "MATTEKIT_CONFIG_DIR": str(tmp / "cfg"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT / "training"), os.environ.get("PYTHONPATH", "")])}
    fetched = fetched_data_dir(config.user_weights_dir(), tmp / "data")
    if fetched is not None:
        env["MATTEKIT_DATA_DIR"] = str(fetched)
    (tmp / "rt").mkdir(mode=0o700)
    daemon = subprocess.Popen([sys.executable, "-m", "mattekit", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until it answers (and has loaded its kernels and model)
            if subprocess.run([sys.executable, "-m", "mattekit", "status"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        idle_kb, steady = -1, 0
        while steady < 4:  # the worker warms up after the socket is up: idle once its memory holds still
            time.sleep(0.5)
            now = proc_status_kb("VmRSS", daemon.pid)
            steady = steady + 1 if abs(now - idle_kb) < 2048 else 0
            idle_kb = now
        cut = tmp / "cut.png"
        walls, peaks, daemon_s, model = [], [], [], ""
        for _ in range(runs):
            wall, peak, out = _run_cli(["select", str(photo), "-o", str(cut)], env)
            m = re.search(r"model (\S+), ([0-9.]+) s in the daemon", out)
            walls.append(wall)
            peaks.append(peak)
            if m:
                model, seconds = m.group(1).rstrip(","), float(m.group(2))
                daemon_s.append(seconds)
        daemon_peak_kb = proc_status_kb("VmHWM", daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(30)
    t0 = time.perf_counter()
    picture = files.read_picture(photo)
    read_s = time.perf_counter() - t0
    del picture
    result = files.read_picture(cut)
    t0 = time.perf_counter()
    files.write_picture(tmp / "again.png", result.pixels)
    write_s = time.perf_counter() - t0
    return {
        "MP": round(h * w / 1e6, 1), "file": "16-bit RGB PNG", "model": model,
        "wall s": min(walls), "wall s (max)": max(walls), "in the daemon s": min(daemon_s) if daemon_s else None,
        "read s": read_s, "write s": write_s,
        "files + daemon s": read_s + write_s + (min(daemon_s) if daemon_s else 0.0),
        "CLI peak MB": max(peaks) / 1024, "daemon idle MB": idle_kb / 1024, "daemon peak MB": daemon_peak_kb / 1024,
    }


def report(row: dict[str, Any], desc: str) -> str:
    return "\n".join([
        SECTION, "",
        f"Measured by `python -m bench.files` (`bench/files.py`): `mattekit select` on a {row['MP']:g} MP "
        f"{row['file']} in fresh CLI processes against a private daemon. Machine: {desc}.", "",
        "wall s: best of the runs (max alongside); read s / write s: reading the photo and writing the cut-out with the "
        "same library in the benchmark's own process (the baseline: what the files cost any tool); files + daemon s: "
        "those two plus the daemon's own time, so wall s minus it is the CLI's overhead. CLI peak: its rusage; daemon: "
        "VmRSS once steady after its warm-up, before the runs, and VmHWM after them.", "",
        table([row], list(row)), ""])


def main(argv: list[str] | None = None) -> int:
    from bench.highres import write_docs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mp", type=float, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    desc = machine()
    with tempfile.TemporaryDirectory(prefix="mkfiles-") as tmp:
        row = bench_select_file(args.mp, args.runs, Path(tmp))
    section = report(row, desc)
    print(section)
    if args.write_docs:
        write_docs(section, heading=SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
