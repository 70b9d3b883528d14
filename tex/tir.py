"""TVM's `tvm.tir` expression helpers, in tex's terms, so that TE code ports by renaming.

    from tex import tir                     # was: from tvm import tir
    tir.if_then_else(i < n, A[i], tir.const(0, "float32"))
    tir.truncdiv(x, 4), tir.floormod(x, 4), tir.all(i >= 1, i < n - 1)

Division comes in three flavours, as in TVM:

* `floordiv` / `floormod` (and `indexdiv` / `indexmod`, which TVM uses for
  indices it assumes non-negative): rounding toward negative infinity, the
  remainder taking the divisor's sign; these are tex's `//` and `%`.
* `truncdiv` / `truncmod`: C's integer `/` and `%`, rounding toward zero, the
  remainder taking the dividend's sign (`np.fix(a / b)`, `np.fmod`). Built
  from the floor operations and a select; integers only.
* `div`: true division for floats, `truncdiv` for integers.

Like the rest of tex, dividing an integer by zero gives 0 (quotient and
remainder), never a trap.

`Var`, `SizeVar`, `IntImm`, `FloatImm` and `Cast` build expressions (they are
functions here, not node classes: test an expression with `isinstance(e,
tex.Var)`); `isinstance(s, Evaluate)` asks whether a statement calls a function.
`Select` evaluates only the side its condition chooses (TVM's evaluates both),
which is safe either way.

For tensor intrinsics written the TE way: `decl_buffer` (`tex.buffer_decl`),
`call_extern` and `ir_builder.create()` (`tex.ir_builder`).
"""
from __future__ import annotations

from tex import ir_builder, ops, stmt_functor  # noqa: F401 - tvm.tir.stmt_functor
from tex.buffer_decl import decl_buffer
from tex.errors import ExprError
from tex.ops import call_pure_extern  # noqa: F401 - re-exported: tvm.tir.call_pure_extern
from tex.expr import Const, Expr
from tex.expr import Var as _VarNode
from tex.ir import ExternCall, IntrinsicCall, PackedCall
from tex.tensor import (comm_reducer, const, max, max_value, min, min_value,  # noqa: A004
                        size_var, sum, var)

__all__ = ["Cast", "Evaluate", "FloatImm", "IntImm", "Select", "SizeVar", "Var", "all", "any",
           "call_extern", "call_pure_extern", "cast", "comm_reducer", "const", "decl_buffer", "div",
           "floordiv", "floormod", "if_then_else", "indexdiv", "indexmod", "ir_builder", "max",
           "max_value", "min", "min_value", "stmt_functor", "sum", "truncdiv", "truncmod"]

call_extern = ir_builder.call_extern
all = ops.all_  # noqa: A001 - TVM's name
any = ops.any_  # noqa: A001 - TVM's name
if_then_else = ops.if_then_else
Select = ops.if_then_else


class _CallStatement(type):
    """The type of `Evaluate`: `isinstance(s, Evaluate)` asks whether `s` is a statement
    that calls a function for its effect (tex's `ExternCall`, `PackedCall` and
    `IntrinsicCall`: what TVM writes as `Evaluate(call)`)."""

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, (ExternCall, PackedCall, IntrinsicCall))


class Evaluate(metaclass=_CallStatement):
    """TVM's statement that evaluates a call, for `isinstance` tests only."""


class _ConstantKind(type):
    """The type of `IntImm` and `FloatImm`: calling one makes a `Const` of its kind, and
    `isinstance(e, IntImm)` asks whether `e` is a constant of that kind, as in TVM."""

    def __call__(cls, dtype, value) -> Expr:
        return _typed_const(cls.__name__, dtype, value, cls.fits)

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Const) and cls.fits(obj.dtype)


class IntImm(metaclass=_ConstantKind):
    """An integer (or bool) constant. TVM: `tir.IntImm(dtype, value)`."""

    @staticmethod
    def fits(dtype) -> bool:
        return dtype.is_int or dtype.is_bool


class FloatImm(metaclass=_ConstantKind):
    """A float constant. TVM: `tir.FloatImm(dtype, value)`."""

    @staticmethod
    def fits(dtype) -> bool:
        return dtype.is_float


def _typed_const(who: str, dtype, value, fits) -> Expr:
    constant = ops.const(value, dtype)
    if not fits(constant.dtype):
        raise ExprError(f"{who}: dtype {constant.dtype} is not the kind {who} makes")
    return constant


def Var(name: str = "v", dtype="int64") -> _VarNode:
    """A variable bound when a kernel is called (a symbolic size, or a scalar parameter
    in `build`'s args), as `tex.var`. TVM: `tir.Var(name, dtype)`."""
    return var(name, dtype)


def SizeVar(name: str = "n", dtype="int64") -> _VarNode:
    """A symbolic size known to be >= 0, as `tex.size_var`. TVM: `tir.SizeVar(name, dtype)`."""
    return size_var(name, dtype)


def Cast(dtype, value) -> Expr:
    """`value` converted to `dtype`. TVM: `tir.Cast(dtype, value)`."""
    return ops.cast(dtype, value)


def cast(value, dtype) -> Expr:
    """`value` converted to `dtype`; note TVM's argument order, the reverse of
    `tex.cast(dtype, value)`. TVM: `tir.cast(value, dtype)`."""
    return ops.cast(dtype, value)


def floordiv(a, b) -> Expr:
    """`a / b` rounded toward negative infinity (`a // b`). TVM: `tir.floordiv`."""
    return ops.binary("floordiv", a, b)


def floormod(a, b) -> Expr:
    """The remainder of `floordiv`, with the sign of `b` (`a % b`). TVM: `tir.floormod`."""
    return ops.binary("floormod", a, b)


def indexdiv(a, b) -> Expr:
    """Division of indices; TVM assumes them non-negative, tex floors (`floordiv`)."""
    return floordiv(a, b)


def indexmod(a, b) -> Expr:
    """Remainder of indices; TVM assumes them non-negative, tex floors (`floormod`)."""
    return floormod(a, b)


def truncdiv(a, b) -> Expr:
    """C's integer `a / b`: rounded toward zero. TVM: `tir.truncdiv`."""
    a, b = _integer_operands("truncdiv", a, b)
    quotient = ops.binary("floordiv", a, b)
    if not a.dtype.is_signed:
        return quotient
    correction = ops.binary("add", quotient, 1)
    return ops.if_then_else(_floor_differs(a, b), correction, quotient)


def truncmod(a, b) -> Expr:
    """C's integer `a % b`: the remainder of `truncdiv`, with the sign of `a`.
    TVM: `tir.truncmod`."""
    a, b = _integer_operands("truncmod", a, b)
    remainder = ops.binary("floormod", a, b)
    if not a.dtype.is_signed:
        return remainder
    return ops.if_then_else(_floor_differs(a, b), ops.binary("sub", remainder, b), remainder)


def div(a, b) -> Expr:
    """True division of floats; for integers, `truncdiv` (C's `/`). TVM: `tir.div`."""
    a, b = ops._operands(a, b)
    if a.dtype.is_float:
        return ops.true_div(a, b)
    return truncdiv(a, b)


def _integer_operands(who: str, a, b) -> tuple[Expr, Expr]:
    a, b = ops._operands(a, b)
    if not a.dtype.is_int:
        raise ExprError(f"{who} needs integer operands, got {a.dtype} ({a}) and {b.dtype} "
                        f"({b}); for floats use tex.tir.div (true division) or tex.floor")
    return a, b


def _floor_differs(a: Expr, b: Expr) -> Expr:
    """Whether flooring and truncating `a / b` differ: a remainder, and signs that differ
    (a nonzero floor remainder implies that neither `a` nor `b` is zero)."""
    has_remainder = ops.compare("ne", ops.binary("floormod", a, b), 0)
    signs_differ = ops.any_(ops.all_(ops.compare("lt", a, 0), ops.compare("gt", b, 0)),
                            ops.all_(ops.compare("gt", a, 0), ops.compare("lt", b, 0)))
    return ops.all_(has_remainder, signs_differ)
