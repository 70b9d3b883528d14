"""The tuning loop: propose, measure, record, learn, until the trials are spent.

`tune(task, trials, log=...)` measures at most `trials` configurations of
`task`, counting those already in the log for this workload and target (a
resumed job measures only what is missing, and never measures a
configuration twice in its search). Each round the search proposes a
batch, the measurer builds and runs it, every result is appended to the log
at once, and the cost model is fitted again on all measurements. At the end
the few fastest (`remeasure`) are timed again, interleaved against each other
over `RETIMING_ROUNDS` rounds, and judged by those times alone: the search's
figure of the fastest of many noisy measurements is often lucky, and the
figure reported (and kept in the log as its `final` records) is one a fresh
timing reproduces.
Ctrl-C stops after closing the measurer; the log keeps every finished
measurement.
"""
from __future__ import annotations

import inspect
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import tex
from autotune import records as rec
from autotune.cost_model import RandomModel, XGBoostModel
from autotune.errors import TuneError
from autotune.features import program_features
from autotune.hardware import hardware_of
from autotune.measure import Measurer
from autotune.search import make_search
from autotune.space import Config
from autotune.targets import kind_of
from autotune.task import Task


@dataclass
class Progress:
    """What the tuning has done so far, passed to the callbacks after each round and each
    measurement."""

    task: Task
    trials: int
    measured: int
    best_seconds: float
    best_config: Config | None
    elapsed: float
    last: list = field(default_factory=list)  # the round's (or the measurement's) results

    @property
    def best_rate(self) -> float:
        """The best rate so far in `task.unit` (0 before any success)."""
        return self.task.rate(self.best_seconds) if math.isfinite(self.best_seconds) else 0.0


@dataclass
class TuneResult:
    """The best configuration found (None when every measurement failed) and its time."""

    task: Task
    best_config: Config | None
    best_seconds: float
    measured: int
    elapsed: float
    interrupted: bool = False

    @property
    def best_rate(self) -> float:
        return self.task.rate(self.best_seconds) if math.isfinite(self.best_seconds) else 0.0

    def schedule(self):
        """(schedule, tensors) of the best configuration."""
        if self.best_config is None:
            raise TuneError(f"no configuration of {self.task.name!r} was measured successfully")
        return self.task.instantiate(self.best_config)


#: How many of the fastest configurations are timed again at the end of a run (by default),
#: and in how many rounds: each round times every finalist once, starting one further along,
#: so that a drift of the machine's speed falls on all of them alike.
REMEASURED = 3
RETIMING_ROUNDS = 5

#: The pass after which features are read: the program is vectorized and unrolled, and
#: skipping the final simplification makes lowering about three times faster. (For a CUDA
#: target the program is lowered fully: its kernel launches give the `gpu.*` features.)
FEATURES_AFTER = "unroll_loops"


class FeatureCache:
    """Program features per configuration, lowered once; None for an invalid configuration."""

    def __init__(self, task: Task):
        self.task = task
        self._rows: dict[Config, np.ndarray | None] = {}

    def __call__(self, config: Config):
        if config not in self._rows:
            try:
                schedule, tensors = self.task.instantiate(config)
                target = self.task.target
                if kind_of(target).gpu:
                    func = tex.lower(schedule, tensors, target=target)
                else:
                    func = tex.lower(schedule, tensors, upto=FEATURES_AFTER)
                self._rows[config] = program_features(func, target)
            except tex.TexError:
                self._rows[config] = None
        return self._rows[config]


def _make_model(model, seed: int):
    if model == "xgboost":
        return XGBoostModel(seed=seed)
    if model == "random":
        return RandomModel(seed=seed)
    if all(hasattr(model, name) for name in ("fit", "predict", "trained")):
        return model
    raise TuneError(f"model must be 'xgboost', 'random' or an object with fit, predict and "
                    f"trained, got {model!r}")


def measured_configs(task: Task, records) -> dict[Config, float]:
    """The configurations of `task` already measured in `records`, with their times (the
    mean over a configuration's records; infinity if any of them failed)."""
    times: dict[Config, list[float]] = {}
    for r in records:
        if r.workload != task.workload_key or r.target != str(task.target):
            continue
        try:
            config = task.space.from_json(r.config)
        except TuneError as err:
            warnings.warn(f"a record of {task.name!r} does not fit its space and is ignored "
                          f"({err})", rec.TuneWarning, stacklevel=3)
            continue
        times.setdefault(config, []).append(r.seconds)
    return {config: statistics.fmean(ts) for config, ts in times.items()}


def tune(task: Task, trials: int, log=None, *, model="xgboost", seed: int = 0,
         batch_size: int = 8, measurer=None, transfer=(), callback=None,
         remeasure: int = REMEASURED, search="evolutionary", early_stopping: int | None = None,
         features: FeatureCache | None = None, on_measurement=None,
         **measure_options) -> TuneResult:
    """Tune `task` until `trials` configurations are measured (see the module docstring).

    `log`: a JSONL file to resume from and append to. `model`: "xgboost",
    "random" or an object with fit, predict and trained (see cost_model). `measurer`: an object with
    `measure(configs, best_seconds=None, on_result=None)` (`on_result` may be left out:
    its results are then taken as each batch ends) and `close()` (default: an
    `autotune.measure.Measurer` made with `measure_options`). `transfer`:
    pairs (task, records) from earlier logs of other workloads whose
    measurements pre-train the model. `callback(progress)` runs after each
    round, `on_measurement(progress)` after each measurement, as soon as the
    measurer passes it to `on_result` (else when its round ends). `remeasure`:
    how many of the fastest to measure again at the end.
    `search`: "evolutionary" (model-guided), "random", "grid", "genetic" or a
    function making a search (see `autotune.search.make_search`).
    `early_stopping`: stop once that many measurements in a row found nothing faster.
    `features`: a FeatureCache of `task` to reuse (calls that each continue a log
    lower every configuration only once).
    """
    _check_tune_arguments(task, trials, early_stopping)
    start = time.perf_counter()
    if features is None or features.task is not task:
        features = FeatureCache(task)
    cost_model = _make_model(model, seed)
    _pretrain(cost_model, transfer)
    measured = measured_configs(task, rec.load(log)) if log is not None else {}
    # a model that knows other workloads is fitted now only when nothing of this one is
    # measured yet: otherwise the first refit (priors included) comes at once
    primed = not measured and hasattr(cost_model, "prime") and cost_model.prime()
    search = make_search(search, task.space, features, cost_model, seed)
    trials = min(trials, len(task.space))
    own_measurer = measurer is None
    if own_measurer:
        measurer = Measurer(task, seed=seed, **measure_options)
    run = _Run(task, measured, features, cost_model)
    run.start(measurer, log)
    interrupted = False
    try:
        run.measure_batches(search, trials, batch_size, early_stopping, primed,
                            lambda results: callback is not None and callback(
                                run.progress(trials, start, results)),
                            lambda result: on_measurement is not None and on_measurement(
                                run.progress(trials, start, [result])))
        if len(run.measured) > run.already:  # not a finished run resumed
            run.remeasure_leaders(remeasure)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if own_measurer:
            measurer.close()
        run.close()
    config, seconds = run.best()
    return TuneResult(task, config, seconds, len(run.measured), time.perf_counter() - start,
                      interrupted)


class Finalists:
    """The `count` fastest configurations of `task` in `log`, timed again with `measurer`
    round by round (each timing appended to `log` as a final record) and then judged by
    those timings alone, as `tune` does at the end of a run; a job interleaves the rounds
    of its tasks, so that a slow spell of the machine falls on one round of each."""

    def __init__(self, task: Task, log, measurer, count: int = REMEASURED):
        self._run = _Run(task, measured_configs(task, rec.load(log)), None, None)
        self._run.start(measurer, log)
        self.configs = self._run.leaders(count)
        self._timings: dict = {}

    def time_round(self, round_: int):
        """Time each finalist once more (`round_`: how far along the list to start)."""
        if self.configs:
            self._run.retime_round(self.configs, round_, self._timings)

    def best(self) -> tuple[Config | None, float]:
        """(config, seconds) of the fastest by the re-timings so far (by the log's
        measurements before any; None, inf when none has worked)."""
        self._run.judge(self._timings)
        return self._run.best()

    def close(self):
        self._run.close()


def _check_tune_arguments(task, trials, early_stopping):
    if not isinstance(task, Task):
        raise TuneError(f"tune needs an autotune.Task, got {type(task).__name__}")
    if not isinstance(trials, int) or trials < 0:
        raise TuneError(f"trials must be a non-negative int, got {trials!r}")
    if early_stopping is not None and not (isinstance(early_stopping, int)
                                           and early_stopping >= 1):
        raise TuneError(f"early_stopping must be None or an int >= 1, got {early_stopping!r}")


def _pretrain(cost_model, transfer):
    """Give `cost_model` the measurements of other workloads' logs as priors."""
    for other_task, other_records in transfer:
        other = measured_configs(other_task, other_records)
        other_features = FeatureCache(other_task)
        rows = [(other_features(c), t) for c, t in other.items()]
        rows = [(x, t) for x, t in rows if x is not None]
        if rows and hasattr(cost_model, "add_prior"):
            cost_model.add_prior(np.stack([x for x, _ in rows]), [t for _, t in rows])


class _Run:
    """One call of `tune`: the configurations measured (those of the log first), the
    model refitted on them, and every result written to the log."""

    def __init__(self, task, measured: dict, features, cost_model):
        self.task, self.features, self.cost_model = task, features, cost_model
        self.measured, self.already = measured, len(measured)
        self.retimed: dict = {}  # finalist -> the median of its re-timings, once re-timed
        self.measurer = self.writer = None
        self.streams = False  # whether the measurer passes each result to `on_result`
        self.hardware = hardware_of(task.target)

    def start(self, measurer, log):
        """Measure with `measurer` from now on, appending every result to `log` (if any)."""
        self.measurer = measurer
        # measurers written before `on_result` answer each batch at its end
        self.streams = "on_result" in inspect.signature(measurer.measure).parameters
        self.writer = rec.RecordWriter(log) if log is not None else None

    def best(self):
        """(config, seconds) of the fastest: among the re-timed finalists once there are
        any, by their re-timings."""
        times = self.retimed or self.measured
        ok = {c: t for c, t in times.items() if math.isfinite(t)}
        config = min(ok, key=ok.get, default=None)
        return config, (ok[config] if config is not None else math.inf)

    def progress(self, trials: int, start: float, results) -> Progress:
        config, seconds = self.best()
        return Progress(self.task, trials, len(self.measured), seconds, config,
                        time.perf_counter() - start, results)

    def log_result(self, result, final: bool = False):
        if self.writer is not None:
            self.writer.write(rec.Record(
                workload=self.task.workload_key, target=str(self.task.target),
                config=result.config.to_json(), task=self.task.name, times=result.times,
                error=result.error, message=result.message,
                hardware=result.hardware or self.hardware, final=final))

    def refit(self):
        rows = [(self.features(c), t) for c, t in self.measured.items()]
        rows = [(x, t) for x, t in rows if x is not None]
        if rows:
            self.cost_model.fit(np.stack([x for x, _ in rows]),
                                np.array([t for _, t in rows]))

    def measure_batches(self, search, trials: int, batch_size: int, early_stopping, primed,
                        after_batch, after_measurement):
        """Measure batches the search proposes until `trials` are measured, the space is
        spent, or `early_stopping` measurements in a row found nothing faster; each result
        is logged as the measurer passes it on. The search follows the model once a batch
        is measured, or from the start when it is `primed` (fitted on other workloads
        before this one's first measurement)."""
        measured = self.measured
        improved_at = len(measured)  # how many had been measured when the best improved
        if measured:
            self.refit()
        while len(measured) < trials and (early_stopping is None
                                           or len(measured) - improved_at < early_stopping):
            model_ready = self.cost_model.trained and (primed or len(measured) >= batch_size)
            batch = search.next_batch(min(batch_size, trials - len(measured)), measured,
                                      model_ready)
            if not batch:
                break  # every valid configuration is measured
            fastest = self.best()[1]
            taken = set()

            def take(result):
                nonlocal fastest, improved_at
                taken.add(result.config)
                measured[result.config] = result.seconds
                self.log_result(result)
                if result.seconds < fastest:
                    fastest, improved_at = result.seconds, len(measured)
                after_measurement(result)

            best = fastest if fastest < math.inf else None
            results = (self.measurer.measure(batch, best_seconds=best, on_result=take)
                       if self.streams else self.measurer.measure(batch, best_seconds=best))
            for result in results:
                if result.config not in taken:  # a measurer that answers at the end only
                    take(result)
            self.refit()
            after_batch(results)

    def leaders(self, count: int) -> list[Config]:
        """The `count` fastest configurations measured (successfully), fastest first."""
        measured = self.measured
        return sorted((c for c in measured if math.isfinite(measured[c])),
                      key=measured.get)[:count]

    def retime_round(self, leaders: list, round_: int, timings: dict):
        """Time each of `leaders` once more, starting `round_` further along the list (so
        that a drift of the machine's speed falls on all of them alike), adding the times
        to `timings` (config -> list) and logging them as final records."""
        turn = round_ % len(leaders)
        for result in self.measurer.measure(leaders[turn:] + leaders[:turn]):
            timings.setdefault(result.config, []).append(result.seconds)
            self.log_result(result, final=True)

    def judge(self, timings: dict):
        """From now on, judge the configurations of `timings` by the median of their
        re-timings alone (`retimed`)."""
        self.retimed = {c: statistics.median(t) for c, t in timings.items() if t}
        self.measured.update(self.retimed)

    def remeasure_leaders(self, count: int, rounds: int = RETIMING_ROUNDS):
        """Time the `count` fastest again in `rounds` interleaved rounds and judge them by
        those timings alone."""
        leaders, timings = self.leaders(count), {}
        if leaders:
            for round_ in range(rounds):
                self.retime_round(leaders, round_, timings)
            self.judge(timings)

    def close(self):
        if self.writer is not None:
            self.writer.close()
