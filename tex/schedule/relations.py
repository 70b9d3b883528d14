"""The records of how a stage's axes relate (`Split`, `Fuse`, `Singleton`), where its
loop nest goes (`Attach`), and the arithmetic of split and fuse records.

Given the range of each root axis of a stage, `pass_down` gives the range of
every derived axis; `pass_up` gives the value of every axis in terms of the
leaf loop variables, `pass_down_values` the reverse (every axis in terms of
the roots' values); `split_guards` lists the conditions that keep a split
that does not divide inside its parent's range, unless lowering shifts its
last part back inside instead (`disable_predication`). Every leaf loop runs
from 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tex import ops
from tex.arith import prove, simplify
from tex.dtype import INDEX
from tex.expr import Const, Expr
from tex.tensor import IterVar, Range

if TYPE_CHECKING:  # only for the annotation: stage imports this module
    from tex.schedule.stage import Stage


@dataclass(frozen=True, slots=True)
class Split:
    """`parent` becomes `outer * inner_extent + inner`; exactly one of factor/nparts is set,
    a positive int or an index expression of variables the call binds (`symbolic`).
    `disable_predication` asks for no guard on the last part: lowering may then shift that
    part back inside the parent (`pass_up`'s `shifted`) instead of guarding it."""

    parent: IterVar
    outer: IterVar
    inner: IterVar
    factor: int | Expr | None
    nparts: int | Expr | None
    disable_predication: bool = False

    @property
    def symbolic(self) -> Expr | None:
        """The factor or nparts when it is an expression, else None."""
        size = self.factor if self.factor is not None else self.nparts
        return size if isinstance(size, Expr) else None

    @property
    def symbolic_axis(self) -> IterVar | None:
        """The part whose extent is the symbolic factor or nparts (inner or outer), if any."""
        if self.symbolic is None:
            return None
        return self.inner if self.factor is not None else self.outer

    @property
    def axes(self) -> tuple[IterVar, ...]:
        return (self.parent, self.outer, self.inner)

    @property
    def kind(self) -> str:
        """"data" or "reduce": the kind of the axes it relates."""
        return self.parent.kind

    def describe(self) -> str:
        arg = f"factor={self.factor}" if self.factor is not None else f"nparts={self.nparts}"
        if self.disable_predication:
            arg += ", disable_predication=True"
        return f"split({self.parent.name}, {arg}) -> {self.outer.name}, {self.inner.name}"


@dataclass(frozen=True, slots=True)
class Fuse:
    """`outer` and `inner` (adjacent, outer first) become one axis `fused`."""

    outer: IterVar
    inner: IterVar
    fused: IterVar

    @property
    def axes(self) -> tuple[IterVar, ...]:
        return (self.outer, self.inner, self.fused)

    @property
    def kind(self) -> str:
        """The fused axis's kind: "reduce" when a reduction axis is among the two."""
        return self.fused.kind

    @property
    def mixed(self) -> bool:
        """Whether a data axis is fused with a reduction axis."""
        return self.outer.kind != self.inner.kind

    def describe(self) -> str:
        return f"fuse({self.outer.name}, {self.inner.name}) -> {self.fused.name}"


@dataclass(frozen=True, slots=True)
class Singleton:
    """A new outermost data axis `axis` of one iteration (what `fuse()` of no axes makes)."""

    axis: IterVar

    @property
    def axes(self) -> tuple[IterVar, ...]:
        return (self.axis,)

    @property
    def kind(self) -> str:
        return "data"

    def describe(self) -> str:
        return f"fuse() -> {self.axis.name}"


@dataclass(frozen=True, slots=True)
class Attach:
    """Where a stage's loop nest goes: "root", "inline", or "at" `stage`'s loop `axis`."""

    kind: str
    stage: "Stage | None" = None
    axis: IterVar | None = None


ROOT = Attach("root")
INLINE = Attach("inline")

_ZERO = Const(INDEX, 0)


def ceil_div(a: Expr, b: Expr) -> Expr:
    return simplify(ops.binary("floordiv", ops.binary("add", a, ops.binary("sub", b, 1)), b))


def split_extents(r: Split, parent: Range) -> tuple[Expr, Expr]:
    """(outer extent, inner extent) of a split of an axis with range `parent`."""
    if r.factor is not None:
        factor = _index(r.factor)
        return ceil_div(parent.extent, factor), factor
    nparts = _index(r.nparts)
    return nparts, ceil_div(parent.extent, nparts)


def _index(size: int | Expr) -> Expr:
    return size if isinstance(size, Expr) else Const(INDEX, size)


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


def pass_up(relations, leaves, ranges: dict, leaf_values: dict | None = None,
            shifted=frozenset()) -> dict:
    """The value of every axis in terms of the leaves' variables (or `leaf_values`).

    Every leaf loop runs from 0, so a leaf's value is its range's start plus its variable.
    The parts of a split in `shifted` start at `min(outer * inner, extent - inner)`: the
    last part, shifted back inside the parent, overlaps the one before instead of
    running past the end (Halide's ShiftInwards); the caller checks that the parent
    holds a whole part.
    """
    leaf_values = leaf_values or {}
    values = {leaf: ops.binary("add", ranges[leaf].min, leaf_values.get(leaf, leaf.var))
              for leaf in leaves}
    for r in reversed(relations):
        if isinstance(r, Split):
            _, inner = split_extents(r, ranges[r.parent])
            start = ops.binary("mul", values[r.outer], inner)
            if r in shifted:
                last = ops.binary("sub", ranges[r.parent].extent, inner)
                start = ops.minimum(start, last)
            offset = ops.binary("add", start, values[r.inner])
            values[r.parent] = ops.binary("add", ranges[r.parent].min, offset)
        elif isinstance(r, Fuse):
            inner = ranges[r.inner].extent
            values[r.outer] = ops.binary("add", ranges[r.outer].min,
                                         ops.binary("floordiv", values[r.fused], inner))
            values[r.inner] = ops.binary("add", ranges[r.inner].min,
                                         ops.binary("floormod", values[r.fused], inner))
    return values


def pass_down_values(relations, ranges: dict, root_values: dict) -> dict:
    """The value of every axis (its loop variable's, from 0) given the roots' values:
    a split's outer part is the parent's offset // inner extent, its inner part the
    remainder; a fused axis is outer * inner extent + inner."""
    values = {iv: ops.binary("sub", v, ranges[iv].min) for iv, v in root_values.items()}
    for r in relations:
        if isinstance(r, Split):
            _, inner = split_extents(r, ranges[r.parent])
            values[r.outer] = ops.binary("floordiv", values[r.parent], inner)
            values[r.inner] = ops.binary("floormod", values[r.parent], inner)
        elif isinstance(r, Fuse):
            outer = ops.binary("mul", values[r.outer], ranges[r.inner].extent)
            values[r.fused] = ops.binary("add", outer, values[r.inner])
        else:
            values[r.axis] = _ZERO
    return values


def split_guards(relations, ranges: dict, values: dict,
                 shifted=frozenset()) -> list[tuple[object, Expr]]:
    """(parent axis, condition) for each split whose parts may overrun the parent (the
    splits in `shifted`, whose last part `pass_up` shifts inside it, aside)."""
    guards = []
    for r in relations:
        if not isinstance(r, Split) or r in shifted:
            continue
        parent = ranges[r.parent]
        outer, inner = split_extents(r, parent)
        covered = ops.binary("mul", outer, inner)
        if prove(ops.compare("eq", covered, parent.extent)):
            continue
        end = ops.binary("add", parent.min, parent.extent)
        guards.append((r.parent, ops.compare("lt", values[r.parent], end)))
    return guards
