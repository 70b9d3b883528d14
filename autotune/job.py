"""Tuning jobs: several tasks, one budget, shared out by a task scheduler.

    entries = load_tasks("net.toml", default_target="llvm")
    result = run_job(entries, "logs/", trials=2000)       # or time_budget=1200.0

The TASKS file (TOML or JSON) lists workloads, each a registry operator with
its shape or a function of a Python file with its arguments, and optionally
a target and a weight (default 1):

    [[tasks]]
    op = "conv2d"
    shape = [1, 64, 56, 56, 64]
    weight = 12                      # how often the network runs it

    [[tasks]]
    file = "my_ops.py"               # relative to the TASKS file
    function = "my_matmul"
    args = [1024, 1024, 64]

(JSON: `{"tasks": [{...}, ...]}` or the list alone.) The objective is the
sum over tasks of weight x best time. As Ansor's task scheduler does, the job
first gives every task a warm-up round, then each round gives the next batch
to the task expected to reduce the objective most: its weight times its
recent improvement per trial, plus a little of its best time per trial
(the optimistic guess that keeps slow, stalled tasks in the running). It
stops at the trial budget (over all tasks), the time budget, when no task
has improved for `early_stop` rounds, or when every space is spent. Then, as
`tune` does, each task that measured anything new has its few fastest
configurations timed again, interleaved against each other (and each round
of them against the other tasks' rounds, so that a slow spell of the machine
spoils one round of each), and is judged by those timings (logged as final
records): the figures a job reports are not the luckiest of many noisy
measurements. As in
Ansor, the tasks share what their measurements teach: a task's cost model is
fitted on its own measurements and on those of the job's other tasks on the
same target (each task ranked within itself), so that what made the first
convolutions fast guides the search of the next, from its warm-up round on. Each
task has its own log in the log directory, named after the task and target,
which a resumed job continues.

With a Dask `client` (`autotune.cluster.connect`), the rounds' candidates are
built on the cluster's workers and timed one at a time per machine on workers
of the task's hardware (see `autotune.cluster`); the job itself, its search,
cost model and logs stay in this process, which alone writes the logs.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from autotune import cluster, ops
from autotune import records as rec
from autotune.cost_model import XGBoostModel
from autotune.errors import TuneError
from autotune.measure import Measurer
from autotune.targets import kind_of
from autotune.task import Task
from autotune.tuner import (REMEASURED, RETIMING_ROUNDS, FeatureCache, Finalists,
                            measured_configs, tune)
from autotune.userfile import function_task

#: The keys a task of a TASKS file may have.
TASK_KEYS = ("op", "shape", "dtype", "file", "function", "args", "target", "weight")

#: How many rounds back a task's recent improvement is measured over, and the share of
#: the optimistic term (best time per trial) in its estimated gain.
WINDOW, OPTIMISM = 3, 0.2


@dataclass(frozen=True)
class JobEntry:
    """One task of a job and its weight in the objective."""

    task: Task
    weight: float = 1.0


# --- the TASKS file -----------------------------------------------------------------------

def load_tasks(path, default_target="llvm") -> list[JobEntry]:
    """The entries of the TASKS file at `path` (TOML by its .toml suffix, else JSON)."""
    path = os.fspath(path)
    specs = read_task_specs(path)
    base = os.path.dirname(os.path.abspath(path))
    entries = [entry_of_spec(spec, f"{path}: task {n}", base, default_target)
               for n, spec in enumerate(specs, 1)]
    _check_unique_logs(entries, path)
    return entries


def read_task_specs(path: str) -> list[dict]:
    """The task tables of a TASKS file, unchecked but for being tables."""
    if not os.path.isfile(path):
        raise TuneError(f"no TASKS file at {path!r}")
    data = _parse_toml(path) if path.endswith(".toml") else _parse_json(path)
    specs = data.get("tasks") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"tasks"}:
        raise TuneError(f"{path}: expected only a list 'tasks' at the top, got keys "
                        f"{sorted(data)}")
    if not isinstance(specs, list) or not specs:
        raise TuneError(f"{path}: expected a non-empty list of tasks ([[tasks]] tables in "
                        f"TOML, {{\"tasks\": [...]}} or a list in JSON), got {specs!r:.60}")
    for n, spec in enumerate(specs, 1):
        if not isinstance(spec, dict):
            raise TuneError(f"{path}: task {n}: expected a table of {', '.join(TASK_KEYS)}, "
                            f"got {spec!r:.60}")
    return specs


def _parse_toml(path: str):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise TuneError(f"{path}: TOML TASKS files need Python 3.11 (tomllib); "
                        "write it as JSON") from None
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise TuneError(f"{path}: not valid TOML ({err})") from None


def _parse_json(path: str):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise TuneError(f"{path}: not valid JSON ({err}); a TOML file needs the "
                            f".toml suffix") from None


def entry_of_spec(spec: dict, where: str, base_dir: str, default_target) -> JobEntry:
    """The JobEntry of one task table; TuneError naming `where` when it is malformed."""
    unknown = sorted(set(spec) - set(TASK_KEYS))
    if unknown:
        raise TuneError(f"{where}: unknown keys {unknown}; a task takes {', '.join(TASK_KEYS)}")
    if ("op" in spec) == ("file" in spec):
        raise TuneError(f"{where}: expected either op (with shape) or file (with function), "
                        f"got {'both' if 'op' in spec else 'neither'}")
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise TuneError(f"{where}: weight must be a positive number, got {weight!r}")
    target = spec.get("target", default_target)
    task = _op_task(spec, where, target) if "op" in spec else \
        _file_task(spec, where, base_dir, target)
    return JobEntry(task, float(weight))


def _op_task(spec: dict, where: str, target) -> Task:
    """The registry operator's task of a table with op, shape and maybe dtype."""
    for key in ("function", "args"):
        if key in spec:
            raise TuneError(f"{where}: {key} goes with file; op takes shape and dtype")
    shape = spec.get("shape")
    if isinstance(shape, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in shape) and shape:
        shape = tuple(shape)
    elif not isinstance(shape, str):
        raise TuneError(f"{where}: {spec['op']} needs shape, a list of integers such as "
                        f"[1024, 1024, 64] (or \"1024,1024,64\"), got {shape!r}")
    try:
        return ops.task_for(spec["op"], shape, target, spec.get("dtype", "float32"))
    except TuneError as err:
        raise TuneError(f"{where}: {err}") from None


def _file_task(spec: dict, where: str, base_dir: str, target) -> Task:
    """The task of a table with file, function and maybe args."""
    for key in ("shape", "dtype"):
        if key in spec:
            raise TuneError(f"{where}: {key} goes with op; file takes function and args")
    function, args = spec.get("function"), spec.get("args", [])
    if not isinstance(function, str):
        raise TuneError(f"{where}: file needs function, the name of a function in it, "
                        f"got {function!r}")
    if not isinstance(args, list):
        raise TuneError(f"{where}: args must be a list of the function's arguments, "
                        f"got {args!r}")
    path = os.path.join(base_dir, spec["file"])
    try:
        return function_task(path, function, args, target)
    except TuneError as err:
        raise TuneError(f"{where}: {err}") from None


def log_name(task: Task) -> str:
    """The file name of `task`'s log in a job's directory: its name and target, with
    everything but letters, digits, '.' and '-' made '_'."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", f"{task.name} {task.target}").strip("_") + ".jsonl"


def _check_unique_logs(entries, path: str) -> None:
    seen = {}
    for entry in entries:
        name = log_name(entry.task)
        if name in seen:
            raise TuneError(f"{path}: {entry.task.name} on {entry.task.target} is listed twice")
        seen[name] = entry


# --- the scheduler ------------------------------------------------------------------------

@dataclass
class TaskState:
    """Where one task of a running job stands: trials in its log (`resumed`: those it held
    when the job began), best seconds after each round as (trials, best; once the
    finalists are re-timed, the best re-timing), and whether its space is spent."""

    entry: JobEntry
    log: str
    trials: int = 0
    best: float = math.inf
    history: list = field(default_factory=list)
    exhausted: bool = False
    features: FeatureCache | None = None
    measurer: object = None
    resumed: int = 0

    @property
    def task(self) -> Task:
        return self.entry.task

    def record_round(self, trials: int, best: float) -> bool:
        """Note a round's outcome; whether it improved the best time."""
        improved = best < self.best
        self.exhausted = self.exhausted or trials == self.trials
        self.trials, self.best = trials, min(self.best, best)
        self.history.append((self.trials, self.best))
        return improved


def estimated_gain(state: TaskState, window: int = WINDOW, optimism: float = OPTIMISM) -> float:
    """How much one more trial of the task is expected to reduce the objective: its weight
    times (mostly) its best time's fall per trial over the last `window` rounds, plus a
    share `optimism` of its best time per trial. 0 once its space is spent, or while
    nothing of it has worked."""
    if state.exhausted or not math.isfinite(state.best) or state.trials == 0:
        return 0.0
    then_trials, then_best = state.history[max(0, len(state.history) - 1 - window)]
    recent = 0.0
    if state.trials > then_trials and math.isfinite(then_best):
        recent = (then_best - state.best) / (state.trials - then_trials)
    return state.entry.weight * ((1 - optimism) * recent + optimism * state.best / state.trials)


def pick_task(states) -> TaskState | None:
    """The task to give the next batch: the largest estimated gain; among equals (all 0:
    nothing has worked yet) the one with the fewest trials. None when every space is spent."""
    open_states = [s for s in states if not s.exhausted]
    if not open_states:
        return None
    return max(open_states, key=lambda s: (estimated_gain(s), -s.trials))


@dataclass
class JobResult:
    """The tasks' final states, the time the job took, and why it stopped."""

    states: list
    elapsed: float
    stopped_by: str
    interrupted: bool = False


class _Budget:
    """The job's limits: total trials, seconds, rounds without improvement."""

    def __init__(self, trials, time_budget, early_stop, clock):
        self.trials, self.time_budget, self.early_stop = trials, time_budget, early_stop
        self.clock, self.start, self.stale_rounds = clock, clock(), 0

    def elapsed(self) -> float:
        return self.clock() - self.start

    def spent(self, states) -> str | None:
        """Why the job must stop now, or None."""
        if self.trials is not None and sum(s.trials for s in states) >= self.trials:
            return "trial budget"
        if self.time_budget is not None and self.elapsed() >= self.time_budget:
            return "time budget"
        if self.early_stop is not None and self.stale_rounds >= self.early_stop:
            return f"no improvement for {self.early_stop} rounds"
        return None


# --- running a job ------------------------------------------------------------------------

def run_job(entries, log_dir, *, trials: int | None = None, time_budget: float | None = None,
            resume: bool = False, early_stop: int | None = None, batch_size: int = 8,
            warmup: int | None = None, make_measurer=Measurer, callback=None,
            on_measurement=None, clock=time.monotonic, client=None,
            remeasure: int = REMEASURED, **tune_options) -> JobResult:
    """Tune `entries` (JobEntry list) into one log each in `log_dir` (see the module
    docstring) until `trials` in all (counting those of resumed logs) or `time_budget`
    seconds are spent, or `early_stop` rounds pass without improvement.

    `warmup`: trials each task gets first (default `batch_size`). `make_measurer(task)`
    makes a task's measurer (closed at the end). `callback(state, states, elapsed)` runs
    after each round, `on_measurement(state, progress, states, elapsed)` after each
    measurement (`progress`: the task's `autotune.Progress`), and `callback` again after
    each task's finalists are re-timed. `remeasure`: how many of the fastest of each
    task to re-time at the end (0: none). Other keywords go to
    `autotune.tune` (model, seed, search, ...).
    Without `resume`, a log that already holds a task's measurements is an error.

    `client`: a `distributed.Client` whose cluster builds and measures; each worker then
    makes its own measurer of a task with `make_measurer(task)` (which must pickle).
    TuneError at the start when no worker can measure a task (`autotune.cluster`).
    """
    _check_job_options(entries, trials, time_budget, early_stop, batch_size)
    if client is not None:
        make_measurer = _cluster_measurers(client, entries, make_measurer)
    os.makedirs(log_dir, exist_ok=True)
    states = [_initial_state(entry, log_dir, resume) for entry in entries]
    budget = _Budget(trials, time_budget, early_stop, clock)
    warmup = batch_size if warmup is None else warmup
    stopped_by, interrupted = None, False
    callbacks = (callback, on_measurement)
    try:
        for state in states:  # the warm-up round
            stopped_by = budget.spent(states)
            if stopped_by is None and state.trials < warmup:
                interrupted = _round(state, warmup - state.trials, budget, states, callbacks,
                                     make_measurer, batch_size, tune_options)
            if stopped_by or interrupted:
                break
        while not (stopped_by or interrupted):
            stopped_by = budget.spent(states)
            state = pick_task(states)
            if stopped_by is None and state is None:
                stopped_by = "every space is spent"
            if stopped_by is None:
                interrupted = _round(state, batch_size, budget, states, callbacks,
                                     make_measurer, batch_size, tune_options)
        if not interrupted and remeasure:
            interrupted = _retime(states, remeasure, callback, budget)
    finally:
        for state in states:
            if state.measurer is not None:
                state.measurer.close()
    return JobResult(states, budget.elapsed(), stopped_by or "interrupted", interrupted)


def _check_job_options(entries, trials, time_budget, early_stop, batch_size) -> None:
    if not entries:
        raise TuneError("run_job: a job needs at least one task")
    if trials is None and time_budget is None:
        raise TuneError("run_job: give a trial budget (trials=) or a time budget "
                        "(time_budget=), or both")
    for name, value in (("trials", trials), ("early_stop", early_stop),
                        ("batch_size", batch_size)):
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise TuneError(f"run_job: {name} must be an int >= 1, got {value!r}")
    if time_budget is not None and not time_budget > 0:
        raise TuneError(f"run_job: time_budget must be > 0 seconds, got {time_budget!r}")


def _cluster_measurers(client, entries, make_measurer):
    """A maker of each task's DaskMeasurer on `client`'s cluster, after checking that the
    cluster can measure every task."""
    hosts = cluster.measuring_hosts(client, [entry.task for entry in entries])
    by_task = {id(entry.task): task_hosts for entry, task_hosts in zip(entries, hosts)}
    return lambda task: cluster.DaskMeasurer(task, client, by_task[id(task)], make_measurer)


def _initial_state(entry: JobEntry, log_dir, resume: bool) -> TaskState:
    """A task's state from its log; TuneError if the log holds it and not `resume`."""
    log = os.path.join(os.fspath(log_dir), log_name(entry.task))
    measured = measured_configs(entry.task, rec.load(log))
    if measured and not resume:
        raise TuneError(f"the log {log} already holds {len(measured)} measurements of "
                        f"{entry.task.name} on {entry.task.target}; pass --resume "
                        f"(resume=True) to continue the job, or choose another log directory")
    state = TaskState(entry, log, features=FeatureCache(entry.task))
    if measured:
        state.trials = state.resumed = len(measured)
        state.best = min(measured.values())
        state.history.append((state.trials, state.best))
    return state


def _round(state: TaskState, count: int, budget: _Budget, states, callbacks, make_measurer,
           batch_size: int, tune_options) -> bool:
    """Measure up to `count` more configurations of `state`'s task (fewer when the trial
    budget ends first); whether the tuning was interrupted. `callbacks`: run_job's
    (callback, on_measurement)."""
    callback, on_measurement = callbacks
    if budget.trials is not None:
        count = min(count, budget.trials - sum(s.trials for s in states))
    if state.measurer is None:
        state.measurer = make_measurer(state.task)
    if tune_options.get("model", "xgboost") == "xgboost":
        tune_options = {**tune_options, "model": shared_model(
            state, states, tune_options.get("seed", 0))}
    result = tune(state.task, state.trials + count, log=state.log, batch_size=batch_size,
                  remeasure=0, measurer=state.measurer, features=state.features,
                  on_measurement=on_measurement and (lambda progress: on_measurement(
                      state, progress, states, budget.elapsed())),
                  **tune_options)
    improved = state.record_round(result.measured, result.best_seconds)
    budget.stale_rounds = 0 if improved else budget.stale_rounds + 1
    if callback is not None:
        callback(state, states, budget.elapsed())
    return result.interrupted


def _retime(states, count: int, callback, budget: _Budget) -> bool:
    """Re-time the `count` fastest of each task that measured anything in this run, in
    RETIMING_ROUNDS rounds, each round every task's finalists (`autotune.tuner.Finalists`);
    each task's best becomes its best re-timing. Whether the re-timing was interrupted."""
    finalists = [(state, Finalists(state.task, state.log, state.measurer, count))
                 for state in states if state.trials > state.resumed]
    try:
        for round_ in range(RETIMING_ROUNDS):
            for _, leaders in finalists:
                leaders.time_round(round_)
        for state, leaders in finalists:
            state.best = leaders.best()[1]
            if callback is not None:
                callback(state, states, budget.elapsed())
    except KeyboardInterrupt:
        return True
    finally:
        for _, leaders in finalists:
            leaders.close()
    return False


def shared_model(state: TaskState, states, seed: int) -> XGBoostModel:
    """The XGBoost model of one task's round, knowing beforehand (`add_prior`) what the
    job's other tasks on the same target have logged: one ranking group per task, so each
    is judged against its own best. `autotune.tune` primes it before the task's first
    measurement and fits it with the task's own measurements after each batch."""
    model, target = XGBoostModel(seed=seed), str(state.task.target)
    for other in states:
        if other is state or str(other.task.target) != target:
            continue
        measured = measured_configs(other.task, rec.load(other.log))
        pairs = [(other.features(c), t) for c, t in measured.items()]
        pairs = [(x, t) for x, t in pairs if x is not None]
        if pairs:
            model.add_prior(np.stack([x for x, _ in pairs]), [t for _, t in pairs])
    return model


@dataclass(frozen=True)
class SummaryRow:
    """One task's line of a job's summary."""

    task: Task
    weight: float
    trials: int
    best_seconds: float
    first_seconds: float
    numpy_seconds: float = math.nan  # the registry's NumPy code on the same inputs

    @property
    def speedup(self) -> float:
        """The first valid trial's time over the best (nan when nothing worked)."""
        if not math.isfinite(self.best_seconds):
            return math.nan
        return self.first_seconds / self.best_seconds

    @property
    def over_numpy(self) -> float:
        """NumPy's time over the best (nan without a NumPy version or a best)."""
        if not math.isfinite(self.best_seconds):
            return math.nan
        return self.numpy_seconds / self.best_seconds


def summary_rows(states, numpy: bool = True) -> list[SummaryRow]:
    """Each task's trials, best time and first valid time, read from its log, and with
    `numpy` the time of the registry's NumPy code for its operator, timed in this process
    (so on this machine: leave it out for a job measured on a cluster's hosts)."""
    rows = []
    for state in states:
        records = [r for r in rec.load(state.log) if r.workload == state.task.workload_key
                   and r.target == str(state.task.target)]
        first = next((r.seconds for r in records if r.error is None and r.times), math.inf)
        best = rec.best_record(records)
        rows.append(SummaryRow(state.task, state.entry.weight, state.trials,
                               best.seconds if best else math.inf, first,
                               numpy_seconds(state.task) if numpy else math.nan))
    return rows


def numpy_seconds(task: Task, budget: float = 0.5, most: int = 9) -> float:
    """The median time of the registry's NumPy code for `task`'s operator on its
    measurement inputs, over up to `most` calls within about `budget` seconds after one
    warm-up call; nan for a task that is not a registry operator's or runs elsewhere than
    the host CPU."""
    try:
        op, shape, _ = ops.parse_task_name(task.name)
    except TuneError:
        return math.nan
    if kind_of(task.target).on_device:
        return math.nan
    function, inputs = ops.OPS[op].numpy_version(shape), task.random_inputs()
    function(*inputs)
    times, start = [], time.perf_counter()
    while len(times) < most and (len(times) < 3 or time.perf_counter() - start < budget):
        began = time.perf_counter()
        function(*inputs)
        times.append(time.perf_counter() - began)
    return statistics.median(times)
