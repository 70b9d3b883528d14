"""exp, tanh and sigmoid on the LLVM backend (`tex.codegen.llvm_math`): accuracy and vector code.

Errors are counted in ulps: how many representable values lie between the
kernel's result and the exact result rounded to the output type (numpy in
float64 for float32 outputs, in long double for float64 outputs). Inputs
are random bit patterns (every magnitude), random values in the range where
exp is finite and nonzero, and every float near the edges: the overflow and
underflow thresholds, subnormal results, the switches inside tanh and
sigmoid, +-0, +-inf, NaN and the multiples of ln2/2 where the range
reduction changes n. Each kernel runs as a scalar loop and as a vector loop
of 16 whose size does not divide by 16 (so the scalar tail runs too).
"""
import re

import numpy as np
import pytest

import tex
from test_workloads import softmax_decl

RNG = np.random.default_rng(20261205)

# The largest error measured, in ulps, and asserted (float32: every float
# checked exhaustively once; float64: the samples below).
MAX_ULPS = {"exp": 1, "tanh": 1, "sigmoid": 2}
REFERENCE = {"exp": np.exp, "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
TARGETS = ["llvm", "llvm -mattr=-fma", "llvm -mcpu=x86-64"]  # FMA, none, SSE2 only


def build(name, dtype, lanes, target="llvm"):
    """`B[i] = name(A[i])` over a symbolic n: vectorized by `lanes`, or a scalar loop."""
    n = tex.var("n")
    A = tex.placeholder((n,), dtype=dtype, name="A")
    B = tex.compute((n,), lambda i: getattr(tex, name)(A[i]), name="B")
    s = tex.create_schedule(B.op)
    if lanes > 1:
        s[B].vectorize(s[B].split(B.op.axis[0], factor=lanes)[1])
    return tex.build(s, [A, B], target)


def ordinal(x: np.ndarray) -> np.ndarray:
    """Floats as integers in the same order, adjacent floats differing by 1 (+0 == -0)."""
    signed = np.int32 if x.dtype == np.float32 else np.int64
    bits = x.view(signed).astype(np.int64)
    return np.where(bits < 0, np.int64(np.iinfo(signed).min) - bits, bits)


def from_ordinal(k: np.ndarray, dtype) -> np.ndarray:
    signed = np.int32 if np.dtype(dtype) == np.float32 else np.int64
    bits = np.where(k < 0, np.int64(np.iinfo(signed).min) - k, k)
    return bits.astype(signed).view(dtype)


def ulp_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per element, the distance in ulps; 0 where both are NaN, inf where only one is."""
    a, b = ordinal(got), ordinal(want)
    same_sign = (a < 0) == (b < 0)  # then a - b cannot overflow int64, and is exact
    errors = np.where(same_sign, np.abs(np.where(same_sign, a - b, 0)),
                      np.abs(a.astype(np.float64) - b)).astype(np.float64)
    errors[np.isnan(got) | np.isnan(want)] = np.inf
    errors[np.isnan(got) & np.isnan(want)] = 0
    return errors


def near(points, dtype, count=64) -> np.ndarray:
    """The `count` floats of `dtype` on each side of each point, and the points."""
    centre = ordinal(np.asarray(points, dtype))
    return from_ordinal((centre[:, None] + np.arange(-count, count + 1)).ravel(), dtype)


def float32_inputs() -> np.ndarray:
    """Random floats of every magnitude, the exp range densely, and the edges."""
    ln2 = np.log(2)
    edges = [88.72283935546875, 89.0, -87.33654475, -103.27893, -103.97208, -104.0,  # exp
             0.0, 2.0 ** -126, -(2.0 ** -126), 0.55, -0.55, 9.01, 44.36, 16.64, -16.64,
             3.4e38, -3.4e38] + [k * ln2 / 2 for k in range(-300, 257)]
    random_bits = RNG.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([random_bits.view(np.float32),
                        RNG.uniform(-105, 90, 200_000).astype(np.float32),
                        near(edges, np.float32),
                        np.float32([np.inf, -np.inf, np.nan, -0.0, 1e-45, -1e-45])])
    return x if x.size % 16 else x[:-1]


def float64_inputs() -> np.ndarray:
    edges = [709.782712893384, -708.3964185322641, -744.4400719213812, -745.1332191019411,
             710.0, -746.0, 0.0, 36.7, -36.7] + [k * np.log(2) / 2 for k in range(-2160, 2050, 7)]
    random_bits = RNG.integers(-2 ** 63, 2 ** 63 - 1, 100_000, dtype=np.int64)
    x = np.concatenate([random_bits.view(np.float64), RNG.uniform(-750, 712, 100_000),
                        near(edges, np.float64, 32), [np.inf, -np.inf, np.nan, -0.0, 5e-324]])
    return x if x.size % 8 else x[:-1]


X32 = float32_inputs()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("lanes", [1, 16])
@pytest.mark.parametrize("name", sorted(MAX_ULPS))
def test_float32_error_in_ulps(name, lanes, target):
    with np.errstate(all="ignore"):
        want = REFERENCE[name](X32.astype(np.float64)).astype(np.float32)
    got = build(name, "float32", lanes, target)(X32)
    errors = ulp_errors(got, want)
    worst = np.argmax(errors)
    assert errors[worst] <= MAX_ULPS[name], (
        f"{name}({X32[worst]!r}) = {got[worst]!r}, want {want[worst]!r}: "
        f"{errors[worst]} ulps")


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs an 80-bit long double")
@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.parametrize("name", ["exp", "sigmoid"])
def test_float64_error_in_ulps(name, lanes):
    x = float64_inputs()
    with np.errstate(all="ignore"):
        want = REFERENCE[name](x.astype(np.longdouble)).astype(np.float64)
    got = build(name, "float64", lanes)(x)
    errors = ulp_errors(got, want)
    worst = np.argmax(errors)
    assert errors[worst] <= MAX_ULPS[name], (x[worst], got[worst], want[worst])


@pytest.mark.parametrize("name", sorted(MAX_ULPS))
def test_float16_goes_through_float32(name):
    x = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        want = REFERENCE[name](x.astype(np.float64)).astype(np.float16)
    for lanes in (1, 16):
        errors = ulp_errors(build(name, "float16", lanes)(x).astype(np.float32),
                            want.astype(np.float32))
        assert errors.max() <= 2 ** 13, name  # 1 float16 ulp (double rounding)


def test_edge_values_exactly():
    x = np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0, 89.0, 88.73, -104.0, -103.28, 1e30])
    exp = build("exp", "float32", 16)(x)
    np.testing.assert_array_equal(exp, [np.inf, 0, np.nan, 1, 1, np.inf, np.inf, 0,
                                        np.float32(2.0 ** -149), np.inf])
    tanh = build("tanh", "float32", 16)(x)
    np.testing.assert_array_equal(tanh, [1, -1, np.nan, 0, 0, 1, 1, -1, -1, 1])
    assert np.signbit(tanh[4]) and not np.signbit(tanh[3])
    sigmoid = build("sigmoid", "float32", 16)(x)
    np.testing.assert_array_equal(sigmoid[:5], [1, 0, np.nan, 0.5, 0.5])
    assert 0 < sigmoid[8] < 1e-44


_LIBM_CALL = re.compile(r"\b(expf?|tanhf?|fmaf?)\b")


@pytest.mark.parametrize("name", sorted(MAX_ULPS))
def test_vector_loop_calls_no_libm(name):
    kernel = build(name, "float32", 16)
    assert "@llvm.exp." not in kernel.get_source("ll")
    asm = kernel.get_source("asm")
    assert _LIBM_CALL.search(asm) is None, _LIBM_CALL.search(asm)
    assert re.search(r"\bv?mulps\b", asm), "no packed float multiply: not vector code"


def test_no_fma_target_has_no_fma():
    asm = build("exp", "float32", 16, "llvm -mattr=-fma").get_source("asm")
    assert "fma" not in asm and "fmadd" not in asm
    assert "vfmadd" in build("exp", "float32", 16, "llvm -mcpu=haswell").get_source("asm")


def test_vectorized_softmax_is_vector_code():
    n, m = 37, 1000  # m does not divide by 16
    A, _, e, _, out = softmax_decl(n, m)
    s = tex.create_schedule(out.op)
    s[e].vectorize(s[e].split(e.op.axis[1], factor=16)[1])
    s[out].vectorize(s[out].split(out.op.axis[1], factor=16)[1])
    kernel = tex.build(s, [A, out])
    a = (RNG.standard_normal((n, m)) * 10).astype(np.float32)
    want = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(kernel(a), want / want.sum(1, keepdims=True), rtol=2e-6,
                               atol=1e-12)
    assert _LIBM_CALL.search(kernel.get_source("asm")) is None


def test_exp_on_full_avx512_vectors_scales_with_one_vscalef():
    if tex.Target("llvm").vector_bits < 512:
        pytest.skip("this host has no AVX-512")
    asm = build("exp", "float32", 16).get_source("asm")
    assert "vscalefps" in asm and "vpslld" not in asm  # no integer exponent arithmetic
    assert "vscalefps" not in build("exp", "float32", 16, "llvm -mattr=-fma").get_source("asm")
