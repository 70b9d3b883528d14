"""AutoTVM's measure options and results, over `autotune.measure`.

    measure_option = autotvm.measure_option(builder="local",
                                            runner=autotvm.LocalRunner(number=5))

tex measures on this machine only: candidates are built in forked workers
(`LocalBuilder.n_parallel` of them), then checked against the unscheduled
kernel and timed one at a time (`LocalRunner`: `repeat` timings of at least
`number` calls, each lasting `min_repeat_ms` or more). One timeout covers a
build and a run; it is the larger of the builder's and the runner's.

Each measurement reaches callbacks as a pair (`MeasureInput`,
`MeasureResult`), converted to and from tex's `Record`s (the tuning log).
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from autotune import records as rec
from autotune.errors import TuneError

__all__ = ["LocalBuilder", "LocalRunner", "MeasureErrorNo", "MeasureInput", "MeasureResult",
           "measure_option"]


@dataclass(frozen=True)
class LocalBuilder:
    """Builds candidates in `n_parallel` forked workers (None: tex's default, 2)."""

    timeout: float = 10.0
    n_parallel: int | None = None


@dataclass(frozen=True)
class LocalRunner:
    """Times candidates: `repeat` timings, each of at least `number` calls, each lasting at
    least `min_repeat_ms`. tex does not flush caches between timings."""

    timeout: float = 10.0
    number: int = 4
    repeat: int = 3
    min_repeat_ms: float = 0.0
    enable_cpu_cache_flush: bool = False

    def __post_init__(self):
        if self.enable_cpu_cache_flush:
            raise TuneError("LocalRunner: tex does not flush the CPU caches between timings; "
                            "leave enable_cpu_cache_flush False")


def measure_option(builder="local", runner="local") -> dict:
    """How to measure: {"builder": LocalBuilder, "runner": LocalRunner}."""
    if builder == "local":
        builder = LocalBuilder()
    if runner == "local":
        runner = LocalRunner()
    if not isinstance(builder, LocalBuilder):
        raise TuneError(f"measure_option: builder must be 'local' or a LocalBuilder, got "
                        f"{builder!r}")
    if not isinstance(runner, LocalRunner):
        raise TuneError(f"measure_option: runner must be 'local' or a LocalRunner (tex "
                        f"measures on this machine only), got {runner!r}")
    return {"builder": builder, "runner": runner}


def measurer_options(option) -> dict:
    """The keyword arguments of `autotune.measure.Measurer` a `measure_option()` asks for."""
    if not (isinstance(option, dict) and isinstance(option.get("builder"), LocalBuilder)
            and isinstance(option.get("runner"), LocalRunner)):
        raise TuneError(f"measure_option must come from autotvm.measure_option(...), got "
                        f"{option!r}")
    builder, runner = option["builder"], option["runner"]
    options = {"timeout": max(builder.timeout, runner.timeout), "repeat": runner.repeat,
               "number": runner.number, "min_repeat_ms": runner.min_repeat_ms}
    if builder.n_parallel is not None:
        options["build_workers"] = builder.n_parallel
    return options


class MeasureErrorNo(enum.IntEnum):
    """AutoTVM's error numbers; tex's error kinds map onto some of them."""

    NO_ERROR = 0
    INSTANTIATION_ERROR = 1
    COMPILE_HOST = 2
    COMPILE_DEVICE = 3
    RUNTIME_DEVICE = 4
    WRONG_ANSWER = 5
    BUILD_TIMEOUT = 6
    RUN_TIMEOUT = 7
    UNKNOWN_ERROR = 8


#: tex's error kind (autotune.measure.ERROR_KINDS, None: fine) -> AutoTVM's error number.
_ERROR_NUMBERS = {None: MeasureErrorNo.NO_ERROR, "build": MeasureErrorNo.COMPILE_HOST,
                  "run": MeasureErrorNo.RUNTIME_DEVICE, "wrong": MeasureErrorNo.WRONG_ANSWER,
                  "timeout": MeasureErrorNo.RUN_TIMEOUT, "crash": MeasureErrorNo.UNKNOWN_ERROR}
_ERROR_KINDS = {number: kind for kind, number in _ERROR_NUMBERS.items()}


@dataclass(frozen=True)
class MeasureInput:
    """What was measured: the target, the task and the configuration (tex's `Config`)."""

    target: object
    task: object
    config: object


@dataclass(frozen=True)
class MeasureResult:
    """How it went: `costs` (seconds of each timing; on error, the message), `error_no`,
    `all_cost` (seconds spent on it) and `timestamp`."""

    costs: tuple
    error_no: int
    all_cost: float
    timestamp: float


def pair_of_result(task, result) -> tuple[MeasureInput, MeasureResult]:
    """The (MeasureInput, MeasureResult) of tex's `autotune.measure.MeasureResult`."""
    costs = result.times if result.error is None else (result.message,)
    return (MeasureInput(task.target, task, result.config),
            MeasureResult(tuple(costs), _ERROR_NUMBERS[result.error],
                          result.build_seconds + sum(result.times), time.time()))


def pair_of_record(task, record: rec.Record) -> tuple[MeasureInput, MeasureResult]:
    """The (MeasureInput, MeasureResult) of a log's `Record` of `task`."""
    costs = record.times if record.error is None else (record.message,)
    return (MeasureInput(task.target, task, task.space.from_json(record.config)),
            MeasureResult(tuple(costs), _ERROR_NUMBERS.get(record.error,
                                                           MeasureErrorNo.UNKNOWN_ERROR),
                          sum(record.times), record.time))


def record_of_pair(inp: MeasureInput, res: MeasureResult) -> rec.Record:
    """The log `Record` of a measurement (the inverse of `pair_of_record`)."""
    failed = res.error_no != MeasureErrorNo.NO_ERROR
    return rec.Record(workload=inp.task.workload_key, target=str(inp.target),
                      config=inp.config.to_json(), task=inp.task.name,
                      times=() if failed else tuple(res.costs),
                      error=_ERROR_KINDS.get(res.error_no, "crash") if failed else None,
                      message=str(res.costs[0]) if failed and res.costs else "",
                      time=res.timestamp)
