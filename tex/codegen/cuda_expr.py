"""Loop-IR expressions as CUDA C text, for `tex.codegen.cuda`.

Guarantees:

* An expression becomes one C expression of the C type of its dtype,
  parenthesised only where C's precedence needs it. Vector values are emitted
  lane by lane, each lane a scalar C expression.
* A vector `Load` at `Ramp(base, 1, lanes)` of a global or shared buffer is one
  read when `base` is provably a multiple of `lanes` (`vector_type`) and the
  access is a CUDA vector type (`float2`/`float4`/`int4`/`double2`/`char4`/
  `half2`..., lanes `.x .y .z .w`) or 4, 8 or 16 bytes of any element type:
  then it is a struct of the elements aligned to its size (`tex_float16x8`,
  `tex_bfloat16x4`, `tex_int8x16`..., lanes `.v[k]`), defined with its
  `make_tex_float16x8(...)` once before the kernels that use it. NVRTC makes
  one 32-, 64- or 128-bit access of it (`LDG.E.128`, `LDS.128`, ...), kept in
  registers (no local memory). The read is hoisted before the statement
  (`prelude`) into a `const` temporary of that type. Where C may skip
  the evaluation (a Select branch, the right side of `&&`/`||`) nothing is
  hoisted: loads are read lane by lane and an expression `Let` becomes an
  immediately invoked lambda; elsewhere a `Let` is hoisted as a `const`.
* Integer floordiv/floormod round toward negative infinity through small
  helpers (`tex_floordiv_i64`, ...), which also give x // 0 = x % 0 = 0 and
  INT_MIN // -1 = INT_MIN as NumPy does, or are C's `/` and `%` where the
  divisor is provably >= 1 and the dividend unsigned or provably >= 0
  (`tex.arith.const_bound` over the ranges of the enclosing loops; thread
  indices are non-negative). Float floordiv is
  `floor(a / b)`, floormod `a - floor(a / b) * b`.
* Float min/max are `fminf`/`fmaxf` (a NaN operand yields the other one).
  Integers narrower than 32 bits wrap: their sums, differences and products
  are cast back to their type.
* float16 is `half` from `cuda_fp16.h`, bfloat16 `__nv_bfloat16` from
  `cuda_bf16.h`, included only when used: arithmetic and comparisons use
  their operators (rounding after each), math functions and floor division
  run in float. Conversions to bfloat16 go through float, as on the CPU.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from tex.arith import Interval, const_bound
from tex.dtype import (DType, bfloat16, bool_, float16, float32, float64, int8, int16, int32,
                       int64, uint8, uint16, uint32, uint64)
from tex.errors import BuildError
from tex.expr import Binary, Const, Expr, Var, _int_range
from tex.ir import Broadcast, Buffer, Ramp, ThreadIndex
from tex.printer import UniqueNames
from tex.visitor import handler, transform

#: C precedence levels, tighter binding higher.
ATOM, UNARY, MUL, ADD, REL, EQ, AND, OR, COND = 15, 14, 13, 12, 10, 9, 5, 4, 3

_C_TYPES = {bool_: "bool", int8: "signed char", int16: "short", int32: "int",
            int64: "long long", uint8: "unsigned char", uint16: "unsigned short",
            uint32: "unsigned int", uint64: "unsigned long long", float16: "half",
            bfloat16: "__nv_bfloat16", float32: "float", float64: "double"}
#: The 16-bit floats: header, conversion to float, conversion from float.
_HALVES = {float16: ("cuda_fp16.h", "__half2float", "__float2half"),
           bfloat16: ("cuda_bf16.h", "__bfloat162float", "__float2bfloat16")}

#: The CUDA vector types one aligned access of `lanes` elements can use (`VectorType`).
_VECTOR_TYPES = {(float32, 2): "float2", (float32, 4): "float4", (int32, 2): "int2",
                 (int32, 4): "int4", (uint32, 2): "uint2", (uint32, 4): "uint4",
                 (float64, 2): "double2", (int64, 2): "longlong2", (uint64, 2): "ulonglong2",
                 (int8, 2): "char2", (int8, 4): "char4", (uint8, 2): "uchar2",
                 (uint8, 4): "uchar4", (int16, 2): "short2", (int16, 4): "short4",
                 (uint16, 2): "ushort2", (uint16, 4): "ushort4", (float16, 2): "half2"}
_LANE_FIELDS = ("x", "y", "z", "w")
#: The sizes of a vector access in bytes where CUDA has no vector type: a tex struct.
_STRUCT_BYTES = (4, 8, 16)

_ARITH = {"add": ("+", ADD), "sub": ("-", ADD), "mul": ("*", MUL), "div": ("/", MUL)}
_COMPARE = {"eq": ("==", EQ), "ne": ("!=", EQ), "lt": ("<", REL), "le": ("<=", REL),
            "gt": (">", REL), "ge": (">=", REL)}
_TO_HALF = {int8: "__short2half_rn", int16: "__short2half_rn", int32: "__int2half_rn",
            int64: "__ll2half_rn", uint8: "__ushort2half_rn", uint16: "__ushort2half_rn",
            uint32: "__uint2half_rn", uint64: "__ull2half_rn", float32: "__float2half",
            float64: "__double2half"}
_SUFFIX = {int32: "i32", int64: "i64", uint32: "u32", uint64: "u64", float32: "f32",
           float64: "f64"}

_CPP_WORDS = """
    auto bool break case char const continue default do double else enum extern float for
    goto if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while asm catch class constexpr delete explicit
    false friend mutable namespace new operator private protected public template this throw
    true try typename using virtual and or not xor
"""
_CUDA_WORDS = """
    threadIdx blockIdx blockDim gridDim warpSize half min max abs llabs fabs fabsf fminf
    fmaxf fmin fmax exp expf log logf sqrt sqrtf rsqrt rsqrtf tanh tanhf erf erff floor
    floorf ceil ceilf pow powf atomicAdd atomicMin atomicMax atomicCAS float2 float4 int2
    int4 uint2 uint4 double2 longlong2 ulonglong2 char2 char4 uchar2 uchar4 short2 short4
    ushort2 ushort4 half2 make_half2
    nearbyint nearbyintf rint rintf trunc truncf exp2 exp2f exp10 exp10f log2 log2f log10
    log10f log1p log1pf sin sinf cos cosf tan tanf sinh sinhf cosh coshf asin asinf acos
    acosf atan atanf asinh asinhf acosh acoshf atanh atanhf atan2 atan2f hypot hypotf
    copysign copysignf nextafter nextafterf ldexp ldexpf fmod fmodf isnan isinf isfinite
    __clz __clzll __popc __popcll
"""
_RESERVED = frozenset(_CPP_WORDS.split()) | frozenset(_CUDA_WORDS.split())


def c_type(dtype: DType) -> str:
    """The C type of one element of `dtype`."""
    name = _C_TYPES.get(dtype.element)
    if name is None:
        raise BuildError(f"CUDA codegen has no C type for {dtype}")
    return name


@dataclass(frozen=True)
class VectorType:
    """The C type of one aligned access of `lanes` elements of `dtype`: CUDA's vector type
    where it has one (`float4`, lanes `.x .y .z .w`), else a struct of `lanes` elements
    aligned to its size (`tex_float16x8`, lanes `.v[k]`), which `Preamble.vector_struct`
    defines. Either is built by `make_<name>(lanes...)`."""

    dtype: DType
    lanes: int

    @property
    def builtin(self) -> bool:
        return (self.dtype, self.lanes) in _VECTOR_TYPES

    @property
    def name(self) -> str:
        return _VECTOR_TYPES.get((self.dtype, self.lanes)) or f"tex_{self.dtype}x{self.lanes}"

    def lane(self, k: int) -> str:
        """The field of lane `k`: `.x`, `.y`, ... or `.v[k]`."""
        return f".{_LANE_FIELDS[k]}" if self.builtin else f".v[{k}]"


def vector_type(buffer: Buffer, index: Expr) -> VectorType | None:
    """The type of one aligned access of `buffer` at the vector `index` (a `Ramp` of stride
    1 whose base is provably a multiple of its lanes, in global or shared memory): CUDA's
    vector type, or a struct where the access is 4, 8 or 16 bytes. None when it must be
    read lane by lane."""
    if not isinstance(index, Ramp) or buffer.scope == "local" or buffer.dtype.lanes != 1:
        return None
    if not (isinstance(index.stride, Const) and index.stride.value == 1):
        return None
    vector = VectorType(buffer.dtype, index.lanes)
    if not (vector.builtin or index.lanes * buffer.dtype.itemsize in _STRUCT_BYTES):
        return None
    return vector if _multiple_of(index.base, index.lanes) else None


def _multiple_of(e: Expr, k: int) -> bool:
    """True only if `e` is a multiple of `k` whatever its variables' values."""
    if isinstance(e, Const):
        return e.value % k == 0
    if isinstance(e, Binary) and e.op in ("add", "sub"):
        return _multiple_of(e.a, k) and _multiple_of(e.b, k)
    if isinstance(e, Binary) and e.op == "mul":
        return _multiple_of(e.a, k) or _multiple_of(e.b, k)
    return False


def wrap(code: tuple[str, int], prec: int) -> str:
    """C text `code` = (text, precedence) as an operand needing precedence `prec`."""
    text, own = code
    return f"({text})" if own < prec else text


class Names(UniqueNames):
    """Unique C identifiers, as `tex.printer` makes them, never a C/CUDA keyword."""

    def __init__(self):
        super().__init__(_RESERVED)


class Preamble:
    """What the kernels of one module need before them: headers, device helpers and
    vector structs, each emitted once, in order of first use."""

    def __init__(self):
        self.headers: dict[str, None] = {}
        self.helpers: dict[str, str] = {}

    def use_type(self, dtype: DType):
        if dtype.element in _HALVES:
            self.headers[_HALVES[dtype.element][0]] = None

    def floor_helper(self, op: str, dtype: DType) -> str:
        """The name of the helper computing `op` ("floordiv"/"floormod") on `dtype`."""
        name = f"tex_{op}_{_SUFFIX[dtype]}"
        if dtype.is_float:
            template = _FLOAT_FLOOR[op].replace("{floor}", "floorf" if dtype == float32
                                                else "floor")
        else:
            template = (_INT_FLOOR if dtype.kind == "int" else _UINT_FLOOR)[op]
        unsigned = c_type(DType("uint", dtype.bits)) if dtype.is_int else None
        self.helpers.setdefault(name, template.format(name=name, t=c_type(dtype), u=unsigned))
        return name

    def min_max_helper(self, op: str, dtype: DType) -> str:
        """The name of the helper computing `op` ("min"/"max") of two floats or doubles as
        NumPy's minimum/maximum do: a NaN in either operand is the result (C's fminf and
        fmaxf return the other operand)."""
        name = f"tex_{op}_{_SUFFIX[dtype]}"
        self.helpers.setdefault(name, _MIN_MAX.format(name=name, t=c_type(dtype),
                                                      cmp=">=" if op == "max" else "<="))
        return name

    def atomic_helper(self, op: str, dtype: DType) -> str:
        """The name of the compare-and-swap helper doing atomic min/max on a float."""
        name = f"tex_atomic_{op}_{_SUFFIX[dtype]}"
        if dtype == float32:
            parts = dict(bits="int", to_bits="__float_as_int", from_bits="__int_as_float",
                         fn=self.min_max_helper(op, dtype))
        else:
            parts = dict(bits="unsigned long long", from_bits="__longlong_as_double",
                         to_bits="(unsigned long long)__double_as_longlong",
                         fn=self.min_max_helper(op, dtype))
        self.helpers.setdefault(name, _ATOMIC_CAS.format(name=name, t=c_type(dtype), **parts))
        return name

    def vector_struct(self, vector: VectorType):
        """Define the struct and the `make_` function of `vector` unless CUDA has the type."""
        if vector.builtin:
            return
        self.use_type(vector.dtype)
        element, lanes = c_type(vector.dtype), vector.lanes
        params = ", ".join(f"{element} v{k}" for k in range(lanes))
        values = ", ".join(f"v{k}" for k in range(lanes))
        self.helpers.setdefault(vector.name, _VECTOR_STRUCT.format(
            name=vector.name, t=element, lanes=lanes, bytes=lanes * vector.dtype.itemsize,
            params=params, values=values))

    def definition(self, name: str, text: str, headers: tuple[str, ...]):
        """A device function a tensorize intrinsic brought in, after its headers."""
        if self.helpers.setdefault(name, text) != text:
            raise BuildError(f"two intrinsics named {name} have different definitions")
        self.headers.update(dict.fromkeys(headers))

    def text(self) -> str:
        includes = "".join(f"#include <{h}>\n" for h in self.headers)
        helpers = "".join(f"{h}\n\n" for h in self.helpers.values())
        return (includes + "\n" if includes else "") + helpers


# An aligned vector of elements CUDA has no vector type for; `make_` converts its arguments
# as `make_float4` does (no brace initialisation's narrowing errors).
_VECTOR_STRUCT = """\
struct __align__({bytes}) {name} {{ {t} v[{lanes}]; }};
__device__ __forceinline__ {name} make_{name}({params}) {{
  return {{{{{values}}}}};
}}"""

# Integer division as NumPy defines it where C does not: x // 0 and x % 0 are 0, and
# INT_MIN // -1 wraps to INT_MIN (-x computed unsigned), INT_MIN % -1 is 0.
_INT_FLOOR = {
    "floordiv": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  if (b == 0) return 0;
  if (b == -1) return ({t})(({u})0 - ({u})a);
  const {t} q = a / b;
  return (a % b != 0 && (a % b < 0) != (b < 0)) ? q - 1 : q;
}}""",
    "floormod": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  if (b == 0 || b == -1) return 0;
  const {t} r = a % b;
  return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}}"""}
_UINT_FLOOR = {
    "floordiv": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  return b == 0 ? 0 : a / b;
}}""",
    "floormod": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  return b == 0 ? 0 : a % b;
}}"""}
_FLOAT_FLOOR = {
    "floordiv": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  return {floor}(a / b);
}}""",
    "floormod": """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  return a - {floor}(a / b) * b;
}}"""}
_MIN_MAX = """\
__device__ __forceinline__ {t} {name}({t} a, {t} b) {{
  return (a {cmp} b || a != a) ? a : b;
}}"""
_ATOMIC_CAS = """\
__device__ __forceinline__ void {name}({t}* address, {t} value) {{
  {bits}* word = ({bits}*)address;
  {bits} old = *word;
  while (true) {{
    const {bits} updated = {to_bits}({fn}({from_bits}(old), value));
    if (updated == old) return;
    const {bits} seen = atomicCAS(word, old, updated);
    if (seen == old) return;
    old = seen;
  }}
}}"""


def literal(dtype: DType, value) -> tuple[str, int]:
    """A C literal of `dtype` (an int64 one fits an int unless it does not)."""
    if dtype.is_bool:
        return ("true" if value else "false"), ATOM
    if dtype.is_int:
        return _int_literal(dtype, value)
    if dtype in _HALVES:
        exact = _float_literal(float32, dtype.round(value))[0]
        return f"{_HALVES[dtype][2]}({exact})", ATOM
    return _float_literal(dtype, value)


def _int_literal(dtype: DType, value: int) -> tuple[str, int]:
    suffix = {uint32: "u", uint64: "ull"}.get(dtype, "")
    if dtype == int64 and not -2**31 <= value < 2**31:
        suffix = "LL"
    if dtype.bits >= 32 and value == _int_range(dtype)[0] and dtype.kind == "int":
        return f"({value + 1}{suffix} - 1)", ATOM  # C has no literal for the minimum
    return f"{value}{suffix}", (UNARY if value < 0 else ATOM)


def _float_literal(dtype: DType, value: float) -> tuple[str, int]:
    single = dtype == float32
    if math.isnan(value):
        return ("__int_as_float(0x7fc00000)" if single
                else "__longlong_as_double(0x7ff8000000000000LL)"), ATOM
    if math.isinf(value):
        text = "__int_as_float(0x7f800000)" if single else \
            "__longlong_as_double(0x7ff0000000000000LL)"
        return (text, ATOM) if value > 0 else ("-" + text, UNARY)
    text = str(np.float32(value)) + "f" if single else repr(value)
    return text, (UNARY if text.startswith("-") else ATOM)


class ExprEmitter:
    """Emits the expressions of one kernel, one `expr_<Node>` method per expression node
    (`tex.visitor.handler` finds it: the dispatch rule of every IR walker).

    `values` maps each variable in scope to its C text (one per lane),
    `buffers` each buffer to its C name, `ranges` the loop variables to their
    `Interval`s, `alignments` the buffers accessed as vectors to the byte
    alignment their pointers need. Hoisted declarations collect in `prelude`,
    which the statement emitter writes before the statement it emits
    (`begin_statement` clears it).
    """

    def __init__(self, preamble: Preamble, names: Names, context: str):
        self.preamble, self.names, self.context = preamble, names, context
        self.values: dict[Var, list[str]] = {}
        self.buffers: dict[Buffer, str] = {}
        self.ranges: dict = {}
        self.alignments: dict[Buffer, int] = {}  # bytes a buffer's pointer must be aligned to
        self.prelude: list[str] = []
        self._hoisted: dict = {}  # id of a Load or Let node -> its temporaries, this statement
        self._conditional = 0
        self._thread_vars: dict[str, Var] = {}  # ThreadIndex tag -> its stand-in variable
        self.narrow_index = False  # int64 scalars as `int` (`tex.codegen.cuda_index`)

    def scalar_type(self, dtype: DType) -> str:
        """The C type of a scalar of `dtype` the kernel computes: `int` for int64 where
        `narrow_index` (every int64 value proven to fit), else `c_type`."""
        return "int" if self.narrow_index and dtype.element == int64 else c_type(dtype)

    def begin_statement(self):
        self.prelude, self._hoisted = [], {}

    @contextmanager
    def conditional(self):
        """Inside, C may not evaluate what is emitted: nothing is hoisted."""
        self._conditional += 1
        try:
            yield
        finally:
            self._conditional -= 1

    def expr(self, e: Expr, lane: int = 0) -> str:
        return self.emit(e, lane)[0]

    def emit(self, e: Expr, lane: int = 0) -> tuple[str, int]:
        """(C text, precedence) of lane `lane` of `e` (scalars ignore `lane`)."""
        method = handler(self, "expr_", e)
        if method is None:
            raise BuildError(f"{self.context}: CUDA codegen cannot emit {type(e).__name__} "
                             f"`{e}`; lowering should have removed it")
        self.preamble.use_type(e.dtype)
        return method(e, lane)

    def operand(self, e: Expr, lane: int, prec: int) -> str:
        return wrap(self.emit(e, lane), prec)

    def argument(self, e: Expr, lane: int) -> str:
        """`e` as an argument of an overloaded CUDA function, whose argument types
        must match exactly: an int64 constant gets its `LL`."""
        if isinstance(e, Broadcast):
            e = e.value
        if isinstance(e, Const) and e.dtype == int64 and not self.narrow_index:
            return f"{e.value}LL" if e.value > _int_range(int64)[0] else self.expr(e)
        if isinstance(e, Ramp) and e.dtype.element == int64:  # a lane is `base + k * stride`
            return f"({self.scalar_type(int64)})({self.expr(e, lane)})"
        return self.expr(e, lane)

    def in_float(self, e: Expr, lane: int) -> tuple[str, int]:
        """A 16-bit float value as a float: a constant directly, else converted."""
        if isinstance(e, Broadcast):
            e = e.value
        if isinstance(e, Const):
            return literal(float32, e.dtype.round(e.value))
        return f"{_HALVES[e.dtype.element][1]}({self.expr(e, lane)})", ATOM

    def note_alignment(self, b: Buffer, size: int):
        """The pointer of `b` must be aligned to `size` bytes."""
        self.alignments[b] = max(size, self.alignments.get(b, size))

    def buffer(self, b: Buffer) -> str:
        name = self.buffers.get(b)
        if name is None:
            raise BuildError(f"{self.context}: buffer {b.name} is neither a parameter nor "
                             "an allocation of the kernel")
        return name

    # --- leaves ------------------------------------------------------
    def expr_Const(self, e, lane):
        return literal(e.dtype, e.value)

    def expr_Var(self, e, lane):
        texts = self.values.get(e)
        if texts is None:
            raise BuildError(f"{self.context}: variable {e.name} is used where it is not "
                             "defined")
        return texts[lane if len(texts) > 1 else 0], ATOM

    def expr_ThreadIndex(self, e, lane):
        return f"({self.scalar_type(e.dtype)}){e.tag}", UNARY

    def expr_Ramp(self, e, lane):
        if lane == 0:
            return self.emit(e.base)
        if isinstance(e.stride, Const):
            base, offset = _split_offset(e.base)
            step = Const(e.stride.dtype, offset + e.stride.value * lane)
            if step.value == 0:
                return self.emit(base)
            op, step = _readable("add", step)
            return self.arith(op, e.dtype.element, self.emit(base), self.emit(step))
        offset = self.operand(e.stride, 0, ADD + 1) if lane == 1 else \
            f"{lane} * {self.operand(e.stride, 0, MUL + 1)}"
        return f"{self.operand(e.base, 0, ADD)} + {offset}", ADD

    def expr_Broadcast(self, e, lane):
        return self.emit(e.value)

    # --- arithmetic --------------------------------------------------
    def expr_Binary(self, e, lane):
        dtype = e.dtype.element
        if e.op in ("min", "max"):
            if dtype in _HALVES:
                a, b = (self.in_float(x, lane)[0] for x in (e.a, e.b))
                return (f"{_HALVES[dtype][2]}({self.preamble.min_max_helper(e.op, float32)}"
                        f"({a}, {b}))"), ATOM
            return self.min_max(e.op, dtype, self.argument(e.a, lane),
                                self.argument(e.b, lane)), ATOM
        if e.op in ("floordiv", "floormod"):
            return self._floor(e, lane)
        op, b = _readable(e.op, e.b)
        return self.arith(op, dtype, self.emit(e.a, lane), self.emit(b, lane))

    def min_max(self, op: str, dtype: DType, a: str, b: str) -> str:
        """`op` ("min"/"max") of the C operands `a` and `b` of the float or integer `dtype`,
        a NaN in either being the result, as in NumPy."""
        if dtype.is_float:
            return f"{self.preamble.min_max_helper(op, dtype)}({a}, {b})"
        return f"{op}({a}, {b})"

    def arith(self, op: str, dtype: DType, a, b) -> tuple[str, int]:
        """`a op b` on two (text, precedence) operands of `dtype`, op any but floor division."""
        if op in ("min", "max"):
            if dtype in _HALVES:
                to_float, from_float = _HALVES[dtype][1:]
                return (f"{from_float}({self.preamble.min_max_helper(op, float32)}"
                        f"({to_float}({a[0]}), {to_float}({b[0]})))"), ATOM
            return self.min_max(op, dtype, a[0], b[0]), ATOM
        symbol, prec = _ARITH[op]
        text = f"{wrap(a, prec)} {symbol} {wrap(b, prec + 1)}"
        if dtype.is_int and dtype.bits < 32:  # C computes in int: wrap back
            return f"({c_type(dtype)})({text})", UNARY
        return text, prec

    def _floor(self, e: Binary, lane: int) -> tuple[str, int]:
        op, dtype = e.op, e.dtype.element
        if dtype in _HALVES:
            helper = self.preamble.floor_helper(op, float32)
            a, b = (self.in_float(x, lane)[0] for x in (e.a, e.b))
            return f"{_HALVES[dtype][2]}({helper}({a}, {b}))", ATOM
        a, b = self.emit(e.a, lane), self.emit(e.b, lane)
        if self._c_division_is_floor(e):
            return f"{wrap(a, MUL)} {'/' if op == 'floordiv' else '%'} {wrap(b, MUL + 1)}", MUL
        narrow = dtype.bits < 32 or self.scalar_type(dtype) == "int"
        wide = DType(dtype.kind, 32) if narrow else dtype
        text = f"{self.preamble.floor_helper(op, wide)}({a[0]}, {b[0]})"
        if self.scalar_type(wide) == self.scalar_type(dtype):
            return text, ATOM
        return f"({c_type(dtype)}){text}", UNARY

    def _c_division_is_floor(self, e: Binary) -> bool:
        """Whether C's `/` and `%` compute a scalar integer floordiv/floormod as tex
        defines it: the divisor provably >= 1, and the dividend unsigned or provably
        >= 0."""
        if e.dtype.lanes != 1:
            return False
        low_a, low_b = (const_bound(transform(x, post=self._thread_index_as_var),
                                    self.ranges)[0] for x in (e.a, e.b))
        return low_b is not None and low_b >= 1 and (
            e.dtype.kind == "uint" or low_a is not None and low_a >= 0)

    def _thread_index_as_var(self, node):
        """A `ThreadIndex` as a variable ranging over [0, inf), for the bounds analysis."""
        if not isinstance(node, ThreadIndex):
            return None
        if node.tag not in self._thread_vars:
            var = self._thread_vars[node.tag] = Var(node.tag)
            self.ranges[var] = Interval(0, None)
        return self._thread_vars[node.tag]

    def expr_Compare(self, e, lane):
        symbol, prec = _COMPARE[e.op]
        return (f"{self.operand(e.a, lane, prec + 1)} {symbol} "
                f"{self.operand(e.b, lane, prec + 1)}"), prec

    def expr_Logical(self, e, lane):
        """`a && b`, `a || b`; an `&&` inside an `||` is parenthesised for the reader."""
        symbol, prec = ("&&", AND) if e.op == "and" else ("||", OR)
        left = self.operand(e.a, lane, prec if e.op == "and" else AND + 1)
        with self.conditional():
            right = self.operand(e.b, lane, AND + 1)
        return f"{left} {symbol} {right}", prec

    def expr_Not(self, e, lane):
        return f"!{self.operand(e.a, lane, UNARY)}", UNARY

    def expr_Select(self, e, lane):
        cond = self.operand(e.cond, lane, COND + 1)
        with self.conditional():
            a = self.operand(e.true_value, lane, COND + 1)
            b = self.operand(e.false_value, lane, COND)
        return f"{cond} ? {a} : {b}", COND

    def expr_Cast(self, e, lane):
        src, dst = e.value.dtype.element, e.dtype.element
        value = self.emit(e.value, lane)
        if src == dst or (src.is_int and dst.is_int
                          and self.scalar_type(src) == self.scalar_type(dst)):
            return value
        if src in _HALVES:
            value, src = (f"{_HALVES[src][1]}({value[0]})", ATOM), float32
            if dst == float32:
                return value
        if dst == float16:
            if src == bool_:
                value, src = (f"(int){wrap(value, UNARY)}", UNARY), int32
            return f"{_TO_HALF[src]}({value[0]})", ATOM
        if dst == bfloat16:
            if src != float32:
                value = (f"(float){wrap(value, UNARY)}", UNARY)
            return f"__float2bfloat16({value[0]})", ATOM
        return f"({self.scalar_type(dst)}){wrap(value, UNARY)}", UNARY

    def expr_WarpShuffle(self, e, lane):
        dtype = e.dtype
        if dtype.is_bool:
            value = f"(int){self.operand(e.value, 0, UNARY)}"
        else:
            value = self.argument(e.value, 0)
        text = f"__shfl_{e.mode}_sync({e.mask:#x}u, {value}, {e.offset}, {e.width})"
        if dtype.is_bool or (dtype.is_int and dtype.bits < 32):
            return f"({c_type(dtype)}){text}", UNARY
        return text, ATOM

    def expr_VectorReduce(self, e, lane):
        terms = [self.emit(e.value, k) for k in range(e.value.dtype.lanes)]
        while len(terms) > 1:  # a tree of halvings: lane k with lane k + half
            half = len(terms) // 2
            pairs = [self.arith(e.op, e.dtype, terms[k], terms[k + half]) for k in range(half)]
            terms = pairs + terms[2 * half:]
        return terms[0]

    # --- memory and bindings ---------------------------------------------
    def expr_Load(self, e, lane):
        (index,) = e.indices
        name = self.buffer(e.buffer)
        if e.dtype.lanes == 1:
            return f"{name}[{self.expr(index)}]", ATOM
        if index.dtype.lanes == 1:
            raise BuildError(f"{self.context}: vector load of {e.buffer.name} at the scalar "
                             f"index {index}")
        vector = vector_type(e.buffer, index)
        if vector is None or self._conditional:
            return f"{name}[{self.expr(index, lane)}]", ATOM
        if id(e) not in self._hoisted:
            self.note_alignment(e.buffer, index.lanes * e.buffer.dtype.itemsize)
            self.preamble.vector_struct(vector)
            temp = self.names.fresh(f"{e.buffer.name}_vec")
            base = self.operand(index.base, 0, ADD + 1)
            self.prelude.append(f"const {vector.name} {temp} = "
                                f"*(const {vector.name}*)({name} + {base});")
            self._hoisted[id(e)] = temp
        return f"{self._hoisted[id(e)]}{vector.lane(lane)}", ATOM

    def expr_Let(self, e, lane):
        if self._conditional:
            return self._let_lambda(e, lane)
        if id(e) not in self._hoisted:
            self._hoisted[id(e)] = self.declare(e.var, e.value)
        self.values[e.var] = self._hoisted[id(e)]
        return self.emit(e.body, lane)

    def declare(self, var: Var, value: Expr, into: list[str] | None = None) -> list[str]:
        """Declare `var = value` as `const` locals (one per lane), appended to
        `into` (default: the prelude); returns their names."""
        lanes = value.dtype.lanes
        names = [self.names.fresh(var.name if lanes == 1 else f"{var.name}_{k}")
                 for k in range(lanes)]
        for k, name in enumerate(names):
            (self.prelude if into is None else into).append(
                f"const {self.scalar_type(value.dtype)} {name} = {self.expr(value, k)};")
        return names

    def _let_lambda(self, e, lane):
        body: list[str] = []
        self.values[e.var] = self.declare(e.var, e.value, into=body)
        body.append(f"return {self.expr(e.body, lane)};")
        return f"[&]() {{ {' '.join(body)} }}()", ATOM


def _split_offset(e: Expr) -> tuple[Expr, int]:
    """`e` as `x + c` for a constant c (0 when `e` is not such a sum)."""
    if isinstance(e, Binary) and e.op in ("add", "sub") and isinstance(e.b, Const) \
            and e.dtype.is_int:
        return e.a, e.b.value if e.op == "add" else -e.b.value
    return e, 0


def _readable(op: str, b: Expr) -> tuple[str, Expr]:
    """`a + -c` as `a - c` and `a - -c` as `a + c` (equal values) for a negative
    signed or float constant whose negation is representable."""
    if op not in ("add", "sub") or not isinstance(b, Const) or not b.dtype.is_signed:
        return op, b
    if not b.value < 0 or (b.dtype.is_int and -b.value > _int_range(b.dtype)[1]):
        return op, b
    return ("sub" if op == "add" else "add"), Const(b.dtype, -b.value)

