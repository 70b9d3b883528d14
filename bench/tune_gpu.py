"""Does the GPU tuner pick the right reduction strategy?

    python -m bench.tune_gpu [--trials 16] [--quick] [--out DIR]

For row sums and softmax over a grid of shapes (rows 1 to 64k, row lengths 32
to 1M, at most 64M elements), every configuration of the generated CUDA
space is measured (so each strategy gets its best thread count), then the
tuner runs with a few trials. The table gives per shape the fastest strategy
and its time, the tuner's strategy and time, whether they agree and the
tuner's slowdown; it is written to tune_gpu.txt and .json in bench/results (or
--out DIR) with the device's name. Needs a GPU: without one it stops at once, saying so.

`compare(op, shape, make_measurer, trials)` is the logic, with the measurer
a parameter (`autotune.measure.Measurer` here, a fake in the tests).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import autotune
from autotune import ops
from autotune.generate import valid_configs
from autotune.measure import Measurer
from tex.runtime.cuda_device import require_device

#: (rows, row length): 32 to 1M elements per row, 1 to 64k rows, 64M elements at most.
SHAPES = [(65536, 32), (16384, 128), (65536, 256), (4096, 1024), (65536, 1024), (1, 1024),
          (64, 4096), (1024, 8192), (8, 32768), (4096, 16384), (1, 65536), (256, 262144),
          (1, 1048576), (64, 1048576)]
#: A few small shapes for a quick look (--quick).
QUICK_SHAPES = [(4096, 32), (64, 4096), (1, 65536)]
OPS = ("reduce_sum", "softmax")
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def strategy_of(config) -> str:
    """The value of the configuration's reduction-strategy knob (the one named *.strategy)."""
    (name,) = [n for n in config.space.knobs if n.endswith(".strategy")]
    return config[name].val


def compare(op: str, shape, make_measurer, trials: int) -> dict:
    """One row of the table for registry operator `op` at `shape` (rows, cols) on CUDA.

    `make_measurer(task)` gives an object with `measure(configs)` (MeasureResults) and
    `close()`. Every valid configuration is measured; the tuner then measures `trials`.
    """
    task = ops.task_for(op, shape, "cuda")
    measurer = make_measurer(task)
    try:
        best: dict[str, float] = {}
        for result in measurer.measure(valid_configs(task.space)):
            strategy = strategy_of(result.config)
            best[strategy] = min(best.get(strategy, math.inf), result.seconds)
    finally:
        measurer.close()
    tuned = autotune.tune(task, trials, model="xgboost", measurer=make_measurer(task),
                          remeasure=0)
    fastest = min(best, key=best.get)
    chosen = strategy_of(tuned.best_config) if tuned.best_config is not None else "none"
    return {"op": op, "shape": list(shape), "strategies": best, "fastest": fastest,
            "fastest_seconds": best[fastest], "tuned": chosen,
            "tuned_seconds": tuned.best_seconds, "agree": chosen == fastest,
            "slowdown": tuned.best_seconds / best[fastest]}


def table(rows, device: str) -> str:
    """The rows as text, one line per (op, shape)."""
    lines = [f"GPU reduction strategies, exhaustive vs tuner, on {device}",
             f"{'op':<11}{'shape':>16}  {'fastest':<8}{'us':>10}  {'tuner':<8}{'us':>10}"
             f"  {'agree':<6}{'slowdown':>9}"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['op']:<11}{shape:>16}  {r['fastest']:<8}"
                     f"{r['fastest_seconds'] * 1e6:>10.1f}  {r['tuned']:<8}"
                     f"{r['tuned_seconds'] * 1e6:>10.1f}"
                     f"  {'yes' if r['agree'] else 'no':<6}{r['slowdown']:>9.2f}")
    agree = sum(r["agree"] for r in rows)
    lines.append(f"the tuner agrees on {agree} of {len(rows)}")
    return "\n".join(lines)


def device_name() -> str:
    """The name of CUDA device 0; DeviceError (saying a GPU is needed) without one."""
    device = require_device("bench/tune_gpu.py (it times kernels on the GPU)")
    raw = device.call("cuDeviceGetName", 100, device.call("cuDeviceGet", 0))
    return raw.split(b"\0")[0].decode()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="the tuner's trials per shape")
    parser.add_argument("--quick", action="store_true", help="three small shapes only")
    parser.add_argument("--out", default=RESULTS, help="the folder of tune_gpu.txt and .json")
    args = parser.parse_args(argv)
    try:
        device = device_name()
    except Exception as err:  # no GPU, no driver: nothing to measure on
        print(f"bench/tune_gpu.py: {err}", file=sys.stderr)
        return 1
    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        for op in OPS:
            rows.append(compare(op, shape, lambda task: Measurer(task, timeout=60.0),
                                args.trials))
            print(table(rows[-1:], device).splitlines()[-2], flush=True)
    text = table(rows, device)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tune_gpu.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "tune_gpu.json"), "w") as f:
        json.dump({"device": device, "trials": args.trials, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
