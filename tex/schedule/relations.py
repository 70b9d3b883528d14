"""The arithmetic of split and fuse records.

Given the range of each root axis of a stage, `pass_down` gives the range of
every derived axis; `pass_up` gives the value of every axis in terms of the
leaf loop variables; `split_guards` lists the conditions that keep a split
that does not divide inside its parent's range. Every leaf loop runs from 0.
"""
from __future__ import annotations

from tex import ops
from tex.arith import prove, simplify
from tex.dtype import INDEX
from tex.expr import Const, Expr
from tex.schedule.stage import Fuse, Split
from tex.tensor import Range

_ZERO = Const(INDEX, 0)


def ceil_div(a: Expr, b: Expr) -> Expr:
    return simplify(ops.binary("floordiv", ops.binary("add", a, ops.binary("sub", b, 1)), b))


def split_extents(r: Split, parent: Range) -> tuple[Expr, Expr]:
    """(outer extent, inner extent) of a split of an axis with range `parent`."""
    if r.factor is not None:
        return ceil_div(parent.extent, Const(INDEX, r.factor)), Const(INDEX, r.factor)
    return Const(INDEX, r.nparts), ceil_div(parent.extent, Const(INDEX, r.nparts))


def pass_down(relations, root_ranges: dict) -> dict:
    """Ranges of all axes (roots and derived), from the ranges of the roots."""
    ranges = dict(root_ranges)
    for r in relations:
        if isinstance(r, Split):
            outer, inner = split_extents(r, ranges[r.parent])
            ranges[r.outer] = Range(_ZERO, outer)
            ranges[r.inner] = Range(_ZERO, inner)
        elif isinstance(r, Fuse):
            extent = ops.binary("mul", ranges[r.outer].extent, ranges[r.inner].extent)
            ranges[r.fused] = Range(_ZERO, simplify(extent))
        else:  # a singleton: one iteration
            ranges[r.axis] = Range(_ZERO, Const(INDEX, 1))
    return ranges


def pass_up(relations, leaves, ranges: dict, leaf_values: dict | None = None) -> dict:
    """The value of every axis in terms of the leaves' variables (or `leaf_values`).

    Every leaf loop runs from 0, so a leaf's value is its range's start plus its variable.
    """
    leaf_values = leaf_values or {}
    values = {leaf: ops.binary("add", ranges[leaf].min, leaf_values.get(leaf, leaf.var))
              for leaf in leaves}
    for r in reversed(relations):
        if isinstance(r, Split):
            _, inner = split_extents(r, ranges[r.parent])
            offset = ops.binary("add", ops.binary("mul", values[r.outer], inner), values[r.inner])
            values[r.parent] = ops.binary("add", ranges[r.parent].min, offset)
        elif isinstance(r, Fuse):
            inner = ranges[r.inner].extent
            values[r.outer] = ops.binary("add", ranges[r.outer].min,
                                         ops.binary("floordiv", values[r.fused], inner))
            values[r.inner] = ops.binary("add", ranges[r.inner].min,
                                         ops.binary("floormod", values[r.fused], inner))
    return values


def split_guards(relations, ranges: dict, values: dict) -> list[tuple[object, Expr]]:
    """(parent axis, condition) for each split whose parts may overrun the parent."""
    guards = []
    for r in relations:
        if not isinstance(r, Split):
            continue
        parent = ranges[r.parent]
        outer, inner = split_extents(r, parent)
        covered = ops.binary("mul", outer, inner)
        if prove(ops.compare("eq", covered, parent.extent)):
            continue
        end = ops.binary("add", parent.min, parent.extent)
        guards.append((r.parent, ops.compare("lt", values[r.parent], end)))
    return guards
