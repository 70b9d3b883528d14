"""Tensor cores through mma.sync and ldmatrix (`tex.intrin.cuda_mma`).

The simulator's ldmatrix and mma.sync are checked lane by lane against the fragment layouts
of the PTX ISA (written out here from its tables, independently of the simulator's code);
matmuls through the intrinsic are checked against NumPy at sizes that divide no tile; the
SASS NVRTC makes for sm_90 is checked for tensor-core instructions, ldmatrix and cp.async."""
import re
import subprocess

import ml_dtypes
import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from tex.intrin import cuda_mma
from checks import needs_cuobjdump, sass
from tex.runtime import cuda_simulator

needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
LANES = np.arange(32)
G, T = LANES // 4, LANES % 4    # a lane's group and its thread in the group (PTX's names)


# --- the simulator's collectives against the PTX ISA's fragment layouts --------------------
_HARNESS = r"""
#include <cstdio>
static unsigned short g_tile[256];
static unsigned g_in[32][8];
static unsigned g_out[32][4];
static float g_acc[32][4];

static void ldmatrix_kernel(int trans) {
  const int lane = threadIdx.x;
  tex_sim::ldmatrix(g_out[lane], 4, &g_tile[lane * 8], trans != 0);
}

static void mma_kernel(int bf16) {
  const int lane = threadIdx.x;
  tex_sim::mma_m16n8k16(g_acc[lane], g_in[lane], g_in[lane] + 4, g_acc[lane], bf16 != 0);
}

int main() {
  long long dims[6] = {1, 1, 1, 32, 1, 1};
  for (int i = 0; i < 256; ++i) scanf("%hu", &g_tile[i]);
  for (int l = 0; l < 32; ++l)
    for (int r = 0; r < 8; ++r) scanf("%u", &g_in[l][r]);
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 4; ++e) scanf("%f", &g_acc[l][e]);
  for (int trans = 0; trans < 2; ++trans) {
    int flag = trans;
    void* args[] = {&flag};
    if (const char* error = tex_sim::launch(ldmatrix_kernel, args, dims, 7u)) {
      printf("error %s\n", error);
      return 1;
    }
    for (int l = 0; l < 32; ++l)
      for (int m = 0; m < 4; ++m) printf("%u\n", g_out[l][m]);
  }
  int bf16 = BF16;
  void* args[] = {&bf16};
  if (const char* error = tex_sim::launch(mma_kernel, args, dims, 3u)) {
    printf("error %s\n", error);
    return 1;
  }
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 4; ++e) printf("%.9g\n", g_acc[l][e]);
}
"""


def _run_harness(tmp_path, tile, registers, accumulators, bf16: bool) -> list[str]:
    source = tmp_path / "harness.cpp"
    source.write_text(_HARNESS.replace("BF16", "1" if bf16 else "0"))
    binary = tmp_path / "harness"
    header = cuda_simulator.INCLUDE_DIR / "tex_cuda_simulator.h"
    subprocess.run([cuda_simulator.compiler(), "-std=c++20", "-O1", "-w", "-I",
                    str(cuda_simulator.INCLUDE_DIR), "-include", str(header), str(source),
                    "-o", str(binary)], check=True)
    stdin = "\n".join(map(str, [*tile.ravel(), *registers.ravel(),
                                *(repr(float(x)) for x in accumulators.ravel())]))
    out = subprocess.run([str(binary)], input=stdin, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _pack(low, high) -> np.ndarray:
    """Registers of two 16-bit elements, the first in the low half."""
    return low.astype(np.uint32) | high.astype(np.uint32) << 16


def _bits(values, dtype) -> np.ndarray:
    return np.asarray(values, dtype).view(np.uint16)


@needs_compiler
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_simulated_ldmatrix_and_mma_follow_the_ptx_fragment_layouts(tmp_path, dtype):
    rng = np.random.default_rng(5)
    numpy_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    # ldmatrix .x4: lane l gives row l % 8 of matrix l // 8 (rows stored one after another)
    tile = rng.permutation(1 << 16)[:256].astype(np.uint16).reshape(4, 8, 8)
    # mma.m16n8k16: small integers, so that every sum is exact in float32
    A = rng.integers(-4, 5, (16, 16)).astype(numpy_dtype)
    B = rng.integers(-4, 5, (16, 8)).astype(numpy_dtype)
    C = rng.integers(-50, 51, (16, 8)).astype(np.float32)
    a, b = _bits(A, numpy_dtype), _bits(B, numpy_dtype)
    registers = np.stack([_pack(a[G, 2 * T], a[G, 2 * T + 1]),               # a0
                          _pack(a[G + 8, 2 * T], a[G + 8, 2 * T + 1]),       # a1
                          _pack(a[G, 2 * T + 8], a[G, 2 * T + 9]),           # a2
                          _pack(a[G + 8, 2 * T + 8], a[G + 8, 2 * T + 9]),   # a3
                          _pack(b[2 * T, G], b[2 * T + 1, G]),               # b0
                          _pack(b[2 * T + 8, G], b[2 * T + 9, G]),           # b1
                          np.zeros(32, np.uint32), np.zeros(32, np.uint32)], axis=1)
    accumulators = np.stack([C[G, 2 * T], C[G, 2 * T + 1], C[G + 8, 2 * T],
                             C[G + 8, 2 * T + 1]], axis=1)                   # c0..c3
    out = _run_harness(tmp_path, tile, registers, accumulators, dtype == "bfloat16")
    assert "error" not in out
    plain = np.array(out[:128], np.uint32).reshape(32, 4)
    trans = np.array(out[128:256], np.uint32).reshape(32, 4)
    for m in range(4):
        np.testing.assert_array_equal(plain[:, m], _pack(tile[m, G, 2 * T], tile[m, G, 2 * T + 1]))
        np.testing.assert_array_equal(trans[:, m], _pack(tile[m, 2 * T, G], tile[m, 2 * T + 1, G]))
    d = np.array(out[256:], np.float32).reshape(32, 4)
    D = np.empty((16, 8), np.float32)
    D[G, 2 * T], D[G, 2 * T + 1], D[G + 8, 2 * T], D[G + 8, 2 * T + 1] = d.T
    np.testing.assert_array_equal(D, A.astype(np.float32) @ B.astype(np.float32) + C)


# --- matmuls through the intrinsic -------------------------------------------------------------
def _inputs(M, N, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    numpy_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    return (rng.uniform(-1, 1, (M, K)).astype(numpy_dtype),
            rng.uniform(-1, 1, (K, N)).astype(numpy_dtype))


@needs_compiler
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M, N, K, block, warp, k_tile, stages", [
    (150, 140, 70, (128, 128), (64, 64), 16, 4),  # the default tiles, none divided
    (150, 140, 70, (32, 32), (16, 16), 16, 3),   # no size divides a tile
    (64, 96, 64, (32, 48), (16, 16), 32, 2),     # every size divides: no padding
    (40, 24, 200, (32, 32), (32, 16), 16, 4),    # one block column, 13 steps of K
])
def test_mma_matmul_matches_numpy(dtype, M, N, K, block, warp, k_tile, stages):
    s, args = cuda_mma.matmul_schedule(M, N, K, dtype, block=block, warp=warp, k_tile=k_tile,
                                       stages=stages)
    kernel = tex.build(s, args, target="cuda")
    source = kernel.get_source("cuda")
    assert f"tex_mma_update_{cuda_mma.DTYPES[dtype]}_f32_{warp[0]}x{warp[1]}(" in source
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in source
    a, b = _inputs(M, N, K, dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for seed in (0, 1):
        np.testing.assert_allclose(kernel.simulate(a, b, seed=seed), want, rtol=1e-5,
                                   atol=1e-5)


@needs_compiler
def test_mma_tile_updated_in_memory_when_a_data_loop_lies_inside_the_reduction():
    """The C tile cannot stay in registers across k when a data loop (jo) is inside it:
    reset and update then read and write the tile in global memory."""
    M, N, K = 32, 32, 48
    A = tex.placeholder((M, K), "float16", name="A")
    B = tex.placeholder((K, N), "float16", name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k].astype("float32")
                                                 * B[k, j].astype("float32"), axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=16)
    jo, ji = s[C].split(C.op.axis[1], factor=16)
    ko, ki = s[C].split(k, factor=16)
    s[C].reorder(io, ko, jo, ii, ji, ki)
    s[C].bind(io, tex.thread_axis("blockIdx.x"))
    s[C].tensorize(ii, cuda_mma.mma_intrin(16, 16))
    for tensor in (A, B):
        shared = s.cache_read(tensor, "shared", [C])
        s[shared].compute_at(s[C], io)
        rows, cols = s[shared].op.axis
        s[shared].storage_align(rows, 16, 8)
        _, lane = s[shared].split(s[shared].fuse(rows, cols), factor=32)
        s[shared].bind(lane, tex.thread_axis("threadIdx.x"))
    kernel = tex.build(s, [A, B, C], target="cuda")
    source = kernel.get_source("cuda")
    assert "tex_mma_zero_tile_f16_f32_16x16(" in source
    assert "tex_mma_update_tile_f16_f32_16x16(" in source
    a, b = _inputs(M, N, K, "float16", seed=3)
    np.testing.assert_allclose(kernel.simulate(a, b, seed=1),
                               a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_mma_errors():
    with pytest.raises(tex.ScheduleError, match="mma_intrin: warp_m must be a positive "
                                                "multiple of 16, got 24"):
        cuda_mma.mma_intrin(24, 16)
    with pytest.raises(tex.ScheduleError, match="mma_intrin: dtype must be one of float16, "
                                                "bfloat16, got 'float32'"):
        cuda_mma.mma_intrin(16, 16, "float32")
    with pytest.raises(tex.ScheduleError, match="k_tile must be a multiple of 16, got 24"):
        cuda_mma.matmul_schedule(64, 64, 64, k_tile=24)
    with pytest.raises(tex.ScheduleError, match=r"the block's columns \(96\) must be a "
                                                r"multiple of the warp's \(64\)"):
        cuda_mma.matmul_schedule(64, 64, 64, block=(128, 96))
    # A read straight from global memory: ldmatrix needs it in shared memory
    A = tex.placeholder((32, 16), "float16", name="A")
    B = tex.placeholder((16, 16), "float16", name="B")
    k = tex.reduce_axis((0, 16), name="k")
    C = tex.compute((32, 16), lambda i, j: tex.sum(A[i, k].astype("float32")
                                                   * B[k, j].astype("float32"), axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=16)
    s[C].bind(io, tex.thread_axis("blockIdx.x"))
    s[C].tensorize(ii, cuda_mma.mma_intrin(16, 16))
    with pytest.raises(tex.LoweringError, match="the A tile in A is in 'global' memory; it "
                                                "must be in 'shared' memory"):
        tex.lower(s, [A, B, C], target="cuda")
    shared = s.cache_read(A, "shared", [C])
    s[shared].compute_at(s[C], io)
    shared = s.cache_read(B, "shared", [C])
    s[shared].compute_at(s[C], io)
    s[shared].storage_align(s[shared].op.axis[0], 32, 20)  # rows of 40 bytes
    with pytest.raises(tex.LoweringError, match="the B tile in B_shared has leading dimension "
                                                "20; it must be a multiple of 8 elements"):
        tex.lower(s, [A, B, C], target="cuda")


# --- what the device runs ------------------------------------------------------------------
@needs_cuobjdump
@pytest.mark.parametrize("dtype, hmma", [("float16", "HMMA.16816.F32"),
                                         ("bfloat16", "HMMA.16816.F32.BF16")])
def test_sm90_sass_has_tensor_core_mma_ldmatrix_and_async_copies(dtype, hmma):
    """The default 128 x 128 x 16 tiles (warps of 64 x 64): per step of k (the loop is not
    unrolled), one barrier, 32 HMMA, 4 LDSM and 4 LDSM.T per warp, and 4 16-byte LDGSTS
    per thread; no spills."""
    s, args = cuda_mma.matmul_schedule(1024, 1024, 1024, dtype)
    code = sass(tex.build(s, args, target="cuda -arch=sm_90").get_source("cuda"))
    counts = {name: len(re.findall(rf"\b{re.escape(name)}\b", code)) for name in
              (hmma, "LDSM.16.M88.4", "LDSM.16.MT88.4", "LDGSTS.E.BYPASS.128", "BAR.SYNC")}
    assert counts[hmma] == 32
    assert counts["LDSM.16.M88.4"] == 4 and counts["LDSM.16.MT88.4"] == 4
    assert counts["LDGSTS.E.BYPASS.128"] == 4 * 4   # 3 tiles before the loop, 1 in it
    assert counts["BAR.SYNC"] == 2                  # one per step, one after the loop
    assert not re.search(r"\b(STL|LDL)\b", code)    # no register spills


@pytest.mark.parametrize("tiles", [{}, {"block": (128, 256), "stages": 3},
                                   {"k_tile": 32, "stages": 2}])
def test_ldmatrix_rows_fall_in_eight_different_bank_columns(tiles):
    """The 8 rows of each 8x8 matrix an ldmatrix reads (16 bytes each, a whole row of the
    padded shared tile apart) lie in the 8 different 16-byte columns of the 32 banks."""
    s, args = cuda_mma.matmul_schedule(1024, 1024, 1024, **tiles)
    source = tex.build(s, args, target="cuda").get_source("cuda")
    call = re.search(r"tex_mma_update_f16_f32_64x64\(.*, (\d+), (\d+)\);", source)
    for leading in map(int, call.groups()):
        columns = {row * leading * 2 // 16 % 8 for row in range(8)}
        assert len(columns) == 8, leading


def test_bench_case_is_the_mma_matmul():
    case = cases.matmul_mma(256, 256, 256, "float16")
    assert case.name == "matmul_f16_mma"
    assert "tensorize" in "\n".join(line for st in case.schedule.stages
                                    for line in st.describe())
