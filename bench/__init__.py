"""Benchmarks: `python -m bench` (or `make bench`) runs them; see docs/benchmarks.md."""
