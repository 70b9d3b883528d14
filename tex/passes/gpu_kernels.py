"""Host/device split: each root loop nest of a GPU program becomes a `KernelLaunch`.

Assumes: storage is flat; the program is `Allocate`s of global buffers around
the root nests of its stages, as lowering builds it.
Guarantees: the body is those `Allocate`s around a sequence of
`KernelLaunch`es, one per root nest, in order. Each launch's grid and block
are, per thread axis, the largest extent of the loops bound to it (1 where
none is), expressions over the size variables only; its `params` are the
kernel parameters and global temporaries the nest uses, and its
`size_vars` the sizes it reads. Constant launch dimensions are checked
against the target's limits. Raises `LoweringError` for a root nest with no
loop bound to a thread axis, a "parallel" loop, a bound loop whose extent
depends on another loop, or a launch over the limits.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, structurally_equal
from tex.ir import Allocate, AtomicUpdate, For, KernelLaunch, Load, LoweredFunc, Seq, Store
from tex.printer import to_text
from tex.visitor import collect, free_vars

_AXES = ("x", "y", "z")


def split_host_device(func: LoweredFunc, target) -> LoweredFunc:
    """`func` with each root nest wrapped in a `KernelLaunch` (see the module docstring)."""
    allocations, body = [], func.body
    while isinstance(body, Allocate) and body.buffer.scope == "global":
        allocations.append(body.buffer)
        body = body.body
    nests = body.stmts if isinstance(body, Seq) else (body,)
    launches = [_launch(f"{func.name}_kernel{k}", nest, func, allocations, target)
                for k, nest in enumerate(nests)]
    stmt = Seq(tuple(launches)) if len(launches) > 1 else launches[0]
    for buffer in reversed(allocations):
        stmt = Allocate(buffer, stmt)
    return dataclasses.replace(func, body=stmt)


def _launch(name: str, nest, func: LoweredFunc, temporaries: list, target) -> KernelLaunch:
    computed = _computed(nest)
    extents = _bound_extents(nest, computed)
    if not extents:
        raise LoweringError(f"the loop nest computing {computed} has no loop bound to a GPU "
                            "thread axis, so it would run in a single thread; bind its outer "
                            "loops, e.g. s[T].bind(axis, tex.thread_axis('blockIdx.x'))")
    grid = tuple(_dimension(extents, f"blockIdx.{a}") for a in _AXES)
    block = tuple(_dimension(extents, f"threadIdx.{a}") for a in _AXES)
    _check_limits(name, grid, block, target)
    used = {n.buffer for n in collect(nest, lambda n: isinstance(n, (Load, Store, AtomicUpdate)))}
    params = tuple(b for b in (*func.params, *temporaries) if b in used)
    free = free_vars(nest)
    size_vars = tuple(v for v in func.size_vars if v in free)
    return KernelLaunch(name, grid, block, params, size_vars, nest)


def _computed(nest) -> str:
    """The names of the buffers `nest` writes, for messages."""
    names = []
    for s in collect(nest, lambda n: isinstance(n, (Store, AtomicUpdate))):
        if s.buffer.scope == "global" and s.buffer.name not in names:
            names.append(s.buffer.name)
    return ", ".join(names) or "nothing"


def _bound_extents(nest, computed: str) -> dict:
    """Thread tag -> extents of the loops bound to it, checked to be launch-invariant."""
    extents: dict = {}
    loops = collect(nest, lambda n: isinstance(n, For))
    loop_vars = {loop.var for loop in loops}
    for loop in loops:
        if loop.kind == "parallel":
            raise LoweringError(f"loop {loop.var.name} (computing {computed}) is marked parallel, "
                                "a CPU annotation; on a GPU bind it to a thread axis instead")
        if loop.kind != "bound" or loop.thread_tag == "vthread":
            continue
        if free_vars(loop.extent) & loop_vars:
            raise LoweringError(f"loop {loop.var.name} (computing {computed}) is bound to "
                                f"{loop.thread_tag} but its extent {to_text(loop.extent)} "
                                "changes from one iteration of an enclosing loop to the next; "
                                "split it by a constant factor and bind the constant part")
        extents.setdefault(loop.thread_tag, []).append(loop.extent)
    return extents


def _dimension(extents: dict, tag: str):
    """The launch extent of `tag`: the largest of its loops' extents, or 1."""
    found = extents.get(tag)
    if not found:
        return Const(INDEX, 1)
    constants = [e.value for e in found if isinstance(e, Const)]
    symbolic = []
    for e in found:
        if not isinstance(e, Const) and not any(structurally_equal(e, s) for s in symbolic):
            symbolic.append(e)
    result = Const(INDEX, max(constants)) if constants else None
    for e in symbolic:
        result = e if result is None else ops.maximum(result, e)
    return simplify(result)


def _check_limits(name: str, grid, block, target):
    threads = 1
    for axis, extent, limit in zip(_AXES, block, target.max_block):
        if isinstance(extent, Const):
            threads *= extent.value
            if extent.value > limit:
                raise LoweringError(f"kernel {name}: threadIdx.{axis} has {extent.value} "
                                    f"threads, more than the {limit} {target} allows")
    if threads > target.max_threads_per_block:
        raise LoweringError(f"kernel {name}: a block of {' x '.join(to_text(b) for b in block)} "
                            f"= {threads} threads is more than the "
                            f"{target.max_threads_per_block} {target} allows; bind smaller "
                            "loops to threadIdx")
    for axis, extent, limit in zip(_AXES, grid, target.max_grid):
        if isinstance(extent, Const) and extent.value > limit:
            raise LoweringError(f"kernel {name}: blockIdx.{axis} has {extent.value} blocks, "
                                f"more than the {limit} {target} allows")


