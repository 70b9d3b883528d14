"""TVM's automatic inlining of a whole schedule: every elementwise (or every
injective) stage that is not an output is inlined into its readers.

    s = tex.create_schedule(C.op)
    tex.schedule.AutoInlineInjective(s)     # TVM: te.schedule.AutoInlineInjective(s)

A stage is injective when it computes without a reduction, and elementwise
when, moreover, every tensor it reads is indexed by its own axes, in order
(`B[i, j] = f(A[i, j])`). Stages already scheduled (split, attached, cached)
are left as they are.
"""
from __future__ import annotations

from tex.expr import Reduce, TensorRead
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
