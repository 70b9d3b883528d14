"""Every schedule primitive, alone and combined, compiled and compared with NumPy.

Sizes are chosen not to divide the split factors (37, 129, 1000, ...), and
some are symbolic, bound at call time.
"""
import numpy as np
import pytest

import tex
from checks import check, loops, random_array
from test_workloads import softmax_decl, softmax_reference


def elementwise(shape):
    A = tex.placeholder(shape, name="A")
    B = tex.compute(shape, lambda *i: A[i] * 2.0 + 1.0, name="B")
    return A, B


def row_sum(n, m):
    A = tex.placeholder((n, m), name="A")
    k = tex.reduce_axis((0, m), name="k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    return A, B, k


def matmul(n, m, l, dtype="float32"):
    A = tex.placeholder((n, l), dtype, name="A")
    B = tex.placeholder((l, m), dtype, name="B")
    k = tex.reduce_axis((0, l), name="k")
    C = tex.compute((n, m), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C, k


@pytest.mark.parametrize("factor", [1, 3, 8, 37, 64])
def test_split_factor(factor):
    A, B = elementwise((37,))
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=factor)
    a = random_array((37,))
    check(s, [A, B], [a], a * 2 + 1)
    expected = [f"range {name}" for name, extent in (("i0_outer", -(-37 // factor)),
                                                     ("i0_inner", factor)) if extent > 1]
    assert loops(s, [A, B]) == expected


@pytest.mark.parametrize("nparts", [1, 4, 7, 129, 200])
def test_split_nparts(nparts):
    A, B = elementwise((129,))
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], nparts=nparts)
    a = random_array((129,))
    check(s, [A, B], [a], a * 2 + 1)


def test_split_symbolic_size():
    n = tex.var("n")
    A, B = elementwise((n,))
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=16)
    s[B].split(outer, factor=3)
    kernel = tex.build(s, [A, B])
    for size in (1, 15, 16, 17, 1000):
        a = random_array((size,))
        np.testing.assert_allclose(kernel(a), a * 2 + 1)


def test_split_reduction_axis():
    A, B, k = row_sum(13, 1000)
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=64)
    s[B].reorder(ko, B.op.axis[0], ki)
    a = random_array((13, 1000))
    check(s, [A, B], [a], a.sum(1), rtol=1e-4, atol=1e-3)


def guards(s, args) -> list:
    """The IfThenElse statements of the loop program before the passes."""
    found = []
    tex.tir.stmt_functor.post_order_visit(
        tex.schedule_to_module(s, args).body,
        lambda n: found.append(n) if isinstance(n, tex.ir.IfThenElse) else None)
    return found


@pytest.mark.parametrize("factor", [4, 8, 37])
def test_split_without_predication_shifts_the_last_part_inside(factor):
    A, B = elementwise((37,))
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=factor, disable_predication=True)
    s[B].vectorize(inner)
    assert not guards(s, [A, B])
    if factor == 8:
        assert "min(i0_outer * 8, 29)" in str(tex.lower(s, [A, B]))
    a = random_array((37,))
    check(s, [A, B], [a], a * 2 + 1)


@pytest.mark.parametrize("order", ["rows outside k", "k outside rows"])
def test_split_without_predication_of_a_reduction_keeps_its_guard(order):
    """Repeating a row's update in the middle of its accumulation would add it twice,
    wherever the reduction loop lies."""
    A, B, C, k = matmul(23, 7, 13)
    s = tex.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=5, disable_predication=True)
    if order == "k outside rows":
        s[C].reorder(k, io, ii, C.op.axis[1])
    assert any("i_" in str(g.cond) for g in guards(s, [A, B, C]))
    a, b = random_array((23, 13)), random_array((13, 7))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_split_without_predication_keeps_the_guard_of_a_loop_holding_a_reduction():
    """A reduction computed at a shifted loop would be reset and accumulated again by the
    overlapping iteration, in parallel with the one reading it."""
    A = tex.placeholder((70, 9), name="A")
    k = tex.reduce_axis((0, 9), name="k")
    C = tex.compute((70,), lambda i: tex.sum(A[i, k], axis=k), name="C")
    D = tex.compute((70,), lambda i: C[i] * 2.0, name="D")
    s = tex.create_schedule(D.op)
    outer, _ = s[D].split(D.op.axis[0], factor=32, disable_predication=True)
    s[D].parallel(outer)
    s[C].compute_at(s[D], outer)
    assert guards(s, [A, D])
    a = random_array((70, 9))
    check(s, [A, D], [a], a.sum(1) * 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["symbolic extent", "extent below the factor", "cache_write"])
def test_split_without_predication_keeps_the_guard_where_shifting_is_unsafe(case):
    n = tex.var("n") if case == "symbolic extent" else 37
    A, B = elementwise((n, 5))
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=64 if case == "extent below the factor" else 8,
               disable_predication=True)
    if case == "cache_write":  # the cache's axes are the split's parts, its tail guarded
        s.cache_write(B, "global")
        assert "select(i0_outer * 8 + i0_inner < 37" in str(tex.schedule_to_module(s, [A, B]))
    else:
        assert guards(s, [A, B])
    a = random_array((37, 5))
    check(s, [A, B], [a], a * 2 + 1)


def test_tile_and_reorder():
    A, B, C, k = matmul(37, 129, 45)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 16)
    ko, ki = s[C].split(k, factor=4)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    a, b = random_array((37, 45)), random_array((45, 129))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)
    update = [name.split()[1] for name in loops(s, [A, B, C]) if "_init" not in name]
    assert update == ["i_outer", "j_outer", "k_outer", "i_inner", "k_inner", "j_inner"]


def test_fuse_two_and_three_axes():
    A, B = elementwise((7, 13, 5))
    s = tex.create_schedule(B.op)
    x, y, z = B.op.axis
    s[B].fuse(x, y, z)
    a = random_array((7, 13, 5))
    check(s, [A, B], [a], a * 2 + 1)
    assert loops(s, [A, B]) == ["range i0_i1_fused_i2_fused"]


def test_fuse_after_split_then_parallel():
    A, B = elementwise((37, 29))
    s = tex.create_schedule(B.op)
    i, j = B.op.axis
    io, ii = s[B].split(i, factor=8)
    fused = s[B].fuse(io, ii)
    s[B].parallel(fused)
    a = random_array((37, 29))
    check(s, [A, B], [a], a * 2 + 1)
    assert loops(s, [A, B]) == ["parallel i0_outer_i0_inner_fused", "range i1"]


def test_fuse_then_split():
    n = tex.var("n")
    A, B = elementwise((n, 37))
    s = tex.create_schedule(B.op)
    fused = s[B].fuse(*B.op.axis)
    outer, inner = s[B].split(fused, factor=16)
    s[B].vectorize(inner)
    s[B].parallel(outer)
    a = random_array((11, 37))
    check(s, [A, B], [a], a * 2 + 1)


def test_fuse_reduction_axes():
    A = tex.placeholder((5, 7, 9), name="A")
    r1, r2 = tex.reduce_axis((0, 7), name="r1"), tex.reduce_axis((0, 9), name="r2")
    B = tex.compute((5,), lambda i: tex.sum(A[i, r1, r2], axis=[r1, r2]), name="B")
    s = tex.create_schedule(B.op)
    fused = s[B].fuse(r1, r2)
    s[B].split(fused, factor=4)
    a = random_array((5, 7, 9))
    check(s, [A, B], [a], a.sum((1, 2)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size", [1, 15, 16, 17, 1000])
def test_vectorize_with_tail(size):
    A, B = elementwise((size,))
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=16)
    s[B].vectorize(inner)
    a = random_array((size,))
    kernel = check(s, [A, B], [a], a * 2 + 1)
    if size >= 16:  # smaller sizes never take the vector path, and LLVM drops it
        assert "<16 x float>" in kernel.get_source("ll")


def test_vectorize_whole_constant_axis():
    A, B = elementwise((6, 24))
    s = tex.create_schedule(B.op)
    s[B].vectorize(B.op.axis[1])
    a = random_array((6, 24))
    check(s, [A, B], [a], a * 2 + 1)
    assert "ramp" in str(tex.lower(s, [A, B]))


def test_vectorize_strided_access_gathers():
    A = tex.placeholder((16, 9), name="A")
    B = tex.compute((9, 16), lambda i, j: A[j, i] + 1.0, name="B")
    s = tex.create_schedule(B.op)
    s[B].vectorize(B.op.axis[1])
    a = random_array((16, 9))
    check(s, [A, B], [a], a.T + 1)


def test_vectorize_reduction_axis_falls_back_to_a_loop():
    A, B, k = row_sum(5, 32)
    s = tex.create_schedule(B.op)
    s[B].vectorize(k)
    a = random_array((5, 32))
    check(s, [A, B], [a], a.sum(1), rtol=1e-5, atol=1e-4)


def test_vectorize_outer_loop_over_inner_reduction():
    A, B, C, k = matmul(9, 16, 21)
    s = tex.create_schedule(C.op)
    i, j = C.op.axis
    s[C].reorder(i, j, k)
    s[C].vectorize(j)
    a, b = random_array((9, 21)), random_array((21, 16))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("factor", [1, 4, 7])
def test_unroll(factor):
    A, B, k = row_sum(9, 31)
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=factor)
    s[B].unroll(ki)
    a = random_array((9, 31))
    check(s, [A, B], [a], a.sum(1), rtol=1e-5, atol=1e-4)
    assert not any("k_inner" in loop for loop in loops(s, [A, B]))


def test_unroll_and_vectorize_together():
    A, B = elementwise((10, 50))
    s = tex.create_schedule(B.op)
    i, j = B.op.axis
    io, ii = s[B].split(i, factor=4)
    jo, ji = s[B].split(j, factor=8)
    s[B].reorder(io, jo, ii, ji)
    s[B].unroll(ii)
    s[B].vectorize(ji)
    a = random_array((10, 50))
    check(s, [A, B], [a], a * 2 + 1)


def test_parallel_symbolic():
    n = tex.var("n")
    A, B = elementwise((n, 3))
    s = tex.create_schedule(B.op)
    s[B].parallel(B.op.axis[0])
    assert loops(s, [A, B]) == ["parallel i0", "range i1"]
    kernel = tex.build(s, [A, B])
    for size in (1, 2, 3, 1001):
        a = random_array((size, 3))
        np.testing.assert_allclose(kernel(a), a * 2 + 1)


def test_parallel_reduction_over_rows():
    A, B, k = row_sum(1000, 37)
    s = tex.create_schedule(B.op)
    s[B].parallel(B.op.axis[0])
    a = random_array((1000, 37))
    check(s, [A, B], [a], a.sum(1), rtol=1e-5, atol=1e-4)


def test_compute_inline_chain():
    A = tex.placeholder((37, 13), name="A")
    B = tex.compute((37, 13), lambda i, j: A[i, j] + 1.0, name="B")
    C = tex.compute((37, 13), lambda i, j: B[i, j] * 3.0, name="C")
    D = tex.compute((13, 37), lambda j, i: C[i, j] - B[i, j], name="D")
    s = tex.create_schedule(D.op)
    s[B].compute_inline()
    s[C].compute_inline()
    a = random_array((37, 13))
    check(s, [A, D], [a], ((a + 1) * 3 - (a + 1)).T)
    body = str(tex.lower(s, [A, D])).split("\n", 1)[1]
    assert "allocate" not in body and "B[" not in body and "C[" not in body


def test_compute_root_is_the_default_and_undoes_compute_at():
    A = tex.placeholder((37,), name="A")
    B = tex.compute((37,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((37,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    s[B].compute_root()
    a = random_array((37,))
    check(s, [A, C], [a], (a + 1) * 2)
    assert "B = allocate(float32[37]" in str(tex.lower(s, [A, C]))
    assert loops(s, [A, C]) == ["range i", "range i_1"]  # B's loop, then C's


@pytest.mark.parametrize("at", ["outer", "inner"])
def test_compute_at_split_loop(at):
    n = tex.var("n")
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * A[i], name="B")
    C = tex.compute((n,), lambda i: B[i] + 1.0, name="C")
    s = tex.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=8)
    s[B].compute_at(s[C], outer if at == "outer" else inner)
    text = str(tex.lower(s, [A, C]))
    assert f"B = allocate(float32[{8 if at == 'outer' else 1}]" in text
    assert text.index("for i_outer") < text.index("B = allocate")
    kernel = tex.build(s, [A, C])
    for size in (3, 8, 37):
        a = random_array((size,))
        np.testing.assert_allclose(kernel(a), a * a + 1, rtol=1e-6)


def test_compute_at_stencil_needs_a_halo():
    A = tex.placeholder((100,), name="A")
    B = tex.compute((100,), lambda i: A[i] * 2.0, name="B")
    C = tex.compute((98,), lambda i: B[i] + B[i + 1] + B[i + 2], name="C")
    s = tex.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=16)
    s[B].compute_at(s[C], outer)
    a = random_array((100,))
    b = a * 2
    check(s, [A, C], [a], b[:-2] + b[1:-1] + b[2:], rtol=1e-5)
    text = str(tex.lower(s, [A, C]))
    assert "allocate(float32[18]" in text  # 16 outputs read 18 inputs


def test_compute_at_2d_tile_of_producer():
    A = tex.placeholder((37, 45), name="A")
    B = tex.compute((37, 45), lambda i, j: tex.exp(A[i, j]), name="B")
    C = tex.compute((45, 37), lambda j, i: B[i, j] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    jo, io, ji, ii = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 8)
    s[B].compute_at(s[C], io)
    bi, bj = B.op.axis
    s[B].vectorize(bj)
    a = random_array((37, 45))
    check(s, [A, C], [a], (np.exp(a) * 2).T, rtol=1e-5)


def test_compute_at_nested_two_levels():
    A = tex.placeholder((50,), name="A")
    B = tex.compute((50,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((50,), lambda i: B[i] * 2.0, name="C")
    D = tex.compute((50,), lambda i: C[i] - 3.0, name="D")
    s = tex.create_schedule(D.op)
    outer, inner = s[D].split(D.op.axis[0], factor=7)
    s[C].compute_at(s[D], outer)
    s[B].compute_at(s[C], C.op.axis[0])
    a = random_array((50,))
    check(s, [A, D], [a], (a + 1) * 2 - 3)


def test_compute_at_reduction_producer():
    A, B, C, k = matmul(20, 30, 17)
    D = tex.compute((20, 30), lambda i, j: tex.max(C[i, j], 0.0), name="D")
    s = tex.create_schedule(D.op)
    io, jo, ii, ji = s[D].tile(D.op.axis[0], D.op.axis[1], 8, 8)
    s[C].compute_at(s[D], jo)
    a, b = random_array((20, 17)), random_array((17, 30))
    check(s, [A, B, D], [a, b], np.maximum(a @ b, 0), rtol=1e-4, atol=1e-4)


def test_cache_read():
    A = tex.placeholder((37, 29), name="A")
    B = tex.compute((37, 29), lambda i, j: A[i, j] * 2.0, name="B")
    s = tex.create_schedule(B.op)
    AL = s.cache_read(A, "local", [B])
    io, ii = s[B].split(B.op.axis[0], factor=8)
    s[AL].compute_at(s[B], io)
    a = random_array((37, 29))
    check(s, [A, B], [a], a * 2)
    assert "A_local" in str(tex.lower(s, [A, B]))


def test_cache_read_with_an_axis_order_copies_transposed():
    A, B, C, k = matmul(21, 35, 19)
    s = tex.create_schedule(C.op)
    jo, ji = s[C].split(C.op.axis[1], factor=16)
    s[C].reorder(jo, C.op.axis[0], k, ji)
    BT = s.cache_read(B, "global", [C], axis_order=(1, 0))
    s[BT].compute_at(s[C], jo)
    assert BT.shape[0].value == 35 and BT.shape[1].value == 19
    a, b = random_array((21, 19)), random_array((19, 35))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)
    text = str(tex.lower(s, [A, B, C]))
    assert "B_global[" in text and "allocate(float32[304]" in text  # a 16 x 19 panel
    with pytest.raises(tex.ScheduleError, match="axis_order must be a permutation"):
        s.cache_read(A, "local", [C], axis_order=(0, 0))


def test_cache_read_of_intermediate_for_one_of_two_readers():
    A = tex.placeholder((40,), name="A")
    B = tex.compute((40,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((40,), lambda i: B[i] * 2.0, name="C")
    D = tex.compute((40,), lambda i: B[i] + C[i], name="D")
    s = tex.create_schedule(D.op)
    BL = s.cache_read(B, "local", [C])
    a = random_array((40,))
    check(s, [A, D], [a], (a + 1) + (a + 1) * 2)
    assert BL.name == "B_local"


def test_cache_write_matmul_accumulator():
    A, B, C, k = matmul(37, 50, 23)
    s = tex.create_schedule(C.op)
    CL = s.cache_write(C, "local")
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 4, 16)
    s[CL].compute_at(s[C], jo)
    ia, ja = s[CL].op.axis
    s[CL].reorder(s[CL].op.reduce_axis[0], ia, ja)
    s[CL].unroll(ia)
    s[CL].vectorize(ja)
    s[C].vectorize(ji)
    a, b = random_array((37, 23)), random_array((23, 50))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_cache_write_with_an_axis_order_keeps_column_vectors_whole():
    A, B, C, k = matmul(37, 50, 23)
    s = tex.create_schedule(C.op)
    CL = s.cache_write(C, "local", axis_order=(1, 0))  # the cache is C transposed
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 16, 4)
    s[C].reorder(io, jo, ji, ii)
    s[CL].compute_at(s[C], jo)
    ja, ia = s[CL].op.axis
    assert (ja.name, ia.name) == ("j", "i")
    s[CL].reorder(s[CL].op.reduce_axis[0], ja, ia)
    s[CL].unroll(ja)
    s[CL].vectorize(ia)
    a, b = random_array((37, 23)), random_array((23, 50))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)
    assert "C_local[ramp(0, 1, 16)]" in str(tex.lower(s, [A, B, C]))
    with pytest.raises(tex.ScheduleError, match="axis_order must be a permutation"):
        tex.create_schedule(C.op).cache_write(C, "local", axis_order=(1,))


def test_cache_write_after_split_and_reorder_takes_over_the_loops():
    """As in TE, the cache's axes are the stage's loops at the time (a split that does not
    divide keeps its guard) and the original stage becomes a plain copy."""
    A, B, C, k = matmul(37, 50, 23)
    s = tex.create_schedule(C.op)
    i, j = C.op.axis
    io, ii = s[C].split(i, factor=8)
    s[C].reorder(io, j, ii)
    s[C].vectorize(ii)
    CL = s.cache_write(C, "global")
    assert [a.name for a in CL.op.axis] == ["i_outer", "j", "i_inner"]
    assert [d.value for d in CL.shape] == [5, 50, 8]
    assert s[C].leaf_iter_vars == list(C.op.axis) and s[C].op.reduce_axis == ()
    jo, ji = s[C].split(s[C].op.axis[1], factor=16)  # the copy's own axes are free again
    s[C].vectorize(ji)
    s[CL].compute_at(s[C], s[C].op.axis[0])
    a, b = random_array((37, 23)), random_array((23, 50))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_cache_write_after_a_split_of_a_symbolic_axis_and_a_reduction_split():
    n = tex.var("n")
    A = tex.placeholder((n, 45), name="A")
    k = tex.reduce_axis((0, 45), name="k")
    B = tex.compute((n,), lambda i: tex.max(A[i, k] * 2.0, axis=k), name="B")
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=4)
    s[B].split(k, factor=8)  # a reduction split goes: the cache reduces over k as declared
    BL = s.cache_write(B, "local")
    assert [a.name for a in BL.op.axis] == ["i_outer", "i_inner"]
    assert BL.op.reduce_axis == (k,)
    a = random_array((13, 45)) - 5.0
    check(s, [A, B], [a], (a * 2.0).max(axis=1))


def test_cache_write_of_every_output_of_a_multi_output_compute():
    A = tex.placeholder((19, 6), name="A")
    C, D = tex.compute(A.shape, lambda i, j: (A[i, j] + 1.0, A[i, j] * 3.0), name="CD")
    s = tex.create_schedule([C.op])
    s[C].fuse(*C.op.axis)
    CL, DL = s.cache_write([C, D], "local")
    assert CL.op is DL.op and (CL.value_index, DL.value_index) == (0, 1)
    assert [a.name for a in CL.op.axis] == ["i_j_fused"]
    io, _ = s[C].split(C.op.axis[0], factor=4)
    s[CL].compute_at(s[C], io)
    a = random_array((19, 6))
    check(s, [A, C, D], [a], (a + 1.0, a * 3.0))


def test_cache_write_of_a_reducer_that_uses_the_data_axis():
    X = tex.placeholder((10,), name="X")

    def row(i):
        r = tex.reduce_axis((0, i))
        clip = tex.comm_reducer(lambda x, y: tex.max(x + y, i.astype("float32")),
                                lambda dtype: tex.const(1.5, dtype) + i.astype(dtype),
                                name="clipped_sum")
        return clip(X[r], axis=r)

    Y = tex.compute((10,), row, name="Y")
    s = tex.create_schedule(Y.op)
    s.cache_write(Y, "local")
    x = random_array((10,))
    want = np.empty(10, "float32")
    for i in range(10):
        acc = np.float32(1.5 + i)
        for r in range(i):
            acc = max(acc + x[r], np.float32(i))
        want[i] = acc
    check(s, [X, Y], [x], want)


def test_cache_write_refuses_partial_outputs_and_lost_attachments():
    A = tex.placeholder((8, 8), name="A")
    C, D = tex.compute(A.shape, lambda i, j: (A[i, j] + 1.0, A[i, j] * 3.0), name="CD")
    s = tex.create_schedule([C.op])
    with pytest.raises(tex.ScheduleError, match="cache_write of CD.*every output"):
        s.cache_write(C, "local")
    B = tex.compute(A.shape, lambda i, j: A[i, j] + 1.0, name="B")
    E = tex.compute(A.shape, lambda i, j: B[i, j] * 2.0, name="E")
    s = tex.create_schedule(E.op)
    io, _ = s[E].split(E.op.axis[0], factor=4)
    s[B].compute_at(s[E], io)
    with pytest.raises(tex.ScheduleError, match="stage B is computed at loop i_outer of "
                                                "stage E"):
        s.cache_write(E, "local")


def test_rfactor_vectorized_partial_sums():
    n = tex.var("n")
    A, B, k = row_sum(n, 1000)
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=16)
    BF = s.rfactor(B, ki)
    s[BF].vectorize(BF.op.axis[0])
    s[BF].reorder(BF.op.axis[1], BF.op.reduce_axis[0], BF.op.axis[0])
    a = random_array((7, 1000))
    check(s, [A, B], [a], a.sum(1), rtol=1e-4, atol=1e-3)


def test_rfactor_full_sum_parallel():
    A = tex.placeholder((1000,), name="A")
    k = tex.reduce_axis((0, 1000), name="k")
    B = tex.compute((1,), lambda i: tex.sum(A[k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, nparts=4)
    BF = s.rfactor(B, ko)
    s[BF].parallel(BF.op.axis[0])
    a = random_array((1000,))
    check(s, [A, B], [a], a.sum(keepdims=True), rtol=1e-4, atol=1e-3)


def test_rfactor_unsplit_axis_and_factor_axis_position():
    A = tex.placeholder((6, 9), name="A")
    k = tex.reduce_axis((0, 9), name="k")
    B = tex.compute((6,), lambda i: tex.max(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    BF = s.rfactor(B, k, factor_axis=1)
    assert [int(e.value) for e in BF.shape] == [6, 9]
    a = random_array((6, 9))
    check(s, [A, B], [a], a.max(1))


def test_rfactor_with_where_condition():
    A = tex.placeholder((8, 50), name="A")
    k = tex.reduce_axis((0, 50), name="k")
    B = tex.compute((8,), lambda i: tex.sum(A[i, k], axis=k, where=k % 3 == 0), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=8)
    s.rfactor(B, ki)
    a = random_array((8, 50))
    check(s, [A, B], [a], a[:, ::3].sum(1), rtol=1e-5, atol=1e-4)


def test_pragma_is_kept_on_the_loop():
    A, B = elementwise((10,))
    s = tex.create_schedule(B.op)
    s[B].pragma(B.op.axis[0], "note", 2)
    a = random_array((10,))
    check(s, [A, B], [a], a * 2 + 1)
    assert "pragma note=2" in str(tex.lower(s, [A, B]))


def row_softmax(n, m, rows):
    """Softmax rows in blocks of `rows`, the row's stages computed at the output's row loop
    (the bench's schedule); returns the schedule, input, output and the loop over blocks."""
    A, row_max, e, row_sum, out = softmax_decl(n, m)
    s = tex.create_schedule(out.op)
    blocks, row = s[out].split(out.op.axis[0], factor=rows)
    for T in (row_max, e, row_sum):
        s[T].compute_at(s[out], row)
    return s, A, out, blocks


@pytest.mark.parametrize("offset, address", [
    (1, "min(i_outer * 4 + A_prefetch0 + 4, 36) * 75 + A_prefetch1 * 16"),
    (2, "min(i_outer * 4 + A_prefetch0 + 8, 36) * 75 + A_prefetch1 * 16"),
    (40, "A_prefetch1 * 16 + 2700"),  # always past the end: the last row
])
def test_prefetch_of_a_tensor_read_by_stages_computed_in_the_loop(offset, address):
    s, A, Y, i_outer = row_softmax(37, 75, rows=4)
    s[Y].parallel(i_outer)
    s[Y].prefetch(A, i_outer, offset)
    a = random_array((37, 75))
    check(s, [A, Y], [a], softmax_reference(a))
    text = str(tex.lower(s, [A, Y]))
    # 4 rows of 75 floats, 5 lines of 16 floats each; the rows clamped into A
    assert "for A_prefetch0 in range(4):" in text and "for A_prefetch1 in range(5):" in text
    assert f"prefetch(A[{address}])" in text


def test_prefetch_at_an_inner_loop_with_a_symbolic_size():
    n = tex.var("n")
    A = tex.placeholder((n, 50), name="A")
    B = tex.compute((n, 50), lambda i, j: A[i, j] * 2.0 + 1.0, name="B")
    s = tex.create_schedule(B.op)
    j_outer, j_inner = s[B].split(B.op.axis[1], factor=16)
    s[B].vectorize(j_inner)
    s[B].prefetch(A, j_outer, 2)
    a = random_array((9, 50))
    kernel = check(s, [A, B], [a], a * 2 + 1)
    assert "prefetch(A[" in str(tex.lower(s, [A, B]))
    assert "prefetcht0" in kernel.get_source("asm")


def test_prefetch_of_symbolic_rows_leaves_gathered_reads_out():
    n, m = tex.var("n"), tex.var("m")
    A = tex.placeholder((n, m), name="A")
    rows = tex.placeholder((n,), "int64", name="rows")
    B = tex.compute((n, m), lambda i, j: A[rows[i], j] + A[i, j], name="B")
    s = tex.create_schedule(B.op)
    s[B].prefetch(A, B.op.axis[0])
    a, r = random_array((9, 37)), np.random.default_rng(3).integers(0, 9, 9)
    check(s, [A, rows, B], [a, r], a[r] + a)
    text = str(tex.lower(s, [A, rows, B]))
    assert "for A_prefetch1 in range(m // 16 + 1):" in text
    assert "prefetch(A[min(i + 1, n - 1) * m + min(A_prefetch1 * 16, m - 1)])" in text


def test_prefetch_of_tensors_of_two_dtypes_in_one_kernel():
    # (found by the fuzzer: the prefetch intrinsic was declared with the first one's type)
    A = tex.placeholder((20, 30), name="A")
    M = tex.placeholder((20, 30), "int32", name="M")
    B = tex.compute((20, 30), lambda i, j: A[i, j] * tex.cast("float32", M[i, j]), name="B")
    s = tex.create_schedule(B.op)
    s[B].prefetch(A, B.op.axis[0])
    s[B].prefetch(M, B.op.axis[0], 2)
    a, m = random_array((20, 30)), np.arange(600, dtype=np.int32).reshape(20, 30) % 7
    check(s, [A, M, B], [a, m], a * m)


def test_prefetch_is_part_of_the_schedule_that_the_caches_key_on():
    A, B = elementwise((30, 20))
    plain, fetching = tex.create_schedule(B.op), tex.create_schedule(B.op)
    fetching[B].prefetch(A, B.op.axis[0])
    assert "prefetch(" not in str(tex.lower(plain, [A, B]))
    a = random_array((30, 20))
    check(plain, [A, B], [a], a * 2 + 1)
    kernel = check(fetching, [A, B], [a], a * 2 + 1)
    assert "prefetch(" in kernel.get_source("tex")


def test_splitting_the_prefetch_axis_drops_it():
    A, B = elementwise((30, 20))
    s = tex.create_schedule(B.op)
    s[B].prefetch(A, B.op.axis[0])
    s[B].split(B.op.axis[0], factor=8)
    assert "prefetch(" not in str(tex.lower(s, [A, B]))


def test_storage_align_pads_the_row_stride():
    A = tex.placeholder((20, 30), name="A")
    B = tex.compute((20, 30), lambda i, j: A[i, j] + 1.0, name="B")
    C = tex.compute((20, 30), lambda i, j: B[i, j] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    s[B].storage_align(B.op.axis[0], 16, 1)
    a = random_array((20, 30))
    check(s, [A, C], [a], (a + 1) * 2)
    assert "allocate(float32[660]" in str(tex.lower(s, [A, C]))  # stride 33: 33 % 16 == 1


def test_multiple_outputs_in_one_schedule():
    A = tex.placeholder((37,), name="A")
    B = tex.compute((37,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((37,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule([B.op, C.op])
    a = random_array((37,))
    check(s, [A, B, C], [a], (a + 1, (a + 1) * 2))


def test_same_schedule_built_twice_is_cached():
    A, B = elementwise((37,))
    s = tex.create_schedule(B.op)
    first = tex.build(s, [A, B])
    assert tex.build(s, [A, B]) is first
    s[B].split(B.op.axis[0], factor=4)
    assert tex.build(s, [A, B]) is not first


def test_register_tile_over_a_padded_producer_needs_no_guards():
    """The tile may compute past N: it reads a zero-padded panel and writes a local buffer."""
    N, K, width = 40, 9, 16
    A = tex.placeholder((K,), name="A")
    B = tex.placeholder((K, N), name="B")
    panels = (N + width - 1) // width
    P = tex.compute((panels, K, width), lambda p, k, w: tex.if_then_else(
        p * width + w < N, B[k, p * width + w], 0.0), name="P")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((N,), lambda j: tex.sum(A[k] * P[j // width, k, j % width], axis=k), name="C")
    s = tex.create_schedule(C.op)
    CL = s.cache_write(C, "local")
    jo, ji = s[C].split(C.op.axis[0], factor=width)
    s[C].vectorize(ji)
    s[CL].compute_at(s[C], jo)
    s[CL].reorder(CL.op.reduce_axis[0], CL.op.axis[0])
    s[CL].vectorize(CL.op.axis[0])
    a, b = random_array((K,)), random_array((K, N))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-5, atol=1e-5)
    lines = str(tex.lower(s, [A, B, C])).splitlines()
    for line, following in zip(lines, lines[1:]):
        if line.strip().startswith(("if", "else")):
            assert not following.strip().startswith("C_local["), following
