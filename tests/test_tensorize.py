"""Tensorize: toy intrinsics written as plain loops, built for the CPU and checked against
NumPy; the matching errors; the WMMA tensor-core intrinsic lowered (and compiled) for CUDA."""
import re

import numpy as np
import pytest

import tex
from tex.intrin import cuda_wmma
from tex.ir import IntrinsicCall, seq
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available
from tex.schedule.tensorize import loop_nest
from tex.visitor import collect

from checks import check, random_array

#: How a CUDA kernel runs in a test: on the GPU, or in the CPU simulator.
RUNS = [pytest.param("call", marks=pytest.mark.skipif(not gpu_available(),
                                                     reason="needs an NVIDIA GPU")),
        pytest.param("simulate", marks=pytest.mark.skipif(cuda_simulator.compiler() is None,
                                                          reason="needs g++"))]

T = 4  # the toy intrinsics' tile


def add_intrin(op="add", dtype="float32"):
    """c[i, j] = a[i, j] + b[i, j] on 4x4 tiles, lowered to plain loops."""
    a = tex.placeholder((T, T), dtype, name="a")
    b = tex.placeholder((T, T), dtype, name="b")
    fn = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y}[op]
    c = tex.compute((T, T), lambda i, j: fn(a[i, j], b[i, j]), name="c")

    def lower(inputs, outputs):
        va, vb = inputs
        (vc,) = outputs
        return loop_nest((T, T), lambda i, j: vc.store(fn(va.load(i, j), vb.load(i, j)), i, j))
    return tex.decl_tensor_intrin(c, lower, name=f"{op}4x4")


def mm_intrin(dtype="float32", with_body=False, with_reset=True, reducer=tex.sum):
    """c[i, j] = sum_k a[i, k] * b[k, j] on 4x4x4 tiles, lowered to plain loops."""
    a = tex.placeholder((T, T), dtype, name="a")
    b = tex.placeholder((T, T), dtype, name="b")
    k = tex.reduce_axis((0, T), name="k")
    c = tex.compute((T, T), lambda i, j: reducer(a[i, k] * b[k, j], axis=k), name="c")

    def lower(inputs, outputs):
        va, vb = inputs
        (vc,) = outputs
        reset = loop_nest((T, T), lambda i, j: vc.store(0.0, i, j))
        update = loop_nest((T, T, T), lambda i, j, r: vc.store(
            vc.load(i, j) + va.load(i, r) * vb.load(r, j), i, j))
        body = seq(loop_nest((T, T), lambda i, j: vc.store(-0.0, i, j)), update)
        return (body if with_body else None), (reset if with_reset else None), update
    return tex.decl_tensor_intrin(c, lower, name="mm4")


def matmul(M, N, K, dtype="float32", transposed_b=False):
    A = tex.placeholder((M, K), dtype, name="A")
    B = tex.placeholder((N, K) if transposed_b else (K, N), dtype, name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(
        A[i, k] * (B[j, k] if transposed_b else B[k, j]), axis=k), name="C")
    return A, B, C


def elementwise(M, N, fn=lambda x, y: x + y, dtype="float32"):
    A = tex.placeholder((M, N), dtype, name="A")
    B = tex.placeholder((M, N), dtype, name="B")
    C = tex.compute((M, N), lambda i, j: fn(A[i, j], B[i, j]), name="C")
    return A, B, C


def tiled_matmul(M, N, K, order="k_outside", **kwargs):
    """A 4x4x4-tiled matmul schedule, the tile tensorized with `mm_intrin`."""
    A, B, C = matmul(M, N, K, transposed_b=kwargs.pop("transposed_b", False))
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=T)
    if order == "k_outside":     # the tile is (ii, ji, ki) inside ko
        s[C].reorder(io, jo, ko, ii, ji, ki)
        s[C].tensorize(ii, mm_intrin(**kwargs))
    else:                        # the tile starts at the reduction loop ki
        s[C].reorder(io, jo, ko, ki, ii, ji)
        s[C].tensorize(ki, mm_intrin(**kwargs))
    return s, [A, B, C]


def lowered(s, args, target=None) -> str:
    return str(tex.lower(s, args, target=target))


# --- CPU: toy intrinsics against NumPy ---------------------------------------------------

def test_elementwise_tile_matches_numpy():
    A, B, C = elementwise(8, 12)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ii, add_intrin())
    assert "tensorize(i_inner, add4x4)" in str(s)
    assert "i_inner" not in lowered(s, [A, B, C])  # the tile's loops are the intrinsic's
    a, b = random_array((8, 12)), random_array((8, 12))
    check(s, [A, B, C], [a, b], a + b)


@pytest.mark.parametrize("order", ["k_outside", "k_tile"])
def test_matmul_tile_resets_then_accumulates(order):
    M, N, K = 8, 12, 16
    s, args = tiled_matmul(M, N, K, order)
    text = lowered(s, args)
    assert text.index("= 0.0") < text.index("for k_outer")  # reset where the init nest was
    a, b = random_array((M, K)), random_array((K, N))
    check(s, args, [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_whole_reduction_inside_the_tile_uses_the_body():
    A, B, C = matmul(8, 8, T)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ii, mm_intrin(with_body=True))
    assert "= -0.0" in lowered(s, [A, B, C])  # the body's own init, not the reset's
    a, b = random_array((8, T)), random_array((T, 8))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_transposed_operand_gets_a_transposed_view():
    M, N, K = 8, 8, 8
    s, args = tiled_matmul(M, N, K, transposed_b=True)
    a, bt = random_array((M, K)), random_array((N, K))
    check(s, args, [a, bt], a @ bt.T, rtol=1e-4, atol=1e-4)


def test_tile_of_a_local_accumulator_computed_at_a_consumer_loop():
    M, N, K = 8, 12, 8
    A, B, C = matmul(M, N, K)
    s = tex.create_schedule(C.op)
    CL = s.cache_write(C, "local")
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[CL].compute_at(s[C], jo)
    ko, ki = s[CL].split(s[CL].op.reduce_axis[0], factor=T)
    i, j = s[CL].op.axis
    s[CL].reorder(ko, i, j, ki)
    s[CL].tensorize(i, mm_intrin())
    assert "C_local = allocate(float32[16], 'local')" in lowered(s, [A, B, C])
    a, b = random_array((M, K)), random_array((K, N))
    check(s, [A, B, C], [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_sizes_that_are_not_multiples_of_the_tile_are_refused():
    s, args = tiled_matmul(10, 12, 16)
    with pytest.raises(tex.LoweringError, match=r"stage C, axis i_inner: the tile can stray "
                       r"outside the domain .*i_inner"):
        tex.build(s, args)
    s, args = tiled_matmul(8, 12, 18)  # a reduction split that does not divide
    with pytest.raises(tex.LoweringError, match="stray outside the domain"):
        tex.lower(s, args)


# --- matching errors -----------------------------------------------------------------------

def test_wrong_extent_names_both_extents():
    A, B, C = elementwise(8, 12)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, 3)
    s[C].tensorize(ii, add_intrin())
    with pytest.raises(tex.LoweringError, match=r"stage C, axis i_inner: loop j_inner has "
                       r"extent 3 where intrinsic add4x4's axis j has 4"):
        tex.lower(s, [A, B, C])


def test_wrong_body_names_the_operations():
    A, B, C = elementwise(8, 8, fn=lambda x, y: x * y)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ii, add_intrin("add"))
    with pytest.raises(tex.LoweringError, match=r"stage C, axis i_inner: the body differs "
                       r"from intrinsic add4x4.s: operation mul vs add"):
        tex.lower(s, [A, B, C])


def test_wrong_dtype_names_both_dtypes():
    A, B, C = elementwise(8, 8, dtype="float64")
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ii, add_intrin())
    with pytest.raises(tex.LoweringError, match="dtype float64 vs float32"):
        tex.lower(s, [A, B, C])


def test_wrong_reducer_is_named():
    s, args = tiled_matmul(8, 8, 8, reducer=tex.max)
    with pytest.raises(tex.LoweringError, match="reducer sum vs max"):
        tex.lower(s, args)


def test_tile_with_too_few_loops():
    A, B, C = elementwise(8, 12)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ji, add_intrin())
    with pytest.raises(tex.LoweringError, match=r"axis j_inner: the tile has 1 data loop\(s\) "
                       r"\(j_inner\) where intrinsic add4x4 has 2 \(i\(4\), j\(4\)\)"):
        tex.lower(s, [A, B, C])


def test_tile_loops_in_another_order_than_the_intrinsic_axes():
    A, B, C = matmul(8, 8, 8)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=T)
    s[C].reorder(io, jo, ko, ji, ii, ki)
    s[C].tensorize(ji, mm_intrin())
    with pytest.raises(tex.LoweringError, match=r"A\[i, k\] varies along loop i_inner"):
        tex.lower(s, [A, B, C])


def test_annotated_or_hosting_loop_inside_the_tile():
    A, B, C = elementwise(8, 8)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].vectorize(ji)
    s[C].tensorize(ii, add_intrin())
    with pytest.raises(tex.LoweringError, match="loop j_inner inside the tile is marked "
                       "vectorize"):
        tex.lower(s, [A, B, C])


def test_reduction_outside_the_tile_needs_a_reset():
    s, args = tiled_matmul(8, 8, 8, with_reset=False)
    with pytest.raises(tex.LoweringError, match="intrinsic mm4 gives no reset statement"):
        tex.lower(s, args)


def test_splitting_the_axis_forgets_the_decision_and_fusing_it_away_is_an_error():
    A, B, C = elementwise(8, 8)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, T, T)
    s[C].tensorize(ii, add_intrin())
    s[C].split(ii, factor=2)
    assert s[C].tensorized is None and "tensorize" not in str(s)
    s2 = tex.create_schedule(C.op)
    io, jo, ii, ji = s2[C].tile(*C.op.axis, T, T)
    s2[C].tensorize(ji, add_intrin())
    s2[C].fuse(ii, ji)
    with pytest.raises(tex.LoweringError, match="j_inner is no longer a loop"):
        tex.lower(s2, [A, B, C])


def test_tensorize_and_declaration_argument_errors():
    A, B, C = elementwise(8, 8)
    s = tex.create_schedule(C.op)
    with pytest.raises(tex.ScheduleError, match="expected an intrinsic from "
                       "tex.decl_tensor_intrin"):
        s[C].tensorize(C.op.axis[0], "wmma")
    a = tex.placeholder((8,), name="a")
    k = tex.reduce_axis((1, 5), name="k")
    with pytest.raises(tex.ScheduleError, match=r"axis k must run over \[0, extent\), got "
                       "min 1, extent 4"):
        tex.decl_tensor_intrin(tex.compute((4,), lambda i: tex.sum(a[i + k], axis=k)),
                               lambda i, o: None)
    b = tex.compute((8,), lambda i: a[i] * 2.0, name="b")
    with pytest.raises(tex.ScheduleError, match="it reads b, which is not a placeholder"):
        tex.decl_tensor_intrin(tex.compute((4,), lambda i: b[i]), lambda i, o: None)


# --- CUDA: the WMMA tensor-core intrinsic ------------------------------------------------

def wmma_calls(func) -> list:
    return collect(func.body, lambda n: isinstance(n, IntrinsicCall))


def test_wmma_matmul_lowers_for_cuda_with_one_warp_per_tile():
    s, args = cuda_wmma.matmul_schedule(64, 64, 64, warps=(2, 2))
    text = lowered(s, args, target="cuda")
    assert "launch main_kernel0(grid=(2, 2, 1), block=(32, 2, 2)):" in text
    assert "for warp_lane in threadIdx.x(32):" in text
    # the C tile stays in registers across the reduction: filled, updated, stored once
    fill = text.index("tex_wmma_fragment_fill_f32(&C_fragment[0], 0.0)")
    loop = text.index("for k_outer in range(4):")
    mma = re.search(r"tex_wmma_fragment_mma_16x16x16_f16_f32_rr\(&A_shared\[i_outer_inner \* "
                    r"256\], &B_shared\[j_outer_inner \* 16\], &C_fragment\[0\], 16, 32\)", text)
    store = re.search(r"tex_wmma_fragment_store_r_f32\(&C\[.*\], &C_fragment\[0\], 64\)", text)
    assert "C_fragment = allocate(float32[8], 'local')" in text[:fill]
    assert mma and store and fill < loop < mma.start() < store.start(), text
    assert "&C[" not in text[loop:store.start()]  # no memory traffic of C in the loop
    body = text[loop:]
    # the panels are written, then a barrier, then the tensor cores read them
    assert body.index("A_shared[") < body.rindex("sync_threads()") < body.index("tex_wmma_fragm")


def test_wmma_without_staging_reads_global_memory_and_a_short_reduction_uses_the_body():
    s, args = cuda_wmma.matmul_schedule(32, 16, 16, warps=(1, 1), stage_inputs=False)
    A, B, C = args
    text = lowered(s, args, target="cuda")
    assert "tex_wmma_fragment_mma_16x16x16_f16_f32_rr(&A[" in text
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 16, 16)
    s[C].bind(io, tex.thread_axis("blockIdx.x"))
    s[C].tensorize(ii, cuda_wmma.wmma_intrin())
    assert "tex_wmma_zero_mma_16x16x16_f16_f32_rrr" in lowered(s, args, target="cuda")


def test_wmma_column_major_operand():
    A = tex.placeholder((32, 32), "float16", name="A")
    Bt = tex.placeholder((32, 32), "float16", name="Bt")
    k = tex.reduce_axis((0, 32), name="k")
    C = tex.compute((32, 32), lambda i, j: tex.sum(
        A[i, k].astype("float32") * Bt[j, k].astype("float32"), axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 16, 16)
    ko, ki = s[C].split(k, factor=16)
    s[C].reorder(io, jo, ko, ii, ji, ki)
    s[C].bind(io, tex.thread_axis("blockIdx.x"))
    s[C].tensorize(ii, cuda_wmma.wmma_intrin())
    assert "tex_wmma_fragment_mma_16x16x16_f16_f32_rc(&A[" in lowered(s, [A, Bt, C],
                                                                    target="cuda")


def test_wmma_errors():
    with pytest.raises(tex.ScheduleError, match="M must be a positive multiple of 16"):
        cuda_wmma.matmul_schedule(40, 32, 32)
    A, B, C = matmul(32, 32, 16, dtype="float16")  # float16 products, not float32
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 16, 16)
    s[C].tensorize(ii, cuda_wmma.wmma_intrin())
    with pytest.raises(tex.LoweringError, match="dtype float16 vs float32"):
        tex.lower(s, [A, B, C], target="cuda")
    s, args = cuda_wmma.matmul_schedule(32, 32, 32, stage_inputs=False)
    stage = s[args[2]]
    stage.bind(stage.leaf_iter_vars[3], tex.thread_axis("threadIdx.x"))  # instead of .y
    with pytest.raises(tex.LoweringError, match="no loop around the tile may be bound to "
                       "threadIdx.x"):
        tex.lower(s, args, target="cuda")


def wmma_cached_accumulator(scope, M=32, N=32, K=32, column_blocks=True, lanes=32,
                            in_memory=False):
    """A WMMA matmul accumulating each 16x16 tile of C in a `scope` cache_write stage,
    which the block's 32 threads then copy out to C. A block computes one tile, or
    without `column_blocks` one row of tiles, one after another. With `in_memory`, a
    (one-iteration) data loop between the reduction loop and the tile keeps the tile in
    the stage's buffer across the reduction, updated there; else it stays in registers."""
    A = tex.placeholder((M, K), "float16", name="A")
    B = tex.placeholder((K, N), "float16", name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(
        A[i, k].astype("float32") * B[k, j].astype("float32"), axis=k), name="C")
    s = tex.create_schedule(C.op)
    CS = s.cache_write(C, scope)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 16, 16)
    s[C].bind(io, tex.thread_axis("blockIdx.y"))
    if column_blocks:
        s[C].bind(jo, tex.thread_axis("blockIdx.x"))
    _, lane = s[C].split(s[C].fuse(ii, ji), factor=lanes)
    s[C].bind(lane, tex.thread_axis("threadIdx.x"))
    s[CS].compute_at(s[C], jo)
    ko, ki = s[CS].split(s[CS].op.reduce_axis[0], factor=16)
    i, j = s[CS].op.axis
    if in_memory:
        rows, i = s[CS].split(i, factor=16)
        s[CS].reorder(ko, rows, i, j, ki)
    else:
        s[CS].reorder(ko, i, j, ki)
    s[CS].tensorize(i, cuda_wmma.wmma_intrin())
    return s, [A, B, C]


def test_wmma_shared_accumulator_in_registers_is_stored_once_then_copied():
    text = lowered(*wmma_cached_accumulator("shared", in_memory=False), target="cuda")
    loop, store = text.index("for k_outer"), text.index("tex_wmma_fragment_store_r_f32(&C_shar")
    copy = text.index("= C_shared[")
    assert "tex_wmma_fragment_mma_16x16x16_f16_f32_rr(" in text[loop:store]
    assert "&C_shared[" not in text[loop:store] and "sync_threads()" in text[store:copy]


def test_wmma_shared_accumulator_is_fenced_by_barriers():
    """The calls write C_shared: barriers separate the fill from the first update, each
    update from the next, and the last from the threads that copy the tile out."""
    text = lowered(*wmma_cached_accumulator("shared", in_memory=True), target="cuda")
    fill, loop = text.index("tex_wmma_fill_r_f32(&C_shared[0]"), text.index("for k_outer")
    mma = text.index("tex_wmma_mma_16x16x16_f16_f32_rrr(")
    copy = text.index("= C_shared[")
    assert "sync_threads()" in text[fill:loop]
    assert "sync_threads()" in text[loop:mma]  # every iteration: update k-1 wrote it
    assert "sync_threads()" in text[mma:copy]


def test_wmma_shared_accumulator_reused_for_the_next_tile_waits_for_the_copy():
    """The fill of the next tile writes C_shared, which threads were reading."""
    text = lowered(*wmma_cached_accumulator("shared", column_blocks=False, in_memory=True),
                   target="cuda")
    loop = text[text.index("for j_outer in range(2):"):]
    assert loop.index("sync_threads()") < loop.index("tex_wmma_fill_r_f32(&C_shared[0]")


def test_wmma_shared_accumulator_compiles_with_nvrtc():
    cuda = pytest.importorskip("tex.codegen.cuda")
    s, args = wmma_cached_accumulator("shared", in_memory=True)
    target = tex.Target("cuda -arch=sm_80")
    source = cuda.compile_cuda(tex.lower(s, args, target=target), target).source
    kernel = source[source.index("__global__"):]
    calls = [kernel.index("tex_wmma_fill_r_f32(&C_shared[0]"),
             kernel.index("tex_wmma_mma_16x16x16_f16_f32_rrr("), kernel.index("= C_shared[")]
    assert "__shared__ __align__(32) float C_shared[256];" in kernel
    for before, after in zip(calls, calls[1:]):
        assert "__syncthreads();" in kernel[before:after]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("in_memory", [False, True], ids=["in_registers", "in_memory"])
def test_wmma_shared_accumulator_matches_numpy(in_memory, run):
    M, N, K = 32, 48, 64
    kernel = tex.build(*wmma_cached_accumulator("shared", M, N, K, in_memory=in_memory),
                       target="cuda")
    a, b = random_array((M, K), "float16"), random_array((K, N), "float16")
    expected = a.astype(np.float32) @ b.astype(np.float32)
    result = kernel(a, b) if run == "call" else kernel.simulate(a, b, seed=1)
    np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-3)


def test_wmma_kernel_keeps_blocks_one_warp_wide():
    """Another stage binding 64 threads to threadIdx.x would make blockDim.x 64: warps
    would no longer be one (threadIdx.y, threadIdx.z) each."""
    text = lowered(*wmma_cached_accumulator("shared", lanes=16), target="cuda")  # fewer: fine
    assert "block=(32, 1, 1)" in text
    s, args = wmma_cached_accumulator("shared", lanes=64)
    with pytest.raises(tex.LoweringError, match=r"stage C_shared, axis i: intrinsic "
                       r"wmma_16x16x16_f16_f32 runs on threadIdx.x\(32\) itself, .* stage C "
                       r"binds loop i_inner_j_inner_fused_inner to threadIdx.x with extent 64"):
        tex.lower(s, args, target="cuda")


def test_wmma_accumulator_in_local_memory_is_refused():
    s, args = wmma_cached_accumulator("local")
    with pytest.raises(tex.LoweringError, match="stage C_local, axis i: intrinsic "
                       "wmma_16x16x16_f16_f32: the C tile is in C_local, a 'local' buffer"):
        tex.lower(s, args, target="cuda")


def test_wmma_device_functions_compile_with_nvrtc():
    nvrtc = pytest.importorskip("tex.codegen.nvrtc")
    s, args = cuda_wmma.matmul_schedule(32, 32, 32)
    calls = {c.name: c for c in wmma_calls(tex.lower(s, args, target="cuda"))}
    s, args = wmma_cached_accumulator("shared", in_memory=True)
    calls.update((c.name, c) for c in wmma_calls(tex.lower(s, args, target="cuda")))
    assert set(calls) == {"tex_wmma_fragment_fill_f32", "tex_wmma_fragment_store_r_f32",
                          "tex_wmma_fragment_mma_16x16x16_f16_f32_rr", "tex_wmma_fill_r_f32",
                          "tex_wmma_mma_16x16x16_f16_f32_rrr"}
    headers = dict.fromkeys(h for c in calls.values() for h in c.headers)
    source = "".join(f"#include <{h}>\n" for h in headers) + "\n".join(
        c.definition for c in calls.values()) + """
extern "C" __global__ void probe(const half* a, const half* b, float* c) {
  tex_wmma_fill_r_f32(c, 16, 0.0f);
  tex_wmma_mma_16x16x16_f16_f32_rrr(a, b, c, 16, 16, 16);
  float share[8];
  tex_wmma_fragment_fill_f32(share, 0.0f);
  tex_wmma_fragment_mma_16x16x16_f16_f32_rr(a, b, share, 16, 16);
  tex_wmma_fragment_store_r_f32(c, share, 16);
}
"""
    try:
        ptx = nvrtc.compile_source(source, "sm_80", "ptx")
    except tex.BuildError as e:
        if "cannot open source file" in str(e) or "install" in str(e):
            pytest.skip(f"CUDA headers for <mma.h> missing: {str(e).splitlines()[0]}")
        raise
    assert "wmma.mma.sync" in ptx


def test_wmma_matmul_compiles_for_sm80():
    cuda = pytest.importorskip("tex.codegen.cuda")
    if not hasattr(cuda, "compile_cuda"):
        pytest.skip("tex.codegen.cuda has no compile_cuda yet")
    s, args = cuda_wmma.matmul_schedule(64, 64, 64)
    target = tex.Target("cuda -arch=sm_80")
    module = cuda.compile_cuda(tex.lower(s, args, target=target), target)
    assert "wmma::mma_sync" in module.source and module.cubin


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("stage_inputs", [False, True])
def test_wmma_matmul_matches_numpy(stage_inputs, run):
    M, N, K = 64, 48, 80
    s, args = cuda_wmma.matmul_schedule(M, N, K, warps=(2, 1), stage_inputs=stage_inputs)
    kernel = tex.build(s, args, target="cuda")
    a, b = random_array((M, K), "float16"), random_array((K, N), "float16")
    expected = a.astype(np.float32) @ b.astype(np.float32)
    result = kernel(a, b) if run == "call" else kernel.simulate(a, b, seed=1)
    np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-3)
