"""Benchmarks: `make bench` (bench/run.py). Targets live here, not in timed tests."""
