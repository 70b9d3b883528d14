"""What tex's LLVM IR claims (`nsw`, `inbounds`, `noalias`, `align`, ...) is proven, and
TEX_LLVM_CLAIMS=0 strips every claim (see the `tex.codegen.llvm` module docstring).

Claims are checked where a wrong one gives a wrong result: int64 arithmetic that
wraps, arrays whose data is not aligned to the element size, vector accesses
whose masked-off lanes point outside the buffer.
"""
import ctypes
import re

import numpy as np
import pytest

import tex
from tex import dtype as dt
from tex.codegen import llvm, llvm_jit
from tex.dtype import INDEX
from tex.errors import ArgumentError
from tex.expr import Binary, Compare, Const, Select, Var
from tex.ir import Broadcast, Buffer, For, IntrinsicCall, Load, LoweredFunc, Ramp, Store

RNG = np.random.default_rng(11)
INT64_MAX = 2**63 - 1


def i64(value):
    return Const(INDEX, value)


def call(func, arrays, sizes):
    """Build `func` and run it on `arrays` (every param) with `sizes`."""
    compiled = llvm.build(func)
    pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    values = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(compiled.address)(pointers, values)


def _compiled_ir(monkeypatch) -> list:
    """The IR texts `compile_ir` hands to LLVM from now on (after stripping): each module
    and the modules linked into it."""
    seen = []
    optimized_object = llvm_jit.optimized_object

    def recording(ir_text, name, target, definitions=()):
        seen.extend([ir_text, *definitions])
        return optimized_object(ir_text, name, target, definitions)

    monkeypatch.setattr(llvm_jit, "optimized_object", recording)
    return seen


def _wraps_past(addend: int) -> LoweredFunc:
    """C[i] = (A[i] + addend > A[i]) as int64: false where the sum wraps (NumPy's int64)."""
    n, i = Var("n"), Var("i")
    A, C = Buffer("A", dt.int64, (n,)), Buffer("C", dt.int64, (n,))
    a = Load(A, (i,))
    above = Compare("gt", Binary("add", a, i64(addend)), a)
    body = Store(C, Select(above, i64(1), i64(0)), (i,))
    return LoweredFunc("wraps", (A, C), (n,), For(i, i64(0), n, "serial", body), (C,))


@pytest.mark.parametrize("claims", ["1", "0"])
def test_int64_arithmetic_of_loaded_values_may_wrap(monkeypatch, claims):
    """`nsw` on `A[i] + 5` let LLVM fold `A[i] + 5 > A[i]` to true; a loaded value is
    unbounded, so the add carries no flag and wraps as NumPy's does."""
    monkeypatch.setenv("TEX_LLVM_CLAIMS", claims)
    func = _wraps_past(5)
    assert re.search(r"add i64 %\S+, 5\n", str(llvm.emit_llvm(func)))  # no nsw
    a = np.concatenate([RNG.integers(-1000, 1000, 37), INT64_MAX - np.arange(9)])
    out = np.empty_like(a)
    call(func, [a, out], [a.size])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, (a + 5 > a).astype("int64"))


def test_bounded_index_arithmetic_is_nsw():
    """`i * 45 + j` over loops of constant extents cannot wrap: its `mul` and `add` are
    `nsw`; over a size variable `n` nothing bounds them, and they are not."""
    i, j, n = Var("i"), Var("j"), Var("n")
    for rows, name in [(i64(37), "bounded"), (n, "unbounded")]:
        A = Buffer("A", dt.float32, (Binary("mul", rows, i64(45)),))
        index = Binary("add", Binary("mul", i, i64(45)), j)
        body = For(i, i64(0), rows, "serial", For(j, i64(0), i64(45), "serial",
                                                   Store(A, Const(dt.float32, 1.0), (index,))))
        text = str(llvm.emit_llvm(LoweredFunc(name, (A,), (n,), body, (A,))))
        assert ("mul nsw i64" in text) == (name == "bounded"), text
        # the two loops' increments are nsw either way; the index's add only when bounded
        assert text.count("add nsw i64") == (3 if name == "bounded" else 2), text


def _scaled(n_symbolic=True):
    n = tex.var("n") if n_symbolic else 103
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 3.0 + 1.0, name="B")
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], 8)
    s[B].vectorize(inner)
    return tex.build(s, [A, B])


def test_an_array_not_aligned_to_its_element_size_is_refused():
    """Loads and stores claim the element's alignment, so an array whose data is not
    aligned to it is refused, input or output."""
    kernel = _scaled()
    raw = np.zeros(4 * 101 + 1, "uint8")
    unaligned = raw[1:].view("float32")
    assert not unaligned.flags.aligned and unaligned.flags.c_contiguous
    with pytest.raises(ArgumentError, match=r"argument A \(#0\).*not aligned to its element "
                                            r"size \(4 bytes\)"):
        kernel(unaligned)
    with pytest.raises(ArgumentError, match=r"argument B \(#1\).*not aligned"):
        kernel(np.ones(101, "float32"), unaligned)


@pytest.mark.parametrize("n_symbolic", [True, False])
def test_a_view_one_element_in_is_computed(n_symbolic):
    """`np.empty(n + 1)[1:]` is aligned to the element, not to a vector or a cache line:
    it is accepted and computed right."""
    kernel = _scaled(n_symbolic)
    a = np.empty(104, "float32")[1:]
    a[:] = RNG.uniform(-4, 4, 103).astype("float32")
    out = np.empty(104, "float32")[1:]
    kernel(a, out)
    np.testing.assert_allclose(out, a * 3.0 + 1.0, rtol=1e-6)


def test_masked_vector_accesses_do_not_claim_inbounds():
    """C[v] = v >= 1 ? A[v - 1] : 0 in vectors of 8: the first block's first lane points
    before A. Its masked load takes a plain GEP (an `inbounds` one out of bounds is
    poison, and so would be the load's address); the unmasked store keeps `inbounds`."""
    n, io = Var("n"), Var("io")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (n,))
    v = Ramp(Binary("mul", io, i64(8)), i64(1), 8)
    inside = Compare("ge", v, Broadcast(i64(1), 8))
    shifted = Ramp(Binary("sub", Binary("mul", io, i64(8)), i64(1)), i64(1), 8)
    value = Select(inside, Load(A, (shifted,)), Broadcast(Const(dt.float32, 0.0), 8))
    body = For(io, i64(0), Binary("floordiv", n, i64(8)), "serial", Store(C, value, (v,)))
    func = LoweredFunc("shift", (A, C), (n,), body, (C,))
    text = str(llvm.emit_llvm(func))
    geps = [line for line in text.splitlines() if "getelementptr" in line and "float*" in line]
    assert "llvm.masked.load" in text and len(geps) == 2, text
    load_gep, store_gep = geps
    assert "inbounds" not in load_gep and "inbounds" in store_gep
    a, out = RNG.uniform(-1, 1, 40).astype("float32"), np.empty(40, "float32")
    call(func, [a, out], [40])
    np.testing.assert_array_equal(out, np.concatenate([[0.0], a[:-1]]).astype("float32"))


#: a load or store of float32 elements (the buffers' type below) claiming more than a byte
_ALIGN_ABOVE_ONE = re.compile(r"^\s*(?:%\S+ = )?(?:load|store) (?:<\d+ x )?float\b.*"
                              r", align (?:[2-9]|\d\d+)", re.MULTILINE)
_MASKED_ALIGN = re.compile(r"@llvm\.masked\.\w+\.[^(]*\(.*\bi32 (?:[2-9]|\d\d+),")


def test_claims_off_strips_every_claim(monkeypatch):
    """With TEX_LLVM_CLAIMS=0 the IR LLVM compiles carries none of the claim tokens and no
    element load or store claims more than byte alignment; the optimised IR carries no claim only
    tex could have made (LLVM's own proofs may add `nsw` or `inbounds`), and the results
    are the same. (The entry's loads of its 8-byte slots keep `align 8`: the natural
    alignment, what a load without `align` assumes.)"""
    monkeypatch.setenv("TEX_LLVM_CLAIMS", "0")
    monkeypatch.setenv("TEX_CACHE_DIR", "off")
    seen = _compiled_ir(monkeypatch)
    n = tex.var("n")
    A = tex.placeholder((n, 19), name="A")
    B = tex.compute((n, 19), lambda i, j: tex.if_then_else(
        j >= 1, A[i, j - 1] * 2.0, A[i, j] + 1.0), name="B")
    s = tex.create_schedule(B.op)
    s[B].parallel(B.op.axis[0])
    jo, ji = s[B].split(B.op.axis[1], 8)
    s[B].vectorize(ji)
    kernel = tex.build(s, [A, B])
    a = RNG.uniform(-3, 3, (23, 19)).astype("float32")
    expected = np.where(np.arange(19) >= 1, np.roll(a, 1, axis=1) * 2.0, a + 1.0)
    np.testing.assert_allclose(kernel(a), expected, rtol=1e-6)
    assert seen, "the kernel was not compiled"
    for text in seen:
        for token in llvm_jit.CLAIM_TOKENS:
            assert not re.search(rf"(?<![\w.]){re.escape(token)}\b", text), token
        assert not _ALIGN_ABOVE_ONE.search(text)
        assert not _MASKED_ALIGN.search(text)
    optimized = kernel.get_source("ll")
    for token in ("noalias", "!range", "!invariant.load", "dereferenceable", "!alias.scope"):
        assert token not in optimized, token


TWICE_AT = """define void @tex_test_twice_at(float* noalias %p, i64 %k) {
  %q = getelementptr inbounds float, float* %p, i64 %k
  %v = load float, float* %q, align 4
  %w = fmul float %v, 2.0
  store float %w, float* %q, align 4
  ret void
}
"""


def test_claims_off_strips_the_modules_linked_in(monkeypatch):
    """An intrinsic call's definition (LLVM IR tex links into the kernel) loses its claims
    with the kernel's under TEX_LLVM_CLAIMS=0, and still computes the same."""
    monkeypatch.setenv("TEX_LLVM_CLAIMS", "0")
    seen = _compiled_ir(monkeypatch)
    n, i = Var("n"), Var("i")
    A = Buffer("A", dt.float32, (n,))
    twice = IntrinsicCall("tex_test_twice_at", (Load(A, (i64(0),)),), (i,), TWICE_AT,
                          writes=(0,))
    func = LoweredFunc("twice_all", (A,), (n,), For(i, i64(0), n, "serial", twice), (A,))
    a = RNG.uniform(-2, 2, 29).astype("float32")
    out = a.copy()
    call(func, [out], [29])
    np.testing.assert_array_equal(out, a * 2)
    assert TWICE_AT.strip() not in "".join(seen) and len(seen) == 2
    for text in seen:
        for token in ("noalias", "inbounds"):
            assert token not in text


def test_bounds_that_would_leave_int64_give_no_nsw():
    """`i * 2**40 * 2**30` over i in [0, 8): the exact product leaves int64 (it wraps), so
    neither multiply is `nsw`, and the kernel stores what wrapping int64 arithmetic gives;
    `i * 2**40` alone fits and is `nsw`."""
    i = Var("i")
    C = Buffer("C", dt.int64, (i64(8),))
    big = Binary("mul", Binary("mul", i, i64(2**40)), i64(2**30))
    func = LoweredFunc("big", (C,), (), For(i, i64(0), i64(8), "serial", Store(C, big, (i,))),
                       (C,))
    text = str(llvm.emit_llvm(func))
    assert re.search(r"mul nsw i64 %\"?i\"?, 1099511627776", text)
    assert re.search(r"mul i64 %\S+, 1073741824", text)
    out = np.empty(8, "int64")
    call(func, [out], [])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, np.arange(8) * np.int64(2**40) * np.int64(2**30))
