"""The walk over a lowered program: every Store in its loop context, and program totals.

The walk keeps the stack of loops around each `Store`. A loop's extent is its
constant, or, when symbolic, its expression evaluated with every size
variable set to `SYMBOLIC_EXTENT` (128). Guards narrow the loops they test:
under `if i < 62` the loop over i counts 62 iterations, its else branch the
rest; a guard that is not one loop variable against a constant counts as the
estimated share of the iterations that pass it (uniform over its range; a
condition read from data counts one half). A statement's *executions* are
the product of its loops' extents times that share; its *scalar iterations*
are executions times its vector lanes.

The walk has a fallback for every node and never evaluates data, so it
accepts any program `tex.lower` returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from autotune.features.affine import LANE, SYMBOLIC_EXTENT, Affine, Forms, plus
from autotune.features.arithmetic import Scan
from tex.expr import Binary, Cast, Compare, Const, Expr, Logical, Not, Var
from tex.ir import Allocate, Broadcast, For, IfThenElse, LetStmt, LoweredFunc, Ramp, Store
from tex.visitor import Visitor


@dataclass(slots=True)
class Loop:
    """A For around the statements the walk is in."""

    var: Var
    kind: str
    extent: float  # before guards narrow it
    key: int       # the loop's position in the program text, for grouping its stores


@dataclass(slots=True)
class StoreRecord:
    """One Store with what the walk knew around it."""

    store: Store
    order: int
    loops: list            # [Loop], outermost first
    extents: list          # effective extent of each loop (guards applied)
    executions: float
    nominal: float         # executions without the guards
    lanes: int             # of the statement: widest vector in it
    store_lanes: int
    counts: list           # per execution, per lane
    nodes: int             # arithmetic nodes per execution
    loads: list
    guarded: bool
    masked: bool
    parallel: float        # product of parallel extents around it (0: none)
    grain: float           # executions per iteration of the innermost parallel loop
    cost: float = field(init=False)

    def __post_init__(self):
        self.cost = self.executions * (self.lanes + sum(self.counts))

    @property
    def body(self) -> int:
        """The key of the loop whose body holds the store directly; 0 outside loops."""
        return self.loops[-1].key if self.loops else 0


class Walk(Visitor):
    """Walks the program once, recording every Store in its loop context and program totals."""

    def __init__(self, func: LoweredFunc):
        self.forms = Forms(func.size_vars)
        self.loops: list[Loop] = []
        self.ranges: dict = {}   # loop var -> (lo, hi), narrowed by the guards
        self.share = 1.0         # share of iterations passing the guards that narrow nothing
        self.guards = 0
        self.masked = False
        self.stores: list[StoreRecord] = []
        self.let_values: dict = {}  # let-bound variable -> value, in the current scope
        self.n = dict.fromkeys(("loops", "symbolic", "parallel", "guards", "lets", "depth",
                                "allocs_global", "allocs_local", "bytes_global", "bytes_local",
                                "loop_iterations", "max_parallel"), 0.0)

    def value(self, e: Expr) -> float:
        """An estimate of an integer expression: sizes at SYMBOLIC_EXTENT, loop variables
        at the middle of their ranges."""
        f = self.forms.form(e)
        if f.gather:
            return float(SYMBOLIC_EXTENT)
        total = f.const
        for v, c in f.coefs.items():
            lo, hi = self.range_of(v)
            total += c * (lo + hi) / 2
        return total if math.isfinite(total) else float(SYMBOLIC_EXTENT)

    def elements(self, buffer) -> float:
        """Elements of a buffer (its shape's product, symbolic sizes estimated)."""
        return max(1.0, math.prod(max(1.0, self.value(d)) for d in buffer.shape))

    def range_of(self, v: Var) -> tuple:
        """(least, greatest) value of a loop variable here; of any other, the default range."""
        return self.ranges.get(v, (0.0, SYMBOLIC_EXTENT - 1.0))

    def extents(self) -> list:
        """The extent of each loop around here, as the guards narrowed it."""
        return [max(0.0, hi - lo + 1) for lo, hi in (self.ranges[l.var] for l in self.loops)]

    def visit_For(self, node: For):
        lo, extent = self.value(node.min), max(0.0, float(round(self.value(node.extent))))
        self.n["loops"] += 1
        self.n["symbolic"] += not isinstance(node.extent, Const)
        self.n["parallel"] += node.kind == "parallel"
        self.loops.append(Loop(node.var, node.kind, extent, int(self.n["loops"])))
        self.ranges[node.var] = (lo, lo + extent - 1)
        self.n["loop_iterations"] += math.prod(self.extents()) * self.share
        self.n["depth"] = max(self.n["depth"], len(self.loops))
        self.n["max_parallel"] = max(self.n["max_parallel"], self.parallel_extent())
        self.visit(node.body)
        self.loops.pop()
        del self.ranges[node.var]

    def parallel_extent(self) -> float:
        """The product of the parallel extents around here; 0 when there is no parallel loop."""
        extents = [e for l, e in zip(self.loops, self.extents()) if l.kind == "parallel"]
        return math.prod(extents) if extents else 0.0

    def grain(self) -> float:
        """Iterations of the loops inside the innermost parallel loop (of all loops if none)."""
        extents = self.extents()
        inner = [k for k, l in enumerate(self.loops) if l.kind == "parallel"][-1:]
        return math.prod(extents[inner[0] + 1:] if inner else extents) * self.share

    def visit_IfThenElse(self, node: IfThenElse):
        self.n["guards"] += 1
        then, otherwise = self.guard(node.cond)
        masked = node.cond.dtype.lanes > 1
        self.under(then, node.then_body, masked)
        if node.else_body is not None:
            self.under(otherwise, node.else_body, masked)

    def under(self, effect, body, masked: bool):
        """Visit `body` with the guard `effect` (narrowed ranges, share) applied."""
        narrowed, share = effect
        saved = (dict(self.ranges), self.share, self.guards, self.masked)
        self.ranges.update(narrowed)
        self.share *= share
        self.guards += 1
        self.masked = self.masked or masked
        self.visit(body)
        self.ranges, self.share, self.guards, self.masked = saved

    def visit_LetStmt(self, node: LetStmt):
        self.n["lets"] += 1
        self.forms.lets[node.var] = self.forms.form(node.value)
        self.let_values[node.var] = node.value
        self.visit(node.body)
        del self.let_values[node.var]

    def visit_Allocate(self, node: Allocate):
        scope = memory_scope(node.buffer)
        self.n["allocs_" + scope] += 1
        self.n["bytes_" + scope] += self.elements(node.buffer) * node.buffer.dtype.itemsize
        self.visit(node.body)

    def visit_Store(self, node: Store):
        scan = Scan(dict(self.let_values))
        scan.lanes = node.value.dtype.lanes
        scan.visit(node.value)
        scan.indices(node.indices)
        extents = self.extents()
        self.stores.append(StoreRecord(
            node, len(self.stores), list(self.loops), extents,
            math.prod(extents) * self.share, math.prod(l.extent for l in self.loops),
            max([scan.lanes, *(i.dtype.lanes for i in node.indices)]), node.value.dtype.lanes,
            scan.counts, scan.nodes, scan.loads, self.guards > 0, self.masked,
            self.parallel_extent(), self.grain()))

    # --- guards ---

    def guard(self, cond: Expr):
        """((narrowed ranges, share) of the then branch, the same of the else branch).

        A comparison of one loop variable with a constant narrows that loop's range;
        other conditions estimate the share of iterations that pass them.
        """
        if isinstance(cond, Broadcast):
            return self.guard(cond.value)
        if isinstance(cond, Not):
            then, otherwise = self.guard(cond.a)
            return otherwise, then
        if isinstance(cond, Logical):
            (ta, ea), (tb, eb) = self.guard(cond.a), self.guard(cond.b)
            if cond.op == "and":
                then = self.both(ta, tb)
                return then, ({}, 1.0 - self.passing(then))
            otherwise = self.both(ea, eb)
            return ({}, 1.0 - self.passing(otherwise)), otherwise
        if isinstance(cond, Compare):
            return self.compare(cond)
        if isinstance(cond, Const):
            return ({}, float(bool(cond.value))), ({}, float(not cond.value))
        return ({}, 0.5), ({}, 0.5)

    def both(self, a, b):
        """The effect of two guards that must both pass."""
        narrowed = dict(a[0])
        for v, (lo, hi) in b[0].items():
            lo0, hi0 = narrowed.get(v, (lo, hi))
            narrowed[v] = (max(lo, lo0), min(hi, hi0))
        return narrowed, a[1] * b[1]

    def passing(self, effect) -> float:
        """The share of the current iterations that an effect lets through."""
        narrowed, share = effect
        for v, (lo, hi) in narrowed.items():
            lo0, hi0 = self.ranges[v]
            share *= max(0.0, hi - lo + 1) / max(1.0, hi0 - lo0 + 1)
        return share

    def compare(self, cond: Compare):
        """The effects of a comparison, read as `d < 0`, `d == 0` or `d != 0`."""
        a, b = self.forms.form(cond.a), self.forms.form(cond.b)
        flip = cond.op in ("gt", "ge")
        d = plus(b, a, -1.0) if flip else plus(a, b, -1.0)
        if d.gather:
            return ({}, 0.5), ({}, 0.5)
        if d.exact:
            lo, hi = self.span(d, cond.a.dtype.lanes)
        else:  # through // or %: the operands' intervals keep their ranges
            ia, ib = self.interval(cond.a), self.interval(cond.b)
            if ia is None or ib is None:
                return ({}, 0.5), ({}, 0.5)
            (alo, ahi), (blo, bhi) = (ib, ia) if flip else (ia, ib)
            lo, hi = alo - bhi, ahi - blo
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return ({}, 0.5), ({}, 0.5)
        integer = not cond.a.dtype.is_float
        if cond.op in ("le", "ge") and integer:   # d <= 0 is d - 1 < 0
            d.const, lo, hi = d.const - 1.0, lo - 1.0, hi - 1.0
        if cond.op in ("eq", "ne"):
            share = 1.0 / (hi - lo + 1) if lo <= 0 <= hi else 0.0
            share = 1.0 - share if cond.op == "ne" else share
        elif integer and d.exact and len(d.coefs) == 1 and next(iter(d.coefs)) in self.ranges:
            (v, c), = d.coefs.items()
            return self.narrow(v, c, d.const)
        elif integer:
            share = min(1.0, max(0.0, -lo / (hi - lo + 1)))
        else:
            share = min(1.0, max(0.0, -lo / (hi - lo))) if hi > lo else float(lo < 0)
        return ({}, share), ({}, 1.0 - share)

    def interval(self, e: Expr):
        """(least, greatest) value of an index expression over the current ranges, or None."""
        if isinstance(e, Const):
            value = float(e.value)
            return (value, value) if math.isfinite(value) else None
        if isinstance(e, Var):
            if e in self.let_values:
                return self.interval(self.let_values[e])
            if e in self.forms.sizes:
                return float(SYMBOLIC_EXTENT), float(SYMBOLIC_EXTENT)
            return self.range_of(e)
        if isinstance(e, (Broadcast, Cast)):
            return self.interval(e.value)
        if isinstance(e, Ramp):
            base, stride = self.interval(e.base), self.interval(e.stride)
            if base is None or stride is None:
                return None
            last = (e.lanes - 1) * stride[0], (e.lanes - 1) * stride[1]
            return base[0] + min(0.0, *last), base[1] + max(0.0, *last)
        if isinstance(e, Binary):
            a, b = self.interval(e.a), self.interval(e.b)
            return None if a is None or b is None else _interval_op(e.op, a, b)
        return None

    def narrow(self, v, c: float, k: float):
        """The ranges of `v` where `c*v + k < 0` holds (then) and where it does not (else)."""
        lo, hi = self.ranges[v]
        if c > 0:
            last = math.ceil(-k / c) - 1
            return ({v: (lo, min(hi, last))}, 1.0), ({v: (max(lo, last + 1), hi)}, 1.0)
        first = math.floor(-k / c) + 1
        return ({v: (max(lo, first), hi)}, 1.0), ({v: (lo, min(hi, first - 1))}, 1.0)

    def span(self, f: Affine, lanes: int):
        """The least and greatest value of an affine form over the current ranges."""
        lo = hi = f.const
        for v, c in f.coefs.items():
            if v is LANE:
                a, b = 0.0, lanes - 1.0
            else:
                a, b = self.range_of(v)
            lo += min(c * a, c * b)
            hi += max(c * a, c * b)
        return lo, hi


def _interval_op(op: str, a: tuple, b: tuple):
    """The interval of `a op b` for intervals a and b, or None."""
    if op == "add":
        return a[0] + b[0], a[1] + b[1]
    if op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if op in ("mul", "min", "max"):
        if op != "mul":
            f = min if op == "min" else max
            return f(a[0], b[0]), f(a[1], b[1])
        ends = [x * y for x in a for y in b]
        return min(ends), max(ends)
    if b[0] != b[1] or not b[0]:   # only a division by a constant
        return None
    c = b[0]
    if op == "floordiv" and math.isfinite(a[0] / c) and math.isfinite(a[1] / c):
        ends = math.floor(a[0] / c), math.floor(a[1] / c)
        return float(min(ends)), float(max(ends))
    if op == "floormod" and c > 0:
        return a if 0 <= a[0] and a[1] < c else (0.0, c - 1.0)
    return None



def memory_scope(buffer) -> str:
    """"local" for a buffer of scope local, "global" for every other scope."""
    return "local" if buffer.scope == "local" else "global"
