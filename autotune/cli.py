"""`tex-tune`: tune an operator from the command line, and read what the tuning logged.

    tex-tune matmul --shape 1024,1024,1024 --trials 200 --log matmul.jsonl
    tex-tune matmul --shape 1024,1024,1024 --trials 400 --log matmul.jsonl --resume
    tex-tune matmul --shape 512,512,512 --trials 100 --log m512.jsonl --transfer matmul.jsonl
    tex-tune --file my_ops.py my_matmul --args 1024,64 --trials 100 --log mine.jsonl
    tex-tune best matmul.jsonl                  # the best configuration and its loop nest
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

`--transfer LOG ...` pre-trains the cost model with the measurements of other
registry workloads (other shapes of an operator, say) on the same target.

Progress goes to stderr: one line redrawn in place on a terminal, one line
per round otherwise. Ctrl-C stops cleanly; the log keeps every finished
measurement. Exit status: 0 done, 1 no configuration worked, 2 a usage error
or an input tex-tune cannot honour (`tex-tune: error: ...`), 130 stopped.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import warnings

import tex
from autotune import ops
from autotune import records as rec
from autotune.errors import TuneError
from autotune.targets import kind_of
from autotune.task import Task, Template
from autotune.tuner import REMEASURED, measured_configs, tune
from tex.runtime.cuda_device import require_device

COMMANDS = ("tune", "best", "plot", "ops")
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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


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
    run.add_argument("--target", default="llvm", help="the target to tune for (llvm)")
    run.add_argument("--trials", type=_positive_int, required=True, metavar="N",
                     help="configurations to measure, counting those the log already holds")
    run.add_argument("--log", required=True, help="the JSONL tuning log to append to")
    run.add_argument("--resume", action="store_true",
                     help="continue the measurements the log already holds for this workload")
    run.add_argument("--seed", type=int, default=0, metavar="N",
                     help="the search's random seed (0)")
    run.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                     help="configurations measured per round (8)")
    run.add_argument("--remeasure", type=int, default=REMEASURED, metavar="N",
                     help=f"measure the N fastest once more at the end (default {REMEASURED})")
    run.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                     help="seconds allowed to build, or to check and time, one "
                          "configuration (10)")
    run.add_argument("--model", choices=("xgboost", "random"), default="xgboost",
                     help="the cost model guiding the search (xgboost)")
    run.add_argument("--transfer", nargs="+", action="extend", default=[], metavar="LOG",
                     help="logs of other registry workloads that pre-train the cost model")

    best = commands.add_parser("best", help="print the best configuration per workload",
                               description="Print the best configuration of each workload "
                                           "of a log, and its loop nest when the workload is "
                                           "a registry operator.")
    best.add_argument("log", metavar="LOG")
    best.add_argument("--workload", metavar="KEY",
                      help="only this workload: its task name (\"matmul 64,64,64\") or key")

    plot = commands.add_parser("plot", help="plot the best rate against trials",
                               description="Plot the best rate so far against the trial "
                                           "number, one line per workload (needs matplotlib).")
    plot.add_argument("log", metavar="LOG")
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
    run = {"tune": run_tune, "best": run_best, "plot": run_plot, "ops": run_ops}[args.command]
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
    line = ProgressLine(task, failed, sys.stderr)
    try:
        result = tune(task, args.trials, log=args.log, model=args.model, seed=args.seed,
                      batch_size=args.batch_size, transfer=transfer, callback=line.update,
                      remeasure=args.remeasure,
                      timeout=args.timeout)
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
    values = _json_args(args.args)
    func = _load_function(args.file, args.name)
    if isinstance(func, Template):
        return Task.from_template(func, values, args.target)
    tensors = func(*values)
    if not isinstance(tensors, (list, tuple)) or not all(
            isinstance(t, tex.Tensor) for t in tensors):
        raise TuneError(f"{args.name}({args.args or ''}) in {args.file} must return the "
                        f"tensors to build (inputs, then outputs) or be an "
                        f"@autotune.template; it returned {type(tensors).__name__}")
    name = " ".join([args.name] + ([args.args.replace(" ", "")] if values else []))
    return Task.from_compute(tensors, args.target, name=name)


def _json_args(text) -> list:
    if text is None:
        return []
    try:
        return json.loads(f"[{text}]")
    except json.JSONDecodeError:
        raise TuneError(f"--args takes JSON values separated by commas, such as 1024,64 or "
                        f"'\"NCHW\",[3,3]'; got {text!r}") from None


def _load_function(path: str, name: str):
    """The attribute `name` of the Python file at `path`, run as a fresh module."""
    if not os.path.isfile(path):
        raise TuneError(f"--file: no Python file at {path!r}")
    module_name = "_tex_tune_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up
    spec.loader.exec_module(module)
    func = getattr(module, name, None)
    if not callable(func):
        found = sorted(k for k, v in vars(module).items()
                       if isinstance(v, Template) or (callable(v) and not k.startswith("_")
                                                      and getattr(v, "__module__", None)
                                                      == module_name))
        raise TuneError(f"{path} defines no function {name!r}; it defines "
                        f"{', '.join(found) or 'none'}")
    return func


def _logged(task: Task, records) -> tuple[int, int]:
    """(configurations of `task` in `records`, how many of them failed), as `tune` counts."""
    seconds = measured_configs(task, records).values()
    return len(seconds), sum(not math.isfinite(s) for s in seconds)


def _transfer(paths, task: Task) -> list[tuple[Task, list]]:
    """(task, records) of each registry workload on `task`'s target in the logs `paths`."""
    groups: dict[tuple[str, str], list] = {}
    for path in paths:
        for r in _load_existing(path):
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


def registry_task(name: str, target: str, workload: str) -> Task | None:
    """The registry task a log's record names, or None when `name` is not a registry task's
    or the registry now declares it differently (another workload key)."""
    try:
        op, shape, dtype = ops.parse_task_name(name)
        task = ops.task_for(op, shape, target, dtype)
    except tex.TexError:
        return None
    return task if task.workload_key == workload else None


class ProgressLine:
    """The tuning's progress on `stream`: trials done of the total, best rate, elapsed time
    and failures; redrawn in place on a terminal, else one line per round."""

    def __init__(self, task: Task, failures: int, stream):
        self.task, self.failures, self.stream = task, failures, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._width = 0

    def update(self, progress) -> None:
        self.failures += sum(r.error is not None for r in progress.last)
        filled = round(20 * progress.measured / max(progress.trials, 1))
        text = (f"[{'#' * filled}{'.' * (20 - filled)}] {progress.measured}/{progress.trials} "
                f"trials  best {_rate(progress.best_rate, self.task.unit)}  "
                f"{_duration(progress.elapsed)}  {self.failures} failed")
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


def _rate(rate: float, unit: str) -> str:
    if rate <= 0:
        return f"- {unit}"
    return f"{rate:.0f} {unit}" if rate >= 100 else f"{rate:.3g} {unit}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


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
    print(f"{task.name} on {task.target}: best {_rate(task.rate(best.seconds), task.unit)} "
          f"({best.seconds * 1e3:.4g} ms) of {done} measured, {failed} failed")
    print(f"config: {json.dumps(best.config)}")
    return EXIT_OK


# --- best, plot, ops ---------------------------------------------------------------------

def _load_existing(path: str) -> list:
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


def run_best(args) -> int:
    """Print each workload's best record, and its loop nest for a registry operator."""
    records = _load_existing(args.log)
    groups = _workloads(records, args.workload)
    if not groups:
        names = sorted({r.task or r.workload for r in records})
        raise TuneError(f"{args.log} holds no workload {args.workload!r}; it holds "
                        f"{', '.join(names) or 'nothing'}" if args.workload
                        else f"{args.log} holds no measurement")
    for (workload, target), group in groups.items():
        name = group[-1].task or workload
        best = rec.best_record(group)
        failed = sum(r.error is not None for r in group)
        print(f"== {name} on {target} ({workload}): {len(group)} measurements, {failed} failed")
        if best is None:
            print("no configuration worked")
            continue
        task = registry_task(name, target, workload)
        rate = f"{_rate(task.rate(best.seconds), task.unit)}, " if task else ""
        print(f"best: {rate}{best.seconds * 1e3:.4g} ms")
        print(f"config: {json.dumps(best.config)}")
        if task is not None:
            try:
                schedule, tensors = task.instantiate(task.space.from_json(best.config))
            except TuneError as err:
                print(f"(no loop nest: the registry's space has changed since the log was "
                      f"written: {err})")
                continue
            print(tex.lower(schedule, tensors))
    return EXIT_OK


def run_plot(args) -> int:
    """Write the best-so-far curves of every workload of the log to a PNG file."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TuneError("tex-tune plot needs matplotlib: pip install matplotlib") from None
    curves: dict[str, list] = {}  # unit -> [(label, trial numbers, best so far)]
    for (workload, target), group in _workloads(_load_existing(args.log)).items():
        name = group[-1].task or workload
        task = registry_task(name, target, workload)
        unit = task.unit if task else "ms (lower is better)"
        best, xs, ys = math.inf, [], []
        for trial, r in enumerate(group, 1):
            best = min(best, r.seconds)
            if math.isfinite(best):
                xs.append(trial)
                ys.append(task.rate(best) if task else best * 1e3)
        curves.setdefault(unit, []).append((f"{name} ({target})", xs, ys))
    if not curves:
        raise TuneError(f"{args.log} holds no measurement to plot")
    figure = Figure(figsize=(7, 3.5 * len(curves)), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(os.path.basename(args.log))
    for axes, (unit, lines) in zip(figure.subplots(len(curves), squeeze=False)[:, 0],
                                   curves.items()):
        for label, xs, ys in lines:
            axes.step(xs, ys, where="post", label=label)
        axes.set_xlabel("trial")
        axes.set_ylabel(f"best so far, {unit}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return EXIT_OK


def run_ops(args) -> int:
    """List the registry's operators with their shape parameters."""
    width = max(len(name) for name in ops.OPS)
    for op in ops.OPS.values():
        print(f"{op.name:<{width}}  {op.usage:<28}  {op.doc}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
