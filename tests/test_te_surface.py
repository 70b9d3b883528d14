"""TE's small surface: TE programs written with `import tex as te` and `tex.tir` for `tvm.tir`,
built and compared with NumPy."""
import pickle
import time

import numpy as np
import pytest

import tex as te
from tex import tir
from tex.runtime import gpu_available
from checks import RNG, random_array

N = 37  # does not divide the split factors below


def build_elementwise(fcompute, in_dtypes, out_dtype=None, factor=8, target=None):
    """A kernel of `fcompute(i, *inputs)` over 1-d inputs of size n, its loop split by
    `factor`; with the placeholders and the output."""
    n = te.size_var("n")
    inputs = [te.placeholder((n,), dtype, name=f"A{k}") for k, dtype in enumerate(in_dtypes)]
    out = te.compute((n,), lambda i: fcompute(i, *(A[i] for A in inputs)), name="B")
    s = te.create_schedule(out.op)
    s[out].split(out.op.axis[0], factor=factor)
    return te.build(s, [*inputs, out], target), inputs, out


def signed_operands(dtype):
    """Dividends and nonzero divisors of every sign combination, size N."""
    a = RNG.integers(-60, 60, size=N).astype(dtype)
    b = RNG.integers(1, 9, size=N).astype(dtype) * RNG.choice([-1, 1], size=N).astype(dtype)
    return a, b


# --- tex.tir: constants, selects, logic --------------------------------------------------
def test_const_select_and_logic_compute_like_numpy():
    def f(i, x):
        inside = tir.all(i >= 2, i < N - 3, x > tir.const(0.0, "float32"))
        edge = tir.any(i == 0, i == N - 1)
        return tir.Select(inside, x * 2.0,
                          tir.if_then_else(edge, tir.const(-1.0, "float32"), x))
    kernel, _, _ = build_elementwise(f, ["float32"])
    x = random_array((N,))
    i = np.arange(N)
    inside = (i >= 2) & (i < N - 3) & (x > 0)
    expected = np.where(inside, x * 2, np.where((i == 0) | (i == N - 1), -1.0, x))
    np.testing.assert_allclose(kernel(x), expected.astype("float32"))


def test_top_level_names_are_the_tir_ones():
    for name in ("const", "if_then_else", "all", "any", "max_value", "min_value", "floordiv",
                 "floormod", "indexdiv", "indexmod", "truncdiv", "truncmod", "div"):
        assert getattr(te, name) is getattr(tir, name), name
    assert te.all().value is True and te.any().value is False


def test_constants_of_a_dtype():
    assert tir.const(2, "int8").dtype == "int8"
    assert tir.const(2).dtype == "int64" and tir.const(2.5).dtype == "float32"
    assert tir.IntImm("int32", 7).value == 7 and tir.IntImm("int32", 7).dtype == "int32"
    assert tir.FloatImm("float64", 0.5).dtype == "float64"
    assert te.max_value("int8").value == 127 and te.min_value("uint8").value == 0
    assert te.max_value("float32").value == float("inf")
    with pytest.raises(te.ExprError, match="IntImm: dtype float32"):
        tir.IntImm("float32", 1)
    with pytest.raises(te.ExprError, match="FloatImm: dtype int32"):
        tir.FloatImm("int32", 1)


def test_casts_in_both_argument_orders():
    kernel, _, _ = build_elementwise(
        lambda i, x: tir.Cast("float32", x) * 0.5 + tir.cast(i, "float32"), ["int32"])
    x = random_array((N,), "int32")
    np.testing.assert_allclose(kernel(x), (x * 0.5 + np.arange(N)).astype("float32"))
    assert tir.cast(tir.const(3), "float32").dtype == "float32"


def test_var_and_size_var_are_symbolic_sizes():
    assert tir.Var("m", "int32").dtype == "int32" and isinstance(tir.Var("m"), te.Var)
    assert tir.SizeVar("m").name == "m" and isinstance(te.size_var("k"), te.Var)
    with pytest.raises(te.ExprError, match="symbolic sizes are integers, got float32"):
        tir.SizeVar("m", "float32")


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_size_var_binds_from_the_arguments(dtype):
    n = te.size_var("n", dtype)
    A = te.placeholder((n, 3), name="A")
    B = te.compute((n, 3), lambda i, j: A[i, j] + tir.Cast("float32", n), name="B")
    s = te.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=4)
    a = random_array((N, 3))
    np.testing.assert_allclose(te.build(s, [A, B])(a), a + N)


# --- tex.tir: division -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "int8"])
def test_floor_and_index_division_round_down(dtype):
    kernel, _, _ = build_elementwise(
        lambda i, a, b: tir.floordiv(a, b) * 100 + tir.indexmod(a, b) + tir.indexdiv(a, b)
        - te.floormod(a, b), [dtype, dtype], factor=5)
    a, b = signed_operands(dtype)
    got = kernel(a, b)
    np.testing.assert_array_equal(got, (a // b * 100 + a % b + a // b - a % b).astype(dtype))


@pytest.mark.parametrize("dtype", ["int32", "int64", "int16"])
def test_trunc_division_rounds_toward_zero(dtype):
    quotient, _, _ = build_elementwise(lambda i, a, b: tir.truncdiv(a, b), [dtype, dtype])
    remainder, _, _ = build_elementwise(lambda i, a, b: tir.truncmod(a, b), [dtype, dtype])
    a, b = signed_operands(dtype)
    np.testing.assert_array_equal(quotient(a, b), np.fix(a / b).astype(dtype))
    np.testing.assert_array_equal(remainder(a, b), np.fmod(a, b))


def test_trunc_division_by_constants_and_its_edges():
    kernel, _, _ = build_elementwise(
        lambda i, a: tir.truncdiv(a, 4) * 10 + tir.truncmod(a, -3), ["int32"], factor=6)
    a = np.arange(-N // 2, N - N // 2, dtype="int32")
    np.testing.assert_array_equal(kernel(a), (np.fix(a / 4) * 10 + np.fmod(a, -3)).astype("int32"))
    both, _, _ = build_elementwise(
        lambda i, a, b: tir.truncdiv(a, b) * 1000 + tir.truncmod(a, b), ["int32", "int32"])
    a = np.array([7, -7, 0, 5, np.iinfo(np.int32).min, 9] * 7, "int32")[:N]
    b = np.array([0, 0, 0, -1, -1, 3] * 7, "int32")[:N]
    with np.errstate(divide="ignore", over="ignore"):
        q = np.where(b == 0, 0, np.fix(a / np.where(b == 0, 1, b)))
    q = np.where(a == np.iinfo(np.int32).min, a, q).astype("int32")  # INT_MIN / -1 wraps
    r = np.where(b == 0, 0, np.fmod(a, np.where(b == 0, 1, b))).astype("int32")
    np.testing.assert_array_equal(both(a, b), (q.astype("int64") * 1000 + r).astype("int32"))


def test_unsigned_trunc_division_is_floor_division():
    kernel, _, _ = build_elementwise(
        lambda i, a, b: tir.truncdiv(a, b) * 16 + tir.truncmod(a, b), ["uint8", "uint8"])
    a = random_array((N,), "uint8")
    b = (random_array((N,), "uint8") % 7 + 1).astype("uint8")
    np.testing.assert_array_equal(kernel(a, b), (a // b * 16 + a % b).astype("uint8"))
    assert "select" not in str(tir.truncdiv(te.var("u", "uint32"), 3))


def test_div_is_true_division_for_floats_and_truncates_integers():
    floats, _, _ = build_elementwise(lambda i, x, y: tir.div(x, y), ["float32", "float32"])
    x, y = random_array((N,)), random_array((N,)) + 3.0
    np.testing.assert_allclose(floats(x, y), x / y, rtol=1e-6)
    ints, _, _ = build_elementwise(lambda i, a, b: te.div(a, b), ["int32", "int32"])
    a, b = signed_operands("int32")
    np.testing.assert_array_equal(ints(a, b), np.fix(a / b).astype("int32"))


def test_trunc_division_of_floats_is_refused():
    x = te.placeholder((3,), name="x")
    with pytest.raises(te.ExprError, match="truncdiv needs integer operands, got float32"):
        tir.truncdiv(x[0], 2.0)
    with pytest.raises(te.ExprError, match="truncmod needs integer operands"):
        tir.truncmod(x[0], x[1])
    with pytest.raises(te.ExprError, match="condition must be bool"):
        tir.Select(x[0], x[1], x[2])


# --- lower and build ---------------------------------------------------------------------
def vector_add(bind_threads=False):
    """C = A + B over a size n, its loop split by 8 (bound to blocks and threads, or not)."""
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute((n,), lambda i: A[i] + B[i], name="C")
    s = te.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=8)
    if bind_threads:
        s[C].bind(outer, te.thread_axis("blockIdx.x"))
        s[C].bind(inner, te.thread_axis("threadIdx.x"))
    return s, [A, B, C]


def test_lower_takes_simple_mode_and_name_and_acts_as_a_module():
    s, args = vector_add()
    text = str(te.lower(s, args, simple_mode=True))
    assert text == str(te.lower(s, args)) and "for i_inner" in text
    mod = te.lower(s, args, name="vadd", simple_mode=True)
    assert mod["vadd"] is mod and list(mod.functions) == ["vadd"]
    assert str(mod).startswith("def vadd(")
    assert te.lower(s, args)["main"].name == "main"
    with pytest.raises(te.ArgumentError, match="one function, 'vadd', and no 'main'"):
        mod["main"]


def test_build_takes_a_lowered_module_and_a_name():
    s, args = vector_add()
    a, b = random_array((N,)), random_array((N,))
    from_module = te.build(te.lower(s, args, name="vadd"), target="llvm")
    np.testing.assert_allclose(from_module(a, b), a + b)
    named = te.build(s, args, "llvm", name="vadd")
    assert named.entry_name == "vadd" and named.get_source().startswith("def vadd(")
    np.testing.assert_allclose(named(a, b), a + b)


def test_build_of_a_lowered_module_for_a_gpu_is_refused():
    s, args = vector_add()
    with pytest.raises(te.BuildError, match="builds for a CPU target, got 'cuda"):
        te.build(te.lower(s, args), target="cuda")
    with pytest.raises(te.BuildError, match="without args"):
        te.build(te.lower(s, args), args)
    gpu_s, gpu_args = vector_add(bind_threads=True)
    with pytest.raises(te.BuildError, match="uses GPU threads"):
        te.build(te.lower(gpu_s, gpu_args))
    with pytest.raises(te.BuildError, match="a schedule is built with its arguments"):
        te.build(s)


# --- targets -----------------------------------------------------------------------------
def test_target_kind_name_and_host():
    target = te.Target("cuda -arch=sm_80", host="llvm")
    assert target.kind == "cuda" and target.kind.name == "cuda" and isinstance(target.kind, str)
    assert isinstance(target.host, te.Target) and target.host.kind.name == "llvm"
    assert te.Target("llvm").host is None and str(target) == "cuda -arch=sm_80"
    assert te.Target("llvm", host=te.Target("llvm")).host == te.Target("llvm")
    assert pickle.loads(pickle.dumps(target)).kind.name == "cuda"
    with pytest.raises(te.BuildError, match="host of target 'cuda' must be a CPU target"):
        te.Target("cuda", host="cuda")
    with pytest.raises(te.BuildError, match="unknown target kind 'rocm'"):
        te.Target("llvm", host="rocm")


def test_build_uses_the_target_of_the_enclosing_with_block():
    assert te.Target.current() is None
    s, args = vector_add(bind_threads=True)
    a, b = random_array((N,)), random_array((N,))
    with te.Target("cuda", host="llvm") as target:
        assert te.Target.current() is target
        with te.Target("llvm") as inner:
            assert te.Target.current() is inner
        kernel = te.build(s, args)
    assert te.Target.current() is None
    assert kernel.target.kind == "cuda" and isinstance(kernel, te.runtime.CudaKernel)
    np.testing.assert_allclose(kernel.simulate(a, b), a + b)
    cpu_s, cpu_args = vector_add()
    assert te.build(cpu_s, cpu_args).target.kind == "llvm"
    with pytest.raises(te.BuildError, match="no target is set"):
        te.Target.current(allow_none=False)


def test_build_takes_target_host():
    s, args = vector_add(bind_threads=True)
    kernel = te.build(s, args, target="cuda", target_host="llvm")
    assert kernel.target == te.Target("cuda")  # the host changes nothing built
    with pytest.raises(te.BuildError, match="must be a CPU target"):
        te.build(s, args, target="cuda", target_host="cuda")


# --- kernels: sources, modules, timing ---------------------------------------------------
def test_cuda_kernel_source_is_its_imported_module():
    s, args = vector_add(bind_threads=True)
    kernel = te.build(s, args, "cuda")
    assert len(kernel.imported_modules) == 1
    source = kernel.imported_modules[0].get_source()
    assert "__global__" in source and source == kernel.get_source("cuda")
    assert kernel.get_source().startswith("def main(")
    cpu_s, cpu_args = vector_add()
    assert te.build(cpu_s, cpu_args).imported_modules == []


def test_time_evaluator_times_a_call_and_keeps_results():
    s, args = vector_add()
    f = te.build(s, args, "llvm", name="vadd")
    dev = te.cpu(0)
    a, b = te.nd.array(random_array((N,)), dev), te.nd.array(random_array((N,)), dev)
    c = te.nd.empty((N,), "float32", dev)
    timer = f.time_evaluator(f.entry_name, dev, number=4, repeat=3)
    result = timer(a, b, c)
    np.testing.assert_allclose(c.numpy(), a.numpy() + b.numpy())
    assert len(result.results) == 3 and all(t > 0 for t in result.results)
    assert result.min <= result.median <= result.max and result.mean > 0
    assert result.std >= 0 and "mean (ms)" in str(result)
    start = time.perf_counter()
    f.time_evaluator(f.entry_name, dev, number=1, min_repeat_ms=20)(a, b, c)
    assert time.perf_counter() - start >= 0.02  # one call is microseconds: more ran


def test_time_evaluator_errors():
    s, args = vector_add()
    f = te.build(s, args)
    with pytest.raises(te.ArgumentError, match="no function 'vadd'; pass f.entry_name"):
        f.time_evaluator("vadd", te.cpu(0))
    with pytest.raises(te.ArgumentError, match="runs on a cpu device, got .*cuda"):
        f.time_evaluator(f.entry_name, te.cuda(0))
    with pytest.raises(te.ArgumentError, match="number must be an int >= 1, got 0"):
        f.time_evaluator(f.entry_name, te.cpu(0), number=0)
    with pytest.raises(te.ArgumentError, match="min_repeat_ms must be a number >= 0"):
        f.time_evaluator(f.entry_name, te.cpu(0), min_repeat_ms=-1)


# --- devices and tex.nd ------------------------------------------------------------------
def test_nd_arrays_on_the_cpu_are_numpy_arrays():
    x = random_array((5, 3))
    a = te.nd.array(x)
    assert isinstance(a, np.ndarray) and a.device == te.cpu(0)
    np.testing.assert_array_equal(a.numpy(), x)
    assert type(a.asnumpy()) is np.ndarray and a.numpy() is not a
    x[0, 0] = 99.0
    assert a[0, 0] != 99.0  # a copy
    e = te.nd.empty((4,), "int32", te.device("llvm"))
    assert e.shape == (4,) and e.dtype == "int32"
    assert te.cpu().device_type == 1 and te.cuda(0).device_type == 2
    assert str(te.cuda(0)) == "cuda(0)" and te.cpu(0).exist and te.device("gpu") == te.cuda(0)


def test_device_errors():
    with pytest.raises(te.ArgumentError, match="unknown device kind 'tpu'"):
        te.device("tpu")
    with pytest.raises(te.ArgumentError, match="non-negative int, got -1"):
        te.cpu(-1)
    with pytest.raises(te.ArgumentError, match="expected a device such as tex.cpu"):
        te.nd.array(np.zeros(3), "cpu")
    with pytest.raises(te.DeviceError, match="GPU 0, got cuda.1"):
        te.nd.empty((3,), "float32", te.cuda(1))
    with pytest.raises(te.ArgumentError, match="shape must be non-negative"):
        te.nd.empty((-1,), "float32")


@pytest.mark.skipif(gpu_available(), reason="checks the error without a GPU")
def test_nd_arrays_on_a_missing_gpu_say_so():
    with pytest.raises(te.DeviceError, match="needs an NVIDIA GPU"):
        te.nd.array(np.zeros(3, "float32"), te.cuda(0))
    assert not te.cuda(0).exist


@pytest.mark.skipif(not gpu_available(), reason="needs a GPU")
def test_nd_arrays_on_the_gpu_run_a_cuda_kernel():
    s, args = vector_add(bind_threads=True)
    f = te.build(s, args, "cuda")
    dev = te.cuda(0)
    x, y = random_array((N,)), random_array((N,))
    a, b, c = te.nd.array(x, dev), te.nd.array(y, dev), te.nd.empty((N,), "float32", dev)
    f(a, b, c)
    np.testing.assert_allclose(c.asnumpy(), x + y)
    assert f.time_evaluator(f.entry_name, dev, number=3)(a, b, c).mean > 0


# --- errors ------------------------------------------------------------------------------
def test_tvm_error_catches_every_tex_error():
    assert te.TVMError is te.TexError and te.error.TVMError is te.TexError
    A = te.placeholder((4,), name="A")
    B = te.compute((4,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B.op)
    with pytest.raises(te.TVMError, match="factor"):
        s[B].split(B.op.axis[0], factor=0)
    with pytest.raises(te.error.TVMError):
        te.build(s, [A, B], target="opencl")


def test_nd_arrays_take_a_device_keyword_and_copy_from_and_to_arrays():
    a = te.nd.empty((4,), "float32", device=te.cpu(0))
    assert a.copyfrom(np.arange(4, dtype="float32")) is a
    np.testing.assert_array_equal(a.numpy(), np.arange(4))
    b = te.nd.array(np.zeros(4, "float32"), device=te.cpu(0))
    assert a.copyto(b) is b and b.device == te.cpu(0)
    np.testing.assert_array_equal(b.asnumpy(), np.arange(4))
    c = a.copyto(te.cpu(0))
    assert isinstance(c, te.nd.NDArray) and c is not a
    np.testing.assert_array_equal(c, a)
    with pytest.raises(te.ArgumentError, match="copyfrom: the source has shape \\(3,\\)"):
        a.copyfrom(np.zeros(3, "float32"))
    with pytest.raises(te.ArgumentError, match="copyto: the target has shape"):
        a.copyto(np.zeros(5, "float32"))
    with pytest.raises(te.ArgumentError, match="copyto: expected an array"):
        a.copyto("cpu")
