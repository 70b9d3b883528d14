"""TE's schedule introspection: `tex.InferBound`, `tex.ScheduleOps`, `tex.schedule_to_module`,
written the TE way, checked against the loops tex builds and against NumPy."""
import numpy as np
import pytest

import tex as te
from tex import ir, tir
from checks import check, random_array
from test_errors import raises


def loops_of(stmt) -> dict:
    """Each loop of `stmt` by its variable's name -> its extent (printed)."""
    found = {}
    tir.stmt_functor.post_order_visit(
        stmt, lambda n: found.__setitem__(n.var.name, str(n.extent))
        if isinstance(n, ir.For) else None)
    return found


def nodes_of(stmt, kind) -> list:
    found = []
    tir.stmt_functor.post_order_visit(stmt, lambda n: found.append(n)
                                      if isinstance(n, kind) else None)
    return found


def split_and_fused():
    """B = A * 2 over (37, 5), its rows split by 8 (which does not divide 37), the inner
    part fused with the columns."""
    A = te.placeholder((37, 5), name="A")
    B = te.compute((37, 5), lambda i, j: A[i, j] * 2, name="B")
    s = te.create_schedule(B.op)
    io, ii = s[B].split(B.op.axis[0], factor=8)
    fused = s[B].fuse(ii, B.op.axis[1])
    return s, A, B, (io, ii, fused)


def test_bounds_of_a_split_that_does_not_divide_and_a_fuse():
    s, A, B, (io, ii, fused) = split_and_fused()
    bounds = te.InferBound(s)
    i, j = B.op.axis
    extents = {iv: bounds[iv].extent.value for iv in (i, j, io, ii, fused)}
    assert extents == {i: 37, j: 5, io: 5, ii: 8, fused: 40}
    assert all(bounds[iv].min.value == 0 for iv in extents)
    assert isinstance(bounds[io].extent, tir.IntImm)
    assert set(bounds) == set(s[B].all_iter_vars) and len(bounds) == 5
    a = random_array((37, 5))
    check(s, [A, B], [a], a * 2)


def test_bounds_are_a_read_only_container_map():
    s, _, B, (io, _, _) = split_and_fused()
    bounds = te.InferBound(s)
    assert isinstance(bounds, te.container.Map)
    assert io in bounds and bounds.get(io) is bounds[io]
    assert dict(bounds.items())[io] is bounds[io]
    with pytest.raises(TypeError):
        bounds[io] = bounds[io]
    with pytest.raises(KeyError, match="not an axis of a stage"):
        bounds[te.reduce_axis((0, 3), name="elsewhere")]


def test_a_stage_computed_at_a_loop_covers_what_one_iteration_reads():
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    A1 = te.compute((n,), lambda i: A[i] + 1, name="A1")
    C = te.compute((n,), lambda i: A1[i] * 3, name="C")
    s = te.create_schedule(C.op)
    xo, xi = s[C].split(C.op.axis[0], factor=8)
    s[A1].compute_at(s[C], xo)
    assert s.normalize() is s  # tex's loops already run from 0
    bounds = te.InferBound(s)
    inside = bounds[A1.op.axis[0]]
    assert str(inside.min) == "i_outer * 8" and inside.extent.value == 8
    assert str(bounds[xo].extent) == "(n + 7) // 8" and bounds[xi].extent.value == 8
    stmt = te.ScheduleOps(s, bounds)
    (outer,) = [loop for loop in nodes_of(stmt, ir.For) if loop.var.name == "i_outer"]
    assert loops_of(outer.body) == {"i": "8", "i_inner": "8"}  # A1's loop inside C's
    a = random_array((29,))
    check(s, [A, C], [a], (a + 1) * 3)


def test_bounds_of_a_split_reduction():
    n = te.var("n")
    A = te.placeholder((n, 13), name="A")
    k = te.reduce_axis((0, 13), name="k")
    C = te.compute((n,), lambda i: te.sum(A[i, k], axis=k), name="C")
    s = te.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=4)
    bounds = te.InferBound(s)
    assert bounds[C.op.axis[0]].extent is n
    assert (bounds[k].min.value, bounds[k].extent.value) == (0, 13)
    assert bounds[ko].extent.value == 4 and bounds[ki].extent.value == 4
    assert loops_of(te.ScheduleOps(s, bounds)) == {"i": "n", "k_outer": "4", "k_inner": "4"}
    a = random_array((11, 13))
    check(s, [A, C], [a], a.sum(axis=1), rtol=1e-4)


def cumulative_sum():
    m, n = te.var("m"), te.var("n")
    X = te.placeholder((m, n), name="X")
    state = te.placeholder((m, n), name="state")
    init = te.compute((1, n), lambda _, i: X[0, i], name="init")
    update = te.compute((m, n), lambda t, i: state[t - 1, i] + X[t, i], name="update")
    return X, state, te.scan(init, update, state)


def test_the_scan_axis_starts_after_the_init_rows():
    X, _, res = cumulative_sum()
    s = te.create_schedule(res.op)
    bounds = te.InferBound(s)
    step = bounds[res.op.scan_axis]
    assert step.min.value == 1 and str(step.extent) == "m - 1"
    assert str(bounds[res.op.spatial_axis[0]].extent) == "n"
    assert "scan_idx" in loops_of(te.ScheduleOps(s, bounds))
    x = random_array((6, 4))
    check(s, [X, res], [x], np.cumsum(x, axis=0), rtol=1e-5)


def test_a_scan_state_in_args_stands_for_the_scan_output():
    """Regression: lowering a scan whose args name its state placeholder, not its output
    (TE's test_schedule_scan), was refused."""
    X, state, res = cumulative_sum()
    s = te.create_schedule(res.op)
    kernel = te.build(s, [X, state])
    x = random_array((7, 3))
    out = np.zeros_like(x)
    kernel(x, out)
    np.testing.assert_allclose(out, np.cumsum(x, axis=0), rtol=1e-5)
    with raises(te.LoweringError, "state is a state of scan", "not both"):
        te.lower(s, [X, state, res])


def test_bounds_of_cache_read_and_cache_write_stages():
    A = te.placeholder((20, 30), name="A")
    C = te.compute((20, 30), lambda i, j: A[i, j] + 1, name="C")
    s = te.create_schedule(C.op)
    AA = s.cache_read(A, "local", [C])
    CC = s.cache_write(C, "local")
    xo, _ = s[C].split(C.op.axis[0], factor=6)
    s[CC].compute_at(s[C], xo)
    s[AA].compute_at(s[CC], CC.op.axis[0])
    bounds = te.InferBound(s)
    row, col = (bounds[iv] for iv in CC.op.axis)
    assert (str(row.min), row.extent.value, col.extent.value) == ("i_outer * 6", 6, 30)
    row, col = (bounds[iv] for iv in AA.op.axis)
    assert (str(row.min), row.extent.value, col.extent.value) == ("i_outer * 6 + i", 1, 30)
    allocated = {a.buffer.name: a.buffer.scope for a in
                 nodes_of(te.ScheduleOps(s, bounds), ir.Allocate)}
    assert allocated == {"A_local": "local", "C_local": "local"}
    a = random_array((20, 30))
    check(s, [A, C], [a], a + 1)


def test_schedule_to_module_is_the_program_before_the_passes():
    s, A, B, _ = split_and_fused()
    mod = te.schedule_to_module(s)
    func = mod["main"]
    assert isinstance(func, tir.PrimFunc) and func is mod
    assert [p.name for p in func.params] == ["A", "B"]
    assert str(func.body) == str(te.ScheduleOps(s, te.InferBound(s)))
    assert nodes_of(func.body, ir.IfThenElse)  # the split's guard, before any pass
    assert isinstance(te.lower(s, [A, B])["main"], tir.PrimFunc)
    assert te.schedule_to_module(s, [A, B], "f")["f"].name == "f"
    a = random_array((37, 5))
    check(s, [A, B], [a], a * 2)


def test_without_args_a_variable_no_shape_gives_is_a_scalar_parameter():
    n, alpha = te.var("n"), te.var("alpha", "float32")
    A = te.placeholder((n, 4), name="A")
    k = te.reduce_axis((0, 4), name="k")
    B = te.compute((n,), lambda i: te.sum(A[i, k] * alpha, axis=k), name="B")
    s = te.create_schedule(B.op)
    func = te.schedule_to_module(s)["main"]
    assert [p.name for p in func.params] == ["A", "B"]
    assert [v.name for v in func.size_vars] == ["n", "alpha"]
    assert loops_of(te.ScheduleOps(s, te.InferBound(s))) == {"i": "n", "k": "4"}
    a = random_array((9, 4))
    np.testing.assert_allclose(te.build(s, [A, B, alpha])(a, 1.5), a.sum(axis=1) * 1.5,
                               rtol=1e-5)


def test_a_second_output_computed_at_a_loop_is_allocated_there_once():
    """TE's test_tuple_with_different_deps: only B0 is read, yet B1 is computed with it."""
    m, n = te.size_var("m"), te.size_var("n")
    A0, A1 = te.placeholder((m, n), name="A0"), te.placeholder((m, n), name="A1")
    B0, B1 = te.compute((m, n), lambda i, j: (A0[i, j] * 2, A1[i, j] * 3), name="B")
    C = te.compute((m, n), lambda i, j: B0[i, j] + 4, name="C")
    s = te.create_schedule(C.op)
    xo, _ = s[C].split(C.op.axis[0], factor=10)
    s[B0.op].compute_at(s[C], xo)
    stmt = te.ScheduleOps(s, te.InferBound(s))
    (outer,) = [loop for loop in nodes_of(stmt, ir.For) if loop.var.name == "i_outer"]
    assert sorted(a.buffer.name for a in nodes_of(outer.body, ir.Allocate)) == ["B_v0", "B_v1"]
    a0, a1 = random_array((23, 5)), random_array((23, 5))
    check(s, [A0, A1, C], [a0, a1], a0 * 2 + 4)


def test_auto_inline_broadcast_inlines_a_stage_reading_at_constants_or_its_axes():
    m, n = te.var("m"), te.var("n")
    A, V = te.placeholder((1,), name="A"), te.placeholder((n,), name="V")
    B = te.placeholder((m, n), name="B")
    T1 = te.compute((m, n), lambda i, j: A[0] * B[i, j] + V[j], name="T1")
    T2 = te.compute((n, m), lambda j, i: B[i, j], name="T2")  # a transpose: not broadcast
    out = te.compute((m, n), lambda i, j: T1[i, j] * T2[j, i], name="out")
    s = te.create_schedule(out.op)
    te.schedule.AutoInlineBroadcast(s)
    assert [s[T1].attach_type, s[T2].attach_type] == [2, 1]
    bounds = te.InferBound(s)
    assert T1.op.axis[0] not in bounds and T2.op.axis[0] in bounds
    a, v, b = random_array((1,)), random_array((9,)), random_array((6, 9))
    check(s, [A, V, B, out], [a, v, b], (a[0] * b + v) * b)


def test_bad_input_is_a_clear_error():
    s, A, B, (io, _, _) = split_and_fused()
    with raises(te.LoweringError, "InferBound", "expected a schedule", "Tensor"):
        te.InferBound(B)
    with raises(te.LoweringError, "ScheduleOps", "expected a schedule"):
        te.ScheduleOps(B, te.InferBound(s))
    with raises(te.LoweringError, "ScheduleOps", "got dict"):
        te.ScheduleOps(s, {io: te.InferBound(s)[io]})
    other, _, _, _ = split_and_fused()
    with raises(te.LoweringError, "another schedule"):
        te.ScheduleOps(s, te.InferBound(other))
    bounds = te.InferBound(s)
    s[B].vectorize(s[B].leaf_iter_vars[-1])
    with raises(te.LoweringError, "changed since its bounds"):
        te.ScheduleOps(s, bounds)
    with raises(te.BuildError, "schedule_to_module", "expected a schedule"):
        te.schedule_to_module([A, B])
    with raises(te.BuildError, "binds"):
        te.schedule_to_module(s, [A, B], binds={A: tir.decl_buffer(A.shape, A.dtype, "Ab")})


def test_a_variable_bounding_a_reduction_is_a_scalar_argument():
    m = te.var("m")
    A = te.placeholder((10, 20), name="A")
    k = te.reduce_axis((0, m), name="k")
    C = te.compute((10,), lambda i: te.sum(A[i, k], axis=k), name="C")
    s = te.create_schedule(C.op)
    assert te.schedule_to_module(s)["main"].size_vars == (m,)
    a = random_array((10, 20))
    np.testing.assert_allclose(te.build(s, [A, C, m])(a, 7), a[:, :7].sum(1), rtol=1e-5)
