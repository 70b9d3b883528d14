"""Cross-thread reductions: each `ThreadReduce` becomes shared-memory or warp-shuffle code.

Assumes: `split_host_device` ran (a `ThreadReduce` lies in a `KernelLaunch`
whose block is constant). Guarantees: no `ThreadReduce` is left, and every
thread of the block runs each one's barriers and shuffles: a guard around a
`ThreadReduce` (such as the bound check of a split along another thread
axis, which differs between threads, or a threadIdx loop shorter than the
block) is pushed down to the statements beside it, and a thread that fails
it contributes the identity. Afterwards every thread of the reducing group
(the threads that share the other two thread indices) holds the combined
value in the result buffers. Threads of the reduced axis at or past the
reduction's extent contribute the identity.

* "shared": each thread writes its value to a shared buffer with one slot per
  thread of the block; then, for s = P/2, P/4, ..., 1 (P the block extent
  along the axis rounded up to a power of two), the threads below s combine
  their slot with the slot s further on, with a barrier after each step.
* "warp": lanes combine through `__shfl_xor_sync`, halving the distance each
  step, so every lane ends with the warp's total. Each shuffle is bound to a
  variable before the combiner runs, so no shuffle sits in a branch. With more than one warp per
  group, lane 0 of each warp writes its total to shared memory, and after a
  barrier every warp reads those totals back and shuffles again.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Var
from tex.ir import (Allocate, Barrier, Buffer, For, IfThenElse, KernelLaunch, LetStmt, Load, Seq,
                    Store, ThreadIndex, ThreadReduce, WarpShuffle, seq, warp_sized)
from tex.visitor import Rewriter, collect, substitute

_AXES = ("x", "y", "z")


def lower_thread_reduce(stmt):
    """`stmt` with every ThreadReduce expanded (see the module docstring)."""
    return _Launches().rewrite(stmt)


class _Launches(Rewriter):
    def rewrite_KernelLaunch(self, launch: KernelLaunch):
        block = [e.value if isinstance(e, Const) else None for e in launch.block]
        body = _Expand(launch.name, block).rewrite(launch.body)
        return launch if body is launch.body else dataclasses.replace(launch, body=body)


class _Expand(Rewriter):
    def __init__(self, kernel: str, block: list):
        self.kernel, self.block = kernel, block

    def rewrite_For(self, node: For):
        """A threadIdx loop of fewer iterations than the block has threads along its axis,
        around a ThreadReduce, is a branch too: it becomes a loop over all of them, with
        the extra threads guarded out of everything but the ThreadReduce."""
        if node.kind != "bound" or not node.thread_tag.startswith("threadIdx") \
                or not _has_thread_reduce(node.body):
            return self.generic_rewrite(node)
        threads = self.block[_AXES.index(node.thread_tag[-1])]
        if threads is None or (isinstance(node.extent, Const) and node.extent.value == threads):
            return self.generic_rewrite(node)
        inside = ops.compare("lt", ThreadIndex(node.thread_tag), node.extent)
        return self.rewrite(dataclasses.replace(node, extent=Const(INDEX, threads),
                                                body=_guard_each(inside, node.body, self.kernel)))

    def rewrite_IfThenElse(self, node: IfThenElse):
        if not _has_thread_reduce(node):
            return node
        if node.else_body is not None:
            raise LoweringError(f"kernel {self.kernel}: a reduction across threads under a "
                                "branch with an else part")
        return self.rewrite(_guard_each(node.cond, node.then_body, self.kernel))

    def rewrite_ThreadReduce(self, node: ThreadReduce):
        if None in self.block:
            raise LoweringError(f"kernel {self.kernel}: a reduction across threads needs a "
                                "constant block size; bind loops of constant extent to threadIdx")
        group = _Group(node, self.block)
        if node.strategy == "shared":
            return _shared_tree(node, group)
        return _warp_shuffles(node, group, self.kernel)


def _has_thread_reduce(stmt) -> bool:
    return bool(collect(stmt, lambda n: isinstance(n, ThreadReduce)))


def _guard_each(cond, stmt, kernel: str):
    """`if cond: stmt`, with the guard pushed down around each statement of `stmt` but its
    ThreadReduces, which every thread runs; a thread failing `cond` gives the identity."""
    if not _has_thread_reduce(stmt):
        return IfThenElse(cond, stmt)
    if isinstance(stmt, ThreadReduce):
        values = tuple(ops.if_then_else(cond, v, ident)
                       for v, ident in zip(stmt.values, stmt.combiner.identities))
        return dataclasses.replace(stmt, values=values)
    if isinstance(stmt, Seq):
        return seq(*(_guard_each(cond, s, kernel) for s in stmt.stmts))
    if isinstance(stmt, (Allocate, For)):
        return dataclasses.replace(stmt, body=_guard_each(cond, stmt.body, kernel))
    if isinstance(stmt, IfThenElse) and stmt.else_body is None:
        return _guard_each(ops.logical("and", cond, stmt.cond), stmt.then_body, kernel)
    if isinstance(stmt, LetStmt) and not collect(stmt.value, lambda n: isinstance(n, Load)):
        return dataclasses.replace(stmt, body=_guard_each(cond, stmt.body, kernel))
    raise LoweringError(f"kernel {kernel}: a reduction across threads under a branch, inside "
                        f"a {type(stmt).__name__} that the branch cannot be pushed into")


class _Group:
    """Where a thread sits in its reduction group and in the block."""

    def __init__(self, node: ThreadReduce, block: list):
        axis = _AXES.index(node.tag[-1])
        self.size = block[axis]                       # threads along the reduced axis
        self.stride = 1                               # distance in the block between neighbours
        for extent in block[:axis]:
            self.stride *= extent
        self.block_threads = block[0] * block[1] * block[2]
        self.lane = ThreadIndex(node.tag)             # position in the group
        linear, scale = Const(INDEX, 0), 1
        for a, extent in zip(_AXES, block):
            if extent > 1:
                linear = ops.binary("add", linear, ops.binary("mul", ThreadIndex(f"threadIdx.{a}"),
                                                              scale))
            scale *= extent
        self.linear = linear                          # the thread's number in the block
        self.groups = self.block_threads // self.size
        self.group = ops.binary("add", ops.binary("floormod", linear, self.stride),
                                ops.binary("mul", ops.binary("floordiv", linear,
                                                             self.stride * self.size),
                                           self.stride))


def _masked_values(node: ThreadReduce, group: _Group):
    """Each value, replaced by the identity in threads past the reduction's extent."""
    if node.extent >= group.size:
        return list(node.values)
    inside = ops.compare("lt", group.lane, node.extent)
    return [ops.if_then_else(inside, v, ident)
            for v, ident in zip(node.values, node.combiner.identities)]


def _combine(node: ThreadReduce, targets, current, incoming):
    """Store combiner(current, incoming) into `targets` (a (buffer, index) per value)."""
    combiner = node.combiner
    mapping = dict(zip(combiner.lhs, current))
    mapping.update(zip(combiner.rhs, incoming))
    results = [substitute(r, mapping) for r in combiner.results]
    if len(results) == 1:
        (buffer, index), = targets
        return Store(buffer, results[0], (index,))
    temps = [Var(f"{b.name}_new", b.dtype) for b, _ in targets]
    stmt = seq(*(Store(b, t, (i,)) for (b, i), t in zip(targets, temps)))
    for t, r in reversed(list(zip(temps, results))):
        stmt = LetStmt(t, r, stmt)
    return stmt


def _shared_tree(node: ThreadReduce, group: _Group):
    slots = [Buffer(f"{r.name}_shared", r.dtype, (Const(INDEX, group.block_threads),), "shared")
             for r in node.results]
    me = group.linear
    steps = [seq(*(Store(s, v, (me,)) for s, v in zip(slots, _masked_values(node, group)))),
             Barrier()]
    half = 1
    while half < group.size:
        half *= 2
    half //= 2
    while half >= 1:
        partner = ops.binary("add", me, half * group.stride)
        active = ops.compare("lt", group.lane, half)
        if half * 2 > group.size:  # the partner may lie past the group
            active = ops.logical("and", active, ops.compare("lt", ops.binary("add", group.lane,
                                                                              half), group.size))
        current = [Load(s, (me,)) for s in slots]
        incoming = [Load(s, (partner,)) for s in slots]
        steps.append(IfThenElse(active, _combine(node, [(s, me) for s in slots], current,
                                                 incoming)))
        steps.append(Barrier())
        half //= 2
    first = ops.binary("sub", me, ops.binary("mul", group.lane, group.stride))
    steps.append(seq(*(Store(r, Load(s, (first,)), (Const(INDEX, 0),))
                       for r, s in zip(node.results, slots))))
    stmt = seq(*steps)
    for s in reversed(slots):
        stmt = Allocate(s, stmt)
    return stmt


def _warp_shuffles(node: ThreadReduce, group: _Group, kernel: str):
    size = group.size
    if node.tag != "threadIdx.x" or not warp_sized(size):
        raise LoweringError(f"kernel {kernel}: reduce_strategy 'warp' needs the reduction bound "
                            "to threadIdx.x with a block extent along x that is a power of two "
                            f"up to 32 or a multiple of 32; it is {node.tag} with {size} threads "
                            "(use 'shared')")
    if group.block_threads > 32 and group.block_threads % 32:
        raise LoweringError(f"kernel {kernel}: reduce_strategy 'warp' needs whole warps, but "
                            f"the block has {group.block_threads} threads; make it a multiple of "
                            "32 or use 'shared'")
    mask = (1 << min(group.block_threads, 32)) - 1
    zero = Const(INDEX, 0)
    results = node.results

    def shuffle_round(distance: int):
        """Combine with the lane `distance` away, halving it down to 1. Every lane
        shuffles before any combines: the combiner may branch (a select), and a
        shuffle must run in all lanes of `mask` at once."""
        steps = []
        while distance >= 1:
            current = [Load(r, (zero,)) for r in results]
            incoming = [Var(f"{r.name}_from_lane", r.dtype) for r in results]
            step = _combine(node, [(r, zero) for r in results], current, incoming)
            for var, value in reversed(list(zip(incoming, current))):
                step = LetStmt(var, WarpShuffle("xor", value, distance, 32, mask), step)
            steps.append(step)
            distance //= 2
        return steps

    start = seq(*(Store(r, v, (zero,)) for r, v in zip(results, _masked_values(node, group))))
    if size <= 32:
        return seq(start, *shuffle_round(size // 2))
    warps = size // 32
    lane = ops.binary("floormod", group.lane, 32)
    warp = ops.binary("floordiv", group.lane, 32)
    totals = [Buffer(f"{r.name}_warps", r.dtype, (Const(INDEX, group.groups * warps),), "shared")
              for r in results]
    slot = ops.binary("add", ops.binary("mul", group.group, warps), warp)
    write = IfThenElse(ops.compare("eq", lane, 0),
                       seq(*(Store(t, Load(r, (zero,)), (slot,)) for t, r in zip(totals, results))))
    own = ops.binary("add", ops.binary("mul", group.group, warps), lane)
    reload = seq(*(Store(r, ops.if_then_else(ops.compare("lt", lane, warps), Load(t, (own,)),
                                             ident), (zero,))
                   for r, t, ident in zip(results, totals, node.combiner.identities)))
    second = 1
    while second < warps:
        second *= 2
    stmt = seq(start, *shuffle_round(16), write, Barrier(), reload, *shuffle_round(second // 2))
    for t in reversed(totals):
        stmt = Allocate(t, stmt)
    return stmt
