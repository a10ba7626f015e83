import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests run against the source tree even when the package is not installed.
for sub in ("backend", "training", "tests"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

os.environ.setdefault("OMP_NUM_THREADS", "2")
