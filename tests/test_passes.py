"""Each pass on a small program, compared in printed form before and after; the verifier."""
import textwrap

import numpy as np
import pytest

import tex
from tex.dtype import float32
from tex.expr import Var
from tex.ir import (Allocate, Buffer, DoubleBuffer, For, IfThenElse, LoweredFunc, Pipeline,
                    PrefetchAhead, Seq,
                    Store, Load, seq)
from tex.ops import const
from tex.passes.flatten import flatten_storage
from tex.passes.hoist import hoist_invariant_guards
from tex.passes.hoist_divisions import hoist_divisions
from tex.passes.hoist_reciprocals import hoist_reciprocals
from tex.passes.inject_double_buffer import inject_double_buffer
from tex.passes.inject_pipeline import inject_pipeline
from tex.passes.inject_prefetch import inject_prefetch
from tex.passes.simplify import simplify_stmt
from tex.passes.unroll import unroll_loops
from tex.passes.vectorize import vectorize_loops
from tex.passes.verify import VerifyError, verify
from tex.printer import to_text
from checks import random_array


def text(stmt) -> str:
    return to_text(stmt)


def expect(stmt, printed: str):
    assert text(stmt) == textwrap.dedent(printed).strip()


def loop(var, extent, body, kind="serial"):
    return For(var, const(0), const(extent), kind, body)


A = Buffer("A", float32, (const(64),))
B = Buffer("B", float32, (const(64),))
M = Buffer("M", float32, (const(4), const(16)))


def test_simplify_removes_proven_guards_and_single_iteration_loops():
    i, j = Var("i"), Var("j")
    body = loop(i, 8, loop(j, 1, IfThenElse(i * 8 + j < 64, Store(A, Load(B, (i + j,)), (i,)))))
    expect(simplify_stmt(body), """
        for i in range(8):
          A[i] = B[i]
    """)


def test_simplify_is_identity_when_nothing_changes():
    i = Var("i")
    body = loop(i, 8, Store(A, Load(B, (i,)), (i,)))
    assert simplify_stmt(body) is body


def test_flatten_linearises_and_respects_strides():
    i, j = Var("i"), Var("j")
    local = Buffer("T", float32, (const(4), const(16)), "local", (const(17), const(1)))
    body = Allocate(local, loop(i, 4, loop(j, 16, seq(
        Store(local, Load(M, (i, j)), (i, j)), Store(M, Load(local, (i, j)), (i, j))))))
    expect(simplify_stmt(flatten_storage(body)), """
        T = allocate(float32[68], 'local')
        for i in range(4):
          for j in range(16):
            T[i * 17 + j] = M[i * 16 + j]
            M[i * 16 + j] = T[i * 17 + j]
    """)


def test_vectorize_contiguous_and_broadcast():
    i = Var("i")
    body = loop(i, 16, Store(A, Load(B, (i,)) * Load(B, (const(3),)), (i,)), "vectorized")
    expect(vectorize_loops(body), """
        A[ramp(0, 1, 16)] = B[ramp(0, 1, 16)] * broadcast(B[3], 16)
    """)


def test_vectorize_splits_off_a_masked_tail_for_lane_guards():
    o, i, n = Var("o"), Var("i"), Var("n")
    body = loop(o, 4, loop(i, 16, IfThenElse(o * 16 + i < n, Store(A, Load(B, (o * 16 + i,)),
                                                                       (o * 16 + i,))),
                           "vectorized"))
    expect(simplify_stmt(vectorize_loops(body)), """
        for o in range(4):
          if o * 16 < n and o * 16 < n - 15:
            A[ramp(o * 16, 1, 16)] = B[ramp(o * 16, 1, 16)]
          else:
            if ramp(o * 16, 1, 16) < broadcast(n, 16):
              A[ramp(o * 16, 1, 16)] = B[ramp(o * 16, 1, 16)]
    """)


def test_vectorize_masks_a_guard_that_is_not_affine():
    i, n = Var("i"), Var("n")
    body = loop(i, 8, IfThenElse(i % 3 < n, Store(A, Load(B, (i,)), (i,))), "vectorized")
    expect(vectorize_loops(body), """
        if ramp(0, 1, 8) % broadcast(3, 8) < broadcast(n, 8):
          A[ramp(0, 1, 8)] = B[ramp(0, 1, 8)]
    """)


def test_vectorize_keeps_an_inner_loop_with_a_vector_body():
    i, k = Var("i"), Var("k")
    body = loop(i, 16, loop(k, 4, Store(A, Load(A, (i,)) + Load(B, (k,)), (i,))), "vectorized")
    expect(vectorize_loops(body), """
        for k in range(4):
          A[ramp(0, 1, 16)] = A[ramp(0, 1, 16)] + broadcast(B[k], 16)
    """)


def test_vectorize_falls_back_to_serial_when_lanes_would_race():
    i = Var("i")
    zero = (const(0),)
    for store in (Store(A, Load(B, (i,)), zero),                        # not a reduction
                  Store(A, Load(A, zero) - Load(B, (i,)), zero),        # sub does not reassociate
                  Store(A, Load(A, zero) + Load(A, (i,)), zero),        # the term reads the target
                  Store(A, Load(A, zero) + const(1.0, "float32"), zero)):  # same term in each lane
        body = loop(i, 16, store, "vectorized")
        assert text(vectorize_loops(body)).startswith("for i in range(16):"), text(store)
    two = seq(Store(A, Load(A, zero) + Load(B, (i,)), zero), Store(B, Load(A, zero), (i,)))
    assert text(vectorize_loops(loop(i, 16, two, "vectorized"))).startswith("for i in range(16):")


def test_vectorize_turns_a_reduction_store_into_a_vector_reduce():
    i = Var("i")
    zero = (const(0),)
    body = loop(i, 16, Store(A, tex.max(Load(B, (i,)), Load(A, zero)), zero), "vectorized")
    expect(vectorize_loops(body), """
        A[0] = max(reduce_max(B[ramp(0, 1, 16)]), A[0])
    """)


@pytest.mark.parametrize("reducer, dtype, lanes", [
    ("sum", "float32", 64), ("max", "float32", 16), ("min", "float32", 8),
    ("sum", "int32", 16), ("max", "int64", 32), ("min", "uint8", 16), ("sum", "float64", 5),
])
def test_a_vectorized_rfactor_combine_matches_numpy(reducer, dtype, lanes):
    """rfactor's lanes combined by a vectorized reduce axis (a tree of halvings)."""
    A = tex.placeholder((13, 203), dtype, name="A")
    k = tex.reduce_axis((0, 203), name="k")
    B = tex.compute((13,), lambda i: getattr(tex, reducer)(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    _, lane = s[B].split(k, factor=lanes)
    partial = s.rfactor(B, lane)
    lane_axis, row = partial.op.axis
    s[partial].reorder(row, partial.op.reduce_axis[0], lane_axis)
    s[partial].vectorize(lane_axis)
    s[partial].compute_at(s[B], B.op.axis[0])
    s[B].vectorize(s[B].op.reduce_axis[0])
    assert "reduce_" + {"sum": "add"}.get(reducer, reducer) in str(tex.lower(s, [A, B]))
    a = random_array((13, 203), dtype)
    want = {"sum": np.sum, "max": np.max, "min": np.min}[reducer](a, axis=1).astype(dtype)
    got = tex.build(s, [A, B])(a)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_unroll_gives_each_copy_fresh_inner_loops():
    i, j = Var("i"), Var("j")
    body = loop(i, 2, loop(j, 3, Store(M, Load(M, (i, j)), (i, j))), "unrolled")
    unrolled = unroll_loops(body)
    expect(unrolled, """
        for j in range(3):
          M[0, j] = M[0, j]
        for j_1 in range(3):
          M[1, j_1] = M[1, j_1]
    """)
    func = LoweredFunc("f", (M,), (), unrolled)
    verify(func)


def test_hoist_moves_an_invariant_guard_out():
    i, n = Var("i"), Var("n")
    body = loop(i, 8, IfThenElse(n > 3, Store(A, Load(B, (i,)), (i,))))
    expect(hoist_invariant_guards(body), """
        if n > 3:
          for i in range(8):
            A[i] = B[i]
    """)


def test_hoist_divisions_moves_a_division_by_a_variable_out_of_its_invariant_loops():
    k, i, j, p, n = Var("k"), Var("i"), Var("j"), Var("p"), Var("n")
    invariant = Load(B, (((k + 2) % n) * 4 + i,))
    varying = Load(B, ((j + 1) % n,))
    body = loop(k, 8, loop(i, 4, loop(j, 4, IfThenElse(j < 3, Store(
        A, invariant + varying, (i * 16 + j,))))))
    expect(hoist_divisions(body), """
        for k in range(8):
          quotient2 = (k + 2) % n
          for i in range(4):
            for j in range(4):
              if j < 3:
                A[i * 16 + j] = B[quotient2 * 4 + i] + B[(j + 1) % n]
    """)
    # never out of a parallel loop, whose body becomes a function of its own
    parallel = loop(p, 4, Store(A, Load(B, ((n + 1) % n,)), (p,)), kind="parallel")
    assert hoist_divisions(parallel) is parallel


def test_hoist_reciprocals_multiplies_by_an_invariant_divisors_reciprocal_where_asked():
    i, j = Var("i"), Var("j")
    by_row = Load(B, (i,))                     # invariant in j
    body = Seq((Store(A, Load(M, (i, j)) / by_row, (j,)),
                Store(A, Load(M, (i, j)) / Load(A, (i,)), (j,)),    # A is stored in the loop
                Store(A, Load(B, (const(0),)) / by_row, (j + 16,))))  # invariant as a whole
    marked = loop(i, 4, For(j, const(0), const(16), "serial", body, (("reciprocal", None),)))
    expect(hoist_reciprocals(marked), """
        for i in range(4):
          reciprocal1 = 1.0 / B[i]
          for j in range(16):  # pragma reciprocal=None
            A[j] = M[i, j] * reciprocal1
            A[j] = M[i, j] / A[i]
            A[j + 16] = B[0] / B[i]
    """)
    unmarked = loop(i, 4, loop(j, 16, Store(A, Load(M, (i, j)) / by_row, (j,))))
    assert hoist_reciprocals(unmarked) is unmarked
    # a parallel loop's body becomes a function of its own: the reciprocal stays inside
    parallel = For(j, const(0), const(16), "parallel", Store(A, Load(M, (i, j)) / by_row, (j,)),
                   (("reciprocal", None),))
    expect(hoist_reciprocals(parallel), """
        for j in parallel(16):  # pragma reciprocal=None
          reciprocal1 = 1.0 / B[i]
          A[j] = M[i, j] * reciprocal1
    """)


def test_inject_prefetch_fetches_the_box_read_ahead_clamped_into_the_buffer():
    i, j = Var("i"), Var("j")
    row = loop(j, 16, Store(B, Load(M, (i, j)), (i * 16 + j,)))
    marked = loop(i, 4, PrefetchAhead(M, 1, row))
    expect(marked, """
        for i in range(4):
          prefetch_ahead(M, 1):
            for j in range(16):
              B[i * 16 + j] = M[i, j]
    """)
    expect(inject_prefetch(marked), """
        for i in range(4):
          for M_prefetch1 in range(2):
            prefetch(M[min(max(i + 1, 0), 3), min(M_prefetch1 * 16, 15)])
          for j in range(16):
            B[i * 16 + j] = M[i, j]
    """)


def test_inject_double_buffer_fills_the_second_buffer_while_the_first_is_read():
    S = Buffer("S", float32, (const(16),), "shared")
    k, t, u = Var("k"), Var("t"), Var("u")
    fill = loop(t, 16, Store(S, Load(A, (k * 16 + t,)), (t,)))
    use = loop(u, 16, Store(B, Load(S, (u,)) * 2.0, (k * 16 + u,)))
    marked = loop(k, 4, DoubleBuffer((S,), fill, use))
    func = LoweredFunc("f", (A, B), (), marked, (B,))
    verify(func)  # the mark allocates S for its fill and body
    expect(marked, """
        for k in range(4):
          double_buffer(S):
            fill:
              for t in range(16):
                S[t] = A[k * 16 + t]
            body:
              for u in range(16):
                B[k * 16 + u] = S[u] * 2.0
    """)
    expanded = inject_double_buffer(marked)
    verify(LoweredFunc("f", (A, B), (), expanded, (B,)))  # each copy defines fresh variables
    # the next tile loaded into registers before this one is read, stored after it
    expect(expanded, """
        S_staged = allocate(float32[16], 'local')
        S = allocate(float32[16], 'shared')
        S_next = allocate(float32[16], 'shared')
        for t in range(16):
          S[t] = A[0 * 16 + t]
        for k_pair in range(2):
          if k_pair * 2 + 1 < 4:
            for t_1 in range(16):
              S_staged[t_1] = A[(k_pair * 2 + 1) * 16 + t_1]
          for u in range(16):
            B[k_pair * 2 * 16 + u] = S[u] * 2.0
          if k_pair * 2 + 1 < 4:
            for t_2 in range(16):
              S_next[t_2] = S_staged[t_2]
          if k_pair * 2 + 2 < 4:
            for t_3 in range(16):
              S_staged[t_3] = A[(k_pair * 2 + 2) * 16 + t_3]
          if k_pair * 2 + 1 < 4:
            for u_1 in range(16):
              B[(k_pair * 2 + 1) * 16 + u_1] = S_next[u_1] * 2.0
          if k_pair * 2 + 2 < 4:
            for t_4 in range(16):
              S[t_4] = S_staged[t_4]
    """)


def test_inject_double_buffer_fills_shared_memory_directly_past_the_staging_limit():
    S = Buffer("S", float32, (const(64),), "shared")
    k, t, u = Var("k"), Var("t"), Var("u")
    fill = loop(t, 64, Store(S, Load(A, (t,)), (t,)))  # 64 values a thread: more than 32
    use = loop(u, 64, Store(B, Load(S, (u,)) * 2.0, (u,)))
    expanded = inject_double_buffer(loop(k, 3, DoubleBuffer((S,), fill, use)))
    verify(LoweredFunc("f", (A, B), (), expanded, (B,)))
    expect(expanded, """
        S = allocate(float32[64], 'shared')
        S_next = allocate(float32[64], 'shared')
        for t in range(64):
          S[t] = A[t]
        for k_pair in range(2):
          if k_pair * 2 + 1 < 3:
            for t_1 in range(64):
              S_next[t_1] = A[t_1]
          for u in range(64):
            B[u] = S[u] * 2.0
          if k_pair * 2 + 2 < 3:
            for t_2 in range(64):
              S[t_2] = A[t_2]
          if k_pair * 2 + 1 < 3:
            for u_1 in range(64):
              B[u_1] = S_next[u_1] * 2.0
    """)


def test_inject_pipeline_fetches_stages_minus_one_tiles_ahead_into_slots():
    S = Buffer("S", float32, (const(16),), "shared")
    k, t, u = Var("k"), Var("t"), Var("u")
    fill = loop(t, 16, Store(S, Load(A, (k * 16 + t,)), (t,)))
    use = loop(u, 16, Store(B, Load(S, (u,)) * 2.0, (k * 16 + u,)))
    marked = loop(k, 4, Pipeline((S,), 3, fill, use))
    verify(LoweredFunc("f", (A, B), (), marked, (B,)))  # the mark allocates S
    expect(marked, """
        for k in range(4):
          pipeline(S, stages=3):
            fill:
              for t in range(16):
                S[t] = A[k * 16 + t]
            body:
              for u in range(16):
                B[k * 16 + u] = S[u] * 2.0
    """)
    expanded = inject_pipeline(marked)
    verify(LoweredFunc("f", (A, B), (), expanded, (B,)))  # each copy defines fresh variables
    expect(expanded, """
        S_stages = allocate(float32[3, 16], 'shared')
        async_fill:
          for t in range(16):
            S_stages[0, t] = A[0 * 16 + t]
        tex_cp_async_commit()
        async_fill:
          for t_1 in range(16):
            S_stages[1, t_1] = A[1 * 16 + t_1]
        tex_cp_async_commit()
        for k in range(4):
          tex_cp_async_wait_group_1()
          sync_threads()
          if k + 2 < 4:
            async_fill:
              for t_2 in range(16):
                S_stages[(k + 2) % 3, t_2] = A[(k + 2) * 16 + t_2]
          tex_cp_async_commit()
          for u in range(16):
            B[k * 16 + u] = S_stages[k % 3, u] * 2.0
        tex_cp_async_wait_group_0()
        sync_threads()
    """)


def test_verifier_catches_undefined_and_twice_defined_variables():
    i, j = Var("i"), Var("j")
    with pytest.raises(VerifyError, match="variable j"):
        verify(LoweredFunc("f", (A, B), (), loop(i, 4, Store(A, Load(B, (j,)), (i,)))))
    twice = seq(loop(i, 4, Store(A, Load(B, (i,)), (i,))), loop(i, 4, Store(A, const(1.0), (i,))))
    with pytest.raises(VerifyError, match="defined twice"):
        verify(LoweredFunc("f", (A, B), (), twice))
    stray = Buffer("T", float32, (const(4),))
    with pytest.raises(VerifyError, match="outside its allocation"):
        verify(LoweredFunc("f", (A,), (), Store(stray, const(1.0), (const(0),))))


def test_lowered_matmul_reads_well():
    n = tex.var("n")
    A_ = tex.placeholder((n, 64), name="A")
    B_ = tex.placeholder((64, 32), name="B")
    k = tex.reduce_axis((0, 64), name="k")
    C_ = tex.compute((n, 32), lambda i, j: tex.sum(A_[i, k] * B_[k, j], axis=k), name="C")
    s = tex.create_schedule(C_.op)
    io, ii = s[C_].split(C_.op.axis[0], factor=8)
    s[C_].reorder(io, k, ii, C_.op.axis[1])
    s[C_].vectorize(C_.op.axis[1])
    s[C_].parallel(io)
    expect(tex.lower(s, [A_, B_, C_]), """
        def main(A: float32[n, 64], B: float32[64, 32], C: float32[n, 32]):
          for i_outer in parallel((n + 7) // 8):
            for i_inner_init in range(8):
              if i_outer * 8 + i_inner_init < n:
                C[ramp(i_outer * 256 + i_inner_init * 32, 1, 32)] = broadcast(0.0, 32)
            for k in range(64):
              for i_inner in range(8):
                if i_outer * 8 + i_inner < n:
                  C[ramp(i_outer * 256 + i_inner * 32, 1, 32)] = C[ramp(i_outer * 256 + i_inner * 32, 1, 32)] + broadcast(A[i_outer * 512 + i_inner * 64 + k], 32) * B[ramp(k * 32, 1, 32)]
    """)  # noqa: E501


def test_lower_upto_stops_after_the_named_pass():
    A_ = tex.placeholder((20,), name="A")
    B_ = tex.compute((20,), lambda i: A_[i] * 2.0, name="B")
    s = tex.create_schedule(B_.op)
    _, inner = s[B_].split(B_.op.axis[0], factor=4)
    s[B_].unroll(inner)
    assert "for i_inner" in str(tex.lower(s, [A_, B_], upto="vectorize_loops"))
    assert "for i_inner" not in str(tex.lower(s, [A_, B_], upto="unroll_loops"))
    with pytest.raises(tex.BuildError, match="upto must name a pass"):
        tex.lower(s, [A_, B_], upto="fold")


def test_vectorize_cuts_other_widths_into_powers_of_two():
    i = Var("i")
    body = loop(i, 13, Store(A, Load(B, (i,)), (i,)), "vectorized")
    expect(simplify_stmt(vectorize_loops(body)), """
        A[ramp(0, 1, 8)] = B[ramp(0, 1, 8)]
        A[ramp(8, 1, 4)] = B[ramp(8, 1, 4)]
        A[12] = B[12]
    """)


def test_simplify_folds_a_prefix_guard_into_the_loop_extent():
    i, j, n = Var("i"), Var("j"), Var("n")
    body = loop(i, 7, IfThenElse((i < 3) & (n > i), Store(A, Load(B, (i,)), (i,))))
    expect(simplify_stmt(body), """
        for i in range(3):
          if n > i:
            A[i] = B[i]
    """)
    dead = loop(i, 7, IfThenElse(i < 1, loop(j, 8, IfThenElse(i * 8 + j < 1,
                                                              Store(A, const(1.0), (j,))))))
    expect(simplify_stmt(dead), """
        A[0] = 1.0
    """)
