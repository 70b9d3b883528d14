"""The short demo: a matmul declared, scheduled, lowered, built, checked, timed and tuned.

    pip install -e ".[tune]" && python -m bench.demo

It prints the hand schedule's decisions, the loop nest they produce, the
build time, and the speed next to NumPy's (medians of interleaved calls; see
bench/matmul.py for how and why). Then the autotuner takes the bare
declaration, tunes it briefly in the space it generates for it (`TRIALS`
measurements with the XGBoost model), and the best kernel is timed against
NumPy the same way.
"""
from __future__ import annotations

import time

from bench.matmul import gflops, inputs, interleaved, check  # sets the thread-pool settings
from bench.schedules import BEST_MATMUL, matmul

import autotune
import tex
from autotune.ops import task_for

SIZE = 1024
TRIALS = 24


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

    print(f"\n# tuning the bare declaration: {TRIALS} trials in its generated space")
    task = task_for("matmul", (SIZE, SIZE, SIZE))
    result = autotune.tune(task, TRIALS, callback=lambda p: print(
        f"  {p.measured:3d}/{p.trials} measured, best {p.best_rate:6.1f} GFLOP/s "
        f"after {p.elapsed:4.1f} s", flush=True))
    print(f"best configuration: {result.best_config.to_json()}, {result.best_rate:.1f} GFLOP/s "
          f"when the {autotune.tuner.REMEASURED} fastest were timed again")
    tuned = tex.build(*result.schedule())
    check(tuned, a, b)
    t_tuned, t_numpy = interleaved(tuned, a, b, samples=10)
    print(f"tuned {gflops(SIZE, t_tuned):7.1f} GFLOP/s")
    print(f"NumPy {gflops(SIZE, t_numpy):7.1f} GFLOP/s")
    print(f"tuned / NumPy = {t_numpy / t_tuned:.2f}")


if __name__ == "__main__":
    main()
