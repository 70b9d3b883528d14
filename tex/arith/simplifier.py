"""The simplifier: `simplify` rewrites an expression into an equal, canonical one.

Bottom up, each node is constant-folded, then rewritten by the first rule of
`RULES` that applies, else by the linear-form and interval reasoning of
`_Simplifier` (sums, `//` and `%` by constants, min/max, comparisons, and
Ramp/Broadcast arithmetic pushed into scalars); a rewritten node is simplified
again. Guarantees: the result equals `expr` wherever the variables lie in
their ranges, keeps its dtype, and is `expr` itself when nothing simplifies.
Floats and unsigned integers are only constant-folded.

The simplifier and the interval analysis call each other: deciding `x < n`
needs the bounds of `x - n`, and bounds are simplified expressions. The
dependency is one way at import time: bounds.py imports this module, and this
module reaches the interval analysis only through imports inside the two
methods that need it (`_Simplifier._const_bound` and `_Simplifier._let`).
"""
from __future__ import annotations

import math

from tex import ops
from tex.arith.evaluation import evaluate
from tex.arith.interval import Interval, _is_index
from tex.arith.linear import _from_linear, _Linear, _linear, _merge_div_mod
from tex.arith.rules import _apply_rules
from tex.dtype import DType, bool_
from tex.expr import (Binary, Cast, Compare, Const, Expr, Let, Logical, Not, Select, Var,
                      structurally_equal)
from tex.ir import Broadcast, Ramp
from tex.visitor import Rewriter, child_fields, substitute

_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
_OTHER = {"min": "max", "max": "min"}
_MAX_DEPTH = 60  # nested re-simplifications; a safety net, rules terminate on their own


def _fold(e: Expr) -> Expr:
    """`e` with constant operands computed and constant conditions decided."""
    if isinstance(e, Select) and isinstance(e.cond, Const):
        return e.true_value if e.cond.value else e.false_value
    if isinstance(e, Logical) and (isinstance(e.a, Const) or isinstance(e.b, Const)):
        return ops.logical(e.op, e.a, e.b)
    if (isinstance(e, (Binary, Compare, Not, Cast)) and e.dtype.lanes == 1
            and all(isinstance(getattr(e, f), Const) for f in child_fields(type(e)))):
        try:
            return Const(e.dtype, evaluate(e, {}))
        except (ZeroDivisionError, ValueError, OverflowError):
            return e
    return e


class _Simplifier(Rewriter):
    """Bottom-up simplification under one `ranges` map, memoised by node identity."""

    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.memo: dict[int, tuple] = {}
        self.depth = 0
        self._bounder = None

    def rewrite(self, node):
        hit = self.memo.get(id(node))
        if hit is not None:
            return hit[1]
        if isinstance(node, Let):
            result = self._let(node)
        else:
            new = self.generic_rewrite(node)
            result = self._node(new) if isinstance(new, Expr) else new
            if result is not node and structurally_equal(result, node):
                result = node
        self.memo[id(node)] = (node, result)
        return result

    def _node(self, e: Expr) -> Expr:
        """Simplify `e`, whose children are simplified already."""
        e = _fold(e)
        new = _apply_rules(e)
        if new is None:
            new = self._arith(e)
        if new is None or self.depth >= _MAX_DEPTH:
            return e if new is None else new
        self.depth += 1
        try:
            return self.rewrite(new)
        finally:
            self.depth -= 1

    def _arith(self, e: Expr) -> Expr | None:
        """A rewrite from linear forms and intervals, or None."""
        if e.dtype.lanes > 1:
            return _vector(e)
        if isinstance(e, Var) and e in self.ranges:
            r = self.ranges[e]
            return Const(e.dtype, r.const_lo) if r.is_const and r.const_lo == r.const_hi else None
        if isinstance(e, Binary) and _is_index(e):
            if e.op in ("add", "sub", "mul"):
                return self._sum(e)
            if e.op in ("floordiv", "floormod"):
                return self._divmod(e)
            if e.op in ("min", "max"):
                return self._minmax(e)
        if isinstance(e, Compare) and _is_index(e.a):
            return self._compare(e)
        return None

    def _const_bound(self, e: Expr) -> tuple[int | None, int | None]:
        if isinstance(e, Const):
            return e.value, e.value
        if not self.ranges:
            return None, None
        if self._bounder is None:
            from tex.arith.bounds import _Bounder  # bounds.py imports this module

            self._bounder = _Bounder(self.ranges)
        iv = self._bounder.bound(e)
        return iv.const_lo, iv.const_hi

    def _sum(self, e: Binary) -> Expr | None:
        """Canonical linear form: `(a + 3) + (b - 3)` -> `a + b`, `i*4 + i*2` -> `i*6`."""
        lin = _merge_div_mod(_linear(e))
        new = self._absorb_minmax(lin, e.dtype)
        if new is None:
            new = _from_linear(lin, e.dtype)
        return None if new is None or structurally_equal(new, e) else new

    def _absorb_minmax(self, lin: _Linear, dtype: DType) -> Expr | None:
        """`min(a, b) + rest` -> `min(a + rest, b + rest)` where that cancels terms.

        E.g. `min(io*32 + 32, n) - io*32` -> `min(32, n - io*32)`.
        """
        for key, coef in lin.terms.items():
            m = key.expr
            if coef not in (1, -1) or not (isinstance(m, Binary) and m.op in _OTHER):
                continue
            rest = _Linear({k: c for k, c in lin.terms.items() if k is not key})
            la, lb = _linear(m.a).scaled(coef), _linear(m.b).scaled(coef)
            na, nb = la.plus(rest), lb.plus(rest)
            if len(na.terms) + len(nb.terms) >= len(la.terms) + len(lb.terms) + len(rest.terms):
                continue
            a, b = _from_linear(na, dtype), _from_linear(nb, dtype)
            if a is None or b is None:
                continue
            inner = Binary(m.op if coef == 1 else _OTHER[m.op], a, b)
            return Binary("add", inner, Const(dtype, lin.const)) if lin.const else inner
        return None

    def _divmod(self, e: Binary) -> Expr | None:
        """`//` and `%` by a positive constant c, splitting the dividend's linear form.

        Tries `_divmod_split` with g = c, then with the gcds of c and the
        coefficients; otherwise moves out the part divisible by c:
        `(x*c + y) // c` -> `x + y // c`, `(x*c + y) % c` -> `y % c`.
        """
        if not isinstance(e.b, Const) or e.b.value <= 0:
            return None
        c, lin = e.b.value, _linear(e.a)
        gcds = {math.gcd(c, k) for k in lin.terms.values()} - {1, c}
        for g in [c] + sorted(gcds, reverse=True):
            new = self._divmod_split(e, lin, g)
            if new is not None:
                return new
        moved = lin.const - lin.const % c if lin.const >= c else 0
        m = _Linear({key: k // c for key, k in lin.terms.items() if k % c == 0}, moved // c)
        r = _Linear({key: k for key, k in lin.terms.items() if k % c}, lin.const - moved)
        m_expr, r_expr = _from_linear(m, e.dtype), _from_linear(r, e.dtype)
        if (not m.terms and not m.const) or m_expr is None or r_expr is None:
            return None
        rest = Binary(e.op, r_expr, e.b)
        return rest if e.op == "floormod" else Binary("add", m_expr, rest)

    def _divmod_split(self, e: Binary, lin: _Linear, g: int) -> Expr | None:
        """With `L = g*M + R`, g dividing c, and R provably in `[k*g, (k+1)*g)`:
        `L // c = (M + k) // (c/g)` and `L % c = g*((M + k) % (c/g)) + R - k*g`."""
        c, dtype = e.b.value, e.dtype
        m = _Linear({key: k // g for key, k in lin.terms.items() if k % g == 0})
        r = _Linear({key: k for key, k in lin.terms.items() if k % g}, lin.const)
        r_expr = _from_linear(r, dtype)
        lo, hi = self._const_bound(r_expr) if r_expr is not None else (None, None)
        if lo is None or hi is None or lo // g != hi // g:
            return None
        k = lo // g
        mk = _from_linear(m.plus(_Linear({}, k)), dtype)
        rem = _from_linear(r.plus(_Linear({}, -k * g)), dtype)
        if mk is None or rem is None:
            return None
        if g == c:
            return mk if e.op == "floordiv" else rem
        periods = Const(dtype, c // g)
        if e.op == "floordiv":
            return Binary("floordiv", mk, periods)
        return Binary("add", Binary("mul", Binary("floormod", mk, periods), Const(dtype, g)), rem)

    def _minmax(self, e: Binary) -> Expr | None:
        """min/max decided when the interval of `a - b` has a known sign."""
        diff = _from_linear(_linear(e.a).plus(_linear(e.b), -1), e.dtype)
        lo, hi = self._const_bound(diff) if diff is not None else (None, None)
        if hi is not None and hi <= 0:
            return e.a if e.op == "min" else e.b
        if lo is not None and lo >= 0:
            return e.b if e.op == "min" else e.a
        return None

    def _compare(self, e: Compare) -> Expr | None:
        """Decide `a op b` from the interval of `a - b`, else move terms: `x + 3 < 5` -> `x < 2`."""
        d = _linear(e.a).plus(_linear(e.b), -1)
        diff = _from_linear(d, e.a.dtype)
        lo, hi = self._const_bound(diff) if diff is not None else (None, None)
        decided = _decide(e.op, -math.inf if lo is None else lo, math.inf if hi is None else hi)
        if decided is not None:
            return Const(bool_, decided)
        d = _divide_by_gcd(e.op, d)
        if isinstance(d, bool):
            return Const(bool_, d)
        pos = _Linear({k: c for k, c in d.terms.items() if c > 0})
        neg = _Linear({k: -c for k, c in d.terms.items() if c < 0})
        if pos.terms:
            lhs, rhs, op = pos, neg.plus(_Linear({}, -d.const)), e.op
        else:
            lhs, rhs, op = neg, _Linear({}, d.const), _FLIP[e.op]
        a, b = _from_linear(lhs, e.a.dtype), _from_linear(rhs, e.a.dtype)
        if a is None or b is None:
            return None
        new = Compare(op, a, b)
        return None if structurally_equal(new, e) else new

    def _let(self, e: Let) -> Expr:
        value = self.rewrite(e.value)
        if isinstance(value, (Const, Var)):
            return self.rewrite(substitute(e.body, {e.var: value}))
        ranges = self.ranges
        if _is_index(value):
            from tex.arith.bounds import bound  # bounds.py imports this module

            ranges = {**ranges, e.var: bound(value, ranges)}
        body = _Simplifier(ranges).rewrite(e.body)
        return e if value is e.value and body is e.body else Let(e.var, value, body)


#: op -> (holds when a - b lies in [lo, hi], fails when it lies there)
_DECISIONS = {
    "lt": (lambda lo, hi: hi < 0, lambda lo, hi: lo >= 0),
    "le": (lambda lo, hi: hi <= 0, lambda lo, hi: lo > 0),
    "gt": (lambda lo, hi: lo > 0, lambda lo, hi: hi <= 0),
    "ge": (lambda lo, hi: lo >= 0, lambda lo, hi: hi < 0),
    "eq": (lambda lo, hi: lo == hi == 0, lambda lo, hi: lo > 0 or hi < 0),
    "ne": (lambda lo, hi: lo > 0 or hi < 0, lambda lo, hi: lo == hi == 0),
}


def _decide(op: str, lo, hi) -> bool | None:
    """True/False when `d op 0` holds/fails for every d in [lo, hi]; None when unknown."""
    holds, fails = _DECISIONS[op]
    return True if holds(lo, hi) else False if fails(lo, hi) else None


def _divide_by_gcd(op: str, d: _Linear) -> _Linear | bool:
    """`d op 0` with d's coefficients divided by their gcd: `x*2 - 8 < 0` -> `x - 4 < 0`.

    A bool when the division decides it (`x*4 - 6 == 0` is False).
    """
    g = math.gcd(*d.terms.values())
    if g == 1:
        return d
    if op in ("eq", "ne") and d.const % g:
        return op == "ne"
    # lt/ge round the constant down, le/gt up (eq/ne divide exactly)
    const = d.const // g if op in ("lt", "ge", "eq", "ne") else -(-d.const // g)
    return _Linear({key: c // g for key, c in d.terms.items()}, const)


def _vector(e: Expr) -> Expr | None:
    """Push arithmetic on Ramp/Broadcast into their scalar parts."""
    if isinstance(e, Ramp) and isinstance(e.stride, Const) and e.stride.value == 0:
        return Broadcast(e.base, e.lanes)
    if not isinstance(e, (Binary, Compare)):
        return None
    a, b = e.a, e.b
    if isinstance(a, Broadcast) and isinstance(b, Broadcast):
        return Broadcast(type(e)(e.op, a.value, b.value), a.lanes)
    if not isinstance(e, Binary) or e.dtype.kind != "int":
        return None
    vectors = (Ramp, Broadcast)
    if e.op in ("add", "sub") and isinstance(a, vectors) and isinstance(b, vectors):
        (base_a, stride_a), (base_b, stride_b) = _ramp_parts(a), _ramp_parts(b)
        return Ramp(Binary(e.op, base_a, base_b), Binary(e.op, stride_a, stride_b), e.dtype.lanes)
    if e.op == "mul":
        for r, s in ((a, b), (b, a)):
            if isinstance(r, Ramp) and isinstance(s, Broadcast):
                scale = s.value
                return Ramp(Binary("mul", r.base, scale), Binary("mul", r.stride, scale), r.lanes)
    return None


def _ramp_parts(v: Expr) -> tuple[Expr, Expr]:
    """(base, stride) of a Ramp, or of a Broadcast seen as a ramp of stride 0."""
    if isinstance(v, Ramp):
        return v.base, v.stride
    return v.value, Const(v.value.dtype, 0)


def _as_ranges(ranges) -> dict:
    return {v: r if isinstance(r, Interval) else Interval(*r) for v, r in (ranges or {}).items()}


def simplify(expr: Expr, ranges: dict | None = None) -> Expr:
    """An expression equal to `expr` wherever its variables lie in `ranges`, in canonical form.

    `ranges` maps variables to `Interval`s (or `(lo, hi)` pairs); bounds may
    mention other variables. The dtype never changes, and `expr` itself comes
    back when nothing simplifies. What it does: constant folding; the
    algebraic `RULES`; sums as linear forms (`(io*32 + ii) - io*32` -> `ii`);
    `//` and `%` by positive constants split by ranges (`(io*32 + ii) // 32`
    -> `io` for ii in [0, 31]); min/max and comparisons decided by intervals;
    Ramp/Broadcast arithmetic pushed into scalars. Floats only fold.
    """
    return _Simplifier(_as_ranges(ranges)).rewrite(expr)


def scope_simplifier(ranges: dict | None = None):
    """`simplify` under fixed `ranges`, as a function that remembers each node it
    simplified (by identity): for the many expressions of one loop scope, whose
    shared subexpressions are then simplified once. The ranges must not change
    while the function is in use."""
    return _Simplifier(_as_ranges(ranges)).rewrite


def prove(cond: Expr, ranges: dict | None = None) -> bool:
    """True only if the bool `cond` provably holds wherever variables lie in `ranges`."""
    result = simplify(cond, ranges)
    return isinstance(result, Const) and result.value is True
