"""`Stage.pipeline`: shared tiles fetched stages-1 iterations ahead with cp.async, checked in
the printed loop program, against NumPy in the CUDA simulator (whose cp.async lands a copy
only when its group is waited for), and in the SASS NVRTC makes for sm_90."""
import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from checks import check_staged_row_sums_over_symbolic_steps, needs_cuobjdump, sass
from tex.runtime import cuda_simulator

needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")


def lowered(schedule, args) -> str:
    return str(tex.lower(schedule, args, target="cuda"))


def pipelined_matmul(k=70, stages=3, which=("A_shared", "B_shared")):
    """The shared-memory float32 matmul of bench.gpu_schedules (100 x 90, steps of 16 along
    k), its staged inputs pipelined, filled one element per copy (4-byte cp.async: rows
    of 70 leave 16-byte copies unaligned)."""
    case = cases.matmul(n=100, m=90, k=k, vector=1)
    for stage in case.schedule.stages:
        if stage.name in which:
            stage.pipeline(stages)
    return case


def padded_row_sums(width=72, k=70, lanes=4, dtype="float32", stages=3):
    """out[i] = 2 * sum of a[i, :k] for a of (40, width), through a shared tile of rows of
    16 padded with zeros past k, fetched `lanes` elements at a time."""
    n, padded_k = 40, 16 * -(-k // 16)
    a = tex.placeholder((n, width), dtype, name="a")
    padded = tex.compute((n, padded_k), lambda i, r: tex.if_then_else(
        r < k, a[i, r], tex.const(0, dtype)), name="a_padded")
    r = tex.reduce_axis((0, padded_k), name="r")
    out = tex.compute((n,), lambda i: tex.sum(padded[i, r].astype("float32") * 2.0, axis=r),
                      name="out")
    s = tex.create_schedule(out.op)
    cached = s.cache_read(padded, "shared", [out])
    s[padded].compute_inline()
    bo, bi = s[out].split(out.op.axis[0], factor=16)
    ro, _ = s[out].split(r, factor=16)
    s[out].bind(bo, tex.thread_axis("blockIdx.x"))
    s[out].bind(bi, tex.thread_axis("threadIdx.x"))
    s[cached].compute_at(s[out], ro)
    row, col = s[cached].op.axis
    _, vector = s[cached].split(col, factor=lanes)
    s[cached].bind(row, tex.thread_axis("threadIdx.x"))
    s[cached].vectorize(vector)
    s[cached].pipeline(stages)
    return s, [a, out]


def test_pipeline_fetches_stages_minus_one_tiles_ahead_with_one_barrier_per_step():
    case = pipelined_matmul()
    text = lowered(case.schedule, case.args)
    assert "pipeline(stages=3)" in str(case.schedule)
    assert "A_shared_stages = allocate(float32[3072], 'shared')" in text  # 3 slots of 32x32
    prologue, loop = text.split("for r_outer in range(5):")
    assert prologue.count("tex_cp_async_commit()") == 2
    assert "tex_cp_async_4(&A_shared_stages[" in prologue
    step = loop[:loop.index("tex_cp_async_wait_group_0()")]
    assert step.count("sync_threads()") == 1
    wait, fill, compute = (step.index("tex_cp_async_wait_group_1()"),
                           step.index("if r_outer < 3:"), step.index("C_local[0] = C_local[0]"))
    assert wait < step.index("sync_threads()") < fill < compute
    assert "B_shared_stages[(r_outer + 2) % 3 * 1024" in step       # tile r_outer + 2
    assert "A_shared_stages[r_outer % 3 * 1024" in step[compute:]   # reads tile r_outer


@needs_compiler
@pytest.mark.parametrize("k, stages, which", [(70, 3, ("A_shared", "B_shared")),  # 5 steps
                                              (64, 2, ("A_shared", "B_shared")),
                                              (64, 4, ("A_shared", "B_shared")),
                                              (16, 3, ("A_shared", "B_shared")),  # 1 step
                                              (5, 4, ("A_shared", "B_shared")),
                                              (70, 3, ("A_shared",))])
def test_pipelined_matmul_matches_numpy(k, stages, which):
    case = pipelined_matmul(k, stages, which)
    kernel = case.build()
    inputs = case.inputs()
    for seed in (0, 1):
        np.testing.assert_allclose(kernel.simulate(*inputs, seed=seed), case.reference(*inputs),
                                   rtol=1e-4, atol=1e-4)


@needs_compiler
def test_pipeline_with_a_symbolic_number_of_steps():
    check_staged_row_sums_over_symbolic_steps(lambda stage: stage.pipeline(3), (0, 1, 2, 3, 4))


@needs_compiler
@pytest.mark.parametrize("dtype, lanes, copy", [("float32", 4, "tex_cp_async_zfill_16"),
                                                ("float32", 2, "tex_cp_async_zfill_8"),
                                                ("float16", 8, "tex_cp_async_zfill_16")])
def test_padded_vector_copies_read_only_the_valid_bytes_and_zero_the_rest(dtype, lanes, copy):
    s, args = padded_row_sums(lanes=lanes, dtype=dtype)  # k = 70: a vector half padding
    kernel = tex.build(s, args, target="cuda")
    source = kernel.get_source("cuda")
    assert f"{copy}(&a_padded_shared_stages[" in source
    assert "cp.async.cg.shared.global" in source if lanes * 4 == 16 or dtype == "float16" \
        else "cp.async.ca.shared.global" in source
    data = np.random.default_rng(1).standard_normal((40, 72)).astype(dtype)
    want = 2 * data[:, :70].astype("float64").sum(axis=1)
    for seed in (0, 1):
        np.testing.assert_allclose(kernel.simulate(data, seed=seed), want, rtol=2e-3, atol=2e-3)


@needs_compiler
def test_unaligned_rows_fall_back_to_ordinary_stores():
    s, args = padded_row_sums(width=70, lanes=4)  # rows of 280 bytes: not 16-byte aligned
    kernel = tex.build(s, args, target="cuda")
    assert "tex_cp_async_zfill" not in kernel.get_source("cuda")
    data = np.random.default_rng(2).standard_normal((40, 70)).astype("float32")
    np.testing.assert_allclose(kernel.simulate(data, seed=1), 2 * data.sum(axis=1),
                               rtol=1e-5, atol=1e-5)


def test_pipeline_errors():
    case = pipelined_matmul()
    stage = next(st for st in case.schedule.stages if st.name == "A_shared")
    for bad in (1, 0, 2.0, True):
        with pytest.raises(tex.ScheduleError, match="pipeline on stage A_shared: stages must "
                                                    "be an int of at least 2"):
            stage.pipeline(bad)
    stage.pipeline(2)
    with pytest.raises(tex.LoweringError, match=r"different numbers of stages: B_shared \(3\), "
                                                r"A_shared \(2\)|A_shared \(2\), B_shared \(3\)"):
        lowered(case.schedule, case.args)
    stage.double_buffer()  # replaces the pipeline of A_shared
    assert stage.pipeline_stages == 0
    with pytest.raises(tex.LoweringError, match="double_buffer.*pipeline.*use one of the two"):
        lowered(case.schedule, case.args)
    a = tex.placeholder((64, 64), name="a")
    b = tex.compute((64, 64), lambda i, j: a[i, j] + 1.0, name="b")
    s = tex.create_schedule(b.op)
    s[b].pipeline(3)
    with pytest.raises(tex.LoweringError, match="pipeline on stage b: it is computed at the root"):
        lowered(s, [a, b])
    a = tex.placeholder((64, 64), name="a")
    r = tex.reduce_axis((0, 64), name="r")
    out = tex.compute((64,), lambda i: tex.sum(a[i, r], axis=r), name="out")
    s = tex.create_schedule(out.op)
    cached = s.cache_read(a, "shared", [out])
    s[cached].compute_at(s[out], s[out].split(r, factor=8)[0])
    s[cached].pipeline(3)
    with pytest.raises(tex.LoweringError, match="pipeline on stage a_shared: stage out runs "
                                                "outside any GPU kernel"):
        tex.lower(s, [a, out])
    case = pipelined_matmul()
    for stage in case.schedule.stages:
        if stage.name.endswith("_shared"):
            stage.set_scope("local")
    with pytest.raises(tex.LoweringError, match="into local memory; pipelining is for shared"):
        lowered(case.schedule, case.args)
    case = pipelined_matmul()
    attach = next(st for st in case.schedule.stages if st.name == "A_shared").attach
    attach.stage.unroll(attach.axis)
    with pytest.raises(tex.LoweringError, match="loop r_outer of stage C_local, which is "
                                                "unrolled; pipeline at a serial loop"):
        lowered(case.schedule, case.args)


# --- SASS: what the device runs ------------------------------------------------------------
@needs_cuobjdump
def test_sm90_sass_copies_global_to_shared_asynchronously():
    case = pipelined_matmul()
    code = sass(case.build().get_source("cuda"))
    assert "LDGSTS" in code and "LDGDEPBAR" in code and "DEPBAR" in code
    s, args = padded_row_sums(lanes=4)
    code = sass(tex.build(s, args, target="cuda").get_source("cuda"))
    assert "LDGSTS.E.BYPASS.128.ZFILL" in code  # 16 bytes, .cg (bypassing L1), zero fill


@needs_cuobjdump
def test_devices_without_cp_async_copy_synchronously():
    case = pipelined_matmul()
    code = sass(case.build().get_source("cuda"), "sm_75")
    assert "LDGSTS" not in code and "STS" in code
