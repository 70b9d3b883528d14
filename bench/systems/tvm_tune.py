"""TVM's MetaSchedule as the tuning peer of bench/tune.py (`--peer tvm`).

`metaschedule(case_name, trials, seed)` declares the case with TVM's tensor
expressions (`topi.nn.conv2d_nchw` for the convolution), tunes it from scratch
with `tune_tir` (XGBoost cost model, evolutionary search, the host's cores)
for that many trials, compiles the best schedule and returns a suite
`Runner` for it with the tuning's wall-clock seconds.

Importing this module raises ImportError when TVM is not installed.
"""
from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count()))

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from tvm import te, topi  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402

from bench.cases import Runner  # noqa: E402
from bench.systems.tvm_impl import _target  # noqa: E402


def _declare(case_name: str):
    """The case's tensors (inputs, then output) in TVM's tensor expressions."""
    if case_name == "matmul1024":
        A = te.placeholder((1024, 1024), "float32", name="A")
        B = te.placeholder((1024, 1024), "float32", name="B")
        k = te.reduce_axis((0, 1024), name="k")
        C = te.compute((1024, 1024), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
        return [A, B, C], (1024, 1024)
    if case_name == "conv2d":
        data = te.placeholder((1, 64, 56, 56), "float32", name="data")
        weight = te.placeholder((64, 64, 3, 3), "float32", name="weight")
        out = topi.nn.conv2d_nchw(data, weight, 1, 1, 1)
        return [data, weight, out], (1, 64, 56, 56)
    raise KeyError(f"no MetaSchedule declaration for case {case_name!r}")


def metaschedule(case_name: str, trials: int, inputs, seed: int = 0) -> tuple[Runner, float]:
    """Tune the case for `trials` trials; (a Runner of the best kernel, tuning seconds)."""
    tensors, out_shape = _declare(case_name)
    mod = te.create_prim_func(tensors)
    target = _target()
    with tempfile.TemporaryDirectory(prefix="tex-ms-") as work_dir:
        start = time.perf_counter()
        database = ms.tune_tir(mod, target, work_dir, max_trials_global=trials,
                               num_trials_per_iter=min(64, trials), seed=seed)
        seconds = time.perf_counter() - start
        schedule = ms.tir_integration.compile_tir(database, mod, target)
    func = tvm.compile(schedule.mod, target=target)["main"]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype="float32"), dev) for x in inputs]
    out = tvm.runtime.empty(out_shape, "float32", dev)
    args.append(out)
    return Runner(run=lambda: func(*args), result=lambda: out.numpy(),
                  notes=f"MetaSchedule, {trials} trials"), seconds
