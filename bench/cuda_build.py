"""CUDA build latency without a GPU: NVRTC compile time and whole builds.

    python -m bench.cuda_build

Prints the first CUDA build in the process (it loads NVRTC), the median of 5
NVRTC compiles of the elementwise kernel to cubin, a build of the
shared-memory matmul of `bench/gpu_schedules.py` (lowering and NVRTC), and
the first build of the elementwise kernel in a new process, twice: with an
empty disk cache, then with the cubin on disk from the first.
Every figure starts from an empty disk cache of its own (a temporary
TEX_CACHE_DIR), so that earlier runs do not turn compiles into disk hits.
"""
import os
import subprocess
import sys
import tempfile
import time

from bench import gpu_schedules as cases
from tex.codegen import nvrtc

_CHILD = ("import time\n"
          "from bench import gpu_schedules as cases\n"
          "start = time.perf_counter()\n"
          "cases.elementwise(1000).build()\n"
          "print(time.perf_counter() - start)\n")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _first_build_in_a_new_process(cache_dir: str) -> float:
    """Seconds of the first CUDA build in a fresh Python using the disk cache `cache_dir`."""
    env = dict(os.environ, TEX_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    with tempfile.TemporaryDirectory() as ours, tempfile.TemporaryDirectory() as theirs:
        os.environ["TEX_CACHE_DIR"] = ours
        first = _seconds(lambda: cases.elementwise(1000).build())
        source = cases.elementwise(1000, threads=128).build().get_source("cuda")
        compiles = sorted(_seconds(lambda k=k: nvrtc.compile_source(f"{source}\n// {k}\n",
                                                                    "sm_80"))
                          for k in range(5))
        matmul = _seconds(lambda: cases.matmul(100, 90, 70).build())
        cold = _first_build_in_a_new_process(theirs)
        warm = _first_build_in_a_new_process(theirs)
    print(f"first CUDA build in the process {first * 1e3:.0f} ms; elementwise kernel, NVRTC "
          f"to cubin {compiles[2] * 1e3:.0f} ms (median of 5); shared-memory matmul build "
          f"{matmul * 1e3:.0f} ms; first build in a new process {cold * 1e3:.0f} ms, "
          f"{warm * 1e3:.0f} ms with its cubin on disk from an earlier process")


if __name__ == "__main__":
    main()
