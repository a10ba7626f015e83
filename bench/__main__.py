"""`python -m bench`: every benchmark in turn (high resolution and speed, then the daemon's own report).

Extra arguments go to bench.highres (e.g. `python -m bench --write-docs`).
"""

from __future__ import annotations

import sys

from bench import common  # noqa: F401  (puts backend/ and training/ on sys.path)
from bench import highres


def main() -> int:
    return highres.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
