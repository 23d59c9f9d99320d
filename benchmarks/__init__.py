"""Benchmarks: `python -m benchmarks` runs the suite (benchmarks/run.py)."""
