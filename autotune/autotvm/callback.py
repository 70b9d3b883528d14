"""AutoTVM's tuning callbacks: each is called as `callback(tuner, inputs, results)` after
every batch of measurements.

    callbacks=[autotvm.callback.progress_bar(n_trial, prefix="[matmul]"),
               autotvm.callback.log_to_file("matmul.log")]

`log_to_file` writes tex's tuning log (`autotune.records`, one JSON line per
measurement), which `tex-tune best`, `autotune.apply_history_best` and
`autotvm.apply_history_best` read.
"""
from __future__ import annotations

import os
import sys
import dataclasses
import time

from autotune import records as rec
from autotune.autotvm.measure import MeasureErrorNo, record_of_pair
from autotune.errors import TuneError
from autotune.hardware import hardware_of

__all__ = ["log_to_file", "progress_bar"]

#: What progress_bar's `si_prefix` divides FLOP/s by.
_SI_PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def log_to_file(file_out):
    """A callback appending every measurement to the tuning log at path `file_out`."""
    if not isinstance(file_out, (str, os.PathLike)):
        raise TuneError(f"log_to_file needs the path of a log file, got {file_out!r}")

    def write(tuner, inputs, results):
        with rec.RecordWriter(file_out) as writer:
            for inp, res in zip(inputs, results):
                record = record_of_pair(inp, res)
                writer.write(dataclasses.replace(record,
                                                 hardware=hardware_of(inp.task.target)))

    return write


def progress_bar(total: int, prefix: str = "", si_prefix: str = "G", stream=None):
    """A callback showing, on one line of `stream` (default: standard output), the rate
    of the last measurement and the best so far, the trials done of `total` and the time
    since the callback was made."""
    if si_prefix not in _SI_PREFIXES:
        raise TuneError(f"progress_bar: si_prefix must be one of {sorted(_SI_PREFIXES)}, got "
                        f"{si_prefix!r}")
    scale = _SI_PREFIXES[si_prefix]
    start = time.perf_counter()
    state = {"done": 0, "best": 0.0}

    def show(tuner, inputs, results):
        out = stream or sys.stdout
        current = 0.0
        for inp, res in zip(inputs, results):
            if res.error_no == MeasureErrorNo.NO_ERROR and res.costs:
                current = inp.task.flop / (sum(res.costs) / len(res.costs)) / scale
                state["best"] = max(state["best"], current)
        state["done"] += len(results)
        out.write(f"\r{prefix} Current/Best: {current:7.2f}/{state['best']:7.2f} "
                  f"{si_prefix}FLOPS | Progress: ({state['done']}/{total}) | "
                  f"{time.perf_counter() - start:.2f} s")
        if state["done"] >= total:
            out.write(" Done.\n")
        out.flush()

    return show
