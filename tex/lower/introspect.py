"""TE's schedule introspection: what bound inference found, and the loop program before the
passes, for a whole schedule.

    bounds = tex.InferBound(s)        # TVM: te.schedule.InferBound(s)
    bounds[xo].extent                 # every axis of every stage -> its Range
    stmt = tex.ScheduleOps(s, bounds) # TVM: te.schedule.ScheduleOps(s, bounds)

`InferBound` reads the frozen `StagePlan`s that lowering itself infers
(`tex.lower.pipeline.stage_plans`), so its ranges are the ones the loops are
built from. A range gives the values an axis takes: a stage computed at a
loop of another covers what that loop's iteration needs, so its root axes
start at an expression of the enclosing loop variables (`xo * 8`). tex's
loops all run from 0 (a leaf's loop variable is its value less its range's
start), as TE's do after `normalize`; `Schedule.normalize` therefore returns
the schedule unchanged. Placeholders and inlined stages have no loops, so no
entries.

`ScheduleOps` is the body of `schedule_to_func` with `schedule_arguments` as
arguments: the placeholders the stages read, the outputs, then the variables
that no shape gives.
"""
from __future__ import annotations

from tex.container import Map
from tex.errors import LoweringError
from tex.ir import Stmt
from tex.lower.pipeline import schedule_to_func, stage_plans
from tex.scan_op import ScanOp
from tex.schedule.schedule import Schedule
from tex.tensor import PlaceholderOp
from tex.visitor import free_vars


class Bounds(Map):
    """The range of every axis of a schedule's stages (`IterVar -> Range`), as `InferBound`
    found them for one version of one schedule."""

    __slots__ = ("schedule", "version")

    def __init__(self, entries, schedule: Schedule):
        super().__init__(entries)
        self.schedule, self.version = schedule, schedule.version

    def __getitem__(self, axis):
        try:
            return super().__getitem__(axis)
        except KeyError:
            name = getattr(axis, "name", repr(axis))
            raise KeyError(f"{name} is not an axis of a stage that gets loops in this "
                           "schedule (placeholders and inlined stages have none)") from None


def InferBound(sch) -> Bounds:  # noqa: N802 - TVM's name
    """The range of every axis (root, reduction, split and fuse results, leaves; a scan's
    axes) of every stage of `sch` that gets loops, as a read-only `tex.container.Map`.
    TVM: `te.schedule.InferBound(s)`."""
    _check_schedule("InferBound", sch)
    ranges = {}
    for plan in stage_plans(sch):
        ranges.update(plan.ranges)
    return Bounds(ranges, sch)


def ScheduleOps(sch, bounds) -> Stmt:  # noqa: N802 - TVM's name
    """The loop program of `sch` before the passes (multi-dimensional buffers, guards
    where they are), its arguments `schedule_arguments(sch)`; `bounds` is what
    `InferBound(sch)` returned for the schedule as it is now.
    TVM: `te.schedule.ScheduleOps(s, bounds)`."""
    _check_schedule("ScheduleOps", sch)
    if not isinstance(bounds, Bounds):
        raise LoweringError(f"ScheduleOps: bounds must be what tex.InferBound(s) returned, got "
                            f"{type(bounds).__name__}")
    if bounds.schedule is not sch:
        raise LoweringError("ScheduleOps: bounds were inferred for another schedule; pass "
                            "tex.InferBound(s) of this one")
    if bounds.version != sch.version:
        raise LoweringError("ScheduleOps: the schedule has changed since its bounds were "
                            "inferred; call tex.InferBound(s) again")
    return schedule_to_func(sch, schedule_arguments(sch)).body


def schedule_arguments(sch) -> list:
    """The arguments a schedule has when none are given: the placeholders its stages read
    (a scan's state placeholders aside: the scan's output holds them), in order of
    first reading, then its outputs, then the variables its stages read that no
    tensor's shape gives (scalar parameters)."""
    states = {t for stage in sch.stages if isinstance(stage.op, ScanOp)
              for t in stage.op.state_placeholder}
    inputs = [t for stage in sch.stages for t in stage.op.input_tensors
              if isinstance(t.op, PlaceholderOp) and t not in states]
    tensors = list(dict.fromkeys(inputs + [t for op in sch.outputs for t in op.outputs]))
    sizes = {v for t in tensors for e in t.shape for v in free_vars(e)}
    scalars = []
    for stage in sch.stages:
        axes = {iv.var for iv in stage.op.axis + tuple(stage.op.reduce_axis)}
        bounds = [e for iv in stage.op.reduce_axis for e in (iv.dom.min, iv.dom.extent)]
        for expr in list(getattr(stage.op, "body", ())) + bounds:
            scalars += sorted(free_vars(expr) - axes - sizes, key=lambda v: v.name)
    return tensors + list(dict.fromkeys(scalars))


def _check_schedule(who: str, sch):
    if not isinstance(sch, Schedule):
        raise LoweringError(f"{who}: expected a schedule from tex.create_schedule, got "
                            f"{type(sch).__name__} {sch!r}")
