"""`tex-tune export`: one operator library of the best configurations that tuning logs hold.

    tex-tune export m64.jsonl m96.jsonl -o ops.so     # ops.so and its header ops.h

Each workload's best record is chosen as `tex-tune best` chooses it: among the
records measured on this machine's CPU model (`autotune.hardware`; every record
with `any_hardware`) of one target (`target`, or the logs' only one; CPU targets
only, since a library holds CPU kernels). Its kernel is built with that
configuration, at its fixed shape.

The workloads of one registry operator and dtype (`autotune.ops`: "matmul
64,64,64", "matmul 96,80,48") become one entry of the library (`tex.dispatch`),
named after the operator, with the dtype appended when it is not float32
(`matmul`, `matmul_float64`), whose C function takes the sizes of the operator
declared with a `tex.size_var` per shape parameter. It runs the kernel tuned
for a call's sizes where there is one. Other sizes run a kernel of the
symbolic declaration scheduled by the configuration of the nearest tuned shape
(`tex.runtime.library_dispatch.distance`: the sum over the size variables of
|log(a) - log(b)|, a size under 1 counted as 1), one such kernel per tuned
shape. The configuration is applied as if the sizes were that shape's
(`space_for(..., sizes=)`: the rules decide by those extents, and the splits
guard the extents met at run time).
Where a configuration cannot be built for symbolic sizes, that kernel has the
default schedule (`tex.create_schedule`, no primitive), and the entry's
`fallbacks` say so. An operator declared for constant sizes only (conv2d and
depthwise_conv2d, whose padding stage and output size need them; layernorm,
which divides by the row length as a float constant) gets one entry per tuned
shape instead, named with it: `conv2d_1_64_56_56_64`.

A workload of a function of the user's file (`tex-tune --file`) is built when
`file` declares it (as `tex-tune best --file` finds it), as one entry per
workload named after the task ("my_mm 64,32" -> `my_mm_64_32`). A workload that
neither the registry nor `file` declares is an error, as are logs with no
successful record for this hardware and target.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import tex
from autotune import ops
from autotune import records as rec
from autotune.errors import TuneError
from autotune.generate import space_for
from autotune.hardware import matching_records, other_hardware_note
from autotune.reports import load_existing, registry_task
from autotune.targets import kind_of
from autotune.userfile import task_of_record
from tex.target import as_target
from tex.tensor import PlaceholderOp


@dataclass(frozen=True)
class Entry:
    """One entry of an exported library: its tuned workloads (their task names) and, for
    a dispatch, how the kernel for other sizes nearest each is scheduled (else empty)."""

    name: str
    tuned: tuple[str, ...]
    fallbacks: tuple[str, ...] = ()


def export_logs(logs, output, target=None, any_hardware: bool = False, file=None,
                cc=None) -> list[Entry]:
    """Write the library `output` (and its header) of the best configurations of the
    tuning `logs` (paths); returns its entries. See the module docstring."""
    best, target = _best_records(logs, target, any_hardware)
    operators: dict[tuple[str, str], list] = {}  # (op, dtype) -> [(shape, task, record)]
    built = []  # (kernel or dispatch, Entry)
    for record in best:
        task = registry_task(record.task, str(target), record.workload)
        if task is not None:
            op, shape, dtype = ops.parse_task_name(record.task)
            shape = ops.get_op(op).full_shape(shape)
            operators.setdefault((op, dtype), []).append((shape, task, record))
        elif file is not None and \
                (task := task_of_record(file, record.task, str(target), record.workload)):
            name = _c_name(record.task)
            built.append((_build(task, record, name), Entry(name, (record.task,))))
        else:
            where = f"neither the registry nor {file} declares it" if file else \
                "it is not a registry operator's; pass --file with the Python file declaring it"
            raise TuneError(f"cannot build {record.task or record.workload} "
                            f"({record.workload}) again: {where}")
    for (op, dtype), members in operators.items():
        built += _operator_entries(op, dtype, members, target)
    tex.export_library([kernel for kernel, _ in built], output, cc=cc)
    return [entry for _, entry in built]


def _best_records(logs, target, any_hardware: bool):
    """(the best successful record of each workload, the target) of the logs' records of
    this hardware (any with `any_hardware`) and of `target` (default: the logs' only one)."""
    records = [r for log in logs for r in load_existing(log)]
    if not records:
        raise TuneError(f"{', '.join(map(str, logs))} hold no measurement")
    used, other = matching_records(records, not any_hardware)
    if not used:
        raise TuneError(f"no records of this machine's hardware in {', '.join(map(str, logs))}: "
                        f"{other_hardware_note(other)}; pass --any-hardware to use them")
    _warn_about_other_hardware(used, other)
    targets = sorted({r.target for r in used})
    if target is None and len(targets) > 1:
        raise TuneError(f"the logs hold records for the targets {', '.join(targets)}; "
                        "choose one with --target")
    target = as_target(target if target is not None else targets[0])
    if kind_of(target).on_device:
        raise TuneError(f"a library holds CPU kernels; {target} is a GPU target")
    used = [r for r in used if str(as_target(r.target)) == str(target)]
    workloads = list(dict.fromkeys(r.workload for r in used))
    best = [b for b in (rec.best_record(used, w) for w in workloads) if b is not None]
    if not best:
        raise TuneError(f"the logs hold no successful measurement on {target} of this "
                        f"machine's hardware" if used else
                        f"the logs hold no record for {target}; they hold {', '.join(targets)}")
    return best, target


def _warn_about_other_hardware(used, other) -> None:
    """A `TuneWarning` naming the workloads left out because only other hardware measured
    them."""
    measured_here = {r.workload for r in used}
    only_other = [r for r in other if r.workload not in measured_here]
    if only_other:
        names = sorted({r.task or r.workload for r in only_other})
        warnings.warn(f"left out {', '.join(names)}: {other_hardware_note(only_other)}; "
                      "--any-hardware uses them", rec.TuneWarning, stacklevel=3)


def _operator_entries(op_name: str, dtype: str, members: list, target):
    """(kernel or dispatch, Entry) of registry operator `op_name` in `dtype` tuned at the
    shapes of `members` ((full shape, task, best record) each)."""
    members = sorted(members, key=lambda m: m[0])
    suffix = "" if dtype == "float32" else f"_{dtype}"
    op = ops.get_op(op_name)
    try:
        tensors, sizes = op.declare_symbolic(dtype)
    except TuneError:
        for shape, task, record in members:
            name = f"{op_name}_{'_'.join(map(str, op.short_shape(shape)))}{suffix}"
            yield _build(task, record, name), Entry(name, (task.name,))
        return
    name = op_name + suffix
    specialized = [_build(task, record, f"{name}_{'_'.join(map(str, shape))}")
                   for shape, task, record in members]
    fallbacks, how = zip(*(_fallback(name, tensors, sizes, shape, task, record, target)
                           for shape, task, record in members))
    entry = Entry(name, tuple(task.name for _, task, _ in members), how)
    yield tex.dispatch(name, specialized, list(fallbacks)), entry


def _build(task, record, name: str):
    """The kernel of `task` with `record`'s configuration, named `name`."""
    schedule, tensors = task.instantiate(task.space.from_json(record.config))
    return tex.build(schedule, tensors, target=task.target, name=name)


def _fallback(name: str, tensors: list, sizes: list, shape, task, record, target):
    """(the kernel of the symbolic declaration `tensors` over `sizes` with the configuration
    of `record`, tuned for `task` at `shape`, or with the default schedule where that
    configuration does not apply to symbolic sizes; how it is scheduled)."""
    outputs = [t for t in tensors if not isinstance(t.op, PlaceholderOp)]
    label = f"{name}_any_{'_'.join(map(str, shape))}"
    try:
        space = space_for(outputs, target, args=tensors, sizes=dict(zip(sizes, shape)))
        schedule, args = space.instantiate(space.from_json(record.config))
        return tex.build(schedule, args, target=target, name=label), \
            f"the configuration of {task.name}"
    except tex.TexError as err:
        schedule = tex.create_schedule([t.op for t in outputs])
        kernel = tex.build(schedule, tensors, target=target, name=label)
        return kernel, f"the default schedule (the configuration of {task.name} does not " \
            f"apply to symbolic sizes: {type(err).__name__}: {str(err)[:200]})"


def _c_name(task_name: str) -> str:
    """A C identifier for a task's name: "my_mm 64,32" -> "my_mm_64_32"."""
    name = re.sub(r"\W+", "_", task_name).strip("_")
    return name if re.match(r"[A-Za-z_]", name) else f"op_{name}"
