"""GPU schedules lowered for target "cuda": kernels, launch sizes, scopes, barriers,
reduction strategies, and the errors of illegal GPU schedules (no GPU needed)."""
import re

import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from checks import check_staged_row_sums_over_symbolic_steps
from tex.runtime import cuda_simulator


def lowered(case_or_schedule, args=None) -> str:
    if args is None:
        case = case_or_schedule
        return str(tex.lower(case.schedule, case.args, name=case.name, target="cuda"))
    return str(tex.lower(case_or_schedule, args, target="cuda"))


def vector_add(n=1000):
    a = tex.placeholder((n,), name="a")
    b = tex.compute((n,), lambda i: a[i] + 1.0, name="b")
    return tex.create_schedule(b.op), a, b


def row_sums(rows=8, cols=100):
    """out[i] = sum of a[i, :], unscheduled: (schedule, a, out, the reduction axis k)."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    out = tex.compute((rows,), lambda i: tex.sum(a[i, k], axis=k), name="out")
    return tex.create_schedule(out.op), a, out, k


def test_bound_loops_become_one_launch_with_their_extents():
    text = lowered(cases.elementwise(1000, threads=128))
    assert "launch elementwise_kernel0(grid=(8, 1, 1), block=(128, 1, 1)):" in text
    assert "for i_outer in blockIdx.x(8):" in text and "for i_inner in threadIdx.x(128):" in text
    assert "if i_outer * 128 + i_inner < 1000:" in text


def test_lower_without_a_target_shows_bound_loops_and_no_launch():
    case = cases.elementwise(1000)
    text = str(tex.lower(case.schedule, case.args))
    assert "threadIdx.x(256)" in text and "launch" not in text


def test_symbolic_sizes_give_a_symbolic_grid():
    n = tex.var("n")
    a = tex.placeholder((n,), name="a")
    b = tex.compute((n,), lambda i: a[i] * 2.0, name="b")
    s = tex.create_schedule(b.op)
    bo, bi = s[b].split(b.op.axis[0], factor=64)
    s[b].bind(bo, tex.thread_axis("blockIdx.x"))
    s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    assert "grid=((n + 63) // 64, 1, 1), block=(64, 1, 1)" in lowered(s, [a, b])


def test_shared_tiles_cover_the_block_and_barriers_bracket_their_use():
    text = lowered(cases.matmul(100, 90, 70, tile=32, per_thread=4, step=8))
    # A 32x8 tile of A and an 8x32 tile of B, for all 64 threads of the block
    assert "A_shared = allocate(float32[256], 'shared')" in text
    assert "B_shared = allocate(float32[256], 'shared')" in text
    assert "C_local = allocate(float32[16], 'local')" in text
    body = text[text.index("for r_outer"):]
    # one barrier before refilling the tiles, one between filling and reading
    assert body.count("sync_threads()") == 2
    first, second = body.index("sync_threads()"), body.rindex("sync_threads()")
    assert body.index("B_shared[") > first and body.index("A_shared[") < second
    assert body.index("C_local[") > second


def test_global_stage_inside_a_kernel_gets_shared_or_local_scope():
    text = lowered(cases.softmax(9, 1000))
    assert "row_max = allocate(float32[1], 'shared')" in text
    assert "row_max_acc = allocate(float32[1], 'local')" in text


def test_guards_of_a_consumer_do_not_hide_cooperative_fetches():
    n, m, k = 100, 90, 70
    A = tex.placeholder((n, k), name="A")
    B = tex.placeholder((k, m), name="B")
    r = tex.reduce_axis((0, k), name="r")
    C = tex.compute((n, m), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r), name="C")
    s = tex.create_schedule(C.op)
    AS = s.cache_read(A, "shared", [C])
    bi, bj, ti, tj = s[C].tile(*s[C].op.axis, 16, 16)
    ro, ri = s[C].split(s[C].op.reduce_axis[0], factor=16)
    s[C].reorder(bi, bj, ti, tj, ro, ri)
    for axis, tag in zip((bi, bj, ti, tj), ("blockIdx.y", "blockIdx.x", "threadIdx.y",
                                            "threadIdx.x")):
        s[C].bind(axis, tex.thread_axis(tag))
    s[AS].compute_at(s[C], ro)
    s[AS].bind(s[AS].op.axis[0], tex.thread_axis("threadIdx.y"))
    s[AS].bind(s[AS].op.axis[1], tex.thread_axis("threadIdx.x"))
    text = lowered(s, [A, B, C])
    loop = text[text.index("for r_outer"):]
    fetch, guard = loop.index("A_shared["), loop.index("i_outer * 16 + i_inner < 100 and")
    assert fetch < guard  # every thread fetches, then only those inside C compute


@pytest.mark.parametrize("strategy", ["shared", "warp"])
def test_cross_thread_reduction_strategies(strategy):
    text = lowered(cases.row_reduce(13, 1000, strategy))
    assert "if threadIdx.x == 0:" in text and "out[i] = out_red[0]" in text
    if strategy == "warp":
        assert "shfl_xor(out_red[0], 16, width=32" in text
        assert "out_red_warps = allocate(float32[8], 'shared')" in text
        assert text.count("sync_threads()") == 1
    else:
        assert "out_red_shared = allocate(float32[256], 'shared')" in text
        assert "shfl" not in text and text.count("sync_threads()") == 9


def test_warp_strategy_within_one_warp_needs_no_shared_memory():
    text = lowered(cases.row_reduce(13, 1000, "warp", threads=16, reducer="max"))
    assert "shared" not in text and "sync_threads" not in text
    assert "shfl_xor(out_red[0], 8, width=32, mask=0xffff)" in text


def test_default_strategy_is_warp_where_it_applies_else_shared():
    for threads, expect in ((128, "shfl_xor"), (100, "out_red_shared")):
        s, a, out, k = row_sums(cols=1000)
        _, lanes = s[out].split(k, factor=threads)
        s[out].bind(out.op.axis[0], tex.thread_axis("blockIdx.x"))
        s[out].bind(lanes, tex.thread_axis("threadIdx.x"))
        assert expect in lowered(s, [a, out])


def test_atomic_strategy_zero_fills_in_its_own_kernel_then_adds():
    text = lowered(cases.row_reduce(13, 1000, "atomic"))
    first, second = text.index("launch row_sum_atomic_kernel0"), \
        text.index("launch row_sum_atomic_kernel1")
    assert "out[" in text[first:second] and "= 0.0" in text[first:second]
    assert "atomic_add(out[" in text[second:]


def test_atomic_row_reduction_puts_lanes_along_the_row():
    text = lowered(cases.row_reduce(13, 1000, "atomic", threads=64))
    # 3 chunks of 6 steps of 64 consecutive elements, a lane's element at unit stride
    assert "for k_outer_outer in blockIdx.y(3):" in text
    assert "a[i * 1000 + k_outer_outer * 384 + k_outer_inner * 64 + k_inner]" in text


def test_atomic_min_fills_with_the_largest_value():
    text = lowered(cases.row_reduce(13, 1000, "atomic", reducer="min"))
    assert "= inf" in text and "atomic_min(out[" in text


def test_block_and_thread_reduction_in_one_stage():
    text = lowered(cases.full_sum(10_000, "atomic"))
    assert "shfl_xor" in text and "atomic_add(out[0]" in text


def test_rfactor_partials_live_in_registers():
    text = lowered(cases.row_sum_rfactor(13, 1000, "warp"))
    assert "out_rf = allocate(float32[1], 'local')" in text and "shfl_xor" in text


# --- errors ---------------------------------------------------------------------------

def test_unknown_thread_axis():
    with pytest.raises(tex.ScheduleError, match="unknown thread axis 'threadIdx.w'"):
        tex.thread_axis("threadIdx.w")


def test_a_thread_axis_is_bound_once_per_stage():
    s, a, b = vector_add()
    bo, bi = s[b].split(b.op.axis[0], factor=32)
    s[b].bind(bo, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.ScheduleError, match="threadIdx.x is already bound to axis i_outer"):
        s[b].bind(bi, tex.thread_axis("threadIdx.x"))


def test_bind_and_vectorize_exclude_each_other():
    s, a, b = vector_add()
    bo, bi = s[b].split(b.op.axis[0], factor=32)
    s[b].vectorize(bi)
    with pytest.raises(tex.ScheduleError, match="already marked vectorize"):
        s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    s[b].bind(bo, tex.thread_axis("blockIdx.x"))
    with pytest.raises(tex.ScheduleError, match="bound to blockIdx.x"):
        s[b].parallel(bo)


def test_unbound_stage_is_refused_on_cuda():
    s, a, b = vector_add()
    with pytest.raises(tex.LoweringError, match="computing b has no loop bound to a GPU thread"):
        lowered(s, [a, b])


def test_parallel_is_refused_on_cuda():
    s, a, b = vector_add()
    bo, bi = s[b].split(b.op.axis[0], factor=32)
    s[b].parallel(bo)
    s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match="marked parallel, a CPU annotation"):
        lowered(s, [a, b])


def test_too_many_threads_per_block():
    s, a, b = vector_add(5000)
    bo, bi = s[b].split(b.op.axis[0], factor=2048)
    s[b].bind(bo, tex.thread_axis("blockIdx.x"))
    s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match="threadIdx.x has 2048 threads, more than the 1024"):
        lowered(s, [a, b])


def test_too_many_threads_in_two_dimensions():
    a = tex.placeholder((64, 64), name="a")
    b = tex.compute((64, 64), lambda i, j: a[i, j], name="b")
    s = tex.create_schedule(b.op)
    s[b].bind(b.op.axis[0], tex.thread_axis("threadIdx.y"))
    s[b].bind(b.op.axis[1], tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match="64 x 64 x 1 = 4096 threads is more than the 1024"):
        lowered(s, [a, b])


def test_bound_schedule_refused_for_the_cpu():
    case = cases.elementwise(100)
    with pytest.raises(tex.BuildError, match="GPU thread axis; build it for target='cuda'"):
        tex.build(case.schedule, case.args, target="llvm")


def test_reduction_bound_to_blocks_needs_the_atomic_strategy():
    s, a, out, k = row_sums()
    ko, ki = s[out].split(k, nparts=4)
    s[out].bind(ko, tex.thread_axis("blockIdx.x"))
    s[out].bind(out.op.axis[0], tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match=r"reduce_strategy\(k_outer, 'atomic'\)"):
        lowered(s, [a, out])


def test_atomic_refuses_other_reducers():
    a = tex.placeholder((8, 100), name="a")
    k = tex.reduce_axis((0, 100), name="k")
    prod = tex.comm_reducer(lambda x, y: x * y, lambda t: tex.const(1.0, t), name="prod")
    out = tex.compute((8,), lambda i: prod(a[i, k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    ko, ki = s[out].split(k, nparts=4)
    s[out].bind(ko, tex.thread_axis("blockIdx.x"))
    s[out].bind(out.op.axis[0], tex.thread_axis("threadIdx.x"))
    s[out].reduce_strategy(ko, "atomic")
    with pytest.raises(tex.LoweringError, match="atomics combine sum, min and max, not prod"):
        lowered(s, [a, out])


def test_warp_strategy_needs_whole_warps():
    with pytest.raises(tex.LoweringError, match="reduce_strategy 'warp' needs"):
        lowered(cases.row_reduce(13, 700, "warp", threads=100))


def test_reduce_strategy_errors():
    s, a, b = vector_add()
    with pytest.raises(tex.ScheduleError, match="is a data axis"):
        s[b].reduce_strategy(b.op.axis[0], "warp")
    s, a2, out, k = row_sums()
    with pytest.raises(tex.ScheduleError, match="strategy must be one of 'shared', 'warp', "
                                                "'atomic', got 'tree'"):
        s[out].reduce_strategy(k, "tree")


def test_data_loop_inside_a_thread_reduction_is_refused():
    s, a, out, k = row_sums()
    ko, ki = s[out].split(k, factor=32)
    s[out].reorder(ko, out.op.axis[0], ki)
    s[out].bind(ki, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match="data loop i must come before the reduction"):
        lowered(s, [a, out])


def test_shared_or_local_stage_at_the_root_of_a_gpu_schedule_is_refused():
    s, a, b = vector_add()
    a_local = s.cache_read(a, "local", [s[b]])
    bo, bi = s[b].split(b.op.axis[0], factor=32)
    s[b].bind(bo, tex.thread_axis("blockIdx.x"))
    s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.LoweringError, match="stage a_local has scope 'local' but is computed "
                                                "at the root, outside every GPU kernel"):
        lowered(s, [a, b])
    s[a_local].compute_at(s[b], bi)
    assert "a_local = allocate(float32[1], 'local')" in lowered(s, [a, b])


# --- found by running GPU schedules in the CPU simulator -------------------------------------
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")


@needs_compiler
def test_data_loops_bound_inside_a_reduction_loop_run_it_in_each_thread():
    """As in TE, the reduction loop k may be outside the loops bound to blocks and threads:
    each thread first stores the identity of its own points (the init copies of the loops,
    bound to the same axes), then runs k and adds to them."""
    s, a, out, k = row_sums(rows=100, cols=37)
    s[out].reorder(k, out.op.axis[0])
    blocks, threads = s[out].split(out.op.axis[0], factor=32)
    s[out].bind(blocks, tex.thread_axis("blockIdx.x"))
    s[out].bind(threads, tex.thread_axis("threadIdx.x"))
    text = lowered(s, [a, out])
    assert "for i_outer_init in blockIdx.x(4):" in text
    assert re.search(r"for k in range\(37\):\n +for i_outer in blockIdx.x\(4\):", text), text
    data = np.random.default_rng(0).standard_normal((100, 37)).astype("float32")
    kernel = tex.build(s, [a, out], target="cuda")
    np.testing.assert_allclose(kernel.simulate(data), data.sum(axis=1), rtol=1e-5, atol=1e-5)


@needs_compiler
def test_a_shared_tile_fetched_in_a_reduction_loop_outside_the_bound_loops():
    """k_outer runs outside the block and thread loops; each block's tile of `a` is fetched
    into shared memory at the block loop, once per k_outer, between barriers."""
    s, a, out, k = row_sums(rows=100, cols=37)
    a_shared = s.cache_read(a, "shared", [out])
    ko, ki = s[out].split(k, factor=8)
    blocks, threads = s[out].split(out.op.axis[0], factor=32)
    s[out].reorder(ko, blocks, threads, ki)
    tx = tex.thread_axis("threadIdx.x")
    s[out].bind(blocks, tex.thread_axis("blockIdx.x"))
    s[out].bind(threads, tx)
    s[a_shared].compute_at(s[out], blocks)
    s[a_shared].bind(s[a_shared].split(a_shared.op.axis[0], factor=32)[1], tx)
    data = np.random.default_rng(1).standard_normal((100, 37)).astype("float32")
    kernel = tex.build(s, [a, out], target="cuda")
    assert kernel.get_source("cuda").count("__syncthreads();") == 2
    np.testing.assert_allclose(kernel.simulate(data), data.sum(axis=1), rtol=1e-5, atol=1e-5)


@needs_compiler
def test_a_thread_reduction_inside_another_axis_bound_check_keeps_its_barriers_out_of_it():
    """column_sum's threadIdx.x split does not divide its 70 columns; the threads past the
    end must still take part in the threadIdx.y reduction's barriers."""
    case = cases.column_sum(77, 70)
    kernel = case.build()
    barriers = [line for line in kernel.get_source("cuda").splitlines() if "__syncthreads" in line]
    assert barriers and all(line == "  __syncthreads();" for line in barriers)
    inputs = case.inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs), case.reference(*inputs), rtol=1e-4)


def _row_sums_in_shared_memory(rows=13, cols=7, threads=3):
    """P[i] = sum of a[i, :], computed at the block loop of its consumer (so into shared
    memory) with no loop of its own bound to threads, while the consumer binds threads."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    p = tex.compute((rows,), lambda i: tex.sum(a[i, k], axis=k), name="P")
    out = tex.compute((rows,), lambda i: p[i] * 2.0, name="out")
    s = tex.create_schedule(out.op)
    bo, bi = s[out].split(out.op.axis[0], factor=threads)
    s[out].bind(bo, tex.thread_axis("blockIdx.x"))
    s[out].bind(bi, tex.thread_axis("threadIdx.x"))
    s[p].compute_at(s[out], bo)
    return s, a, out


@needs_compiler
def test_a_split_without_predication_gives_its_last_block_the_threads_before_the_end():
    s, a, b = vector_add(1000)
    bo, bi = s[b].split(b.op.axis[0], factor=64, disable_predication=True)
    s[b].bind(bo, tex.thread_axis("blockIdx.x"))
    s[b].bind(bi, tex.thread_axis("threadIdx.x"))
    kernel = tex.build(s, [a, b], target="cuda")
    assert "min(i_outer * 64, 936)" in kernel.get_source("cuda")
    data = np.random.default_rng(0).standard_normal(1000).astype("float32")
    np.testing.assert_allclose(kernel.simulate(data), data + 1, rtol=1e-6)


@needs_compiler
def test_a_reduction_into_shared_memory_that_binds_no_threads_runs_in_one_thread():
    s, a, out = _row_sums_in_shared_memory()
    assert "if threadIdx.x == 0:" in lowered(s, [a, out])
    data = np.random.default_rng(0).standard_normal((13, 7)).astype("float32")
    kernel = tex.build(s, [a, out], target="cuda")
    np.testing.assert_allclose(kernel.simulate(data), data.sum(axis=1) * 2, rtol=1e-5)


@needs_compiler
def test_bound_checks_moved_below_a_stage_inside_the_reduction_also_guard_the_write():
    """The 64 columns split by 40 threads: the bound check goes below the local copy of `a`
    computed inside the reduction loops, and must still keep the last block's extra
    threads from writing past the end of the output."""
    n, m = 64, 30
    a = tex.placeholder((m, n), name="a")
    k = tex.reduce_axis((0, m), name="k")
    out = tex.compute((n,), lambda i: tex.sum(a[k, i], axis=k), name="out")
    s = tex.create_schedule(out.op)
    a_local = s.cache_read(a, "local", [out])
    io, ii = s[out].split(out.op.axis[0], factor=40)
    ko, ki = s[out].split(k, factor=16)
    s[out].reorder(io, ii, ko, ki)
    s[out].bind(io, tex.thread_axis("blockIdx.x"))
    s[out].bind(ii, tex.thread_axis("threadIdx.x"))
    s[out].bind(ki, tex.thread_axis("threadIdx.y"))
    s[out].reduce_strategy(ki, "shared")
    s[a_local].compute_at(s[out], ki)
    data = np.random.default_rng(1).standard_normal((m, n)).astype("float32")
    kernel = tex.build(s, [a, out], target="cuda")
    np.testing.assert_allclose(kernel.simulate(data), data.sum(axis=0), rtol=1e-4, atol=1e-5)


@needs_compiler
def test_a_thread_reduction_in_a_thread_loop_shorter_than_the_block_runs_in_every_thread():
    """out binds 3 columns to threadIdx.x, but the block has 8 threads along x (a cache of
    the input is copied by all 8): the 5 threads without a column still take part in the
    reduction across threadIdx.y."""
    rows, cols, depth = 5, 3, 4
    a = tex.placeholder((rows, cols, depth), name="a")
    k = tex.reduce_axis((0, depth), name="k")
    out = tex.compute((rows, cols), lambda r, c: tex.sum(a[r, c, k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    cached = s.cache_read(a, "shared", [out])
    r, c = out.op.axis
    s[out].bind(r, tex.thread_axis("blockIdx.x"))
    s[out].bind(c, tex.thread_axis("threadIdx.x"))
    s[out].bind(k, tex.thread_axis("threadIdx.y"))
    s[out].reduce_strategy(k, "shared")
    s[cached].compute_at(s[out], r)
    _, cc, ck = s[cached].op.axis
    outer, inner = s[cached].split(s[cached].fuse(cc, ck), factor=8)
    s[cached].bind(inner, tex.thread_axis("threadIdx.x"))
    data = np.random.default_rng(2).standard_normal((rows, cols, depth)).astype("float32")
    kernel = tex.build(s, [a, out], target="cuda")
    assert "block=(8, 4, 1)" in kernel.get_source("tex")
    np.testing.assert_allclose(kernel.simulate(data), data.sum(axis=2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["shared", "warp"])
def test_a_thread_reduction_into_a_local_buffer_reaches_every_thread(strategy):
    """A softmax with two rows per block (threadIdx.y), the row's maximum and sum computed
    inside the threadIdx.y loop, so into local buffers, each reduced across threadIdx.x:
    every thread writes the result into its own copy (thread 0 alone left the others'
    copies unset)."""
    n, m = 5, 300
    A = tex.placeholder((n, m), name="A")
    k1, k2 = tex.reduce_axis((0, m), name="k1"), tex.reduce_axis((0, m), name="k2")
    top = tex.compute((n,), lambda i: tex.max(A[i, k1], axis=k1), name="top")
    total = tex.compute((n,), lambda i: tex.sum(tex.exp(A[i, k2] - top[i]), axis=k2),
                        name="total")
    Y = tex.compute((n, m), lambda i, j: tex.exp(A[i, j] - top[i]) / total[i], name="Y")
    s = tex.create_schedule(Y.op)
    block, row = s[Y].split(Y.op.axis[0], factor=2)
    s[Y].bind(block, tex.thread_axis("blockIdx.x"))
    s[Y].bind(row, tex.thread_axis("threadIdx.y"))
    outer, lane = s[Y].split(Y.op.axis[1], factor=32)
    s[Y].reorder(lane, outer)
    s[Y].bind(lane, tex.thread_axis("threadIdx.x"))
    for R in (top, total):
        s[R].compute_at(s[Y], row)
        _, lanes = s[R].split(R.op.reduce_axis[0], factor=32)
        s[R].bind(lanes, tex.thread_axis("threadIdx.x"))
        s[R].reduce_strategy(lanes, strategy)
    kernel = tex.build(s, [A, Y], target="cuda")
    assert "top = allocate(float32[1], 'local')" in kernel.get_source("tex")
    a = np.random.default_rng(3).standard_normal((n, m)).astype("float32")
    e = np.exp(a - a.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    for seed in range(2):
        np.testing.assert_allclose(kernel.simulate(a, seed=seed), want, rtol=1e-5, atol=1e-6)


# --- per-thread tiles whose points are strided ------------------------------------------------
def test_interleaved_columns_keep_one_thread_tile_in_registers():
    """Thread x owns columns 4x + {0..3} + 64 * {0, 1} of the 128-wide block tile: its
    accumulator holds its 8 x 8 points, not the 8 x 68 that span them."""
    text = lowered(cases.matmul(130, 150, 90, tile=128, per_thread=8, step=8))
    assert "C_local = allocate(float32[64], 'local')" in text
    assert "B_shared[j_inner_inner_outer * 4 + 64]" in text  # the second group of 4 columns
    # columns x + 16 * j (one at a time): 4 x 4 points, not 4 x 49
    text = lowered(cases.matmul(70, 90, 50, tile=64, per_thread=4, step=8, vector=1))
    assert "C_local = allocate(float32[16], 'local')" in text


@needs_compiler
@pytest.mark.parametrize("tile, per_thread, vector", [(64, 4, 1), (32, 4, 4), (64, 8, 4)])
def test_interleaved_matmul_matches_numpy(tile, per_thread, vector):
    case = cases.matmul(70, 90, 50, tile=tile, per_thread=per_thread, step=8, vector=vector)
    inputs = case.inputs()
    np.testing.assert_allclose(case.build().simulate(*inputs), case.reference(*inputs),
                               rtol=1e-4, atol=1e-4)


def _strided_per_thread(n=1000, threads=64, each=4):
    """out[i] = 2 * a[i] + 1 with `2 * a` cached per thread: block b, thread t computes
    the points b * threads * each + threads * k + t (k < each)."""
    a = tex.placeholder((n,), name="a")
    twice = tex.compute((n,), lambda i: a[i] * 2.0, name="twice")
    out = tex.compute((n,), lambda i: twice[i] + 1.0, name="out")
    s = tex.create_schedule(out.op)
    cached = s.cache_write(twice, "local")
    s[twice].compute_inline()
    block, rest = s[out].split(out.op.axis[0], factor=threads * each)
    k, t = s[out].split(rest, factor=threads)
    s[out].reorder(block, t, k)
    s[out].bind(block, tex.thread_axis("blockIdx.x"))
    s[out].bind(t, tex.thread_axis("threadIdx.x"))
    s[cached].compute_at(s[out], t)
    return s, [a, out]


def test_strided_per_thread_buffer_holds_only_the_threads_points():
    s, args = _strided_per_thread()
    text = lowered(s, args)
    assert "twice_local = allocate(float32[4], 'local')" in text  # 4 points, not 193


@needs_compiler
def test_strided_per_thread_buffer_matches_numpy():
    s, args = _strided_per_thread()
    a = np.random.default_rng(0).uniform(-1, 1, 1000).astype("float32")
    np.testing.assert_allclose(tex.build(s, args, target="cuda").simulate(a), 2 * a + 1,
                               rtol=1e-6)


def test_strided_positions_spread_and_compact_back():
    from tex.arith import evaluate
    from tex.expr import Var
    from tex.lower.bound import compact, spread
    q = Var("q", tex.dtype.INDEX)
    for digits in (((1, 4), (64, 2)), ((16, 8),), ((1, 2), (8, 3), (100, 2))):
        size = np.prod([extent for _, extent in digits])
        offsets = [evaluate(spread(q, digits), {q: p}) for p in range(size)]
        assert len(set(offsets)) == size
        assert [evaluate(compact(q, digits), {q: o}) for o in offsets] == list(range(size))


# --- double_buffer -----------------------------------------------------------------------------
def _double_buffered_matmul(n=100, m=90, k=70, stages=("A_shared", "B_shared")):
    case = cases.matmul(n=n, m=m, k=k)
    for stage in case.schedule.stages:
        if stage.name in stages:
            stage.double_buffer()
    return case


def test_double_buffer_fetches_the_next_tiles_before_computing_on_these():
    case = _double_buffered_matmul()  # 5 steps of k: the last pair has one step
    text = lowered(case)
    loop = text[text.index("for r_outer_pair in range(3):"):text.index("for i_inner_inner")]
    assert "B_shared_next = allocate(float32[1024], 'shared')" in text
    assert "B_shared_staged = allocate(float32[4], 'local')" in text
    assert "double_buffer()" in str(case.schedule)
    # the next tiles are loaded into registers before the current ones are read, and
    # stored into the other buffer after them, with no barrier between
    order = []
    for event in re.findall(r"sync_threads\(\)|B_shared_staged\[\w*\(?0, 1, 4\)?\] = |"
                            r"B_shared(?:_next)?\[ramp|\* B_shared(?:_next)?\[", loop):
        if not order or order[-1] != event:
            order.append(event)
    assert order == ["B_shared_staged[ramp(0, 1, 4)] = ", "sync_threads()", "* B_shared[",
                     "B_shared_next[ramp", "B_shared_staged[ramp(0, 1, 4)] = ",
                     "sync_threads()", "* B_shared_next[", "B_shared[ramp"]


@needs_compiler
@pytest.mark.parametrize("k, stages", [(64, ("A_shared", "B_shared")),  # 4 steps of 16
                                       (70, ("A_shared", "B_shared")),  # 5
                                       (16, ("A_shared", "B_shared")),  # 1
                                       (5, ("A_shared", "B_shared")),   # 1
                                       (70, ("A_shared",))])  # B_shared fetched in each half
def test_double_buffered_matmul_matches_numpy(k, stages):
    case = _double_buffered_matmul(k=k, stages=stages)
    kernel = case.build()
    inputs = case.inputs()
    for seed in (0, 1):
        np.testing.assert_allclose(kernel.simulate(*inputs, seed=seed), case.reference(*inputs),
                                   rtol=1e-4, atol=1e-4)


@needs_compiler
def test_double_buffer_with_a_symbolic_number_of_steps():
    check_staged_row_sums_over_symbolic_steps(lambda stage: stage.double_buffer())


def test_double_buffer_errors():
    a = tex.placeholder((64, 64), name="a")
    b = tex.compute((64, 64), lambda i, j: a[i, j] + 1.0, name="b")
    s = tex.create_schedule(b.op)
    s[b].double_buffer()
    with pytest.raises(tex.LoweringError, match="double_buffer on stage b: it is computed at "
                                                "the root"):
        tex.lower(s, [a, b], target="cuda")
    case = cases.matmul(n=100, m=90, k=70)
    for stage in case.schedule.stages:
        if stage.name.endswith("_shared"):
            stage.double_buffer()
            stage.set_scope("local")
    with pytest.raises(tex.LoweringError, match="into local memory; double buffering is for "
                                                "shared memory"):
        lowered(case)
    case = _double_buffered_matmul()
    attach = next(st for st in case.schedule.stages if st.name.endswith("_shared")).attach
    attach.stage.unroll(attach.axis)
    with pytest.raises(tex.LoweringError, match="loop r_outer of stage C_local, which is "
                                                "unrolled; double-buffer at a serial loop"):
        lowered(case)


def _row_kept_by_threads(cols=100, threads=32, producer_bound=True):
    """b[i, j] = 2 * a[i, j] + (row sum of a), one row per block: `a` cached per thread
    in a local buffer x[i, step, lane] at the block, its lanes on threadIdx.x when
    `producer_bound` (else each thread fills the whole row serially)."""
    steps = -(-cols // threads)
    a = tex.placeholder((3, cols), name="a")
    x = tex.compute((3, steps, threads), lambda i, o, t: tex.if_then_else(
        o * threads + t < cols, a[i, o * threads + t], tex.const(0.0)), name="x")
    ko = tex.reduce_axis((0, steps), name="ko")
    kt = tex.reduce_axis((0, threads), name="kt")
    total = tex.compute((3,), lambda i: tex.sum(x[i, ko, kt], axis=[ko, kt]), name="total")
    b = tex.compute((3, cols), lambda i, j: x[i, j // threads, j % threads] * 2.0 + total[i],
                    name="b")
    s = tex.create_schedule(b.op)
    row, col = b.op.axis
    s[b].bind(row, tex.thread_axis("blockIdx.x"))
    jo, jt = s[b].split(col, factor=threads)
    s[b].reorder(jt, jo)
    s[b].bind(jt, tex.thread_axis("threadIdx.x"))
    s[x].set_scope("local")
    s[x].compute_at(s[b], row)
    if producer_bound:
        s[x].reorder(x.op.axis[2], x.op.axis[1])
        s[x].bind(x.op.axis[2], tex.thread_axis("threadIdx.x"))
    s[total].compute_at(s[b], row)
    s[total].reorder(kt, ko)
    s[total].bind(kt, tex.thread_axis("threadIdx.x"))
    return s, a, b


@pytest.mark.parametrize("producer_bound", [True, False], ids=["lanes", "serial"])
def test_a_local_buffer_at_the_block_holds_one_threads_part(producer_bound):
    s, a, b = _row_kept_by_threads(producer_bound=producer_bound)
    text = lowered(s, [a, b])
    # 100 columns over 32 threads: 4 per thread when each thread writes only its own part;
    # a thread that fills the whole row needs it all
    if producer_bound:
        assert "x = allocate(float32[4], 'local')" in text and "x[o] = select(" in text
        assert "x[j_outer] * 2.0" in text
    else:
        assert "x = allocate(float32[128], 'local')" in text
    if cuda_simulator.compiler() is None:
        pytest.skip("needs g++")
    data = np.random.default_rng(0).uniform(-1, 1, (3, 100)).astype("float32")
    result = tex.build(s, [a, b], target="cuda").simulate(data)
    np.testing.assert_allclose(result, 2 * data + data.sum(axis=1, keepdims=True), rtol=1e-5)


@needs_compiler
def test_a_cache_write_after_a_split_accumulates_in_registers_on_the_gpu():
    """cache_write after a split: the local cache takes the split loops, the copy is
    bound to blocks and threads afresh, and each thread accumulates its 4 rows locally."""
    a = tex.placeholder((45, 19), name="a")
    b = tex.placeholder((19, 30), name="b")
    k = tex.reduce_axis((0, 19), name="k")
    c = tex.compute((45, 30), lambda i, j: tex.sum(a[i, k] * b[k, j], axis=k), name="c")
    s = tex.create_schedule(c.op)
    s[c].split(c.op.axis[0], factor=4)
    local = s.cache_write(c, "local")
    assert [ax.name for ax in local.op.axis] == ["i_outer", "i_inner", "j"]
    i, j = s[c].op.axis
    io, ii = s[c].split(i, factor=4)
    s[c].reorder(io, j, ii)
    s[c].bind(io, tex.thread_axis("blockIdx.x"))
    s[c].bind(j, tex.thread_axis("threadIdx.x"))
    s[local].compute_at(s[c], j)
    text = lowered(s, [a, b, c])
    assert "c_local" in text and "for i_inner in range(4)" in text, text
    rng = np.random.default_rng(0)
    x = rng.standard_normal((45, 19)).astype("float32")
    y = rng.standard_normal((19, 30)).astype("float32")
    kernel = tex.build(s, [a, b, c], target="cuda")
    np.testing.assert_allclose(kernel.simulate(x, y), x @ y, rtol=1e-4, atol=1e-5)
