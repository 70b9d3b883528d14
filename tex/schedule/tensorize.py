"""Tensorize: a stage's innermost loops replaced by a declared intrinsic.

`decl_tensor_intrin(C, lower_fn, name)` declares that the small computation
`C` (a `tex.compute` over placeholders, every axis of constant extent) is done
by an intrinsic; `s[T].tensorize(axis, intrin)` asks for the loops of stage
T from `axis` inward (the *tile*) to be replaced by it. Lowering calls
`lower_tile`, which checks that tile and intrinsic match and then calls
`lower_fn(inputs, outputs)` with a `TileView` of each of the intrinsic's
tensors.

What must match (each failure raises `LoweringError` naming the stage, the
axis and what differs):

1. **Loops.** The tile's data loops, in loop order, pair with the
   intrinsic's data axes (`C.op.axis`) in order; its reduction loops, in
   order, with the intrinsic's reduction axes. Data and reduction loops may
   interleave; the extents must be equal. No loop of the tile is bound,
   annotated or hosts a stage computed at it, and no guard depends on a loop
   of the tile: the tile never strays outside the domain (splits divide).
2. **Body.** The stage's body is the intrinsic's with tensors and index
   variables renamed: the same operations, constants, casts, reducer and
   dtypes, with tensors read in the same places. Index variables may appear
   only in tensor indices.
3. **Accesses.** The intrinsic's tensors are indexed plainly: each index is
   one of its axes, no axis twice in one access (`P[i, k]`). Each index of
   the matching access of the stage (and of its output), as a function of
   the tile's loop variables, is affine with constant coefficients, and
   varies only along tile loops whose intrinsic axes the intrinsic's access
   uses. The coefficients and the buffer's strides give the view's strides.
4. **Threads.** An intrinsic whose statements bind a thread axis themselves
   (a warp's lanes: `threadIdx.x(32)`) owns that axis: no loop around the
   tile is bound to it, and no stage of the kernel binds it to more threads
   than the intrinsic's loop has, so the block has exactly that many.

An intrinsic may also keep the output tile in registers across the
reduction loops outside the tile (`Accumulator`): lowering then resets a
local buffer before those loops, updates it in them and stores it to the
output tile after them, when every loop between the first of them and the
tile is a plain reduction loop (else the tile is updated in memory).

TVM: `te.decl_tensor_intrin` and `s[C].tensorize`; the (body, reset, update)
triple that `lower_fn` may return is TVM's.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.arith import Interval, simplify
from tex.dtype import INDEX
from tex.errors import LoweringError, ScheduleError
from tex.expr import (Const, Expr, Let, Node, Reduce, TensorRead, Var, field_names,
                      structurally_equal)
from tex.ir import Buffer, For, Load, Stmt, Store, seq, strides_of
from tex.tensor import ComputeOp, PlaceholderOp, Tensor
from tex.visitor import collect, substitute

_ZERO = Const(INDEX, 0)


@dataclass(frozen=True, eq=False)
class TileView:
    """Where one tensor of an intrinsic lies in a buffer of the lowered program.

    Element `x = (x_0, ..., x_r-1)` of the intrinsic's tensor (rank r) is the
    element `offset + sum(x_e * strides[e])` of `buffer`, counted in elements
    from its start (row-major, or by the buffer's own strides). Before
    storage is flattened, accesses index a buffer with one index per
    dimension: `origin` is the index of element 0, and `steps[e][d]` how much
    index `d` grows per unit of `x_e`. Build accesses with `index`, `load`
    and `store`; `pointer()` is the access whose address an `IntrinsicCall`
    passes.
    """

    buffer: Buffer
    offset: Expr
    strides: tuple[Expr, ...]
    origin: tuple[Expr, ...]
    steps: tuple[tuple[int, ...], ...]

    @property
    def scope(self) -> str:
        return self.buffer.scope

    def index(self, *x) -> tuple[Expr, ...]:
        """The buffer index (one expression per dimension) of element `x` of the tile."""
        if len(x) != len(self.steps):
            raise LoweringError(f"tile of {self.buffer.name}: {len(self.steps)} index(es) "
                                f"expected, got {len(x)}")
        index = []
        for d, origin in enumerate(self.origin):
            total = origin
            for xe, step in zip(x, self.steps):
                if step[d]:
                    total = ops.binary("add", total, ops.binary("mul", xe, step[d]))
            index.append(total)
        return tuple(index)

    def load(self, *x) -> Load:
        """The value of element `x` of the tile."""
        return Load(self.buffer, self.index(*x))

    def store(self, value, *x) -> Store:
        """Write `value` into element `x` of the tile."""
        return Store(self.buffer, ops.cast(self.buffer.dtype, ops.as_expr(value)), self.index(*x))

    def pointer(self) -> Load:
        """The tile's first element; `IntrinsicCall` passes its address."""
        return Load(self.buffer, self.origin)


@dataclass(frozen=True)
class Accumulator:
    """An intrinsic's output tile kept in `buffer` (scope "local": registers) across the
    reduction loops outside the tile: `reset` fills it with the reducer's identity,
    `update` accumulates one tile of the inputs into it, `store` writes it to the
    output tile once the reduction is done."""

    buffer: Buffer
    reset: Stmt
    update: Stmt
    store: Stmt


class TensorIntrin:
    """A declared intrinsic: the computation `op` it performs and how to lower it.

    `inputs` are the placeholders `op` reads, in the order of first use;
    `lower_fn(inputs, outputs)` receives a `TileView` for each of them, and
    one for `op`'s output, in that order.
    """

    def __init__(self, name: str, op: ComputeOp, lower_fn):
        self.name, self.op, self.lower_fn = name, op, lower_fn
        self.inputs: tuple[Tensor, ...] = op.input_tensors
        self.output: Tensor = op.output(0)

    def __repr__(self):
        return f"TensorIntrin({self.name})"

    def describe(self) -> str:
        """The intrinsic's loops, e.g. `i(16), j(16), k(16, reduce)`."""
        data = [f"{iv.name}({iv.dom.extent.value})" for iv in self.op.axis]
        red = [f"{iv.name}({iv.dom.extent.value}, reduce)" for iv in self.op.reduce_axis]
        return ", ".join(data + red)


def decl_tensor_intrin(compute, lower_fn, name: str | None = None) -> TensorIntrin:
    """Declare that the computation `compute` is carried out by an intrinsic.

    `compute` is a tensor made by `tex.compute` (or its operation) over
    `tex.placeholder`s, with one output, every axis of constant extent
    starting at 0, and plain accesses (each index one axis: `A[i, k]`).
    `lower_fn(inputs, outputs)` gets a `TileView` per input (in first-use
    order, `TensorIntrin.inputs`) and one for the output, and returns loop
    IR: a statement, or TVM's triple `(body, reset, update)`, any of which
    may be None: `body` computes the tile from scratch, `reset` fills the
    output tile with the reducer's identity, `update` accumulates into it.
    A reduction tensorized with its reduction loops outside the tile needs
    reset and update; with all of them inside, body (or reset then update).
    A fourth element, an `Accumulator` (or None), keeps the tile in
    registers across reduction loops outside it where lowering can.

        a = tex.placeholder((16, 16), "float16"); b = ...
        k = tex.reduce_axis((0, 16))
        c = tex.compute((16, 16), lambda i, j: tex.sum(..., axis=k))
        mma = tex.decl_tensor_intrin(c, lower_fn, name="mma16")
        s[C].tensorize(i_inner, mma)

    Raises ScheduleError when `compute` breaks one of those rules.
    TVM: `te.decl_tensor_intrin`.
    """
    op = compute.op if isinstance(compute, Tensor) else compute
    if not isinstance(op, ComputeOp):
        raise ScheduleError(f"decl_tensor_intrin: expected a tensor made by tex.compute, got "
                            f"{type(compute).__name__} {compute!r}")
    name = op.name if name is None else name
    where = f"decl_tensor_intrin {name}"
    if not callable(lower_fn):
        raise ScheduleError(f"{where}: lower_fn must be callable, got {lower_fn!r}")
    if op.num_outputs != 1:
        raise ScheduleError(f"{where}: the computation must have one output, it has "
                            f"{op.num_outputs}")
    for iv in op.axis + op.reduce_axis:
        if not (isinstance(iv.dom.extent, Const) and isinstance(iv.dom.min, Const)
                and iv.dom.min.value == 0):
            raise ScheduleError(f"{where}: axis {iv.name} must run over [0, constant), got "
                                f"min {iv.dom.min}, extent {iv.dom.extent}")
    axes = {iv.var for iv in op.axis + op.reduce_axis}
    for t in op.input_tensors:
        if not isinstance(t.op, PlaceholderOp):
            raise ScheduleError(f"{where}: it reads {t.name}, which is not a placeholder")
    for read in collect(op.body[0], lambda n: isinstance(n, TensorRead)):
        if not all(i in axes for i in read.indices) or len(set(read.indices)) != len(read.indices):
            raise ScheduleError(f"{where}: access {read} must index with distinct axes only "
                                "(one axis per index)")
    return TensorIntrin(name, op, lower_fn)


def loop_nest(extents, body) -> Stmt:
    """Serial loops over `extents` (outermost first) around `body(*loop_vars)`; for lower_fns
    that write an intrinsic as plain loops."""
    loop_vars = [Var(f"t{d}", INDEX) for d in range(len(extents))]
    stmt = body(*loop_vars)
    for v, extent in reversed(list(zip(loop_vars, extents))):
        stmt = For(v, _ZERO, ops.as_expr(extent, INDEX), "serial", stmt)
    return stmt


@dataclass(frozen=True)
class TileStatements:
    """What replaces a stage's tile: the loops from `position` (in the stage's loop order)
    inward are replaced by `whole` where the tile computes its outputs from scratch,
    or by `update` with `reset` in place of the reduction's init nest, or by
    `accumulator`'s statements (see `Accumulator`) when the intrinsic has one."""

    position: int
    whole: Stmt | None
    reset: Stmt | None
    update: Stmt | None
    accumulator: Accumulator | None = None


def lower_tile(plan, buffers: dict, children: dict, depth: dict, enclosing_tags: set,
               kernel_bindings: list, reductions_outside: bool) -> TileStatements:
    """The intrinsic's statements for the tile of `plan.stage`, after checking that they match.

    `buffers` maps tensors to (Buffer, offsets) as lowering allocates them,
    `children` leaf -> stages computed at it, `depth` guard -> position of the
    innermost loop it depends on, `enclosing_tags` the thread axes bound
    around the tile, `kernel_bindings` (stage, leaf, tag, extent) for every
    bound loop of the kernel the tile runs in. `reductions_outside` says
    whether some reduction loop of the stage lies outside the tile (then
    reset and update are needed). Raises LoweringError when anything differs
    (see the module docstring).
    """
    stage = plan.stage
    axis, intrin = stage.tensorized
    where = f"tensorize on stage {stage.name}, axis {axis.name}"
    if axis not in stage.leaf_iter_vars:
        raise LoweringError(f"{where}: {axis.name} is no longer a loop of the stage (it was "
                            "fused or factored after tensorize); tensorize a current loop")
    position = stage.leaf_iter_vars.index(axis)
    tile = stage.leaf_iter_vars[position:]
    _check_tile_loops(plan, tile, children, depth, position, where)
    tile_var = _pair_axes(plan, tile, intrin, where)
    match = _BodyMatch(intrin, where)
    if len(plan.body) != len(intrin.op.body):
        raise LoweringError(f"{where}: the stage has {len(plan.body)} output(s), intrinsic "
                            f"{intrin.name} {len(intrin.op.body)}")
    match.expr(plan.body[0], intrin.op.body[0])
    views = _Views(plan, buffers, tile, tile_var, where)
    inputs = [views.input(p, match) for p in intrin.inputs]
    output = views.output(intrin)
    try:
        result = intrin.lower_fn(inputs, [output])
    except LoweringError as e:  # the intrinsic refuses these tiles: say where
        raise LoweringError(f"{where}: {e}") from e
    parts, accumulator = _parts(result, intrin, where)
    statements = parts if accumulator is None else \
        parts + (accumulator.reset, accumulator.update, accumulator.store)
    _check_thread_loops(statements, enclosing_tags, kernel_bindings, intrin, where)
    body, reset, update = parts
    if reductions_outside or (body is None and plan.op.reduce_axis):
        needed = {"reset": reset, "update": update}
    else:
        needed = {} if body is not None else {"update": update}
    for which, stmt in needed.items():
        if stmt is None:
            raise LoweringError(f"{where}: intrinsic {intrin.name} gives no {which} statement, "
                                "which this placement of the tile needs (lower_fn returns "
                                "(body, reset, update))")
    if reductions_outside:
        return TileStatements(position, None, reset, update, accumulator)
    if body is None:
        body = seq(reset, update) if plan.op.reduce_axis else update
    return TileStatements(position, body, reset, update)


def _check_tile_loops(plan, tile, children, depth, position, where):
    """The tile's loops are plain: not bound, annotated, hosting stages, or guarded."""
    stage = plan.stage
    for leaf in tile:
        if leaf in stage.bindings:
            what = f"bound to {stage.bindings[leaf]}"
        elif leaf in stage.annotations:
            what = f"marked {stage.annotations[leaf]}"
        elif stage.pragmas.get(leaf):
            what = "given a pragma"
        elif children.get(leaf):
            what = f"where stage {children[leaf][0].stage.name} is computed"
        else:
            continue
        raise LoweringError(f"{where}: loop {leaf.name} inside the tile is {what}; the "
                            "intrinsic replaces those loops, so they must be plain")
    for cond, level in depth.items():
        if level >= position:
            leaf = stage.leaf_iter_vars[level]
            raise LoweringError(f"{where}: the tile can stray outside the domain (guard "
                                f"`{cond}` depends on loop {leaf.name} inside it); tensorize "
                                "needs tiles that divide the domain: make the extents "
                                "multiples of the tile's")


def _pair_axes(plan, tile, intrin, where) -> dict:
    """Intrinsic axis variable -> tile loop variable, checked by kind, count and extent."""
    pairs = {}
    for kind, axes in (("data", intrin.op.axis), ("reduce", intrin.op.reduce_axis)):
        loops = [leaf for leaf in tile if leaf.kind == kind]
        if len(loops) != len(axes):
            raise LoweringError(
                f"{where}: the tile has {len(loops)} {kind} loop(s) "
                f"({', '.join(v.name for v in loops) or 'none'}) where intrinsic "
                f"{intrin.name} has {len(axes)} ({intrin.describe()})")
        for leaf, iv in zip(loops, axes):
            extent = plan.ranges[leaf].extent
            if not (isinstance(extent, Const) and extent.value == iv.dom.extent.value):
                raise LoweringError(f"{where}: loop {leaf.name} has extent {extent} where "
                                    f"intrinsic {intrin.name}'s axis {iv.name} has "
                                    f"{iv.dom.extent.value} (intrinsic loops: "
                                    f"{intrin.describe()})")
            pairs[iv.var] = leaf.var
    return pairs


class _BodyMatch:
    """Walks the stage's body and the intrinsic's together; records the paired tensor reads."""

    def __init__(self, intrin, where):
        self.intrin, self.where = intrin, where
        self.reads: list = []      # (stage TensorRead, intrinsic TensorRead)
        self.tensors: dict = {}    # intrinsic tensor -> stage tensor
        self.lets: dict = {}       # intrinsic Let variable -> stage Let variable

    def differ(self, what: str, s, p):
        raise LoweringError(f"{self.where}: the body differs from intrinsic "
                            f"{self.intrin.name}'s: {what} (stage: `{s}`, intrinsic: `{p}`)")

    def expr(self, s, p):
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


class _Views:
    """The TileView of each tensor of the intrinsic, from the stage's accesses."""

    def __init__(self, plan, buffers, tile, tile_var, where):
        self.plan, self.buffers, self.where = plan, buffers, where
        self.tile_var = tile_var                      # intrinsic axis var -> tile loop var
        self.tile_vars = [leaf.var for leaf in tile]
        self.ranges = {leaf.var: Interval.from_extent(_ZERO, plan.ranges[leaf].extent)
                       for leaf in plan.stage.leaf_iter_vars}
        op = plan.op
        self.root_values = {iv.var: plan.values[iv] for iv in op.axis + op.reduce_axis}

    def input(self, p_tensor: Tensor, match: _BodyMatch) -> TileView:
        views = []
        for s_read, p_read in match.reads:
            if p_read.tensor is p_tensor:
                index = [substitute(i, self.root_values) for i in s_read.indices]
                views.append(self.view(s_read.tensor, index, p_read.indices, str(s_read)))
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
        return self.view(op.output(0), index, [iv.var for iv in intrin.op.axis],
                         f"the output {op.output(0).name}")

    def view(self, tensor, index, p_indices, what: str) -> TileView:
        """The view of `tensor` accessed at `index` (over loop variables) where the intrinsic
        accesses its tensor at `p_indices` (its axis variables)."""
        entry = self.buffers.get(tensor)
        if entry is None:
            raise LoweringError(f"{self.where}: tensor {tensor.name} is read but is neither "
                                "computed by the schedule nor given in args")
        buffer, offsets = entry
        if offsets is not None:
            index = [ops.binary("sub", i, o) for i, o in zip(index, offsets)]
        origin, coefs = [], []        # coefs[d][tile var] = coefficient
        for e in index:
            base, coef = self.affine(e, what)
            origin.append(base)
            coefs.append(coef)
        used = [self.tile_var[v] for v in p_indices]
        for d, coef in enumerate(coefs):
            for v, c in coef.items():
                if c and v not in used:
                    raise LoweringError(
                        f"{self.where}: {what} varies along loop {v.name} (index {d} is "
                        f"`{index[d]}`), which the intrinsic's access does not index; order the "
                        "tile's loops as the intrinsic's axes")
        steps = tuple(tuple(coef[v] for coef in coefs) for v in used)
        strides = strides_of(buffer)
        offset = _dot(origin, strides)
        view_strides = tuple(simplify(_dot([Const(INDEX, c) for c in step], strides))
                             for step in steps)
        return TileView(buffer, simplify(offset, self.ranges), view_strides, tuple(origin),
                        steps)

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


def _parts(result, intrin, where) -> tuple:
    """((body, reset, update), accumulator or None) from what lower_fn returned, checked."""
    accumulator = None
    if isinstance(result, Stmt):
        parts = (None, None, result)
    elif isinstance(result, tuple) and len(result) in (3, 4):
        parts, accumulator = tuple(result[:3]), (result[3] if len(result) == 4 else None)
    else:
        raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} must return a "
                            f"statement or (body, reset, update[, accumulator]), got {result!r}")
    for which, stmt in zip(("body", "reset", "update"), parts):
        if stmt is not None and not isinstance(stmt, Stmt):
            raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} returned a "
                                f"{type(stmt).__name__} as {which}, not a loop-IR statement")
    if accumulator is not None and not (isinstance(accumulator, Accumulator)
                                        and accumulator.buffer.scope == "local"):
        raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} returned "
                            f"{accumulator!r} as its accumulator, not an Accumulator of a "
                            "local buffer")
    return parts, accumulator


def _check_thread_loops(parts, enclosing_tags: set, kernel_bindings: list, intrin, where):
    """An intrinsic that binds a thread axis itself (a warp: threadIdx.x(32)) owns that axis.
    No loop around the tile may be bound to it (its lanes would compute different tiles),
    and no stage of the kernel may bind it to more threads than the intrinsic's loop has,
    so that the block has exactly that many along it (a warp is then one threadIdx.y, z)."""
    for stmt in parts:
        if stmt is None:
            continue
        for loop in collect(stmt, lambda n: isinstance(n, For) and n.kind == "bound"):
            tag = loop.thread_tag
            if tag in enclosing_tags:
                raise LoweringError(f"{where}: intrinsic {intrin.name} runs on the threads of "
                                    f"{tag} itself, so no loop around the tile may be bound "
                                    f"to {tag}")
            for stage, leaf, bound_tag, extent in kernel_bindings:
                if bound_tag == tag and not _at_most(extent, loop.extent):
                    raise LoweringError(
                        f"{where}: intrinsic {intrin.name} runs on {tag}({loop.extent}) "
                        f"itself, so its kernel's blocks must have {loop.extent} threads along "
                        f"{tag}; stage {stage.name} binds loop {leaf.name} to {tag} with "
                        f"extent {extent}: split it so that at most {loop.extent} are bound")


def _at_most(extent, limit) -> bool:
    """Whether the loop extent `extent` is provably at most `limit`."""
    if isinstance(extent, Const) and isinstance(limit, Const):
        return extent.value <= limit.value
    return structurally_equal(extent, limit)
