"""What a tuning log says, for `tex-tune best` and `tex-tune plot`, and the rates and
durations the CLI prints.

`print_best` prints each workload's best record (of this machine's hardware unless
told otherwise) with its rate and loop nest when its task can be declared again
(a registry operator, or a function of the `--file` given); `write_plot` draws
each workload's measured trials, failures marked, and its running best, one panel per
workload. A log may be a file or a job's log directory (every `*.jsonl` in it).
"""
from __future__ import annotations

import json
import math
import os

import tex
from autotune import ops
from autotune import records as rec
from autotune.errors import TuneError
from autotune.hardware import matching_records, other_hardware_note
from autotune.task import Task
from autotune.userfile import task_of_record


def registry_task(name: str, target: str, workload: str) -> Task | None:
    """The registry task a log's record names, or None when `name` is not a registry task's
    or the registry now declares it differently (another workload key)."""
    try:
        op, shape, dtype = ops.parse_task_name(name)
        task = ops.task_for(op, shape, target, dtype)
    except tex.TexError:
        return None
    return task if task.workload_key == workload else None


def rate_text(rate: float, unit: str) -> str:
    """`rate` with its unit, to three significant digits ("- unit" when none)."""
    if rate <= 0:
        return f"- {unit}"
    return f"{rate:.0f} {unit}" if rate >= 100 else f"{rate:.3g} {unit}"


def duration_text(seconds: float) -> str:
    """`seconds` as people read them: "12.3 s", "3 min 05 s", "1 h 02 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def load_existing(path: str) -> list:
    """The records of the log file `path`, or of every `*.jsonl` file of the directory
    `path` (a job's `--log-dir`), in name order."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if name.endswith(".jsonl"))
        if not files:
            raise TuneError(f"the directory {path!r} holds no tuning log (*.jsonl)")
        return [r for file in files for r in rec.load(file)]
    if not os.path.isfile(path):
        raise TuneError(f"no tuning log at {path!r}")
    return rec.load(path)


def _workloads(records, only=None) -> dict[tuple[str, str], list]:
    """Records per (workload, target), in the log's order; `only` picks by key or name."""
    groups: dict[tuple[str, str], list] = {}
    for r in records:
        if only is None or only in (r.workload, r.task):
            groups.setdefault((r.workload, r.target), []).append(r)
    return groups


def print_best(log: str, workload=None, file=None, any_hardware: bool = False) -> None:
    """Print each workload's best record of this machine's hardware (every record with
    `any_hardware`), its rate and loop nest when its task can be declared again."""
    records = load_existing(log)
    used, other = matching_records(records, not any_hardware)
    groups = _workloads(used, workload)
    other_groups = {key: group for key, group in _workloads(other, workload).items()
                    if key not in groups}
    if not groups and not other_groups:
        names = sorted({r.task or r.workload for r in records})
        raise TuneError(f"{log} holds no workload {workload!r}; it holds "
                        f"{', '.join(names) or 'nothing'}" if workload
                        else f"{log} holds no measurement")
    for (key, target), group in other_groups.items():
        print(f"== {group[-1].task or key} on {target} ({key}): "
              f"{other_hardware_note(group)}; --any-hardware uses them")
    for (key, target), group in groups.items():
        _print_workload_best(group, key, target, file)


def _print_workload_best(group, workload: str, target: str, file) -> None:
    """The best record of one workload's records, with its rate and loop nest when the
    registry (or the --file) declares its task."""
    name = group[-1].task or workload
    best = rec.best_record(group)
    failed = sum(r.error is not None for r in group)
    print(f"== {name} on {target} ({workload}): {len(group)} measurements, {failed} failed")
    if best is None:
        print("no configuration worked")
        return
    task = registry_task(name, target, workload)
    if task is None and file is not None:
        task = task_of_record(file, name, target, workload)
    rate = f"{rate_text(task.rate(best.seconds), task.unit)}, " if task else ""
    print(f"best: {rate}{best.seconds * 1e3:.4g} ms")
    print(f"config: {json.dumps(best.config)}")
    if task is None:
        print("(no loop nest: not a registry operator; pass the --file that declares it)")
        return
    try:
        schedule, tensors = task.instantiate(task.space.from_json(best.config))
    except TuneError as err:
        print(f"(no loop nest: the task's space has changed since the log was written: {err})")
        return
    print(tex.lower(schedule, tensors))


def _curve(group, task) -> tuple[list, list, list, list]:
    """(trial numbers, values, failed trial numbers, running best) of one workload's
    records, re-measurements of a configuration left out: rates when `task` is known,
    else milliseconds."""
    def value(seconds):
        return task.rate(seconds) if task else seconds * 1e3
    xs, ys, failed, best_line, best, seen = [], [], [], [], math.inf, set()
    for r in group:
        config = json.dumps(r.config, sort_keys=True)
        if config in seen:
            continue
        seen.add(config)
        trial = len(seen)
        if math.isfinite(r.seconds):
            xs.append(trial)
            ys.append(value(r.seconds))
        else:
            failed.append(trial)
        best = min(best, r.seconds)
        best_line.append(value(best) if math.isfinite(best) else math.nan)
    return xs, ys, failed, best_line


def write_plot(logs, output: str) -> None:
    """Write each workload's measured trials (failures marked) and running best to the
    PNG `output`, one panel per workload of the logs (files or job log directories),
    in two columns past three panels."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise TuneError("tex-tune plot needs matplotlib: pip install matplotlib") from None
    logs = [logs] if isinstance(logs, (str, os.PathLike)) else list(logs)
    panels = []
    for (workload, target), group in _workloads(
            [r for log in logs for r in load_existing(log)]).items():
        name = group[-1].task or workload
        task = registry_task(name, target, workload)
        best = rec.best_record(group)
        summary = (f"best {rate_text(task.rate(best.seconds), task.unit)}" if task and best
                   else f"best {best.seconds * 1e3:.4g} ms" if best else "nothing worked")
        panels.append((f"{name} ({target}): {summary}", task.unit if task else
                       "ms (lower is better)", _curve(group, task)))
    if not panels:
        raise TuneError(f"{', '.join(map(str, logs))} hold(s) no measurement to plot")
    columns = 1 if len(panels) <= 3 else 2
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(7 * columns, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(", ".join(os.path.basename(os.path.normpath(log)) for log in logs))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid[len(panels):]:
        axes.set_visible(False)
    for axes, (title, unit, (xs, ys, failed, best_line)) in zip(grid, panels):
        trials = range(1, len(best_line) + 1)
        axes.plot(xs, ys, "o", markersize=3, alpha=0.5, label="trial")
        axes.plot(failed, [0] * len(failed), "x", color="red", label="failed")
        axes.plot(trials, best_line, "-", label="best so far")
        axes.set_title(title, fontsize="medium")
        axes.set_xlabel("measured trial")
        axes.set_ylabel(unit)
        axes.set_ylim(bottom=0)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.savefig(output, dpi=100)
    print(f"wrote {output}")
