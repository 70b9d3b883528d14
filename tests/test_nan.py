"""NaN in max and min, as NumPy has it: `tex.max`/`tex.min` (binary, as reducers, vectorized,
through rfactor, in CUDA code under every reduction strategy) return NaN when any operand
is NaN, wherever it sits; `tex.fmax`/`tex.fmin` ignore NaN as np.fmax/np.fmin do."""
import numpy as np
import pytest

import tex
from bench import gpu_schedules
from tex.runtime import cuda_simulator

ROWS, COLS = 11, 301  # 301 is not a multiple of any split below
NUMPY = {"max": np.max, "min": np.min}


def rows_with_nan(dtype="float32") -> np.ndarray:
    """Random rows; NaN first in row 0, last in row 1, in the middle of row 2, at every
    16th element of row 3, none in the others."""
    x = np.random.default_rng(5).standard_normal((ROWS, COLS)).astype(dtype)
    x[0, 0] = x[1, -1] = x[2, COLS // 2] = np.nan
    x[3, ::16] = np.nan
    return x


def same(got, want):
    np.testing.assert_array_equal(got, want)  # NaN equals NaN here


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("lanes", [1, 8])
def test_binary_max_min_propagate_nan_and_fmax_fmin_ignore_it(dtype, lanes):
    A = tex.placeholder((COLS,), dtype, name="A")
    B = tex.placeholder((COLS,), dtype, name="B")
    outs = [tex.compute((COLS,), lambda i: fn(A[i], B[i]), name=name) for name, fn in
            (("max", tex.max), ("min", tex.min), ("fmax", tex.fmax), ("fmin", tex.fmin))]
    s = tex.create_schedule([o.op for o in outs])
    if lanes > 1:
        for o in outs:
            _, inner = s[o].split(o.op.axis[0], factor=lanes)
            s[o].vectorize(inner)
    a, b = rows_with_nan(dtype)[2:4]
    got = tex.build(s, [A, B] + outs)(a, b)
    for g, want in zip(got, (np.maximum(a, b), np.minimum(a, b), np.fmax(a, b),
                             np.fmin(a, b))):
        same(g, want)


@pytest.mark.parametrize("reducer", ["max", "min"])
@pytest.mark.parametrize("schedule", ["plain", "vector_partials", "rfactor_parallel"])
def test_reductions_propagate_nan_wherever_it_is(reducer, schedule):
    X = tex.placeholder((ROWS, COLS), name="X")
    k = tex.reduce_axis((0, COLS), name="k")
    R = tex.compute((ROWS,), lambda i: getattr(tex, reducer)(X[i, k], axis=k), name="R")
    s = tex.create_schedule(R.op)
    if schedule == "vector_partials":  # 16 lanes of partial results, combined by halving
        _, inner = s[R].split(k, factor=16)
        partial = s.rfactor(R, inner)
        lane, *rows = partial.op.axis
        s[partial].reorder(*rows, *partial.op.reduce_axis, lane)
        s[partial].vectorize(lane)
        s[R].vectorize(s[R].op.reduce_axis[0])
    elif schedule == "rfactor_parallel":  # chunks of each row reduced in parallel
        chunk, _ = s[R].split(k, nparts=4)
        partial = s.rfactor(R, chunk)
        s[partial].parallel(partial.op.axis[0])
    x = rows_with_nan()
    same(tex.build(s, [X, R])(x), NUMPY[reducer](x, axis=1))


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="the simulator needs g++")
@pytest.mark.parametrize("reducer", ["max", "min"])
@pytest.mark.parametrize("strategy", ["shared", "warp", "atomic"])
def test_cuda_reductions_propagate_nan(reducer, strategy):
    case = gpu_schedules.row_reduce(ROWS, COLS, strategy, threads=64, reducer=reducer)
    x = rows_with_nan()
    same(case.build().simulate(x), NUMPY[reducer](x, axis=1))


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="the simulator needs g++")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_binary_max_min_fmax(dtype):
    A = tex.placeholder((COLS,), dtype, name="A")
    B = tex.placeholder((COLS,), dtype, name="B")
    outs = [tex.compute((COLS,), lambda i: fn(A[i], B[i]), name=name) for name, fn in
            (("max", tex.max), ("min", tex.min), ("fmax", tex.fmax))]
    s = tex.create_schedule([o.op for o in outs])
    for o in outs:
        block, thread = s[o].split(o.op.axis[0], factor=64)
        s[o].bind(block, tex.thread_axis("blockIdx.x"))
        s[o].bind(thread, tex.thread_axis("threadIdx.x"))
    a, b = rows_with_nan(dtype)[2:4]
    got = tex.build(s, [A, B] + outs, target="cuda").simulate(a, b)
    for g, want in zip(got, (np.maximum(a, b), np.minimum(a, b), np.fmax(a, b))):
        same(g, want)
