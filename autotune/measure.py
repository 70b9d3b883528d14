"""Measuring configurations: built in parallel, checked, then timed one at a time.

    with Measurer(task, timeout=10.0) as measurer:
        results = measurer.measure(configs, best_seconds=best)
        results[0].seconds            # median seconds per call; inf on error

A `Measurer` keeps a few forked child processes alive across `measure` calls,
and talks to each over a pipe (a request is a configuration's `picks`, a
tuple of ints; the child rebuilds the Config from the task it inherited):

* `build_workers` *builders* instantiate the configuration's schedule and
  call `tex.build`, so the compiled code lands in the disk cache, a temporary
  directory the Measurer owns (TEX_CACHE_DIR in every child);
* one *runner* builds the same schedule again (a disk hit, a few ms), calls
  the kernel once and compares its outputs with the reference, then times it.

All builds of a `measure` call end before the first run starts, so a timing
never shares the CPU with a compile.

For a CUDA task the runner is *spawned* rather than forked (CUDA cannot be
used in a process forked after it was initialised, and making the task's
`Target("cuda")` initialised it here); it receives the task's space, which
must then be picklable (generated spaces are; a template's closure is not).
A script that measures a CUDA task needs the `if __name__ == "__main__":`
guard that spawning asks for. The runner copies the inputs to the GPU,
checks each kernel's outputs copied back, and times calls on device arrays,
so no copy is timed, with CUDA events on the launch stream around the calls
queued back to back. Without a GPU every CUDA candidate fails with a "run"
error saying it needs one.

A child that dies is replaced and its configuration reported as a "crash";
one that takes longer than `timeout` seconds on one configuration (a build,
or a whole run: check and timing) is killed, replaced, and its
configuration reported as a "timeout". No bad
candidate makes `measure` raise; it raises `TuneError` only for misuse.

Children are forked (so they inherit the task, closures and all), ignore
SIGINT (the parent handles Ctrl-C and kills them), exit when their pipe to the
parent closes, and on Linux are killed when the parent dies. `close()` (also
run when the Measurer is collected, and at interpreter exit) kills them and
removes the cache directory.
"""
from __future__ import annotations

import ctypes
import faulthandler
import functools
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import statistics
import tempfile
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np

import tex
from autotune.errors import TuneError
from autotune.space import Config
from autotune.targets import kind_of
from autotune.task import static_shape
from tex.runtime.cache import clear_cache
from tex.tensor import PlaceholderOp

ERROR_KINDS = ("build", "run", "timeout", "crash", "wrong")

_FORK = multiprocessing.get_context("fork")
_SPAWN = multiprocessing.get_context("spawn")

#: The parent's ends of every child's pipe: a newly forked child closes its copies, so
#: that a pipe reads EOF in its child as soon as the parent's end closes or the parent dies.
_parent_ends: "weakref.WeakSet" = weakref.WeakSet()

#: (rtol, atol relative to max|reference|) of float outputs, by bytes per element.
_FLOAT_TOLERANCE = {2: (1e-2, 1e-3), 4: (1e-3, 1e-4), 8: (1e-6, 1e-8)}


@dataclass(frozen=True)
class MeasureResult:
    """What measuring one configuration gave.

    `times` holds the mean seconds per call of each repeat (empty on error);
    `error` is None or one of ERROR_KINDS, and `message` says what went wrong
    ('' when nothing did). `build_seconds` is the builder's time on it.
    `hardware` (`autotune.hardware.hardware_of`) is set when it was measured on
    another machine (a worker of a cluster); empty means this one.
    """

    config: Config
    times: tuple[float, ...]
    error: str | None
    message: str
    build_seconds: float
    hardware: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The median of `times`; inf when the configuration failed."""
        if self.error is not None or not self.times:
            return math.inf
        return statistics.median(self.times)


@dataclass(frozen=True)
class _Plan:
    """What the runner needs besides the task: the inputs, the reference outputs (None:
    no check) and how to time."""

    inputs: list
    reference: list | None
    repeat: int
    min_seconds: float
    number: int


class Measurer:
    """Builds, checks and times configurations of `task` (see the module docstring).

    `repeat` timings per configuration, each of at least `number` calls and long
    enough to last at least `min_repeat_ms`; `check` compares every configuration's outputs with
    `task.reference_outputs` on `task.random_inputs(seed)` (computed here,
    once). The children start at the first `measure`.
    """

    def __init__(self, task, *, build_workers=2, timeout=10.0, repeat=3, min_repeat_ms=40.0,
                 number=1, check=True, seed=0):
        if not (isinstance(build_workers, int) and build_workers >= 1):
            raise TuneError(f"Measurer: build_workers must be an int >= 1, got {build_workers!r}")
        if not (isinstance(repeat, int) and repeat >= 1):
            raise TuneError(f"Measurer: repeat must be an int >= 1, got {repeat!r}")
        if not (isinstance(number, int) and number >= 1):
            raise TuneError(f"Measurer: number must be an int >= 1, got {number!r}")
        if not timeout > 0 or not min_repeat_ms >= 0:
            raise TuneError(f"Measurer: timeout must be > 0 and min_repeat_ms >= 0, got "
                            f"timeout={timeout!r}, min_repeat_ms={min_repeat_ms!r}")
        self.task, self.timeout, self.build_workers = task, float(timeout), build_workers
        inputs = task.random_inputs(seed)
        self.plan = _Plan(inputs, _reference(task, inputs) if check else None, repeat,
                          min_repeat_ms / 1000.0, number)
        self.cache_dir = tempfile.mkdtemp(prefix="tex-measure-")
        # The children's state holds the task and the plan, never the Measurer, so that
        # collecting the Measurer runs the finalizer.
        on_device = kind_of(task.target).on_device
        runner_task = _RunnerTask(task.space, task.target, task.outputs) if on_device else task
        if on_device:
            try:
                pickle.dumps(runner_task)
            except Exception as err:
                raise TuneError(f"Measurer: a CUDA task's space is measured in a spawned "
                                f"process and must be picklable; that of {task!r} is not "
                                f"({_describe(err)}); use a generated space") from err
        self._children = _Children(build_workers, self.cache_dir,
                                   functools.partial(_serve_builds, task),
                                   functools.partial(_serve_runs, runner_task, self.plan),
                                   _SPAWN if on_device else _FORK)
        self._finalizer = weakref.finalize(self, _shut_down, self._children, self.cache_dir)

    def measure(self, configs, best_seconds=None, on_result=None) -> list[MeasureResult]:
        """One MeasureResult per configuration, in the order given; each is also passed to
        `on_result(result)` as soon as it is known.

        With `best_seconds` (the best time so far), a configuration whose first
        repeat is more than 3x slower stops after it. Raises TuneError only for
        misuse: a configuration of another space, or a Measurer already closed.
        """
        if not self._finalizer.alive:
            raise TuneError("Measurer.measure: this Measurer is closed")
        configs = list(configs)
        for config in configs:
            if not isinstance(config, Config) or config.space is not self.task.space:
                raise TuneError(f"Measurer.measure: {config!r} is not a configuration of the "
                                f"space of {self.task!r}")
        if best_seconds is not None and not best_seconds > 0:
            raise TuneError(f"Measurer.measure: best_seconds must be > 0, got {best_seconds!r}")
        try:
            builds = self.build(configs)
            results = []
            for config, (error, message, build_seconds) in zip(configs, builds):
                times = ()
                if error is None:
                    error, times, message = self.run(config, best_seconds)
                results.append(MeasureResult(config, tuple(times), error, message,
                                             build_seconds))
                if on_result is not None:
                    on_result(results[-1])
            return results
        except BaseException:
            # Interrupted (Ctrl-C): answers may be on their way; start afresh next time.
            self._children.stop_all()
            raise

    def close(self):
        """Kill the children and remove the cache directory; measure() raises after this."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def build(self, configs) -> list[tuple[str | None, str, float]]:
        """(error kind or None, message, seconds) of building each configuration: the
        first half of `measure` (a cluster's workers call the halves apart).

        Hands configurations to idle builders, then waits for an answer or the
        earliest deadline, until every configuration has an answer.
        """
        answers = [None] * len(configs)
        pending = deque(range(len(configs)))
        busy: dict[int, tuple[int, float]] = {}  # builder slot -> (config position, start)
        while pending or busy:
            for slot in range(self.build_workers):
                if pending and slot not in busy:
                    at = pending.popleft()
                    self._children.send(slot, configs[at].picks)
                    busy[slot] = (at, time.perf_counter())
            deadline = min(start for _, start in busy.values()) + self.timeout
            by_conn = {self._children.running[slot].conn: slot for slot in busy}
            for conn in wait(list(by_conn), timeout=max(0.0, deadline - time.perf_counter())):
                at, start = busy.pop(by_conn[conn])
                answers[at] = self._build_answer(by_conn[conn], start)
            now = time.perf_counter()
            for slot, (at, start) in list(busy.items()):
                if now - start >= self.timeout:
                    del busy[slot]
                    self._children.stop(slot)
                    answers[at] = ("timeout", f"the build took more than {self.timeout:g} s "
                                   "and was killed", now - start)
        return answers

    def _build_answer(self, slot: int, start: float) -> tuple[str | None, str, float]:
        """What builder `slot` answered, or a crash if it died (it is then replaced)."""
        builder = self._children.running[slot]
        try:
            seconds, failure = builder.conn.recv()
        except (EOFError, OSError):
            why = builder.death()
            self._children.stop(slot)
            return "crash", f"the build worker died ({why})", time.perf_counter() - start
        return ("build" if failure else None), failure or "", seconds

    def run(self, config, best_seconds=None) -> tuple[str | None, tuple, str]:
        """(error kind or None, times, message) of checking and timing `config` in the
        runner, which is replaced if it dies or runs past the timeout: the second half of
        `measure`, after `build`."""
        runner = self._children.send("run", (config.picks, best_seconds))
        if not runner.conn.poll(self.timeout):
            self._children.stop("run")
            return "timeout", (), (f"the run (check and timing) took more than "
                                   f"{self.timeout:g} s and was killed")
        try:
            return runner.conn.recv()
        except (EOFError, OSError):
            why = runner.death()
            self._children.stop("run")
            return "crash", (), f"the runner died ({why})"


def _reference(task, inputs) -> list[np.ndarray]:
    """The task's reference outputs on `inputs`; TuneError if they cannot be had."""
    try:
        reference = [np.asarray(r) for r in task.reference_outputs(inputs)]
    except Exception as err:
        raise TuneError(f"Measurer: the reference outputs of {task!r} could not be computed "
                        f"({_describe(err)})") from err
    if len(reference) != len(task.outputs):
        raise TuneError(f"Measurer: the reference gives {len(reference)} outputs, the task "
                        f"has {len(task.outputs)}")
    return reference


# --- what the children run ---------------------------------------------------------------

@dataclass(frozen=True)
class _RunnerTask:
    """What a spawned runner needs of a task: picklable, unlike a Task with its reference."""

    space: object
    target: object
    outputs: list

    def instantiate(self, config):
        return self.space.instantiate(config)


def _serve_builds(task, conn):
    """A builder's loop: for each configuration's picks, build its kernel (into the disk
    cache) and answer (seconds, None or what went wrong)."""
    while True:
        picks = conn.recv()
        start = time.perf_counter()
        try:
            schedule, tensors = task.instantiate(Config(task.space, picks))
            tex.build(schedule, tensors, target=task.target)
            failure = None
        except Exception as err:
            failure = _describe(err)
        conn.send((time.perf_counter() - start, failure))
        clear_cache()  # the code is on disk; memory would only grow


def _serve_runs(task, plan: _Plan, conn):
    """The runner's loop: for each (picks, best_seconds), answer
    (error kind or None, times, message)."""
    outputs = [np.empty(static_shape(t), t.dtype.numpy) for t in task.outputs]
    while True:
        picks, best_seconds = conn.recv()
        conn.send(_run_one(task, plan, Config(task.space, picks), outputs, best_seconds))
        clear_cache()


def _run_one(task, plan: _Plan, config, outputs, best_seconds) -> tuple[str | None, tuple, str]:
    """Build `config` (a disk-cache hit), check its outputs once, then time it."""
    try:
        schedule, tensors = task.instantiate(config)
        kernel = tex.build(schedule, tensors, target=task.target)
    except Exception as err:
        return "build", (), _describe(err)
    ins, outs = iter(plan.inputs), iter(outputs)  # in the order of the kernel's tensors
    args = [next(ins) if isinstance(t.op, PlaceholderOp) else next(outs, None) for t in tensors]
    on_device = kind_of(task.target).on_device
    try:
        if plan.reference is not None:
            for out, ref in zip(outputs, plan.reference):
                _poison(out, ref)
        if on_device:  # the arrays (poisoned outputs included) copied to the device
            host, args = args, [tex.device_array(a) for a in args]
        if plan.reference is not None:
            kernel(*args)
            if on_device:
                for out, arg in zip(host, args):
                    if any(out is o for o in outputs):
                        out[...] = arg.numpy()
            mismatch = _mismatch(task.outputs, outputs, plan.reference)
            if mismatch:
                return "wrong", (), mismatch
        else:
            kernel(*args)  # a warm-up, as the check is otherwise
        return None, _time(kernel, args, plan, best_seconds), ""
    except Exception as err:
        return "run", (), _describe(err)


def _time(kernel, args, plan: _Plan, best_seconds) -> tuple[float, ...]:
    """Mean seconds per call of each of `plan.repeat` repeats of `number` calls, each
    repeat lasting at least `plan.min_seconds`; only the first repeat when it is more
    than 3x slower than `best_seconds`.

    `number` grows from `plan.number` until a repeat lasts long enough; that repeat is
    the first.
    """
    number = plan.number
    first = _timed(kernel, args, number)
    while first < plan.min_seconds:
        number = max(number + 1, math.ceil(number * 1.2 * plan.min_seconds / max(first, 1e-9)))
        first = _timed(kernel, args, number)
    times = [first / number]
    if best_seconds is not None and times[0] > 3 * best_seconds:
        return tuple(times)
    times += [_timed(kernel, args, number) / number for _ in range(plan.repeat - 1)]
    return tuple(times)


def _timed(kernel, args, number: int) -> float:
    """Seconds that `number` back-to-back calls of `kernel(*args)` take. A tex kernel times
    itself (`time_calls`: by the wall clock on a CPU, by CUDA events on the launch stream
    on a GPU); any other callable is timed by the wall clock."""
    if hasattr(kernel, "time_calls"):
        return kernel.time_calls(args, number)
    start = time.perf_counter()
    for _ in range(number):
        kernel(*args)
    return time.perf_counter() - start


# --- checking ----------------------------------------------------------------------------

def _poison(out: np.ndarray, ref: np.ndarray):
    """Fill `out` with values that differ from `ref` everywhere (NaN for floats), so an
    element the kernel does not write cannot pass the check."""
    if out.dtype.kind == "f":
        out.fill(np.nan)
    elif out.shape != ref.shape:
        out.fill(1)
    elif out.dtype.kind == "b":
        np.logical_not(ref, out=out)
    else:
        np.add(ref.astype(out.dtype), 1, out=out, casting="unsafe")


def _mismatch(tensors, outputs, reference) -> str:
    """'' when every output matches its reference (floats within a tolerance for
    their width, scaled by the largest reference value; integers exactly), else
    what differs: the largest error, where, and its relative size."""
    for t, out, ref in zip(tensors, outputs, reference):
        if out.shape != ref.shape:
            return f"output {t.name} has shape {out.shape}, the reference {ref.shape}"
        if out.dtype.kind != "f":
            bad = out != ref
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                return (f"output {t.name} differs from the reference at {bad.sum()} of "
                        f"{bad.size} elements, e.g. at {where}: got {out[where]}, expected "
                        f"{ref[where]}")
            continue
        got, want = out.astype(np.float64), ref.astype(np.float64)
        rtol, atol = _FLOAT_TOLERANCE.get(out.dtype.itemsize, _FLOAT_TOLERANCE[4])
        scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
        close = np.isclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True)
        if not close.all():
            error = np.where(close, 0.0, np.nan_to_num(np.abs(got - want), nan=np.inf))
            where = np.unravel_index(int(np.argmax(error)), error.shape)
            where = tuple(int(i) for i in where)
            relative = error / np.maximum(np.abs(want), atol * scale)
            return (f"output {t.name} differs from the reference at {(~close).sum()} of "
                    f"{close.size} elements: max abs error {error[where]:.3g} at {where} "
                    f"(got {got[where]:.6g}, expected {want[where]:.6g}), max relative error "
                    f"{float(np.max(relative)):.3g} (rtol {rtol:g}, atol {atol * scale:.3g})")
    return ""


def _describe(err: BaseException) -> str:
    """'ExceptionType: the first line of its message'."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


# --- child processes ---------------------------------------------------------------------

class _Child:
    """A forked process running `serve(conn)` on its end of a pipe; `conn` is ours."""

    def __init__(self, serve, cache_dir: str, name: str, context=_FORK):
        self.conn, child_end = context.Pipe()
        _parent_ends.add(self.conn)  # before the fork, so the child closes its copy too
        self.process = context.Process(target=_child_main, name=name, daemon=True,
                                       args=(serve, child_end, cache_dir, os.getpid()))
        self.process.start()
        child_end.close()

    def alive(self) -> bool:
        return not self.conn.closed and self.process.is_alive()

    def death(self) -> str:
        """How the process ended, e.g. 'killed by SIGSEGV' or 'exit status 3'."""
        self.process.join(1.0)  # its pipe closed as it died; its status follows at once
        code = self.process.exitcode
        if code is None:
            return "it closed its pipe"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def stop(self):
        """Kill the process and wait for it."""
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.process.close()


def _child_main(serve, conn, cache_dir: str, parent_pid: int):
    """What a child runs: cut loose from everything but its own pipe, then serve until
    the parent's end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.disable()  # a crashing candidate is reported as such, without a dump
    _exit_with_parent(parent_pid)
    for other in list(_parent_ends):
        other.close()
    os.environ["TEX_CACHE_DIR"] = cache_dir
    clear_cache()  # so each build of ours compiles into (or loads from) cache_dir
    try:
        serve(conn)
    except (EOFError, OSError):
        pass  # the parent closed our pipe, or died


def _exit_with_parent(parent_pid: int):
    """Have Linux kill this process when the parent dies, even inside a kernel that never
    returns. (Linux means the forking *thread*: a child forked by a thread that ends
    is killed too, and replaced at the next request.)"""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: EOF on the pipe is the only sign
    if os.getppid() != parent_pid:
        os._exit(0)


class _Children:
    """The children of one Measurer by slot: builders 0, 1, ... (forked) and the runner "run"
    (started by `runner_context`). Each is started when first sent a request, and again
    after it died or was stopped."""

    def __init__(self, builders: int, cache_dir: str, serve_builds, serve_runs,
                 runner_context=_FORK):
        self.serve = {slot: serve_builds for slot in range(builders)}
        self.serve["run"] = serve_runs
        self.context = {slot: _FORK for slot in range(builders)}
        self.context["run"] = runner_context
        self.cache_dir = cache_dir
        self.running: dict[int | str, _Child] = {}

    def send(self, slot, request) -> _Child:
        """Send `request` to the child in `slot`; returns that child."""
        for attempt in (0, 1):
            child = self.running.get(slot)
            if child is None or not child.alive():
                self.stop(slot)
                child = _Child(self.serve[slot], self.cache_dir, f"tex-measure-{slot}",
                               self.context[slot])
                self.running[slot] = child
            try:
                child.conn.send(request)
                return child
            except OSError:  # it died a moment ago: once more, with a new one
                if attempt:
                    raise
                child.conn.close()

    def stop(self, slot):
        child = self.running.pop(slot, None)
        if child is not None:
            child.stop()

    def stop_all(self):
        for slot in list(self.running):
            self.stop(slot)


def _shut_down(children: _Children, cache_dir: str):
    """Kill every child and remove the cache directory (the Measurer's finalizer)."""
    children.stop_all()
    shutil.rmtree(cache_dir, ignore_errors=True)
