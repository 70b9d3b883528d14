"""Integer // and % as NumPy defines them where C does not: by zero they give 0, and
INT_MIN // -1 wraps to INT_MIN, in LLVM code (scalar and vector) and CUDA code (run in
the simulator). Each of these used to stop the process with SIGFPE."""
import warnings

import numpy as np
import pytest

import tex
from tex.runtime import cuda_simulator

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint32", "uint64"]
N = 77  # neither vector width nor block divides it


def operands(dtype: str):
    """Random dividends and small divisors, with 0 (and -1 under INT_MIN) among them."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    a = rng.integers(info.min, info.max, N, dtype=dtype, endpoint=True)
    b = rng.integers(-3 if info.min < 0 else 0, 4, N).astype(dtype)
    a[:6] = info.min
    b[:3] = 0
    b[3:6] = -1 if info.min < 0 else 0
    return a, b


def expected(a, b):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return a // b, a % b


def declare(dtype: str):
    A = tex.placeholder((N,), dtype, name="A")
    B = tex.placeholder((N,), dtype, name="B")
    Q = tex.compute((N,), lambda i: A[i] // B[i], name="Q")
    R = tex.compute((N,), lambda i: A[i] % B[i], name="R")
    return [A, B, Q, R], tex.create_schedule([Q.op, R.op])


@pytest.mark.parametrize("lanes", [1, 16])
@pytest.mark.parametrize("dtype", DTYPES)
def test_division_by_zero_and_overflow_on_the_cpu(dtype, lanes):
    args, s = declare(dtype)
    if lanes > 1:
        for T in args[2:]:
            _, inner = s[T].split(T.op.axis[0], factor=lanes)
            s[T].vectorize(inner)
    a, b = operands(dtype)
    q, r = tex.build(s, args)(a, b)
    want_q, want_r = expected(a, b)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(r, want_r)


@pytest.mark.parametrize("divisor", [0, -1])
def test_constant_divisors_zero_and_minus_one(divisor):
    A = tex.placeholder((N,), "int32", name="A")
    Q = tex.compute((N,), lambda i: A[i] // divisor + A[i] % divisor, name="Q")
    a, _ = operands("int32")
    want_q, want_r = expected(a, np.full(N, divisor, np.int32))
    np.testing.assert_array_equal(tex.build(tex.create_schedule(Q.op), [A, Q])(a),
                                  want_q + want_r)


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="the simulator needs g++")
@pytest.mark.parametrize("dtype", DTYPES)
def test_division_by_zero_and_overflow_in_cuda_code(dtype):
    args, s = declare(dtype)
    for T in args[2:]:
        block, thread = s[T].split(T.op.axis[0], factor=32)
        s[T].bind(block, tex.thread_axis("blockIdx.x"))
        s[T].bind(thread, tex.thread_axis("threadIdx.x"))
    a, b = operands(dtype)
    q, r = tex.build(s, args, target="cuda").simulate(a, b)
    want_q, want_r = expected(a, b)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(r, want_r)
