"""CUDA build latency without a GPU: NVRTC compile time and whole builds.

    python -m bench.cuda_build

Prints the first CUDA build in the process (it loads NVRTC), the median of 5
NVRTC compiles of the elementwise kernel to cubin, and a build of the
shared-memory matmul of `bench/gpu_schedules.py` (lowering and NVRTC).
"""
import time

from bench import gpu_schedules as cases
from tex.codegen import nvrtc


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    first = _seconds(lambda: cases.elementwise(1000).build())
    source = cases.elementwise(1000, threads=128).build().get_source("cuda")
    compiles = sorted(_seconds(lambda k=k: nvrtc.compile_source(f"{source}\n// {k}\n", "sm_80"))
                      for k in range(5))
    matmul = _seconds(lambda: cases.matmul(100, 90, 70).build())
    print(f"first CUDA build in the process {first * 1e3:.0f} ms; elementwise kernel, NVRTC "
          f"to cubin {compiles[2] * 1e3:.0f} ms (median of 5); shared-memory matmul build "
          f"{matmul * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
