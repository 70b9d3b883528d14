"""bfloat16: every result is compared bit for bit with NumPy's `ml_dtypes`, which rounds to
bfloat16 after each operation as tex does; sizes do not divide the vector width. CUDA
kernels are compiled by NVRTC and run in the simulator, and on a GPU where there is one."""
import ml_dtypes
import numpy as np
import pytest

import tex
from tex import dtype as dt
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

BF16 = ml_dtypes.bfloat16
RNG = np.random.default_rng(16)


def bits(a) -> np.ndarray:
    return np.asarray(a).view(np.uint16)


def random_bf16(shape, scale=4.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(BF16)


def elementwise(n, body, dtypes, out_dtype=None, lanes=16):
    """A kernel of `body` over n-element inputs of `dtypes`, split by `lanes` (vectorized
    when lanes > 1) and parallel."""
    ins = [tex.placeholder((n,), d, name=f"in{k}") for k, d in enumerate(dtypes)]
    out = tex.compute((n,), lambda i: body(*(t[i] for t in ins)), name="out")
    if out_dtype is not None:
        assert out.dtype == dt.as_dtype(out_dtype)
    s = tex.create_schedule(out.op)
    if lanes > 1:
        outer, inner = s[out].split(out.op.axis[0], factor=lanes)
        s[out].vectorize(inner)
        s[out].parallel(outer)
    return tex.build(s, ins + [out])


@pytest.mark.parametrize("lanes", [1, 16])
def test_arithmetic_rounds_after_every_operation(lanes):
    f = elementwise(1001, lambda a, b: (a * b + a) / b - 0.1, ["bfloat16"] * 2, "bfloat16",
                    lanes)
    a, b = random_bf16(1001), random_bf16(1001)
    want = (a * b + a) / b - BF16(0.1)
    np.testing.assert_array_equal(bits(f(a, b)), bits(want))


@pytest.mark.parametrize("lanes", [1, 16])
def test_min_max_and_comparisons(lanes):
    f = elementwise(999, lambda a, b: tex.if_then_else(a > b, tex.max(a, b * 2.0),
                                                       tex.min(a, b)), ["bfloat16"] * 2,
                    "bfloat16", lanes)
    a, b = random_bf16(999), random_bf16(999)
    want = np.where(a > b, np.maximum(a, b * BF16(2.0)), np.minimum(a, b))
    np.testing.assert_array_equal(bits(f(a, b)), bits(want))


EDGES = np.array([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 3.4e38, -3.39e38,
                  1.0 + 2.0 ** -8,        # a tie: rounds to even, down to 1
                  1.0 + 3 * 2.0 ** -8,    # a tie: rounds to even, up
                  1.0 + 2.0 ** -8 + 2.0 ** -20,  # just above the tie: up
                  1e-40, -1e-45, 1.17549435e-38, 65504.0, 0.1], np.float32)


@pytest.mark.parametrize("lanes", [1, 16])
def test_casts_from_float32_round_to_nearest_even(lanes):
    f = elementwise(len(EDGES), lambda x: tex.cast("bfloat16", x), ["float32"], "bfloat16",
                    lanes)
    got = f(EDGES)
    want = EDGES.astype(BF16)
    nan = np.isnan(EDGES)
    # AVX512-BF16's conversion flushes subnormal results to zero (keeping the sign)
    tiny = (np.abs(EDGES) < np.finfo(np.float32).tiny) & (EDGES != 0)
    exact = ~nan & ~tiny
    np.testing.assert_array_equal(bits(got)[exact], bits(want)[exact])
    assert np.isnan(got[nan].astype(np.float32)).all()
    flushed = bits(np.copysign(np.zeros(tiny.sum(), np.float32), EDGES[tiny]).astype(BF16))
    assert all(g in (w, z) for g, w, z in zip(bits(got)[tiny], bits(want)[tiny], flushed))


@pytest.mark.parametrize("src", ["float64", "float16", "int32", "uint8", "bool"])
def test_casts_to_and_from_other_dtypes(src):
    x = (RNG.standard_normal(77) * 300).astype(src) if src != "bool" else RNG.random(77) < 0.5
    if src == "uint8":
        x = RNG.integers(0, 255, 77).astype(np.uint8)
    to_bf16 = elementwise(77, lambda v: tex.cast("bfloat16", v), [src], "bfloat16")
    want = (x.astype(np.float32) if src == "float64" else x).astype(BF16)
    np.testing.assert_array_equal(bits(to_bf16(x)), bits(want))
    back = elementwise(77, lambda v: tex.cast(src, v), ["bfloat16"], src)
    np.testing.assert_array_equal(back(want), want.astype(src))


def test_float16_and_bfloat16_meet_in_float32():
    f = elementwise(100, lambda a, b: a + b, ["bfloat16", "float16"], "float32")
    a, b = random_bf16(100), RNG.standard_normal(100).astype(np.float16)
    np.testing.assert_array_equal(f(a, b), a.astype(np.float32) + b.astype(np.float32))


@pytest.mark.parametrize("name", ["exp", "sqrt", "log", "tanh", "sigmoid"])
def test_math_functions_are_within_one_bfloat16_step(name):
    x = np.abs(random_bf16(301, 3.0)) + BF16(0.01)
    f = elementwise(301, getattr(tex, name), ["bfloat16"], "bfloat16")
    reference = {"sigmoid": lambda v: 1 / (1 + np.exp(-v))}.get(name) or getattr(np, name)
    want = reference(x.astype(np.float64)).astype(np.float32).astype(BF16)
    steps = np.abs(bits(f(x)).astype(np.int32) - bits(want).astype(np.int32))
    assert steps.max() <= 1, (name, steps.max())


def test_a_serial_sum_rounds_each_step():
    n = 300
    A = tex.placeholder((7, n), "bfloat16", name="A")
    k = tex.reduce_axis((0, n), name="k")
    S = tex.compute((7,), lambda i: tex.sum(A[i, k], axis=k), name="S")
    a = random_bf16((7, n))
    want = np.zeros(7, BF16)
    for j in range(n):
        want = want + a[:, j]
    got = tex.build(tex.create_schedule(S.op), [A, S])(a)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_matmul_of_bfloat16_accumulates_in_float32():
    M, N, K = 37, 45, 70
    A = tex.placeholder((M, K), "bfloat16", name="A")
    B = tex.placeholder((K, N), "bfloat16", name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(
        tex.cast("float32", A[i, k]) * tex.cast("float32", B[k, j]), axis=k), name="C")
    s = tex.create_schedule(C.op)
    jo, ji = s[C].split(C.op.axis[1], factor=16)
    s[C].reorder(C.op.axis[0], jo, k, ji)
    s[C].vectorize(ji)
    s[C].parallel(C.op.axis[0])
    a, b = random_bf16((M, K), 1.0), random_bf16((K, N), 1.0)
    got = tex.build(s, [A, B, C])(a, b)
    np.testing.assert_allclose(got, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5,
                               atol=1e-5)


def test_promotion_and_constants():
    x = tex.placeholder((4,), "bfloat16", name="x")
    assert (x[0] + 1.5).dtype == dt.bfloat16
    assert (x[0] + tex.const(3, "int32")).dtype == dt.bfloat16
    assert (x[0] + tex.const(1.0, "float32")).dtype == dt.float32
    assert dt.promote(dt.bfloat16, dt.float16) == dt.float32
    assert dt.as_dtype(np.dtype(BF16)) == dt.bfloat16 and dt.bfloat16.numpy == np.dtype(BF16)
    assert tex.empty((3,), "bfloat16").dtype == np.dtype(BF16)


def test_arguments_of_another_dtype_are_refused():
    f = elementwise(8, lambda a: a * 2.0, ["bfloat16"], "bfloat16")
    with pytest.raises(tex.ArgumentError, match="bfloat16"):
        f(np.ones(8, np.float32))


def cuda_kernel():
    """C = max((A*B + A) / B - 0.1, exp(A) / 2) in bfloat16, and D = float(C) + float16(A),
    one thread per element over 1000 elements."""
    n = 1000
    A, B = (tex.placeholder((n,), "bfloat16", name=name) for name in "AB")
    C = tex.compute((n,), lambda i: tex.max((A[i] * B[i] + A[i]) / B[i] - 0.1,
                                            tex.exp(A[i]) * 0.5), name="C")
    D = tex.compute((n,), lambda i: tex.cast("float32", C[i])
                    + tex.cast("float32", tex.cast("float16", A[i])), name="D")
    s = tex.create_schedule([C.op, D.op])
    for T in (C, D):
        bx, tx = s[T].split(T.op.axis[0], factor=64)
        s[T].bind(bx, tex.thread_axis("blockIdx.x"))
        s[T].bind(tx, tex.thread_axis("threadIdx.x"))
    return tex.build(s, [A, B, C, D], target="cuda")


def check_cuda_results(run):
    a, b = random_bf16(1000, 2.0), random_bf16(1000, 2.0)
    c, d = np.empty(1000, BF16), np.empty(1000, np.float32)
    run(a, b, c, d)
    exp = np.exp(a.astype(np.float32)).astype(BF16) * BF16(0.5)
    np.testing.assert_array_equal(bits(c), bits(np.maximum((a * b + a) / b - BF16(0.1), exp)))
    np.testing.assert_array_equal(d, c.astype(np.float32) + a.astype(np.float16))


def test_cuda_kernels_compute_in_bfloat16():
    kernel = cuda_kernel()
    source = kernel.get_source("cuda")
    assert "#include <cuda_bf16.h>" in source and "const __nv_bfloat16* __restrict__ A" in source
    assert "__float2bfloat16(0.100097656f)" in source  # 0.1 rounded to bfloat16
    if cuda_simulator.compiler() is not None:
        check_cuda_results(kernel.simulate)


@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_cuda_kernels_of_bfloat16_on_the_gpu():
    check_cuda_results(cuda_kernel())


@pytest.mark.parametrize("target", ["llvm", "llvm -mcpu=x86-64-v3", "llvm -mcpu=x86-64-v2"])
@pytest.mark.parametrize("lanes", [1, 16])
def test_subnormal_results_are_kept_on_every_cpu(target, lanes):
    """Products below bfloat16's smallest normal (1.2e-38) and their square roots, bit for
    bit as ml_dtypes gives them: AVX512-BF16's conversion would flush them to zero."""
    from tex.codegen import cpu_support
    if cpu_support.cannot_run(tex.Target(target), ""):
        pytest.skip(f"this CPU cannot run {target}")
    n = 301
    A = tex.placeholder((n,), "bfloat16", name="A")
    B = tex.placeholder((n,), "bfloat16", name="B")
    C = tex.compute((n,), lambda i: A[i] * B[i] + tex.sqrt(tex.abs(A[i])) * 1e-30, name="C")
    s = tex.create_schedule(C.op)
    if lanes > 1:
        _, inner = s[C].split(C.op.axis[0], factor=lanes)
        s[C].vectorize(inner)
    a, b = random_bf16(n, 1e-20), random_bf16(n, 1e-19)
    want = a * b + np.sqrt(np.abs(a)) * BF16(1e-30)
    assert (np.abs(want.astype(np.float32)) < 1.1754944e-38).mean() > 0.5  # mostly subnormal
    got = tex.build(s, [A, B, C], target=target)(a, b)
    np.testing.assert_array_equal(bits(got), bits(want))
