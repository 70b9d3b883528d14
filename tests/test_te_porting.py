"""What porting TE code to tex needs: programs TE accepts, compiled and compared with NumPy."""
import ctypes

import numpy as np
import pytest

import tex
from checks import check, random_array


def test_a_zero_dimensional_intermediate_stage():
    A = tex.placeholder((7,), "float32", name="A")
    k = tex.reduce_axis((0, 7), name="k")
    C = tex.compute((), lambda: tex.sum(A[k], axis=k), name="C")
    D = tex.compute((), lambda: C[()] + 1.0, name="D")
    a = random_array((7,))
    check(tex.create_schedule(D.op), [A, D], [a], np.asarray(a.sum() + 1, "float32"))
    E = tex.compute((3,), lambda i: A[i] * D[()], name="E")  # a 0-d stage read by a 1-d one
    check(tex.create_schedule(E.op), [A, E], [a], a[:3] * (a.sum() + 1), rtol=1e-5)


def test_fuse_of_no_axes_gives_a_loop_of_one_iteration():
    A = tex.placeholder((7,), "float32", name="A")
    k = tex.reduce_axis((0, 7), name="k")
    D = tex.compute((), lambda: tex.sum(A[k] * 2.0, axis=k), name="D")
    s = tex.create_schedule(D.op)
    one = s[D].fuse()
    assert s[D].leaf_iter_vars[0] is one and "fuse() -> singleton" in "\n".join(s[D].describe())
    s[D].bind(one, tex.thread_axis("blockIdx.x"))
    f = tex.build(s, [A, D], target="cuda")
    a, out = random_array((7,)), np.zeros((), "float32")
    f.simulate(a, out)
    np.testing.assert_allclose(out, 2 * a.sum(), rtol=1e-5)
    s = tex.create_schedule(D.op)
    s[D].fuse()
    check(s, [A, D], [a], np.asarray(2 * a.sum(), "float32"), rtol=1e-5)


def test_stages_computed_at_an_axis_follow_it_when_it_is_split_or_fused():
    A = tex.placeholder((10, 37), "float32", name="A")
    B = tex.compute((10, 37), lambda i, j: A[i, j] + 1.0, name="B")
    C = tex.compute((10, 37), lambda i, j: B[i, j] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    i, j = C.op.axis
    jo, ji = s[C].split(j, factor=8)
    s[B].compute_at(s[C], jo)
    joo, joi = s[C].split(jo, factor=2)  # B goes to joi, the innermost part of jo
    assert s[B].attach.axis is joi
    fused = s[C].fuse(i, joo)
    a = random_array((10, 37))
    check(s, [A, C], [a], (a + 1) * 2)
    s[C].parallel(fused)
    check(s, [A, C], [a], (a + 1) * 2)


def test_a_stage_computed_at_a_loop_is_a_kernel_argument():
    A = tex.placeholder((29,), "float32", name="A")
    B = tex.compute((29,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((29,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    outer, _ = s[C].split(C.op.axis[0], factor=8)
    s[B].compute_at(s[C], outer)
    a = random_array((29,))
    check(s, [A, B, C], [a], [a + 1, (a + 1) * 2])
    s[B].compute_inline()
    with pytest.raises(tex.LoweringError, match="stage B is a kernel argument.*not inlined"):
        tex.lower(s, [A, B, C])


def lower_triangle_sums(n):
    """Y[i] = sum of X[i, :i + 1]: a reduction whose bounds use the data axis."""
    X = tex.placeholder((n, n), "float32", name="X")

    def row(i):
        k = tex.reduce_axis((0, i + 1), name="k")
        return tex.sum(X[i, k], axis=k)
    return X, tex.compute((n,), row, name="Y")


@pytest.mark.parametrize("how", ["plain", "split", "cache_write", "compute_at"])
def test_a_reduction_bounded_by_a_data_axis(how):
    n = tex.var("n")
    X, Y = lower_triangle_sums(n)
    out = Y
    s = tex.create_schedule(Y.op)
    if how == "split":
        s[Y].split(Y.op.axis[0], factor=3)
    elif how == "cache_write":
        YL = s.cache_write(Y, "local")
        outer, _ = s[Y].split(Y.op.axis[0], factor=3)
        s[YL].compute_at(s[Y], outer)
    elif how == "compute_at":  # Y's buffer holds a tile whose start is not 0
        out = tex.compute((n,), lambda i: Y[i] * 2.0, name="Z")
        s = tex.create_schedule(out.op)
        outer, _ = s[out].split(out.op.axis[0], factor=4)
        s[Y].compute_at(s[out], outer)
    x = random_array((11, 11))
    expected = np.tril(x).sum(axis=1) * (2.0 if how == "compute_at" else 1.0)
    check(s, [X, out], [x], expected.astype("float32"), rtol=1e-4)


def test_dtypes_compare_with_their_names_and_pass_to_numpy():
    A = tex.placeholder((3, 4), "float32", name="A")
    assert A.dtype == "float32" and A.dtype == "float" and A.dtype != "int32"
    assert {A.dtype: 1}["float32"] == 1
    assert np.zeros((2,), dtype=A.dtype).dtype == np.float32
    assert np.arange(3).astype(A.dtype).dtype == np.float32
    assert tex.placeholder((2,), "float").dtype == "float32"


def test_tensors_are_called_or_indexed_one_dimension_at_a_time():
    A = tex.placeholder((5, 6), "float32", name="A")
    B = tex.compute((5, 6), lambda i, j: A[i][j] * 2.0 + A(i, j), name="B")
    a = random_array((5, 6))
    check(tex.create_schedule(B.op), [A, B], [a], 3 * a)
    with pytest.raises(tex.ExprError, match="A has 2 dimensions but 1 index"):
        tex.compute((5,), lambda i: A[i] + 1.0)


def scaled(dtype: str):
    """B = A * alpha with alpha a scalar parameter, split and vectorized."""
    n, alpha = tex.var("n"), tex.var("alpha", dtype)
    A = tex.placeholder((n,), dtype, name="A")
    B = tex.compute((n,), lambda i: A[i] * alpha, name="B")
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(inner)
    return s, A, B, alpha, n


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_float_scalar_parameter_is_passed_at_each_call(dtype):
    s, A, B, alpha, _ = scaled(dtype)
    f = tex.build(s, [A, B, alpha])
    a = random_array((37,), dtype)
    for value in (2.5, np.float32(-0.75), 3):
        b = np.empty_like(a)
        f(a, b, value)
        np.testing.assert_allclose(b, a * np.array(value, dtype), rtol=1e-6)
    np.testing.assert_allclose(f(a, 0.5), a * 0.5, rtol=1e-6)  # the output allocated
    assert "alpha: " + dtype in f.get_source("tex").splitlines()[0]


def test_an_int_scalar_parameter_in_an_index_and_a_condition():
    n, shift, limit = tex.var("n"), tex.var("shift", "int32"), tex.var("limit")
    A = tex.placeholder((n + 8,), name="A")
    B = tex.compute((n,), lambda i: tex.if_then_else(i < limit, A[i + shift], 0.0), name="B")
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=4)
    s[B].vectorize(inner)
    f = tex.build(s, [A, shift, B, limit])
    a = random_array((29,))
    for k, cut in ((0, 21), (3, 5), (8, -1)):
        b = np.empty(21, "float32")
        f(a, k, b, cut)
        np.testing.assert_array_equal(b, np.where(np.arange(21) < cut, a[k:k + 21], 0))


def test_a_size_variable_named_in_args_is_checked_against_the_arrays():
    s, A, B, alpha, n = scaled("float32")
    f = tex.build(s, [A, B, n, alpha])
    a = random_array((19,))
    np.testing.assert_allclose(f(a, 19, 2.0), a * 2, rtol=1e-6)
    with pytest.raises(tex.ArgumentError, match="size variable n .*is 18, but the arrays "
                                                "give n = 19"):
        f(a, 18, 2.0)


def test_a_scalar_argument_that_does_not_fit_is_refused():
    s, A, B, alpha, _ = scaled("float32")
    f = tex.build(s, [A, B, alpha])
    a = random_array((5,))
    with pytest.raises(tex.ArgumentError, match="alpha .*1e\\+40 does not fit its dtype "
                                                "float32"):
        f(a, 1e40)
    with pytest.raises(tex.ArgumentError, match="alpha .*expected a float of dtype float32, "
                                                "got str"):
        f(a, "2")
    with pytest.raises(tex.ArgumentError, match=r"takes 3 arguments \(A, B, alpha\) or its 2 "
                                                r"inputs \(A, alpha\)"):
        f(a)
    n, k = tex.var("n"), tex.var("k", "int8")
    A = tex.placeholder((n,), "int32", name="A")
    C = tex.compute((n,), lambda i: A[i] + k.astype("int32"), name="C")
    g = tex.build(tex.create_schedule(C.op), [A, C, k])
    with pytest.raises(tex.ArgumentError, match=r"k .*300 does not fit its dtype int8"):
        g(np.zeros(3, "int32"), 300)
    with pytest.raises(tex.ArgumentError, match="k .*expected an int of dtype int8, got float"):
        g(np.zeros(3, "int32"), 1.0)


def test_a_variable_argument_of_a_vector_dtype_is_refused():
    A = tex.placeholder((4,), name="A")
    v = tex.expr.Var("v", tex.dtype.float32.with_lanes(4))
    B = tex.compute((4,), lambda i: A[i] * 2.0, name="B")
    with pytest.raises(tex.LoweringError, match="argument 2 is the variable v of dtype "
                                                "float32x4"):
        tex.build(tex.create_schedule(B.op), [A, B, v])


def test_a_variable_argument_is_refused_for_cuda_with_what_to_do():
    n, alpha = tex.var("n"), tex.var("alpha", "float32")
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * alpha, name="B")
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=64)
    s[B].bind(outer, tex.thread_axis("blockIdx.x"))
    s[B].bind(inner, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.BuildError, match="argument alpha is a variable.*takes tensors only"):
        tex.build(s, [A, B, alpha], target="cuda")


def test_a_scalar_parameter_kernel_loads_from_the_disk_cache(cache_dir):
    from tex.runtime import clear_cache
    s, A, B, alpha, _ = scaled("float64")
    tex.build(s, [A, alpha, B])
    clear_cache()  # memory only: the next build, of the same program declared anew, reads it
    s, A, B, alpha, _ = scaled("float64")
    again = tex.build(s, [A, alpha, B])
    a = random_array((13,), "float64")
    assert again.loaded_from_disk
    np.testing.assert_allclose(again(a, -1.5), a * -1.5)


def test_a_scalar_parameter_kernel_through_a_library(tmp_path):
    s, A, B, alpha, _ = scaled("float32")
    f = tex.build(s, [A, alpha, B], name="scale")
    path = tex.export_library([f], tmp_path / "scale.so")
    assert "sizes[1]: alpha (float32, scalar parameter: its IEEE bits, low 32)" in \
        path.with_suffix(".h").read_text()
    lib = tex.load_library(path)
    a = random_array((21,))
    np.testing.assert_allclose(lib.scale(a, 1.25), a * 1.25, rtol=1e-6)
    b = np.empty_like(a)
    lib.scale(a, -2.0, b)
    np.testing.assert_allclose(b, a * -2, rtol=1e-6)
    # a C caller passes the float's bits; bits above them are refused
    entry = ctypes.CDLL(str(path)).scale
    buffers = (ctypes.c_void_p * 2)(a.ctypes.data, b.ctypes.data)
    bits = int(np.float32(3.0).view(np.uint32))
    assert entry(buffers, (ctypes.c_int64 * 2)(21, bits)) == 0
    np.testing.assert_allclose(b, a * 3, rtol=1e-6)
    assert entry(buffers, (ctypes.c_int64 * 2)(21, bits | 2**40)) == 2  # TEX_ERROR_SIZE


def test_auto_inline_and_normalize():
    A = tex.placeholder((6, 7), "float32", name="A")
    B = tex.compute((6, 7), lambda i, j: A[i, j] * 2.0, name="B")       # elementwise
    C = tex.compute((6, 7), lambda i, j: B[i, 6 - j] + 1.0, name="C")   # injective only
    k = tex.reduce_axis((0, 7), name="k")
    D = tex.compute((6,), lambda i: tex.sum(C[i, k], axis=k), name="D")
    s = tex.create_schedule(D.op).normalize()
    tex.schedule.AutoInlineElemWise(s)
    assert [s[t].attach.kind for t in (B, C, D)] == ["inline", "root", "root"]
    tex.schedule.AutoInlineInjective(s)
    assert [s[t].attach.kind for t in (B, C, D)] == ["inline", "inline", "root"]
    a = random_array((6, 7))
    check(s, [A, D], [a], (a[:, ::-1] * 2 + 1).sum(axis=1), rtol=1e-5)


def test_stmt_functor_walks_and_rewrites_the_loop_program():
    import dataclasses
    from tex.ir import For
    from tex.tir import stmt_functor
    A = tex.placeholder((10,), "float32", name="A")
    B = tex.compute((10,), lambda i: A[i] + 1.0, name="B")
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=4)
    body = tex.lower(s, [A, B])["main"].body
    names = []
    stmt_functor.post_order_visit(body, lambda n: names.append(n.var.name)
                                  if isinstance(n, For) else None)
    assert names == ["i_inner", "i_outer"]  # children first
    unrolled = stmt_functor.ir_transform(
        body, None, lambda n: dataclasses.replace(n, kind="unrolled"), ["tir.For"])
    assert [n.kind for n in tex.visitor.collect(unrolled, lambda n: isinstance(n, For))] == \
        ["unrolled", "unrolled"]


@pytest.mark.parametrize("strategies", [(None, None), ("shared", "shared"), ("shared", "warp")])
def test_a_reduction_over_two_thread_axes(strategies):
    A = tex.placeholder((19, 200), "float32", name="A")
    k = tex.reduce_axis((0, 200), name="k")
    B = tex.compute((19,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=32)
    kc, ko = s[B].split(ko, nparts=4)
    s[B].reorder(B.op.axis[0], kc, ko, ki)
    s[B].bind(B.op.axis[0], tex.thread_axis("blockIdx.x"))
    s[B].bind(kc, tex.thread_axis("threadIdx.y"))
    s[B].bind(ki, tex.thread_axis("threadIdx.x"))
    for axis, strategy in zip((kc, ki), strategies):
        if strategy is not None:
            s[B].reduce_strategy(axis, strategy)
    f = tex.build(s, [A, B], target="cuda")
    a, out = random_array((19, 200)), np.zeros(19, "float32")
    f.simulate(a, out)
    np.testing.assert_allclose(out, a.sum(axis=1), rtol=1e-4, atol=1e-4)
