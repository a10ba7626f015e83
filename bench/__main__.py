"""`python -m bench`: every benchmark in turn (high resolution and speed, then a large file through the CLI).

Extra arguments go to bench.highres (e.g. `python -m bench --write-docs`); `--write-docs` also writes
bench.files' section.
"""

from __future__ import annotations

import sys

from bench import common  # noqa: F401  (puts backend/ and training/ on sys.path)
from bench import files, highres


def main() -> int:
    argv = sys.argv[1:]
    return highres.main(argv) or files.main(["--write-docs"] if "--write-docs" in argv else [])


if __name__ == "__main__":
    raise SystemExit(main())
