"""The stage of an extern operation (`tex.extern`): computed whole, at the root.

An extern stage runs a statement tex does not look into, so it has no loops:
every primitive but `compute_root` raises ScheduleError, and so do the
dataflow primitives of the schedule (cache_read for an extern reader,
cache_write, rfactor; see `refuse_extern`). Its consumers and producers are
scheduled as usual.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex.errors import ScheduleError
from tex.schedule.stage import Stage

#: The primitives of `Stage` that an extern stage refuses.
REFUSED = ("split", "tile", "fuse", "reorder", "unroll", "vectorize", "parallel", "pragma",
           "prefetch", "compute_at", "compute_inline", "storage_align", "set_scope",
           "double_buffer", "pipeline", "bind", "reduce_strategy", "tensorize")


def refusal(primitive: str, stage) -> ScheduleError:
    """The error for `primitive` applied to the extern stage `stage`."""
    return ScheduleError(f"{primitive} on stage {stage.name}: it is an extern stage "
                         "(tex.extern), whose statement runs whole at the root, so it has no "
                         "loops to schedule; schedule the stages that read it instead")


def refuse_extern(stage, primitive: str):
    """Raise ScheduleError if `stage` is an extern stage (for the schedule's primitives)."""
    if isinstance(stage, ExternStage):
        raise refusal(primitive, stage)


def _refused(primitive: str):
    def method(self, *args, **kwargs):
        raise refusal(primitive, self)
    method.__name__ = primitive
    method.__doc__ = f"Refused: an extern stage has no loops ({primitive})."
    return method


@dataclass(eq=False)
class ExternStage(Stage):
    """The stage of an `ExternOp`: no axes, computed at the root."""

    @staticmethod
    def of(op, schedule, origin_op=None) -> "ExternStage":
        return ExternStage(op, origin_op or op, schedule)

    def _leaf(self, axis, primitive: str):
        """An extern stage has no loops: another stage cannot be computed at one."""
        raise ScheduleError(f"{primitive}: stage {self.name} is an extern stage (tex.extern) "
                            "and has no loops; compute the stage at the root, or at a loop "
                            "of another consumer")

    def describe(self) -> list[str]:
        return ["extern: runs its statement at the root"]

    for _primitive in REFUSED:
        locals()[_primitive] = _refused(_primitive)
    del _primitive
