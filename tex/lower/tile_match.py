"""Matching a tensorized tile with its intrinsic, and the views of its tensors.

`pair_axes` pairs the tile's loops with the intrinsic's axes, `BodyMatch`
walks the stage's body and the intrinsic's together, and `TileViews` gives
the `TileView` of each of the intrinsic's tensors from the stage's accesses
(the rules are in `tex.schedule.tensorize`). Each difference raises a
`LoweringError` that says where.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.arith import Interval, simplify
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Expr, Let, Node, Reduce, TensorRead, Var, field_names, \
    structurally_equal
from tex.ir import strides_of
from tex.lower.bound import StagePlan
from tex.schedule.tensorize import TensorIntrin, TileView
from tex.tensor import Tensor
from tex.visitor import substitute, uses_var

_ZERO = Const(INDEX, 0)
_ONE = Const(INDEX, 1)


@dataclass(frozen=True, eq=False)
class Tile:
    """The loops of `plan`'s stage that intrinsic `intrin` replaces: its leaves from
    `position` inward. `where` names the tensorize in messages."""

    plan: StagePlan
    intrin: TensorIntrin
    position: int
    where: str

    @property
    def leaves(self) -> list:
        return self.plan.stage.leaf_iter_vars[self.position:]


def pair_axes(tile: Tile) -> tuple[dict, dict]:
    """(intrinsic axis variable -> tile loop variable, or None for a leading axis of
    extent 1 that the tile has no loop for; intrinsic size variable -> its value): the
    axes paired with the tile's loops by kind, count and extent, where an extent the
    intrinsic declares as a variable takes the loop's."""
    plan, intrin, where = tile.plan, tile.intrin, tile.where
    pairs, sizes = {}, {}
    for kind, axes in (("data", intrin.op.axis), ("reduce", intrin.op.reduce_axis)):
        loops = [leaf for leaf in tile.leaves if leaf.kind == kind]
        missing = len(axes) - len(loops)
        if missing < 0 or not all(_bind(iv.dom.extent, _ONE, sizes) for iv in axes[:missing]):
            raise LoweringError(
                f"{where}: the tile has {len(loops)} {kind} loop(s) "
                f"({', '.join(v.name for v in loops) or 'none'}) where intrinsic "
                f"{intrin.name} has {len(axes)} ({intrin.describe()})")
        pairs.update({iv.var: None for iv in axes[:missing]})
        for leaf, iv in zip(loops, axes[missing:]):
            extent = plan.ranges[leaf].extent
            if not _bind(iv.dom.extent, extent, sizes):
                raise LoweringError(f"{where}: loop {leaf.name} has extent {extent} where "
                                    f"intrinsic {intrin.name}'s axis {iv.name} has "
                                    f"{substitute(iv.dom.extent, sizes)} (intrinsic loops: "
                                    f"{intrin.describe()})")
            pairs[iv.var] = leaf.var
    return pairs, sizes


def _bind(declared: Expr, actual: Expr, sizes: dict) -> bool:
    """Whether the intrinsic's extent `declared` is `actual`: a variable not yet bound in
    `sizes` is bound to it."""
    declared = substitute(declared, sizes)
    if isinstance(declared, Var) and declared not in sizes:
        sizes[declared] = ops.cast(declared.dtype, actual)
        return True
    difference = simplify(ops.binary("sub", ops.cast(INDEX, declared), actual))
    return isinstance(difference, Const) and difference.value == 0


class BodyMatch:
    """Walks the stage's body and the intrinsic's together; records the paired tensor reads."""

    def __init__(self, tile: Tile):
        self.intrin, self.where = tile.intrin, tile.where
        self.reads: list = []      # (stage TensorRead, intrinsic TensorRead)
        self.tensors: dict = {}    # intrinsic tensor -> stage tensor
        self.lets: dict = {}       # intrinsic Let variable -> stage Let variable
        self.scalars: dict = {}    # intrinsic scalar parameter -> stage expression

    def differ(self, what: str, s, p):
        raise LoweringError(f"{self.where}: the body differs from intrinsic "
                            f"{self.intrin.name}'s: {what} (stage: `{s}`, intrinsic: `{p}`)")

    def expr(self, s, p):
        if any(p is v for v in self.intrin.scalar_params):
            known = self.scalars.setdefault(p, s)
            if s.dtype != p.dtype or not structurally_equal(known, s):
                self.differ(f"scalar parameter {p.name} ({p.dtype}) stands for `{known}` "
                            f"and `{s}` ({s.dtype})", s, p)
            return
        if type(s) is not type(p):
            self.differ(f"{_kind(s)} vs {_kind(p)}", s, p)
        if s.dtype != p.dtype:
            self.differ(f"dtype {s.dtype} vs {p.dtype}", s, p)
        if isinstance(p, TensorRead):
            known = self.tensors.setdefault(p.tensor, s.tensor)
            if known is not s.tensor:
                self.differ(f"the intrinsic reads {p.tensor.name} where the stage reads both "
                            f"{known.name} and {s.tensor.name}", s, p)
            self.reads.append((s, p))
        elif isinstance(p, Var):
            if self.lets.get(p) is not s:
                raise LoweringError(f"{self.where}: variable {s.name} is used as a value; "
                                    "tensorize matches index variables only inside tensor "
                                    "indices")
        elif isinstance(p, Reduce):
            self.reduce(s, p)
        else:
            if isinstance(p, Let):
                self.lets[p.var] = s.var
            for name in field_names(type(p)):
                a, b = getattr(s, name), getattr(p, name)
                if isinstance(b, Node) and not (isinstance(b, Var) and name == "var"):
                    self.expr(a, b)
                elif isinstance(b, tuple):
                    if len(a) != len(b):
                        self.differ(f"{len(a)} vs {len(b)} {name}", s, p)
                    for x, y in zip(a, b):
                        self.expr(x, y)
                elif name != "var" and a != b:
                    self.differ(_field_difference(name, a, b), s, p)

    def reduce(self, s: Reduce, p: Reduce):
        a, b = s.combiner, p.combiner
        same = a is b or (a.name == b.name and a.result_dtypes == b.result_dtypes and all(
            structurally_equal(x, substitute(y, dict(zip(b.lhs + b.rhs, a.lhs + a.rhs))))
            for x, y in zip(a.results, b.results)))
        if not same:
            self.differ(f"reducer {a.name} vs {b.name}", s, p)
        if s.value_index != p.value_index or len(s.sources) != len(p.sources):
            self.differ("a different tuple reduction", s, p)
        for x, y in zip(s.sources, p.sources):
            self.expr(x, y)
        self.expr(s.condition, p.condition)


def _kind(e) -> str:
    """A short word for what an expression does, for messages."""
    op = getattr(e, "op", None)
    if isinstance(op, str):
        return op
    return {"TensorRead": "a tensor read", "Const": "a constant", "Var": "a variable",
            "Call": f"call {getattr(e, 'name', '')}"}.get(type(e).__name__,
                                                           type(e).__name__.lower())


def _field_difference(name: str, a, b) -> str:
    if name == "op":
        return f"operation {a} vs {b}"
    if name == "value":
        return f"constant {a} vs {b}"
    if name == "name":
        return f"function {a} vs {b}"
    return f"{name} {a!r} vs {b!r}"


class TileViews:
    """The TileView of each tensor of the intrinsic, from the stage's accesses."""

    def __init__(self, tile: Tile, buffers: dict, tile_var: dict):
        plan = tile.plan
        self.plan, self.buffers, self.where = plan, buffers, tile.where
        self.binds = tile.intrin.binds
        self.tile_var = tile_var                      # intrinsic axis var -> tile loop var
        self.tile_vars = [leaf.var for leaf in tile.leaves]
        self.ranges = {leaf.var: Interval.from_extent(_ZERO, plan.ranges[leaf].extent)
                       for leaf in plan.stage.leaf_iter_vars}
        self.root_values = plan.root_values

    def input(self, p_tensor: Tensor, match: BodyMatch) -> TileView:
        views = []
        for s_read, p_read in match.reads:
            if p_read.tensor is p_tensor:
                index = [substitute(i, self.root_values) for i in s_read.indices]
                views.append(self.view(s_read.tensor, index, p_tensor, p_read.indices,
                                       what=str(s_read)))
        first = views[0]
        for other in views[1:]:
            if other.steps != first.steps or not all(
                    structurally_equal(a, b) for a, b in zip(other.origin, first.origin)):
                raise LoweringError(f"{self.where}: intrinsic tensor {p_tensor.name} is read at "
                                    "two places that are different tiles of "
                                    f"{match.tensors[p_tensor].name}")
        return first

    def output(self, intrin) -> TileView:
        op = self.plan.op
        index = [self.plan.values[iv] for iv in op.axis]
        return self.view(op.output(0), index, intrin.output, [iv.var for iv in intrin.op.axis],
                         what=f"the output {op.output(0).name}")

    def view(self, tensor, index, p_tensor, p_indices, *, what: str) -> TileView:
        """The view of `tensor` accessed at `index` (over loop variables) where the intrinsic
        accesses its tensor `p_tensor` at `p_indices` (over its axis variables)."""
        entry = self.buffers.get(tensor)
        if entry is None:
            raise LoweringError(f"{self.where}: tensor {tensor.name} is read but is neither "
                                "computed by the schedule nor given in args")
        buffer = entry.buffer
        index = list(entry.index(index))
        plain = all(isinstance(i, Var) and i in self.tile_var for i in p_indices) and \
            len(set(p_indices)) == len(p_indices)
        origin, steps = self.plain(index, p_indices, what) if plain else \
            self.shifted(index, p_indices, what)
        strides = strides_of(buffer)
        offset = _dot(origin, strides)
        view_strides = tuple(simplify(_dot([Const(INDEX, c) for c in step], strides))
                             for step in steps)
        decl = self.binds.get(p_tensor)
        return TileView(buffer, simplify(offset, self.ranges), view_strides, tuple(origin),
                        steps, p_tensor.shape, p_tensor.name if decl is None else decl.name)

    def plain(self, index: list, p_indices, what: str):
        """(origin, steps) of an access the intrinsic makes with one axis per index: each
        index of the stage's access affine in the tile's loops, varying only along the
        loops of the axes the intrinsic's access uses."""
        origin, coefs = [], []        # coefs[d][tile var] = coefficient
        for e in index:
            base, coef = self.affine(e, what)
            origin.append(base)
            coefs.append(coef)
        used = [self.tile_var[v] for v in p_indices]   # None: an axis without a loop
        for d, coef in enumerate(coefs):
            for v, c in coef.items():
                if c and not any(v is u for u in used):
                    raise LoweringError(
                        f"{self.where}: {what} varies along loop {v.name} (index {d} is "
                        f"`{index[d]}`), which the intrinsic's access does not index; order the "
                        "tile's loops as the intrinsic's axes")
        steps = tuple(tuple(0 if v is None else coef[v] for coef in coefs) for v in used)
        return origin, steps

    def shifted(self, index: list, p_indices, what: str):
        """(origin, steps) of an access the intrinsic makes with other index expressions
        (`x[j // 3 + i % 3, ...]`): the stage's last indices must be the same expressions
        of the tile's loops, each shifted by an amount the tile's loops do not change (the
        origin), and its first indices, if it has more, must not change in the tile."""
        lead = len(index) - len(p_indices)
        if lead < 0:
            raise LoweringError(f"{self.where}: {what} has {len(index)} index(es) where the "
                                f"intrinsic's access `{', '.join(map(str, p_indices))}` has "
                                f"{len(p_indices)}")
        loop_of = {p: _ZERO if v is None else v for p, v in self.tile_var.items()}
        expected = [_ZERO] * lead + [substitute(p, loop_of) for p in p_indices]
        origin = []
        for d, (e, p_index) in enumerate(zip(index, expected)):
            shift = simplify(ops.binary("sub", e, p_index), self.ranges)
            if any(uses_var(shift, v) for v in self.tile_vars):
                raise LoweringError(f"{self.where}: index {d} of {what} (`{e}`) is not the "
                                    f"intrinsic's `{p_index}` of the tile's loops plus an "
                                    "amount the tile does not change")
            origin.append(shift)
        steps = tuple(tuple(int(d == lead + e) for d in range(len(index)))
                      for e in range(len(p_indices)))
        return origin, steps

    def affine(self, e, what: str):
        """(base, {tile var: coefficient}) with `e == base + sum(coef * var)`, or an error."""
        zero = {v: _ZERO for v in self.tile_vars}
        base = simplify(substitute(e, zero), self.ranges)
        coef, total = {}, base
        for v in self.tile_vars:
            at_one = simplify(ops.binary("sub", substitute(e, {**zero, v: Const(INDEX, 1)}), base),
                              self.ranges)
            if not isinstance(at_one, Const):
                raise LoweringError(f"{self.where}: index `{e}` of {what} is not affine in the "
                                    f"tile's loops (coefficient of {v.name}: {at_one})")
            coef[v] = at_one.value
            total = ops.binary("add", total, ops.binary("mul", v, at_one.value))
        rest = simplify(ops.binary("sub", e, total), self.ranges)
        if not (isinstance(rest, Const) and rest.value == 0):
            raise LoweringError(f"{self.where}: index `{e}` of {what} is not affine in the "
                                "tile's loops")
        return base, coef


def _dot(values, strides) -> Expr:
    total = _ZERO
    for v, s in zip(values, strides):
        total = ops.binary("add", total, ops.binary("mul", v, s))
    return total
