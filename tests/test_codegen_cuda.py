"""CUDA codegen: hand-built GPU programs, emitted as CUDA C and compiled by NVRTC.

The programs are what GPU lowering produces (a KernelLaunch per kernel, loops
bound to thread axes, one flattened index per access, explicit vectors), built
directly from tex.ir nodes. Every test compiles to a cubin, so it needs NVRTC
but no GPU; it checks the constructs the source must contain. The integer
floor-division helpers are also compiled by the host C compiler and compared
with Python's `//` and `%`.
"""
import itertools
import re
import shutil
import subprocess

import pytest

import tex.ir

from tex.codegen import cuda_expr, nvrtc
from tex.codegen.cuda import CudaModule, compile_cuda
from tex.dtype import (INDEX, bool_, float16, float32, float64, int8, int16, int32, int64,
                       uint8, uint16, uint32, uint64)
from tex.errors import ArgumentError, BuildError
from tex.expr import (INTEGER_INTRINSICS, INTRINSICS, PREDICATES, Binary, Call, Cast, Compare,
                      Const, Let, Logical, Not, Select, Var)
from tex.ir import (Allocate, AtomicUpdate, Barrier, Broadcast, Buffer, For, IfThenElse,
                    KernelLaunch, LetStmt, Load, LoweredFunc, Ramp, Store, ThreadIndex,
                    VectorReduce, WarpShuffle, seq)
from tex.target import Target

TARGET = Target("cuda -arch=sm_80")


# --- building programs ---------------------------------------------------------------------
def i64(value):
    return Const(INDEX, value)


def as_expr(value):
    return i64(value) if isinstance(value, int) else value


def loop(var, extent, body, kind="serial", tag=None, start=0):
    return For(var, as_expr(start), as_expr(extent), kind, body, thread_tag=tag)


def bound(var, tag, extent, body):
    return loop(var, extent, body, "bound", tag)


def launch(body, params, size_vars=(), grid=(1, 1, 1), block=(1, 1, 1), name="f_kernel0"):
    return KernelLaunch(name, tuple(map(as_expr, grid)), tuple(map(as_expr, block)),
                        tuple(params), tuple(size_vars), body)


def program(*launches, params, size_vars=(), temporaries=()):
    body = seq(*launches)
    for t in reversed(temporaries):
        body = Allocate(t, body)
    return LoweredFunc("f", tuple(params), tuple(size_vars), body)


def build(body, params, size_vars=(), grid=(1, 1, 1), block=(1, 1, 1)) -> CudaModule:
    """Compile one kernel whose params are the whole program's."""
    return compile_cuda(program(launch(body, params, size_vars, grid, block),
                                params=params, size_vars=size_vars), TARGET)


def kernel_body(module: CudaModule) -> str:
    return module.source[module.source.index('extern "C"'):]


def elementwise(fn, dtype=float32, threads=256):
    """`B[i] = fn(A[i])` over n elements, i = blockIdx.x * threads + threadIdx.x, guarded."""
    n, bx, tx = Var("n"), Var("i.outer"), Var("i.inner")
    A, B = Buffer("A", dtype, (n,)), Buffer("B", dtype, (n,))
    i = bx * threads + tx
    blocks = (n + threads - 1) // threads
    body = bound(bx, "blockIdx.x", blocks, bound(tx, "threadIdx.x", threads, IfThenElse(
        Compare("lt", i, n), Store(B, fn(Load(A, (i,))), (i,)))))
    return build(body, (A, B), (n,), grid=(blocks, 1, 1), block=(threads, 1, 1))


# --- kernels, launches, thread loops --------------------------------------------------------
def test_elementwise_kernel_signature_launch_and_cubin():
    module = elementwise(lambda a: Call("exp", (a,)) * 2.0)
    src = module.source
    assert '__global__ void __launch_bounds__(256) f_kernel0(' in src
    assert "const float* __restrict__ A" in src and "\n    float* __restrict__ B" in src
    assert "long long n)" in src
    assert "const long long i_outer = (long long)blockIdx.x;" in src
    assert "const long long i_inner = (long long)threadIdx.x;" in src
    assert "if (i_outer * 256 + i_inner < n) {" in src
    assert "B[i_outer * 256 + i_inner] = expf(A[i_outer * 256 + i_inner]) * 2.0f;" in src
    assert "if (i_inner <" not in src and "if (i_outer <" not in src  # loops fill the launch
    assert isinstance(module.cubin, bytes) and len(module.cubin) > 100
    (entry,) = module.launches
    assert entry.name == "f_kernel0" and [b.name for b in entry.params] == ["A", "B"]
    assert [v.name for v in entry.size_vars] == ["n"] and entry.alignments == (4, 4)
    assert module.temporaries == () and module.target == TARGET


def test_thread_loop_shorter_than_the_launch_is_guarded():
    A = Buffer("A", float32, (i64(100),))
    tx = Var("tx")
    module = build(bound(tx, "threadIdx.x", 100, Store(A, Const(float32, 1.0), (tx,))), (A,),
                   block=(128, 1, 1))
    assert "const int tx = (int)threadIdx.x;\n  if (tx < 100) {" in module.source
    assert "__launch_bounds__(128)" in module.source


def test_symbolic_block_has_no_launch_bounds():
    n, tx = Var("n"), Var("tx")
    A = Buffer("A", float32, (n,))
    module = build(bound(tx, "threadIdx.x", n, Store(A, Const(float32, 0.0), (tx,))), (A,),
                   (n,), block=(n, 1, 1))
    assert "__launch_bounds__" not in module.source and "if (tx <" not in module.source


def test_ptx_on_demand_and_source_formats():
    module = elementwise(lambda a: a + 1.0)
    assert module.get_source("cuda") == module.source
    ptx = module.get_source("ptx")
    assert ".entry f_kernel0(" in ptx and ".target sm_80" in ptx
    with pytest.raises(ArgumentError, match="'cuda' and 'ptx'.*'asm'"):
        module.get_source("asm")


def test_building_twice_compiles_once():
    first = elementwise(lambda a: a * 3.0)
    second = elementwise(lambda a: a * 3.0)
    assert second.source == first.source and second.cubin is first.cubin


def test_launches_in_order_with_temporaries_and_unique_names():
    n, tx = Var("n"), Var("tx")
    A, B = Buffer("A", float32, (n,)), Buffer("B", float32, (n,))
    T = Buffer("T", float32, (n,))
    first = launch(bound(tx, "threadIdx.x", n, Store(T, Load(A, (tx,)) * 2.0, (tx,))),
                   (A, T), (n,), block=(n, 1, 1), name="f.stage")
    tx2 = Var("tx")
    second = launch(bound(tx2, "threadIdx.x", n, Store(B, Load(T, (tx2,)) + 1.0, (tx2,))),
                    (T, B), (n,), block=(n, 1, 1), name="f.stage")
    module = compile_cuda(program(first, second, params=(A, B), size_vars=(n,),
                                  temporaries=(T,)), TARGET)
    assert [l.name for l in module.launches] == ["f_stage", "f_stage_1"]
    assert module.temporaries == (T,)
    assert "void f_stage(const float* __restrict__ A, float* __restrict__ T, long long n)" \
        in module.source
    assert "void f_stage_1(\n    const float* __restrict__ T,\n    float* __restrict__ B," \
        in module.source


def test_names_are_unique_and_c_valid():
    A = Buffer("float", float32, (i64(8),))
    i, j = Var("i"), Var("i")
    body = loop(i, 2, loop(j, 4, Store(A, Const(float32, 0.0), (i * 4 + j,))))
    src = build(body, (A,)).source
    assert "float* __restrict__ float_1" in src
    assert "for (int i = 0; i < 2; ++i) {" in src
    assert "for (int i_1 = 0; i_1 < 4; ++i_1) {" in src
    assert "float_1[i * 4 + i_1] = 0.0f;" in src


def test_unrolled_and_vthread_loops_are_pragma_unroll_loops():
    A = Buffer("A", float32, (i64(8),))
    v, u = Var("vt"), Var("u")
    body = loop(v, 2, loop(u, 4, Store(A, Const(float32, 1.0), (v * 4 + u,)), "unrolled"),
                "bound", "vthread")
    src = build(body, (A,)).source
    assert src.count("#pragma unroll") == 2
    assert "for (int vt = 0; vt < 2; ++vt) {" in src
    assert "for (int u = 0; u < 4; ++u) {" in src


# --- shared and local memory, shuffles, atomics ---------------------------------------------
def test_shared_memory_with_barrier():
    A, B = Buffer("A", float32, (i64(256),)), Buffer("B", float32, (i64(256),))
    S = Buffer("A_shared", float32, (i64(256),), scope="shared")
    tx = Var("tx")
    body = bound(tx, "threadIdx.x", 256, Allocate(S, seq(
        Store(S, Load(A, (tx,)), (tx,)),
        Barrier(),
        Store(B, Load(S, (tx,)) + Load(S, (255 - tx,)), (tx,)))))
    src = build(body, (A, B), block=(256, 1, 1)).source
    assert "__shared__ __align__(16) float A_shared[256];" in src
    assert "A_shared[tx] = A[tx];\n  __syncthreads();\n" in src
    assert "B[tx] = A_shared[tx] + A_shared[255 - tx];" in src


def test_warp_shuffle_reduction_in_a_local_array():
    A, B = Buffer("A", float32, (i64(32),)), Buffer("B", float32, (i64(1),))
    red = Buffer("red", float32, (i64(1),), scope="local")
    lane = Var("lane")
    steps = [Store(red, Load(red, (i64(0),)) + WarpShuffle("xor", Load(red, (i64(0),)),
                                                          offset, 32, 0xFFFFFFFF), (i64(0),))
             for offset in (16, 8, 4, 2, 1)]
    body = bound(lane, "threadIdx.x", 32, Allocate(red, seq(
        Store(red, Load(A, (lane,)), (i64(0),)), *steps,
        IfThenElse(Compare("eq", lane, i64(0)), Store(B, Load(red, (i64(0),)), (i64(0),))))))
    src = build(body, (A, B), block=(32, 1, 1)).source
    assert "float red[1];" in src
    assert "red[0] = red[0] + __shfl_xor_sync(0xffffffffu, red[0], 16, 32);" in src
    assert "__shfl_xor_sync(0xffffffffu, red[0], 1, 32)" in src


def test_shuffle_down_of_an_int64_and_a_bool():
    A = Buffer("A", int64, (i64(32),))
    F = Buffer("F", bool_, (i64(32),))
    lane = Var("lane")
    body = bound(lane, "threadIdx.x", 32, seq(
        Store(A, WarpShuffle("down", Load(A, (lane,)), 1, 32, 0xFFFFFFFF), (lane,)),
        Store(F, WarpShuffle("down", Load(F, (lane,)), 2, 16, 0xFFFF), (lane,))))
    src = build(body, (A, F), block=(32, 1, 1)).source
    assert "A[lane] = __shfl_down_sync(0xffffffffu, A[lane], 1, 32);" in src
    assert "F[lane] = (bool)__shfl_down_sync(0xffffu, (int)F[lane], 2, 16);" in src


def test_atomic_add_and_float_max():
    A = Buffer("A", float32, (i64(1024),))
    S, M = Buffer("S", float32, (i64(1),)), Buffer("M", float32, (i64(1),))
    C, D = Buffer("C", int64, (i64(1),)), Buffer("D", float64, (i64(1),))
    tx, bx = Var("tx"), Var("bx")
    i = bx * 256 + tx
    x = Load(A, (i,))
    zero = (i64(0),)
    body = bound(bx, "blockIdx.x", 4, bound(tx, "threadIdx.x", 256, seq(
        AtomicUpdate(S, "add", x, zero),
        AtomicUpdate(M, "max", x, zero),
        AtomicUpdate(M, "max", x * 2.0, zero),
        AtomicUpdate(C, "add", i, zero),
        AtomicUpdate(C, "min", i, zero),
        AtomicUpdate(D, "min", Cast(float64, x), zero))))
    module = build(body, (A, S, M, C, D), grid=(4, 1, 1), block=(256, 1, 1))
    src = module.source
    assert "atomicAdd(&S[0], A[bx * 256 + tx]);" in src
    assert "tex_atomic_max_f32(&M[0], A[bx * 256 + tx]);" in src
    assert "atomicAdd((unsigned long long*)&C[0], (unsigned long long)(bx * 256 + tx));" in src
    assert "atomicMin(&C[0], bx * 256 + tx);" in src
    assert "tex_atomic_min_f64(&D[0], (double)A[bx * 256 + tx]);" in src
    assert src.count("void tex_atomic_max_f32(float* address, float value) {") == 1
    assert "atomicCAS(word, old, updated)" in src
    assert "const float* __restrict__ S" not in src and "const float* __restrict__ A" in src


def test_helpers_and_headers_appear_only_when_used():
    src = elementwise(lambda a: a * a).source
    assert "tex_" not in src and "#include" not in src


# --- vectors --------------------------------------------------------------------------------
def vector_copy(load_offset, store_offset=0, dtype=float32, lanes=4):
    """`B[ramp(4*i + store_offset, 1, lanes)] = A[ramp(4*i + load_offset, 1, lanes)] * 2`."""
    A, B = Buffer("A", dtype, (i64(260),)), Buffer("B", dtype, (i64(260),))
    i = Var("i")
    two = Broadcast(Const(dtype, 2), lanes)
    value = Load(A, (Ramp(i * 4 + load_offset, i64(1), lanes),)) * two
    store = Store(B, value, (Ramp(i * 4 + store_offset, i64(1), lanes),))
    return build(bound(i, "threadIdx.x", 64, store), (A, B), block=(64, 1, 1))


def test_aligned_vector_access_is_float4():
    module = vector_copy(load_offset=0)
    src = module.source
    assert "const float4 A_vec = *(const float4*)(A + i * 4);" in src
    assert ("*(float4*)(B + i * 4) = make_float4(A_vec.x * 2.0f, A_vec.y * 2.0f, "
            "A_vec.z * 2.0f, A_vec.w * 2.0f);") in src
    assert module.launches[0].alignments == (16, 16)


def test_unaligned_vector_access_is_scalar():
    module = vector_copy(load_offset=1)
    src = module.source
    assert "float4 A_vec" not in src
    assert ("*(float4*)(B + i * 4) = make_float4(A[i * 4 + 1] * 2.0f, A[i * 4 + 2] * 2.0f, "
            "A[i * 4 + 3] * 2.0f, A[i * 4 + 4] * 2.0f);") in src
    assert module.launches[0].alignments == (4, 16)
    src = vector_copy(load_offset=0, store_offset=6).source
    assert "B[i * 4 + 6] = A_vec.x * 2.0f;\n  B[i * 4 + 7] = A_vec.y * 2.0f;" in src


def test_double2_and_int2_vector_access():
    assert "const double2 A_vec = *(const double2*)(A + i * 4);" in \
        vector_copy(0, dtype=float64, lanes=2).source
    src = vector_copy(2, dtype=int32, lanes=2).source
    assert "const int2 A_vec = *(const int2*)(A + (i * 4 + 2));" in src


def test_half2_vector_access_where_aligned():
    src = vector_copy(2, dtype=float16, lanes=2).source
    assert "const half2 A_vec = *(const half2*)(A + (i * 4 + 2));" in src
    assert "*(half2*)(B + i * 4) = make_half2(A_vec.x * __float2half(2.0f), " in src
    src = vector_copy(1, dtype=float16, lanes=2).source
    assert "half2 A_vec" not in src and "A[i * 4 + 1] * __float2half(2.0f)" in src


def test_vector_reduce_and_shifting_vector_store():
    A = Buffer("A", float32, (i64(64),))
    S = Buffer("S", float32, (i64(16),))
    i = Var("i")
    shifted = Store(A, Load(A, (Ramp(i * 4, i64(1), 4),)),
                    (Ramp(i * 4 + 1, i64(1), 4),))
    total = Store(S, VectorReduce("add", Load(A, (Ramp(i * 4, i64(1), 4),))), (i,))
    src = build(bound(i, "threadIdx.x", 15, seq(shifted, total)), (A, S),
                block=(15, 1, 1)).source
    # every lane is read before any is stored: the ranges overlap
    assert "const float4 A_vec = *(const float4*)(A + i * 4);" in src
    assert "const float A_lane0 = A_vec.x;" in src and "A[i * 4 + 1] = A_lane0;" in src
    assert "S[i] = A_vec_1.x + A_vec_1.z + (A_vec_1.y + A_vec_1.w);" in src


def test_vector_load_in_a_select_branch_is_read_lane_by_lane():
    A, B = Buffer("A", float32, (i64(256),)), Buffer("B", float32, (i64(64),))
    i = Var("i")
    guarded = Select(Compare("lt", i, i64(60)),
                     VectorReduce("max", Load(A, (Ramp(i * 4, i64(1), 4),))),
                     Const(float32, 0.0))
    src = build(bound(i, "threadIdx.x", 64, Store(B, guarded, (i,))), (A, B),
                block=(64, 1, 1)).source
    assert "float4" not in src
    assert "B[i] = i < 60 ? tex_max_f32(tex_max_f32(A[i * 4], A[i * 4 + 2]), " \
           "tex_max_f32(A[i * 4 + 1], A[i * 4 + 3])) : 0.0f;" in src


# --- expressions ----------------------------------------------------------------------------
def test_float16_math_goes_through_float():
    module = elementwise(lambda a: Call("exp", (a,)) * Const(float16, 0.5) +
                         Cast(float16, Call("sigmoid", (Cast(float32, a),))), float16)
    src = module.source
    assert src.startswith("// f: generated by tex for cuda -arch=sm_80\n\n"
                          "#include <cuda_fp16.h>\n")
    assert "__float2half(expf(__half2float(A[" in src
    assert "* __float2half(0.5f)" in src
    assert "__float2half(1.0f / (1.0f + expf(-__half2float(A[" in src
    assert "const half* __restrict__ A" in src


def test_floordiv_of_possibly_negative_ints_uses_helpers():
    A = Buffer("A", int32, (i64(64),))
    B = Buffer("B", int64, (i64(64),))
    i = Var("i")
    body = bound(i, "threadIdx.x", 64, seq(
        Store(A, Binary("floordiv", Load(A, (i,)), Const(int32, 3)), (i,)),
        Store(B, Binary("floormod", Load(B, (i,)), i64(5)), (i,)),  # keeps int64 indices
        Store(B, Binary("floormod", i - 32, i64(5)), (i,)),
        Store(B, Binary("floordiv", i, i64(4)) + Binary("floormod", i, i64(4)), (i,)),
        Store(A, Cast(int32, Binary("floordiv", Cast(int8, i - 40), Const(int8, 7))), (i,))))
    src = build(body, (A, B), block=(64, 1, 1)).source
    assert "A[i] = tex_floordiv_i32(A[i], 3);" in src
    assert "B[i] = tex_floormod_i64(i - 32, 5);" in src
    assert "B[i] = i / 4 + i % 4;" in src  # i >= 0: C's division is floor division
    assert "(int)(signed char)tex_floordiv_i32((signed char)(i - 40), 7)" in src
    assert src.count("long long tex_floormod_i64(long long a, long long b) {") == 1


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a host C compiler")
def test_floor_division_helpers_match_python(tmp_path):
    preamble = cuda_expr.Preamble()
    helpers = [preamble.floor_helper(op, dtype)
               for op, dtype in itertools.product(("floordiv", "floormod"), (int32, int64))]
    values = [-9, -7, -4, -1, 0, 1, 3, 4, 7, 9]
    calls = "\n".join(f'  printf("%lld\\n", (long long){h}({a}, {b}));'
                      for h in helpers for a in values for b in values if b)
    program_text = ("#include <stdio.h>\n#include <stdbool.h>\n"
                    + preamble.text().replace("__device__ __forceinline__", "static")
                    + f"int main(void) {{\n{calls}\n  return 0;\n}}\n")
    (tmp_path / "floor.c").write_text(program_text)
    subprocess.run(["cc", "-o", str(tmp_path / "floor"), str(tmp_path / "floor.c")],
                   check=True)
    out = subprocess.run([str(tmp_path / "floor")], check=True, capture_output=True, text=True)
    expected = [(a // b if "floordiv" in h else a % b)
                for h in helpers for a in values for b in values if b]
    assert [int(x) for x in out.stdout.split()] == expected


def test_float_floordiv_floormod_min_max():
    A = Buffer("A", float32, (i64(64),))
    D = Buffer("D", float64, (i64(64),))
    i = Var("i")
    x, y = Load(A, (i,)), Load(D, (i,))
    body = bound(i, "threadIdx.x", 64, seq(
        Store(A, Binary("floormod", x, Const(float32, 3.0)) +
              Binary("min", x, Const(float32, 0.5)), (i,)),
        Store(D, Binary("floordiv", y, Const(float64, -2.5)) + Binary("max", y, y), (i,))))
    src = build(body, (A, D), block=(64, 1, 1)).source
    assert "A[i] = tex_floormod_f32(A[i], 3.0f) + tex_min_f32(A[i], 0.5f);" in src
    assert "D[i] = tex_floordiv_f64(D[i], -2.5) + tex_max_f64(D[i], D[i]);" in src
    assert "return a - floorf(a / b) * b;" in src


def test_let_is_hoisted_or_a_lambda_under_a_condition():
    A, B = Buffer("A", float32, (i64(64),)), Buffer("B", float32, (i64(64),))
    i, t, u = Var("i"), Var("t", float32), Var("u", float32)
    x = Load(A, (i,))
    hoisted = Let(t, x * x, t + t)
    guarded = Select(Compare("gt", x, Const(float32, 0.0)), Let(u, Call("log", (x,)), u * u),
                     Const(float32, 0.0))
    body = bound(i, "threadIdx.x", 64, seq(Store(B, hoisted, (i,)), Store(B, guarded, (i,))))
    src = build(body, (A, B), block=(64, 1, 1)).source
    assert "  const float t = A[i] * A[i];\n  B[i] = t + t;\n" in src
    assert "B[i] = A[i] > 0.0f ? [&]() { const float u = logf(A[i]); return u * u; }() : 0.0f;" \
        in src


def test_let_statement_and_logic():
    A = Buffer("A", int32, (i64(64),))
    i, j = Var("i"), Var("j")
    cond = Logical("and", Compare("ge", j, i64(2)),
                   Compare("ne", Load(A, (j,)), Const(int32, -2147483648)))
    body = bound(i, "threadIdx.x", 64, LetStmt(j, i * 2 - 1, IfThenElse(
        cond, Store(A, Binary("max", Load(A, (j,)), Const(int32, -7)), (j,)),
        Store(A, Binary("min", Load(A, (i,)) - Const(int32, -3), Const(int32, 1)), (i,)))))
    src = build(body, (A,), block=(64, 1, 1)).source
    assert "const int j = i * 2 - 1;" in src
    assert "if (j >= 2 && A[j] != (-2147483647 - 1)) {" in src
    assert "A[j] = max(A[j], -7);" in src
    assert "} else {\n    A[i] = min(A[i] + 3, 1);" in src


def test_literals():
    assert cuda_expr.literal(float32, 0.1) == ("0.1f", cuda_expr.ATOM)
    assert cuda_expr.literal(float32, float("-inf"))[0] == "-__int_as_float(0x7f800000)"
    assert cuda_expr.literal(float32, float("nan"))[0] == "__int_as_float(0x7fc00000)"
    assert cuda_expr.literal(float64, 1e300)[0] == "1e+300"
    assert cuda_expr.literal(float64, float("inf"))[0] == \
        "__longlong_as_double(0x7ff0000000000000LL)"
    assert cuda_expr.literal(float16, 0.1)[0] == "__float2half(0.099975586f)"
    assert cuda_expr.literal(int64, 5)[0] == "5"
    assert cuda_expr.literal(int64, 2**40)[0] == "1099511627776LL"
    assert cuda_expr.literal(int64, -2**63)[0] == "(-9223372036854775807LL - 1)"
    assert cuda_expr.literal(uint32, 7)[0] == "7u"
    assert cuda_expr.literal(bool_, True)[0] == "true"


def test_int64_constants_of_overloaded_calls_are_typed():
    A = Buffer("A", int64, (i64(64),))
    i = Var("i")
    body = bound(i, "threadIdx.x", 64, Store(A, Binary("min", Load(A, (i,)), i64(3)), (i,)))
    assert "A[i] = min(A[i], 3LL);" in build(body, (A,), block=(64, 1, 1)).source


ALL_DTYPES = (bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16,
              float32, float64)


def every_operation_of(d, buffers, i):
    """Stores using every expression node and operator on dtype `d`."""
    x, y = Load(buffers[d], (i,)), Load(buffers[d], (i + 1,))
    stores = [(bool_, Compare("lt", x, y)), (bool_, Compare("ne", x, y)),
              (d, Select(Compare("eq", x, y), x, y)), (d, WarpShuffle("xor", x, 1, 32, 0xFFFF))]
    stores += [(t, Cast(t, x)) for t in ALL_DTYPES]
    if d.is_bool:
        return stores + [(d, Logical("or", Logical("and", x, y), Not(x)))]
    ops = ["add", "sub", "mul", "min", "max", "floordiv", "floormod"] + (["div"] * d.is_float)
    operands = [y, Const(d, 3)] + ([Const(d, -3)] if d.is_signed else [])
    stores += [(d, Binary(op, x, b)) for op in ops for b in operands]
    v, w = Load(buffers[d], (Ramp(i * 4, i64(1), 4),)), Load(buffers[d], (Ramp(i, i64(2), 4),))
    stores += [(d, VectorReduce(op, Binary("sub" if op == "mul" else op, v, w)))
               for op in ("add", "mul", "min", "max")]
    t = Var("t", d)
    stores.append((d, Let(t, x * y, t + t)))
    if d.is_float:
        stores += [(bool_, Call(name, (x,))) for name in PREDICATES]
        stores.append((d, Call("ldexp", (x, Cast(int32, y)))))
    names = INTRINSICS if d.is_float else {"abs": 1, **INTEGER_INTRINSICS}
    return stores + [(d, Call(name, (x,) * arity)) for name, arity in names.items()]


def test_every_operation_on_every_dtype_compiles():
    i = Var("i")
    buffers = {d: Buffer(f"X_{d}", d, (i64(512),)) for d in ALL_DTYPES}
    stmts = [Store(buffers[dtype], value, (i,))
             for d in ALL_DTYPES for dtype, value in every_operation_of(d, buffers, i)]
    stmts += [AtomicUpdate(buffers[d], op, Load(buffers[d], (i,)), (i64(0),))
              for d in (int32, uint32, int64, uint64, float32, float64)
              for op in ("add", "min", "max")]
    stmts.append(Store(buffers[int64], ThreadIndex("blockIdx.y") + ThreadIndex("threadIdx.z"),
                       (i,)))
    module = build(bound(i, "threadIdx.x", 64, seq(*stmts)), tuple(buffers.values()),
                   block=(64, 1, 1))
    assert module.source.count("X_int8[i] = ") > 30 and len(module.cubin) > 1000


AXPY = """\
__device__ __forceinline__ void tile_axpy(float* y, const float* x, float a) {
  for (int k = 0; k < 16; ++k) y[k] += a * x[k];
}"""


@pytest.mark.skipif(not hasattr(tex.ir, "IntrinsicCall"), reason="tex.ir has no IntrinsicCall")
def test_intrinsic_call_with_its_definition_headers_and_alignment():
    X, Y = Buffer("X", float32, (i64(64),)), Buffer("Y", float32, (i64(64),))
    S = Buffer("S", float32, (i64(64),), scope="shared")
    i = Var("i")

    def axpy(y, x, index):
        return tex.ir.IntrinsicCall("tile_axpy", (Load(y, (index,)), Load(x, (index,))),
                                    (Const(float32, 2.0),), AXPY, ("cuda_fp16.h",), (0,), 32)
    body = bound(i, "threadIdx.x", 4, Allocate(S, seq(
        axpy(S, Y, i * 16), Barrier(), axpy(X, S, i * 16))))
    module = build(body, (X, Y), block=(4, 1, 1))
    src = module.source
    assert src.count("void tile_axpy(") == 1 and "#include <cuda_fp16.h>" in src
    assert "__shared__ __align__(32) float S[64];" in src
    assert "tile_axpy(&S[i * 16], &Y[i * 16], 2.0f);" in src
    assert "tile_axpy(&X[i * 16], &S[i * 16], 2.0f);" in src
    assert "const float* __restrict__ X" not in src and "const float* __restrict__ Y" in src
    assert module.launches[0].alignments == (32, 32)


# --- errors ---------------------------------------------------------------------------------
def test_shared_buffer_of_symbolic_size_is_an_error():
    n, tx = Var("n"), Var("tx")
    A = Buffer("A", float32, (n,))
    S = Buffer("S", float32, (n,), scope="shared")
    body = bound(tx, "threadIdx.x", 32, Allocate(S, Store(S, Load(A, (tx,)), (tx,))))
    with pytest.raises(BuildError, match=r"kernel f_kernel0: shared buffer S has the symbolic "
                                         r"shape \(n\)"):
        build(body, (A,), (n,), block=(32, 1, 1))


def test_too_much_shared_memory_names_kernel_and_buffers():
    A = Buffer("A", float32, (i64(32),))
    big = Buffer("big", float32, (i64(32768),), scope="shared")
    more = Buffer("more", float64, (i64(8192),), scope="shared")
    tx = Var("tx")
    body = bound(tx, "threadIdx.x", 32, Allocate(big, Allocate(more, seq(
        Store(big, Load(A, (tx,)), (tx,)), Store(more, Cast(float64, Load(big, (tx,))), (tx,)),
        Store(A, Cast(float32, Load(more, (tx,))), (tx,))))))
    with pytest.raises(BuildError, match=r"kernel f_kernel0 needs 196608 bytes of shared memory "
                                         r"\(big \(131072 bytes\), more \(65536 bytes\)\).*"
                                         r"sm_80 allows 166912"):
        build(body, (A,), block=(32, 1, 1))


def test_parallel_loop_is_an_error():
    A = Buffer("A", float32, (i64(32),))
    i = Var("i")
    with pytest.raises(BuildError, match="loop i is parallel; parallel is a CPU annotation; "
                                         "bind the loop to a GPU thread axis"):
        build(loop(i, 32, Store(A, Const(float32, 0.0), (i,)), "parallel"), (A,))


def test_global_allocation_inside_a_kernel_is_an_error():
    A = Buffer("A", float32, (i64(32),))
    T = Buffer("T", float32, (i64(32),))
    tx = Var("tx")
    body = bound(tx, "threadIdx.x", 32, Allocate(T, Store(T, Load(A, (tx,)), (tx,))))
    with pytest.raises(BuildError, match="kernel f_kernel0: buffer T of scope 'global' is "
                                         "allocated inside the kernel"):
        build(body, (A,), block=(32, 1, 1))


def test_unsupported_atomic_dtype_is_an_error():
    A = Buffer("A", int8, (i64(1),))
    with pytest.raises(BuildError, match="atomic add on buffer A of int8"):
        build(AtomicUpdate(A, "add", Const(int8, 1), (i64(0),)), (A,))


def test_host_code_other_than_launches_is_an_error():
    A = Buffer("A", float32, (i64(32),))
    i = Var("i")
    func = LoweredFunc("f", (A,), (), loop(i, 32, Store(A, Const(float32, 0.0), (i,))))
    with pytest.raises(BuildError, match=r"f: the host code .* found `for i in range\(32\):` "
                                         r"\(For\)"):
        compile_cuda(func, TARGET)


def test_cpu_target_is_an_error():
    with pytest.raises(BuildError, match="needs a cuda target"):
        compile_cuda(LoweredFunc("f", (), (), seq()), Target("llvm"))


def test_nvrtc_failure_shows_the_log_and_the_source_lines():
    source = "\n".join(["// a broken kernel"] * 5
                       + ['extern "C" __global__ void k(float* a) {', "  a[0] = b;", "}"])
    with pytest.raises(BuildError) as info:
        nvrtc.compile_source(source, "sm_80")
    message = str(info.value)
    assert 'identifier "b" is undefined' in message
    assert re.search(r">\s+7 \|   a\[0\] = b;", message)
    assert "source lines 4-8" in message
