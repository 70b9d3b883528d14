"""Interval analysis: `bound` and `const_bound` of integer expressions.

Guarantees: `bound(e, ranges)` holds every value `e` takes while each variable
in `ranges` stays within its range. Variables in `ranges` are relaxed to
their (recursively relaxed) ranges, others stay symbolic, so the ends may
mention them; ends are simplified expressions, and an end that cannot be
bounded soundly is None (open).

This module builds on the simplifier (it simplifies every end it computes)
and imports it at the top; the simplifier in turn asks for bounds, importing
this module inside the methods that do (see simplifier.py).
"""
from __future__ import annotations

from tex import ops
from tex.arith.interval import Interval, _fits, _is_index
from tex.arith.simplifier import _as_ranges, _Simplifier, simplify
from tex.dtype import DType, INDEX
from tex.expr import (VSCALE_RANGE, Binary, Cast, Const, Expr, Let, Select, Var, VScale,
                      _int_range, structurally_equal)
from tex.ir import Broadcast, Ramp
from tex.visitor import child_fields


def _children(e: Expr):
    for name in child_fields(type(e)):
        value = getattr(e, name)
        if isinstance(value, tuple):
            yield from value
        elif value is not None:
            yield value


def _const_point(iv: Interval) -> int | None:
    lo = iv.const_lo
    return lo if lo is not None and lo == iv.const_hi else None


def _at_least(iv: Interval, value: int) -> bool:
    return iv.const_lo is not None and iv.const_lo >= value


def _widens(src: DType, dst: DType) -> bool:
    """Whether every value of integer dtype `src` is a value of `dst`."""
    if src.kind == dst.kind:
        return dst.bits >= src.bits
    return src.kind == "uint" and dst.kind == "int" and dst.bits > src.bits


class _Bounder:
    """Interval analysis under one `ranges` map; endpoints are simplified expressions.

    A variable with a range is replaced by its range, relaxed in turn (a
    variable met again while its own range is being relaxed is unbounded);
    every other variable stays symbolic. Results are memoised by node identity.
    """

    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.plain = _Simplifier({})
        self.memo: dict[int, tuple] = {}
        self.uses: dict[int, tuple] = {}
        self.relaxing: set = set()
        self.cycle = False

    def bound(self, e: Expr) -> Interval:
        hit = self.memo.get(id(e))
        if hit is not None:
            return hit[1]
        iv = self._bound(e)
        if not self.cycle:
            self.memo[id(e)] = (e, iv)
        return iv

    def _uses_ranged(self, e: Expr) -> bool:
        if isinstance(e, Var):
            return e in self.ranges
        if isinstance(e, VScale):
            return True
        hit = self.uses.get(id(e))
        if hit is None:
            hit = (e, any(self._uses_ranged(c) for c in _children(e)))
            self.uses[id(e)] = hit
        return hit[1]

    def _bound(self, e: Expr) -> Interval:
        if isinstance(e, Var) and e in self.ranges:
            return self._var(e)
        if isinstance(e, VScale):
            return Interval(*(Const(e.dtype, v) for v in VSCALE_RANGE))
        if not self._uses_ranged(e):
            return Interval.point(self.plain.rewrite(e))
        if isinstance(e, Binary) and _is_index(e):
            return getattr(self, "_" + e.op)(self.bound(e.a), self.bound(e.b))
        if isinstance(e, Select) and _is_index(e):
            return self._union(self.bound(e.true_value), self.bound(e.false_value))
        if isinstance(e, Cast) and e.dtype.is_int and e.dtype.lanes == 1:
            return self._cast(e)
        if isinstance(e, Broadcast):
            return self.bound(e.value)
        if isinstance(e, Ramp):
            last = ops.binary("add", e.base, ops.binary("mul", e.stride, e.lanes - 1))
            return self._union(self.bound(e.base), self.bound(last))
        if isinstance(e, Let) and _is_index(e):
            inner = {**self.ranges, e.var: self.bound(e.value)}
            return _Bounder(inner).bound(e.body)
        return Interval.everything()

    def _var(self, v: Var) -> Interval:
        if v in self.relaxing:
            self.cycle = True
            return Interval.everything()
        r = self.ranges[v]
        self.relaxing.add(v)
        try:
            lo = None if r.lo is None else self.bound(r.lo).lo
            hi = None if r.hi is None else self.bound(r.hi).hi
        finally:
            self.relaxing.discard(v)
        return Interval(lo, hi)

    def _op(self, op: str, a, b) -> Expr | None:
        """`a op b` simplified, None (unbounded) if either is None."""
        if a is None or b is None:
            return None
        return self.plain.rewrite(ops.binary(op, a, b))

    def _add(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("add", a.lo, b.lo), self._op("add", a.hi, b.hi))

    def _sub(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("sub", a.lo, b.hi), self._op("sub", a.hi, b.lo))

    def _mul(self, a: Interval, b: Interval) -> Interval:
        for x, y in ((a, b), (b, a)):
            c = _const_point(y)
            if c == 0:
                return Interval(0, 0)
            if c is not None:
                lo, hi = self._op("mul", x.lo, c), self._op("mul", x.hi, c)
                return Interval(lo, hi) if c > 0 else Interval(hi, lo)
        if a.is_const and b.is_const:
            corners = [i * j for i in (a.const_lo, a.const_hi) for j in (b.const_lo, b.const_hi)]
            return Interval(min(corners), max(corners))
        if _at_least(a, 0) and _at_least(b, 0):
            return Interval(self._op("mul", a.lo, b.lo), self._op("mul", a.hi, b.hi))
        return Interval.everything()

    def _floordiv(self, a: Interval, b: Interval) -> Interval:
        c = _const_point(b)
        if c is not None and c != 0:
            lo, hi = self._op("floordiv", a.lo, c), self._op("floordiv", a.hi, c)
            return Interval(lo, hi) if c > 0 else Interval(hi, lo)
        if _at_least(b, 1) and _at_least(a, 0):
            return Interval(0, self._op("floordiv", a.hi, b.lo))
        return Interval.everything()

    def _floormod(self, a: Interval, b: Interval) -> Interval:
        """`[0, c-1]`, or `[lo % c, hi % c]` when the operand stays within one period."""
        c = _const_point(b)
        if c is not None and c > 0:
            if a.lo is not None and a.hi is not None and structurally_equal(
                    self._op("floordiv", a.lo, c), self._op("floordiv", a.hi, c)):
                return Interval(self._op("floormod", a.lo, c), self._op("floormod", a.hi, c))
            hi = Const(INDEX, c - 1)
        elif c is not None and c < 0:
            return Interval(c + 1, 0)
        elif _at_least(b, 1):
            hi = self._op("sub", b.hi, 1)
        else:
            return Interval.everything()
        if _at_least(a, 0) and a.hi is not None:
            hi = a.hi if hi is None else self._op("min", a.hi, hi)
        return Interval(0, hi)

    def _min(self, a: Interval, b: Interval) -> Interval:
        hi = b.hi if a.hi is None else a.hi if b.hi is None else self._op("min", a.hi, b.hi)
        return Interval(self._op("min", a.lo, b.lo), hi)

    def _max(self, a: Interval, b: Interval) -> Interval:
        lo = b.lo if a.lo is None else a.lo if b.lo is None else self._op("max", a.lo, b.lo)
        return Interval(lo, self._op("max", a.hi, b.hi))

    def _union(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("min", a.lo, b.lo), self._op("max", a.hi, b.hi))

    def _cast(self, e: Cast) -> Interval:
        src, dst = e.value.dtype, e.dtype
        if src.is_bool:
            return Interval(Const(dst, 0), Const(dst, 1))
        if src.is_int:
            inner = self.bound(e.value)
            if _widens(src, dst):
                lo, hi = (None if x is None else self.plain.rewrite(ops.cast(dst, x))
                          for x in (inner.lo, inner.hi))
                return Interval(lo, hi)
            if inner.is_const and _fits(inner.const_lo, dst) and _fits(inner.const_hi, dst):
                return Interval(Const(dst, inner.const_lo), Const(dst, inner.const_hi))
        lo, hi = _int_range(dst)
        return Interval(Const(dst, lo), Const(dst, hi))


def bound(expr: Expr, ranges: dict | None = None) -> Interval:
    """An interval holding every value of integer `expr` while variables stay in `ranges`.

    Variables in `ranges` are relaxed to their (recursively relaxed) ranges;
    others stay symbolic, so bounds may mention them. Endpoints are simplified;
    an end that cannot be bounded soundly is None.
    """
    ranges = _as_ranges(ranges)
    return _Bounder(ranges).bound(simplify(expr, ranges))


def const_bound(expr: Expr, ranges: dict | None = None) -> tuple[int | None, int | None]:
    """Constant lower and upper bounds of `expr` (None where not constant)."""
    iv = bound(expr, ranges)
    return iv.const_lo, iv.const_hi
