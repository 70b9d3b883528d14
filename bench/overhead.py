"""Benchmark: what a call costs when there is almost no work (64 floats).

    python -m bench.overhead

Prints the time per call of a kernel with a serial loop and of the same
kernel with a `parallel` loop (one job for tex's thread pool per call), so
the difference is the price of a parallel loop. The pool's idle workers spin
for some tens of microseconds before they sleep, so back-to-back calls find
them awake; on a busy machine the caller runs the chunks no worker claims.
Run it on a quiet machine and beside a busy process (`python -c "while True:
pass" &`) to see both.
"""
from __future__ import annotations

import time

import numpy as np

import tex
from tex import config


def tiny_kernel(parallel: bool):
    A = tex.placeholder((64,), name="A")
    B = tex.compute((64,), lambda i: A[i] + 1.0, name="B")
    s = tex.create_schedule(B.op)
    if parallel:
        s[B].parallel(B.op.axis[0])
    return tex.build(s, [A, B])


def per_call(kernel, calls: int = 20000) -> float:
    a, b = np.ones(64, np.float32), np.empty(64, np.float32)
    for _ in range(1000):
        kernel(a, b)
    start = time.perf_counter()
    for _ in range(calls):
        kernel(a, b)
    return (time.perf_counter() - start) / calls


def main():
    print(f"call overhead, 64-float elementwise kernel, {config.num_threads()} threads")
    for parallel in (False, True):
        label = "parallel loop" if parallel else "serial loop"
        print(f"  {label:14} {1e6 * per_call(tiny_kernel(parallel)):6.2f} us per call")


if __name__ == "__main__":
    main()
