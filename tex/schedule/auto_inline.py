"""TVM's automatic inlining of a whole schedule: every elementwise (or every
injective) stage that is not an output is inlined into its readers.

    s = tex.create_schedule(C.op)
    tex.schedule.AutoInlineInjective(s)     # TVM: te.schedule.AutoInlineInjective(s)

A stage is injective when it computes without a reduction, and elementwise
when, moreover, every tensor it reads is indexed by its own axes, in order
(`B[i, j] = f(A[i, j])`); a broadcast reads each tensor at some of its axes,
in order, or at constants (`B[i, j] = f(A[0], C[j])`). Stages already scheduled
(split, attached, cached) are left as they are.
"""
from __future__ import annotations

from tex.expr import Const, Reduce, TensorRead, Var
from tex.tensor import ComputeOp
from tex.visitor import collect


def _untouched_injective(sch, stage) -> bool:
    op = stage.op
    return (isinstance(op, ComputeOp) and op.num_outputs == 1 and not sch.is_output(stage)
            and stage.attach.kind == "root" and not stage.relations
            and not any(isinstance(b, Reduce) for b in op.body))


def _elementwise(op) -> bool:
    axes = [iv.var for iv in op.axis]
    return all(len(read.indices) == len(axes) and all(i is v for i, v in zip(read.indices, axes))
               for b in op.body for read in collect(b, lambda n: isinstance(n, TensorRead)))


def _broadcast(op) -> bool:
    """Whether every read's indices are constants or the op's own axes, in order."""
    position = {iv.var: k for k, iv in enumerate(op.axis)}

    def in_order(read) -> bool:
        last = -1
        for index in read.indices:
            if isinstance(index, Const):
                continue
            if not isinstance(index, Var) or position.get(index, -1) <= last:
                return False
            last = position[index]
        return True
    return all(in_order(read) for b in op.body
               for read in collect(b, lambda n: isinstance(n, TensorRead)))


def AutoInlineInjective(sch) -> None:  # noqa: N802 - TVM's name
    """Inline every stage without a reduction that is not an output."""
    for stage in list(sch.stages):
        if _untouched_injective(sch, stage):
            stage.compute_inline()


def AutoInlineElemWise(sch) -> None:  # noqa: N802 - TVM's name
    """Inline every elementwise stage that is not an output."""
    for stage in list(sch.stages):
        if _untouched_injective(sch, stage) and _elementwise(stage.op):
            stage.compute_inline()


def AutoInlineBroadcast(sch) -> None:  # noqa: N802 - TVM's name
    """Inline every elementwise or broadcast stage that is not an output."""
    for stage in list(sch.stages):
        if _untouched_injective(sch, stage) and _broadcast(stage.op):
            stage.compute_inline()
