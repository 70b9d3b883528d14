"""`evaluate`: the value of a scalar expression with compiled tex's semantics.

Guarantees: integer `//` and `%` floor, integer results wrap to their dtype
like C, float-to-int casts truncate toward zero, float results round to their
dtype, and `select` evaluates only the side it picks. The rule-table tests and
the simplifier's constant folding rely on it agreeing with codegen.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from tex.dtype import DType
from tex.expr import (Binary, Call, Cast, Compare, Const, Expr, Let, Logical, Not, Select, Var,
                      VScale)
from tex.visitor import handler

_COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
            "gt": operator.gt, "ge": operator.ge}


_INT_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "min": min,
            "max": max, "floordiv": operator.floordiv, "floormod": operator.mod}
_FLOAT_OPS = {**_INT_OPS, "div": operator.truediv, "floordiv": np.floor_divide,
              "floormod": np.mod}
_CALLS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda v: 1.0 / np.sqrt(v),
          "tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "erf": math.erf,
          "abs": abs, "floor": np.floor, "ceil": np.ceil, "pow": np.power,
          "fmax": np.fmax, "fmin": np.fmin, "nearbyint": np.rint, "round": np.round,
          "trunc": np.trunc, "exp2": np.exp2, "exp10": lambda v: np.power(10.0, v),
          "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
          "tan": np.tan, "sinh": np.sinh, "cosh": np.cosh, "asin": np.arcsin,
          "acos": np.arccos, "atan": np.arctan, "asinh": np.arcsinh, "acosh": np.arccosh,
          "atanh": np.arctanh, "atan2": np.arctan2, "hypot": np.hypot,
          "copysign": np.copysign, "fmod": np.fmod,
          "ldexp": lambda x, n: np.ldexp(x, np.int64(n))}
_PREDICATES = {"isnan": math.isnan, "isinf": math.isinf, "isfinite": math.isfinite}
#: Bit counts of an integer's two's complement `bits` bits.
_BIT_COUNTS = {"clz": lambda v, bits: bits - (v & ((1 << bits) - 1)).bit_length(),
               "popcount": lambda v, bits: (v & ((1 << bits) - 1)).bit_count()}


def evaluate(expr: Expr, env: dict):
    """The value of the scalar `expr`, `env` giving each free variable's value (and, keyed
    by `VScale()`, the machine's `vscale()`).

    Semantics match compiled tex code: `//` and `%` floor (`-7 // 2 == -4`),
    integer results wrap to their dtype like C, float-to-int casts truncate
    toward zero, float results round to their dtype (float32 through NumPy),
    and `select` evaluates only the side it picks. Raises KeyError for a
    variable missing from `env`, ZeroDivisionError for an integer division by
    zero, TypeError for a node that is not a scalar expression.
    """
    if expr.dtype.lanes != 1:
        raise TypeError(f"evaluate: {expr} is a vector of {expr.dtype}; only scalars evaluate")
    return _Evaluator(env).value(expr)


class _Evaluator:
    """`value_<Node>` per kind of scalar expression (the dispatch rule of `tex.visitor`)."""

    def __init__(self, env: dict):
        self.env = env

    def value(self, e: Expr):
        method = handler(self, "value_", e)
        if method is None:
            raise TypeError(f"evaluate: cannot evaluate a {type(e).__name__} ({e})")
        return method(e)

    def value_Const(self, e: Const):
        return _convert(e.value, e.dtype)

    def value_Var(self, e: Var):
        if e not in self.env:
            raise KeyError(f"evaluate: no value given for variable {e.name!r}")
        return _convert(self.env[e], e.dtype)

    def value_VScale(self, e: VScale):
        if e not in self.env:
            raise KeyError("evaluate: no value given for vscale(), the machine's")
        return self.env[e]

    def value_Binary(self, e: Binary):
        return _binary_value(e.op, self.value(e.a), self.value(e.b), e.dtype)

    def value_Compare(self, e: Compare):
        return bool(_COMPARE[e.op](self.value(e.a), self.value(e.b)))

    def value_Logical(self, e: Logical):
        a = self.value(e.a)
        return (a and self.value(e.b)) if e.op == "and" else (a or self.value(e.b))

    def value_Not(self, e: Not):
        return not self.value(e.a)

    def value_Select(self, e: Select):
        return self.value(e.true_value if self.value(e.cond) else e.false_value)

    def value_Cast(self, e: Cast):
        return _convert(self.value(e.value), e.dtype)

    def value_Call(self, e: Call):
        return _call_value(e, [self.value(a) for a in e.args])

    def value_Let(self, e: Let):
        return evaluate(e.body, {**self.env, e.var: self.value(e.value)})


def _binary_value(op: str, a, b, dtype: DType):
    if dtype.is_float:
        with np.errstate(all="ignore"):
            return dtype.round(_FLOAT_OPS[op](np.float64(a), np.float64(b)))
    return _wrap(_INT_OPS[op](a, b), dtype)


def _call_value(e: Call, args):
    if e.name in _BIT_COUNTS:
        return _BIT_COUNTS[e.name](args[0], e.dtype.bits)
    if e.name in _PREDICATES:
        return _PREDICATES[e.name](args[0])
    if not e.dtype.is_float:
        return _wrap(abs(args[0]), e.dtype)
    with np.errstate(all="ignore"):
        if e.name == "nextafter":
            return _nextafter(args[0], args[1], e.dtype)
        return e.dtype.round(_CALLS[e.name](*(np.float64(a) for a in args)))


def _nextafter(x: float, y: float, dtype: DType) -> float:
    """One step from `x` toward `y` in `dtype` itself (not in float64); `y` when they are
    equal, as C says (NumPy's float16 returns `x`, the first of two zeros)."""
    if x == y:
        return y
    scalar = dtype.numpy.type
    return float(np.nextafter(scalar(x), scalar(y)))


def _convert(value, dtype: DType):
    """`value` as a Python value of `dtype`, converted like a C cast."""
    if dtype.is_bool:
        return bool(value)
    if dtype.is_float:
        return dtype.round(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"evaluate: cannot convert {value} to {dtype}")
        value = math.trunc(value)
    return _wrap(int(value), dtype)


def _wrap(value: int, dtype: DType) -> int:
    bits = dtype.bits
    value &= (1 << bits) - 1
    return value - (1 << bits) if dtype.kind == "int" and value >> (bits - 1) else value
