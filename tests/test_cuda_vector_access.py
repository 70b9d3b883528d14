"""Wide vector accesses in CUDA C: an aligned vector load or store of 4, 8 or 16 bytes of
any element type is one access, of CUDA's vector type (`short4`) or of a struct tex defines
once (`tex_float16x8`). Checked in the emitted source, in the simulator against NumPy at
sizes the vector does not divide, and in the SASS NVRTC makes (no GPU needed)."""
import ml_dtypes
import numpy as np
import pytest

import tex
from bench import gpu_static
from checks import needs_nvdisasm, random_array
from tex.codegen import nvrtc
from tex.dtype import as_dtype
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")


def product(dtype: str, lanes: int, n: int, offset: int = 0, shared: bool = False,
            target: str = "cuda -arch=sm_90"):
    """C[i] = A[i + offset] * B[i] over n elements, split by `lanes` (vectorized) and then by
    32 threads a block; with `shared`, A goes through a shared copy, itself vectorized."""
    A = tex.placeholder((n + offset,), dtype, name="A")
    B = tex.placeholder((n,), dtype, name="B")
    C = tex.compute((n,), lambda i: A[i + offset] * B[i], name="C")
    s = tex.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=lanes)
    block, thread = s[C].split(outer, factor=32)
    s[C].bind(block, tex.thread_axis("blockIdx.x"))
    s[C].bind(thread, tex.thread_axis("threadIdx.x"))
    s[C].vectorize(inner)
    if shared:
        copy = s.cache_read(A, "shared", [C])
        s[copy].compute_at(s[C], block)
        copy_outer, copy_inner = s[copy].split(s[copy].op.axis[0], factor=lanes)
        s[copy].bind(copy_outer, tex.thread_axis("threadIdx.x"))
        s[copy].vectorize(copy_inner)
    return tex.build(s, [A, B, C], target=target)


def inputs(dtype: str, n: int, offset: int):
    if dtype == "bfloat16":
        rng = np.random.default_rng(n)
        return [rng.standard_normal(size).astype(ml_dtypes.bfloat16) for size in (n + offset, n)]
    return [random_array(n + offset, dtype), random_array(n, dtype)]


def check_results(run, dtype: str, n: int, offset: int = 0):
    """`run(a, b)` (a kernel, or its `simulate`) equals NumPy bit for bit."""
    a, b = inputs(dtype, n, offset)
    want = a[offset:] * b  # each product rounded (or wrapped) to `dtype`, as tex does
    np.testing.assert_array_equal(run(a, b).view(np.uint8), want.view(np.uint8))


#: (dtype, lanes, the C type of one access): 16 and 8 bytes.
WIDE = [("float16", 8, "tex_float16x8"), ("bfloat16", 8, "tex_bfloat16x8"),
        ("int8", 16, "tex_int8x16"), ("int16", 8, "tex_int16x8"),
        ("float16", 4, "tex_float16x4"), ("bfloat16", 4, "tex_bfloat16x4"),
        ("int8", 8, "tex_int8x8"), ("int16", 4, "short4")]


@needs_compiler
@pytest.mark.parametrize("dtype, lanes, vector", WIDE)
def test_aligned_vectors_are_one_access_and_right_with_a_scalar_tail(dtype, lanes, vector):
    n = 1003
    kernel = product(dtype, lanes, n)
    source = kernel.get_source("cuda")
    assert source.count(f"*(const {vector}*)(") == 2   # A and B
    assert source.count(f"*({vector}*)(C + ") == 1
    if vector.startswith("tex_"):
        size = lanes * as_dtype(dtype).itemsize
        assert source.count(f"struct __align__({size}) {vector} ") == 1  # defined once
        assert f"A_vec.v[{lanes - 1}]" in source
    assert f"C[i_outer_outer * {32 * lanes} + i_outer_inner * {lanes} + {lanes - 1}] =" \
        in source  # the tail, lane by lane
    check_results(kernel.simulate, dtype, n)


def test_a_32_byte_vector_is_accessed_lane_by_lane():
    source = product("float16", 16, 2 * 32 * 16).get_source("cuda")
    assert "tex_float16x16" not in source and "_vec" not in source
    assert "C[i_outer_outer * 512 + i_outer_inner * 16 + 15] =" in source


@needs_compiler
@pytest.mark.parametrize("dtype, lanes, vector", WIDE[:4])
def test_unaligned_vector_is_read_lane_by_lane(dtype, lanes, vector):
    n = 2 * 32 * lanes + 5
    kernel = product(dtype, lanes, n, offset=1)
    source = kernel.get_source("cuda")
    assert "A_vec" not in source and f"A[i_outer_outer * {32 * lanes} + i_outer_inner * " \
        f"{lanes} + {lanes}]" in source
    assert source.count(f"*(const {vector}*)(B + ") == 1
    assert source.count(f"*({vector}*)(C + ") == 1
    check_results(kernel.simulate, dtype, n, offset=1)


@needs_compiler
def test_shared_copy_of_float16_is_one_access_each_way():
    n = 32 * 8 * 3 - 5
    kernel = product("float16", 8, n, shared=True)
    source = kernel.get_source("cuda")
    assert "*(tex_float16x8*)(A_shared + " in source
    assert "*(const tex_float16x8*)(A_shared + " in source
    check_results(kernel.simulate, "float16", n)


def _sass(kernel, arch: str) -> set[str]:
    """The SASS opcodes of `kernel` compiled for `arch`, after checking that ptxas keeps it in
    registers: no stack, no spills, no local loads or stores."""
    source = kernel.get_source("cuda")
    (usage,) = nvrtc.resource_usage(source, arch).values()
    assert usage["stack_bytes"] == 0 and usage["spill_bytes"] == 0
    (code,) = gpu_static.disassemble(nvrtc.compile_source(source, arch)).values()
    opcodes = {i.opcode for i in code}
    assert not {op for op in opcodes if op.startswith(("LDL", "STL"))}  # no local memory
    return opcodes


@needs_nvdisasm
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sass_of_16_bit_floats_by_8_is_128_bit_without_local_memory(dtype, arch):
    opcodes = _sass(product(dtype, 8, 32 * 8 * 4), arch)
    assert {"LDG.E.128.CONSTANT", "STG.E.128"} <= opcodes
    assert not {op for op in opcodes if op.startswith(("LDG", "STG")) and ".128" not in op}


@needs_nvdisasm
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_sass_of_a_shared_float16_copy_is_128_bit(arch):
    opcodes = _sass(product("float16", 8, 32 * 8 * 4, shared=True), arch)
    assert {"LDG.E.128.CONSTANT", "STS.128", "LDS.128", "STG.E.128"} <= opcodes
    assert not {op for op in opcodes if op.startswith(("LDG", "STG", "LDS", "STS"))
                and ".128" not in op}


@needs_gpu
@pytest.mark.parametrize("dtype, lanes, vector", WIDE[:4])
def test_wide_vectors_on_the_gpu(dtype, lanes, vector):
    n = 1003
    kernel = product(dtype, lanes, n, target="cuda")
    assert f"*({vector}*)(C + " in kernel.get_source("cuda")
    check_results(kernel, dtype, n)
    check_results(product(dtype, lanes, n, offset=1, target="cuda"), dtype, n, offset=1)
