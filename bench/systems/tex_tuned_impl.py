"""tex tuned in the benchmark suite: each case as the autotuner left it after a short tuning.

Each case is a registry operator of `autotune.ops` at the case's shape; the
tuner (XGBoost model, generated space) measures `TRIALS` configurations on
this machine and the best one is built and timed by the suite like every
other system. The logs are kept per CPU, in
`bench/results/tuning/<LLVM CPU>-<model name>/<task>.jsonl`, so a rerun on
the same kind of CPU measures nothing new and only builds the best
configuration again (a log with fewer trials is continued). Set `TRIALS`
(`python -m bench --tune-trials N`) before the factories run.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

import autotune
import tex
from autotune import ops as registry
from bench.cases import Runner
from bench.peak import cpu_name

NAME = "tex tuned"
TRIALS = 64
LOG_ROOT = Path(__file__).resolve().parent.parent / "results" / "tuning"


def log_dir() -> Path:
    """This CPU's directory of tuning logs."""
    model = re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-")
    return LOG_ROOT / f"{tex.Target('llvm').cpu}-{model}"


def _tuned(op: str, shape: tuple[int, ...], inputs: list[np.ndarray]) -> Runner:
    """Tune `op` at `shape` (continuing this CPU's log), build the best configuration and
    bind `inputs`."""
    task = registry.task_for(op, shape)
    log = log_dir() / f"{registry.task_name(op, shape).replace(' ', '_').replace(',', 'x')}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = autotune.tune(task, TRIALS, log=str(log))
    if result.best_config is None:
        raise RuntimeError(f"no configuration of {task.name} ran ({result.measured} trials)")
    kernel = tex.build(*result.schedule(), target=task.target)
    seconds = time.perf_counter() - start
    output = kernel(*inputs)
    notes = f"{result.measured} trials, logs in {log.parent.name}"
    return Runner(lambda: kernel(*inputs, output), lambda: output, seconds, notes)


def _matmul(inputs):
    (m, k), n = inputs[0].shape, inputs[1].shape[1]
    return _tuned("matmul", (m, n, k), inputs)


def _batch_matmul(inputs):
    (b, m, k), n = inputs[0].shape, inputs[1].shape[2]
    return _tuned("batch_matmul", (b, m, n, k), inputs)


def _conv2d(inputs):
    n, c, h, w = inputs[0].shape
    return _tuned("conv2d", (n, c, h, w, inputs[1].shape[0]), inputs)


def _full_sum(inputs):
    flat = inputs[0].reshape(-1)  # a view: the registry's full_sum takes one axis
    return _tuned("full_sum", flat.shape, [flat])


FACTORIES = {
    "matmul1024": _matmul,
    "matmul512": _matmul,
    "matmul_skinny": _matmul,
    "bmm": _batch_matmul,
    "conv2d": _conv2d,
    "rowsum": lambda inputs: _tuned("reduce_sum", inputs[0].shape, inputs),
    "fullsum": _full_sum,
    "softmax": lambda inputs: _tuned("softmax", inputs[0].shape, inputs),
    "fused_ew": lambda inputs: _tuned("elementwise", inputs[0].shape, inputs),
    "layernorm": lambda inputs: _tuned("layernorm", inputs[0].shape, inputs),
}
