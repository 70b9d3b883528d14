"""LLVM codegen: hand-built lowered programs, compiled and compared with NumPy.

The programs are what lowering produces (one flattened index per access,
explicit vectors, serial/parallel loops), built directly from tex.ir nodes.
Data is random, sizes do not divide the vector widths. A vectorized
`elementwise` program has a vector loop and a scalar tail, so one kernel
checks both forms of an operation.
"""
import ctypes
import math

import numpy as np
import pytest

from tex import dtype as dt
from tex.codegen import llvm
from tex.dtype import INDEX
from tex.errors import ArgumentError, BuildError
from tex.expr import (Binary, Call, Cast, Compare, Const, INTRINSICS, Let, Logical, Not,
                      Select, Var)
from tex.ir import (Allocate, Broadcast, Buffer, For, IfThenElse, LetStmt, Load, LoweredFunc,
                    Ramp, Store, seq)

RNG = np.random.default_rng(7)
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


# --- building programs ---------------------------------------------------------------------
def i64(value):
    return Const(INDEX, value)


def const(value, dtype, lanes=1):
    c = Const(dtype, value)
    return c if lanes == 1 else Broadcast(c, lanes)


def loop(var, extent, body, kind="serial", start=0):
    start = i64(start) if isinstance(start, int) else start
    extent = i64(extent) if isinstance(extent, int) else extent
    return For(var, start, extent, kind, body)


def elementwise(name, fn, in_dtypes, out_dtype, lanes=1, kind="serial"):
    """`C[i] = fn(loads, lanes)` over n elements: a vector loop of `lanes` plus a scalar tail.

    `fn(values, lanes)` gets the loaded inputs (scalars or vectors of `lanes`).
    """
    n = Var("n")
    ins = [Buffer(f"A{k}", d, (n,)) for k, d in enumerate(in_dtypes)]
    out = Buffer("C", out_dtype, (n,))

    def body(index, width):
        return Store(out, fn([Load(b, (index,)) for b in ins], width), (index,))

    if lanes == 1:
        i = Var("i")
        stmt = loop(i, n, body(i, 1), kind)
    else:
        io, t = Var("io"), Var("t")
        main = loop(io, Binary("floordiv", n, i64(lanes)),
                    body(Ramp(Binary("mul", io, i64(lanes)), i64(1), lanes), lanes), kind)
        done = Binary("mul", Binary("floordiv", n, i64(lanes)), i64(lanes))
        tail = loop(t, Binary("sub", n, done), body(Binary("add", done, t), 1))
        stmt = seq(main, tail)
    return LoweredFunc(name, tuple(ins) + (out,), (n,), stmt, (out,))


def run(func, *arrays, target="llvm", sizes=None):
    """Compile `func` and call it on `arrays` (all params); returns the compiled module."""
    compiled = llvm.build(func, target)
    call(compiled, arrays, sizes if sizes is not None else [arrays[0].shape[0]])
    return compiled


def call(compiled, arrays, sizes):
    pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    values = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
    _ENTRY(compiled.address)(pointers, values)


def random(shape, dtype, low=-10, high=10):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return RNG.random(shape) < 0.5
    if dtype.kind == "f":
        return RNG.uniform(low, high, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(max(low, info.min), min(high, info.max) + 1, shape).astype(dtype)


# --- elementwise, scalar and vector --------------------------------------------------------
@pytest.mark.parametrize("n", [37, 1000, 129])
@pytest.mark.parametrize("lanes", [1, 16])
def test_elementwise_fma(n, lanes):
    func = elementwise("fma", lambda v, w: Binary("add", Binary("mul", v[0], v[1]), v[2]),
                       [dt.float32] * 3, dt.float32, lanes)
    a, b, c = (random(n, "float32") for _ in range(3))
    out = np.empty(n, "float32")
    run(func, a, b, c, out)
    np.testing.assert_allclose(out, a * b + c, rtol=1e-5, atol=1e-5)


def test_vector_loads_are_contiguous_vector_instructions():
    func = elementwise("add", lambda v, w: Binary("add", v[0], v[1]), [dt.float32] * 2,
                       dt.float32, 16)
    text = str(llvm.emit_llvm(func))
    assert "load <16 x float>, <16 x float>*" in text and "align 4" in text
    assert "store <16 x float>" in text
    assert "gather" not in text and "noalias" in text
    compiled = llvm.build(func)
    assert "<16 x float>" in compiled.get_source("ll")
    assert "zmm" in compiled.get_source("asm")  # the 512-bit vectors are kept whole


@pytest.mark.parametrize("target", ["llvm -mcpu=skylake-avx512", "llvm -mcpu=haswell"])
def test_named_cpu_targets(target):
    func = elementwise("mul", lambda v, w: Binary("mul", v[0], v[1]), [dt.float64] * 2,
                       dt.float64, 8)
    a, b, out = random(129, "float64"), random(129, "float64"), np.empty(129)
    compiled = run(func, a, b, out, target=target)
    np.testing.assert_allclose(out, a * b)
    assert ("zmm" in compiled.get_source("asm")) == target.endswith("avx512")


def test_float_flags_follow_the_target():
    func = elementwise("fma", lambda v, w: Binary("add", Binary("mul", v[0], v[1]), v[0]),
                       [dt.float32] * 2, dt.float32)
    default = str(llvm.emit_llvm(func, "llvm"))
    assert "fmul contract" in default and "fast" not in default
    assert "fmul fast" in str(llvm.emit_llvm(func, "llvm -fastmath"))


def test_leftover_vectorized_and_unrolled_loops_run_serially():
    n = Var("n")
    A, C = Buffer("A", dt.int32, (n,)), Buffer("C", dt.int32, (n,))
    i, j = Var("i"), Var("j")
    index = Binary("add", Binary("mul", i, i64(4)), j)
    body = loop(i, Binary("floordiv", n, i64(4)), loop(j, 4, Store(
        C, Binary("mul", Load(A, (index,)), Const(dt.int32, 3)), (index,)), "unrolled"),
        "vectorized")
    a, out = random(40, "int32"), np.zeros(40, "int32")
    run(LoweredFunc("leftover", (A, C), (n,), body), a, out)
    np.testing.assert_array_equal(out, a * 3)


# --- integer division ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "int8"])
@pytest.mark.parametrize("divisor", [4, 3, -3, -4, None])
def test_floordiv_floormod_match_python(dtype, divisor, lanes=8):
    d = dt.as_dtype(dtype)

    def fn(op):
        def value(v, w):
            b = v[1] if divisor is None else const(divisor, d, w)
            return Binary(op, v[0], b)
        return value

    a = random(37, dtype, -100, 100)
    b = random(37, dtype, -9, 9)
    b[b == 0] = 5
    for op, expected in (("floordiv", a // (b if divisor is None else divisor)),
                         ("floormod", a % (b if divisor is None else divisor))):
        out = np.empty(37, dtype)
        run(elementwise(op, fn(op), [d, d], d, lanes), a, b, out)
        np.testing.assert_array_equal(out, expected, err_msg=op)


@pytest.mark.parametrize("divisor", [8, 7])
def test_unsigned_division(divisor):
    a = random(37, "uint32", 0, 4_000_000_000)
    for op, expected in (("floordiv", a // divisor), ("floormod", a % divisor)):
        out = np.empty(37, "uint32")
        func = elementwise(op, lambda v, w: Binary(op, v[0], const(divisor, dt.uint32, w)),
                           [dt.uint32], dt.uint32, 4)
        run(func, a, out)
        np.testing.assert_array_equal(out, expected)


# --- intrinsics --------------------------------------------------------------------------------
_REFERENCE = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
    "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "erf": np.vectorize(math.erf), "abs": np.abs, "floor": np.floor, "ceil": np.ceil,
    "pow": np.power, "fmax": np.fmax, "fmin": np.fmin,
    "nearbyint": np.rint, "round": np.round, "trunc": np.trunc, "exp2": np.exp2,
    "exp10": lambda x: np.power(x.dtype.type(10), x), "log2": np.log2, "log10": np.log10,
    "log1p": np.log1p, "sin": np.sin, "cos": np.cos, "tan": np.tan, "sinh": np.sinh,
    "cosh": np.cosh, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "atan2": np.arctan2,
    "hypot": np.hypot, "copysign": np.copysign, "nextafter": np.nextafter, "fmod": np.fmod,
}


#: (low, high) of the random arguments of intrinsics defined on part of the line only.
_DOMAINS = {**dict.fromkeys(("log", "sqrt", "rsqrt", "pow", "log2", "log10"), (0.1, 4)),
            **dict.fromkeys(("asin", "acos", "atanh"), (-1, 1)),
            "log1p": (-0.9, 4), "acosh": (1, 4)}


def test_every_intrinsic_has_a_reference():
    assert set(_REFERENCE) == set(INTRINSICS)


@pytest.mark.parametrize("name", sorted(INTRINSICS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_intrinsics_match_numpy(name, dtype, lanes=4):
    low, high = _DOMAINS.get(name, (-4, 4))
    arity = INTRINSICS[name]
    args = [random(37, dtype, low, high) for _ in range(arity)]
    func = elementwise(name, lambda v, w: Call(name, tuple(v)), [dt.as_dtype(dtype)] * arity,
                       dt.as_dtype(dtype), lanes)
    out = np.empty(37, dtype)
    run(func, *args, out)
    rtol = 2e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(out, _REFERENCE[name](*args).astype(dtype), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8"])
def test_integer_abs(dtype):
    a = random(37, dtype, -100, 200)
    out = np.empty(37, dtype)
    d = dt.as_dtype(dtype)
    run(elementwise("iabs", lambda v, w: Call("abs", tuple(v)), [d], d, 8), a, out)
    np.testing.assert_array_equal(out, np.abs(a))


# --- casts, compares, bool, float16 -----------------------------------------------------------
_CASTS = [("int32", "float32"), ("float32", "int32"), ("float64", "float32"),
          ("float32", "float64"), ("int8", "int64"), ("uint8", "int32"), ("int64", "int8"),
          ("uint32", "float64"), ("float32", "bool"), ("int32", "bool"), ("bool", "float32"),
          ("bool", "int32"), ("float32", "float16"), ("float16", "float64"),
          ("float64", "uint8"), ("int16", "uint16")]


@pytest.mark.parametrize("src,dst", _CASTS)
def test_casts_match_numpy(src, dst, lanes=8):
    low = 0 if dst.startswith("uint") else -100
    a = random(37, src, low, 200)
    if src.startswith("float"):
        a[:4] = [0.0, -0.0, 2.5, -2.5]  # zeros (bool), truncation toward zero
    out = np.empty(37, dst)
    run(elementwise("cast", lambda v, w: Cast(dt.as_dtype(dst).with_lanes(w), v[0]),
                    [dt.as_dtype(src)], dt.as_dtype(dst), lanes), a, out)
    np.testing.assert_array_equal(out, a.astype(dst))


@pytest.mark.parametrize("op,ufunc", [("lt", np.less), ("ge", np.greater_equal),
                                      ("ne", np.not_equal), ("eq", np.equal)])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "int16"])
def test_compares_store_bools(op, ufunc, dtype, lanes=16):
    a, b = random(129, dtype, 0, 250), random(129, dtype, 0, 250)
    b[::3] = a[::3]
    if dtype == "float32":
        a[5] = b[7] = np.nan
    out = np.empty(129, bool)
    d = dt.as_dtype(dtype)
    run(elementwise("cmp", lambda v, w: Compare(op, v[0], v[1]), [d, d], dt.bool_, lanes),
        a, b, out)
    np.testing.assert_array_equal(out, ufunc(a, b))


@pytest.mark.parametrize("lanes", [1, 16])
def test_bool_loads_logic_and_select(lanes):
    def fn(v, w):
        keep = Logical("or", v[0], Not(v[1]))
        return Select(keep, v[2], Binary("max", v[2], const(0.5, dt.float32, w)))

    m1, m2, x = random(129, bool), random(129, bool), random(129, "float32")
    out = np.empty(129, "float32")
    run(elementwise("logic", fn, [dt.bool_, dt.bool_, dt.float32], dt.float32, lanes),
        m1, m2, x, out)
    np.testing.assert_array_equal(out, np.where(m1 | ~m2, x, np.maximum(x, 0.5)))


@pytest.mark.parametrize("lanes", [1, 32])
def test_float16_arithmetic(lanes):
    a, b = random(129, "float16", -4, 4), random(129, "float16", -4, 4)
    out = np.empty(129, "float16")
    run(elementwise("h", lambda v, w: Binary("add", Binary("mul", v[0], v[1]), v[0]),
                    [dt.float16] * 2, dt.float16, lanes), a, b, out)
    np.testing.assert_allclose(out.astype("float32"), (a * b + a).astype("float32"),
                               rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dtype", ["int32", "float64", "uint16"])
def test_min_max(dtype):
    a, b = random(37, dtype, 0, 1000), random(37, dtype, 0, 1000)
    d = dt.as_dtype(dtype)
    out = np.empty(37, dtype)
    run(elementwise("mm", lambda v, w: Binary("sub", Binary("max", v[0], v[1]),
                                              Binary("min", v[0], v[1])), [d, d], d, 4),
        a, b, out)
    np.testing.assert_array_equal(out, np.maximum(a, b) - np.minimum(a, b))


def test_let_and_letstmt_and_if_then_else():
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (n,))
    i, x, y = Var("i"), Var("x", dt.float32), Var("y", dt.float32)
    value = Let(y, Binary("mul", x, x), Binary("add", y, x))
    body = LetStmt(x, Load(A, (i,)), IfThenElse(
        Compare("gt", x, Const(dt.float32, 0.0)), Store(C, value, (i,)),
        Store(C, Const(dt.float32, -1.0), (i,))))
    a, out = random(37, "float32"), np.empty(37, "float32")
    run(LoweredFunc("lets", (A, C), (n,), loop(i, n, body)), a, out)
    np.testing.assert_allclose(out, np.where(a > 0, a * a + a, -1), rtol=1e-6)


# --- lazy select -----------------------------------------------------------------------------
FAR = 2 ** 40  # an index that faults if it is ever read


def test_scalar_select_does_not_evaluate_the_untaken_side():
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (n,))
    i = Var("i")
    odd = Compare("eq", Binary("floormod", i, i64(2)), i64(1))
    value = Select(odd, Load(A, (Binary("add", i, i64(FAR)),)), Load(A, (i,)))
    value = Select(Not(odd), value, Const(dt.float32, 7.0))
    a, out = random(37, "float32"), np.empty(37, "float32")
    run(LoweredFunc("lazy", (A, C), (n,), loop(i, n, Store(C, value, (i,)))), a, out)
    np.testing.assert_array_equal(out, np.where(np.arange(37) % 2 == 1, 7.0, a))


def test_convolution_padding_scalar():
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (Binary("add", n, i64(2)),))
    i = Var("i")
    inside = Logical("and", Compare("ge", i, i64(1)), Compare("le", i, n))
    value = Select(inside, Load(A, (Binary("sub", i, i64(1)),)), Const(dt.float32, 0.0))
    a, out = random(37, "float32"), np.empty(39, "float32")
    run(LoweredFunc("pad", (A, C), (n,), loop(i, Binary("add", n, i64(2)),
                                             Store(C, value, (i,)))), a, out)
    np.testing.assert_array_equal(out, np.pad(a, 1))


def _padded_vector_copy(index_of):
    """C[v] = v < n ? A[index_of(v)] : -1 over ceil(n / 16) blocks of 16 lanes."""
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (i64(48),))
    io = Var("io")
    v = Ramp(Binary("mul", io, i64(16)), i64(1), 16)
    inside = Compare("lt", v, Broadcast(n, 16))
    value = Select(inside, Load(A, (index_of(v, inside),)), const(-1.0, dt.float32, 16))
    body = Store(C, value, (v,))
    blocks = Binary("floordiv", Binary("add", n, i64(15)), i64(16))
    return LoweredFunc("vpad", (A, C), (n,), loop(io, blocks, body))


@pytest.mark.parametrize("kind", ["dense", "gather"])
def test_vector_select_masks_its_loads(kind):
    def far(v, inside):  # lanes outside would read 2**40 elements away
        return Binary("add", v, Select(inside, const(0, INDEX, 16), const(FAR, INDEX, 16)))

    func = _padded_vector_copy((lambda v, inside: v) if kind == "dense" else far)
    text = str(llvm.emit_llvm(func))
    assert ("llvm.masked.load" in text) == (kind == "dense")
    assert ("llvm.masked.gather" in text) == (kind == "gather")
    a, out = random(37, "float32"), np.empty(48, "float32")
    run(func, a, out)
    np.testing.assert_array_equal(out, np.concatenate([a, -np.ones(11, "float32")]))


def test_nested_vector_selects_and_scalar_load_under_a_mask():
    n = Var("n")
    A, S = Buffer("A", dt.float32, (n,)), Buffer("S", dt.float32, (i64(1),))
    C = Buffer("C", dt.float32, (i64(48),))
    io = Var("io")
    v = Ramp(Binary("mul", io, i64(16)), i64(1), 16)
    inside = Compare("lt", v, Broadcast(n, 16))
    even = Compare("eq", Binary("floormod", v, const(2, INDEX, 16)), const(0, INDEX, 16))
    scale = Broadcast(Load(S, (Binary("mul", io, i64(FAR)),)), 16)  # valid only for io == 0
    first = Compare("lt", v, const(16, INDEX, 16))
    inner = Select(even, Load(A, (v,)), Select(first, scale, const(2.0, dt.float32, 16)))
    value = Select(inside, inner, const(-1.0, dt.float32, 16))
    blocks = Binary("floordiv", Binary("add", n, i64(15)), i64(16))
    func = LoweredFunc("nested", (A, S, C), (n,), loop(io, blocks, Store(C, value, (v,))))
    a, s, out = random(37, "float32"), np.array([3.5], "float32"), np.empty(48, "float32")
    run(func, a, s, out)
    k = np.arange(48)
    expected = np.where(k % 2 == 0, np.pad(a, (0, 11)), np.where(k < 16, 3.5, 2.0))
    np.testing.assert_array_equal(out, np.where(k < 37, expected, -1))


def test_vector_if_then_else_masks_stores():
    n = Var("n")
    A, C = Buffer("A", dt.int32, (n,)), Buffer("C", dt.int32, (n,))
    io = Var("io")
    v = Ramp(Binary("mul", io, i64(8)), i64(1), 8)
    body = IfThenElse(Compare("lt", v, Broadcast(n, 8)),
                      Store(C, Binary("add", Load(A, (v,)), const(1, dt.int32, 8)), (v,)))
    blocks = Binary("floordiv", Binary("add", n, i64(7)), i64(8))
    a, out = random(37, "int32"), np.zeros(37, "int32")
    run(LoweredFunc("vif", (A, C), (n,), loop(io, blocks, body)), a, out)
    np.testing.assert_array_equal(out, a + 1)


# --- gathers and scatters ---------------------------------------------------------------------
def test_gather_through_an_index_buffer():
    n, m = Var("n"), Var("m")
    A, I, C = (Buffer("A", dt.float64, (m,)), Buffer("I", dt.int32, (n,)),
               Buffer("C", dt.float64, (n,)))
    io = Var("io")
    v = Ramp(Binary("mul", io, i64(8)), i64(1), 8)
    body = Store(C, Load(A, (Load(I, (v,)),)), (v,))
    a, idx = random(50, "float64"), RNG.integers(0, 50, 40).astype("int32")
    out = np.empty(40)
    func = LoweredFunc("gather", (A, I, C), (n, m), loop(io, Binary("floordiv", n, i64(8)), body))
    assert "llvm.masked.gather" in str(llvm.emit_llvm(func))
    run(func, a, idx, out, sizes=[40, 50])
    np.testing.assert_array_equal(out, a[idx])


def test_strided_load_and_store():
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (n,))
    io = Var("io")
    base = Binary("mul", io, i64(16))
    evens, odds = Ramp(base, i64(2), 8), Ramp(Binary("add", base, i64(1)), i64(2), 8)
    body = seq(Store(C, Load(A, (odds,)), (evens,)), Store(C, Load(A, (evens,)), (odds,)))
    func = LoweredFunc("swap", (A, C), (n,), loop(io, Binary("floordiv", n, i64(16)), body))
    a, out = random(64, "float32"), np.empty(64, "float32")
    run(func, a, out)
    np.testing.assert_array_equal(out, a.reshape(-1, 2)[:, ::-1].ravel())


# --- parallel loops -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1000, 3, 0])
def test_parallel_loop_captures_sizes_lets_and_buffers(n):
    n_ = Var("n")
    A, C = Buffer("A", dt.float32, (n_, i64(4))), Buffer("C", dt.float32, (n_, i64(4)))
    i, j, scale = Var("i"), Var("j"), Var("scale", dt.float32)
    index = Binary("add", Binary("mul", i, i64(4)), j)
    inner = loop(j, 4, Store(C, Binary("mul", Load(A, (index,)), scale), (index,)))
    body = LetStmt(scale, Cast(dt.float32, n_), loop(i, n_, inner, "parallel"))
    func = LoweredFunc("par", (A, C), (n_,), body)
    compiled = llvm.build(func)
    assert "tex_parallel_for" in compiled.get_source("ll")
    a, out = random((n, 4), "float32"), np.full((n, 4), np.nan, "float32")
    call(compiled, [a, out], [n])
    np.testing.assert_allclose(out, a * np.float32(n), rtol=1e-6)


def test_nested_parallel_loops_run_the_inner_one_serially():
    n = Var("n")
    A, C = Buffer("A", dt.int64, (n, n)), Buffer("C", dt.int64, (n, n))
    i, j, k = Var("i"), Var("j"), Var("k")
    index = Binary("add", Binary("mul", i, n), j)
    inner = loop(j, n, Store(C, Binary("add", Load(A, (index,)), i), (index,)), "parallel")
    func = LoweredFunc("nest", (A, C), (n,), seq(
        loop(i, n, inner, "parallel"),
        loop(k, 1, Store(C, i64(5), (k,)), "parallel")))
    text = str(llvm.emit_llvm(func))
    assert text.count("call void @\"tex_parallel_for\"") == 2  # the outer loop, the second nest
    a, out = random((33, 33), "int64"), np.empty((33, 33), "int64")
    run(func, a, out)
    expected = a + np.arange(33)[:, None]
    expected[0, 0] = 5
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("n, m", [(7, 20000), (3, 1), (0, 5)])
def test_a_parallel_loops_heap_buffer_is_allocated_once_per_chunk(n, m):
    """A buffer allocated at the top of a parallel loop's body, of a size the iteration
    does not change, is allocated before the chunk's iterations and reused by them; one
    whose size depends on the iteration stays inside. Each row still comes out right."""
    n_, m_ = Var("n"), Var("m")
    A, C = Buffer("A", dt.float32, (n_, m_)), Buffer("C", dt.float32, (n_, m_))
    i, j, k = Var("i"), Var("j"), Var("k")
    T = Buffer("T", dt.float32, (m_,), scope="global")
    row = Binary("mul", i, m_)
    fill = loop(j, m_, Store(T, Binary("mul", Load(A, (Binary("add", row, j),)),
                                       Const(dt.float32, 2.0)), (j,)))
    back = Binary("sub", Binary("sub", m_, i64(1)), k)  # T read backwards
    use = loop(k, m_, Store(C, Binary("add", Load(T, (back,)), Const(dt.float32, 1.0)),
                            (Binary("add", row, k),)))
    func = LoweredFunc("rows", (A, C), (n_, m_),
                       loop(i, n_, Allocate(T, seq(fill, use)), "parallel"))
    text = str(llvm.emit_llvm(func))
    body = text[text.index("_parallel0_body"):]
    assert body.index("@\"aligned_alloc\"") < body.index("i.header:")
    a, out = random((n, m), "float32"), np.empty((n, m), "float32")
    call(llvm.build(func), [a, out], [n, m])
    np.testing.assert_allclose(out, a[:, ::-1] * 2 + 1, rtol=1e-6)
    sized = Buffer("T", dt.float32, (Binary("add", i, i64(1)),), scope="global")
    per_row = LoweredFunc("per_row", (A, C), (n_, m_), loop(
        i, n_, Allocate(sized, Store(sized, Const(dt.float32, 0.0), (i64(0),))), "parallel"))
    body = str(llvm.emit_llvm(per_row))
    body = body[body.index("_parallel0_body"):]
    assert body.index("i.header:") < body.index("@\"aligned_alloc\"")


def _parallel_scale():
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n,)), Buffer("C", dt.float32, (n,))
    i = Var("i")
    body = Store(C, Binary("mul", Load(A, (i,)), Const(dt.float32, 3.0)), (i,))
    return LoweredFunc("scale", (A, C), (n,), loop(i, n, body, "parallel"))


# --- allocations -----------------------------------------------------------------------------
def _two_pass(tmp_shape, kind="serial", per_row=False):
    """C[i, j] = 2 * (A[i, j] + 1) through a temporary buffer T."""
    n = Var("n")
    A, C = Buffer("A", dt.float32, (n, i64(8))), Buffer("C", dt.float32, (n, i64(8)))
    T = Buffer("T", dt.float32, tmp_shape(n))
    i, j, k = Var("i"), Var("j"), Var("k")
    at = Binary("add", Binary("mul", i, i64(8)), j)
    t_at = j if per_row else at
    first = loop(j, 8, Store(T, Binary("add", Load(A, (at,)), Const(dt.float32, 1.0)), (t_at,)))
    second = loop(j, 8, Store(C, Binary("mul", Load(T, (t_at,)), Const(dt.float32, 2.0)), (at,)))
    if per_row:
        body = loop(i, n, Allocate(T, seq(first, second)), kind)
    else:
        body = Allocate(T, seq(loop(i, n, first, kind), loop(k, n, LetStmt(i, k, second))))
    return LoweredFunc("twopass", (A, C), (n,), body)


@pytest.mark.parametrize("shape,where", [
    (lambda n: (i64(100), i64(8)), "stack"),
    (lambda n: (i64(3000), i64(8)), "heap"),  # 96 KiB
    (lambda n: (n, i64(8)), "heap"),  # symbolic
])
def test_allocate_on_stack_or_heap(shape, where):
    func = _two_pass(shape)
    text = str(llvm.emit_llvm(func))
    assert ("aligned_alloc" in text) == (where == "heap")
    entry = text.split("start:")[0]  # allocas live in the entry block
    assert ("alloca [800 x float], align 64" in entry) == (where == "stack")
    a, out = random((100, 8), "float32"), np.empty((100, 8), "float32")
    run(func, a, out)
    np.testing.assert_allclose(out, 2 * (a + 1), rtol=1e-6)


@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_allocate_inside_a_loop_is_per_iteration(kind):
    func = _two_pass(lambda n: (i64(8),), kind, per_row=True)
    text = str(llvm.emit_llvm(func))
    if kind == "parallel":  # the alloca belongs to the outlined body
        outlined = text.split('define internal void @"twopass_parallel0_body"')[1]
        assert "alloca [8 x float], align 64" in outlined.split("start:")[0]
    a, out = random((1000, 8), "float32"), np.empty((1000, 8), "float32")
    run(func, a, out)
    np.testing.assert_allclose(out, 2 * (a + 1), rtol=1e-6)


# --- errors ---------------------------------------------------------------------------------
def test_undefined_variable_is_a_build_error():
    n, m, i = Var("n"), Var("m"), Var("i")
    C = Buffer("C", dt.int64, (n,))
    func = LoweredFunc("bad", (C,), (n,), loop(i, n, Store(C, m, (i,))))
    with pytest.raises(BuildError, match="variable m"):
        llvm.emit_llvm(func)


def test_unflattened_access_is_a_build_error():
    n, i = Var("n"), Var("i")
    C = Buffer("C", dt.int64, (n, n))
    func = LoweredFunc("bad", (C,), (n,), loop(i, n, Store(C, i, (i, i))))
    with pytest.raises(BuildError, match="flatten"):
        llvm.emit_llvm(func)


def test_only_cpu_targets_compile():
    func = elementwise("copy", lambda v, w: v[0], [dt.int32], dt.int32)
    with pytest.raises(BuildError, match="cannot compile for target 'cuda -arch=sm_80'"):
        llvm.build(func, "cuda -arch=sm_80")


def test_compiled_module_sources():
    func = elementwise("src", lambda v, w: v[0], [dt.int32], dt.int32)
    compiled = llvm.build(func)
    assert "define void @src(" in compiled.get_source("ll")
    assert "src:" in compiled.get_source("asm")
    with pytest.raises(ArgumentError, match="'ll', 'asm'"):
        compiled.get_source("ptx")


def test_reserved_kernel_names_are_renamed():
    func = elementwise("free", lambda v, w: v[0], [dt.int32], dt.int32)
    assert llvm.entry_name(func) == "tex_free"
    a, out = random(5, "int32"), np.empty(5, "int32")
    run(func, a, out)
    np.testing.assert_array_equal(out, a)


def test_a_libm_call_links_in_a_fresh_process():
    """The first kernel of a process may call libm (float64 tanh does, lane by lane)."""
    import subprocess
    import sys
    code = ("import numpy as np, tex\n"
            "A = tex.placeholder((5,), 'float64', name='A')\n"
            "B = tex.compute((5,), lambda i: tex.tanh(A[i]), name='B')\n"
            "a = np.linspace(-2, 2, 5)\n"
            "assert np.allclose(tex.build(tex.create_schedule(B.op), [A, B])(a), np.tanh(a))\n")
    env = {**__import__("os").environ, "TEX_CACHE_DIR": "off"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
