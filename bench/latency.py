"""Benchmark: how long tex takes to build the tuned matmul, and what a call costs.

    python -m bench.latency

Build latency of `bench.schedules.matmul(1024, 1024, 1024, **BEST_MATMUL)`,
from `tex.build(...)` to its return, imports not counted:

- cold: the first build in a fresh process with an empty disk cache (LLVM's
  one-time start-up included);
- rebuild: the same schedule object again, in the same process;
- fresh schedule: an identical schedule declared again, in the same process;
- other process: a fresh process whose disk cache holds the kernel.

Each process-level figure is the median over a few fresh processes. Call
overhead is measured by bench/overhead.py's 64-float kernels.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench.overhead import per_call, tiny_kernel

_CHILD = """
import json, time
import tex
from bench.schedules import BEST_MATMUL, matmul
times = {}
s, args = matmul(1024, 1024, 1024, **BEST_MATMUL)
start = time.perf_counter(); kernel = tex.build(s, args)
times["build"] = time.perf_counter() - start
start = time.perf_counter(); tex.build(s, args); times["rebuild"] = time.perf_counter() - start
s, args = matmul(1024, 1024, 1024, **BEST_MATMUL)
start = time.perf_counter(); tex.build(s, args); times["fresh"] = time.perf_counter() - start
times["from_disk"] = kernel.loaded_from_disk
print(json.dumps(times))
"""


def _child(cache_dir: str) -> dict:
    env = dict(os.environ, TEX_CACHE_DIR=cache_dir)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_latency(processes: int = 3) -> dict[str, float]:
    """Median milliseconds of the four build latencies (see the module docstring)."""
    cold, warm = [], []
    for _ in range(processes):
        with tempfile.TemporaryDirectory() as cache_dir:
            cold.append(_child(cache_dir))
            warm.append(_child(cache_dir))
    assert not any(c["from_disk"] for c in cold) and all(w["from_disk"] for w in warm)

    def median_ms(runs, key):
        return 1e3 * statistics.median(r[key] for r in runs)

    return {"cold": median_ms(cold, "build"), "rebuild": median_ms(cold + warm, "rebuild"),
            "fresh schedule": median_ms(cold + warm, "fresh"),
            "other process": median_ms(warm, "build")}


def call_overhead() -> dict[str, float]:
    """Microseconds per call of a 64-float kernel, with a serial and a parallel loop."""
    return {label: 1e6 * per_call(tiny_kernel(parallel))
            for label, parallel in (("serial", False), ("parallel", True))}


def report() -> list[str]:
    build = build_latency()
    calls = call_overhead()
    return ["build latency of the tuned 1024^3 matmul (ms): "
            + ", ".join(f"{k} {v:.1f}" if v >= 1 else f"{k} {v:.3f}" for k, v in build.items()),
            "call overhead, 64 floats (us): "
            + ", ".join(f"{k} loop {v:.1f}" for k, v in calls.items())]


if __name__ == "__main__":
    print("\n".join(report()))
