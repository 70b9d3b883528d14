"""Kernel: the two calling forms, argument checking, sources, the compile cache."""
import numpy as np
import pytest

import tex
from tex import dtype as dt
from tex.dtype import INDEX
from tex.errors import ArgumentError, BuildError
from tex.expr import Binary, Const, Var
from tex.ir import Buffer, For, Load, LoweredFunc, Store, seq
from tex.runtime import Kernel, build_kernel, compile_cached
from tex.runtime import cache
from tex.target import Target

RNG = np.random.default_rng(11)


def i64(value):
    return Const(INDEX, value)


def add_rows():
    """C[i, j] = A[i, j] + B[j] for A, C of shape (n, m), B of shape (m,)."""
    n, m = Var("n"), Var("m")
    A = Buffer("A", dt.float32, (n, m))
    B = Buffer("B", dt.float32, (m,))
    C = Buffer("C", dt.float32, (n, m))
    i, j = Var("i"), Var("j")
    at = Binary("add", Binary("mul", i, m), j)
    body = For(i, i64(0), n, "serial", For(j, i64(0), m, "serial", Store(
        C, Binary("add", Load(A, (at,)), Load(B, (j,))), (at,))))
    return LoweredFunc("add_rows", (A, B, C), (n, m), body, (C,))


@pytest.fixture(scope="module")
def kernel():
    return build_kernel(add_rows())


def data(n=37, m=5):
    return RNG.random((n, m), dtype=np.float32), RNG.random(m, dtype=np.float32)


# --- calling --------------------------------------------------------------------------------
def test_destination_passing_returns_none(kernel):
    a, b = data()
    c = np.empty_like(a)
    assert kernel(a, b, c) is None
    np.testing.assert_array_equal(c, a + b)


def test_outputs_are_allocated_and_returned(kernel):
    a, b = data(129, 3)
    c = kernel(a, b)
    assert c.shape == (129, 3) and c.dtype == np.float32
    np.testing.assert_array_equal(c, a + b)


def test_returned_outputs_start_on_a_cache_line(kernel):
    # NumPy aligns large arrays to 16 bytes only; tex allocates its outputs on 64
    for n in (1, 37, 70001):
        a, b = data(n, 5)
        c = kernel(a, b)
        assert c.ctypes.data % 64 == 0 and c.flags.c_contiguous and c.flags.writeable
        np.testing.assert_array_equal(c, a + b)


@pytest.mark.parametrize("dtype", ["float32", np.float64, np.dtype("int8"), dt.int16])
@pytest.mark.parametrize("shape", [0, 7, (3, 5), (1000, 33), (2, 0, 4)])
def test_empty_is_aligned_and_contiguous(shape, dtype):
    a = tex.empty(shape, dtype)
    want = np.empty(shape, dtype.numpy if isinstance(dtype, dt.DType) else dtype)
    assert a.shape == want.shape and a.dtype == want.dtype
    assert a.flags.c_contiguous and a.flags.writeable
    if a.size:  # an empty array has no data to align
        assert a.ctypes.data % 64 == 0
        assert tex.empty(shape, dtype, alignment=4096).ctypes.data % 4096 == 0


@pytest.mark.parametrize("call, words", [
    (lambda: tex.empty(8, alignment=48), "power of two"),
    (lambda: tex.empty(8, alignment=0), "power of two"),
    (lambda: tex.empty((4, -1)), "non-negative"),
    (lambda: tex.empty((4, 2.0)), "non-negative"),
])
def test_empty_refuses_bad_arguments(call, words):
    with pytest.raises(ArgumentError, match=words):
        call()


def test_several_outputs_come_back_as_a_tuple():
    n = Var("n")
    A, S, D = (Buffer(name, dt.int32, (n,)) for name in "ASD")
    i = Var("i")
    one = Const(dt.int32, 1)
    body = For(i, i64(0), n, "serial", seq(
        Store(S, Binary("add", Load(A, (i,)), one), (i,)),
        Store(D, Binary("sub", Load(A, (i,)), one), (i,))))
    k = build_kernel(LoweredFunc("two", (A, S, D), (n,), body, (S, D)))
    a = RNG.integers(-50, 50, 37).astype("int32")
    s, d = k(a)
    np.testing.assert_array_equal(s, a + 1)
    np.testing.assert_array_equal(d, a - 1)


def test_missing_outputs_field_means_the_last_param(kernel):
    func = add_rows()
    func = LoweredFunc(func.name, func.params, func.size_vars, func.body)  # outputs = ()
    k = Kernel(func, compile_cached(func, "llvm"))
    a, b = data()
    np.testing.assert_array_equal(k(a, b), a + b)


def test_dlpack_objects_are_accepted(kernel):
    class Tensor:  # what torch.Tensor looks like to the runtime
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    a, b = data()
    np.testing.assert_array_equal(kernel(Tensor(a), Tensor(b)), a + b)


def test_compound_dimensions_are_evaluated():
    n = Var("n")
    A = Buffer("A", dt.float64, (n,))
    C = Buffer("C", dt.float64, (Binary("add", n, i64(2)),))
    i = Var("i")
    body = For(i, i64(0), n, "serial",
               Store(C, Load(A, (i,)), (Binary("add", i, i64(1)),)))
    k = build_kernel(LoweredFunc("shift", (A, C), (n,), body, (C,)))
    a = RNG.random(10)
    c = np.zeros(12)
    k(a, c)
    np.testing.assert_array_equal(c[1:11], a)
    assert k(a).shape == (12,)
    with pytest.raises(ArgumentError, match=r"argument C \(#1\): dimension 0 should be "
                                            r"n \+ 2 = 12, got 11"):
        k(a, np.zeros(11))


# --- argument errors ----------------------------------------------------------------------
def test_wrong_number_of_arguments(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"takes 3 arguments \(A, B, C\) or its 2 inputs "
                                            r"\(A, B\).*got 1"):
        kernel(a)
    with pytest.raises(ArgumentError, match="got 4"):
        kernel(a, b, a, b)


def test_wrong_rank(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): expected 1 dimension.*"
                                            r"shape \(m,\).*got 2"):
        kernel(a, a)


def test_wrong_dtype_is_never_cast(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): expected dtype float32, "
                                            r"got float64"):
        kernel(a.astype("float64"), b)


def test_disagreeing_size_variable_names_both_arguments(kernel):
    a, b = data(37, 5)
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): dimension 0 is m = 4, but "
                                            r"argument A \(#0\) dimension 1 set m = 5"):
        kernel(a, b[:4])
    with pytest.raises(ArgumentError, match=r"argument C \(#2\): dimension 0 is n = 36.*"
                                            r"argument A \(#0\) dimension 0 set n = 37"):
        kernel(a, b, np.empty((36, 5), "float32"))


def test_size_variable_repeated_in_one_argument():
    n = Var("n")
    A, C = Buffer("A", dt.int32, (n, n)), Buffer("C", dt.int32, (n,))
    i = Var("i")
    diagonal = Binary("mul", i, Binary("add", n, i64(1)))
    k = build_kernel(LoweredFunc("diag", (A, C), (n,), For(
        i, i64(0), n, "serial", Store(C, Load(A, (diagonal,)), (i,))), (C,)))
    a = RNG.integers(0, 100, (6, 6)).astype("int32")
    np.testing.assert_array_equal(k(a), np.diag(a))
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): dimension 1 is n = 7, but "
                                            r"argument A \(#0\) dimension 0 set n = 6"):
        k(np.zeros((6, 7), "int32"))


def test_constant_dimension_mismatch():
    A = Buffer("A", dt.int8, (i64(4),))
    C = Buffer("C", dt.int8, (i64(4),))
    i = Var("i")
    k = build_kernel(LoweredFunc("copy4", (A, C), (), For(
        i, i64(0), i64(4), "serial", Store(C, Load(A, (i,)), (i,))), (C,)))
    a = np.arange(4, dtype="int8")
    np.testing.assert_array_equal(k(a), a)
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): dimension 0 should be 4, got 5"):
        k(np.arange(5, dtype="int8"))


def test_non_contiguous_array(kernel):
    a, b = data(37, 10)
    with pytest.raises(ArgumentError, match=r"argument A \(#0\) is not C-contiguous.*"
                                            r"np.ascontiguousarray"):
        kernel(a[:, ::2], b[:5])
    with pytest.raises(ArgumentError, match="argument A .* not C-contiguous"):
        kernel(np.asfortranarray(a), b)


def test_non_array_argument(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): expected a numpy.ndarray or "
                                            r"an object with __dlpack__, got list"):
        kernel(a, list(b))


def test_dlpack_on_another_device(kernel):
    class GpuTensor:
        def __dlpack__(self, **kwargs):
            raise AssertionError("must not be called")

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA

    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\) lives on DLPack device \(2, 0\)"):
        kernel(a, GpuTensor())


def test_output_must_not_overlap_an_input(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"output argument C \(#2\) overlaps argument A"):
        kernel(a, b, a)
    big = np.empty(a.size + 3, "float32")  # B's first two elements are C's last two
    with pytest.raises(ArgumentError, match="overlaps argument B"):
        kernel(a, big[a.size - 2:], big[:a.size].reshape(a.shape))
    big = np.empty(a.size + 5, "float32")  # adjacent is fine
    big[a.size:] = b
    kernel(a, big[a.size:], big[:a.size].reshape(a.shape))
    np.testing.assert_array_equal(big[:a.size].reshape(a.shape), a + b)


def test_read_only_output(kernel):
    a, b = data()
    c = np.empty_like(a)
    c.flags.writeable = False
    with pytest.raises(ArgumentError, match=r"argument C \(#2\) is an output but .*read-only"):
        kernel(a, b, c)


def test_unbindable_size_variable_is_a_build_error():
    n, m = Var("n"), Var("m")
    C = Buffer("C", dt.int64, (n,))
    i = Var("i")
    func = LoweredFunc("unbound", (C,), (n, m), For(i, i64(0), n, "serial", Store(C, m, (i,))))
    with pytest.raises(BuildError, match="size variable m"):
        build_kernel(func)


def test_output_shape_not_set_by_inputs():
    n, m = Var("n"), Var("m")
    A, C = Buffer("A", dt.int64, (n,)), Buffer("C", dt.int64, (m,))
    i = Var("i")
    k = build_kernel(LoweredFunc("fill", (A, C), (n, m), For(
        i, i64(0), m, "serial", Store(C, n, (i,))), (C,)))
    c = np.empty(3, "int64")
    k(np.zeros(5, "int64"), c)
    np.testing.assert_array_equal(c, [5, 5, 5])
    with pytest.raises(ArgumentError, match="cannot allocate output C .* m is not set"):
        k(np.zeros(5, "int64"))


def test_input_dimension_set_only_by_an_output():
    m = Var("m")
    A, C = Buffer("A", dt.int64, (Binary("add", m, i64(1)),)), Buffer("C", dt.int64, (m,))
    i = Var("i")
    k = build_kernel(LoweredFunc("head", (A, C), (m,), For(
        i, i64(0), m, "serial", Store(C, Load(A, (i,)), (i,))), (C,)))
    a, c = np.arange(4, dtype="int64"), np.empty(3, "int64")
    k(a, c)
    np.testing.assert_array_equal(c, a[:3])
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): dimension 0 is m \+ 1, but m "
                                            r"is not set by the arguments given"):
        k(a)


# --- sources, attributes, cache ------------------------------------------------------------
def test_sources(kernel):
    assert kernel.get_source("tex") == str(kernel.func)
    assert "define void @add_rows(" in kernel.get_source("ll")
    assert "add_rows:" in kernel.get_source("asm")
    with pytest.raises(ArgumentError, match=r"'tex', 'll', 'asm'"):
        kernel.get_source("cuda")


def test_attributes(kernel):
    assert kernel.target == Target("llvm")
    assert kernel.func.name == "add_rows"


def test_identical_programs_compile_once():
    first = compile_cached(add_rows(), "llvm")
    assert compile_cached(add_rows(), "llvm") is first
    assert compile_cached(add_rows(), Target("llvm")) is first
    assert compile_cached(add_rows(), "llvm -fastmath") is not first
    size = cache.cache_size()
    build_kernel(add_rows())
    assert cache.cache_size() == size


def test_variable_dtypes_are_part_of_the_cache_key():
    def program(index_dtype):
        n = Var("n")
        C = Buffer("C", dt.int64, (n,))
        i = Var("i", index_dtype)
        return LoweredFunc("iota", (C,), (n,), For(
            i, Const(index_dtype, 0), Const(index_dtype, 5), "serial",
            Store(C, Binary("mul", Const(dt.int64, 2), Const(dt.int64, 3)), (i,))))

    assert str(program(dt.int32)) == str(program(dt.int64))
    assert compile_cached(program(dt.int32)) is not compile_cached(program(dt.int64))
