"""Math calls as CUDA C: `Call` (tex's intrinsics) and `PureExternCall`.

`CallEmitter` adds the two `expr_` methods to the expression emitter of
`tex.codegen.cuda_expr`; `tex.codegen.cuda` emits kernels on top of it.

* Float functions are CUDA's math library, `sinf` for float and `sin` for
  double: TE's `round` is `rintf` (ties to even, as `np.round`; CUDA's
  `roundf` rounds ties away from zero), `nearbyint` is `nearbyintf`, `abs`
  is `fabsf`, `exp10` is `exp10f`; `sigmoid` is `1 / (1 + expf(-x))`.
* float16 and bfloat16 operands are converted to float, the function computed
  in float and the result converted back, except `nextafter`, which steps
  the bits of the 16-bit value itself (a helper, `tex_nextafter_f16`).
* `isnan`, `isinf`, `isfinite` are CUDA's (bool); clz is `__clz`/`__clzll`
  and popcount `__popc`/`__popcll` of the two's complement bits, narrower
  integers zero-extended (clz then less the added bits); the count has the
  argument's type.
* A `PureExternCall` is `name(arguments)`, each argument of its exact C type;
  a vector argument of a scalar call is one CUDA vector value (`make_char4(...)`).

The CPU simulator (`tex.runtime.cuda_simulator`) runs the same text against
the host's libm and its own `__clz`/`__popc`.
"""
from __future__ import annotations

from tex.codegen.cuda_expr import (_HALVES, _VECTOR_TYPES, ADD, ATOM, MUL, UNARY, ExprEmitter,
                                   c_type, literal, wrap)
from tex.dtype import DType, float32, int32, int64
from tex.errors import BuildError
from tex.expr import INTEGER_INTRINSICS, PREDICATES

#: tex's names of float functions that CUDA spells differently (float: with the suffix f).
_CUDA_NAMES = {"abs": "fabs", "round": "rint"}
#: The bits of a 16-bit float as an unsigned short, and back.
_BITS = {"half": ("__half_as_ushort", "__ushort_as_half"),
         "__nv_bfloat16": ("__bfloat16_as_ushort", "__ushort_as_bfloat16")}
_NEXTAFTER = """\
__device__ __forceinline__ {t} {name}({t} x, {t} y) {{
  const float a = {to_float}(x), b = {to_float}(y);
  if (a != a || b != b) return a != a ? x : y;
  if (a == b) return y;
  const unsigned short bits = {as_bits}(x);
  if (a == 0.0f) return {from_bits}((unsigned short)(({as_bits}(y) & 0x8000u) | 1u));
  return {from_bits}((unsigned short)((a < b) != (a < 0.0f) ? bits + 1u : bits - 1u));
}}"""


def float_call(name: str, dtype: DType, args) -> tuple[str, int]:
    """The float intrinsic `name` of float or double operands (C text, precedence); an
    int exponent of ldexp passes as it is."""
    suffix = "f" if dtype == float32 else ""
    if name == "sigmoid":
        one = literal(dtype, 1.0)[0]
        return f"{one} / ({one} + exp{suffix}(-{wrap(args[0], ATOM)}))", MUL
    if name in PREDICATES:
        return f"{name}({args[0][0]})", ATOM
    return f"{_CUDA_NAMES.get(name, name)}{suffix}({', '.join(a[0] for a in args)})", ATOM


def bit_count(name: str, dtype: DType, x: tuple[str, int]) -> tuple[str, int]:
    """clz or popcount of the integer C text `x` of `dtype`, as a value of `dtype`."""
    wide = dtype.bits == 64
    if name == "popcount":
        argument = f"(unsigned long long){wrap(x, UNARY)}" if wide else \
            f"(unsigned){_zero_extended(dtype, x)}"
        count = (f"__popcll({argument})" if wide else f"__popc({argument})"), ATOM
    elif wide:
        count = f"__clzll((long long){wrap(x, UNARY)})", ATOM
    elif dtype.bits == 32:
        count = f"__clz((int){wrap(x, UNARY)})", ATOM
    else:
        count = f"__clz((int){_zero_extended(dtype, x)}) - {32 - dtype.bits}", ADD
    if dtype == int32 and count[1] == ATOM:
        return count
    return f"({c_type(dtype)}){wrap(count, UNARY)}", UNARY


def _zero_extended(dtype: DType, x: tuple[str, int]) -> str:
    """`x` as an operand of a cast, its bits zero-extended when it is narrower than 32."""
    if dtype.bits >= 32 or dtype.kind == "uint":
        return wrap(x, UNARY)
    return f"(unsigned {c_type(dtype).split()[-1]}){wrap(x, UNARY)}"


class CallEmitter(ExprEmitter):
    """The CUDA expression emitter with math calls: `expr_Call`, `expr_PureExternCall`."""

    def expr_Call(self, e, lane):
        operand = e.args[0].dtype.element
        if e.name in INTEGER_INTRINSICS:
            return bit_count(e.name, operand, self.emit(e.args[0], lane))
        if e.name == "abs" and not operand.is_float:
            return self._integer_abs(operand, self.emit(e.args[0], lane))
        if operand not in _HALVES:
            return float_call(e.name, operand, [self.emit(a, lane) for a in e.args])
        if e.name == "nextafter":
            x, y = (self.argument(a, lane) for a in e.args)
            return f"{self._nextafter_helper(operand)}({x}, {y})", ATOM
        args = [self.in_float(a, lane) if a.dtype.is_float else self.emit(a, lane)
                for a in e.args]
        text = float_call(e.name, float32, args)
        if e.name in PREDICATES:
            return text
        return f"{_HALVES[operand][2]}({text[0]})", ATOM

    def expr_PureExternCall(self, e, lane):
        args = ", ".join(self.argument(a, lane) if a.dtype.lanes == e.dtype.lanes
                         else self._whole_vector(e, a) for a in e.args)
        return f"{e.name}({args})", ATOM

    def _whole_vector(self, call, arg) -> str:
        """The vector argument `arg` of the scalar call `call` as one CUDA vector value."""
        name = _VECTOR_TYPES.get((arg.dtype.element, arg.dtype.lanes))
        if name is None:
            raise BuildError(f"call_pure_extern {call.name}: CUDA has no vector type for an "
                             f"argument of {arg.dtype} ({arg})")
        lanes = ", ".join(self.argument(arg, k) for k in range(arg.dtype.lanes))
        return f"make_{name}({lanes})"

    def _integer_abs(self, dtype: DType, x: tuple[str, int]) -> tuple[str, int]:
        if dtype.kind == "uint":
            return x
        text = f"{'llabs' if dtype == int64 else 'abs'}({x[0]})"
        return (f"({c_type(dtype)}){text}", UNARY) if dtype.bits < 32 else (text, ATOM)

    def _nextafter_helper(self, dtype: DType) -> str:
        """The name of the device function stepping a 16-bit float's bits toward another."""
        t = c_type(dtype)
        name = f"tex_nextafter_{'f16' if t == 'half' else 'bf16'}"
        as_bits, from_bits = _BITS[t]
        self.preamble.definition(name, _NEXTAFTER.format(
            name=name, t=t, to_float=_HALVES[dtype][1], as_bits=as_bits,
            from_bits=from_bits), ())
        return name

