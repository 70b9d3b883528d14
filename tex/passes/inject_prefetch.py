"""Expand prefetch marks into prefetches.

Assumes: a `PrefetchAhead` mark (left by lowering for `Stage.prefetch`) is
the body of a `For`, or of another mark that is; the loop's body reads the
mark's buffer at least once other than by a gather (lowering checked it).

Guarantees: no mark remains. At the top of each marked loop's body come, per
mark in order, prefetches of the box of the buffer that the rest of the
body reads while the loops inside it run (gathers left out: their
addresses are not known ahead), shifted `distance` iterations ahead:
one `Prefetch` per cache line of the last dimension, every index clamped
into the buffer. A side of the box is its constant upper bound where there
is one; a dimension whose indices have no bound is taken whole.
"""
from __future__ import annotations

import dataclasses
import functools

from tex import ops
from tex.arith import Interval, bound, const_bound, simplify
from tex.dtype import INDEX
from tex.expr import Const, Var, structurally_equal
from tex.ir import For, Load, Prefetch, PrefetchAhead, Ramp, Stmt, seq
from tex.lower.loop_marks import is_gather
from tex.visitor import collect, substitute, transform

_ZERO = Const(INDEX, 0)

#: Bytes of a cache line: one prefetch per line.
_CACHE_LINE = 64


def inject_prefetch(stmt: Stmt) -> Stmt:
    """`stmt` with every prefetch mark replaced by the prefetches it asks for."""
    def expand(node):
        if isinstance(node, For) and isinstance(node.body, PrefetchAhead):
            return _prefetching_loop(node)
        return None
    return transform(stmt, expand)


def _prefetching_loop(loop: For) -> For:
    marks, body = [], loop.body
    while isinstance(body, PrefetchAhead):
        marks.append(body)
        body = body.body
    inside = {inner.var: Interval.from_extent(inner.min, inner.extent)
              for inner in collect(body, lambda n: isinstance(n, For))}
    boxes = []
    for mark in marks:
        loads = [load for load in collect(body, lambda n: isinstance(n, Load))
                 if load.buffer is mark.buffer and not is_gather(load)]
        ahead = {loop.var: ops.binary("add", loop.var, mark.distance)}
        boxes.append(_prefetch_box(mark.buffer, loads, inside, ahead))
    return dataclasses.replace(loop, body=seq(*boxes, body))


def _tightest(bounds: list, combine):
    """`combine` (min or max) of `bounds`, leaving out each bound another one covers
    (the order of the loads does not change the box's form)."""
    kept = []
    for b in bounds:
        for k, t in enumerate(kept):
            both = simplify(combine(t, b))
            if structurally_equal(both, t):
                break
            if structurally_equal(both, b):
                kept[k] = b
                break
        else:
            kept.append(b)
    return functools.reduce(combine, kept)


def _span(index, inside) -> Interval:
    """The values `index` takes while the `inside` loops run: of a vector index (the lanes
    of a vector dtype's element), those of all its lanes."""
    if not isinstance(index, Ramp):
        return bound(index, inside)
    if not (isinstance(index.stride, Const) and index.stride.value >= 0):
        return Interval.everything()
    last = ops.binary("add", index.base, ops.binary("mul", index.stride, index.lanes - 1))
    return Interval(bound(index.base, inside).lo, bound(last, inside).hi)


def _prefetch_box(buffer, loads, inside, ahead):
    """Prefetches of the box of `buffer` that `loads` cover while the `inside` loops run,
    shifted by `ahead`."""
    starts, extents = [], []
    for d, size in enumerate(buffer.shape):
        spans = [_span(load.indices[d], inside) for load in loads]
        if any(s.lo is None or s.hi is None for s in spans):
            lo, hi = _ZERO, ops.binary("sub", size, 1)
        else:
            lo = _tightest([s.lo for s in spans], ops.minimum)
            hi = _tightest([s.hi for s in spans], ops.maximum)
        extent = simplify(ops.binary("add", ops.binary("sub", hi, lo), 1))
        _, most = const_bound(extent)
        starts.append(substitute(lo, ahead))
        extents.append(Const(INDEX, most) if most is not None else substitute(extent, ahead))
    line = max(1, _CACHE_LINE // buffer.dtype.itemsize)
    # lines from the start's, past the last element
    extents[-1] = simplify(ops.binary("add", ops.binary("floordiv", extents[-1], line), 1))
    loops = {d: Var(f"{buffer.name}_prefetch{d}", INDEX) for d, extent in enumerate(extents)
             if not (isinstance(extent, Const) and extent.value <= 1)}
    indices = []
    for d, (start, size) in enumerate(zip(starts, buffer.shape)):
        step = loops.get(d, _ZERO)
        if d == len(extents) - 1:
            step = ops.binary("mul", step, line)
        index = ops.minimum(ops.binary("add", ops.maximum(start, 0), step),
                            ops.binary("sub", size, 1))
        indices.append(simplify(index))
    stmt = Prefetch(buffer, tuple(indices))
    for d in sorted(loops, reverse=True):
        stmt = For(loops[d], _ZERO, extents[d], "serial", stmt)
    return stmt
