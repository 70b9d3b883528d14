"""Storage flattening: every buffer access gets a single, linear index.

Assumes: loads and stores index with one expression per buffer dimension.
Guarantees: every `Load`/`Store`/`AtomicUpdate`/`Prefetch` has exactly one
index, `sum(i_d * stride_d)` (row-major, or the buffer's own strides from
storage_align; 0 for a 0-d buffer); every allocated buffer is replaced by a
one-dimensional buffer of its full size (1 for a 0-d buffer). Kernel
parameters keep their multi-dimensional shape (the runtime checks it) and
are indexed linearly.
"""
from __future__ import annotations

from tex import ops
from tex.dtype import INDEX
from tex.expr import Const
from tex.ir import (Allocate, AtomicUpdate, Buffer, Load, Prefetch, Stmt, Store, ThreadReduce,
                    strides_of)
from tex.visitor import Rewriter


def _linear(indices, strides):
    total = Const(INDEX, 0)
    for i, s in zip(indices, strides):
        total = ops.binary("add", total, ops.binary("mul", i, s))
    return total


class _Flatten(Rewriter):
    def __init__(self):
        self.flat: dict[Buffer, Buffer] = {}

    def _index(self, buffer, indices):
        return self.flat.get(buffer, buffer), (_linear(indices, strides_of(buffer)),)

    def rewrite_Allocate(self, node: Allocate):
        b = node.buffer
        size = ops.binary("mul", b.shape[0], strides_of(b)[0]) if b.shape else Const(INDEX, 1)
        self.flat[b] = Buffer(b.name, b.dtype, (size,), b.scope)
        return Allocate(self.flat[b], self.rewrite(node.body))

    def rewrite_Load(self, node: Load):
        buffer, index = self._index(node.buffer, tuple(self.rewrite(i) for i in node.indices))
        return Load(buffer, index)

    def rewrite_Store(self, node: Store):
        buffer, index = self._index(node.buffer, tuple(self.rewrite(i) for i in node.indices))
        return Store(buffer, self.rewrite(node.value), index)

    def rewrite_Prefetch(self, node: Prefetch):
        return Prefetch(*self._index(node.buffer, tuple(self.rewrite(i) for i in node.indices)))

    def rewrite_AtomicUpdate(self, node: AtomicUpdate):
        buffer, index = self._index(node.buffer, tuple(self.rewrite(i) for i in node.indices))
        return AtomicUpdate(buffer, node.op, self.rewrite(node.value), index)

    def rewrite_ThreadReduce(self, node: ThreadReduce):
        return ThreadReduce(node.strategy, node.combiner,
                            tuple(self.rewrite(v) for v in node.values),
                            tuple(self.flat.get(b, b) for b in node.results), node.tag, node.extent)


def flatten_storage(stmt: Stmt) -> Stmt:
    """`stmt` with one linear index per buffer access."""
    return _Flatten().rewrite(stmt)
