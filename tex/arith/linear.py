"""Linear forms `sum(coef*atom) + const` of index expressions.

`_linear` looks through `+`, `-` and `*` by constants; everything else is an
atom, compared structurally (variables by identity) through `_Key`.
Guarantees: `_from_linear(_linear(e))` equals `e` as a value (never as a
tree: terms come back positive first, then negative, then the constant), and
is None rather than an expression whose coefficients overflow the dtype.
`_merge_div_mod` keeps the value of the form it rewrites.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex.arith.interval import _fits
from tex.dtype import DType
from tex.expr import Binary, Const, Expr, structurally_equal


class _Key:
    """An expression as a dict key, compared structurally (variables by identity)."""

    __slots__ = ("expr", "_hash")

    def __init__(self, expr: Expr):
        self.expr = expr
        self._hash = hash(expr)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return structurally_equal(self.expr, other.expr)


@dataclass
class _Linear:
    """`sum(coef * atom) + const`; atoms keep first-appearance order, no zero coefs."""

    terms: dict
    const: int = 0

    def plus(self, other: _Linear, scale: int = 1) -> _Linear:
        terms = dict(self.terms)
        for key, coef in other.terms.items():
            total = terms.get(key, 0) + coef * scale
            if total:
                terms[key] = total
            else:
                terms.pop(key, None)
        return _Linear(terms, self.const + other.const * scale)

    def scaled(self, k: int) -> _Linear:
        if k == 0:
            return _Linear({}, 0)
        return _Linear({key: c * k for key, c in self.terms.items()}, self.const * k)


def _linear(e: Expr) -> _Linear:
    """The linear form of an index expression, looking through + - and * by constants."""
    if isinstance(e, Const):
        return _Linear({}, e.value)
    if isinstance(e, Binary):
        if e.op in ("add", "sub"):
            return _linear(e.a).plus(_linear(e.b), 1 if e.op == "add" else -1)
        if e.op == "mul" and isinstance(e.b, Const):
            return _linear(e.a).scaled(e.b.value)
        if e.op == "mul" and isinstance(e.a, Const):
            return _linear(e.b).scaled(e.a.value)
    return _Linear({_Key(e): 1}, 0)


def _from_linear(lin: _Linear, dtype: DType) -> Expr | None:
    """`lin` as an expression: positive terms, then negative ones, then the constant.

    None when a coefficient does not fit `dtype`.
    """
    values = [abs(c) for c in lin.terms.values()] + [lin.const, -lin.const]
    if not all(_fits(v, dtype) for v in values):
        return None

    def term(atom, k):
        return atom if k == 1 else Binary("mul", atom, Const(dtype, k))

    result, const = None, lin.const
    for key, k in lin.terms.items():
        if k > 0:
            t = term(key.expr, k)
            result = t if result is None else Binary("add", result, t)
    if result is None:
        result, const = Const(dtype, const), 0
    for key, k in lin.terms.items():
        if k < 0:
            result = Binary("sub", result, term(key.expr, -k))
    if const:
        result = Binary("add" if const > 0 else "sub", result, Const(dtype, abs(const)))
    return result


def _merge_div_mod(lin: _Linear) -> _Linear:
    """`(x // c)*c + x % c` -> `x`, `x - (x // c)*c` -> `x % c` and
    `(x // a % b)*a + x % a` -> `x % (a*b)` (a, b > 0: the digits of a fused loop's
    index put back together), times any k."""
    for key, k in lin.terms.items():
        e = key.expr
        if not (isinstance(e, Binary) and e.op in ("floordiv", "floormod")
                and isinstance(e.b, Const)):
            continue
        c, x = e.b.value, _Key(e.a)
        if e.op == "floormod":
            div = _Key(Binary("floordiv", e.a, e.b))
            if lin.terms.get(div) == k * c:
                merged = lin.plus(_Linear({key: k, div: k * c}), -1).plus(_linear(e.a), k)
                return _merge_div_mod(merged)
            inner = e.a
            if isinstance(inner, Binary) and inner.op == "floordiv" \
                    and isinstance(inner.b, Const) and inner.b.value > 0 and c > 0:
                a = inner.b.value
                low = _Key(Binary("floormod", inner.a, inner.b))
                if k % a == 0 and lin.terms.get(low) == k // a:
                    wide = _Key(Binary("floormod", inner.a, Const(inner.b.dtype, a * c)))
                    merged = lin.plus(_Linear({key: k, low: k // a}), -1) \
                        .plus(_Linear({wide: k // a}))
                    return _merge_div_mod(merged)
        elif x in lin.terms and k == -lin.terms[x] * c:
            mod = _Linear({_Key(Binary("floormod", e.a, e.b)): lin.terms[x]})
            return _merge_div_mod(lin.plus(_Linear({key: k, x: lin.terms[x]}), -1).plus(mod))
    return lin
