"""Every GPU schedule of bench/gpu_schedules.py, built for "cuda": emitted as CUDA C,
compiled by NVRTC (always), and run against NumPy on random data: in the CPU simulator
(always, with g++) and on the GPU (when one is here)."""
import re

import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

ALL = cases.all_cases()
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")


@pytest.fixture(scope="module")
def kernels():
    return {case.name + str(i): case.build() for i, case in enumerate(ALL)}


def _ids():
    return [case.name + str(i) for i, case in enumerate(ALL)]


@pytest.mark.parametrize("key", _ids())
def test_compiles_to_ptx(kernels, key):
    kernel = kernels[key]
    source = kernel.get_source("cuda")
    assert "__global__" in source
    assert ".entry" in kernel.get_source("ptx")


def _source(name, **kwargs):
    return getattr(cases, name)(**kwargs).build().get_source("cuda")


def test_structure_of_the_shared_memory_matmul():
    source = _source("matmul", n=100, m=90, k=70)
    assert "float A_shared[1024]" in source and "float B_shared[1024]" in source
    assert source.count("__shared__") == 2
    assert source.count("__syncthreads();") == 2


def test_structure_of_each_reduction_strategy():
    shared = _source("row_reduce", rows=13, cols=1000, strategy="shared")
    assert "__shared__" in shared and "__syncthreads();" in shared and "__shfl" not in shared
    warp = _source("row_reduce", rows=13, cols=1000, strategy="warp")
    assert "__shfl_xor_sync(" in warp
    atomic = _source("row_reduce", rows=13, cols=1000, strategy="atomic")
    assert "atomicAdd(" in atomic and atomic.count("__global__") == 2


def test_vectorized_loads_and_stores_are_float4():
    source = _source("elementwise", n=1000, threads=64, vector=4)
    assert source.count("*(const float4*)") == 3 and "*(float4*)(out" in source


def test_tuple_reducer_shuffles_every_value_before_combining():
    source = _source("row_argmax", rows=13, cols=300, strategy="warp")
    shuffles = [line for line in source.splitlines() if "__shfl_xor_sync" in line]
    assert len(shuffles) == 2 * 6  # index and value; 5 steps in a warp, 1 across 2 warps
    assert all(line.lstrip().startswith("const ") and "?" not in line for line in shuffles)


def test_atomic_max_of_floats_compiles():
    source = _source("row_reduce", rows=13, cols=1000, strategy="atomic", reducer="max")
    assert "atomicCAS" in source


def test_running_without_a_gpu_says_so():
    if gpu_available():
        pytest.skip("a GPU is present")
    case = cases.elementwise(100)
    kernel = case.build()
    with pytest.raises(tex.DeviceError, match="needs an NVIDIA GPU.*simulate"):
        kernel(*case.inputs())


@needs_gpu
@pytest.mark.parametrize("key", _ids())
def test_matches_numpy(kernels, key):
    case = ALL[_ids().index(key)]
    inputs = case.inputs()
    check(case, inputs, kernels[key](*inputs))


@needs_compiler
@pytest.mark.parametrize("seed", [0, 1], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("key", _ids())
def test_matches_numpy_in_the_simulator(kernels, key, seed):
    case = ALL[_ids().index(key)]
    inputs = case.inputs(seed)
    check(case, inputs, kernels[key].simulate(*inputs, seed=seed))


def check(case, inputs, result):
    expected = case.reference(*inputs)
    tolerance = 1e-3 if case.dtype == "float32" else 2e-2
    if case.name.startswith("row_argmax"):  # ties aside, the index must point at the max
        index, value = result
        data, = inputs
        np.testing.assert_array_equal(value, expected[1])
        np.testing.assert_array_equal(data[np.arange(len(index)), index], expected[1])
        return
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("run", [pytest.param("call", marks=needs_gpu),
                                 pytest.param("simulate", marks=needs_compiler)])
def test_atomic_reduction_refills_its_output_on_every_call(run):
    case = cases.full_sum(10_000, "atomic")
    kernel = case.build()
    data, = case.inputs()
    out = np.full((1,), 123.0, "float32")
    for _ in range(3):
        kernel(data, out) if run == "call" else kernel.simulate(data, out)
        np.testing.assert_allclose(out, case.reference(data), rtol=1e-4)


@needs_gpu
def test_device_arrays_stay_on_the_device():
    case = cases.elementwise(5000)
    kernel = case.build()
    inputs = case.inputs()
    result = kernel(*(tex.device_array(x) for x in inputs))
    np.testing.assert_allclose(result.numpy(), case.reference(*inputs), rtol=1e-6)


def test_guarded_vector_lanes_are_stored_one_by_one():
    n = 1001  # the last thread's vector runs past the end: its lanes are guarded
    a = tex.placeholder((n,), name="a")
    b = tex.compute((n,), lambda i: a[i] * 2.0, name="b")
    s = tex.create_schedule(b.op)
    rest, lanes = s[b].split(b.op.axis[0], factor=4)
    s[b].vectorize(lanes)
    blocks, threads = s[b].split(rest, factor=64)
    s[b].bind(blocks, tex.thread_axis("blockIdx.x"))
    s[b].bind(threads, tex.thread_axis("threadIdx.x"))
    source = tex.build(s, [a, b], target="cuda").get_source("cuda")
    guards = [line.strip() for line in source.splitlines() if "< 1001" in line]
    assert len(guards) == 4 and all(line.startswith("if (") for line in guards)


# the schedules bench/gpu.py times, at small sizes that do not divide their tiles
BENCH_CASES = {
    "matmul 128x128 tiles": lambda: cases.matmul(200, 200, 200, tile=128, per_thread=8, step=8),
    "matmul 128x128 tiles, double-buffered": lambda: cases.matmul(
        200, 200, 200, tile=128, per_thread=8, step=8, double_buffer=True),
    "matmul 128x128 tiles, cp.async pipeline": lambda: cases.matmul(
        200, 200, 200, tile=128, per_thread=8, step=8, pipelined=True),
    "row sum, 512 threads": lambda: cases.row_reduce(37, 3000, "warp", threads=512),
    "softmax, 512 threads": lambda: cases.softmax(37, 3000, threads=512),
    **{f"strategy {s}": (lambda s=s: cases.row_reduce(50, 700, s, threads=256))
       for s in ("shared", "warp", "atomic")},
}


@needs_compiler
@pytest.mark.parametrize("name", sorted(BENCH_CASES))
def test_the_benchmarks_schedules_in_the_simulator(name):
    case = BENCH_CASES[name]()
    inputs = case.inputs()
    check(case, inputs, case.build().simulate(*inputs, seed=2))


@pytest.mark.parametrize("name", ["softmax", "layernorm"])
def test_one_pass_row_kernels_keep_the_row_in_registers(name):
    source = _source(name, rows=5, cols=1000, threads=128)   # 8 elements per thread
    assert "float x[8];" in source and len(re.findall(r"\ba\[", source)) == 8
    stores = [line for line in source.splitlines() if "out[" in line]
    assert len(stores) == 8 and not any("/" in line for line in stores)
    if name == "softmax":
        assert source.count("expf(") == 8 and "float e[8];" in source
