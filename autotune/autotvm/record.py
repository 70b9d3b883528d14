"""AutoTVM's view of tuning logs, which are tex's (`autotune.records`).

    for inp, res in autotvm.record.load_from_file("matmul.log"):
        print(inp.config, res.costs)
    autotvm.record.pick_best("matmul.log", "matmul.best.log")
    with autotvm.apply_history_best("matmul.log"):
        s, tensors = matmul(512, 512, 512, "float32")

A record names its workload by template name and arguments; turning it into
a (MeasureInput, MeasureResult) pair needs that template registered in this
process (its module imported), since the configuration is read against the
template's space. Records of other workloads (tex's generated spaces, or
templates not registered) are skipped with a `TuneWarning`.
"""
from __future__ import annotations

import json
import os
import warnings

from autotune import dispatch
from autotune import records as rec
from autotune.autotvm.measure import pair_of_record, record_of_pair
from autotune.autotvm.task import create, lookup
from autotune.errors import TuneError

__all__ = ["apply_history_best", "load_from_file", "pick_best"]


def load_from_file(filename):
    """The (MeasureInput, MeasureResult) pairs of the log at `filename`, in order (an
    iterator)."""
    if not os.path.exists(filename):
        raise TuneError(f"load_from_file: no tuning log at {os.fspath(filename)!r}")
    return _pairs(filename)


def _pairs(filename):
    """The pairs of `load_from_file`, one record at a time."""
    tasks: dict[tuple[str, str], object] = {}
    for record in rec.load(filename):
        key = (record.workload, record.target)
        if key not in tasks:
            tasks[key] = _task_of(record, filename)
        if tasks[key] is None:
            continue
        try:
            yield pair_of_record(tasks[key], record)
        except TuneError as err:
            warnings.warn(f"{os.fspath(filename)}: a record of {record.task!r} does not fit its "
                          f"template's space and is skipped ({err})", rec.TuneWarning,
                          stacklevel=3)


def _task_of(record: rec.Record, filename):
    """The AutoTVM task of a record's workload, or None (with a warning) when its
    template is not registered here."""
    try:
        kind, name, args = json.loads(record.workload)
        template = lookup(name) if kind == "template" else None
    except (ValueError, TypeError, TuneError):
        template = None
    if template is None:
        warnings.warn(f"{os.fspath(filename)}: skipped the records of {record.task!r} "
                      f"({record.workload[:60]}): not an AutoTVM template registered in this "
                      "process", rec.TuneWarning, stacklevel=3)
        return None
    return create(template, args, record.target)


def pick_best(in_file, out_file) -> None:
    """Write to `out_file` (replacing it) the best record of each workload and target
    in the log at `in_file`."""
    if not os.path.exists(in_file):
        raise TuneError(f"pick_best: no tuning log at {os.fspath(in_file)!r}")
    records = rec.load(in_file)
    best = []
    for workload, target in dict.fromkeys((r.workload, r.target) for r in records):
        found = rec.best_record(records, workload, target)
        if found is not None:
            best.append(found)
    with open(out_file, "w", encoding="utf-8") as f:
        f.writelines(r.to_line() + "\n" for r in best)


class apply_history_best(dispatch.apply_history_best):  # noqa: N801 (AutoTVM's name)
    """`autotune.apply_history_best` that also takes (MeasureInput, MeasureResult)
    pairs, as `load_from_file` gives them, besides log paths and `Record`s."""

    def __init__(self, records, match_hardware: bool = True):
        if isinstance(records, (str, os.PathLike)):
            records = [records]
        super().__init__([record_of_pair(*item) if isinstance(item, tuple) else item
                          for item in records], match_hardware)
