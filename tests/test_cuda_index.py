"""32-bit index arithmetic in CUDA kernels (`tex.codegen.cuda_index`).

A kernel whose every int64 value is proven to fit in 32 bits computes its indices
as `int`; one over symbolic sizes, or whose indices may reach 2^31, keeps
`long long`. Both are compiled by NVRTC and compared with NumPy in the simulator.
"""
import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from tex.codegen.cuda_index import index_fits_int32
from tex.dtype import INDEX, float32, int64
from tex.expr import Const, Var
from tex.ir import Buffer, For, KernelLaunch, Load, Store, ThreadIndex
from tex.runtime import cuda_simulator

from checks import gpu_elementwise

needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
TARGET = "cuda -arch=sm_90"


def _c(value):
    return Const(INDEX, value)


def _launch(body, grid=(1, 1, 1), block=(64, 1, 1), params=()):
    return KernelLaunch("k", tuple(map(_c, grid)), tuple(map(_c, block)), params, (), body)


def _elementwise(n):
    s, a, b = gpu_elementwise(n, threads=128)
    return tex.build(s, [a, b], target=TARGET)


@needs_compiler
def test_fixed_sizes_compute_indices_in_int():
    kernel = _elementwise(1000)
    source = kernel.get_source("cuda")
    assert "const int i_outer = (int)blockIdx.x;" in source
    assert "long long" not in source
    a = np.random.default_rng(0).uniform(-1, 1, 1000).astype("float32")
    np.testing.assert_allclose(kernel.simulate(a), a * 2 + 1, rtol=1e-6)


@needs_compiler
def test_symbolic_sizes_keep_64_bit_indices():
    kernel = _elementwise(tex.var("n"))
    source = kernel.get_source("cuda")
    assert "const long long i_outer = (long long)blockIdx.x;" in source
    a = np.random.default_rng(1).uniform(-1, 1, 777).astype("float32")
    np.testing.assert_allclose(kernel.simulate(a), a * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2**31 + 100,), (70_000, 40_000)])
def test_indices_that_may_reach_2_to_the_31_are_64_bit(shape):
    """Built only: the flat index passes 2^31 (in a 2-D tensor, though each extent fits)."""
    a = tex.placeholder(shape, name="a")
    b = tex.compute(shape, lambda *i: a[i] + 1.0, name="b")
    s = tex.create_schedule(b.op)
    fused = s[b].fuse(*b.op.axis)
    bx, tx = s[b].split(fused, factor=256)
    s[b].bind(bx, tex.thread_axis("blockIdx.x"))
    s[b].bind(tx, tex.thread_axis("threadIdx.x"))
    source = tex.build(s, [a, b], target=TARGET).get_source("cuda")
    assert "const long long" in source and "const int " not in source


@needs_compiler
def test_matmul_at_awkward_sizes_in_int_matches_numpy():
    case = cases.matmul(100, 90, 70)
    kernel = case.build(TARGET)
    assert "long long" not in kernel.get_source("cuda")
    inputs = case.inputs(3)
    np.testing.assert_allclose(kernel.simulate(*inputs), case.reference(*inputs),
                               rtol=1e-4, atol=1e-4)


@needs_compiler
def test_int64_results_of_narrow_index_arithmetic():
    """An int64 output computed from indices: the arithmetic is 32-bit, the store 64-bit."""
    n = 300
    out = tex.compute((n,), lambda i: (i * 7 - 1000).astype("int64"), name="out")
    s = tex.create_schedule(out.op)
    bx, tx = s[out].split(out.op.axis[0], factor=64)
    s[out].bind(bx, tex.thread_axis("blockIdx.x"))
    s[out].bind(tx, tex.thread_axis("threadIdx.x"))
    kernel = tex.build(s, [out], target=TARGET)
    assert "long long* __restrict__ out" in kernel.get_source("cuda")
    result = np.empty(n, "int64")
    kernel.simulate(result)
    np.testing.assert_array_equal(result, np.arange(n) * 7 - 1000)


def test_an_intermediate_product_past_2_to_the_31_keeps_64_bits():
    """Every int64 node must fit, not only the final index."""
    A = Buffer("A", float32, (_c(100_000),))
    i = Var("i")
    index = i * _c(100_000) - i * _c(99_999)  # i, through values up to 10^10
    body = For(i, _c(0), _c(100_000), "serial", Store(A, Const(float32, 0.0), (index,)))
    assert not index_fits_int32(_launch(body, params=(A,)))
    small = For(i, _c(0), _c(100_000), "serial", Store(A, Const(float32, 0.0), (i,)))
    assert index_fits_int32(_launch(small, params=(A,)))


def test_unknown_int64_values_keep_64_bits():
    A = Buffer("A", int64, (_c(64),))
    i = Var("i")
    read = For(i, _c(0), _c(64), "serial", Store(A, Load(A, (i,)) + _c(1), (i,)))
    assert not index_fits_int32(_launch(read, params=(A,)))
    thread = Store(A, _c(0), (ThreadIndex("blockIdx.x"),))
    assert index_fits_int32(_launch(thread, grid=(64, 1, 1), params=(A,)))
    n = Var("n")
    symbolic = KernelLaunch("k", (n, _c(1), _c(1)), tuple(map(_c, (64, 1, 1))), (A,), (n,),
                            thread)
    assert not index_fits_int32(symbolic)
