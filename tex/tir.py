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

`Var`, `SizeVar`, `IntImm`, `FloatImm`, `Cast` and `Call` build expressions (they
are functions here, not node classes: test an expression with `isinstance(e,
tex.Var)`; `isinstance` does work with `IntImm`, `FloatImm` and `Call`), and
`isinstance(s, Evaluate)` asks whether a statement calls a function.
`Select` evaluates only the side its condition chooses (TVM's evaluates both),
which is safe either way.

`PrimFunc` is the class of a lowered function (`tex.lower(...)["main"]`,
`tex.schedule_to_module(...)["main"]`): tex's `LoweredFunc`.

`vscale()` is the multiplier of an Arm SVE vector's length, for loops sized by it
(`split(i, factor=4 * tir.vscale())`); only CPU targets with +sve build it.

For tensor intrinsics written the TE way: `decl_buffer` (`tex.buffer_decl`),
`call_extern` and `ir_builder.create()` (`tex.ir_builder`).

Calls by name: `call_intrin(dtype, "tir.mylog", x)` calls an intrinsic declared
with `tex.register_op_attr(name, "TCallEffectKind", CallEffectKind.Pure)` (or
one of tex's own, "tir.exp"), which a rule of `tex.register_intrin_lowering`
turns into code (`tex.intrin_rules`); `call_llvm_pure_intrin(dtype,
"llvm.ctlz", nargs, *args)` and `call_llvm_intrin` call an LLVM intrinsic in
CPU kernels.
"""
from __future__ import annotations

import numpy as np

from tex import intrin_rules, ir_builder, ops, stmt_functor  # noqa: F401 - tvm.tir.stmt_functor
from tex.buffer_decl import decl_buffer
from tex.dtype import as_dtype
from tex.errors import ExprError
from tex.intrin_rules import CallEffectKind
from tex.ops import call_pure_extern  # noqa: F401 - re-exported: tvm.tir.call_pure_extern
from tex import expr as _expr
from tex.expr import _ALL_INTRINSICS, Const, Expr, LLVMCall, OpCall
from tex.expr import Var as _VarNode
from tex.ir import ExternCall, IntrinsicCall, PackedCall
from tex.ir import LoweredFunc as PrimFunc
from tex.tensor import (comm_reducer, const, max, max_value, min, min_value,  # noqa: A004
                        size_var, sum, var)

__all__ = ["Call", "CallEffectKind", "Cast", "Evaluate", "FloatImm", "IntImm", "PrimFunc",
           "Select", "SizeVar", "Var", "all", "any", "call_extern", "call_intrin",
           "call_llvm_intrin", "call_llvm_pure_intrin", "call_pure_extern", "cast",
           "comm_reducer", "const", "decl_buffer", "div", "floordiv", "floormod", "if_then_else",
           "indexdiv", "indexmod", "ir_builder", "max", "max_value", "min", "min_value",
           "stmt_functor", "sum", "truncdiv", "truncmod", "vscale"]

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


class _CallKind(type):
    """The type of `Call`: calling it builds a call by name (`call_intrin`), and
    `isinstance(e, Call)` asks whether `e` is a call of any kind, as in TVM."""

    def __call__(cls, dtype, op, args, span=None) -> Expr:
        return call_intrin(dtype, getattr(op, "name", op), *args)

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, (_expr.Call, OpCall, _expr.PureExternCall, LLVMCall,
                                _expr.VScale))


def vscale() -> Expr:
    """The multiplier of a scalable vector's length (Arm SVE), an int32 from 1 to 16 that
    the machine running the kernel fixes: `split(i, factor=4 * tir.vscale())` makes an
    inner loop of as many iterations as an SVE vector has float32 lanes. Only a CPU
    target with scalable vectors (`-mtriple=aarch64-linux-gnu -mattr=+sve`, or an SVE
    CPU) builds it. TVM: `tir.vscale`."""
    return _expr.VScale()


class Call(metaclass=_CallKind):
    """A call: of a math intrinsic, a declared one, a C function or an LLVM intrinsic.
    `Call(dtype, "tir.exp", [x])` is `call_intrin(dtype, "tir.exp", x)`. TVM: `tir.Call`."""


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


def call_intrin(dtype, func_name: str, *args) -> Expr:
    """A call of the intrinsic `func_name` returning `dtype`: one of tex's math intrinsics
    by TVM's name ("tir.exp", the same as `tex.exp`), or one declared with
    `tex.register_op_attr(func_name, "TCallEffectKind", ...)`, which building lowers by
    the rule registered for the target. TVM: `tir.call_intrin`."""
    builtin = func_name[4:] if func_name.startswith("tir.") else None
    if builtin not in _ALL_INTRINSICS and intrin_rules.effect_kind(func_name) is None:
        raise ExprError(f"call_intrin: {func_name!r} is not an intrinsic; declare it first "
                        f"with tex.register_op_attr({func_name!r}, 'TCallEffectKind', "
                        "tex.tir.CallEffectKind.Pure)")
    dtype = as_dtype(dtype)
    exprs = tuple(ops.as_expr(a, dtype if isinstance(a, (float, np.floating)) else None)
                  for a in args)
    if builtin not in _ALL_INTRINSICS:
        return OpCall(dtype, func_name, exprs)
    call = _expr.Call(builtin, exprs)
    if call.dtype != dtype:
        raise ExprError(f"call_intrin {func_name}: of these arguments it returns "
                        f"{call.dtype}, not {dtype}")
    return call


def call_llvm_pure_intrin(dtype, name: str, num_signature, *args) -> Expr:
    """A call of the pure LLVM intrinsic `name` ("llvm.ctlz") returning `dtype`, in a CPU
    kernel. `num_signature` (TVM's count of the arguments that pick the overload) is
    checked and otherwise unused: LLVM picks the overload from the call's types.
    TVM: `tir.call_llvm_pure_intrin(dtype, name, num_signature, *args)`."""
    return _llvm_call(dtype, name, num_signature, args)


def call_llvm_intrin(dtype, name: str, num_signature, *args) -> Expr:
    """As `call_llvm_pure_intrin` (the two are one in tex: LLVM knows what each of its
    intrinsics reads and writes). TVM: `tir.call_llvm_intrin`."""
    return _llvm_call(dtype, name, num_signature, args)


def _llvm_call(dtype, name: str, num_signature, args) -> Expr:
    count = ops.as_expr(num_signature)
    if not isinstance(count, Const) or not count.dtype.is_int or \
            not 0 <= count.value <= len(args):
        raise ExprError(f"call_llvm_intrin {name}: num_signature must be a constant "
                        f"integer from 0 to the {len(args)} argument(s), got {num_signature}")
    dtype = as_dtype(dtype)
    return LLVMCall(dtype, name, tuple(
        ops.as_expr(a, dtype if isinstance(a, (float, np.floating)) else None) for a in args))
