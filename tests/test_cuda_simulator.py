"""The CPU simulator of CUDA kernels (`CudaKernel.simulate`): results against NumPy, and the
misuse of barriers, warp operations and memory that it reports (no GPU needed; g++)."""
import os
import sys

import numpy as np
import pytest

import tex
from tex import disk_cache
from bench import gpu_schedules as cases
from tex.codegen.cuda import compile_cuda
from tex.dtype import INDEX, float32
from tex.expr import Binary, Const, Var
from tex.intrin import cuda_wmma
from tex.ir import (Allocate, Barrier, Buffer, For, IfThenElse, KernelLaunch, LetStmt, Load,
                    LoweredFunc, Store, WarpShuffle, seq)
from tex.runtime import cuda_simulator
from tex.runtime.cuda_kernel import CudaKernel
from tex.target import Target

pytestmark = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")

THREADS = 64
TX = Var("tx")  # the thread's index in the hand-built kernels


def i64(value):
    return Const(INDEX, value)


def one_block_kernel(body, params, threads=THREADS) -> CudaKernel:
    """A kernel of one block of `threads` threads along x running `body`, in which `TX` is
    the thread's index; the last of `params` is the output."""
    launch = KernelLaunch("f_kernel0", (i64(1), i64(1), i64(1)), (i64(threads), i64(1), i64(1)),
                          tuple(params), (), For(TX, i64(0), i64(threads), "bound", body,
                                                 thread_tag="threadIdx.x"))
    func = LoweredFunc("f", tuple(params), (), launch, (params[-1],))
    return CudaKernel(func, compile_cuda(func, Target("cuda -arch=sm_80")))



def vectors(n=THREADS):
    a = Buffer("a", float32, (i64(n),))
    out = Buffer("out", float32, (i64(n),))
    return a, out


def test_a_tex_schedule_runs_with_both_calling_conventions():
    n, m = 37, 45  # neither divides the 8 x 16 block
    a = tex.placeholder((n, m), name="a")
    b = tex.compute((n, m), lambda i, j: a[i, j] * 2.0 + 1.0, name="b")
    s = tex.create_schedule(b.op)
    yo, xo, yi, xi = s[b].tile(b.op.axis[0], b.op.axis[1], 8, 16)
    s[b].bind(yo, tex.thread_axis("blockIdx.y"))
    s[b].bind(xo, tex.thread_axis("blockIdx.x"))
    s[b].bind(yi, tex.thread_axis("threadIdx.y"))
    s[b].bind(xi, tex.thread_axis("threadIdx.x"))
    f = tex.build(s, [a, b], target="cuda")
    data = np.random.default_rng(0).standard_normal((n, m)).astype("float32")
    np.testing.assert_allclose(f.simulate(data), data * 2 + 1, rtol=1e-6)
    out = np.full((n, m), np.nan, "float32")
    assert f.simulate(data, out) is None
    np.testing.assert_allclose(out, data * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_shuffled_orders_give_the_same_results(seed):
    case = cases.matmul(n=100, m=90, k=70)
    kernel = case.build()
    inputs = case.inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs, seed=seed), case.reference(*inputs),
                               rtol=1e-4, atol=1e-4)


def test_the_tensor_core_matmul_runs():
    M, N, K = 48, 80, 64  # whole 16 x 16 tiles, but not whole blocks of 2 x 2 tiles
    s, args = cuda_wmma.matmul_schedule(M, N, K)
    kernel = tex.build(s, args, target="cuda -arch=sm_80")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((M, K)).astype("float16")
    b = rng.standard_normal((K, N)).astype("float16")
    expected = a.astype("float64") @ b.astype("float64")
    np.testing.assert_allclose(kernel.simulate(a, b), expected, rtol=1e-3, atol=1e-3)


def test_a_barrier_that_some_threads_skip_is_an_error():
    a, out = vectors()
    body = seq(Store(out, Load(a, (TX,)), (TX,)),
               IfThenElse(TX < 40, Barrier()))
    with pytest.raises(tex.DeviceError, match=r"f_kernel0 .*__syncthreads\(\) on line \d+ is "
                                              r"reached by 40 of the block's 64 threads"):
        one_block_kernel(body, [a, out]).simulate(np.ones(THREADS, "float32"))


def test_threads_at_two_different_barriers_is_an_error():
    a, out = vectors()
    body = seq(IfThenElse(TX < 32, Barrier(), Barrier()), Store(out, Load(a, (TX,)), (TX,)))
    with pytest.raises(tex.DeviceError, match="must reach the same barrier"):
        one_block_kernel(body, [a, out]).simulate(np.ones(THREADS, "float32"))


def test_a_shuffle_that_a_lane_never_joins_is_an_error():
    a, out = vectors()
    value = Var("from_lane", float32)
    shuffle = LetStmt(value, WarpShuffle("xor", Load(a, (TX,)), 16, 32, 0xFFFFFFFF),
                      Store(out, value, (TX,)))
    body = seq(IfThenElse(TX % 32 < 16, shuffle), Barrier())
    with pytest.raises(tex.DeviceError, match=r"waits at a warp operation on line \d+ for lane "
                                              r"16 .* is waiting at __syncthreads\(\)"):
        one_block_kernel(body, [a, out]).simulate(np.ones(THREADS, "float32"))


def test_shuffles_move_values_between_lanes():
    a, out = vectors()
    value = Var("from_lane", float32)
    body = LetStmt(value, WarpShuffle("xor", Load(a, (TX,)), 5, 32, 0xFFFFFFFF),
                   Store(out, value, (TX,)))
    data = np.arange(THREADS, dtype="float32")
    result = one_block_kernel(body, [a, out]).simulate(data)
    np.testing.assert_array_equal(result, data[np.arange(THREADS) ^ 5])


def test_a_write_out_of_bounds_is_an_error():
    a, out = vectors()
    body = Store(out, Load(a, (TX,)), (Binary("add", TX, i64(1)),))
    with pytest.raises(tex.DeviceError, match="wrote outside buffer out"):
        one_block_kernel(body, [a, out]).simulate(np.ones(THREADS, "float32"))


@pytest.mark.parametrize("with_barrier", [True, False])
def test_a_missing_barrier_shows_in_the_results(with_barrier):
    """Each thread reads its neighbour's slot of shared memory: right after a barrier,
    wrong without one, since every thread then runs before its neighbour has written."""
    a, out = vectors()
    shared = Buffer("neighbours", float32, (i64(THREADS),), "shared")
    neighbour = Binary("floormod", Binary("add", TX, i64(1)), i64(THREADS))
    body = Allocate(shared, seq(Store(shared, Load(a, (TX,)), (TX,)),
                                Barrier() if with_barrier else None,
                                Store(out, Load(shared, (neighbour,)), (TX,))))
    data = np.arange(1, THREADS + 1, dtype="float32")
    result = one_block_kernel(body, [a, out]).simulate(data)
    assert np.array_equal(result, np.roll(data, -1)) == with_barrier


def test_temporaries_start_as_nan():
    a, out = vectors()
    temporary = Buffer("scratch", float32, (i64(THREADS),))
    launch = KernelLaunch("f_kernel0", (i64(1),) * 3, (i64(THREADS), i64(1), i64(1)),
                          (a, temporary, out), (),
                          For(TX, i64(0), i64(THREADS), "bound",
                              Store(out, Load(temporary, (TX,)), (TX,)),
                              thread_tag="threadIdx.x"))
    func = LoweredFunc("f", (a, out), (), Allocate(temporary, launch), (out,))
    kernel = CudaKernel(func, compile_cuda(func, Target("cuda -arch=sm_80")))
    assert np.isnan(kernel.simulate(np.ones(THREADS, "float32"))).all()


def test_arguments_are_checked_as_a_call_checks_them():
    kernel = cases.elementwise(100).build()
    with pytest.raises(tex.ArgumentError, match="argument a"):
        kernel.simulate(np.ones(99, "float32"), np.ones(100, "float32"),
                        np.ones(100, "float32"))
    inputs = cases.elementwise(100).inputs()
    with pytest.raises(tex.ArgumentError, match="seed must be an int"):
        kernel.simulate(*inputs, seed=-1)


def test_without_a_compiler_the_error_says_so(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    kernel = cases.elementwise(100).build()
    with pytest.raises(tex.BuildError, match="needs a C\\+\\+ compiler"):
        kernel.simulate(*cases.elementwise(100).inputs())


def test_a_compiled_simulator_is_read_back_from_the_disk_cache(cache_dir, monkeypatch):
    case = cases.elementwise(100)
    kernel = case.build()
    inputs = case.inputs()
    expected = kernel.simulate(*inputs)
    assert [p.name for p in cache_dir.glob("simulator-*")]
    cuda_simulator.unload_all()  # as in a new process

    def no_compiler(command, **kwargs):
        assert "--version" in command, "the simulator was compiled again"
        return real_run(command, **kwargs)
    real_run = cuda_simulator.subprocess.run
    monkeypatch.setattr(cuda_simulator.subprocess, "run", no_compiler)
    np.testing.assert_array_equal(kernel.simulate(*inputs), expected)


def _mapped_simulators(keys) -> int:
    """How many of the simulator libraries of `keys` this process has mapped (Linux)."""
    maps = open("/proc/self/maps").read()
    return sum(f"{key}.so" in maps for key in keys)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_loaded_simulators_are_bounded(cache_dir, monkeypatch):
    """With TEX_SIMULATOR_LIBRARIES=3, five distinct kernels simulated in turn leave three
    libraries loaded (and mapped: the others are unloaded); each result is right, the
    first kernel's too when it is simulated again after its library was unloaded."""
    monkeypatch.setenv("TEX_SIMULATOR_LIBRARIES", "3")
    a, out = vectors()
    data = np.random.default_rng(5).standard_normal(THREADS).astype("float32")
    kernels = [one_block_kernel(Store(out, Binary("mul", Load(a, (TX,)),
                                                  Const(float32, k + 1.5)), (TX,)), [a, out])
               for k in range(5)]
    keys = set()
    for k, kernel in enumerate(kernels):
        np.testing.assert_allclose(kernel.simulate(data), data * (k + 1.5), rtol=1e-6)
        keys.update(cuda_simulator._libraries)
        assert len(cuda_simulator._libraries) == min(k + 1, 3)
    assert len(keys) == 5
    assert _mapped_simulators(keys) == 3
    np.testing.assert_allclose(kernels[0].simulate(data), data * 1.5, rtol=1e-6)
    assert len(cuda_simulator._libraries) == 3


def test_simulator_entries_count_in_the_disk_caches_bound(cache_dir):
    """Simulator entries are disk cache entries like any other: they count in the size
    bound, and the least recently used is deleted when the directory passes it."""
    a, out = vectors()
    data = np.ones(THREADS, "float32")
    for k in range(2):
        kernel = one_block_kernel(Store(out, Binary("add", Load(a, (TX,)),
                                                    Const(float32, k + 0.25)), (TX,)), [a, out])
        np.testing.assert_allclose(kernel.simulate(data), data + k + 0.25)
    entries = sorted(cache_dir.glob("simulator-*"), key=lambda p: p.stat().st_mtime)
    assert len(entries) == 2
    os.utime(entries[0], (1, 1))  # the least recently used entry of the directory
    total = sum(p.stat().st_size for p in cache_dir.glob("*" + disk_cache.SUFFIX))
    bound = int((total - entries[0].stat().st_size) / disk_cache.LOW_WATER) + 1
    assert bound < total
    disk_cache.evict(cache_dir, bound)
    assert not entries[0].exists() and entries[1].exists()
