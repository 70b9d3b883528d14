"""The runtime routines LLVM's code generator may call, defined by tex.

On a CPU without an instruction for a float conversion, LLVM lowers it to a
call of a routine of compiler-rt / libgcc: double -> half on any x86 CPU
without AVX512-FP16 becomes `__truncdfhf2`, float -> bfloat16 without
AVX512-BF16 `__truncsfbf2`, half <-> float without F16C `__truncsfhf2` and
`__extendhfsf2`. Neither the process nor LLVM's JIT is sure to define them,
so tex does: each routine here is LLVM IR written with integer operations only
(so that compiling it calls nothing), correctly rounded (to nearest, ties to
even, subnormals kept, overflow to infinity, NaN stays NaN with its payload's
top bits, as compiler-rt does).

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

#: routine -> (source type, result type); every one of them narrows but __extendhfsf2.
ROUTINES = {"__truncsfhf2": ("float", "half"), "__truncdfhf2": ("double", "half"),
            "__truncsfbf2": ("float", "bfloat"), "__truncdfbf2": ("double", "bfloat"),
            "__extendhfsf2": ("half", "float")}


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


def ir_text() -> str:
    """An LLVM module defining every routine of ROUTINES (hidden visibility)."""
    parts = [_EXTEND_HALF if name == "__extendhfsf2" else _truncation(name, *types)
             for name, types in ROUTINES.items()]
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
    for name in ROUTINES:
        addresses[name] = _engine.get_function_address(name)
        if not addresses[name]:
            raise BuildError(f"tex's runtime routine {name} did not compile")
        llvm.add_symbol(name, addresses[name])
    return addresses
