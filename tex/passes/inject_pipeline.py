"""Expand pipeline marks into loops that fetch tiles `stages - 1` iterations ahead.

Assumes: a `Pipeline` mark (left by lowering for `Stage.pipeline`) is the body
of a serial `For` starting at 0; its buffers are in shared memory and written
only by its `fill`, and every thread of the block runs the loop.

Guarantees: no mark remains. Each buffer `B` becomes `B_stages`, with a
leading dimension of `stages` slots (each slot laid out as `B` was), and a
marked loop `for v in range(n): fill(v); body(v)` becomes, with S = stages:

    for s in 0 .. S-2:                         (unrolled here)
        if s < n: async_fill(fill(s) into slot s)
        cp_async_commit()
    for v in range(n):
        cp_async_wait_group(S - 2)             # this thread's copies of tile v landed
        sync_threads()                         # everyone's; and slot (v-1) % S is free
        if v + S - 1 < n: async_fill(fill(v + S - 1) into slot (v + S - 1) % S)
        cp_async_commit()
        body(v) reading slot v % S
    cp_async_wait_group(0)
    sync_threads()                             # no thread reads a slot any more

Each iteration commits one group (empty past the end), so that the group of
tile v is always the S-1'th newest when iteration v waits. The last barrier
keeps the slots from being filled again (the loop run anew inside an outer
one) while a thread still reads them: the barrier pass does not see fills. The fills are
`AsyncFill` marks: `lower_async_copies` turns their stores into cp.async, and
the barrier pass leaves them to the pipeline's own wait and barrier. Each copy
of a statement defines fresh variables.
"""
from __future__ import annotations

from tex import ops
from tex.dtype import INDEX
from tex.expr import Const
from tex.ir import (Allocate, AsyncFill, Barrier, Buffer, For, IfThenElse, Load, Pipeline, Stmt,
                    Store, seq, strides_of)
from tex.passes.async_copy import commit_group, wait_group
from tex.visitor import Rewriter, fresh_copy, transform


def inject_pipeline(stmt: Stmt) -> Stmt:
    """`stmt` with every pipeline mark expanded (see the module docstring)."""
    def expand(node):
        if isinstance(node, For) and isinstance(node.body, Pipeline):
            return _pipelined(node)
        return None
    return transform(stmt, expand)


def _pipelined(loop: For) -> Stmt:
    mark, var, extent = loop.body, loop.var, loop.extent
    stages = mark.stages
    staged = {b: _with_slots(b, stages) for b in mark.buffers}

    def step(stmt, index):
        slot = ops.binary("floormod", index, stages)
        return _Slot(staged, slot).rewrite(fresh_copy(stmt, {var: index}))

    def fill(index):
        stmt = AsyncFill(step(mark.fill, index))
        inside = ops.compare("lt", index, extent)
        return stmt if isinstance(inside, Const) and inside.value else IfThenElse(inside, stmt)

    prologue = [seq(fill(Const(INDEX, s)), commit_group()) for s in range(stages - 1)]
    ahead = ops.binary("add", var, stages - 1)
    body = seq(wait_group(stages - 2), Barrier(), fill(ahead), commit_group(),
               step(mark.body, var))
    stmt = seq(*prologue, For(var, loop.min, extent, "serial", body, loop.pragmas),
               wait_group(0), Barrier())
    for buffer in reversed(mark.buffers):
        stmt = Allocate(staged[buffer], stmt)
    return stmt


def _with_slots(buffer: Buffer, stages: int) -> Buffer:
    """`buffer` with a leading dimension of `stages` slots, each laid out as `buffer`."""
    strides = strides_of(buffer)
    slot = ops.binary("mul", strides[0], buffer.shape[0])
    return Buffer(buffer.name + "_stages", buffer.dtype, (Const(INDEX, stages),) + buffer.shape,
                  buffer.scope, None if buffer.strides is None else (slot,) + strides)


class _Slot(Rewriter):
    """Loads and stores of the buffers of `staged` redirected to slot `slot` of their
    staged buffers."""

    def __init__(self, staged: dict, slot):
        self.staged, self.slot = staged, slot

    def rewrite_Load(self, node: Load):
        node = self.generic_rewrite(node)
        buffer = self.staged.get(node.buffer)
        return node if buffer is None else Load(buffer, (self.slot,) + node.indices)

    def rewrite_Store(self, node: Store):
        node = self.generic_rewrite(node)
        buffer = self.staged.get(node.buffer)
        return node if buffer is None else Store(buffer, node.value, (self.slot,) + node.indices)
