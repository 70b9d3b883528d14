"""tex in the benchmark suite: each case built from its hand schedule in bench/schedules.py."""
from __future__ import annotations

import time

import numpy as np

import tex
from bench import schedules
from bench.cases import Runner

NAME = "tex"


def _runner(schedule_and_args, inputs: list[np.ndarray], notes: str = "") -> Runner:
    """Build the schedule, allocate its output once, and bind the inputs."""
    start = time.perf_counter()
    kernel = tex.build(*schedule_and_args, target="llvm")
    build_seconds = time.perf_counter() - start
    output = kernel(*inputs)  # allocates the output; later calls write into it
    return Runner(lambda: kernel(*inputs, output), lambda: output, build_seconds, notes)


def _matmul(inputs, **config):
    *batch, m, k = inputs[0].shape
    n = inputs[1].shape[-1]
    config = {**schedules.BEST_MATMUL, **config}
    notes = f"{config['mr']}x{config['nr']} register tile"
    return _runner(schedules.matmul(m, n, k, batch=batch[0] if batch else None, **config),
                   inputs, notes)


def _conv2d(inputs):
    n, c, h, w = inputs[0].shape
    return _runner(schedules.conv2d(n, c, h, w, inputs[1].shape[0]), inputs,
                   "16 channels x 14 pixels register tile")


def _rows(schedule, inputs, **kwargs):
    return _runner(schedule(*inputs[0].shape, **kwargs), inputs)


FACTORIES = {
    "matmul1024": _matmul,
    "matmul512": _matmul,
    "matmul_skinny": _matmul,
    "bmm": _matmul,
    "conv2d": _conv2d,
    "rowsum": lambda inputs: _rows(schedules.row_sum, inputs),
    "fullsum": lambda inputs: _rows(schedules.full_sum, inputs),
    "softmax": lambda inputs: _rows(schedules.softmax, inputs),
    "fused_ew": lambda inputs: _runner(schedules.fused_elementwise(inputs[0].shape[0]), inputs),
    "layernorm": lambda inputs: _runner(schedules.layernorm(*inputs[0].shape), inputs),
}
