"""Expand double-buffer marks into loops that fill one buffer while reading the other.

Assumes: a `DoubleBuffer` mark (left by lowering for `Stage.double_buffer`)
is the body of a serial `For` starting at 0; its buffers are in shared
memory and written only by its `fill`.

Guarantees: no mark remains. A marked loop `for v in range(n): fill(v);
body(v)` becomes, with a second copy `B_next` of each buffer `B`:

    fill(0)
    for v_pair in range((n + 1) // 2):
        if 2*v_pair + 1 < n: load(2*v_pair + 1)
        body(2*v_pair)
        if 2*v_pair + 1 < n: store(2*v_pair + 1) into the B_next
        if 2*v_pair + 2 < n: load(2*v_pair + 2)
        if 2*v_pair + 1 < n: body(2*v_pair + 1) reading the B_next
        if 2*v_pair + 2 < n: store(2*v_pair + 2)

under `if 0 < n` unless n is a positive constant, with both copies allocated
around it. The fill is staged through registers: `load` is the fill with each
store into a buffer sent to a per-thread "local" staging buffer `B_staged`
instead (one element per iteration of the serial, unrolled and vectorized
loops around the store; all the lanes of an element of a vector dtype),
`store` the same nest copying the staging buffer
into the shared one. The global loads of the next step are issued before the
compute on this one and their latency hides behind it; the shared buffer a
store writes was last read before the barrier that `insert_barriers` puts
ahead of the other body, so each step needs one barrier. A fill whose stores
sit under a loop of non-constant extent, or that would stage more than
`STAGING_LIMIT` values per thread, is not staged (`load` is the whole fill,
`store` nothing). Each copy of a statement defines fresh variables.
"""
from __future__ import annotations

from tex import ops
from tex.dtype import INDEX
from tex.expr import Const, Expr, Var
from tex.ir import (Allocate, Buffer, DoubleBuffer, For, IfThenElse, Load, Ramp, Stmt, Store,
                    seq)
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
    load, store, staging = _staged(mark.fill, mark.buffers)

    def step(stmt, index, odd: bool):
        stmt = fresh_copy(stmt, {var: index})
        return swap.rewrite(stmt) if odd else stmt

    def when(cond, stmt, index, odd: bool):
        return None if stmt is None else IfThenElse(cond, step(stmt, index, odd))

    pair = Var(var.name + "_pair", INDEX)
    even = ops.binary("mul", pair, 2)
    odd = ops.binary("add", even, 1)
    after = ops.binary("add", even, 2)
    has_odd, has_after = ops.compare("lt", odd, extent), ops.compare("lt", after, extent)
    # each part under a branch of its own: the barrier pass syncs before the part that
    # conflicts (the body reading what a store wrote), not before one branch around all
    body = seq(when(has_odd, load, odd, True), step(mark.body, even, False),
               when(has_odd, store, odd, True), when(has_after, load, after, False),
               when(has_odd, mark.body, odd, True), when(has_after, store, after, False))
    pairs = ops.binary("floordiv", ops.binary("add", extent, 1), 2)
    stmt = seq(step(mark.fill, _ZERO, False), For(pair, _ZERO, pairs, "serial", body,
                                                   loop.pragmas))
    if not (isinstance(extent, Const) and extent.value >= 1):
        stmt = IfThenElse(ops.compare("lt", _ZERO, extent), stmt)
    for buffer in reversed(mark.buffers):
        stmt = Allocate(buffer, Allocate(second[buffer], stmt))
    for buffer in staging:
        stmt = Allocate(buffer, stmt)
    return stmt


#: The most values one thread stages through registers for a fill (all its buffers);
#: a fill needing more is not staged (its registers would crowd out the body's).
STAGING_LIMIT = 32


def _staged(fill: Stmt, buffers) -> tuple[Stmt, Stmt | None, tuple[Buffer, ...]]:
    """(load, store, staging buffers) of `fill` staged through registers (see the module
    docstring), or (fill, None, ()) where it cannot be."""
    loads = _ToStaging(set(buffers))
    load = loads.rewrite(fill)
    size = sum(buffer.shape[0].value for buffer, _ in loads.staging.values())
    if loads.unstageable or not loads.staging or size > STAGING_LIMIT:
        return fill, None, ()
    staging = tuple(buffer for buffer, _ in loads.staging.values())
    return load, _FromStaging(loads.staging).rewrite(fill), staging


class _ToStaging(Rewriter):
    """The fill with each store into `buffers` sent to a staging buffer of its own, indexed
    by the loops around it that one thread runs (those not bound to threads)."""

    def __init__(self, buffers: set):
        self.buffers, self.loops, self.staging = buffers, [], {}
        self.unstageable = False

    def rewrite_For(self, node: For):
        if node.kind == "bound":
            return self.generic_rewrite(node)
        if not isinstance(node.extent, Const):
            self.unstageable = True
            return node
        self.loops.append((node.var, node.extent.value))
        try:
            return self.generic_rewrite(node)
        finally:
            self.loops.pop()

    def rewrite_Store(self, node: Store):
        if node.buffer not in self.buffers:
            return node
        size, lanes = 1, node.value.dtype.lanes  # a vector value: a vector dtype's element
        for _, extent in self.loops:
            size *= extent
        buffer = Buffer(node.buffer.name + "_staged", node.buffer.dtype,
                        (Const(INDEX, size * lanes),), "local")
        index = _flat(self.loops)
        if lanes > 1:
            index = Ramp(ops.binary("mul", index, lanes), Const(INDEX, 1), lanes)
        self.staging[node] = (buffer, index)
        return Store(buffer, node.value, (index,))


class _FromStaging(Rewriter):
    """The fill with each staged store's value read back from its staging buffer."""

    def __init__(self, staging: dict):
        self.staging = staging

    def rewrite_Store(self, node: Store):
        if node not in self.staging:
            return node
        buffer, index = self.staging[node]
        return Store(node.buffer, Load(buffer, (index,)), node.indices)


def _flat(loops) -> Expr:
    """The row-major position of the current iteration of `loops` ((var, extent) pairs)."""
    index = _ZERO
    for var, extent in loops:
        index = ops.binary("add", ops.binary("mul", index, extent), var)
    return index


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
