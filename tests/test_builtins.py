"""tex's definitions of the runtime routines LLVM's code generator may call: the 128-bit
divisions, checked against Python's integers (the float conversions are checked by
tests/test_machines.py and tests/test_bfloat16.py through kernels)."""
import ctypes
import random

import llvmlite.binding as llvm
import pytest

from tex.codegen import llvm_builtins, llvm_jit

_CALLER = """
declare i128 @{name}(i128, i128)
define void @call(i64 %alo, i64 %ahi, i64 %blo, i64 %bhi, i64* %out) {{
  %al = zext i64 %alo to i128
  %ah.w = zext i64 %ahi to i128
  %ah = shl i128 %ah.w, 64
  %a = or i128 %al, %ah
  %bl = zext i64 %blo to i128
  %bh.w = zext i64 %bhi to i128
  %bh = shl i128 %bh.w, 64
  %b = or i128 %bl, %bh
  %r = call i128 @{name}(i128 %a, i128 %b)
  %lo = trunc i128 %r to i64
  %r.hi = lshr i128 %r, 64
  %hi = trunc i128 %r.hi to i64
  store i64 %lo, i64* %out
  %out.hi = getelementptr i64, i64* %out, i64 1
  store i64 %hi, i64* %out.hi
  ret void
}}
"""
_BITS = 1 << 128


def _signed(x: int) -> int:
    return x - _BITS if x >= _BITS >> 1 else x


def _expected(name: str, a: int, b: int) -> int:
    """C's result: truncating division, the remainder with the dividend's sign."""
    if name.startswith("__u"):
        return a // b if "div" in name else a % b
    sa, sb = _signed(a), _signed(b)
    q = abs(sa) // abs(sb) * (1 if (sa < 0) == (sb < 0) else -1)
    return (q if "div" in name else sa - q * sb) % _BITS


def _routine(name: str):
    with llvm_jit.LLVM_LOCK:
        llvm_builtins.install()
        module = llvm.parse_assembly(_CALLER.format(name=name))
        machine = llvm.Target.from_default_triple().create_target_machine()  # the engine's own
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
    call = ctypes.CFUNCTYPE(None, *[ctypes.c_uint64] * 4, ctypes.POINTER(ctypes.c_uint64))(
        engine.get_function_address("call"))
    out = (ctypes.c_uint64 * 2)()

    def run(a: int, b: int) -> int:
        call(a % 2**64, a >> 64, b % 2**64, b >> 64, out)
        return out[0] | out[1] << 64
    return engine, run


@pytest.mark.parametrize("name", ["__udivti3", "__umodti3", "__divti3", "__modti3"])
def test_128_bit_divisions_match_c(name):
    engine, run = _routine(name)  # noqa: F841 - the engine keeps the code alive
    rng = random.Random(name)
    cases = [(7, 2), (_BITS - 7, 2), (_BITS - 1, _BITS - 1), (_BITS >> 1, 3), (5, _BITS - 1),
             ((_BITS >> 1) + 9, (_BITS >> 1) + 1)]
    for _ in range(400):
        a = rng.getrandbits(rng.choice([8, 64, 100, 127, 128]))
        b = rng.getrandbits(rng.choice([1, 8, 64, 100, 127, 128])) or 1
        cases.append((a, b))
    for a, b in cases:
        assert run(a, b) == _expected(name, a, b), (name, a, b)
