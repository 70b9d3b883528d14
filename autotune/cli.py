"""`tex-tune`: tune an operator from the command line, and read what the tuning logged.

    tex-tune matmul --shape 1024,1024,1024 --trials 200 --log matmul.jsonl
    tex-tune matmul --shape 1024,1024,1024 --trials 400 --log matmul.jsonl --resume
    tex-tune matmul --shape 512,512,512 --trials 100 --log m512.jsonl --transfer matmul.jsonl
    tex-tune --file my_ops.py my_matmul --args 1024,64 --trials 100 --log mine.jsonl
    tex-tune job net.toml --log-dir logs --time-budget 20m   # many tasks, one budget
    tex-tune best matmul.jsonl                  # the best configuration and its loop nest
    tex-tune export m64.jsonl m96.jsonl -o ops.so   # a library of the best kernels, ops.h
    tex-tune plot matmul.jsonl -o curve.png     # best rate against trials, per workload
    tex-tune ops                                # the operators tex-tune knows by name

Tuning (`tex-tune OP ...`, short for `tex-tune tune OP ...`) measures
configurations of the operator's generated space (`autotune.ops` lists the
operators and their shape parameters) and appends every measurement to the
`--log` file at once. `--trials` is the total for the workload in that log:
`--resume` continues an interrupted or finished job up to it, so resuming a
finished job measures nothing. Without `--resume`, a log that already holds
the workload is an error, so that two jobs never mix by accident.

`--file PATH NAME` tunes a function of the user's Python file instead: an
`@autotune.template` function, tuned with `--args` as its (JSON) arguments, or
a plain function that returns the tensors to build (inputs, then outputs), as
`tex.build` takes them; it is called with `--args`, and its space generated.
`--args` is a list of JSON values separated by commas: `1024,64` or
`"NCHW",[3,3]`. Errors raised by the user's code keep their traceback.

`tex-tune job TASKS --log-dir DIR` tunes the tasks of a TOML or JSON file
under one trial or time budget (`autotune.job`), one log per task; with
`--workers local:K` it builds and measures on a Dask LocalCluster of K
worker processes, with `--scheduler ADDRESS` on a running Dask cluster
(`autotune.cluster`; `pip install 'tex[cluster]'`).
`tex-tune best` uses only records of this machine's CPU model unless
`--any-hardware` is given.

`tex-tune export LOG... -o ops.so` builds the best configuration of every
workload of the logs (of this machine's CPU model, as `best` chooses) into one
library with its C header (`tex.export_library`; see `autotune.export`): the
shapes of one registry operator and dtype become one entry named after it
(`matmul`) that runs the kernel tuned for a call's sizes, and for other sizes a
kernel built for all sizes with the schedule of the nearest tuned shape.

`--transfer LOG ...` pre-trains the cost model with the measurements of other
registry workloads (other shapes of an operator, say) on the same target.

Progress goes to stderr: one line redrawn in place on a terminal, one line
per round otherwise. Ctrl-C stops cleanly; the log keeps every finished
measurement. Exit status: 0 done, 1 no configuration worked, 2 a usage error
or an input tex-tune cannot honour (`tex-tune: error: ...`), 130 stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import warnings

import tex
from autotune import ops
from autotune import records as rec
from autotune import cluster, job, reports
from autotune.errors import TuneError
from autotune.export import export_logs
from autotune.measure import Measurer
from autotune.targets import kind_of
from autotune.task import Task
from autotune.tuner import REMEASURED, measured_configs, tune
from autotune.reports import duration_text, load_existing, rate_text, registry_task
from autotune.userfile import function_task
from tex.runtime.cuda_device import require_device

COMMANDS = ("tune", "job", "best", "export", "plot", "ops")
EXAMPLES = "examples:\n" + __doc__.split("\n\n")[1]
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130


# --- the command line ----------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _natural_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _local_workers(text: str) -> int:
    """"local:4" -> 4, the size of the job's own Dask LocalCluster."""
    kind, _, count = text.partition(":")
    if kind == "local" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise argparse.ArgumentTypeError(f"expected local:K with K >= 1 worker processes (such as "
                                     f"local:4), got {text!r}; for a running cluster give "
                                     f"--scheduler ADDRESS")


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}


def _duration_arg(text: str) -> float:
    """"20m" -> 1200.0; also "90s", "1.5h" and plain seconds."""
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except (ValueError, KeyError):
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 20m, 90s, 1h or 1200 "
                                         f"(seconds), got {text!r}")
    return value


def _measure_arguments(parser) -> None:
    """The options of measurement and search that `tune` and `job` share."""
    parser.add_argument("--target", default="llvm", help="the target to tune for (llvm)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="the search's random seed (0)")
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                        help="configurations measured per round (8)")
    parser.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                        help="seconds allowed to build, or to check and time, one "
                             "configuration (10)")
    parser.add_argument("-j", "--build-workers", type=_positive_int, default=2, metavar="N",
                        help="processes building candidates in parallel (2)")
    parser.add_argument("--model", choices=("xgboost", "random"), default="xgboost",
                        help="the cost model guiding the search (xgboost)")


def _job_parser(commands) -> None:
    run = commands.add_parser(
        "job", help="tune the tasks of a TOML or JSON file under one budget",
        description="Tune every task of TASKS (a TOML or JSON file of registry operators\n"
                    "with shapes and functions of Python files with arguments, each with\n"
                    "an optional target and weight) under one budget, giving each round\n"
                    "to the task whose weighted best time is expected to fall most. One\n"
                    "log per task in --log-dir. See autotune/job.py for the format.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("tasks", metavar="TASKS", help="the TOML (.toml) or JSON file of tasks")
    run.add_argument("--log-dir", required=True, metavar="DIR",
                     help="the directory of the tasks' logs (made if missing)")
    run.add_argument("--trials", type=_positive_int, metavar="N",
                     help="configurations to measure in all, counting those the logs hold")
    run.add_argument("--time-budget", type=_duration_arg, metavar="DURATION",
                     help="stop starting rounds after this long: 20m, 90s, 1h")
    run.add_argument("--resume", action="store_true",
                     help="continue the measurements the logs already hold")
    run.add_argument("--early-stop", type=_positive_int, metavar="ROUNDS",
                     help="stop when no task improved for this many rounds")
    run.add_argument("--remeasure", type=_natural_int, default=REMEASURED, metavar="N",
                     help=f"at the end, re-time each task's N fastest, interleaved, and "
                          f"report those timings (default {REMEASURED})")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_local_workers, metavar="local:K",
                       help="build and measure on a Dask LocalCluster of K worker processes "
                            "(needs pip install 'tex[cluster]')")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="build and measure on the Dask cluster of this scheduler "
                            "(tcp://host:8786); its measuring workers offer the resource "
                            f"{cluster.RESOURCE}=1")
    _measure_arguments(run)


def _export_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="build a library of the best kernels of tuning logs",
        description="Build the best configuration of every workload of the logs (records of\n"
                    "this machine's CPU model, as `best` chooses them) into one shared\n"
                    "library with a C header beside it (tex.export_library). The shapes of\n"
                    "one registry operator and dtype become one entry, named after the\n"
                    "operator (matmul; matmul_float64 for another dtype than float32), that\n"
                    "runs the kernel tuned for a call's sizes, and for other sizes a kernel\n"
                    "built for all sizes with the schedule of the nearest tuned shape (the\n"
                    "least sum of |log(a) - log(b)| over the sizes), or the default schedule\n"
                    "where that one needs constant sizes. Operators declared for constant\n"
                    "sizes only (conv2d, depthwise_conv2d, layernorm) get one entry per\n"
                    "shape (conv2d_1_64_56_56_64). See autotune/export.py.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("logs", nargs="+", metavar="LOG", help="tuning logs (JSONL)")
    export.add_argument("-o", "--output", required=True, metavar="LIBRARY",
                        help="the shared library to write (ops.so); its header goes beside "
                             "it (ops.h)")
    export.add_argument("--target", metavar="TARGET",
                        help="use the records of this CPU target (default: the logs' only "
                             "one)")
    _log_reading_arguments(export)


def _log_reading_arguments(parser) -> None:
    """The options of the commands that read logs: which records, and the file declaring
    their --file workloads."""
    parser.add_argument("--file", metavar="PATH",
                        help="the Python file declaring the logs' --file workloads")
    parser.add_argument("--any-hardware", action="store_true",
                        help="use records measured on other CPU models too")


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tex-tune", description="Tune tex operators, and read tuning logs.",
        epilog=EXAMPLES + "\n\n`tex-tune OP ...` is short for `tex-tune tune OP ...`; "
                          "see `tex-tune tune -h`.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "tune", prog="tex-tune", help="tune a registry operator or a function of a file",
        description="Tune a registry operator (OP --shape ...) or a function of a Python\n"
                    "file (--file PATH NAME [--args ...]). --trials counts the log's\n"
                    "measurements of the workload too; --resume continues them.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("name", metavar="OP",
                     help="a registry operator (tex-tune ops lists them), or with --file the "
                          "name of a function in the file")
    run.add_argument("--shape", metavar="M,N,...",
                     help="the operator's shape parameters, such as 1024,1024,64")
    run.add_argument("--dtype", choices=ops.DTYPES, help="the operator's dtype (float32)")
    run.add_argument("--file", metavar="PATH", help="a Python file defining the function NAME")
    run.add_argument("--args", metavar="VALUES",
                     help="with --file: the function's arguments, JSON values separated by "
                          "commas (1024,64)")
    run.add_argument("--trials", type=_positive_int, required=True, metavar="N",
                     help="configurations to measure, counting those the log already holds")
    run.add_argument("--log", required=True, help="the JSONL tuning log to append to")
    run.add_argument("--resume", action="store_true",
                     help="continue the measurements the log already holds for this workload")
    run.add_argument("--remeasure", type=_natural_int, default=REMEASURED, metavar="N",
                     help=f"re-time the N fastest at the end, interleaved, and report "
                          f"those timings (default {REMEASURED})")
    _measure_arguments(run)
    run.add_argument("--transfer", nargs="+", action="extend", default=[], metavar="LOG",
                     help="logs of other registry workloads that pre-train the cost model")
    _job_parser(commands)

    best = commands.add_parser("best", help="print the best configuration per workload",
                               description="Print the best configuration of each workload "
                                           "of a log measured on this machine's CPU model, "
                                           "its rate and loop nest when the workload is a "
                                           "registry operator or a function of --file.")
    best.add_argument("log", metavar="LOG", help="a tuning log, or a job's log directory")
    _log_reading_arguments(best)
    best.add_argument("--workload", metavar="KEY",
                      help="only this workload: its task name (\"matmul 64,64,64\") or key")

    _export_parser(commands)

    plot = commands.add_parser("plot", help="plot the best rate against trials",
                               description="Plot every measured trial and the best rate so "
                                           "far against the trial number, one panel per "
                                           "workload (needs matplotlib).")
    plot.add_argument("logs", nargs="+", metavar="LOG",
                      help="tuning logs, or a job's log directory")
    plot.add_argument("-o", "--output", required=True, metavar="PNG",
                      help="the image file to write")

    commands.add_parser("ops", help="list the registry's operators",
                        description="List the operators tex-tune tunes by name.")
    return top


def main(argv=None) -> int:
    """Run `tex-tune` with `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "tune")  # `tex-tune OP ...` and `tex-tune --file ...`
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    run = {"tune": run_tune, "job": run_job, "best": run_best, "export": run_export,
           "plot": run_plot, "ops": run_ops}[args.command]
    with warnings.catch_warnings():
        warnings.showwarning = _WarningPrinter()
        try:
            return run(args)
        except tex.TexError as err:
            print(f"tex-tune: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("\ntex-tune: stopped", file=sys.stderr)
            return EXIT_STOPPED
        except BrokenPipeError:  # `tex-tune best LOG | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED


class _WarningPrinter:
    """Prints each distinct warning once as "tex-tune: warning: ..." (tune reads the log
    again, and would repeat what the CLI's own reading said)."""

    def __init__(self):
        self.shown: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if str(message) not in self.shown:
            self.shown.add(str(message))
            print(f"tex-tune: warning: {message}", file=sys.stderr)


# --- tune ------------------------------------------------------------------------------------

def run_tune(args) -> int:
    """Tune the task the arguments name; see the module docstring."""
    task = _task_of(args)
    if kind_of(task.target).on_device:  # fail now, not once per candidate
        require_device(f"tuning {task.name} for {task.target} (every candidate is timed on "
                       "the GPU)", " Tune on a machine with one.")
    done, failed = _logged(task, rec.load(args.log))
    if done and not args.resume:
        raise TuneError(f"the log {args.log} already holds {done} measurements of "
                        f"{task.name} on {task.target}; pass --resume to continue them, "
                        f"or choose another --log")
    transfer = _transfer(args.transfer, task)
    trials = min(args.trials, len(task.space))
    print(f"tuning {task.name} on {task.target}: {len(task.space)} configurations, "
          f"{trials} trials ({done} in {args.log})", file=sys.stderr)
    if done >= trials:
        print(f"the log already holds {done} measurements of {task.name} (--trials "
              f"{args.trials}); nothing to measure", file=sys.stderr)
        return _print_best(task, rec.load(args.log), args.log)
    line = ProgressLine(task, failed, sys.stderr, done)
    try:
        result = tune(task, args.trials, log=args.log, model=args.model, seed=args.seed,
                      batch_size=args.batch_size, transfer=transfer, callback=line.round_done,
                      on_measurement=line.measured,
                      remeasure=args.remeasure, timeout=args.timeout,
                      build_workers=args.build_workers)
    finally:
        line.close()
    if result.interrupted:
        print(f"stopped; the log keeps {result.measured} measurements of {task.name} "
              f"({args.log})", file=sys.stderr)
        return EXIT_STOPPED
    return _print_best(task, rec.load(args.log), args.log)


def _task_of(args) -> Task:
    """The task of a registry operator, or of the function NAME in --file."""
    if args.file is None:
        if args.args is not None:
            raise TuneError("--args goes with --file; a registry operator takes --shape")
        if args.shape is None:
            op = ops.get_op(args.name)
            raise TuneError(f"{op.name} needs --shape {op.usage}")
        return ops.task_for(args.name, ops.parse_shape(args.shape), args.target,
                            args.dtype or "float32")
    if args.shape is not None or args.dtype is not None:
        raise TuneError("--shape and --dtype go with a registry operator; a function of "
                        "--file takes its arguments with --args")
    return function_task(args.file, args.name, _json_args(args.args), args.target)


def _json_args(text) -> list:
    if text is None:
        return []
    try:
        return json.loads(f"[{text}]")
    except json.JSONDecodeError:
        raise TuneError(f"--args takes JSON values separated by commas, such as 1024,64 or "
                        f"'\"NCHW\",[3,3]'; got {text!r}") from None


def _logged(task: Task, records) -> tuple[int, int]:
    """(configurations of `task` in `records`, how many of them failed), as `tune` counts."""
    seconds = measured_configs(task, records).values()
    return len(seconds), sum(not math.isfinite(s) for s in seconds)


def _transfer(paths, task: Task) -> list[tuple[Task, list]]:
    """(task, records) of each registry workload on `task`'s target in the logs `paths`."""
    groups: dict[tuple[str, str], list] = {}
    for path in paths:
        for r in load_existing(path):
            if r.target == str(task.target) and r.workload != task.workload_key:
                groups.setdefault((r.workload, r.task), []).append(r)
    pairs, skipped = [], []
    for (workload, name), records in groups.items():
        other = registry_task(name, str(task.target), workload)
        if other is None:
            skipped.append(name or workload)
        else:
            pairs.append((other, records))
    if paths:
        count = sum(len(records) for _, records in pairs)
        note = (f"; skipped {len(skipped)} not declared by the registry as logged "
                f"({', '.join(skipped)})" if skipped else "")
        print(f"transfer: {count} measurements of {len(pairs)} workloads{note}",
              file=sys.stderr)
    return pairs


class ProgressLine:
    """The tuning's progress on `stream`: trials done of the total, best rate, elapsed time,
    the time left at this pace, and failures; redrawn in place after each measurement on a
    terminal, else one line per round. `done`: trials the log held before this run."""

    def __init__(self, task: Task, failures: int, stream, done: int = 0):
        self.task, self.failures, self.stream, self.done = task, failures, stream, done
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._width = 0

    def measured(self, progress) -> None:
        """After each measurement: count a failure, redraw on a terminal."""
        self.failures += sum(r.error is not None for r in progress.last)
        if self.tty:
            text = self._text(progress)
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()

    def round_done(self, progress) -> None:
        """After each round: a line, when the stream is not a terminal."""
        if not self.tty:
            self.stream.write(self._text(progress) + "\n")
            self.stream.flush()

    def _text(self, progress) -> str:
        filled = round(20 * progress.measured / max(progress.trials, 1))
        eta = _eta(progress.elapsed, progress.measured - self.done,
                   progress.trials - progress.measured)
        return (f"[{'#' * filled}{'.' * (20 - filled)}] {progress.measured}/{progress.trials} "
                f"trials  best {rate_text(progress.best_rate, self.task.unit)}  "
                f"{duration_text(progress.elapsed)}  {eta}{self.failures} failed")

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


def _eta(elapsed: float, measured_now: int, left: int) -> str:
    """"ETA 3 min 10 s  " at the pace of the `measured_now` trials of this run; '' before
    any or after the last."""
    if measured_now <= 0 or left <= 0:
        return ""
    return f"ETA {duration_text(elapsed / measured_now * left)}  "


def _print_best(task: Task, records, log: str) -> int:
    """Print `task`'s best record on stdout; EXIT_FAILED if none succeeded."""
    done, failed = _logged(task, records)
    best = rec.best_record(records, task.workload_key, str(task.target))
    if best is None:
        kinds = sorted({r.error for r in records if r.workload == task.workload_key
                        and r.error is not None})
        print(f"no configuration of {task.name} worked: {failed} of {done} failed "
              f"({', '.join(kinds)}); see the messages in {log}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{task.name} on {task.target}: best {rate_text(task.rate(best.seconds), task.unit)} "
          f"({best.seconds * 1e3:.4g} ms) of {done} measured, {failed} failed")
    print(f"config: {json.dumps(best.config)}")
    return EXIT_OK


# --- job ------------------------------------------------------------------------------------

def run_job(args) -> int:
    """Tune the tasks of a TASKS file under one budget; see `autotune.job`."""
    if args.trials is None and args.time_budget is None:
        raise TuneError("tex-tune job needs --trials N or --time-budget DURATION (or both)")
    entries = job.load_tasks(args.tasks, args.target)
    on_cluster = args.workers is not None or args.scheduler is not None
    for entry in entries:
        if kind_of(entry.task.target).on_device and not on_cluster:
            require_device(f"tuning {entry.task.name} for {entry.task.target}",
                           " Tune on a machine with one, or on a cluster's (--scheduler).")
    print(f"job {args.tasks}: {len(entries)} tasks, logs in {args.log_dir}", file=sys.stderr)
    line = JobProgress(args.trials, args.time_budget, sys.stderr)
    # a partial, not a closure: on a cluster each worker makes its measurers with it
    make_measurer = functools.partial(Measurer, seed=args.seed, timeout=args.timeout,
                                      build_workers=args.build_workers)
    with (cluster.connect(args.workers, args.scheduler) if on_cluster
          else contextlib.nullcontext()) as client:
        result = job.run_job(
            entries, args.log_dir, trials=args.trials, time_budget=args.time_budget,
            resume=args.resume, early_stop=args.early_stop, batch_size=args.batch_size,
            remeasure=args.remeasure, make_measurer=make_measurer, callback=line.update,
            on_measurement=line.measured, model=args.model,
            seed=args.seed, client=client)
    # NumPy is timed here: against times measured on other hosts (a --scheduler's cluster)
    # it would compare two machines
    _print_summary(job.summary_rows(result.states, numpy=args.scheduler is None))
    print(f"stopped by the {result.stopped_by} after {duration_text(result.elapsed)}"
          if result.stopped_by != "interrupted" else "stopped; the logs keep every measurement",
          file=sys.stderr)
    return EXIT_STOPPED if result.interrupted else EXIT_OK


class JobProgress:
    """A job's progress on `stream`: trials in all and the time left (by the time budget,
    or at this pace by the trial budget). On a terminal, a line per task (trials, best
    rate; the task measuring marked) redrawn in place after each measurement; otherwise a
    line per round, naming the round's task."""

    def __init__(self, trials, time_budget, stream):
        self.trials, self.time_budget, self.stream = trials, time_budget, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start_trials = None  # the trials done when this run's first measurement ended
        self._drawn = 0  # lines drawn last on the terminal

    def measured(self, state, progress, states, elapsed: float) -> None:
        """After each measurement of `state`'s task (`progress` from its tuner)."""
        counts = {id(state): (progress.measured, progress.best_seconds)}
        if self.start_trials is None:
            self.start_trials = self._done(states, counts) - 1
        if self.tty:
            self._draw(state, states, elapsed, counts)

    def update(self, state, states, elapsed: float) -> None:
        """After each round (of `state`'s task)."""
        if self.tty:
            self._draw(state, states, elapsed, {})
            return
        best = rate_text(state.task.rate(state.best), state.task.unit) \
            if math.isfinite(state.best) else "-"
        self.stream.write(f"{self._header(states, elapsed, {})}  "
                          f"{state.task.name}: {state.trials} trials, best {best}\n")
        self.stream.flush()

    @staticmethod
    def _done(states, counts) -> int:
        return sum(counts.get(id(s), (s.trials,))[0] for s in states)

    def _header(self, states, elapsed: float, counts) -> str:
        done = self._done(states, counts)
        left = []
        if self.time_budget is not None:
            left.append(max(0.0, self.time_budget - elapsed))
        if self.trials is not None and self.start_trials is not None \
                and done > self.start_trials:
            left.append(elapsed / (done - self.start_trials) * (self.trials - done))
        total = f"/{self.trials}" if self.trials is not None else ""
        eta = f"  ETA {duration_text(min(left))}" if left else ""
        return f"{done}{total} trials  {duration_text(elapsed)}{eta}"

    def _draw(self, current, states, elapsed: float, counts) -> None:
        width = max(len(s.task.name) for s in states)
        lines = [self._header(states, elapsed, counts)]
        for s in states:
            trials, best = counts.get(id(s), (s.trials, s.best))
            rate = rate_text(s.task.rate(best), s.task.unit) if math.isfinite(best) else "-"
            lines.append(f"{'>' if s is current else ' '} {s.task.name:<{width}}  "
                         f"{trials:>5} trials  best {rate}")
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)


def _print_summary(rows) -> None:
    """The job's table: task, weight, trials, best time and rate, speed-up over the first
    valid trial, and NumPy's time over the best for registry operators."""
    width = max(len(r.task.name) for r in rows)
    print(f"{'task':<{width}}  {'weight':>6}  {'trials':>6}  {'best ms':>9}  "
          f"{'rate':>14}  {'speed-up':>8}  {'vs NumPy':>8}")
    for r in rows:
        ok = math.isfinite(r.best_seconds)
        print(f"{r.task.name:<{width}}  {r.weight:>6g}  {r.trials:>6}  "
              f"{(f'{r.best_seconds * 1e3:.4g}' if ok else '-'):>9}  "
              f"{rate_text(r.task.rate(r.best_seconds) if ok else 0, r.task.unit):>14}  "
              f"{(f'{r.speedup:.2f}x' if ok else '-'):>8}  "
              f"{(f'{r.over_numpy:.2f}x' if math.isfinite(r.over_numpy) else '-'):>8}")


def run_best(args) -> int:
    """`tex-tune best` (see `autotune.reports.print_best`)."""
    reports.print_best(args.log, args.workload, args.file, args.any_hardware)
    return EXIT_OK


def run_export(args) -> int:
    """`tex-tune export` (see `autotune.export.export_logs`): prints what each entry of
    the library runs."""
    entries = export_logs(args.logs, args.output, target=args.target,
                          any_hardware=args.any_hardware, file=args.file)
    for entry in entries:
        print(f"{entry.name}: {'; '.join(entry.tuned)}")
        for tuned, how in zip(entry.tuned, entry.fallbacks):
            print(f"  other sizes nearest {tuned}: {how}")
    print(f"wrote {args.output} and {os.path.splitext(args.output)[0]}.h", file=sys.stderr)
    return EXIT_OK


def run_plot(args) -> int:
    """`tex-tune plot` (see `autotune.reports.write_plot`)."""
    reports.write_plot(args.logs, args.output)
    return EXIT_OK


def run_ops(args) -> int:
    """List the registry's operators with their shape parameters."""
    width = max(len(name) for name in ops.OPS)
    for op in ops.OPS.values():
        print(f"{op.name:<{width}}  {op.usage:<28}  {op.doc}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
