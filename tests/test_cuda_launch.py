"""What a CUDA kernel asks of its launch: `__launch_bounds__` (the launch_bounds pragma)
and dynamic shared memory. Compiled by NVRTC, checked in the emitted source and in
ptxas's report (`tex.codegen.nvrtc.resource_usage`), run in the simulator against NumPy.
"""
import collections
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from tex.codegen.nvrtc import resource_usage
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
TARGET = "cuda -arch=sm_90"


def _cuobjdump() -> str | None:
    """cuobjdump: on the PATH, else from the nvidia-cuda-cuobjdump wheel."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec else []
    found = [os.path.join(r, "cu13", "bin", "cuobjdump") for r in roots]
    return shutil.which("cuobjdump") or next((p for p in found if os.path.isfile(p)), None)


CUOBJDUMP = _cuobjdump()


def _scaled(n, threads=256, symbolic_block=False):
    a = tex.placeholder((n,), name="a")
    b = tex.compute((n,), lambda i: a[i] * 3.0, name="b")
    s = tex.create_schedule(b.op)
    if symbolic_block:
        s[b].bind(b.op.axis[0], tex.thread_axis("threadIdx.x"))
        return s, [a, b], b.op.axis[0], b.op.axis[0]
    bx, tx = s[b].split(b.op.axis[0], factor=threads)
    s[b].bind(bx, tex.thread_axis("blockIdx.x"))
    s[b].bind(tx, tex.thread_axis("threadIdx.x"))
    return s, [a, b], bx, tx


@needs_compiler
def test_launch_bounds_pragma_gives_min_blocks():
    s, args, bx, _ = _scaled(1000)
    s[args[1]].pragma(bx, "launch_bounds", 3)
    kernel = tex.build(s, args, target=TARGET)
    assert "__launch_bounds__(256, 3)" in kernel.get_source("cuda")
    a = np.random.default_rng(0).uniform(-1, 1, 1000).astype("float32")
    np.testing.assert_allclose(kernel.simulate(a), a * 3, rtol=1e-6)


#: The float32 GEMM's ways of fetching the next step's panels: none, through registers
#: (double_buffer), by cp.async (pipeline(2)).
FETCH_AHEAD = [{}, {"double_buffer": True}, {"pipelined": True}]


@pytest.mark.parametrize("fetch_ahead", FETCH_AHEAD)
def test_wide_matmul_static_facts(fetch_ahead):
    """bench/gpu.py's float32 GEMM at sm_90: two blocks of 256 threads per multiprocessor
    leave each thread 128 registers, without spills; 16-byte global loads (or cp.async
    copies), shared stores and loads, and global stores."""
    case = cases.matmul(4096, 4096, 4096, tile=128, per_thread=8, step=8, min_blocks=2,
                        **fetch_ahead)
    kernel = case.build(TARGET)
    source = kernel.get_source("cuda")
    assert "__launch_bounds__(256, 2)" in source and "long long" not in source
    (usage,) = resource_usage(source, "sm_90").values()
    assert usage["registers"] <= 128 and usage["spill_bytes"] == 0
    ops = _sass_ops(kernel.imported_modules[0].cubin)
    if fetch_ahead.get("pipelined"):
        assert {"LDGSTS.E.BYPASS.128", "LDS.128", "STG.E.128"} <= set(ops)
        assert not {op for op in ops if op.startswith(("LDG.", "STS"))}
    else:
        assert {"LDG.E.128.CONSTANT", "STS.128", "LDS.128", "STG.E.128"} <= set(ops)
    assert not {"LDG.E.CONSTANT", "STS", "LDS", "STG.E"} & set(ops)  # no narrower access


@needs_compiler
@pytest.mark.parametrize("fetch_ahead", FETCH_AHEAD)
def test_wide_matmul_at_awkward_sizes_matches_numpy(fetch_ahead):
    case = cases.matmul(130, 150, 90, tile=128, per_thread=8, step=8, min_blocks=2,
                        **fetch_ahead)
    inputs = case.inputs(2)
    np.testing.assert_allclose(case.build(TARGET).simulate(*inputs), case.reference(*inputs),
                               rtol=1e-4, atol=1e-4)


def test_vectorized_elementwise_is_128_bit_in_sass():
    ops = _sass_ops(cases.elementwise(1 << 20, vector=4).build(TARGET).imported_modules[0].cubin)
    assert ops["LDG.E.128.CONSTANT"] == 3 and ops["STG.E.128"] == 1


def _sass_ops(cubin: bytes) -> collections.Counter:
    """How often each SASS instruction (with its modifiers) occurs in `cubin`."""
    if CUOBJDUMP is None:
        pytest.skip("needs cuobjdump (the nvidia-cuda-cuobjdump wheel)")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    # an instruction predicated on !PT never runs (ptxas pads cp.async with such loads)
    return collections.Counter(re.findall(
        r"/\*[0-9a-f]{4}\*/\s+(?!@!U?PT\s)(?:@!?U?P\w+\s+)?([A-Z][\w.]+)", sass))


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2"])
def test_launch_bounds_value_must_be_a_positive_int(value):
    s, args, bx, _ = _scaled(1000)
    with pytest.raises(tex.ScheduleError, match=r"launch_bounds on stage b, axis i_outer.*"
                                                r"positive int"):
        s[args[1]].pragma(bx, "launch_bounds", value)


def test_launch_bounds_needs_a_constant_block():
    s, args, axis, _ = _scaled(tex.var("n"), symbolic_block=True)
    s[args[1]].pragma(axis, "launch_bounds", 2)
    with pytest.raises(tex.BuildError, match=r"launch_bounds on loop i needs a constant block"):
        tex.build(s, args, target=TARGET)


def test_launch_bounds_beyond_the_threads_of_a_multiprocessor():
    s, args, bx, _ = _scaled(5000, threads=1024)
    s[args[1]].pragma(bx, "launch_bounds", 3)
    with pytest.raises(tex.BuildError, match=r"3 blocks of 1024 threads.*at most 2048"):
        tex.build(s, args, target=TARGET)


def test_launch_bounds_pragmas_of_one_kernel_must_agree():
    s, args, bx, tx = _scaled(1000)
    s[args[1]].pragma(bx, "launch_bounds", 2)
    s[args[1]].pragma(tx, "launch_bounds", 4)
    with pytest.raises(tex.BuildError, match=r"loops i_inner, i_outer ask for different "
                                             r"numbers of blocks \[2, 4\]"):
        tex.build(s, args, target=TARGET)



def _staged_sum(n, chunk, threads=256):
    """out = a + c, blocks of `chunk` elements of a and of c staged through shared memory
    (2 * 4 * chunk bytes)."""
    a, c = (tex.placeholder((n,), name=x) for x in "ac")
    out = tex.compute((n,), lambda i: a[i] + c[i], name="out")
    s = tex.create_schedule(out.op)
    staged = [s.cache_read(x, "shared", [out]) for x in (a, c)]
    block, rest = s[out].split(out.op.axis[0], factor=chunk)
    _, tx = s[out].split(rest, factor=threads)
    s[out].bind(block, tex.thread_axis("blockIdx.x"))
    s[out].bind(tx, tex.thread_axis("threadIdx.x"))
    for t in staged:
        s[t].compute_at(s[out], block)
        _, lanes = s[t].split(t.op.axis[0], factor=threads)
        s[t].bind(lanes, tex.thread_axis("threadIdx.x"))
    return s, [a, c, out]


@needs_compiler
def test_shared_memory_past_48_kb_is_dynamic():
    s, args = _staged_sum(20_000, chunk=8192)
    kernel = tex.build(s, args, target=TARGET)
    source = kernel.get_source("cuda")
    (launch,) = kernel.imported_modules[0].launches
    assert launch.shared_bytes == 2 * 8192 * 4
    assert "TEX_DYNAMIC_SHARED(tex_dynamic_shared);" in source
    assert re.search(r"float\* const \w+_shared = \(float\*\)\(tex_dynamic_shared \+ 0\);",
                     source)
    assert re.search(r"float\* const \w+_shared = \(float\*\)\(tex_dynamic_shared \+ "
                     r"32768\);", source)
    assert "__shared__ " not in source.split("__global__")[1]
    (usage,) = resource_usage(source, "sm_90").values()
    assert usage["shared_bytes"] == 0  # no static shared memory
    a, c = np.random.default_rng(5).uniform(-1, 1, (2, 20_000)).astype("float32")
    np.testing.assert_allclose(kernel.simulate(a, c), a + c, rtol=1e-6)


@needs_gpu
def test_dynamic_shared_memory_on_the_gpu():
    s, args = _staged_sum(100_000, chunk=16384)
    kernel = tex.build(s, args, target="cuda")
    assert kernel.imported_modules[0].launches[0].shared_bytes == 2 * 16384 * 4
    a, c = np.random.default_rng(6).uniform(-1, 1, (2, 100_000)).astype("float32")
    np.testing.assert_allclose(kernel(a, c), a + c, rtol=1e-6)


def test_shared_memory_up_to_48_kb_stays_static():
    s, args = _staged_sum(20_000, chunk=4096)
    kernel = tex.build(s, args, target=TARGET)
    (launch,) = kernel.imported_modules[0].launches
    assert launch.shared_bytes == 0
    assert "__shared__ __align__(16) float a_shared[4096];" in kernel.get_source("cuda")


def test_shared_memory_limit_comes_from_the_target():
    """sm_90 allows 227 KB a block, sm_86 99 KB: 128 KB fits the first only."""
    def build(target):
        s, args = _staged_sum(40_000, chunk=16384)
        return tex.build(s, args, target=target)
    (launch,) = build("cuda -arch=sm_90").imported_modules[0].launches
    assert launch.shared_bytes == 2 * 16384 * 4
    with pytest.raises(tex.BuildError, match=r"needs 131072 bytes of shared memory "
                                             r"\(\w_shared \(65536 bytes\), \w_shared \(65536 "
                                             r"bytes\)\); cuda -arch=sm_86 allows 101376"):
        build("cuda -arch=sm_86")
