"""Schedules (how to compute): stages, their records and primitives. Only `tex.lower` reads them."""
from tex import ir
from tex.schedule.auto_inline import (AutoInlineBroadcast, AutoInlineElemWise,
                                      AutoInlineInjective)
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.relations import Fuse, Singleton, Split
from tex.schedule.stage import IterVarAttr, Stage
from tex.schedule.tensorize import TileView
from tex.schedule.thread_axis import ThreadAxis, thread_axis


class _BufferKind(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, (ir.Buffer, TileView))


class Buffer(metaclass=_BufferKind):
    """What TE calls a buffer, for `isinstance` tests: a buffer of the program
    (`tex.ir.Buffer`, which an extern stage's fcompute receives) or a tile of one
    (`TileView`, which a tensor intrinsic's lower_fn receives). TVM: `te.schedule.Buffer`."""


__all__ = ["AutoInlineBroadcast", "AutoInlineElemWise", "AutoInlineInjective", "Buffer", "Fuse",
           "IterVarAttr", "Schedule", "Singleton", "Split", "Stage", "ThreadAxis", "TileView",
           "create_schedule", "thread_axis"]
