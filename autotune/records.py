"""Tuning logs: one JSON line per measured configuration.

A line holds the tex version, the target, the workload key, the task's
name (for registry operators, enough to declare it again), the
configuration (knob name -> value), the measured times in seconds (empty on
error), the error kind and message (null when fine), a timestamp and the
hardware it was measured on (`autotune.hardware`; absent from older logs):

    {"workload": "compute:...", "target": "llvm", "config": {...}, "task": "matmul 1024,1024,1024",
     "times": [0.0071, 0.0070, 0.0071], "error": null, "message": "", "tex": "0.1.0",
     "time": 1763750000.0, "hardware": {"cpu_model": "...", "llvm_cpu": "znver3", ...}}

Lines are appended and flushed one at a time, so a killed job loses at most
the line being written; `load` skips a damaged line with a warning, and a
writer moves a cut-off last line aside (to LOG.cut) before it appends.
"""
from __future__ import annotations

import json
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field

import tex
from autotune.errors import TuneError


class TuneWarning(UserWarning):
    """Something in a log was skipped."""


@dataclass(frozen=True)
class Record:
    """One measurement of one configuration; `final` for a re-timing of a finalist at
    the end of a tuning run (`autotune.tuner`)."""

    workload: str
    target: str
    config: dict
    task: str = ""
    times: tuple[float, ...] = ()
    error: str | None = None
    message: str = ""
    tex: str = tex.__version__
    time: float = field(default_factory=time.time)
    hardware: dict = field(default_factory=dict)
    final: bool = False

    @property
    def seconds(self) -> float:
        """The median time, or infinity when the measurement failed."""
        if self.error is not None or not self.times:
            return float("inf")
        return statistics.median(self.times)

    def to_line(self) -> str:
        fields = asdict(self)
        fields["times"] = list(self.times)
        return json.dumps(fields, sort_keys=False)

    @classmethod
    def from_line(cls, line: str) -> "Record":
        """Parses one line; ValueError/KeyError/TypeError when it is not a record."""
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data["config"], dict):
            raise ValueError("not a record")
        hardware = data.get("hardware", {})
        if not isinstance(hardware, dict):
            raise ValueError("hardware is not an object")
        return cls(workload=str(data["workload"]), target=str(data["target"]),
                   config=data["config"], task=str(data.get("task", "")),
                   times=tuple(float(t) for t in data["times"]),
                   error=data.get("error"), message=str(data.get("message", "")),
                   tex=str(data.get("tex", "")), time=float(data.get("time", 0.0)),
                   hardware=hardware, final=bool(data.get("final", False)))


class RecordWriter:
    """Appends records to a log file, flushing each line."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            _set_aside_cut_line(self.path)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise TuneError(f"cannot open the tuning log {self.path!r} for appending: "
                            f"{err.strerror}") from None

    def write(self, record: Record) -> None:
        self._file.write(record.to_line() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _set_aside_cut_line(path: str) -> None:
    """If the log at `path` does not end with a newline (a job killed mid-line, a full
    disk), move its cut-off last line to `path`.cut with a `TuneWarning`, so that the
    next record starts a line of its own instead of being lost with the fragment."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        with open(path + ".cut", "ab") as aside:
            aside.write(data[keep:] + b"\n")
        f.truncate(keep)
    warnings.warn(f"{path}: its last line was cut off (a job stopped while writing it?); "
                  f"moved it to {path}.cut", TuneWarning, stacklevel=3)


def load(path) -> list[Record]:
    """The records of a log, in order; damaged lines are skipped with a `TuneWarning`.

    A missing file is an empty log.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(Record.from_line(line))
            except (ValueError, KeyError, TypeError):
                warnings.warn(f"{path}:{number}: skipped a line that is not a tuning record "
                              f"({line.strip()[:60]!r})", TuneWarning, stacklevel=2)
    return records


def best_record(records, workload: str | None = None, target: str | None = None):
    """The successful record (of `workload` on `target`, when given) of the fastest
    configuration, or None.

    Where some configurations were re-timed as finalists (`final` records: the tuner
    times its leaders again at the end of a run), the fastest is chosen among those, by
    the median of their final records, so that a lucky measurement in the search does
    not win; otherwise by the mean over each configuration's records.
    """
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if r.error is None and r.times and (workload is None or r.workload == workload) \
                and (target is None or r.target == target):
            key = (r.workload, r.target, json.dumps(r.config, sort_keys=True))
            groups.setdefault(key, []).append(r)
    if not groups:
        return None
    finalists = [[r for r in g if r.final] for g in groups.values()]
    finalists = [g for g in finalists if g]
    if finalists:
        return min(finalists, key=lambda g: statistics.median(r.seconds for r in g))[-1]
    best = min(groups.values(), key=lambda g: statistics.fmean(r.seconds for r in g))
    return best[-1]
