"""TE's math intrinsics (`tex.sin`, `tex.round`, `tex.ldexp`, `tex.clz`, `tex.isnan`,
`tex.call_pure_extern`, ...) against NumPy: compiled for the CPU as a scalar loop and as a
vectorized one (sizes no multiple of the vector width), built for CUDA and run in the CPU
simulator (and on a GPU where there is one), exported in a library that calls libm, and
evaluated as constants. Inputs are
random values in each function's domain plus edge values (NaN, infinities, signed zeros,
ties, the largest and the smallest floats)."""
import shutil

import ml_dtypes
import numpy as np
import pytest

import tex
from tex.arith import evaluate
from tex.codegen import llvm_calls
from tex.codegen.object_file import undefined_symbols
from tex.dtype import as_dtype
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

RNG = np.random.default_rng(7)  # reseeded before each test: the same data in any order
RANDOM = 45  # random values after the edge values: no input size is a multiple of 8

#: name -> (tex function, NumPy reference, (low, high) of random arguments, largest error in
#: ulps of float32/float64 results). References are computed in float64 and rounded.
FLOAT_FUNCTIONS = {
    "nearbyint": (tex.nearbyint, np.rint, (-20, 20), 0),
    "round": (tex.round, np.round, (-20, 20), 0),
    "trunc": (tex.trunc, np.trunc, (-20, 20), 0),
    "exp2": (tex.exp2, np.exp2, (-30, 30), 2),
    "exp10": (tex.exp10, lambda x: np.power(10.0, x), (-10, 10), 2),
    "log2": (tex.log2, np.log2, (1e-3, 1e3), 2),
    "log10": (tex.log10, np.log10, (1e-3, 1e3), 2),
    "log1p": (tex.log1p, np.log1p, (-0.999, 1e3), 2),
    "sin": (tex.sin, np.sin, (-10, 10), 2),
    "cos": (tex.cos, np.cos, (-10, 10), 2),
    "tan": (tex.tan, np.tan, (-10, 10), 2),
    "sinh": (tex.sinh, np.sinh, (-20, 20), 2),
    "cosh": (tex.cosh, np.cosh, (-20, 20), 2),
    "asin": (tex.asin, np.arcsin, (-1, 1), 2),
    "acos": (tex.acos, np.arccos, (-1, 1), 2),
    "atan": (tex.atan, np.arctan, (-50, 50), 2),
    "asinh": (tex.asinh, np.arcsinh, (-50, 50), 2),
    "acosh": (tex.acosh, np.arccosh, (1, 50), 2),
    "atanh": (tex.atanh, np.arctanh, (-1, 1), 2),
    "atan2": (tex.atan2, np.arctan2, (-5, 5), 2),
    "hypot": (tex.hypot, np.hypot, (-100, 100), 1),
    "copysign": (tex.copysign, np.copysign, (-5, 5), 0),
    "nextafter": (tex.nextafter, np.nextafter, (-5, 5), 0),  # in the dtype, not float64
    "fmod": (tex.fmod, np.fmod, (-20, 20), 0),
}
BINARY = ("atan2", "hypot", "copysign", "nextafter", "fmod")
PREDICATES = {"isnan": (tex.isnan, np.isnan), "isinf": (tex.isinf, np.isinf),
              "isfinite": (tex.isfinite, np.isfinite)}
BIT_COUNTS = {"clz": tex.clz, "popcount": tex.popcount}
LDEXP_EXPONENTS = [0, 1, -1, 10, -10, 127, 128, -126, -149, -150, 1023, -1074, 2000, -2000,
                   2**31 - 1, -2**31]

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
needs_simulator = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")


@pytest.fixture(autouse=True)
def _reseeded():
    global RNG
    RNG = np.random.default_rng(7)


# --- data and references --------------------------------------------------------------------
def edge_values(dtype) -> np.ndarray:
    """NaN, infinities, signed zeros, ties, the largest and the smallest (subnormal) floats."""
    info = ml_dtypes.finfo(dtype)
    return np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 3.5,
                     float(info.max), -float(info.max), float(info.smallest_subnormal), 1e-3],
                    dtype)


def random_values(dtype, low, high, count=RANDOM) -> np.ndarray:
    """Random values in [low, high], one in three of them a multiple of 1/2 (ties)."""
    values = RNG.uniform(low, high, count)
    values[::3] = np.clip(np.round(values[::3] * 2) / 2, low, high)
    return values.astype(dtype)


def unary_inputs(dtype, domain):
    return [np.concatenate([edge_values(dtype), random_values(dtype, *domain)])]


def binary_inputs(dtype, domain):
    """Every pair of edge values, then random pairs."""
    edges = edge_values(dtype)
    x, y = np.meshgrid(edges, edges)
    return [np.concatenate([x.ravel(), random_values(dtype, *domain)]),
            np.concatenate([y.ravel(), random_values(dtype, *domain)])]


def reference(name: str, args, dtype) -> np.ndarray:
    """NumPy's result of `name`: computed in float64 and rounded to `dtype` (nextafter in
    `dtype` itself)."""
    fn = FLOAT_FUNCTIONS[name][1]
    with np.errstate(all="ignore"):
        if name == "nextafter":  # y where x == y, as C says (NumPy's float16 returns x)
            return np.where(args[0] == args[1], args[1], fn(*args))
        return fn(*(a.astype(np.float64) for a in args)).astype(dtype)


def assert_within_ulps(got, want, ulps, what=""):
    """`got` equals `want` within `ulps` units in the last place of `want`'s dtype, NaN where
    it is NaN, the same infinities and the same sign on zeros; `what` names the function."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    nan = np.isnan(want.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float64)), nan, err_msg=what)
    finite = np.isfinite(want.astype(np.float64))
    np.testing.assert_array_equal(got[~finite & ~nan], want[~finite & ~nan], err_msg=what)
    zero = want.astype(np.float64) == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg=what)
    g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
    with np.errstate(over="ignore"):  # the spacing after the largest float is infinite
        error = np.abs(g - w) / np.spacing(np.abs(want[finite])).astype(np.float64)
    worst = int(np.argmax(error)) if error.size else 0
    assert error.size == 0 or error[worst] <= ulps, \
        f"{what}: {error[worst]} ulps: got {g[worst]!r}, want {w[worst]!r}"


# --- kernels ------------------------------------------------------------------------------------
def _stage(fn, inputs, name):
    n = inputs[0].shape[0]
    return tex.compute((n,), lambda i: fn(*(x[i] for x in inputs)), name=name)


def cpu_kernel(fns, dtypes, n, name="main"):
    """One kernel computing each of `fns` on inputs of `dtypes` twice: a scalar loop and a
    loop split by 8 and vectorized. Outputs in order: fn 0 scalar, fn 0 vector, fn 1, ..."""
    inputs = [tex.placeholder((n,), d, name=f"X{k}") for k, d in enumerate(dtypes)]
    outputs = []
    for k, fn in enumerate(fns):
        outputs += [_stage(fn, inputs, f"S{k}"), _stage(fn, inputs, f"V{k}")]
    s = tex.create_schedule([t.op for t in outputs])
    for vector in outputs[1::2]:
        s[vector].vectorize(s[vector].split(vector.op.axis[0], factor=8)[1])
    return tex.build(s, inputs + outputs, name=name)


def gpu_kernel(cases):
    """One CUDA module: for each (fn, input arrays) a stage on inputs of its own, blocks of
    16 threads. Returns the kernel and the inputs in argument order."""
    placeholders, arrays, outputs = [], [], []
    for k, (fn, args) in enumerate(cases):
        inputs = [tex.placeholder(a.shape, str(a.dtype), name=f"X{k}_{j}")
                  for j, a in enumerate(args)]
        output = _stage(fn, inputs, f"Y{k}")
        placeholders += inputs
        arrays += args
        outputs.append(output)
    s = tex.create_schedule([t.op for t in outputs])
    for output in outputs:
        block, thread = s[output].split(output.op.axis[0], factor=16)
        s[output].bind(block, tex.thread_axis("blockIdx.x"))
        s[output].bind(thread, tex.thread_axis("threadIdx.x"))
    return tex.build(s, placeholders + outputs, target="cuda"), arrays


# --- float functions on the CPU ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(FLOAT_FUNCTIONS))
def test_float_function_scalar_and_vector(name, dtype):
    fn, _, domain, ulps = FLOAT_FUNCTIONS[name]
    make_inputs = binary_inputs if name in BINARY else unary_inputs
    args = make_inputs(np.dtype(dtype), domain)
    want = reference(name, args, np.dtype(dtype))
    scalar, vector = cpu_kernel([fn], [dtype] * len(args), len(args[0]))(*args)
    assert_within_ulps(scalar, want, ulps, name)
    assert_within_ulps(vector, want, ulps, name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ldexp_with_int32_and_clamped_int64_exponents(dtype):
    base = np.concatenate([edge_values(np.dtype(dtype)), random_values(dtype, -4, 4, 4)])
    x = np.tile(base, len(LDEXP_EXPONENTS))[:-3]
    n32 = np.repeat(np.array(LDEXP_EXPONENTS, "int32"), len(base))[:-3]
    n64 = n32.astype("int64") * 1001  # beyond int32: clamped, as NumPy's results are
    kernel = cpu_kernel([lambda a, b, c: tex.ldexp(a, b), lambda a, b, c: tex.ldexp(a, c),
                         lambda a, b, c: tex.ldexp(a, 3)], [dtype, "int32", "int64"], len(x))
    results = kernel(x, n32, n64)
    with np.errstate(over="ignore"):
        wants = [np.ldexp(x, n32), np.ldexp(x, n64), np.ldexp(x, 3)]
    for got, want in zip(results, [w for w in wants for _ in (0, 1)]):
        assert_within_ulps(got, want, 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_floats_compute_in_float32(dtype):
    d = as_dtype(dtype).numpy
    x, y = binary_inputs(d, (-3, 3))
    cases = ("sin", "exp10", "round", "atan2", "nextafter", "fmod", "acosh")
    results = cpu_kernel([_on_inputs(name) for name in cases], [dtype, dtype], len(x))(x, y)
    for k, name in enumerate(cases):
        args = [x, y] if name in BINARY else [x]
        ulps = 0 if FLOAT_FUNCTIONS[name][3] == 0 else 1  # float32, then rounded
        for got in results[2 * k: 2 * k + 2]:
            assert_within_ulps(got, reference(name, args, d), ulps, name)


def _on_inputs(name: str):
    """FLOAT_FUNCTIONS[name] applied to the first input, or the first two if it has two."""
    fn = FLOAT_FUNCTIONS[name][0]
    return (lambda a, b: fn(a, b)) if name in BINARY else (lambda a, b: fn(a))


def test_vector_loops_use_vector_intrinsics():
    kernel = cpu_kernel([lambda a: tex.round(a) + tex.trunc(a) + tex.copysign(a, -a)],
                        ["float32"], 37)
    ll = kernel.get_source("ll")
    for intrinsic in ("llvm.roundeven.v8f32", "llvm.trunc.v8f32", "llvm.copysign.v8f32"):
        assert intrinsic in ll


def test_libm_calls_where_llvm_has_no_intrinsic(monkeypatch, cache_dir):
    """An LLVM older than 17 has none of llvm.tan, llvm.atan2, llvm.exp10, llvm.ldexp: then
    tex calls tanf, atan2f, exp10f and ldexpf itself, lane by lane."""
    monkeypatch.setattr(llvm_calls, "_LLVM_MAJOR", 16)
    x = unary_inputs(np.dtype("float32"), (-3, 3))[0]
    fns = [tex.tan, lambda a: tex.atan2(a, 2.0), tex.exp10, lambda a: tex.ldexp(a, -130)]
    kernel = cpu_kernel(fns, ["float32"], len(x))
    assert all(f"@{name}(" in kernel.get_source("ll") for name in ("tanf", "atan2f", "ldexpf"))
    with np.errstate(all="ignore"):
        wants = [np.tan(x), np.arctan2(x, np.float32(2)), np.power(10, x.astype(np.float64)),
                 np.ldexp(x, -130)]
    for k, got in enumerate(kernel(x)):
        assert_within_ulps(got, wants[k // 2].astype(np.float32), 2)


# --- integers and predicates --------------------------------------------------------------------
def _bit_reference(name: str, a: np.ndarray) -> np.ndarray:
    bits = a.dtype.itemsize * 8
    unsigned = [int(v) for v in a.view(f"uint{bits}")]
    counts = [bits - v.bit_length() if name == "clz" else v.bit_count() for v in unsigned]
    return np.array(counts).astype(a.dtype)


def integer_inputs(dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    edges = [0, 1, 2, 3, 127, 128, 255, 256, -1, -2, -128, -256, info.max, info.min,
             info.max // 2 + 1]
    edges = [v for v in edges if info.min <= v <= info.max]
    values = RNG.integers(info.min, info.max, RANDOM, dtype=dtype, endpoint=True)
    return np.concatenate([np.array(edges, dtype), values])


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint16", "uint32", "uint64"])
def test_clz_and_popcount_count_twos_complement_bits(dtype):
    a = integer_inputs(dtype)
    results = cpu_kernel(list(BIT_COUNTS.values()), [dtype], len(a))(a)
    for k, name in enumerate(BIT_COUNTS):
        for got in results[2 * k: 2 * k + 2]:  # clz is int32 as in TVM, popcount a's dtype
            assert got.dtype == np.dtype("int32" if name == "clz" else dtype)
            np.testing.assert_array_equal(got, _bit_reference(name, a))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_predicates_return_bool(dtype):
    a = unary_inputs(as_dtype(dtype).numpy, (-1e3, 1e3))[0]
    fns = [fn for fn, _ in PREDICATES.values()]
    fns.append(lambda x: tex.if_then_else(tex.isnan(x), tex.const(0, dtype), x))
    results = cpu_kernel(fns, [dtype], len(a))(a)
    for k, (_, ref) in enumerate(PREDICATES.values()):
        for got in results[2 * k: 2 * k + 2]:
            assert got.dtype == np.bool_
            np.testing.assert_array_equal(got, ref(a.astype(np.float64)))
    np.testing.assert_array_equal(results[-1], np.where(np.isnan(a.astype(float)),
                                                        a.dtype.type(0), a))


def test_integers_are_never_nan_nor_infinite():
    N = tex.placeholder((5,), "int32", name="N")
    assert str(tex.isnan(N[0])) == "False" and str(tex.isfinite(N[0])) == "True"
    results = cpu_kernel([tex.isnan, tex.isinf, tex.isfinite], ["int32"], 19)(
        np.arange(19, dtype="int32"))
    assert [r.dtype for r in results] == [np.bool_] * 6
    assert [bool(r.all()) for r in results] == [False, False, False, False, True, True]


# --- call_pure_extern, printing, evaluation, errors ---------------------------------------
def test_call_pure_extern_calls_libm_by_name():
    x = random_values("float32", -3, 3, 37)
    y = random_values("float64", -3, 3, 37)
    kernel = cpu_kernel([lambda a, b: tex.call_pure_extern("float32", "expf", a) +
                         tex.cast("float32", tex.call_pure_extern("float64", "atan2", b, 2.0))],
                        ["float32", "float64"], 37)
    want = np.exp(x.astype(np.float64)) + np.arctan2(y, 2.0).astype(np.float32)
    for got in kernel(x, y):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_extern_functions_that_cannot_be_called_are_build_errors():
    with pytest.raises(tex.BuildError, match="calls tex_no_such_function, which neither"):
        cpu_kernel([lambda a: tex.call_pure_extern("float32", "tex_no_such_function", a)],
                   ["float32"], 5)
    with pytest.raises(tex.BuildError, match="the kernel's own functions are named tex_main"):
        cpu_kernel([lambda a: tex.call_pure_extern("float32", "tex_main_body", a)],
                   ["float32"], 5)
    def extern(b):
        return tex.cast("float32", tex.call_pure_extern("float64", "asinhf", b))

    for first, fn in (("float", lambda a, b: tex.asinh(a) + extern(b)),
                      ("double", lambda a, b: extern(b) + tex.asinh(a))):
        second = "double" if first == "float" else "float"
        with pytest.raises(tex.BuildError, match=f"the kernel calls asinhf both as {first} "
                           rf"\({first}\) and as {second} \({second}\)"):
            cpu_kernel([fn], ["float32", "float64"], 5)


def test_printed_as_calls():
    A = tex.placeholder((9,), name="A")
    B = tex.compute((9,), lambda i: tex.atan2(tex.sin(A[i]), 2.0) +
                    tex.call_pure_extern("float32", "expf", A[i]), name="B")
    text = str(tex.lower(tex.create_schedule(B.op), [A, B]))
    assert "B[i] = atan2(sin(A[i]), 2.0) + expf(A[i])" in text


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constant_evaluation_agrees_with_numpy(dtype):
    d = np.dtype(dtype)
    for name, (fn, _, domain, ulps) in FLOAT_FUNCTIONS.items():
        args = (binary_inputs if name in BINARY else unary_inputs)(d, domain)
        got = np.array([evaluate(fn(*(tex.const(float(a[k]), dtype) for a in args)), {})
                        for k in range(len(args[0]))], d)
        assert_within_ulps(got, reference(name, args, d), ulps, name)
    a = integer_inputs("int32")
    for name, fn in BIT_COUNTS.items():
        got = [evaluate(fn(tex.const(int(v), "int32")), {}) for v in a]
        np.testing.assert_array_equal(got, _bit_reference(name, a))
    assert evaluate(tex.ldexp(tex.const(1.5, dtype), tex.const(-3, "int32")), {}) == 0.1875
    assert evaluate(tex.isinf(tex.const(float("-inf"), dtype)), {}) is True


def test_wrong_arguments_name_what_was_expected():
    F = tex.placeholder((4,), name="F")
    with pytest.raises(tex.ExprError, match="clz needs an integer argument, got float32"):
        tex.clz(F[0])
    with pytest.raises(tex.ExprError, match="integer exponent, got float32"):
        tex.ldexp(F[0], F[1])
    with pytest.raises(tex.ExprError, match="C function name, got 'exp f'"):
        tex.call_pure_extern("float32", "exp f", F[0])
    with pytest.raises(tex.ExprError, match="float32, float64 or integers here, got float16"):
        tex.call_pure_extern("float16", "expf", F[0])
    with pytest.raises(tex.ExprError, match="unknown intrinsic 'sine'"):
        tex.expr.Call("sine", (F[0],))


# --- CUDA (built with NVRTC; run in the CPU simulator, and on a GPU where there is one) ------
DEVICES = [pytest.param("simulator", marks=needs_simulator), pytest.param("gpu", marks=needs_gpu)]


def run_cuda(kernel, arrays, device):
    return kernel.simulate(*arrays) if device == "simulator" else kernel(*arrays)


def _gpu_float_cases(d):
    """(fn, inputs) of every float function, the predicates and ldexp on `d`, and for each
    (name, expected result, largest error in ulps or None: exactly equal)."""
    cases, expected = [], []
    for name, (fn, _, domain, ulps) in FLOAT_FUNCTIONS.items():
        args = (binary_inputs if name in BINARY else unary_inputs)(d, domain)
        cases.append((fn, args))
        expected.append((name, reference(name, args, d), ulps if d.itemsize > 2 else
                         min(ulps, 1)))
    x = unary_inputs(d, (-100, 100))[0]
    for name, (fn, ref) in PREDICATES.items():
        cases.append((fn, [x]))
        expected.append((name, ref(x.astype(np.float64)), None))
    n = np.resize(np.array(LDEXP_EXPONENTS, "int32"), len(x))
    cases.append((tex.ldexp, [x, n]))
    with np.errstate(over="ignore"):
        expected.append(("ldexp", np.ldexp(x.astype(np.float64), n).astype(d), 0))
    return cases, expected


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_cuda_float_functions(dtype, device):
    cases, expected = _gpu_float_cases(as_dtype(dtype).numpy)
    if dtype == "float32":
        x = random_values(dtype, -3, 3, 37)
        cases.append((lambda a: tex.call_pure_extern("float32", "expf", a), [x]))
        expected.append(("expf", np.exp(x.astype(np.float64)).astype(dtype), 2))
    kernel, arrays = gpu_kernel(cases)
    if dtype == "float32":
        source = kernel.get_source("cuda")
        assert "rintf(" in source and "exp10f(" in source and "expf(" in source
    for got, (name, want, ulps) in zip(run_cuda(kernel, arrays, device), expected):
        if ulps is None:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:  # CUDA's math library is within 4 ulps where the host's libm is within 2
            assert_within_ulps(got, want, ulps if device == "simulator" or ulps == 0 else
                               max(ulps, 4), name)


@pytest.mark.parametrize("device", DEVICES)
def test_cuda_bit_counts(device):
    dtypes = ["int8", "int32", "int64", "uint16", "uint32", "uint64"]
    cases = [(fn, [integer_inputs(d)]) for d in dtypes for fn in BIT_COUNTS.values()]
    kernel, arrays = gpu_kernel(cases)
    for got, (fn, (a,)) in zip(run_cuda(kernel, arrays, device), cases):
        name = "clz" if fn is tex.clz else "popcount"
        np.testing.assert_array_equal(got, _bit_reference(name, a), err_msg=f"{name} {a.dtype}")


# --- exported libraries ----------------------------------------------------------------------
@needs_cc
def test_exported_library_links_libm_and_runs(tmp_path):
    x, y = random_values("float32", 0.1, 3, 37), random_values("float64", 0.1, 3, 37)
    kernel = cpu_kernel([lambda a, b: tex.sin(a) + tex.atan2(a, 2.0) + tex.exp10(a) +
                         tex.log1p(a) + tex.fmod(a, 0.7),
                         lambda a, b: tex.call_pure_extern("float64", "cbrt", b) + tex.tan(b)],
                        ["float32", "float64"], 37, name="libm_user")
    path = tex.export_library([kernel], tmp_path / "libm_user.so")
    assert {"sinf", "atan2f", "exp10f", "log1pf", "fmodf", "cbrt", "tan"} <= \
        undefined_symbols(path.read_bytes())
    results = tex.load_library(path)[kernel.name](x, y)
    x64 = x.astype(np.float64)
    want = [np.sin(x64) + np.arctan2(x64, 2) + 10 ** x64 + np.log1p(x64) + np.fmod(x64, 0.7),
            np.cbrt(y) + np.tan(y)]
    for k, got in enumerate(results):
        np.testing.assert_allclose(got, want[k // 2], rtol=1e-6 if k < 2 else 1e-13)
