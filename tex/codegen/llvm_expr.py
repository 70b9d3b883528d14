"""Emitting tex expressions as LLVM values (the expression half of `tex.codegen.llvm`).

`ExprEmitter` holds what one LLVM function's emission needs (builder, the
values of variables and buffers, the current lane mask) and one `expr_<Node>`
method per expression node, found by the dispatch rule of every IR walker
(`tex.visitor.handler`). Statements are in `tex.codegen.llvm`.

Semantics kept here:

* integer `floordiv`/`floormod` round toward negative infinity (Python's `//`
  and `%`): `ashr`/`and` for a positive power-of-two constant divisor,
  otherwise `sdiv`/`srem` and a sign fix-up; unsigned integers use udiv/urem;
* float comparisons are ordered, except `!=` (true on NaN, as in numpy);
  float min/max are `select(a < b, a, b)`;
* float arithmetic carries the `contract` flag (FMA formation), or `fast`
  when the target has `-fastmath` (the user's request, not a claim);
* integer arithmetic wraps, as NumPy's does. The one claim here is `nsw` on
  an int64 `+`, `-` or `*` that `exact_bounds` bounds: built of constants and
  loop variables of constant bounds (`ranges`) by `+`, `-`, `*` and widening
  casts, every intermediate result fitting int64 in exact arithmetic, so
  nothing in it wraps. Anything else (a size variable, a loaded value) gets
  no flag;
* math intrinsics (`Call`, `PureExternCall`) are emitted by the subclass in
  `tex.codegen.llvm_calls`;
* bfloat16 is LLVM's `bfloat` in memory and registers; arithmetic and math
  on it are computed in float32 and rounded after every operation, as
  NumPy's `ml_dtypes` does, by tex's own rounding in integer operations
  (`_float_to_bfloat`), not `vcvtneps2bf16`, which flushes subnormal results
  to zero on CPUs with AVX512-BF16. It needs LLVM 22 or newer; older ones
  raise `BuildError` rather than risk a backend crash;
* `Select` is lazy (see the `expr_Select` docstring); loads under a lane
  mask become masked loads/gathers, and a scalar load under a mask is
  branched around when no lane is set.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import binding, ir
from llvmlite.ir.instructions import GEPInstr
from llvmlite.ir.types import _BaseFloatType, _format_double

from tex import config
from tex.codegen.llvm_constants import poison, splat_constant, uniform, zeros
from tex.dtype import DType, INDEX, bfloat16
from tex.errors import BuildError
from tex.expr import Binary, Cast, Const, Expr, Var
from tex.ir import Broadcast, Buffer, Load, Ramp
from tex.visitor import collect, handler

I1, I8, I32, I64 = (ir.IntType(bits) for bits in (1, 8, 32, 64))


class _BFloatType(_BaseFloatType):
    """LLVM's `bfloat`, which llvmlite lacks. Constants are rounded as `tex.arith` folds
    them (`DType.round`)."""

    null = "0.0"
    intrinsic_name = "bf16"

    def __str__(self):
        return "bfloat"

    def format_constant(self, value):
        return _format_double(bfloat16.round(value))


_BFloatType._create_instance()  # llvmlite's float types are singletons
BFLOAT = _BFloatType()
_FLOATS = {16: ir.HalfType(), 32: ir.FloatType(), 64: ir.DoubleType()}

_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_MISSING = object()


def value_type(dtype: DType) -> ir.Type:
    """The LLVM type of a value of `dtype` in registers."""
    if dtype.is_bool:
        scalar = I1
    elif dtype.kind == "bfloat":
        if binding.llvm_version_info < (22,):
            raise BuildError(f"bfloat16 needs llvmlite built on LLVM 22 or newer (this one "
                             f"has LLVM {'.'.join(map(str, binding.llvm_version_info))}); "
                             "upgrade llvmlite, or compute in float32")
        scalar = BFLOAT
    elif dtype.is_float:
        scalar = _FLOATS[dtype.bits]
    else:
        scalar = ir.IntType(dtype.bits)
    return scalar if dtype.lanes == 1 else ir.VectorType(scalar, dtype.lanes)


def memory_type(dtype: DType) -> ir.Type:
    """The LLVM type of one element of a buffer of `dtype` (bool is a byte)."""
    return I8 if dtype.is_bool else value_type(dtype.element)


def mangle(t: ir.Type) -> str:
    """The suffix LLVM uses for `t` in overloaded intrinsic names."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{mangle(t.element)}"
    if isinstance(t, ir.PointerType):
        return "p0"
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    return {ir.HalfType: "f16", _BFloatType: "bf16", ir.FloatType: "f32",
            ir.DoubleType: "f64"}[type(t)]


def _is_bfloat(t: ir.Type) -> bool:
    return isinstance(t.element if isinstance(t, ir.VectorType) else t, _BFloatType)


def const_int(e: Expr):
    """The value of an integer constant or a broadcast one, else None."""
    if isinstance(e, Broadcast):
        e = e.value
    return e.value if isinstance(e, Const) and e.dtype.is_int else None


def may_trap(e: Expr) -> bool:
    """Whether evaluating `e` where it is not wanted could fault: whether it loads. (Integer
    division never faults: `ExprEmitter._floor_divide` never divides by 0 or -1.)"""
    return bool(collect(e, lambda n: isinstance(n, Load)))


def single_index(node) -> Expr:
    if len(node.indices) != 1:
        raise BuildError(f"buffer {node.buffer.name} is indexed with {len(node.indices)} "
                         "indices; flatten storage before codegen")
    return node.indices[0]


class ExprEmitter:
    """Expression emission into one LLVM function.

    `mod` is the module state (`function()` declarations, `fp_flags`); `b`
    the builder; `vars`/`buffers` map tex variables and buffers to LLVM
    values; `mask`, when set, is the vector of lanes allowed to touch memory.
    """

    def __init__(self, mod, builder: ir.IRBuilder):
        self.mod, self.b = mod, builder
        self.vars: dict[Var, ir.Value] = {}
        self.buffers: dict[Buffer, ir.Value] = {}
        # the enclosing loops' variables of constant bounds: (lowest, highest) value
        self.ranges: dict[Var, tuple[int, int]] = {}
        self.mask = None

    def expr(self, e: Expr) -> ir.Value:
        method = handler(self, "expr_", e)
        if method is None:
            raise BuildError(f"the LLVM backend cannot emit {type(e).__name__} `{e}`; "
                             "lowering should have removed it")
        return method(e)

    @contextmanager
    def bound(self, table: dict, key, value):
        """`table[key] = value` for the duration of a `with` block."""
        old = table.get(key, _MISSING)
        table[key] = value
        try:
            yield
        finally:
            if old is _MISSING:
                del table[key]
            else:
                table[key] = old

    @contextmanager
    def masked(self, mask):
        old, self.mask = self.mask, mask
        try:
            yield
        finally:
            self.mask = old

    def and_mask(self, cond: ir.Value) -> ir.Value:
        """`cond` restricted to the current mask's lanes."""
        return cond if self.mask is None else self.b.and_(self.mask, cond)

    # --- helpers -------------------------------------------------------
    def splat(self, value: ir.Value, lanes: int) -> ir.Value:
        vt = ir.VectorType(value.type, lanes)
        if isinstance(value, ir.Constant):
            return splat_constant(value, lanes)
        one = self.b.insert_element(poison(vt), value, I32(0))
        return self.b.shuffle_vector(one, poison(vt), zeros(ir.VectorType(I32, lanes)))

    def index(self, e: Expr) -> ir.Value:
        """An index expression as i64 (or a vector of i64)."""
        return self.convert(self.expr(e), e.dtype, INDEX.with_lanes(e.dtype.lanes))

    def any_lane(self, mask: ir.Value) -> ir.Value:
        fn = self.mod.function(f"llvm.vector.reduce.or.{mangle(mask.type)}", I1, [mask.type])
        return self.b.call(fn, [mask])

    def vector_gep(self, ptr: ir.Value, index: ir.Value) -> ir.Value:
        """`ptr + index` for a vector of indices: a vector of pointers (`inbounds` only
        when no lane mask is set: a masked-off lane's index may be out of bounds)."""
        # llvmlite's builder types only scalar GEPs; the instruction text is the same.
        instr = GEPInstr(self.b.block, ptr, [index], self.mask is None, "",
                         source_etype=ptr.type.pointee)
        instr.type = ir.VectorType(ptr.type, index.type.count)
        self.b._insert(instr)
        return instr

    def guarded(self, cond: ir.Value, emit, result_type: ir.Type) -> ir.Value:
        """`emit()` evaluated only where scalar `cond` holds; zero elsewhere."""
        with self.b.if_else(cond) as (then, otherwise):
            with then:
                value = emit()
                then_block = self.b.block
            with otherwise:
                else_block = self.b.block
        phi = self.b.phi(result_type)
        phi.add_incoming(value, then_block)
        phi.add_incoming(ir.Constant(result_type, None), else_block)
        return phi

    def buffer(self, buf: Buffer) -> ir.Value:
        ptr = self.buffers.get(buf)
        if ptr is None:
            raise BuildError(f"buffer {buf.name} is used but is neither a parameter nor "
                             "allocated around its use")
        return ptr

    # --- leaves ----------------------------------------------------------
    def expr_Const(self, e):
        return ir.Constant(value_type(e.dtype), e.value)

    def expr_Var(self, e):
        value = self.vars.get(e)
        if value is None:
            raise BuildError(f"variable {e.name} is used but not defined here (a size "
                             "variable missing from size_vars, or a loop variable out of scope?)")
        return value

    def expr_Let(self, e):
        with self.bound(self.vars, e.var, self.expr(e.value)):
            return self.expr(e.body)

    def expr_Ramp(self, e):
        lanes, vt = e.lanes, value_type(e.dtype)
        base = self.splat(self.expr(e.base), lanes)
        stride = const_int(e.stride)
        if stride is not None:
            return self._add(e.dtype, base, ir.Constant(vt, [stride * k for k in range(lanes)]))
        steps = ir.Constant(vt, [float(k) if e.dtype.is_float else k for k in range(lanes)])
        offsets = self._mul(e.dtype, self.splat(self.expr(e.stride), lanes), steps)
        return self._add(e.dtype, base, offsets)

    def expr_Broadcast(self, e):
        return self.splat(self.expr(e.value), e.lanes)

    # --- arithmetic ------------------------------------------------------
    def _add(self, dtype, a, b, int_flags=()):
        if dtype.is_float:
            return self.b.fadd(a, b, flags=self.mod.fp_flags)
        return self.b.add(a, b, flags=int_flags)

    def _mul(self, dtype, a, b, int_flags=()):
        if dtype.is_float:
            return self.b.fmul(a, b, flags=self.mod.fp_flags)
        return self.b.mul(a, b, flags=int_flags)

    def expr_Binary(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        if e.op in ("floordiv", "floormod") and not e.dtype.is_float:
            return self._floor_divide(e, a, b)
        return self._binary(e.op, e.dtype, a, b, self._int_flags(e))

    def _int_flags(self, e: Binary) -> tuple:
        """("nsw",) when `e`, an int64 +, - or *, provably does not wrap."""
        return ("nsw",) if e.op in _EXACT and self.exact_bounds(e) is not None else ()

    def exact_bounds(self, e: Expr) -> tuple[int, int] | None:
        """(lowest, highest) value of the scalar int64 `e` when it is a constant, a loop
        variable of `ranges`, a widening cast or a +, - or * of such, and no part of it
        leaves int64 in exact arithmetic (so none wraps); else None."""
        if e.dtype.lanes != 1 or e.dtype.kind not in ("int", "uint") or e.dtype.bits > 64 \
                or (e.dtype.kind == "uint" and e.dtype.bits == 64):
            return None
        if isinstance(e, Const):
            return int(e.value), int(e.value)
        if isinstance(e, Var):
            return self.ranges.get(e)
        if isinstance(e, Cast) and e.dtype == INDEX:
            return self.exact_bounds(e.value)
        if isinstance(e, Binary) and e.dtype == INDEX and e.op in _EXACT:
            a, b = self.exact_bounds(e.a), self.exact_bounds(e.b)
            if a is None or b is None:
                return None
            results = [_EXACT[e.op](x, y) for x in a for y in b]
            return _fitting(min(results), max(results))
        return None

    def _binary(self, op: str, dtype: DType, a, b, int_flags=()):
        """`a op b` for every op but integer floordiv/floormod; `int_flags` go on an
        integer +, - or *."""
        if dtype.is_float:
            return self._float_binary(op, a, b)
        if op == "add":
            return self._add(dtype, a, b, int_flags)
        if op == "mul":
            return self._mul(dtype, a, b, int_flags)
        if op == "sub":
            return self.b.sub(a, b, flags=int_flags)
        cmp = self.b.icmp_signed if dtype.kind == "int" else self.b.icmp_unsigned
        return self.b.select(cmp("<" if op == "min" else ">", a, b), a, b)

    def expr_VectorReduce(self, e):
        """A tree of halvings: the upper half of the lanes is combined into the lower
        half until one lane is left (an odd lane out joins at the end)."""
        value, lanes, rest = self.expr(e.value), e.value.dtype.lanes, None
        while lanes > 1:
            if lanes % 2:
                last = self.b.extract_element(value, I32(lanes - 1))
                rest = last if rest is None else self._binary(e.op, e.dtype, rest, last)
                lanes -= 1
                value = self._lanes(value, range(lanes))
                continue
            half = lanes // 2
            value = self._binary(e.op, e.dtype.with_lanes(half), self._lanes(value, range(half)),
                                 self._lanes(value, range(half, lanes)))
            lanes = half
        value = self.b.extract_element(value, I32(0)) if e.value.dtype.lanes > 1 else value
        return value if rest is None else self._binary(e.op, e.dtype, value, rest)

    def _lanes(self, vector, picks):
        """The lanes `picks` of `vector`, as a vector (one lane stays a vector of one)."""
        mask = ir.Constant(ir.VectorType(I32, len(picks)), [I32(k) for k in picks])
        return self.b.shuffle_vector(vector, poison(vector.type), mask)

    def _float_binary(self, op, a, b):
        if _is_bfloat(a.type):  # computed in float32, rounded once by tex (see _narrow)
            return self._narrow(self._float_binary(op, self._widen(a), self._widen(b)), a.type)
        flags = self.mod.fp_flags
        if op in ("add", "sub", "mul", "div"):
            return getattr(self.b, "f" + op)(a, b, flags=flags)
        if op in ("min", "max"):
            # b if it is strictly beyond a, else a (x86's maxps/minps: a NaN in either
            # gives a); then b where b is NaN: NumPy's minimum/maximum. The NaN test of b
            # is off the dependency chain of an accumulator a.
            beyond = self.b.fcmp_ordered("<" if op == "min" else ">", b, a, flags=flags)
            picked = self.b.select(beyond, b, a)
            if self.mod.target.fastmath:
                return picked
            return self.b.select(self.b.fcmp_unordered("uno", b, b), b, picked)
        floor = self._math("floor", [self.b.fdiv(a, b, flags=flags)])
        if op == "floordiv":
            return floor
        return self.b.fsub(a, self.b.fmul(floor, b, flags=flags), flags=flags)

    def _floor_divide(self, e, a, b):
        """Integer floordiv/floormod with Python semantics for negative operands, and
        NumPy's where Python has none: x // 0 and x % 0 are 0, INT_MIN // -1 wraps to
        INT_MIN (and INT_MIN % -1 is 0). The divisor the machine divides by is never 0
        (or -1 under INT_MIN, which traps on x86 too): selects, no branch."""
        divisor = const_int(e.b)
        if divisor is not None and divisor > 0 and divisor & (divisor - 1) == 0:
            if e.op == "floordiv":
                shift = ir.Constant(a.type, divisor.bit_length() - 1)
                return self.b.ashr(a, shift) if e.dtype.is_signed else self.b.lshr(a, shift)
            return self.b.and_(a, ir.Constant(a.type, divisor - 1))
        zero, one = ir.Constant(a.type, 0), ir.Constant(a.type, 1)
        by_zero = None
        if divisor is None or divisor <= 0:  # a divisor of 0 (or -1) may come: divide by 1
            by_zero = self.b.icmp_unsigned("==", b, zero)
            unsafe = by_zero
            if e.dtype.is_signed:
                lowest = ir.Constant(a.type, -(1 << (e.dtype.bits - 1)))
                unsafe = self.b.or_(unsafe, self.b.and_(
                    self.b.icmp_signed("==", a, lowest),
                    self.b.icmp_signed("==", b, ir.Constant(a.type, -1))))
            b = self.b.select(unsafe, one, b)
        if self.mask is not None and e.dtype.lanes > 1:  # masked-off lanes must not trap
            b = self.b.select(self.mask, b, one)
        if not e.dtype.is_signed:
            result = self.b.udiv(a, b) if e.op == "floordiv" else self.b.urem(a, b)
        else:
            q, r = self.b.sdiv(a, b), self.b.srem(a, b)
            if divisor is not None and divisor > 0:
                fix = self.b.icmp_signed("<", r, zero)
            else:  # the remainder is nonzero and its sign differs from the divisor's
                fix = self.b.and_(self.b.icmp_signed("!=", r, zero),
                                  self.b.icmp_signed("<", self.b.xor(r, b), zero))
            result = self.b.sub(q, self.b.zext(fix, a.type)) if e.op == "floordiv" else \
                self.b.add(r, self.b.select(fix, b, zero))
        if by_zero is None or e.op == "floormod":  # x % 1 is 0 already
            return result
        return self.b.select(by_zero, zero, result)

    def expr_Compare(self, e):
        a, b, op, dt = self.expr(e.a), self.expr(e.b), _CMP[e.op], e.a.dtype
        if dt.is_float:
            if e.op == "ne":  # true when either is NaN, like numpy
                return self.b.fcmp_unordered(op, a, b, flags=self.mod.fp_flags)
            return self.b.fcmp_ordered(op, a, b, flags=self.mod.fp_flags)
        if dt.kind == "int":
            return self.b.icmp_signed(op, a, b)
        return self.b.icmp_unsigned(op, a, b)

    def expr_Logical(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        return self.b.and_(a, b) if e.op == "and" else self.b.or_(a, b)

    def expr_Not(self, e):
        return self.b.not_(self.expr(e.a))

    # --- conversions -----------------------------------------------------
    def expr_Cast(self, e):
        return self.convert(self.expr(e.value), e.value.dtype, e.dtype)

    def convert(self, v: ir.Value, src: DType, dst: DType) -> ir.Value:
        """`v` of dtype `src` as dtype `dst` (same lanes), C/numpy style. bfloat16 widens
        exactly to float32 and goes on from there; it is rounded to from float32 and
        float64 directly and from other types through float64 (exact but for 64-bit
        integers, which round twice there as ml_dtypes' do)."""
        t = value_type(dst)
        if v.type == t and src.is_bool == dst.is_bool:
            return v
        if src.kind == "bfloat" and dst != DType("float", 32, dst.lanes):
            wide = DType("float", 32, dst.lanes)
            return self.convert(self.b.fpext(v, value_type(wide)), wide, dst)
        if dst.kind == "bfloat" and not (src.is_float and src.bits >= 32):
            wide = DType("float", 64, dst.lanes)
            return self.b.fptrunc(self.convert(v, src, wide), t)
        if dst.kind == "bfloat" and src.bits == 32:
            return self._float_to_bfloat(v, t)
        if dst.is_bool:
            zero = ir.Constant(v.type, 0)
            if src.is_float:
                return self.b.fcmp_unordered("!=", v, zero)
            return self.b.icmp_unsigned("!=", v, zero)
        if src.is_bool:
            return self.b.uitofp(v, t) if dst.is_float else self.b.zext(v, t)
        if src.is_float and dst.is_float:
            return self.b.fpext(v, t) if dst.bits > src.bits else self.b.fptrunc(v, t)
        if src.is_float:
            return self._float_to_int(v, dst)
        if dst.is_float:
            return self.b.sitofp(v, t) if src.kind == "int" else self.b.uitofp(v, t)
        if dst.bits < src.bits:
            return self.b.trunc(v, t)
        return self.b.sext(v, t) if src.kind == "int" else self.b.zext(v, t)

    def _widen(self, v: ir.Value) -> ir.Value:
        """The 16-bit float `v` as float32 (exact)."""
        lanes = v.type.count if isinstance(v.type, ir.VectorType) else 1
        return self.b.fpext(v, value_type(DType("float", 32, lanes)))

    def _narrow(self, v: ir.Value, t: ir.Type) -> ir.Value:
        """float32 `v` rounded to the 16-bit float type `t`: bfloat16 by tex's own rounding,
        which keeps subnormals on every CPU, float16 by LLVM's."""
        return self._float_to_bfloat(v, t) if _is_bfloat(t) else self.b.fptrunc(v, t)

    def _math(self, name: str, args) -> ir.Value:
        """The LLVM intrinsic `llvm.<name>` of operands of one type; bfloat16 via float32."""
        t = args[0].type
        if _is_bfloat(t):
            return self._narrow(self._math(name, [self._widen(a) for a in args]), t)
        fn = self.mod.function(f"llvm.{name}.{mangle(t)}", t, [t] * len(args))
        return self.b.call(fn, args)

    def _float_to_bfloat(self, v: ir.Value, t: ir.Type) -> ir.Value:
        """float32 `v` rounded to the nearest bfloat16 (of type `t`), ties to even, in integer
        operations: subnormals are kept on every CPU (AVX512-BF16's conversion flushes
        them to zero), overflow gives infinity and a NaN stays a quiet NaN."""
        lanes = t.count if isinstance(t, ir.VectorType) else 1
        wide_t, narrow_t = (value_type(DType("int", bits, lanes)) for bits in (32, 16))
        bits = self.b.bitcast(v, wide_t)
        odd = self.b.and_(self.b.lshr(bits, uniform(wide_t, 16)), uniform(wide_t, 1))
        rounded = self.b.add(bits, self.b.add(odd, uniform(wide_t, 0x7FFF)))
        quiet_nan = self.b.or_(bits, uniform(wide_t, 0x400000))
        is_nan = self.b.fcmp_unordered("uno", v, v)
        result = self.b.lshr(self.b.select(is_nan, quiet_nan, rounded), uniform(wide_t, 16))
        return self.b.bitcast(self.b.trunc(result, narrow_t), t)

    def _float_to_int(self, v: ir.Value, dst: DType) -> ir.Value:
        # Narrow targets go through a wider signed int, so out-of-range values (-2.5 to
        # uint8) wrap as numpy's do on x86 instead of being poison.
        t = value_type(dst)
        if dst.bits == 64:
            return self.b.fptosi(v, t) if dst.kind == "int" else self.b.fptoui(v, t)
        if dst.kind == "int" and dst.bits == 32:
            return self.b.fptosi(v, t)
        wide = value_type(DType("int", 32 if dst.bits < 32 else 64, dst.lanes))
        return self.b.trunc(self.b.fptosi(v, wide), t)

    # --- select: lazy ----------------------------------------------------
    def expr_Select(self, e):
        """`cond ? t : f`, evaluating only what the condition allows.

        A scalar condition branches and joins with a phi, unless neither side
        loads or divides (then a plain `select`). A vector condition evaluates
        both sides, the true side with its loads masked by `cond`, the false
        side by `not cond` (both ANDed with any enclosing mask), then selects.
        """
        if not (may_trap(e.true_value) or may_trap(e.false_value)):
            cond, t, f = (self.expr(x) for x in (e.cond, e.true_value, e.false_value))
            return self.b.select(cond, t, f)
        cond = self.expr(e.cond)
        if e.cond.dtype.lanes == 1:
            return self._branch_select(cond, e)
        with self.masked(self.and_mask(cond)):
            t = self.expr(e.true_value)
        with self.masked(self.and_mask(self.b.not_(cond))):
            f = self.expr(e.false_value)
        return self.b.select(cond, t, f)

    def _branch_select(self, cond, e):
        with self.b.if_else(cond) as (then, otherwise):
            with then:
                t, t_block = self.expr(e.true_value), self.b.block
            with otherwise:
                f, f_block = self.expr(e.false_value), self.b.block
        phi = self.b.phi(t.type)
        phi.add_incoming(t, t_block)
        phi.add_incoming(f, f_block)
        return phi

    # --- memory ----------------------------------------------------------
    def expr_Load(self, e):
        ptr, index, dtype = self.buffer(e.buffer), single_index(e), e.dtype
        if dtype.lanes == 1:
            value = self._scalar_load(ptr, self.index(index), dtype)
        elif index.dtype.lanes == 1:
            raise BuildError(f"vector load of {e.buffer.name} at scalar index {index}")
        elif isinstance(index, Ramp) and const_int(index.stride) == 1:
            value = self.dense_load(ptr, self.index(index.base), dtype)
        else:
            value = self._gather(ptr, self.index(index), dtype)
        if dtype.is_bool:
            return self.b.icmp_unsigned("!=", value, ir.Constant(value.type, 0))
        return value

    def _scalar_load(self, ptr, index, dtype):
        align = element_align(dtype)

        def load():
            return self.b.load(self.b.gep(ptr, [index], inbounds=True), align=align)

        if self.mask is None:
            return load()
        return self.guarded(self.any_lane(self.mask), load, ptr.type.pointee)

    def dense_load(self, ptr, base, dtype):
        """The vector of `dtype` at `ptr[base:]` (masked under a lane mask)."""
        vt = ir.VectorType(ptr.type.pointee, dtype.lanes)
        vptr = self.b.bitcast(self.b.gep(ptr, [base], inbounds=self.mask is None),
                              vt.as_pointer())
        if self.mask is None:
            return self.b.load(vptr, align=element_align(dtype))
        fn = self.mod.function(f"llvm.masked.load.{mangle(vt)}.p0", vt,
                               [vt.as_pointer(), I32, self.mask.type, vt])
        return self.b.call(fn, [vptr, I32(element_align(dtype)), self.mask, zeros(vt)])

    def _gather(self, ptr, index, dtype):
        vt = ir.VectorType(ptr.type.pointee, dtype.lanes)
        ptrs = self.vector_gep(ptr, index)
        mask = self.mask if self.mask is not None else splat_constant(I1(1), dtype.lanes)
        fn = self.mod.function(f"llvm.masked.gather.{mangle(vt)}.v{dtype.lanes}p0", vt,
                               [ptrs.type, I32, mask.type, vt])
        return self.b.call(fn, [ptrs, I32(element_align(dtype)), mask, zeros(vt)])


def element_align(dtype: DType) -> int:
    """The alignment a load or store of buffer elements of `dtype` claims: one element's
    size (vectors included), which the runtime checks of every array argument
    (`tex.runtime.kernel.Param.as_array`) and allocations exceed; 1 with TEX_LLVM_CLAIMS=0."""
    return dtype.itemsize if config.llvm_claims() else 1


#: Python's exact (unbounded) integer +, - and *: a result's extremes are at its operands'.
_EXACT = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}


def _fitting(lo: int, hi: int) -> tuple[int, int] | None:
    """(lo, hi) if both are int64 values, else None."""
    return (lo, hi) if -2**63 <= lo and hi < 2**63 else None
