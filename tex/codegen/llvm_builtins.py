"""The runtime routines LLVM's code generator may call, defined by tex.

On a CPU without an instruction for a float conversion, LLVM lowers it to a
call of a routine of compiler-rt / libgcc: double -> half on any x86 CPU
without AVX512-FP16 becomes `__truncdfhf2`, float -> bfloat16 without
AVX512-BF16 `__truncsfbf2`, half <-> float without F16C `__truncsfhf2` and
`__extendhfsf2`. And where LLVM widens index arithmetic to 128 bits (it may,
when no `nsw` flag tells it a value cannot overflow: tex emits one only where
bounds prove it, none with TEX_LLVM_CLAIMS=0), a
128-bit division or remainder becomes `__udivti3`, `__umodti3`, `__divti3` or
`__modti3`. Neither the process nor LLVM's JIT is sure to define them, so tex
does: each routine here is LLVM IR written with integer operations only (so
that compiling it calls nothing). The conversions round correctly (to
nearest, ties to even, subnormals kept, overflow to infinity, NaN stays NaN
with its payload's top bits, as compiler-rt does); the divisions truncate
toward zero, the remainder taking the dividend's sign, as C's do.

`install` compiles them once per process and makes them known to the JIT's
symbol lookup; `tex.codegen.llvm_jit` calls it before it loads object code
that refers to any of them. Exported libraries link `ir_text()` compiled for
their target, its functions hidden (`tex.runtime.library`).
"""
from __future__ import annotations

from functools import lru_cache

import llvmlite.binding as llvm

from tex.errors import BuildError

#: LLVM type -> (bits, exponent bits, stored mantissa bits).
_FORMATS = {"half": (16, 5, 10), "bfloat": (16, 8, 7), "float": (32, 8, 23),
            "double": (64, 11, 52)}

#: conversion routine -> (source type, result type); all narrow but __extendhfsf2.
_CONVERSIONS = {"__truncsfhf2": ("float", "half"), "__truncdfhf2": ("double", "half"),
                "__truncsfbf2": ("float", "bfloat"), "__truncdfbf2": ("double", "bfloat"),
                "__extendhfsf2": ("half", "float")}

#: 128-bit division routine -> (signed, which result: "q" quotient or "r" remainder).
_DIVISIONS = {"__udivti3": (False, "q"), "__umodti3": (False, "r"),
              "__divti3": (True, "q"), "__modti3": (True, "r")}

#: Every routine tex defines.
ROUTINES = frozenset(_CONVERSIONS) | frozenset(_DIVISIONS)


def _truncation(name: str, source: str, result: str) -> str:
    """IR of `result name(source x)`: x rounded to the nearest `result`, ties to even."""
    s_bits, s_exp, s_man = _FORMATS[source]
    d_bits, d_exp, d_man = _FORMATS[result]
    w = f"i{s_bits}"
    s_inf, d_inf = (2**s_exp - 1) << s_man, (2**d_exp - 1) << d_man
    bias_change = (2**(d_exp - 1) - 1) - (2**(s_exp - 1) - 1)
    dropped = s_man - d_man           # mantissa bits a normal result drops
    max_shift = s_man + 2             # beyond this every bit is below the rounding bit
    return f"""
define hidden {result} @{name}({source} %x) {{
  %bits = bitcast {source} %x to {w}
  %sign = and {w} %bits, {1 << (s_bits - 1)}
  %abs = and {w} %bits, {(1 << (s_bits - 1)) - 1}
  %exp = lshr {w} %abs, {s_man}
  %man = and {w} %abs, {(1 << s_man) - 1}
  %normal = icmp ne {w} %exp, 0
  %implicit = select i1 %normal, {w} {1 << s_man}, {w} 0
  %sig = or {w} %man, %implicit
  %exp1 = select i1 %normal, {w} %exp, {w} 1
  ; %rexp: the result's biased exponent; below 1 the result is subnormal and drops
  ; 1 - %rexp bits more
  %rexp = add {w} %exp1, {bias_change}
  %below = sub {w} 1, %rexp
  %is_below = icmp sgt {w} %below, 0
  %extra = select i1 %is_below, {w} %below, {w} 0
  %shift_all = add {w} %extra, {dropped}
  %too_far = icmp ugt {w} %shift_all, {max_shift}
  %shift = select i1 %too_far, {w} {max_shift}, {w} %shift_all
  %kept = lshr {w} %sig, %shift
  %unit = shl {w} 1, %shift
  %rest_mask = sub {w} %unit, 1
  %rest = and {w} %sig, %rest_mask
  %half_unit = lshr {w} %unit, 1
  %above_half = icmp ugt {w} %rest, %half_unit
  %at_half = icmp eq {w} %rest, %half_unit
  %odd = trunc {w} %kept to i1
  %tie_up = and i1 %at_half, %odd
  %up = or i1 %above_half, %tie_up
  %up_w = zext i1 %up to {w}
  %rounded = add {w} %kept, %up_w
  ; the implicit bit of %rounded adds one to the exponent field (and a carry of the
  ; rounding one more), so the field holds %rexp - 1, or 0 for a subnormal
  %rexp1 = select i1 %is_below, {w} 1, {w} %rexp
  %field_exp = sub {w} %rexp1, 1
  %field = shl {w} %field_exp, {d_man}
  %finite = add {w} %field, %rounded
  %overflow = icmp uge {w} %finite, {d_inf}
  %finite_or_inf = select i1 %overflow, {w} {d_inf}, {w} %finite
  %special = icmp uge {w} %abs, {s_inf}
  %is_nan = icmp ugt {w} %abs, {s_inf}
  %payload = lshr {w} %man, {dropped}
  %nan = or {w} %payload, {d_inf | 1 << (d_man - 1)}
  %inf_or_nan = select i1 %is_nan, {w} %nan, {w} {d_inf}
  %magnitude = select i1 %special, {w} %inf_or_nan, {w} %finite_or_inf
  %sign_moved = lshr {w} %sign, {s_bits - d_bits}
  %all = or {w} %magnitude, %sign_moved
  %narrow = trunc {w} %all to i{d_bits}
  %out = bitcast i{d_bits} %narrow to {result}
  ret {result} %out
}}
"""


_EXTEND_HALF = """
define hidden float @__extendhfsf2(half %x) {
  %h = bitcast half %x to i16
  %w = zext i16 %h to i32
  %sign16 = and i32 %w, 32768
  %sign = shl i32 %sign16, 16
  %exp_field = lshr i32 %w, 10
  %exp = and i32 %exp_field, 31
  %man = and i32 %w, 1023
  %man_moved = shl i32 %man, 13
  %rebiased = add i32 %exp, 112
  %exp_moved = shl i32 %rebiased, 23
  %normal = or i32 %exp_moved, %man_moved
  %inf_or_nan = or i32 %man_moved, 2139095040
  %special = icmp eq i32 %exp, 31
  %wide = select i1 %special, i32 %inf_or_nan, i32 %normal
  %wide_f = bitcast i32 %wide to float
  ; zero or subnormal: man * 2^-24 exactly
  %man_f = uitofp i32 %man to float
  %tiny = fmul float %man_f, 0x3E70000000000000
  %small = icmp eq i32 %exp, 0
  %magnitude = select i1 %small, float %tiny, float %wide_f
  %magnitude_bits = bitcast float %magnitude to i32
  %all = or i32 %magnitude_bits, %sign
  %out = bitcast i32 %all to float
  ret float %out
}
"""


#: Unsigned 128-bit division, one quotient bit per step (restoring long division).
#: The partial remainder stays below the divisor, but twice it may pass 2^128 when the
#: divisor is above 2^127: the bit shifted out (%carry) then forces the subtraction.
_UNSIGNED_DIVISION = """
define internal {i128, i128} @tex.udivmod128(i128 %n, i128 %d) {
entry:
  br label %step
step:
  %i = phi i32 [127, %entry], [%i.next, %step]
  %q = phi i128 [0, %entry], [%q.next, %step]
  %r = phi i128 [0, %entry], [%r.next, %step]
  %shift = zext i32 %i to i128
  %n.shifted = lshr i128 %n, %shift
  %bit = and i128 %n.shifted, 1
  %carry = icmp slt i128 %r, 0
  %twice = shl i128 %r, 1
  %r.in = or i128 %twice, %bit
  %fits = icmp uge i128 %r.in, %d
  %take = or i1 %carry, %fits
  %r.less = sub i128 %r.in, %d
  %r.next = select i1 %take, i128 %r.less, i128 %r.in
  %take.wide = zext i1 %take to i128
  %q.bit = shl i128 %take.wide, %shift
  %q.next = or i128 %q, %q.bit
  %i.next = sub i32 %i, 1
  %done = icmp eq i32 %i, 0
  br i1 %done, label %exit, label %step
exit:
  %pair = insertvalue {i128, i128} undef, i128 %q.next, 0
  %out = insertvalue {i128, i128} %pair, i128 %r.next, 1
  ret {i128, i128} %out
}
"""


def _division(name: str, signed: bool, which: str) -> str:
    """IR of `i128 name(i128 a, i128 b)`: the quotient or remainder of a / b."""
    field = 0 if which == "q" else 1
    if not signed:
        return f"""
define hidden i128 @{name}(i128 %a, i128 %b) {{
  %qr = call {{i128, i128}} @tex.udivmod128(i128 %a, i128 %b)
  %out = extractvalue {{i128, i128}} %qr, {field}
  ret i128 %out
}}
"""
    # the result's sign: the quotient's is a's xor b's, the remainder's is a's
    sign = "%sa" if which == "r" else "%sq"
    return f"""
define hidden i128 @{name}(i128 %a, i128 %b) {{
  %sa = ashr i128 %a, 127
  %sb = ashr i128 %b, 127
  %sq = xor i128 %sa, %sb
  %xa = xor i128 %a, %sa
  %ua = sub i128 %xa, %sa
  %xb = xor i128 %b, %sb
  %ub = sub i128 %xb, %sb
  %qr = call {{i128, i128}} @tex.udivmod128(i128 %ua, i128 %ub)
  %u = extractvalue {{i128, i128}} %qr, {field}
  %xu = xor i128 %u, {sign}
  %out = sub i128 %xu, {sign}
  ret i128 %out
}}
"""


def ir_text() -> str:
    """An LLVM module defining every routine of ROUTINES (hidden visibility)."""
    parts = [_EXTEND_HALF if name == "__extendhfsf2" else _truncation(name, *types)
             for name, types in _CONVERSIONS.items()]
    parts.append(_UNSIGNED_DIVISION)
    parts += [_division(name, *how) for name, how in _DIVISIONS.items()]
    return "".join(parts)


_engine = None  # the routines' machine code: kept for the life of the process


@lru_cache(maxsize=1)
def install() -> dict[str, int]:
    """Compile the routines for this machine (once per process) and define them for the
    JIT's symbol lookup, so that kernels loaded afterwards call them; returns their
    addresses. The caller holds `llvm_jit.LLVM_LOCK`."""
    global _engine
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
        opt=2, jit=True)
    module = llvm.parse_assembly(ir_text())
    module.verify()
    _engine = llvm.create_mcjit_compiler(module, machine)
    _engine.finalize_object()
    addresses = {}
    for name in sorted(ROUTINES):
        addresses[name] = _engine.get_function_address(name)
        if not addresses[name]:
            raise BuildError(f"tex's runtime routine {name} did not compile")
        llvm.add_symbol(name, addresses[name])
    return addresses
