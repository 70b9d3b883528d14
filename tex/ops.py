"""Building expressions: operator sugar, dtype promotion, constant folding.

The node classes in `tex.expr` check invariants and never convert anything;
this module turns Python values into constants, promotes operand dtypes
(rules in `tex.dtype`) and folds constant operands, so that the public
builders (`tex.exp`, `tex.if_then_else`, `a + b`, ...) always produce valid
nodes.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from tex.dtype import DType, as_dtype, bool_, float32, int32, promote, INDEX
from tex.errors import ExprError
from tex.expr import (Binary, Broadcast, Call, Cast, Compare, Const, Expr, Logical,
                      PureExternCall, Not, Select, _int_range)


def const(value, dtype=None) -> Expr:
    """A constant; the dtype defaults to int64 for ints, float32 for floats. A constant of
    a vector dtype ("float32x4") is the scalar in every lane (a `Broadcast`)."""
    if dtype is None:
        if isinstance(value, (bool, np.bool_)):
            dtype = bool_
        elif isinstance(value, (int, np.integer)):
            dtype = INDEX
        elif isinstance(value, (float, np.floating)):
            dtype = float32
        else:
            raise ExprError(f"cannot make a constant of {type(value).__name__} {value!r}")
    dtype = as_dtype(dtype)
    if dtype.lanes > 1:
        return Broadcast(Const(dtype.element, value), dtype.lanes)
    return Const(dtype, value)


def as_expr(value, like: DType | None = None) -> Expr:
    """Convert an Expr, IterVar or Python number to an Expr.

    A Python number adopts the dtype `like` where it can (promotion rule 1); where
    `like` is a vector dtype, in every lane.
    """
    if isinstance(value, Expr):
        return value
    if like is not None and like.lanes > 1 and isinstance(value, (int, float, np.number)):
        scalar = as_expr(value, like.element)
        return Broadcast(scalar, like.lanes) if scalar.dtype == like.element else scalar
    var = getattr(value, "var", None)  # an IterVar stands for its variable
    if isinstance(var, Expr):
        return var
    if isinstance(value, (bool, np.bool_)):
        return Const(bool_, value)
    if isinstance(value, (int, np.integer)):
        if like is not None and like.lanes == 1 and not like.is_bool:
            lo, hi = (-math.inf, math.inf) if like.is_float else _int_range(like)
            if lo <= int(value) <= hi:
                return Const(like, value)
        return Const(INDEX, value)
    if isinstance(value, (float, np.floating)):
        return Const(like if like is not None and like.is_float and like.lanes == 1
                     else float32, value)
    raise ExprError(f"expected an expression or a number, got {type(value).__name__} {value!r}")


def _operands(a, b):
    """Both operands as Exprs of one dtype, Python numbers adopting the other's."""
    if not isinstance(a, Expr) and getattr(a, "var", None) is None:
        b = as_expr(b)
        a = as_expr(a, b.dtype)
    else:
        a = as_expr(a)
        b = as_expr(b, a.dtype)
    if a.dtype.lanes != b.dtype.lanes and 1 in (a.dtype.lanes, b.dtype.lanes):
        # a scalar meeting a vector is broadcast to its lanes
        lanes = max(a.dtype.lanes, b.dtype.lanes)
        dtype = promote(a.dtype.element, b.dtype.element).with_lanes(lanes)
    else:
        dtype = promote(a.dtype, b.dtype)
    return cast(dtype, a), cast(dtype, b)


def cast(dtype, value) -> Expr:
    """`value` converted to `dtype` (a no-op when it already has it). A scalar dtype
    converts each lane of a vector; a scalar cast to a vector dtype is in every lane;
    vectors of different lanes do not convert."""
    dtype = as_dtype(dtype) if not isinstance(dtype, DType) else dtype
    value = as_expr(value)
    if value.dtype.lanes != dtype.lanes and dtype.lanes == 1:
        dtype = dtype.with_lanes(value.dtype.lanes)
    elif value.dtype.lanes == 1 and dtype.lanes > 1:
        return Broadcast(cast(dtype.element, value), dtype.lanes)
    elif value.dtype.lanes != dtype.lanes:
        raise ExprError(f"cannot cast {value.dtype} ({value}) to {dtype}: the lanes differ")
    if value.dtype == dtype:
        return value
    if isinstance(value, Const):
        return Const(dtype, _convert_constant(value.value, dtype))
    if isinstance(value, Broadcast):
        return Broadcast(cast(dtype.element, value.value), dtype.lanes)
    return Cast(dtype, value)


def _convert_constant(value, dtype: DType):
    if dtype.is_float:
        return float(np.array(value).astype(dtype.numpy))
    if dtype.is_bool:
        return bool(value)
    return int(np.array(value).astype(dtype.numpy))  # wraps like a C cast


_FOLD = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul,
    # NumPy's minimum/maximum: a NaN in either is the result (Python's min/max are not)
    "min": lambda x, y: x if x <= y or x != x else y,
    "max": lambda x, y: x if x >= y or x != x else y,
    "div": lambda x, y: x / y if y != 0 else None,
    "floordiv": lambda x, y: x // y if y != 0 else None,
    "floormod": lambda x, y: x % y if y != 0 else None,
}
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
            "gt": operator.gt, "ge": operator.ge}


def binary(op: str, a, b) -> Expr:
    """`a op b` with promotion; two constants fold; x+0, x*1 and friends simplify."""
    a, b = _operands(a, b)
    if a.dtype.is_bool:
        raise ExprError(f"operator {op} does not apply to bool operands ({a}, {b}); cast first")
    if op in ("floordiv", "floormod") and a.dtype.is_float:
        raw = Binary("div", a, b)
        floored = Call("floor", (raw,))
        return floored if op == "floordiv" else Binary("sub", a, Binary("mul", floored, b))
    if isinstance(a, Const) and isinstance(b, Const):
        folded = _FOLD[op](a.value, b.value)
        if folded is not None:
            return Const(a.dtype, _convert_constant(folded, a.dtype))
    if _is_const(b, 0) and op in ("add", "sub") or _is_const(b, 1) and op in ("mul", "floordiv"):
        return a
    if _is_const(a, 0) and op == "add" or _is_const(a, 1) and op == "mul":
        return b
    return Binary(op, a, b)


def _is_const(e: Expr, value) -> bool:
    return isinstance(e, Const) and e.value == value


def true_div(a, b) -> Expr:
    """Python's `/`: integers are converted to float32 (float64 stays float64)."""
    a, b = _operands(a, b)
    if not a.dtype.is_float:
        a, b = cast(float32, a), cast(float32, b)
    return binary("div", a, b)


def compare(op: str, a, b) -> Expr:
    a, b = _operands(a, b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(bool_, _COMPARE[op](a.value, b.value))
    return Compare(op, a, b)


def logical(op: str, a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    for side in (a, b):
        if not side.dtype.is_bool:
            raise ExprError(f"`{op}` needs bool operands, got {side.dtype} ({side}); "
                            "compare first, e.g. (x > 0)")
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Const):
            if op == "and":
                return y if x.value else x
            return x if x.value else y
    return Logical(op, a, b)


def logical_not(a) -> Expr:
    a = as_expr(a)
    if isinstance(a, Const) and a.dtype.is_bool:
        return Const(bool_, not a.value)
    return Not(a)


def zero_like(e: Expr) -> Const:
    return Const(e.dtype.element, 0)


def minimum(a, b) -> Expr:
    return binary("min", a, b)


def maximum(a, b) -> Expr:
    return binary("max", a, b)


def if_then_else(cond, true_value, false_value) -> Expr:
    """`true_value` where `cond` holds, else `false_value`; only the taken side is evaluated."""
    cond = as_expr(cond)
    if not cond.dtype.is_bool:
        raise ExprError(f"if_then_else condition must be bool, got {cond.dtype} ({cond})")
    t, f = _operands(true_value, false_value)
    if isinstance(cond, Const):
        return t if cond.value else f
    return Select(cond, t, f)


def call(name: str, *args) -> Expr:
    """A math intrinsic; integer arguments are converted to float32 first."""
    exprs = [as_expr(a) for a in args]
    dtype = exprs[0].dtype
    for e in exprs[1:]:
        dtype = promote(dtype, e.dtype)
    if not dtype.is_float and name != "abs":
        dtype = float32
    return Call(name, tuple(cast(dtype, e) for e in exprs))


def rounding(name: str, x) -> Expr:
    """`floor`, `ceil`, `trunc`, `round` or `nearbyint` of `x`: an integer or bool is already
    whole, so it is `x` itself (as TVM folds it); a float is the intrinsic's call."""
    x = as_expr(x)
    if x.dtype.is_int or x.dtype.is_bool:
        return x
    return call(name, x)


def bit_count(name: str, x) -> Expr:
    """`clz` (leading zero bits; all bits for 0) or `popcount` (one bits) of the integer
    `x`, counted in its two's complement bits, as a value of its dtype."""
    x = as_expr(x)
    if not x.dtype.is_int:
        raise ExprError(f"{name} needs an integer argument, got {x.dtype} ({x})")
    return Call(name, (x,))


def classify(name: str, x) -> Expr:
    """`isnan`, `isinf` or `isfinite` of `x` as a bool; integers and bools are finite
    numbers, as NumPy says."""
    x = as_expr(x)
    if x.dtype.is_float or x.dtype.lanes != 1:
        return Call(name, (x,))
    return Const(bool_, name == "isfinite")


def ldexp(x, n) -> Expr:
    """`x * 2**n` (NumPy's `ldexp`): `x` a float (an integer is converted to float32), `n`
    an integer, clamped to int32 (beyond it every float over- or underflows anyway)."""
    x = as_expr(x)
    if not x.dtype.is_float:
        x = cast(float32, x)
    n = as_expr(n, int32)
    if not n.dtype.is_int:
        raise ExprError(f"ldexp needs an integer exponent, got {n.dtype} ({n}); NumPy "
                        "rejects a float one too")
    low, high = _int_range(int32)
    if _int_range(n.dtype)[1] > high:
        n = minimum(n, Const(n.dtype, high))
    if _int_range(n.dtype)[0] < low:
        n = maximum(n, Const(n.dtype, low))
    return Call("ldexp", (x, cast(int32.with_lanes(n.dtype.lanes), n)))


def call_pure_extern(dtype, name: str, *args) -> Expr:
    """A call of the pure C function `name` returning `dtype` (TE's `call_pure_extern`).
    Each argument is passed with its own dtype (a Python float has `dtype` when that is a
    float, a Python int is int64), so cast to the function's parameter types."""
    dtype = as_dtype(dtype)
    return PureExternCall(dtype, name, tuple(
        as_expr(a, dtype if isinstance(a, (float, np.floating)) else None) for a in args))


def power(a, b) -> Expr:
    a, b = _operands(a, b)
    if not a.dtype.is_float:
        raise ExprError(f"`**` needs float operands, got {a.dtype}; cast first")
    return call("pow", a, b)


def abs_(x) -> Expr:
    x = as_expr(x)
    if x.dtype.is_int:
        return maximum(x, binary("sub", zero_like(x), x)) if x.dtype.is_signed else x
    return Call("abs", (x,))


def all_(*conds) -> Expr:
    """The conjunction of bool expressions (True for none)."""
    result = Const(bool_, True)
    for c in conds:
        result = logical("and", result, c)
    return result


def any_(*conds) -> Expr:
    """The disjunction of bool expressions (False for none)."""
    result = Const(bool_, False)
    for c in conds:
        result = logical("or", result, c)
    return result
