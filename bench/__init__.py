"""Benchmarks: tex kernels timed against NumPy (run `python -m bench.matmul`)."""
