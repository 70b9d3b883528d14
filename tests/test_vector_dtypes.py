"""Tensors of vector dtypes ("float32x4", "int8x4", "float16x2"), as TVM TE has them: each
element is a vector of lanes, arithmetic is lane-wise, a constant is in every lane, and
the arrays passed have the lanes as a last dimension. Each kernel is compared with NumPy
on random data, at sizes that the split factors do not divide."""
import shutil

import numpy as np
import pytest

import tex
from tex import intrin_rules
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

RNG = np.random.default_rng(7)
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
bx, tx = tex.thread_axis("blockIdx.x"), tex.thread_axis("threadIdx.x")


def random(shape, dtype):
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return RNG.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype)
    return RNG.uniform(-4, 4, shape).astype(dtype)


# --- dtypes ------------------------------------------------------------------------

def test_vector_dtype_names_round_trip():
    for name, element, lanes in [("float32x4", "float32", 4), ("int8x4", "int8", 4),
                                 ("float16x2", "float16", 2), ("bfloat16x2", "bfloat16", 2),
                                 ("int32x2", "int32", 2), ("uint8x16", "uint8", 16)]:
        dtype = tex.dtype.as_dtype(name)
        assert (str(dtype), dtype.lanes, str(dtype.element)) == (name, lanes, element)
        assert dtype == name and tex.placeholder((3,), name).dtype == name
    assert tex.dtype.as_dtype("floatx2") == "float32x2"  # TVM's "float" is float32


@pytest.mark.parametrize("name, message", [
    ("float32x", "lanes after 'x' must be a number >= 2.*got 'none'"),
    ("float32x1", "got '1'"), ("float32x0", "got '0'"),
    ("float33x4", "unsupported dtype 'float33x4'.*as in 'float32x4'")])
def test_malformed_vector_dtypes_are_refused(name, message):
    with pytest.raises(tex.ExprError, match=message):
        tex.placeholder((4,), name, name="A")


def test_a_vector_constant_is_the_scalar_in_every_lane():
    c = tex.const(1, "float32x2")
    assert c.dtype == "float32x2" and str(c) == "broadcast(1.0, 2)"
    assert tex.const(3, "int8x4").astype("float32x4").dtype == "float32x4"
    assert tex.max_value("int8x4").dtype == "int8x4"
    A = tex.placeholder((4,), "float32x4", name="A")
    with pytest.raises(tex.ExprError, match="cannot cast float32x4 .* to int32x2: the lanes"):
        A[0].astype("int32x2")
    with pytest.raises(tex.ExprError, match="cannot combine vectors of 4 and 2 lanes"):
        A[0] + tex.const(1, "float32x2")


# --- CPU ---------------------------------------------------------------------------

def _vector_add(lanes, n):
    A = tex.placeholder((n,), name="A", dtype=f"float32x{lanes}")
    B = tex.compute((n,), lambda i: A[i] + tex.const(1, A.dtype), name="B")
    return A, B


@pytest.mark.parametrize("lanes", [2, 4])
def test_float_vector_add_with_a_constant(lanes):
    n = 37
    A, B = _vector_add(lanes, n)
    s = tex.create_schedule(B.op)
    f = tex.build(s, [A, B], "llvm")
    assert f"<{lanes} x float>" in f.get_source("ll")
    a = random((n, lanes), "float32")
    b = np.empty((n, lanes), "float32")
    f(a, b)
    np.testing.assert_array_equal(b, a + 1)


@pytest.mark.parametrize("lanes", [2, 4])
def test_split_parallel_and_compute_at(lanes):
    """The vadd pipeline of TVM's LLVM tests: a copy stage computed at the outer parallel
    loop, both stages split, their inner loops vectorized (over vector elements: where
    a split does not divide, the last group of iterations stays a loop)."""
    n = 61
    A = tex.placeholder((n,), name="A", dtype=f"float32x{lanes}")
    B = tex.compute((n,), lambda i: A[i], name="B")
    C = tex.compute((n,), lambda i: B[i] + tex.const(1, A.dtype), name="C")
    s = tex.create_schedule(C.op)
    xo, xi = s[C].split(C.op.axis[0], nparts=3)
    _, xi = s[C].split(xi, factor=4)
    s[C].parallel(xo)
    s[C].vectorize(xi)
    s[B].compute_at(s[C], xo)
    _, bi = s[B].split(B.op.axis[0], factor=3)
    s[B].vectorize(bi)
    f = tex.build(s, [A, C], "llvm")
    a = tex.nd.empty((n,), A.dtype).copyfrom(random((n, lanes), "float64"))
    c = tex.nd.empty((n,), C.dtype)
    assert a.shape == c.shape == (n, lanes)
    f(a, c)
    np.testing.assert_array_equal(c.numpy(), a.numpy() + 1)


def test_vectorize_over_vector_elements_widens_contiguous_accesses():
    """Vectorizing a loop over float32x2 elements (or around a vectorized loop) makes
    vectors of both: 4 iterations of 2 lanes are one 8-lane vector (the last, partial
    group a serial loop). A stride between the elements leaves the loop serial, each
    iteration a 2-lane vector."""
    n = 37
    A = tex.placeholder((2 * n,), "float32x2", name="A")
    B = tex.compute((n,), lambda i: A[i] * 2.0, name="B")
    C = tex.compute((n,), lambda i: A[2 * i] * 2.0, name="C")
    a = random((2 * n, 2), "float32")
    for out, want, lanes in ((B, a[:n] * 2, {8, 2}), (C, a[::2] * 2, {2})):
        s = tex.create_schedule(out.op)
        _, xi = s[out].split(out.op.axis[0], factor=4)
        s[out].vectorize(xi)
        f = tex.build(s, [A, out])
        vectors = {line.split("<")[1].split(">")[0] for line in f.get_source("ll").splitlines()
                   if "store <" in line}
        assert vectors == {f"{k} x float" for k in lanes}
        np.testing.assert_array_equal(f(a), want)
    X = tex.placeholder((5, 8), name="X")
    Y = tex.compute((5, 8), lambda i, j: X[i, j] * 2, name="Y")
    s = tex.create_schedule(Y.op)
    s[Y].vectorize(Y.op.axis[1])
    s[Y].vectorize(Y.op.axis[0])
    assert "ramp(0, 1, 32)" in str(tex.lower(s, [X, Y]))  # rows 0-3 at once, then row 4
    x = random((5, 8), "float32")
    np.testing.assert_array_equal(tex.build(s, [X, Y])(x), x * 2)


def test_int8x4_and_float16x2_lane_wise():
    n = 29
    A = tex.placeholder((n,), "int8x4", name="A")
    B = tex.placeholder((n,), "int8x4", name="B")
    C = tex.compute((n,), lambda i: tex.max(A[i] * 3, B[i]) - A[i] + 2, name="C")
    X = tex.placeholder((n,), "float16x2", name="X")
    Y = tex.compute((n,), lambda i: X[i] * X[i] + 0.5, name="Y")
    for out, args in ((C, [A, B, C]), (Y, [X, Y])):
        s = tex.create_schedule(out.op)
        xo, _ = s[out].split(out.op.axis[0], factor=8)
        s[out].parallel(xo)
        f = tex.build(s, args, "llvm")
        if out is C:
            a, b = random((n, 4), "int8"), random((n, 4), "int8")
            want = (np.maximum(a * np.int8(3), b) - a + np.int8(2)).astype("int8")
            np.testing.assert_array_equal(f(a, b), want)
        else:
            x = random((n, 2), "float16")
            np.testing.assert_allclose(f(x), x * x + np.float16(0.5), rtol=1e-3)


def test_bfloat16x2_on_the_cpu_and_in_cuda():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    n = 21
    A = tex.placeholder((n,), "bfloat16x2", name="A")
    B = tex.compute((n,), lambda i: A[i] * A[i] + tex.const(1, A.dtype), name="B")
    a = RNG.uniform(-3, 3, (n, 2)).astype(ml_dtypes.bfloat16)
    want = a * a + ml_dtypes.bfloat16(1)  # rounded after each operation, as tex does
    np.testing.assert_array_equal(tex.build(tex.create_schedule(B.op), [A, B])(a), want)
    if cuda_simulator.compiler() is None:
        return
    s = tex.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(xo, bx)
    s[B].bind(xi, tx)
    b = np.zeros_like(a)
    tex.build(s, [A, B], "cuda").simulate(a, b)
    np.testing.assert_array_equal(b, want)


def test_a_scan_over_vector_elements():
    """A running sum of float32x2 rows, on the CPU and (threads over the rows' elements)
    in CUDA."""
    m, n = 7, 5
    X = tex.placeholder((m, n), "float32x2", name="X")
    S = tex.placeholder((m, n), "float32x2", name="S")
    init = tex.compute((1, n), lambda _, i: X[0, i], name="init")
    step = tex.compute((m, n), lambda t, i: S[t - 1, i] + X[t, i] * 0.5, name="step")
    scan = tex.scan(init, step, S, inputs=[X], name="running")
    x = random((m, n, 2), "float32")
    want = np.cumsum(x * np.float32(0.5), axis=0) + x[0] * np.float32(0.5)
    f = tex.build(tex.create_schedule(scan.op), [X, scan])
    np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-5)
    if cuda_simulator.compiler() is None:
        return
    s = tex.create_schedule(scan.op)
    for stage in (init, step):
        xo, xi = s[stage].split(stage.op.axis[1], factor=2)
        s[stage].bind(xo, bx)
        s[stage].bind(xi, tx)
    out = np.zeros_like(x)
    tex.build(s, [X, scan], "cuda").simulate(x, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_casts_between_vector_dtypes_keep_the_lanes():
    n = 23
    A = tex.placeholder((n,), "int32x4", name="A")
    B = tex.compute((n,), lambda i: A[i].astype("float32x4") / 3.0, name="B")
    C = tex.compute((n,), lambda i: (B[i] * 2).astype("int8x4"), name="C")
    s = tex.create_schedule(C.op)
    s[B].compute_inline()
    f = tex.build(s, [A, C], "llvm")
    a = random((n, 4), "int32")
    want = (a.astype("float32") / np.float32(3) * np.float32(2)).astype("int8")
    np.testing.assert_array_equal(f(a), want)


def test_a_reduction_over_vector_elements_is_lane_wise():
    n, m = 19, 7
    A = tex.placeholder((n, m), "float32x2", name="A")
    k = tex.reduce_axis((0, m), name="k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k] * 2, axis=k), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=3)
    f = tex.build(s, [A, B], "llvm")
    a = random((n, m, 2), "float32")
    np.testing.assert_allclose(f(a), (a * 2).sum(axis=1), rtol=1e-5)


def test_extern_stages_and_ir_builder_buffers_refuse_vector_dtypes():
    A = tex.placeholder((6,), "float32x4", name="A")
    with pytest.raises(tex.ExprError, match="extern B: its input A is of the vector dtype "
                                            "float32x4, which extern stages do not take"):
        tex.extern((6, 4), [A], lambda ins, outs: tex.call_packed("f", ins[0], outs[0]),
                   name="B", dtype="float32")
    with pytest.raises(tex.ExprError, match="extern C: its output is of the vector dtype "
                                            "int8x4"):
        tex.extern((6,), [], lambda ins, outs: tex.call_packed("f", outs[0]), name="C",
                   dtype="int8x4")
    with pytest.raises(tex.ExprError, match="buffer t: a buffer holds scalars, not int8x4; "
                                            "declare it of int8 with the 4 lanes"):
        tex.tir.ir_builder.create().allocate("int8x4", (4,), name="t")


@pytest.mark.parametrize("schedule", ["prefetch", "rfactor"])
def test_prefetch_and_rfactor_of_a_vector_reduction(schedule):
    n, m = 13, 37
    A = tex.placeholder((n, m), "float32x4", name="A")
    k = tex.reduce_axis((0, m), name="k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=8)
    if schedule == "prefetch":
        s[B].prefetch(A, ko, 1)
    else:
        s.rfactor(B, ki)
    a = random((n, m, 4), "float32")
    np.testing.assert_allclose(tex.build(s, [A, B])(a), a.sum(axis=1), rtol=1e-5, atol=1e-5)


def _shifted_sum(n):
    A = tex.placeholder((n,), "float32x4", name="A")
    B = tex.compute((n,), lambda i: A[i] * 3.0 + A[tex.min(i + 1, n - 1)], name="B")
    a = random((n, 4), "float32")
    return A, B, a, a * 3 + a[np.minimum(np.arange(n) + 1, n - 1)]


def test_cpu_cache_write_unrolled():
    A, B, a, want = _shifted_sum(50)
    s = tex.create_schedule(B.op)
    local = s.cache_write(B, "local")
    xo, _ = s[B].split(B.op.axis[0], factor=16)
    s[local].compute_at(s[B], xo)
    s[B].parallel(xo)
    s[local].unroll(local.op.axis[0])
    np.testing.assert_allclose(tex.build(s, [A, B])(a), want, rtol=1e-5, atol=1e-5)


def test_the_lanes_of_an_argument_are_checked():
    A, B = _vector_add(4, 8)
    f = tex.build(tex.create_schedule(B.op), [A, B], "llvm")
    with pytest.raises(tex.ArgumentError, match=r"argument A \(#0\): dimension 1 should be 4, "
                                                r"got 2"):
        f(np.zeros((8, 2), "float32"))
    with pytest.raises(tex.ArgumentError, match=r"argument A \(#0\): expected 2 dimension"):
        f(np.zeros(32, "float32"))


def test_a_vector_argument_of_a_c_call_is_refused_on_the_cpu():
    A = tex.placeholder((8,), "int8x4", name="A")
    D = tex.compute((8,), lambda i: tex.call_pure_extern("int32", "__dp4a", A[i], A[i], 0),
                    name="D")
    with pytest.raises(tex.BuildError, match="__dp4a: its argument A.* of the vector dtype "
                                             "int8x4 is passed whole only in CUDA code"):
        tex.build(tex.create_schedule(D.op), [A, D], "llvm")


# --- CUDA (NVRTC, run in the simulator) --------------------------------------------

@needs_compiler
def test_cuda_reduction_in_each_thread():
    n, m = 21, 6
    A = tex.placeholder((n, m), "float32x4", name="A")
    k = tex.reduce_axis((0, m), name="k")
    B = tex.compute((n,), lambda i: tex.max(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(xo, bx)
    s[B].bind(xi, tx)
    a = random((n, m, 4), "float32")
    b = np.zeros((n, 4), "float32")
    tex.build(s, [A, B], "cuda").simulate(a, b)
    np.testing.assert_array_equal(b, a.max(axis=1))


def test_gpu_reductions_of_vector_dtypes_are_refused():
    A = tex.placeholder((8, 32), "float32x2", name="A")
    k = tex.reduce_axis((0, 32), name="k")
    B = tex.compute((8,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    s[B].bind(B.op.axis[0], bx)
    s[B].bind(k, tx)
    with pytest.raises(tex.LoweringError, match="stage B is reduced across GPU threads or "
                                                "blocks, which takes no vector dtype; its "
                                                "output B is float32x2"):
        tex.build(s, [A, B], "cuda")


def _cuda_vector_add(dtype, n=61):
    A = tex.placeholder((n,), name="A", dtype=dtype)
    B = tex.compute((n,), lambda i: A[i] * 2 + tex.const(1, A.dtype), name="B")
    s = tex.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].bind(xo, bx)
    s[B].bind(xi, tx)
    element = A.dtype.element.numpy
    a = random((n, A.dtype.lanes), element)
    return tex.build(s, [A, B], "cuda"), a, (a * element.type(2) + element.type(1))


VECTOR_ADDS = [("float32x4", "float4"), ("int8x4", "char4"), ("float16x2", "half2"),
               ("int8x3", None)]


@needs_compiler
@pytest.mark.parametrize("dtype, vector_type", VECTOR_ADDS)
def test_cuda_vector_add(dtype, vector_type):
    f, a, want = _cuda_vector_add(dtype)
    if vector_type is not None:  # one aligned load and store of the whole element
        assert f"*(const {vector_type}*)(A" in f.get_source("cuda")
        assert f"*({vector_type}*)(B" in f.get_source("cuda")
    b = np.zeros_like(a)
    f.simulate(a, b)
    np.testing.assert_allclose(b, want, rtol=1e-3)


@needs_gpu
@pytest.mark.parametrize("dtype", [d for d, _ in VECTOR_ADDS])
def test_cuda_vector_add_on_the_gpu(dtype):
    """As TVM's tests run it: tex.nd arrays of the vector dtype on the device."""
    f, a, want = _cuda_vector_add(dtype)
    dev = tex.cuda(0)
    a_dev = tex.nd.array(a, dev)
    b_dev = tex.nd.empty((a.shape[0],), dtype, dev)
    assert b_dev.shape == a.shape
    f(a_dev, b_dev)
    np.testing.assert_allclose(b_dev.numpy(), want, rtol=1e-3)


@needs_compiler
def test_cuda_vectorize_over_float32x2_elements_makes_float4_accesses():
    n = 61
    A = tex.placeholder((n,), name="A", dtype="float32x2")
    B = tex.compute((n,), lambda i: A[i] + tex.const(1, A.dtype), name="B")
    s = tex.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=2)
    xo, xm = s[B].split(xo, factor=8)
    s[B].bind(xo, bx)
    s[B].bind(xm, tx)
    s[B].vectorize(xi)
    f = tex.build(s, [A, B], "cuda")
    assert "*(float4*)(B + " in f.get_source("cuda")  # and float2 for the last element
    a = random((n, 2), "float32")
    b = np.zeros_like(a)
    f.simulate(a, b)
    np.testing.assert_array_equal(b, a + 1)


@needs_compiler
def test_cuda_cache_read_shared_and_cache_write_local():
    A, B, a, want = _shifted_sum(50)
    s = tex.create_schedule(B.op)
    shared = s.cache_read(A, "shared", [B])
    local = s.cache_write(B, "local")
    xo, xi = s[B].split(B.op.axis[0], factor=16)
    s[B].bind(xo, bx)
    s[B].bind(xi, tx)
    s[shared].compute_at(s[B], xo)
    s[local].compute_at(s[B], xi)
    s[shared].bind(s[shared].split(shared.op.axis[0], factor=16)[1], tx)
    f = tex.build(s, [A, B], "cuda")
    assert "*(float4*)(A_shared + " in f.get_source("cuda")
    b = np.zeros_like(a)
    f.simulate(a, b)
    np.testing.assert_allclose(b, want, rtol=1e-5, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize("fetch", ["double_buffer", "pipeline"])
def test_cuda_shared_fetches_of_vector_elements(fetch):
    """A reduction over float32x4 rows whose tiles are fetched into shared memory, double
    buffered through registers or pipelined with asynchronous copies."""
    n, m = 8, 60
    A = tex.placeholder((n, m), "float32x4", name="A")
    k = tex.reduce_axis((0, m), name="k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    shared = s.cache_read(A, "shared", [B])
    ko, _ = s[B].split(k, factor=8)
    io, ii = s[B].split(B.op.axis[0], factor=4)
    s[B].bind(io, bx)
    s[B].bind(ii, tx)
    s[shared].compute_at(s[B], ko)
    if fetch == "double_buffer":
        s[shared].double_buffer()
    else:
        s[shared].pipeline(3)
    a = random((n, m, 4), "float32")
    b = np.zeros((n, 4), "float32")
    tex.build(s, [A, B], "cuda").simulate(a, b)
    np.testing.assert_allclose(b, a.sum(axis=1), rtol=1e-5, atol=1e-5)


@needs_compiler
def test_cuda_dp4a_takes_int8x4_elements_whole():
    n = 45
    A = tex.placeholder((n,), "int8x4", name="A")
    B = tex.placeholder((n,), "int8x4", name="B")
    C = tex.placeholder((n,), "int32", name="C")
    D = tex.compute((n,), lambda i: tex.call_pure_extern("int32", "__dp4a", A[i], B[i], C[i]),
                    name="D")
    s = tex.create_schedule(D.op)
    xo, xi = s[D].split(D.op.axis[0], factor=8)
    s[D].bind(xo, bx)
    s[D].bind(xi, tx)
    f = tex.build(s, [A, B, C, D], "cuda")
    assert "__dp4a(make_char4(" in f.get_source("cuda")
    a, b = random((n, 4), "int8"), random((n, 4), "int8")
    c = random(n, "int32")
    d = np.zeros(n, "int32")
    f.simulate(a, b, c, d)
    np.testing.assert_array_equal(d, (a.astype("int32") * b).sum(axis=1) + c)


# --- libraries ---------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_library_export_of_a_vector_dtype_kernel(tmp_path):
    n = tex.var("n")
    A = tex.placeholder((n,), "float32x4", name="A")
    B = tex.compute((n,), lambda i: A[i] * A[i] + tex.const(2, A.dtype), name="B")
    s = tex.create_schedule(B.op)
    xo, _ = s[B].split(B.op.axis[0], factor=4)
    s[B].parallel(xo)
    kernel = tex.build(s, [A, B], "llvm", name="square_plus_two")
    lib = tex.load_library(tex.export_library([kernel], tmp_path / "ops.so"))
    a = random((27, 4), "float32")
    np.testing.assert_allclose(lib.square_plus_two(a), a * a + 2, rtol=1e-6)
    with pytest.raises(tex.ArgumentError, match="dimension 1 should be 4"):
        lib.square_plus_two(random((27, 3), "float32"))


def test_a_declared_intrinsic_on_vector_elements_keeps_its_loop_serial_when_lowered(
        monkeypatch):
    """Lowered without a target, the call of a declared intrinsic is still there when
    the loop is vectorized: the loop stays a serial loop of 2-lane calls; built, the
    rule lowers it first."""
    monkeypatch.setattr(intrin_rules, "_rules", {})  # this test's rules only
    monkeypatch.setattr(intrin_rules, "_declared", {})
    tex.register_op_attr("tir.vector_test_log", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.vector_test_log", target="llvm",
                                 f=lambda call: tex.log(call.args[0]))
    A = tex.placeholder((37,), dtype="float32x2", name="A")
    B = tex.compute((37,), lambda i: tex.tir.call_intrin(A.dtype, "tir.vector_test_log", A[i]),
                    name="B")
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=4)
    s[B].vectorize(inner)
    assert "for i_inner in range(4)" in str(tex.lower(s, [A, B]))
    a = np.random.default_rng(3).random((37, 2)).astype("float32") + 0.5
    np.testing.assert_allclose(tex.build(s, [A, B])(a), np.log(a), rtol=1e-5)
