"""exp, tanh and sigmoid as plain LLVM IR that vectorizes (no libm call per lane).

`emit_call(module, builder, name, x, fma)` calls an internal `alwaysinline`
function `tex.<name>.<type>` (defined once per module and type), so the IR
at the call site stays one line and the body is inlined at O3. `x` is a
float or double, scalar or vector; every step is a lane-wise instruction,
and edge cases are `select`s, never branches.

exp (float32 and float64): clamp x, split x = n*ln2 + r with |r| <= ln2/2
(n by the round-to-nearest "shifter" trick, r by a two-constant Cody-Waite
ln2 whose high part times n is exact), exp(r) = 1 + r + r^2*P(r), and
scale by 2^n as two factors 2^(n//2) * 2^(n - n//2) built by integer adds
into the exponent bits, so that results that are subnormal, or just below
overflow, are rounded once (on full AVX-512 vectors one `vscalefps`/`pd`
does this scaling, with the same single rounding). exp(+inf) = inf, exp(-inf) = 0, NaN -> NaN,
overflow -> inf, underflow -> 0.

sigmoid(x) = e/(1+e) for x < 0, 1/(1+e) otherwise, with e = exp(-|x|): no
overflow and no cancellation.

tanh (float32 only; float64 stays libm): tanh(|x|) is |x| + |x|^3*Q(x^2)
below 0.55 and 1 - 2/(exp(2|x|) + 1) above (exact subtraction there, and
it saturates to 1 by itself), then the sign of x is copied on, so
tanh(-0) = -0.

Largest errors against the correctly rounded result, float32 checked on
every one of the 2^32 inputs (with FMA; tests/test_fast_math.py checks
samples and edges with and without FMA): exp 1 ulp (99.6% of results
correctly rounded, subnormal results included), tanh 1 ulp, sigmoid 2 ulp.
float64, on samples and edges: exp 1 ulp, sigmoid 2 ulp.

`fma` says the target has fused multiply-add: `llvm.fma` is used then,
fmul+fadd otherwise (the reduction constants make both exact enough).

Coefficients are near-minimax fits of the relative error, made in float64
with Lawson's iteratively reweighted least squares on Chebyshev nodes
against mpmath references and rounded to float32: exp's P on
|r| <= 1.02*ln2/2 (5.7e-9 relative error of exp(r)), tanh's Q on
0 < x <= 0.55 (4.4e-9). float64 exp uses the Taylor coefficients 1/k! up
to r^13 (truncation error below 1e-17).
"""
from __future__ import annotations

import math

from llvmlite import ir

from tex.codegen.llvm_constants import uniform, zeros
from tex.target import Target

FUNCTIONS = ("exp", "tanh", "sigmoid")


class _Precision:
    """The constants of one float format's exp."""

    def __init__(self, int_bits, mantissa, bias, lo, hi, ln2_hi, ln2_lo, poly):
        self.int_type = ir.IntType(int_bits)
        self.mantissa, self.bias = mantissa, bias
        self.lo, self.hi = lo, hi              # exp(lo) rounds to 0, exp(hi) overflows
        self.shifter = 1.5 * 2.0 ** mantissa   # x + shifter rounds x to an integer
        self.ln2_hi, self.ln2_lo = ln2_hi, ln2_lo
        self.poly = poly                       # P's coefficients, lowest degree first


_F32 = _Precision(
    32, 23, 127, lo=-104.0, hi=89.0,
    ln2_hi=0.693359375,                        # 9 significant bits: n * ln2_hi is exact
    ln2_lo=-2.1219444005469058e-4,             # ln2 - ln2_hi
    poly=(0.49999994, 0.16666509, 0.04166853, 0.008370141, 0.0013811651))
_F64 = _Precision(
    64, 52, 1023, lo=-746.0, hi=710.0,
    ln2_hi=6.93147180369123816490e-01,         # 32 significant bits
    ln2_lo=1.90821492927058770002e-10,
    poly=tuple(1.0 / math.factorial(k) for k in range(2, 14)))

_TANH_SMALL = 0.55                             # below: the odd polynomial
_TANH_Q = (-0.33333316, 0.13332586, -0.05385231, 0.021071678, -0.0062742373)


def target_has_fma(target: Target) -> bool:
    """Whether `target` has fused multiply-add (so `llvm.fma` is an instruction, not a call).

    The last `+fma`/`-fma` in the feature string decides; without one (a CPU
    named by -mcpu), every AVX2 or AVX-512 CPU tex knows has FMA3, and every
    aarch64 CPU has FMA in its base vector unit.
    """
    if target.machine == "aarch64":
        return True
    for feature in reversed(target.features.split(",")):
        if feature[1:] == "fma":
            return feature[0] == "+"
    return target.vector_bits >= 256


def target_has_avx512(target: Target) -> bool:
    """Whether `target` has AVX-512F for sure: 512-bit vectors, and none of the features
    it rests on switched off (LLVM drops AVX-512 silently when one is)."""
    if target.vector_bits < 512:
        return False
    state = {f[1:]: f[0] == "+" for f in target.features.split(",") if f}
    return all(state.get(name, True) for name in ("avx512f", "avx2", "avx", "fma", "f16c"))


#: AVX-512's scalef (x * 2^floor(y), one rounding, IEEE overflow/underflow/NaN) by
#: vector type: LLVM intrinsic name and mask width.
_SCALEF = {(16, 32): ("llvm.x86.avx512.mask.scalef.ps.512", 16),
           (8, 64): ("llvm.x86.avx512.mask.scalef.pd.512", 8)}


def supports(name: str, x: ir.Type) -> bool:
    """Whether `emit_call` implements `name` for values of type `x`."""
    element = x.element if isinstance(x, ir.VectorType) else x
    if name in ("exp", "sigmoid"):
        return isinstance(element, (ir.FloatType, ir.DoubleType))
    return name == "tanh" and isinstance(element, ir.FloatType)


def emit_call(module: ir.Module, b: ir.IRBuilder, name: str, x: ir.Value,
              fma: bool, avx512: bool = False) -> ir.Value:
    """`name(x)` at `b`, through `tex.<name>.<type>` (defined in `module` on first use).
    `avx512` allows AVX-512 instructions (`target_has_avx512`)."""
    assert supports(name, x.type), (name, x.type)
    fn_name = f"tex.{name}.{_suffix(x.type)}"
    fn = module.globals.get(fn_name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(x.type, [x.type]), fn_name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fn.args[0].name = "x"
        ops = _Ops(module, ir.IRBuilder(fn.append_basic_block("entry")), x.type, fma, avx512)
        ops.b.ret({"exp": _exp, "tanh": _tanh, "sigmoid": _sigmoid}[name](ops, fn.args[0]))
    return b.call(fn, [x])


def _suffix(t: ir.Type) -> str:
    """LLVM's overload suffix for a float type: f32, v16f32, f64, ..."""
    element = t.element if isinstance(t, ir.VectorType) else t
    base = "f32" if isinstance(element, ir.FloatType) else "f64"
    return f"v{t.count}{base}" if isinstance(t, ir.VectorType) else base


class _Ops:
    """A builder for one float type `t` (scalar or vector): constants, fused mul-add."""

    def __init__(self, module: ir.Module, b: ir.IRBuilder, t: ir.Type, fma: bool,
                 avx512: bool):
        self.module, self.b, self.t, self.fma = module, b, t, fma
        vector = isinstance(t, ir.VectorType)
        self.p = _F32 if isinstance(t.element if vector else t, ir.FloatType) else _F64
        self.it = ir.VectorType(self.p.int_type, t.count) if vector else self.p.int_type
        width = (t.count, self.p.int_type.width) if vector else None
        self.scalef = _SCALEF.get(width) if avx512 else None

    def const(self, value: float) -> ir.Constant:
        return uniform(self.t, value)

    def iconst(self, value: int) -> ir.Constant:
        return uniform(self.it, value)

    def intrinsic(self, which: str, *args, name="") -> ir.Value:
        """A call of `llvm.<which>` on values of type `t` (declared on first use)."""
        full = f"llvm.{which}.{_suffix(self.t)}"
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(self.t, [self.t] * len(args)), full)
        return self.b.call(fn, list(args), name=name)

    def mad(self, a, b, c, name="") -> ir.Value:
        """a*b + c: one rounding with FMA, two without."""
        if self.fma:
            return self.intrinsic("fma", a, b, c, name=name)
        return self.b.fadd(self.b.fmul(a, b), c, name=name)

    def horner(self, x, coefficients) -> ir.Value:
        """sum(c_k * x^k), coefficients lowest degree first."""
        acc = self.const(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.mad(acc, x, self.const(c))
        return acc


def _exp(o: _Ops, x: ir.Value) -> ir.Value:
    """exp(x), x float or double (scalar or vector): error <= 1 ulp, IEEE edge cases."""
    if o.scalef:
        return _exp_scalef(o, x)
    b, p = o.b, o.p
    xc = b.select(b.fcmp_ordered(">", x, o.const(p.lo)), x, o.const(p.lo))  # NaN -> lo
    xc = b.select(b.fcmp_ordered("<", xc, o.const(p.hi)), xc, o.const(p.hi), name="clamped")
    # n = round(x / ln2): the shifter's ulp is 1, so the sum rounds to an integer and
    # its low bits are n in two's complement.
    shifted = b.fadd(b.fmul(xc, o.const(1 / math.log(2))), o.const(p.shifter), name="shifted")
    n = b.fsub(shifted, o.const(p.shifter), name="n")
    r = o.mad(n, o.const(-p.ln2_hi), xc)  # exact
    r = o.mad(n, o.const(-p.ln2_lo), r, name="r")
    expm1 = o.mad(b.fmul(r, r), o.horner(r, p.poly), r)
    exp_r = b.fadd(o.const(1.0), expm1, name="exp_r")
    n_int = b.sub(b.bitcast(shifted, o.it), b.bitcast(o.const(p.shifter), o.it), name="n_int")
    result = _scale(o, exp_r, n_int)
    return b.select(b.fcmp_unordered("uno", x, x), x, result)


def _exp_scalef(o: _Ops, x: ir.Value) -> ir.Value:
    """exp(x) on a full AVX-512 vector: the same reduction and polynomial, scaled by
    one `vscalef` (which rounds subnormal results once and overflows to inf). The
    clamp lets NaN through (a NaN input fails both comparisons), and scalef keeps it."""
    b, p = o.b, o.p
    xc = b.select(b.fcmp_ordered("<", x, o.const(p.lo)), o.const(p.lo), x)
    xc = b.select(b.fcmp_ordered(">", xc, o.const(p.hi)), o.const(p.hi), xc, name="clamped")
    shifted = b.fadd(b.fmul(xc, o.const(1 / math.log(2))), o.const(p.shifter), name="shifted")
    n = b.fsub(shifted, o.const(p.shifter), name="n")
    r = o.mad(n, o.const(-p.ln2_hi), xc)
    r = o.mad(n, o.const(-p.ln2_lo), r, name="r")
    expm1 = o.mad(b.fmul(r, r), o.horner(r, p.poly), r)
    exp_r = b.fadd(o.const(1.0), expm1, name="exp_r")
    name, mask_bits = o.scalef
    mask = ir.IntType(mask_bits)
    fn = o.module.globals.get(name) or ir.Function(
        o.module, ir.FunctionType(o.t, [o.t, o.t, o.t, mask, ir.IntType(32)]), name)
    return b.call(fn, [exp_r, n, zeros(o.t), ir.Constant(mask, -1),
                       ir.Constant(ir.IntType(32), 4)])  # all lanes; current rounding mode


def _scale(o: _Ops, m: ir.Value, n: ir.Value) -> ir.Value:
    """m * 2^n for |n| up to about 2 * (bias + 1), rounded once.

    2^n is split as 2^(n>>1) * 2^(n - (n>>1)): both factors are normal
    floats, the first product is exact, and only the second can round (into
    the subnormals) or overflow.
    """
    b, p = o.b, o.p
    half = b.ashr(n, o.iconst(1))
    rest = b.sub(n, half)

    def power_of_two(k):
        biased = b.add(k, o.iconst(p.bias))
        return b.bitcast(b.shl(biased, o.iconst(p.mantissa)), o.t)

    return b.fmul(b.fmul(m, power_of_two(half)), power_of_two(rest))


def _sigmoid(o: _Ops, x: ir.Value) -> ir.Value:
    """1 / (1 + exp(-x)) as e/(1+e) or 1/(1+e), e = exp(-|x|) in (0, 1]: error <= 2 ulp."""
    b = o.b
    e = _exp(o, b.fneg(o.intrinsic("fabs", x)))
    numerator = b.select(b.fcmp_ordered("<", x, o.const(0.0)), e, o.const(1.0))
    return b.fdiv(numerator, b.fadd(o.const(1.0), e))


def _tanh(o: _Ops, x: ir.Value) -> ir.Value:
    """tanh(x), float32: error <= 1 ulp, odd (tanh(-0) = -0), saturates to +-1."""
    b = o.b
    a = o.intrinsic("fabs", x, name="a")
    square = b.fmul(a, a)
    small = o.mad(b.fmul(a, square), o.horner(square, _TANH_Q), a, name="small")  # a + a^3 Q
    e = _exp(o, b.fadd(a, a))
    large = b.fsub(o.const(1.0), b.fdiv(o.const(2.0), b.fadd(e, o.const(1.0))), name="large")
    magnitude = b.select(b.fcmp_ordered("<", a, o.const(_TANH_SMALL)), small, large)
    return o.intrinsic("copysign", magnitude, x)
