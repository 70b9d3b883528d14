"""The short demo: a matmul declared, scheduled, lowered, built, checked and timed.

    pip install -e . && python -m bench.demo

It prints the schedule's decisions, the loop nest they produce, the build
time, and the speed next to NumPy's (medians of interleaved calls; see
bench/matmul.py for how and why).
"""
from __future__ import annotations

import time

from bench.matmul import gflops, inputs, interleaved, check  # sets the thread-pool settings
from bench.schedules import BEST_MATMUL, matmul

import tex

SIZE = 1024


def main():
    s, args = matmul(SIZE, SIZE, SIZE, **BEST_MATMUL)
    print(f"# C = A @ B, float32, {SIZE}x{SIZE}x{SIZE}; the schedule:\n{s}\n")
    print(f"# the loop nest it lowers to:\n{tex.lower(s, args)}\n")
    start = time.perf_counter()
    kernel = tex.build(s, args, target="llvm")
    print(f"built in {1e3 * (time.perf_counter() - start):.0f} ms")
    a, b = inputs(SIZE)
    check(kernel, a, b)
    print("result matches NumPy")
    t_tex, t_numpy = interleaved(kernel, a, b, samples=10)
    print(f"tex   {gflops(SIZE, t_tex):7.1f} GFLOP/s")
    print(f"NumPy {gflops(SIZE, t_numpy):7.1f} GFLOP/s")
    print(f"tex / NumPy = {t_numpy / t_tex:.2f}")


if __name__ == "__main__":
    main()
