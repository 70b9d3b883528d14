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


def test_an_inlined_stage_among_the_arguments_is_a_param_left_unwritten():
    A = tex.placeholder((29,), "float32", name="A")
    B = tex.compute((29,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((29,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    s[B].compute_inline()
    assert "B: float32[29]" in str(tex.lower(s, [A, B, C]))
    f = tex.build(s, [A, B, C])
    a, b, c = random_array((29,)), np.full(29, 7.0, "float32"), np.zeros(29, "float32")
    f(a, b, c)
    np.testing.assert_allclose(c, (a + 1) * 2, rtol=1e-6)
    np.testing.assert_array_equal(b, np.full(29, 7.0, "float32"))
    np.testing.assert_allclose(f(a, b), (a + 1) * 2, rtol=1e-6)  # C alone is an output


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


def test_a_whole_float_dimension_is_that_int_and_another_float_is_an_error():
    B = tex.placeholder((12, 64), "float32", name="B")
    bn = 16
    packed = tex.compute((64 / bn, 12, bn), lambda x, y, z: B[y, x * bn + z], name="packed")
    assert [int(d.value) for d in packed.shape] == [4, 12, 16]
    b = random_array((12, 64))
    check(tex.create_schedule(packed.op), [B, packed], [b],
          b.reshape(12, 4, 16).transpose(1, 0, 2))
    with pytest.raises(tex.ExprError, match="packed2: dimension 0 must be a whole number.*2.5"):
        tex.compute((10 / 4, 12), lambda x, y: B[y, x], name="packed2")


def test_target_takes_target_and_host_as_keywords():
    target = tex.Target(target="llvm", host="llvm")
    assert target.kind.name == "llvm" and target.host.kind.name == "llvm"


def test_thread_axis_takes_a_range_and_a_name_as_in_te():
    A = tex.placeholder((37,), "float32", name="A")
    B = tex.compute((37,), lambda i: A[i] * 3.0, name="B")
    s = tex.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=8)
    with pytest.raises(tex.ScheduleError, match="i_inner has 8 iterations.*range \\(0, 4\\)"):
        s[B].bind(tx, tex.thread_axis((0, 4), "threadIdx.x"))
    s[B].bind(tx, tex.thread_axis((0, 8), "threadIdx.x"))
    block = tex.thread_axis("blockIdx.x", name="bx")
    assert block.name == "bx" and block == tex.thread_axis("blockIdx.x")
    s[B].bind(bx, block)
    a, out = random_array((37,)), np.zeros(37, "float32")
    tex.build(s, [A, B], target="cuda").simulate(a, out)
    np.testing.assert_allclose(out, a * 3)
    with pytest.raises(tex.ScheduleError, match="range must be \\(0, n\\)"):
        tex.thread_axis((1, 4), "threadIdx.x")
    with pytest.raises(tex.ScheduleError, match="unknown thread axis"):
        tex.thread_axis((0, 4), "threadIdx.w")


def test_a_store_predicate_keeps_the_stores_where_it_holds():
    A = tex.placeholder((23, 9), "float32", name="A")
    k = tex.reduce_axis((0, 9), name="k")
    B = tex.compute((23, 9), lambda i, j: A[i, j] + 1.0, name="B")
    C = tex.compute((23,), lambda i: tex.sum(A[i, k], axis=k), name="C")
    a = random_array((23, 9))
    for out, expected, cond in [(B, a + 1, lambda i: (i % 3).equal(1)),
                                (C, a.sum(axis=1), lambda i: i < 11)]:
        s = tex.create_schedule(out.op)
        s[out].split(out.op.axis[0], factor=4)
        s[out].set_store_predicate(cond(out.op.axis[0]))
        got = np.full(expected.shape, -7.0, "float32")
        tex.build(s, [A, out])(a, got)
        keep = np.arange(23) % 3 == 1 if out is B else np.arange(23) < 11
        want = np.where(keep.reshape((23,) + (1,) * (expected.ndim - 1)), expected, -7.0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(tex.ScheduleError, match="expected a bool expression"):
        s[C].set_store_predicate(C.op.axis[0] + 1)
    s[C].set_store_predicate(k.var < 3)
    with pytest.raises(tex.LoweringError, match="reads reduction axis k"):
        tex.lower(s, [A, C])
    s[C].set_store_predicate(tex.thread_axis("threadIdx.x").var.equal(0))
    with pytest.raises(tex.LoweringError, match="reads threadIdx.x, but no loop"):
        tex.lower(s, [A, C])


def test_one_thread_stores_a_reduction_across_threads_by_its_store_predicate():
    """The reduction tutorial's schedule: rfactor, the reduction bound to threadIdx.x, the
    result stored by thread 0 only."""
    n = tex.var("n")
    A = tex.placeholder((n, n), "float32", name="A")
    k = tex.reduce_axis((0, n), "k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    _, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, ki)
    xo, xi = s[B].split(s[B].op.axis[0], factor=32)
    s[B].bind(xo, tex.thread_axis("blockIdx.x"))
    s[B].bind(xi, tex.thread_axis("threadIdx.y"))
    tx = tex.thread_axis("threadIdx.x")
    s[B].bind(s[B].op.reduce_axis[0], tx)
    s[BF].compute_at(s[B], s[B].op.reduce_axis[0])
    s[B].set_store_predicate(tx.var.equal(0))
    f = tex.build(s, [A, B], target="cuda")
    a, out = random_array((45, 45)), np.zeros(45, "float32")
    f.simulate(a, out)
    np.testing.assert_allclose(out, a.sum(axis=1), rtol=1e-4, atol=1e-4)
    C = tex.compute((45,), lambda i: A[i, 0] * 2.0, name="C")  # threads 0..2 of each block
    s = tex.create_schedule(C.op)
    bx, tx_loop = s[C].split(C.op.axis[0], factor=8)
    s[C].bind(bx, tex.thread_axis("blockIdx.x"))
    s[C].bind(tx_loop, tx)
    s[C].set_store_predicate(tx.var < 3)
    out = np.full(45, -1.0, "float32")
    tex.build(s, [A, C], target="cuda").simulate(a, out)
    np.testing.assert_allclose(out, np.where(np.arange(45) % 8 < 3, a[:, 0] * 2, -1.0))


def test_tex_errors_are_runtime_errors_as_tvm_errors_are():
    A = tex.placeholder((20, 6), "float32", name="A")
    T = tex.compute((20, 6), lambda i, j: A[i, j], name="T")
    s = tex.create_schedule(T.op)
    xo, _ = s[T].split(T.op.axis[0], factor=10)
    with pytest.raises(RuntimeError, match="fuse on stage T"):
        s[T].fuse(xo, T.op.axis[1])
    with pytest.raises(ValueError):  # a ScheduleError is still the ValueError it was
        s[T].fuse(xo, T.op.axis[1])
    with pytest.raises(TypeError):  # and an ExprError the TypeError
        tex.clz(A[0, 0])
    assert issubclass(tex.TVMError, RuntimeError)


def test_schedule_introspection_as_te_tests_do_it():
    A = tex.placeholder((30, 20), "float32", name="A")
    B = tex.compute((30, 20), lambda i, j: A[i, j] * 2.0, name="B")
    T = tex.compute((30, 20), lambda i, j: B[i, j] + 1.0, name="T")
    s = tex.create_schedule(T.op)
    xo, yo, xi, yi = s[T].tile(T.op.axis[0], T.op.axis[1], x_factor=8, y_factor=4)
    fused = s[T].fuse(xo, yo)
    assert any(isinstance(r, tex.schedule.Split) for r in s[T].relations)
    assert any(isinstance(r, tex.schedule.Fuse) for r in s[T].relations)
    s[T].unroll(xi)
    s[T].pragma(yi, "vectorize")  # as TVM: the key names the annotation
    s[T].pragma(fused, "my_note", 3)
    attrs = s[T].iter_var_attrs
    assert attrs[xi].iter_type == tex.IterVar.Unrolled
    assert attrs[yi].iter_type == tex.IterVar.Vectorized
    assert attrs[fused].iter_type == tex.IterVar.DataPar
    assert [k.value for k in attrs[fused].pragma_keys] == ["my_note"]
    assert attrs[fused].pragma_values == (3,) and attrs[fused].tensor_intrin is None
    assert s[B].attach_type == 1
    s[B].compute_inline()
    assert s[B].attach_type == 2
    s[B].compute_at(s[T], fused)
    assert s[B].attach_type == 4
    a = random_array((30, 20))
    check(s, [A, T], [a], a * 2 + 1)
    S = tex.compute((), lambda: A[0, 0] + 1.0, name="S")
    s = tex.create_schedule(S.op)
    s[S].fuse()
    assert any(isinstance(r, tex.schedule.Singleton) for r in s[S].relations)


RNG_INTS = np.random.default_rng(5)


def test_te_spellings_of_reduce_round_clz_equal_and_split():
    n = 13
    k1, k2 = tex.reduce_axis((0, n), name="k1"), tex.reduce_axis((0, n), name="k2")
    A = tex.placeholder((n, n, n), name="A")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k1, k2], axis=[k1, k2]), name="B")
    s = tex.create_schedule(B.op)
    BF = s.rfactor(B, k1)
    assert [iv.name for iv in BF.op.body[0].axis] == ["k2"] and len(BF.op.body[0].source) == 1
    for fn in (tex.round, tex.trunc, tex.ceil, tex.floor, tex.nearbyint):
        assert fn(tex.const(10, "int32")).value == 10
        assert fn(tex.const(True, "bool")).value is True
        i = tex.var("i", "int32")
        assert fn(i).same_as(i) and not fn(tex.const(1.5)).same_as(i)
    assert isinstance(tex.const(1, "int32"), tex.tir.IntImm)
    assert isinstance(tex.tir.FloatImm("float32", 1.5), tex.tir.FloatImm)
    assert not isinstance(tex.const(1.5), tex.tir.IntImm)
    X = tex.placeholder((37,), "int64", name="X")
    Y = tex.compute((37,), lambda i: tex.clz(X[i]) + X[i].equal(1).astype("int32"), name="Y")
    assert Y.dtype == "int32"  # clz is int32 as in TVM
    s = tex.create_schedule(Y.op)
    s[Y].split(Y.op.axis[0], factor=4, disable_predication=True)
    x = np.concatenate([[1, 0, -1], RNG_INTS.integers(1, 1 << 62, 34)]).astype("int64")
    want = np.array([64 - int(v).bit_length() if v >= 0 else 0 for v in x]) + (x == 1)
    check(s, [X, Y], [x], want.astype("int32"))


def test_build_takes_a_list_of_lowered_programs():
    A, B = tex.placeholder((19,), name="A"), tex.placeholder((19,), name="B")
    C = tex.compute(A.shape, lambda i: A[i] + B[i], name="C")
    s = tex.create_schedule(C.op)
    s[C].vectorize(s[C].split(C.op.axis[0], factor=4)[1])
    kernels = tex.build([tex.lower(s, [A, B, C], name="fadd1"),
                         tex.lower(s, [A, B, C], name="fadd2")], "llvm")
    a, b = random_array((19,)), random_array((19,))
    for name in ("fadd1", "fadd2"):
        c = np.zeros(19, "float32")
        kernels[name](a, b, c)
        np.testing.assert_allclose(c, a + b)
    with pytest.raises(tex.BuildError, match="names must differ"):
        tex.build([tex.lower(s, [A, B, C]), tex.lower(s, [A, B, C])], "llvm")


def test_rfactor_keeps_the_declared_reduction_axes_and_the_split_leaves_variables():
    """TE's rfactor reduces the partial stage over the untouched declared axes (the same
    objects, first) and over the other reduction loops (with their variables)."""
    k1, k2 = tex.reduce_axis((0, 11), name="k1"), tex.reduce_axis((0, 6), name="k2")
    A = tex.placeholder((9, 11, 6), name="A")
    B = tex.compute((9,), lambda i: tex.sum(A[i, k1, k2], axis=[k1, k2]), name="B")
    s = tex.create_schedule(B.op)
    assert tuple(s.rfactor(B, k1).op.body[0].axis) == (k2,)
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k1, factor=4)
    s[B].split(B.op.axis[0], factor=8)
    BF = s.rfactor(B, ki)
    k2_again, outer = BF.op.body[0].axis
    assert k2_again is k2 and outer.var is ko.var and outer.dom.extent.value == 3
    assert s[B].op.body[0].axis[0].dom.extent.value == 4
    assert [iv.name for iv in s[B].all_iter_vars] == ["i", "k1_inner_v", "i_outer", "i_inner"]
    assert [iv.name for iv in s[BF].all_iter_vars] == ["k1_inner", "i", "k2", "k1_outer"]
    a = random_array((9, 11, 6))
    check(s, [A, B], [a], a.sum(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize("order", ["data_first", "reduce_first"])
def test_a_data_axis_fused_with_a_reduction_axis(order):
    """TE fuses a data axis with a reduction axis into a reduction axis; each output gets
    its initial value at the first iteration that reaches it (a split that does not divide,
    a reduction starting at 2 and a `where` condition included)."""
    X = tex.placeholder((7, 13), name="X")
    k = tex.reduce_axis((2, 13), name="k")
    Y = tex.compute((7,), lambda i: tex.max(X[i, k], axis=k, where=X[i, k] < 0.5), name="Y")
    s = tex.create_schedule(Y.op)
    i = Y.op.axis[0]
    if order == "reduce_first":
        s[Y].reorder(k, i)
    fused = s[Y].fuse(*((i, k) if order == "data_first" else (k, i)))
    assert fused.kind == "reduce"
    s[Y].split(fused, factor=5)
    x = random_array((7, 13))
    x[3, 2:] = 0.9  # no value passes the condition: the identity stays
    kept = np.where(x[:, 2:] < 0.5, x[:, 2:], -np.inf)
    check(s, [X, Y], [x], kept.max(axis=1).astype("float32"))


def test_a_fused_data_and_reduction_axis_refuses_rfactor_cache_write_and_bind():
    X = tex.placeholder((7, 13), name="X")
    k = tex.reduce_axis((0, 13), name="k")
    Y = tex.compute((7,), lambda i: tex.sum(X[i, k], axis=k), name="Y")
    s = tex.create_schedule(Y.op)
    fused = s[Y].fuse(Y.op.axis[0], k)
    for refused in (lambda: s.rfactor(Y, fused), lambda: s.cache_write(Y, "local"),
                    lambda: s[Y].bind(fused, tex.thread_axis("threadIdx.x"))):
        with pytest.raises(tex.ScheduleError, match="axis i_k_fused fuses data axis and "
                                                    r"reduction axis \(i, k\)"):
            refused()


def test_allocations_show_their_extents_as_in_te():
    """A local copy of A computed at the block loop: each thread keeps its own elements at
    places 0, 32, 64 and 96, an allocation of 97 (as TE's `Allocate.extents` gives it)."""
    A = tex.placeholder((128,), name="A")
    B = tex.compute((128,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((128,), lambda i: B[i] + 2.0, name="C")
    s = tex.create_schedule(C.op)
    AA = s.cache_read(A, "local", [B])
    s[B].set_scope("shared")
    tx = tex.thread_axis((0, 32), "threadIdx.x")
    oc, ic = s[C].split(C.op.axis[0], factor=64)
    ooc, ioc = s[C].split(oc, factor=2)
    _, iic = s[C].split(ic, factor=32)
    s[C].bind(ooc, tex.thread_axis("blockIdx.x"))
    s[C].bind(iic, tx)
    s[B].compute_at(s[C], ioc)
    s[B].bind(s[B].split(B.op.axis[0], factor=32)[1], tx)
    s[AA].compute_at(s[C], ooc)
    s[AA].bind(s[AA].split(AA.op.axis[0], factor=32)[1], tx)
    extents = []
    tex.tir.stmt_functor.post_order_visit(
        tex.lower(s, [A, C])["main"].body,
        lambda n: extents.append((n.buffer.name, [e.value for e in n.extents]))
        if isinstance(n, tex.ir.Allocate) else None)
    assert ("A_local", [97]) in extents and ("B", [64]) in extents, extents
    a, out = random_array((128,)), np.zeros(128, "float32")
    tex.build(s, [A, C], target="cuda").simulate(a, out)
    np.testing.assert_allclose(out, a + 3.0, rtol=1e-6)


def test_a_compute_at_is_checked_when_lowering_so_a_later_one_corrects_it():
    """As in TE, `compute_at` records where a stage goes and lowering judges it: B computed
    inside itself, then moved to a loop of its consumer, lowers and computes."""
    A = tex.placeholder((37, 10), name="A")
    B = tex.compute((37, 10), lambda i, j: A[i, j] * 2.0, name="B")
    C = tex.compute((37, 10), lambda i, j: B[i, j] + 1.0, name="C")
    s = tex.create_schedule(C.op)
    s[B].compute_at(s[B], B.op.axis[0])
    with pytest.raises(tex.LoweringError, match="stage B: a stage cannot be computed inside"):
        tex.lower(s, [A, C])
    outer, _ = s[C].split(C.op.axis[0], factor=8)
    s[B].compute_at(s[C], outer)
    a = random_array((37, 10))
    check(s, [A, C], [a], a * 2 + 1)


def test_loop_program_nodes_answer_te_field_names():
    """`For.body`/`loop_var`, `IfThenElse.condition`/`then_case`/`else_case` and `SeqStmt`'s
    `seq` and `[i]` read the same parts of tex's nodes as of TE's."""
    A = tex.placeholder((37,), name="A")
    B = tex.compute((37,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((37,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=8)
    s[B].compute_at(s[C], inner)
    loop = tex.lower(s, [A, B, C])["main"].body
    assert isinstance(loop, tex.ir.For) and loop.loop_var is loop.var and loop.extent.value == 5
    inner_loop = loop.body
    assert isinstance(inner_loop, tex.ir.For) and inner_loop.loop_var.name == "i_inner"
    both = inner_loop.body  # B's guarded store, then C's
    assert isinstance(both, tex.ir.Seq) and both.seq == both.stmts and len(both.seq) == 2
    for guard, name in zip(both.seq, "BC"):
        assert isinstance(guard, tex.ir.IfThenElse) and guard.else_case is None
        assert guard.condition is guard.cond and "< 37" in str(guard.condition)
        assert guard.then_case is guard.then_body and guard.then_case.buffer.name == name
    store = both[1].then_case
    assert isinstance(store.value, tex.expr.Expr) and len(store.indices) == 1
    a = random_array((37,))
    check(s, [A, B, C], [a], [a + 1, (a + 1) * 2])


@pytest.mark.parametrize("offset", [1, 2])
def test_a_vectorized_float16_copy_reads_pairs_only_where_aligned(offset):
    """C[i] = A[i + offset] * 2 in float16, two lanes a thread: at an even offset each
    thread reads and writes one aligned `half2`, at an odd one it reads lane by lane (TE's
    codegen test of unaligned vector loads)."""
    A = tex.placeholder((40,), name="A", dtype="float16")
    C = tex.compute((37,), lambda i: A[i + offset] * tex.const(2, "float16"), name="C")
    s = tex.create_schedule(C.op)
    threads, lanes = s[C].split(C.op.axis[0], factor=2)
    s[C].bind(threads, tex.thread_axis("threadIdx.x"))
    s[C].vectorize(lanes)
    f = tex.build(s, [A, C], target="cuda")
    reads_pairs = f"*(const half2*)(A + (i_outer * 2 + {offset}))" in f.get_source("cuda")
    assert reads_pairs == (offset == 2)
    a, out = random_array((40,), "float16"), np.zeros(37, "float16")
    f.simulate(a, out)
    np.testing.assert_array_equal(out, a[offset:offset + 37] * np.float16(2))


def test_target_cuda_builds_the_cuda_target_as_tvm_target_cuda_does():
    assert tex.target.cuda(arch="sm_75").arch == "sm_75"
    assert tex.target.cuda(options=["-arch=sm_86"]) == tex.Target("cuda -arch=sm_86")
    with pytest.raises(tex.BuildError, match="bad CUDA architecture"):
        tex.target.cuda(arch="volta")
    n, k = 250, 37  # B[i] = A[i // 37], four lanes a thread, the last thread's partly past n
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i // k], name="B")
    with tex.target.cuda() as target:
        s = tex.create_schedule(B.op)
        xo, xi = s[B].split(B.op.axis[0], nparts=1)
        xio, xii = s[B].split(xi, factor=4)
        s[B].vectorize(xii)
        s[B].bind(xo, tex.thread_axis("blockIdx.x"))
        s[B].bind(xio, tex.thread_axis("threadIdx.x"))
        f = tex.build(s, [A, B], target)
    a, out = random_array((n,)), np.zeros(n, "float32")
    f.simulate(a, out)
    np.testing.assert_array_equal(out, a[np.arange(n) // k])


@pytest.mark.parametrize("target", ["llvm", "cuda"])
def test_power_is_pow(target):
    A = tex.placeholder((37,), name="A")
    B = tex.compute((37,), lambda i: tex.power(A[i], tex.const(2.5, "float32")), name="B")
    s = tex.create_schedule(B.op)
    a = np.abs(random_array((37,))) + 0.5
    if target == "llvm":
        check(s, [A, B], [a], np.power(a, 2.5), rtol=1e-5)
        return
    outer, inner = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(outer, tex.thread_axis("blockIdx.x"))
    s[B].bind(inner, tex.thread_axis("threadIdx.x"))
    out = np.zeros(37, "float32")
    tex.build(s, [A, B], target="cuda").simulate(a, out)
    np.testing.assert_allclose(out, np.power(a, 2.5), rtol=1e-5)


def test_a_tensorized_call_reads_as_tvms_evaluate_of_a_call():
    """`stmt.value.args` of a call statement: the callee's name, then each tile as a
    pointer into its buffer and each scalar as the expression passed; and the kernel
    still runs the registered function on the right tiles."""
    x, y = tex.placeholder((8,), name="x"), tex.placeholder((8,), name="y")
    z = tex.compute((8,), lambda i: x[i] + y[i], name="z")

    def intrin_func(ins, outs):  # `.data` would be the buffer's start, as in TVM
        return tex.call_packed("tex_test_vadd", ins[0].access_ptr("r"),
                               ins[1].access_ptr("r"), outs[0].access_ptr("w"),
                               ins[0].shape[0])
    vadd = tex.decl_tensor_intrin(z.op, intrin_func)
    def run_vadd(a, b, c, n):  # each a view from its tile's first element on
        c[:n] = a[:n] + b[:n]
    tex.register_func("tex_test_vadd", run_vadd, override=True)
    X, Y = tex.placeholder((40,), name="X"), tex.placeholder((40,), name="Y")
    Z = tex.compute((40,), lambda i: X[i] + Y[i], name="Z")
    s = tex.create_schedule(Z.op)
    _, inner = s[Z].split(Z.op.axis[0], factor=8)
    s[Z].tensorize(inner, vadd)
    calls = []
    tex.tir.stmt_functor.post_order_visit(
        tex.lower(s, [X, Y, Z])["main"].body,
        lambda n: calls.append(n) if isinstance(n, tex.tir.Evaluate) else None)
    (call,) = calls
    assert [str(a) for a in call.value.args] == [
        '"tex_test_vadd"', "&X[i_outer * 8]", "&Y[i_outer * 8]", "&Z[i_outer * 8]", "8"]
    assert call.value.args[0].value == "tex_test_vadd"
    a, b = random_array((40,)), random_array((40,))
    check(s, [X, Y, Z], [a, b], a + b)
