"""Expression features, compiled and compared with NumPy: dtypes, promotion, intrinsics, casts."""
import math

import numpy as np
import pytest

import tex
from tex.dtype import as_dtype, promote
from checks import check, random_array

SIZE = 37


def unary_kernel(fn, dtype="float32", shape=(SIZE,)):
    A = tex.placeholder(shape, dtype, name="A")
    B = tex.compute(shape, lambda *i: fn(A[i]), name="B")
    s = tex.create_schedule(B.op)
    return s, [A, B]


INTRINSICS = [
    ("exp", tex.exp, np.exp, lambda a: a),
    ("log", tex.log, np.log, lambda a: np.abs(a) + 0.1),
    ("sqrt", tex.sqrt, np.sqrt, lambda a: np.abs(a)),
    ("rsqrt", tex.rsqrt, lambda a: 1 / np.sqrt(a), lambda a: np.abs(a) + 0.1),
    ("tanh", tex.tanh, np.tanh, lambda a: a),
    ("sigmoid", tex.sigmoid, lambda a: 1 / (1 + np.exp(-a)), lambda a: a),
    ("erf", tex.erf, np.vectorize(math.erf), lambda a: a),
    ("abs", tex.abs, np.abs, lambda a: a),
    ("floor", tex.floor, np.floor, lambda a: a * 3),
    ("ceil", tex.ceil, np.ceil, lambda a: a * 3),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,fn,ref,domain", INTRINSICS, ids=[i[0] for i in INTRINSICS])
@pytest.mark.parametrize("vector", [False, True])
def test_intrinsic(name, fn, ref, domain, dtype, vector):
    s, args = unary_kernel(fn, dtype)
    if vector:
        s[args[1]].vectorize(s[args[1]].split(args[1].op.axis[0], factor=8)[1])
    a = domain(random_array((SIZE,), dtype)).astype(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    check(s, args, [a], ref(a.astype(np.float64)).astype(dtype), rtol=rtol, atol=rtol)


def test_pow_and_power_operator():
    A = tex.placeholder((SIZE,), name="A")
    B = tex.compute((SIZE,), lambda i: tex.pow(tex.abs(A[i]), 1.5) + A[i] ** 2.0, name="B")
    a = random_array((SIZE,))
    check(tex.create_schedule(B.op), [A, B], [a], np.abs(a) ** 1.5 + a ** 2, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_floor_division_and_modulo_of_negatives(dtype):
    A = tex.placeholder((SIZE,), dtype, name="A")
    B = tex.placeholder((SIZE,), dtype, name="B")
    Q = tex.compute((SIZE,), lambda i: A[i] // B[i], name="Q")
    R = tex.compute((SIZE,), lambda i: A[i] % B[i], name="R")
    P = tex.compute((SIZE,), lambda i: A[i] // 4 + A[i] % 3, name="P")
    s = tex.create_schedule([Q.op, R.op, P.op])
    rng = np.random.default_rng(3)
    a = rng.integers(-100, 100, SIZE).astype(dtype)
    b = rng.choice([-7, -3, -1, 1, 2, 5], SIZE).astype(dtype)
    check(s, [A, B, Q, R, P], [a, b], (a // b, a % b, a // 4 + a % 3))


def test_float_floordiv_and_mod():
    A = tex.placeholder((SIZE,), name="A")
    B = tex.compute((SIZE,), lambda i: A[i] // 0.5 + A[i] % 0.75, name="B")
    a = random_array((SIZE,))
    check(tex.create_schedule(B.op), [A, B], [a], a // 0.5 + a % 0.75, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "int64", "float16",
                                   "float32", "float64"])
def test_arithmetic_in_each_dtype(dtype):
    A = tex.placeholder((SIZE,), dtype, name="A")
    B = tex.placeholder((SIZE,), dtype, name="B")
    C = tex.compute((SIZE,), lambda i: tex.max(A[i] * B[i] + A[i], B[i]) - tex.min(A[i], 3),
                    name="C")
    s = tex.create_schedule(C.op)
    s[C].vectorize(s[C].split(C.op.axis[0], factor=16)[1])
    rng = np.random.default_rng(5)
    a = rng.integers(0, 10, SIZE).astype(dtype)
    b = rng.integers(1, 10, SIZE).astype(dtype)
    want = np.maximum(a * b + a, b) - np.minimum(a, np.array(3, dtype))
    check(s, [A, B, C], [a, b], want.astype(dtype), rtol=1e-3)


def test_casts_between_kinds():
    A = tex.placeholder((SIZE,), "float32", name="A")
    I = tex.compute((SIZE,), lambda i: tex.cast("int32", A[i] * 10.0), name="I")
    U = tex.compute((SIZE,), lambda i: tex.cast("uint8", tex.abs(I[i]) % 200), name="U")
    F = tex.compute((SIZE,), lambda i: tex.cast("float64", U[i]) + tex.cast("float64", A[i]),
                    name="F")
    H = tex.compute((SIZE,), lambda i: tex.cast("float16", F[i]), name="H")
    s = tex.create_schedule([I.op, U.op, F.op, H.op])
    a = random_array((SIZE,))
    i = (a * 10).astype(np.int32)
    u = (np.abs(i) % 200).astype(np.uint8)
    f = u.astype(np.float64) + a.astype(np.float64)
    check(s, [A, I, U, F, H], [a], (i, u, f, f.astype(np.float16)), rtol=1e-3)


def test_bool_outputs_comparisons_and_logic():
    A = tex.placeholder((SIZE,), name="A")
    B = tex.placeholder((SIZE,), name="B")
    C = tex.compute((SIZE,), lambda i: ((A[i] < B[i]) & (A[i] > 0.0)) | ~(B[i] != A[i]),
                    name="C")
    D = tex.compute((SIZE,), lambda i: tex.if_then_else(C[i], A[i], B[i] * 2.0), name="D")
    s = tex.create_schedule([C.op, D.op])
    a, b = random_array((SIZE,)), random_array((SIZE,))
    a[:5] = b[:5]
    c = ((a < b) & (a > 0)) | (b == a)
    check(s, [A, B, C, D], [a, b], (c, np.where(c, a, b * 2)))


def test_all_any_and_select_alias():
    A = tex.placeholder((SIZE,), name="A")
    B = tex.compute((SIZE,), lambda i: tex.select(
        tex.any(A[i] > 1.0, tex.all(A[i] < 0.0, A[i] > -0.5)), 1.0, 0.0), name="B")
    a = random_array((SIZE,))
    want = ((a > 1) | ((a < 0) & (a > -0.5))).astype(np.float32)
    check(tex.create_schedule(B.op), [A, B], [a], want)


def test_index_arithmetic_in_values():
    n = tex.var("n")
    B = tex.compute((n, 5), lambda i, j: tex.cast("float32", i * 5 + j) / 2.0 + (i % 3), name="B")
    kernel = tex.build(tex.create_schedule(B.op), [B])
    out = np.empty((7, 5), np.float32)
    kernel(out)
    i, j = np.meshgrid(np.arange(7), np.arange(5), indexing="ij")
    np.testing.assert_allclose(out, (i * 5 + j) / 2 + i % 3)


def test_reducers_max_min_with_where():
    A = tex.placeholder((9, 40), name="A")
    k = tex.reduce_axis((0, 40), name="k")
    hi = tex.compute((9,), lambda i: tex.max(A[i, k], axis=k, where=A[i, k] < 0.5), name="hi")
    lo = tex.compute((9,), lambda i: tex.min(A[i, k], axis=k), name="lo")
    s = tex.create_schedule([hi.op, lo.op])
    a = random_array((9, 40))
    check(s, [A, hi, lo], [a], (np.where(a < 0.5, a, -np.inf).max(1), a.min(1)))


def test_reduce_axis_with_nonzero_start():
    A = tex.placeholder((6, 30), name="A")
    k = tex.reduce_axis((5, 23), name="k")
    B = tex.compute((6,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    s[B].split(k, factor=4)
    a = random_array((6, 30))
    check(s, [A, B], [a], a[:, 5:23].sum(1), rtol=1e-5, atol=1e-5)


def test_promotion_rules():
    f16, f32, f64 = (as_dtype(t) for t in ("float16", "float32", "float64"))
    i8, i32, i64, u8, u64 = (as_dtype(t) for t in ("int8", "int32", "int64", "uint8", "uint64"))
    assert promote(i32, f16) == f16
    assert promote(f32, f64) == f64
    assert promote(i8, i32) == i32
    assert promote(u8, i8) == as_dtype("int16")
    assert promote(u64, i64) == i64
    A = tex.placeholder((3,), "float16", name="A")
    assert (A[0] + 1).dtype == f16 and (A[0] * 2.5).dtype == f16
    I = tex.placeholder((3,), "int32", name="I")
    assert (I[0] + 1).dtype == i32
    assert (I[0] + 1.5).dtype == f32
    assert (I[0] / 2).dtype == f32


def test_constant_folding_and_structural_equality():
    i = tex.var("i")
    assert str(tex.const(3) * 4 + 2) == "14"
    assert str(i * 1 + 0) == "i"
    assert bool((i + 1) == (i + 1)) and not bool((i + 1) == (tex.var("i") + 1))
    assert hash(i * 2) == hash(i * 2)


def test_comm_reducer_sum_of_squares():
    sumsq = tex.comm_reducer(lambda x, y: x + y, lambda t: tex.const(0, t), name="sumsq")
    A = tex.placeholder((8, 33), name="A")
    k = tex.reduce_axis((0, 33), name="k")
    B = tex.compute((8,), lambda i: sumsq(A[i, k] * A[i, k], axis=k), name="B")
    a = random_array((8, 33))
    check(tex.create_schedule(B.op), [A, B], [a], (a * a).sum(1), rtol=1e-5)


def test_elementwise_max_min_forms():
    A = tex.placeholder((SIZE,), name="A")
    B = tex.compute((SIZE,), lambda i: tex.max(A[i], 0.0) + tex.min(A[i], 0.25), name="B")
    a = random_array((SIZE,))
    check(tex.create_schedule(B.op), [A, B], [a], np.maximum(a, 0) + np.minimum(a, 0.25))


@pytest.mark.parametrize("build", [
    lambda A: A[0] + "x",
    lambda A: tex.reduce_axis((0, 4, 5)),
    lambda A: A[0, 1],
    lambda A: tex.if_then_else(A[0], 1.0, 2.0),
    lambda A: tex.placeholder((3,), "complex64"),
    lambda A: A[0.5],
])
def test_bad_expressions_raise_expr_error(build):
    A = tex.placeholder((4,), name="A")
    with pytest.raises(tex.ExprError):
        build(A)


def test_compute_function_arity_must_match_the_shape():
    A = tex.placeholder((4, 5), name="A")
    with pytest.raises(tex.ExprError, match="compute B: the shape has 2 dimension"):
        tex.compute((4, 5), lambda i: A[i, 0], name="B")


def test_symbolic_expression_has_no_truth_value():
    i = tex.var("i")
    with pytest.raises(tex.ExprError, match="truth value"):
        if i < 3:
            pass
