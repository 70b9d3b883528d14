"""Emitting math calls as LLVM values: `Call` (tex's intrinsics), `PureExternCall` (C
functions) and `LLVMCall` (LLVM intrinsics by name).

`CallEmitter` adds the two `expr_` methods to the expression emitter of
`tex.codegen.llvm_expr`; `tex.codegen.llvm` emits statements on top of it.

How each intrinsic becomes code, scalar or vector alike:

* LLVM intrinsics that are instructions or that LLVM lowers itself: log,
  sqrt, fabs, floor, ceil, pow, maxnum/minnum (fmax/fmin), and for the TE
  functions `llvm.nearbyint`, `llvm.roundeven` (round: ties to even, as
  `np.round`), `llvm.trunc`, `llvm.copysign`, `llvm.exp2`, `llvm.log2`,
  `llvm.log10`, `llvm.sin`, `llvm.cos`; with LLVM 20 or newer also tan, the
  inverse and hyperbolic sin/cos/tan, atan2 and exp10 (`llvm.exp10` from
  LLVM 18), `llvm.ldexp` from LLVM 17. Where the CPU has no instruction,
  LLVM calls libm (`sinf`, `exp10f`, ...), lane by lane for a vector;
* exp, sigmoid and float32 tanh are tex's vector code (`tex.codegen.llvm_math`);
* libm, one call per lane, for what LLVM has no intrinsic of (or an older
  LLVM lacks): float64 tanh, erf, asinh, acosh, atanh, log1p, hypot (`hypotf`
  for float32); fmod is LLVM's `frem`, which is C's fmod;
* nextafter is integer arithmetic on the bits (one step of the last place, in
  the value's own format, so float16 and bfloat16 are right too);
* isnan is an unordered compare, isinf and isfinite compare `fabs(x)` with
  infinity; clz and popcount are `llvm.ctlz` (defined at 0: all bits) and
  `llvm.ctpop`.

An `LLVMCall` (`tex.tir.call_llvm_pure_intrin`) is the named intrinsic, declared
with the call's types; LLVM's parser gives an overloaded one its mangled name,
and a name LLVM does not know is left a symbol that nothing defines, which the
build reports (`tex.codegen.llvm_jit`).

Every other float function of a 16-bit float (float16, bfloat16) is computed
in float32 and rounded once, bfloat16 by tex's own rounding. Every libm
function called here is in the process (the JIT resolves it) and in `-lm`
(exported libraries link it).
"""
from __future__ import annotations

from llvmlite import binding, ir

from tex.codegen import llvm_math
from tex.codegen.llvm_constants import poison, uniform
from tex.codegen.llvm_expr import I32, ExprEmitter, _is_bfloat, mangle, value_type
from tex.dtype import DType
from tex.errors import BuildError
from tex.expr import INTEGER_INTRINSICS, PREDICATES

#: tex intrinsics that are LLVM intrinsics of the same arguments, kept in 16-bit floats.
_LLVM_MATH = {"log": "log", "sqrt": "sqrt", "abs": "fabs", "floor": "floor",
              "ceil": "ceil", "pow": "pow", "fmax": "maxnum", "fmin": "minnum"}
#: LLVM intrinsics of every LLVM tex runs on; 16-bit floats go through float32.
_INTRINSICS = {"nearbyint": "nearbyint", "round": "roundeven", "trunc": "trunc",
               "copysign": "copysign", "exp2": "exp2", "log2": "log2", "log10": "log10",
               "sin": "sin", "cos": "cos"}
#: LLVM intrinsics of newer LLVMs: the first LLVM version that has each (older: libm).
_NEWER_INTRINSICS = {"exp10": 18, "tan": 20, "asin": 20, "acos": 20, "atan": 20,
                     "sinh": 20, "cosh": 20, "atan2": 20, "ldexp": 17}
#: libm functions (the float32 one has the suffix f), called lane by lane.
_LIBM = ("tanh", "erf", "asinh", "acosh", "atanh", "log1p", "hypot", *_NEWER_INTRINSICS)
_LLVM_MAJOR = binding.llvm_version_info[0]


def _lanes(t: ir.Type) -> int:
    return t.count if isinstance(t, ir.VectorType) else 1


def _element(t: ir.Type) -> ir.Type:
    return t.element if isinstance(t, ir.VectorType) else t


def _is_16_bit_float(t: ir.Type) -> bool:
    return isinstance(_element(t), ir.HalfType) or _is_bfloat(t)


class CallEmitter(ExprEmitter):
    """The expression emitter with math calls: `expr_Call`, `expr_PureExternCall`,
    `expr_LLVMCall`, and `expr_VScale`."""

    def expr_Call(self, e):
        args = [self.expr(a) for a in e.args]
        name, x = e.name, args[0]
        if name in INTEGER_INTRINSICS:
            return self._bit_count(name, x)
        if name in PREDICATES:
            return self._classify(name, self._widen(x) if _is_16_bit_float(x.type) else x)
        if name == "abs" and not e.dtype.is_float:
            return self._integer_abs(x, e.dtype)
        if name in _LLVM_MATH:
            return self._math(_LLVM_MATH[name], args)
        if name in llvm_math.FUNCTIONS and (e.dtype.bits == 16 or
                                            llvm_math.supports(name, x.type)):
            return self._fast_math(name, x, e.dtype)
        if name == "rsqrt":
            one = ir.Constant(x.type, 1.0)
            return self.b.fdiv(one, self._math("sqrt", [x]), flags=self.mod.fp_flags)
        if name == "nextafter":
            return self._nextafter(x, args[1], e.dtype)
        if not _is_16_bit_float(x.type):
            return self._float_function(name, args)
        wide = [self._widen(a) if _is_16_bit_float(a.type) else a for a in args]
        return self._narrow(self._float_function(name, wide), x.type)

    def expr_PureExternCall(self, e):
        """The C function `e.name`, declared with the dtypes of the call, lane by lane."""
        if e.name == self.mod.name or e.name.startswith(self.mod.name + "_"):
            raise BuildError(f"call_pure_extern {e.name}: the kernel's own functions are "
                             f"named {self.mod.name}...; call another function")
        for a in e.args:
            if a.dtype.lanes != e.dtype.lanes:
                raise BuildError(f"call_pure_extern {e.name}: its argument {a} of the vector "
                                 f"dtype {a.dtype} is passed whole only in CUDA code; on the "
                                 "CPU, pass its lanes one by one")
        args = [self.expr(a) for a in e.args]
        result = value_type(e.dtype)
        fn = self._c_function(e.name, _element(result), [_element(a.type) for a in args])
        return self._lane_by_lane(fn, args, result)

    def expr_LLVMCall(self, e):
        """The LLVM intrinsic `e.name`, declared with the call's types: LLVM's parser gives
        an overloaded one its mangled name (`llvm.ctlz` of i32 is `llvm.ctlz.i32`)."""
        args = [self.expr(a) for a in e.args]
        signature = ir.FunctionType(value_type(e.dtype), [a.type for a in args])
        name = e.name
        known = self.mod.module.globals.get(name)
        if known is not None and getattr(known, "function_type", None) != signature:
            # the same overloaded intrinsic at other types: any suffix is remangled
            name = ".".join([name, *(mangle(t) for t in (signature.return_type,
                                                         *signature.args))])
        fn = self.mod.function(name, signature.return_type, signature.args)
        return self.b.call(fn, args)

    def expr_VScale(self, e):
        """`llvm.vscale.i32()`, the scalable vector length multiplier, on a target with
        scalable vectors; a BuildError elsewhere."""
        target = self.mod.target
        if not target.scalable_vectors:
            raise BuildError(f"vscale() needs a target with scalable vectors (aarch64 with "
                             f"+sve: 'llvm -mtriple=aarch64-linux-gnu -mattr=+sve'); "
                             f"target '{target}' ({target.machine}) has none")
        return self.b.call(self.mod.function("llvm.vscale.i32", I32, []), [])

    def _c_function(self, name: str, ret: ir.Type, args) -> ir.Function:
        """The declaration of the C function `name`; BuildError if the kernel also calls it
        with other types (a `call_pure_extern` of a libm function tex calls itself)."""
        signature = ir.FunctionType(ret, args)
        fn = self.mod.function(name, ret, args)
        if not isinstance(fn, ir.Function) or fn.function_type != signature:
            known = getattr(fn, "function_type", fn.type)
            raise BuildError(f"call_pure_extern {name}: the kernel calls {name} both as "
                             f"{known} and as {signature}")
        return fn

    # --- integers and classification -------------------------------------
    def _integer_abs(self, x: ir.Value, dtype: DType) -> ir.Value:
        if dtype.kind == "uint":
            return x
        zero = ir.Constant(x.type, 0)
        return self.b.select(self.b.icmp_signed("<", x, zero), self.b.sub(zero, x), x)

    def _bit_count(self, name: str, x: ir.Value) -> ir.Value:
        """clz (`llvm.ctlz`, all bits for 0) or popcount (`llvm.ctpop`) of integer `x`."""
        t = x.type
        if name == "popcount":
            return self.b.call(self.mod.function(f"llvm.ctpop.{mangle(t)}", t, [t]), [x])
        fn = self.mod.function(f"llvm.ctlz.{mangle(t)}", t, [t, ir.IntType(1)])
        return self.b.call(fn, [x, ir.Constant(ir.IntType(1), 0)])

    def _classify(self, name: str, x: ir.Value) -> ir.Value:
        """isnan, isinf or isfinite of the float32/float64 `x`, as i1 lanes."""
        if name == "isnan":
            return self.b.fcmp_unordered("uno", x, x)
        magnitude = self._math("fabs", [x])
        infinity = uniform(x.type, float("inf"))
        return self.b.fcmp_ordered("==" if name == "isinf" else "<", magnitude, infinity)

    # --- floats ------------------------------------------------------------
    def _float_function(self, name: str, args) -> ir.Value:
        """A TE float function of float32/float64 operands (ldexp: and an int32 exponent)."""
        newer = _NEWER_INTRINSICS.get(name)
        if name == "ldexp" and _LLVM_MAJOR >= newer:
            t, it = (a.type for a in args)
            fn = self.mod.function(f"llvm.ldexp.{mangle(t)}.{mangle(it)}", t, [t, it])
            return self.b.call(fn, args)
        if name in _INTRINSICS or newer is not None and _LLVM_MAJOR >= newer:
            return self._math(_INTRINSICS.get(name, name), args)
        if name == "fmod":
            return self.b.frem(*args)
        if name in _LIBM:
            return self._libm(name, args)
        raise BuildError(f"the LLVM backend has no implementation of intrinsic {name!r}")

    def _fast_math(self, name: str, x: ir.Value, dtype: DType) -> ir.Value:
        """exp, sigmoid or tanh as vector code (`tex.codegen.llvm_math`); 16-bit floats
        via float."""
        target = self.mod.target
        flags = (llvm_math.target_has_fma(target), llvm_math.target_has_avx512(target))
        if dtype.bits != 16:
            return llvm_math.emit_call(self.mod.module, self.b, name, x, *flags)
        wide = self._widen(x)
        return self._narrow(llvm_math.emit_call(self.mod.module, self.b, name, wide, *flags),
                            x.type)

    def _libm(self, name: str, args) -> ir.Value:
        """The libm function `name` (`namef` for float32) of float32/float64 operands, lane
        by lane."""
        t = _element(args[0].type)
        symbol = name + "f" if isinstance(t, ir.FloatType) else name
        fn = self._c_function(symbol, t, [_element(a.type) for a in args])
        return self._lane_by_lane(fn, args, args[0].type)

    def _lane_by_lane(self, fn: ir.Function, args, result: ir.Type) -> ir.Value:
        """`fn` called on each lane of `args` (scalars: once), its results of type `result`."""
        if _lanes(result) == 1:
            return self.b.call(fn, args)
        vector = poison(result)
        for lane in range(result.count):
            values = [self.b.extract_element(a, I32(lane)) for a in args]
            vector = self.b.insert_element(vector, self.b.call(fn, values), I32(lane))
        return vector

    def _nextafter(self, x: ir.Value, y: ir.Value, dtype: DType) -> ir.Value:
        """The next value after `x` toward `y` in `x`'s own format, by integer arithmetic on
        the bits: NaN if either is NaN, `y` if they are equal, the smallest subnormal with
        `y`'s sign after a zero, else the bits of `x` plus or minus one."""
        wide = [self._widen(v) if dtype.bits == 16 else v for v in (x, y)]
        bits_type = value_type(DType("int", dtype.bits, dtype.lanes))
        x_bits, y_bits = (self.b.bitcast(v, bits_type) for v in (x, y))
        zero = uniform(wide[0].type, 0.0)
        away_from_zero = self.b.xor(self.b.fcmp_ordered("<", *wide),
                                    self.b.fcmp_ordered("<", wide[0], zero))
        step = self.b.select(away_from_zero, uniform(bits_type, 1), uniform(bits_type, -1))
        smallest = self.b.or_(self.b.and_(y_bits, uniform(bits_type, -(1 << (dtype.bits - 1)))),
                              uniform(bits_type, 1))
        after_zero = self.b.fcmp_ordered("==", wide[0], zero)
        bits = self.b.select(after_zero, smallest, self.b.add(x_bits, step))
        bits = self.b.select(self.b.fcmp_ordered("==", *wide), y_bits, bits)
        nan = self.b.select(self.b.fcmp_unordered("uno", wide[0], wide[0]), x_bits, y_bits)
        bits = self.b.select(self.b.fcmp_unordered("uno", *wide), nan, bits)
        return self.b.bitcast(bits, x.type)  # selects of integers: LLVM 22 fails on bfloat ones
