"""LLVM intrinsics called by name in CPU kernels (`tex.tir.call_llvm_pure_intrin`,
`call_llvm_intrin`, TVM's way of reaching an instruction tex has no intrinsic for), in
computes (a loop split by 8, its inner loop vectorized, 37 elements) and in extern stages
written with the IR builder, against NumPy."""
import numpy as np
import pytest

import tex

RNG = np.random.default_rng(3)
N = 37
FALSE = tex.tir.const(0, "int1")  # TVM's one-bit false: llvm.ctlz's "zero is poison" flag


def elementwise(fn, dtype):
    A = tex.placeholder((N,), dtype, name="A")
    B = tex.compute((N,), lambda i: fn(A[i]), name="B")
    s = tex.create_schedule(B.op)
    s[B].vectorize(s[B].split(B.op.axis[0], factor=8)[1])
    return tex.build(s, [A, B]), s, [A, B]


def leading_zeros(a, bits):
    return np.array([bits - int(v).bit_length() for v in a.astype(np.uint64) % 2**bits])


def test_ctlz_of_two_widths_beside_tex_clz():
    def counts(x):
        wide = tex.cast("int64", x)
        ctlz64 = tex.tir.call_llvm_pure_intrin("int64", "llvm.ctlz", 2, wide, FALSE)
        ctlz32 = tex.tir.call_llvm_pure_intrin("int32", "llvm.ctlz", 2, x, FALSE)
        return ctlz32 * 10000 + tex.clz(x) * 100 + tex.cast("int32", ctlz64)

    kernel, s, args = elementwise(counts, "int32")
    assert "llvm.ctlz(A[" in str(tex.lower(s, args)) and str(FALSE.dtype) == "bool"
    a = np.concatenate([[0, 1, 2**31 - 1], RNG.integers(1, 2**31 - 1, N - 3)]).astype("int32")
    clz32 = leading_zeros(a, 32)
    np.testing.assert_array_equal(kernel(a), clz32 * 10101 + 32)


def test_float_intrinsics_vectorize_or_not_and_agree_with_numpy():
    kernel, _, _ = elementwise(lambda x: tex.tir.call_llvm_pure_intrin(
        "float64", "llvm.fma", tex.const(3, "uint32"), x, x, 0.25), "float64")
    a = RNG.uniform(-4, 4, N)
    np.testing.assert_allclose(kernel(a), a * a + 0.25, rtol=1e-15)
    kernel, _, _ = elementwise(lambda x: tex.tir.call_llvm_intrin(
        "float32", "llvm.maxnum", 2, x, tex.const(0.5, "float32")), "float32")
    b = RNG.uniform(-1, 1, N).astype("float32")
    np.testing.assert_array_equal(kernel(b), np.fmax(b, np.float32(0.5)))


def test_in_an_extern_stage_built_with_the_ir_builder():
    def body(ins, outs):
        ib = tex.tir.ir_builder.create()
        with ib.for_range(0, 6, name="i") as i:
            value = ins[0].vload((i, 0))
            ib.emit(outs[0].vstore((i, 0), tex.tir.call_llvm_pure_intrin(
                "uint16", "llvm.ctpop", 1, value)))
        return ib.get()

    A = tex.placeholder((6, 1), "uint16", name="A")
    C = tex.extern((6, 1), [A], body, name="C", dtype="uint16")
    kernel = tex.build(tex.create_schedule(C.op), [A, C])
    a = RNG.integers(0, 2**16, (6, 1)).astype("uint16")
    want = np.array([[bin(int(v)).count("1")] for v in a[:, 0]], "uint16")
    np.testing.assert_array_equal(kernel(a), want)


def test_mistakes_are_named():
    x = tex.var("x", "int32")
    with pytest.raises(tex.ExprError, match="an LLVM intrinsic name such as 'llvm.ctlz', "
                       "got 'ctlz'"):
        tex.tir.call_llvm_pure_intrin("int32", "ctlz", 2, x, FALSE)
    with pytest.raises(tex.ExprError, match="num_signature must be a constant integer from 0 "
                       "to the 2 argument"):
        tex.tir.call_llvm_pure_intrin("int32", "llvm.ctlz", 3, x, FALSE)
    with pytest.raises(tex.BuildError, match="calls llvm.x86.tex_nothing, which neither tex"):
        elementwise(lambda v: tex.tir.call_llvm_pure_intrin("int32", "llvm.x86.tex_nothing",
                                                            1, v), "int32")


def test_gpu_targets_refuse_llvm_intrinsics():
    A = tex.placeholder((N,), "int32", name="A")
    B = tex.compute((N,), lambda i: tex.tir.call_llvm_pure_intrin(
        "int32", "llvm.ctlz", 2, A[i], FALSE), name="B")
    s = tex.create_schedule(B.op)
    s[B].bind(B.op.axis[0], tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.BuildError, match="llvm.ctlz: LLVM intrinsics are called in CPU "
                       "kernels .*not for target 'cuda'"):
        tex.build(s, [A, B], "cuda")


def test_lowered_programs_differing_only_in_a_calls_result_dtype_are_compiled_apart():
    """The compile cache is keyed on the printed program, which shows the result dtype."""
    a = np.array([1000.0, -1000.0, 5.0, 300.0], "float32")
    for dtype, expected in (("int8", [127, -128, 5, 127]), ("int32", [1000, -1000, 5, 300])):
        A = tex.placeholder((4,), name="A")
        B = tex.compute((4,), lambda i: tex.tir.call_llvm_pure_intrin(
            dtype, "llvm.fptosi.sat", 1, A[i]).astype("float32"), name="B")
        lowered = tex.lower(tex.create_schedule(B.op), [A, B])
        assert f"llvm.fptosi.sat<{dtype}>" in str(lowered)
        np.testing.assert_array_equal(tex.build(lowered, target="llvm")(a), expected)
