"""Expand double-buffer marks into loops that fill one buffer while reading the other.

Assumes: a `DoubleBuffer` mark (left by lowering for `Stage.double_buffer`)
is the body of a serial `For` starting at 0; its buffers are in shared
memory and written only by its `fill`.

Guarantees: no mark remains. A marked loop `for v in range(n): fill(v);
body(v)` becomes, with a second copy `B_next` of each buffer `B`:

    fill(0)
    for v_pair in range((n + 1) // 2):
        if 2*v_pair + 1 < n: fill(2*v_pair + 1) into the B_next
        body(2*v_pair)
        if 2*v_pair + 1 < n:
            if 2*v_pair + 2 < n: fill(2*v_pair + 2)
            body(2*v_pair + 1) reading the B_next

under `if 0 < n` unless n is a positive constant, with both copies allocated
around it. Each copy of a statement defines fresh variables.
"""
from __future__ import annotations

from tex import ops
from tex.dtype import INDEX
from tex.expr import Const, Var
from tex.ir import Allocate, Buffer, DoubleBuffer, For, IfThenElse, Load, Stmt, Store, seq
from tex.visitor import Rewriter, fresh_copy, transform

_ZERO = Const(INDEX, 0)


def inject_double_buffer(stmt: Stmt) -> Stmt:
    """`stmt` with every double-buffer mark expanded."""
    def expand(node):
        if isinstance(node, For) and isinstance(node.body, DoubleBuffer):
            return _double_buffered(node)
        return None
    return transform(stmt, expand)


def _double_buffered(loop: For) -> Stmt:
    mark, var, extent = loop.body, loop.var, loop.extent
    second = {b: Buffer(b.name + "_next", b.dtype, b.shape, b.scope, b.strides)
              for b in mark.buffers}
    swap = _BufferSwap(second)

    def step(stmt, index, odd: bool):
        stmt = fresh_copy(stmt, {var: index})
        return swap.rewrite(stmt) if odd else stmt

    pair = Var(var.name + "_pair", INDEX)
    even = ops.binary("mul", pair, 2)
    odd = ops.binary("add", even, 1)
    after = ops.binary("add", even, 2)
    body = seq(IfThenElse(ops.compare("lt", odd, extent), step(mark.fill, odd, True)),
               step(mark.body, even, False),
               IfThenElse(ops.compare("lt", odd, extent), seq(
                   IfThenElse(ops.compare("lt", after, extent), step(mark.fill, after, False)),
                   step(mark.body, odd, True))))
    pairs = ops.binary("floordiv", ops.binary("add", extent, 1), 2)
    stmt = seq(step(mark.fill, _ZERO, False), For(pair, _ZERO, pairs, "serial", body,
                                                   loop.pragmas))
    if not (isinstance(extent, Const) and extent.value >= 1):
        stmt = IfThenElse(ops.compare("lt", _ZERO, extent), stmt)
    for buffer in reversed(mark.buffers):
        stmt = Allocate(buffer, Allocate(second[buffer], stmt))
    return stmt


class _BufferSwap(Rewriter):
    """Loads and stores of the buffers of `mapping` redirected to the buffers it maps to."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def rewrite_Load(self, node: Load):
        node = self.generic_rewrite(node)
        buffer = self.mapping.get(node.buffer)
        return node if buffer is None else Load(buffer, node.indices)

    def rewrite_Store(self, node: Store):
        node = self.generic_rewrite(node)
        buffer = self.mapping.get(node.buffer)
        return node if buffer is None else Store(buffer, node.value, node.indices)
