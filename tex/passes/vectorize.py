"""Vectorization: a `vectorized` loop becomes vector expressions, one lane per iteration.

Assumes: storage is flat (one index per access); vectorized loops have a
constant extent (lowering checks it).

Guarantees: no `vectorized` loop is left. A loop whose extent is not a power
of two is first cut into pieces that are (48 lanes = 32 + 16). Each one either

* becomes its body over vectors: the loop variable turns into
  `ramp(min, 1, lanes)`, lane-invariant values are broadcast, accesses
  with a vector index become vector loads/stores, and inner loops with
  lane-invariant bounds keep running with a vector body; or
* when the body holds guards that vary by lane (a split that does not
  divide), is split into an unmasked vector path, taken when the guards hold
  at the first and last lane (they are affine in the loop variable, so then
  they hold for all lanes), and for the tail the same vector code with each
  guard kept as a lane mask (codegen masks the loads and stores under it);
  or
* when its body is one store that every lane makes to the same place,
  `acc = acc op f(lane)` with op add, mul, min or max (a reduction axis
  vectorized, such as the lanes of an rfactor being combined), becomes
  `acc = acc op reduce_op(f(lanes))`: the lanes are combined by a tree of
  halvings, so a float sum rounds differently from the serial order; or
* when its body already computes on vectors of K lanes (a stage of a vector
  dtype such as float32x4) and the loop variable appears only in the bases
  of contiguous vector accesses (`ramp(f(v), s, K)` with f(v + 1) = f(v) +
  K*s), becomes the same body on vectors of extent*K lanes, iteration j's
  lanes at j*K..., taken where its guards hold at the first and last
  iteration (else the serial loop runs); or
* when it cannot be vectorized (another scalar store the lanes would race
  on, an allocation inside, lane-varying inner loop bounds, an LLVM
  intrinsic called on lane-varying values, a body of vectors used otherwise,
  or an inner vectorized loop), stays a serial loop (each iteration still
  vector code for the latter two).
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.arith import simplify
from tex.expr import (Binary, Call, Cast, Compare, Const, Expr, Let, LLVMCall, Logical, Not,
                      OpCall, PureExternCall, Select, Var, structurally_equal)
from tex.ir import (VECTOR_REDUCE_OPS, Allocate, Broadcast, For, IfThenElse, LetStmt, Load, Ramp,
                    Stmt, Store, VectorReduce, seq)
from tex.visitor import (Rewriter, collect, free_vars, fresh_copy, substitute, transform,
                         uses_var)


class _NotVectorizable(Exception):
    pass


def _broadcast(e: Expr, lanes: int) -> Expr:
    return e if e.dtype.lanes == lanes else Broadcast(e, lanes)


class _Vectorizer(Rewriter):
    """Rewrites a loop body for `lanes` lanes of `var`."""

    def __init__(self, var: Var, lanes: int, start: Expr, reduction: Store | None = None):
        """`reduction` is the loop's body when it is one store that may be a reduction."""
        self.var, self.lanes, self.reduction = var, lanes, reduction
        self.ramp = Ramp(start, Const(start.dtype, 1), lanes)
        self.renamed: dict[Var, Var] = {}

    def rewrite_Var(self, v: Var):
        if v is self.var:
            return self.ramp
        return self.renamed.get(v, v)

    def rewrite_Binary(self, e: Binary):
        a, b = self.rewrite(e.a), self.rewrite(e.b)
        if a is e.a and b is e.b:
            return e
        if e.op in ("add", "sub", "mul"):
            ramp = _ramp_arith(e.op, a, b)
            if ramp is not None:
                return ramp
        return Binary(e.op, _broadcast(a, self.lanes), _broadcast(b, self.lanes))

    def _lanewise(self, e, build, *children):
        """`e` if no child changed, else `build(*children)` with scalars broadcast."""
        new = [self.rewrite(c) for c in children]
        if all(n is c for n, c in zip(new, children)):
            return e
        lanes = max(n.dtype.lanes for n in new)
        return build(*(_broadcast(n, lanes) for n in new))

    def rewrite_Compare(self, e):
        return self._lanewise(e, lambda a, b: Compare(e.op, a, b), e.a, e.b)

    def rewrite_Logical(self, e):
        return self._lanewise(e, lambda a, b: Logical(e.op, a, b), e.a, e.b)

    def rewrite_Not(self, e):
        return self._lanewise(e, Not, e.a)

    def rewrite_Select(self, e):
        cond, t, f = (self.rewrite(x) for x in (e.cond, e.true_value, e.false_value))
        if cond is e.cond and t is e.true_value and f is e.false_value:
            return e
        lanes = max(x.dtype.lanes for x in (cond, t, f))
        return Select(cond, _broadcast(t, lanes), _broadcast(f, lanes))  # cond may stay scalar

    def rewrite_Cast(self, e):
        value = self.rewrite(e.value)
        return e if value is e.value else Cast(e.dtype.with_lanes(value.dtype.lanes), value)

    def rewrite_Call(self, e):
        return self._lanewise(e, lambda *args: Call(e.name, args), *e.args)

    def rewrite_PureExternCall(self, e):
        return self._lanewise(e, lambda *args: PureExternCall(
            e.dtype.with_lanes(args[0].dtype.lanes), e.name, args), *e.args)

    def rewrite_OpCall(self, e):
        return self._lanewise(e, lambda *args: OpCall(
            e.dtype.with_lanes(args[0].dtype.lanes), e.name, args), *e.args)

    def rewrite_LLVMCall(self, e):
        args = tuple(self.rewrite(arg) for arg in e.args)
        if any(arg.dtype.lanes > 1 for arg in args):
            raise _NotVectorizable(f"{e.name} is called on scalars")
        return e if all(a is b for a, b in zip(args, e.args)) else LLVMCall(e.dtype, e.name, args)

    def rewrite_Let(self, e: Let):
        value = self.rewrite(e.value)
        if value.dtype.lanes > 1:
            self.renamed[e.var] = Var(e.var.name, value.dtype)
        body = self.rewrite(e.body)
        var = self.renamed.get(e.var, e.var)
        return e if value is e.value and body is e.body else Let(var, value, body)

    def rewrite_Load(self, e: Load):
        index = self.rewrite(e.indices[0])
        return e if index is e.indices[0] else Load(e.buffer, (index,))

    # --- statements ---------------------------------------------------------------
    def rewrite_Store(self, s: Store):
        index = self.rewrite(s.indices[0])
        if index.dtype.lanes == 1:
            return self._reduction(s)
        return Store(s.buffer, _broadcast(self.rewrite(s.value), self.lanes), (index,))

    def _reduction(self, s: Store) -> Store:
        """`acc = acc op f(lane)`, stored by every lane to one place, as one store of
        `acc op reduce_op(f(lanes))`."""
        value = s.value
        if s is not self.reduction or not (isinstance(value, Binary)
                                           and value.op in VECTOR_REDUCE_OPS):
            raise _NotVectorizable("all lanes would store to one location")
        for acc, term in ((value.a, value.b), (value.b, value.a)):
            if isinstance(acc, Load) and acc.buffer is s.buffer \
                    and structurally_equal(acc.indices[0], s.indices[0]) \
                    and not collect(term, lambda n: isinstance(n, Load) and n.buffer is s.buffer):
                lanes = self.rewrite(term)
                if lanes.dtype.lanes == 1:  # the same term in every lane
                    break
                combined = VectorReduce(value.op, lanes)
                pair = (acc, combined) if acc is value.a else (combined, acc)
                return Store(s.buffer, Binary(value.op, *pair), s.indices)
        raise _NotVectorizable("all lanes would store to one location")

    def rewrite_For(self, loop: For):
        if uses_var(loop.min, self.var) or uses_var(loop.extent, self.var):
            raise _NotVectorizable("inner loop bounds vary by lane")
        return dataclasses.replace(loop, body=self.rewrite(loop.body))

    def rewrite_IfThenElse(self, s: IfThenElse):
        # A lane-varying condition stays a vector condition: codegen masks the
        # memory accesses of each branch by its lanes.
        return self.generic_rewrite(s)

    def rewrite_LetStmt(self, s: LetStmt):
        value = self.rewrite(s.value)
        if value.dtype.lanes > 1:
            self.renamed[s.var] = Var(s.var.name, value.dtype)
        body = self.rewrite(s.body)
        return LetStmt(self.renamed.get(s.var, s.var), value, body)

    def rewrite_Allocate(self, s: Allocate):
        raise _NotVectorizable("an allocation inside the loop")


class _LaneGroups(Rewriter):
    """Rewrites a loop body that computes on vectors of K lanes for `count` iterations of
    `var` at once (the module doc): each vector gets count*K lanes."""

    def __init__(self, var: Var, count: int, start: Expr):
        self.var, self.count, self.start = var, count, start

    def rewrite_Var(self, v: Var):
        if v is self.var:
            raise _NotVectorizable("the loop variable is used outside a contiguous access")
        return v

    def rewrite_Ramp(self, e: Ramp):
        if not uses_var(e.base, self.var) or uses_var(e.stride, self.var):
            raise _NotVectorizable("a vector index that does not follow the loop")
        step = simplify(ops.binary("sub", substitute(e.base, {self.var: self.var + 1}), e.base))
        if not (isinstance(step, Const) and isinstance(e.stride, Const)
                and step.value == e.stride.value * e.lanes):
            raise _NotVectorizable("vector accesses of consecutive iterations do not abut")
        return Ramp(substitute(e.base, {self.var: self.start}), e.stride, e.lanes * self.count)

    def rewrite_Broadcast(self, e: Broadcast):
        if uses_var(e.value, self.var):
            raise _NotVectorizable("a broadcast value that varies with the loop")
        return Broadcast(e.value, e.lanes * self.count)

    def rewrite_Cast(self, e: Cast):
        value = self.rewrite(e.value)
        return Cast(e.dtype.with_lanes(value.dtype.lanes), value)

    def rewrite_PureExternCall(self, e: PureExternCall):
        if any(a.dtype.lanes != e.dtype.lanes for a in e.args):
            raise _NotVectorizable("a call that takes a vector whole")
        args = tuple(self.rewrite(a) for a in e.args)
        return PureExternCall(e.dtype.with_lanes(args[0].dtype.lanes), e.name, args)

    def rewrite_OpCall(self, e):
        raise _NotVectorizable("a call of a declared intrinsic")

    def rewrite_LLVMCall(self, e):
        raise _NotVectorizable("a call of an LLVM intrinsic")

    def rewrite_VectorReduce(self, e):
        raise _NotVectorizable("a reduction of lanes")

    def rewrite_Let(self, e):
        raise _NotVectorizable("a let-bound value")

    def rewrite_LetStmt(self, s):
        raise _NotVectorizable("a let-bound value")

    def rewrite_Allocate(self, s):
        raise _NotVectorizable("an allocation inside the loop")

    def rewrite_For(self, loop: For):
        if uses_var(loop.min, self.var) or uses_var(loop.extent, self.var):
            raise _NotVectorizable("inner loop bounds vary by iteration")
        return dataclasses.replace(loop, body=self.rewrite(loop.body))

    def rewrite_Load(self, e: Load):
        return Load(e.buffer, (self._index(e.indices[0]),))

    def rewrite_Store(self, s: Store):
        if s.indices[0].dtype.lanes == 1:  # the same point every iteration: once per group
            raise _NotVectorizable("a scalar store the iterations would repeat")
        index, value = self._index(s.indices[0]), self.rewrite(s.value)
        if index.dtype.lanes != value.dtype.lanes:
            raise _NotVectorizable("a store that is not one vector per iteration")
        return Store(s.buffer, value, (index,))

    def _index(self, index: Expr) -> Expr:
        """A vector index (flattening leaves `broadcast(b) + ramp(0, 1, K)`), as one ramp."""
        return self.rewrite(simplify(index) if index.dtype.lanes > 1 else index)


def _ramp_arith(op: str, a: Expr, b: Expr) -> Expr | None:
    """`a op b` kept as a ramp when one side is a ramp and the other lane-invariant."""
    def scalar(x):
        return x.value if isinstance(x, Broadcast) else (x if x.dtype.lanes == 1 else None)
    if isinstance(a, Ramp) and isinstance(b, Ramp) and op in ("add", "sub"):
        return Ramp(ops.binary(op, a.base, b.base), ops.binary(op, a.stride, b.stride), a.lanes)
    if isinstance(a, Ramp) and scalar(b) is not None:
        s = scalar(b)
        if op == "mul":
            return Ramp(ops.binary("mul", a.base, s), ops.binary("mul", a.stride, s), a.lanes)
        return Ramp(ops.binary(op, a.base, s), a.stride, a.lanes)
    if isinstance(b, Ramp) and scalar(a) is not None and op in ("add", "mul"):
        return _ramp_arith(op, b, a)
    return None


def _is_affine(e: Expr, var: Var) -> bool:
    """Whether `e` depends on `var` only through +, - and * by lane-invariant values."""
    if not uses_var(e, var):
        return True
    if e is var:
        return True
    if isinstance(e, Binary) and e.op in ("add", "sub"):
        return _is_affine(e.a, var) and _is_affine(e.b, var)
    if isinstance(e, Binary) and e.op == "mul":
        return (_is_affine(e.a, var) and not uses_var(e.b, var)
                or _is_affine(e.b, var) and not uses_var(e.a, var))
    if isinstance(e, Compare) and e.op in ("lt", "le", "gt", "ge"):
        return _is_affine(e.a, var) and _is_affine(e.b, var)
    if isinstance(e, Logical) and e.op == "and":
        return _is_affine(e.a, var) and _is_affine(e.b, var)
    return False


def _strip_lane_guards(body: Stmt, var: Var, conds: list) -> Stmt:
    """`body` without its lane-varying guards (collected into `conds`), if all are affine
    and depend on nothing defined inside the loop."""
    inner = {n.var for n in _defining(body)}

    def strip(node):
        if isinstance(node, IfThenElse) and uses_var(node.cond, var):
            if (node.else_body is not None or not _is_affine(node.cond, var)
                    or free_vars(node.cond) & inner):
                raise _NotVectorizable("a lane-varying branch that is not a simple guard")
            conds.append(node.cond)
            return node.then_body
        return None
    return transform(body, strip)


def _defining(stmt: Stmt) -> list:
    found = []

    def visit(node):
        if isinstance(node, (For, LetStmt)):
            found.append(node)
    transform(stmt, visit)
    return found


def _computes_on_vectors(body: Stmt) -> bool:
    """Whether `body` holds a vector value already (lanes of a vector dtype)."""
    return bool(collect(body, lambda n: isinstance(n, Expr) and n.dtype.lanes > 1))


def _vectorize_lane_groups(loop: For) -> Stmt:
    """A loop over vector code as one wider vector (`_LaneGroups`), taken where its
    guards hold for every iteration, else the serial loop; or the serial loop alone."""
    serial = dataclasses.replace(loop, kind="serial")
    conds = []
    try:
        body = _strip_lane_guards(loop.body, loop.var, conds)
        wide = _LaneGroups(loop.var, loop.extent.value, loop.min).rewrite(body)
    except _NotVectorizable:
        return serial
    if not conds:
        return wide
    last = ops.binary("add", loop.min, loop.extent.value - 1)
    whole = ops.all_(*(substitute(c, {loop.var: at}) for c in conds for at in (loop.min, last)))
    return IfThenElse(whole, wide, fresh_copy(serial))


def _vectorize_loop(loop: For) -> Stmt:
    lanes = loop.extent.value
    if _computes_on_vectors(loop.body):
        return _vectorize_lane_groups(loop)
    reduction = loop.body if isinstance(loop.body, Store) else None
    try:
        masked = _Vectorizer(loop.var, lanes, loop.min, reduction).rewrite(loop.body)
    except _NotVectorizable:
        return dataclasses.replace(loop, kind="serial")
    conds = []
    try:
        body = _strip_lane_guards(loop.body, loop.var, conds)
    except _NotVectorizable:
        return masked
    if not conds:
        return masked
    vector = _Vectorizer(loop.var, lanes, loop.min).rewrite(body)
    last = ops.binary("add", loop.min, lanes - 1)
    whole = ops.all_(*(substitute(c, {loop.var: at}) for c in conds for at in (loop.min, last)))
    return IfThenElse(whole, vector, fresh_copy(masked))


def _power_of_two_pieces(loop: For) -> list[For]:
    """`loop` as consecutive loops whose extents are powers of two (48 = 32 + 16).

    LLVM handles vectors of a power-of-two length well; others it widens and
    shuffles. Each piece after the first is a fresh copy of the loop.
    """
    pieces, start, remaining = [], loop.min, loop.extent.value
    while remaining:
        size = 1 << (remaining.bit_length() - 1)
        piece = dataclasses.replace(loop, min=start, extent=Const(loop.extent.dtype, size))
        pieces.append(piece if not pieces else fresh_copy(piece))
        start, remaining = ops.binary("add", start, size), remaining - size
    return pieces


def _vectorize_piece(loop: For) -> Stmt:
    if loop.extent.value == 1:
        return substitute(loop.body, {loop.var: loop.min})
    return _vectorize_loop(loop)


def vectorize_loops(stmt: Stmt) -> Stmt:
    """`stmt` with every vectorized loop turned into vector code (or a serial loop)."""
    def visit(node):
        if isinstance(node, For) and node.kind == "vectorized":
            if not isinstance(node.extent, Const):
                return dataclasses.replace(node, kind="serial")
            return seq(*(_vectorize_piece(p) for p in _power_of_two_pieces(node)))
        return None
    return transform(stmt, visit)

