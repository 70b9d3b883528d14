"""Affine forms of index expressions: how an access's index moves with each loop.

An index is read as `sum(coefs[v] * v) + const` over loop variables and the
lane pseudo-variable `LANE`. The coefficient of a variable is the access's
stride along that loop: the change of its index (in elements) when the
variable grows by one. It is exact for affine indices, the average step
through `//`, the step through `%`, and taken at zero for a product of two
loop variables. Size variables (`tex.var`) count `SYMBOLIC_EXTENT`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tex.expr import Binary, Cast, Const, Expr, Let, Var
from tex.ir import Broadcast, Ramp
from tex.visitor import child_fields

#: The value assumed for every symbolic size (`tex.var`) when it sets an extent or a stride.
SYMBOLIC_EXTENT = 128
#: The lane pseudo-variable of affine forms: the lane number within a vector.
LANE = Var("lane")


@dataclass(slots=True)
class Affine:
    """`sum(coefs[v] * v) + const` over loop variables (and `LANE`).

    `exact` is False where the form approximates (through `//`, `%`, min/max or a
    product of variables); `gather` is True where the value depends on loaded
    data or a select, and then every variable found inside has coefficient 1.
    """

    coefs: dict
    const: float = 0.0
    exact: bool = True
    gather: bool = False


def plus(a: Affine, b: Affine, sign: float = 1.0) -> Affine:
    """The form of `a + sign * b`."""
    coefs = dict(a.coefs)
    for v, c in b.coefs.items():
        coefs[v] = coefs.get(v, 0.0) + sign * c
    return Affine({v: c for v, c in coefs.items() if c}, a.const + sign * b.const,
                  a.exact and b.exact, a.gather or b.gather)


def scaled(a: Affine, k: float) -> Affine:
    """The form of `k * a`."""
    return Affine({v: c * k for v, c in a.coefs.items() if c * k}, a.const * k,
                  a.exact, a.gather)


class Forms:
    """Affine forms of index expressions: size variables count `SYMBOLIC_EXTENT`,
    let-bound variables their value's form, any other variable is itself."""

    def __init__(self, sizes):
        self.sizes = set(sizes)
        self.lets: dict = {}  # definitions are unique after lowering, so one dict serves all

    def form(self, e: Expr) -> Affine:
        """The affine form of index expression `e` (recording the lets it binds)."""
        if isinstance(e, Const):
            value = float(e.value)
            return Affine({}, value) if math.isfinite(value) else Affine({}, 0.0, False, True)
        if isinstance(e, Var):
            if e in self.lets:
                return self.lets[e]
            return Affine({}, float(SYMBOLIC_EXTENT)) if e in self.sizes else Affine({e: 1.0})
        if isinstance(e, Ramp):
            base, stride = self.form(e.base), self.form(e.stride)
            lane = Affine({LANE: stride.const}, 0.0, stride.exact and not stride.coefs,
                          stride.gather)
            return plus(base, lane)
        if isinstance(e, (Broadcast, Cast)):
            return self.form(e.value)
        if isinstance(e, Let):
            self.lets[e.var] = self.form(e.value)
            return self.form(e.body)
        if isinstance(e, Binary):
            return self._binary(e.op, self.form(e.a), self.form(e.b))
        return self._gather(e)

    def _binary(self, op: str, a: Affine, b: Affine) -> Affine:
        if op in ("add", "sub"):
            return plus(a, b, 1.0 if op == "add" else -1.0)
        if op == "mul":
            if not a.coefs or not b.coefs:
                k, other = (a, b) if not a.coefs else (b, a)
                result = scaled(other, k.const)
                return Affine(result.coefs, result.const, a.exact and b.exact,
                              a.gather or b.gather)
            # A product of two variables: its slope at the origin.
            slope = plus(scaled(Affine(a.coefs), b.const), scaled(Affine(b.coefs), a.const))
            return Affine(slope.coefs, a.const * b.const, False, a.gather or b.gather)
        if op in ("floordiv", "floormod", "div") and not b.coefs and b.const:
            c = b.const
            if op == "floormod":
                return Affine(dict(a.coefs), a.const % c, not a.coefs, a.gather)
            const = a.const / c
            const = math.floor(const) if op == "floordiv" and math.isfinite(const) else const
            return Affine({v: k / c for v, k in a.coefs.items()}, const,
                          not a.coefs and op == "floordiv", a.gather)
        # min, max, or division by a variable: the first operand's form, inexact.
        return Affine(dict(a.coefs), a.const, False, a.gather or b.gather)

    def _gather(self, e) -> Affine:
        """A value from data (a load, a select, a call): depends on what it reads."""
        coefs: dict = {}
        for name in child_fields(type(e)):
            value = getattr(e, name)
            for child in (value if isinstance(value, tuple) else (value,)):
                if isinstance(child, Expr):
                    coefs.update(dict.fromkeys(self.form(child).coefs, 1.0))
        return Affine(coefs, 0.0, False, True)

