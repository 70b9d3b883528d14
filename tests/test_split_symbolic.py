"""`split` by a symbolic factor (a scalar parameter, an expression of a size variable,
`tex.tir.vscale()`), with and without `disable_predication`, and the refusals around it.

Results are compared with NumPy at sizes the factors do not divide; a factor the
call makes invalid is an ArgumentError naming the stage and axis. Kernels using
`vscale()` build only for aarch64 with +sve: their LLVM IR is checked here, and,
where a cross compiler and qemu are installed, an exported library runs under qemu
at several SVE vector lengths.
"""
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tex
from checks import random_array

HERE = Path(__file__).parent
SVE = "llvm -mtriple=aarch64-linux-gnu -mattr=+sve"
CROSS_CC, QEMU, SYSROOT = "aarch64-linux-gnu-gcc", "qemu-aarch64", "/usr/aarch64-linux-gnu"


def elementwise(n):
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 2.0 + 1.0, name="B")
    return A, B


def if_then_else_count(s, args) -> int:
    found = []
    tex.tir.stmt_functor.post_order_visit(
        tex.schedule_to_module(s, args)["main"].body,
        lambda node: found.append(node) if isinstance(node, tex.ir.IfThenElse) else None)
    return len(found)


@pytest.mark.parametrize("disable_predication", [False, True])
@pytest.mark.parametrize("how", ["factor", "nparts"])
def test_split_by_a_scalar_parameter(how, disable_predication):
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    outer, _ = s[B].split(B.op.axis[0], **{how: f}, disable_predication=disable_predication)
    s[B].parallel(outer)
    kernel = tex.build(s, [A, B, f])
    for size in (1, 43):
        a = random_array((size,))
        for value in (1, 3, 7, size):
            if how == "factor" and disable_predication and value > size:
                continue  # a part longer than the axis: refused (below)
            np.testing.assert_allclose(kernel(a, value), a * 2 + 1, rtol=1e-6)
    if how == "nparts":  # more parts than points: the empty ones are guarded
        a = random_array((5,))
        np.testing.assert_allclose(kernel(a, 9), a * 2 + 1, rtol=1e-6)


def test_split_by_an_expression_of_a_size_variable():
    n = tex.size_var("n")
    A = tex.placeholder((n, 6), name="A")
    B = tex.compute((n, 6), lambda i, j: A[i, j] - 3.0, name="B")
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=(n + 3) // 4)
    s[B].reorder(inner, outer)
    s[B].vectorize(B.op.axis[1])
    kernel = tex.build(s, [A, B])
    for rows in (1, 5, 41):
        a = random_array((rows, 6))
        np.testing.assert_allclose(kernel(a), a - 3, rtol=1e-6)
    with pytest.raises(tex.ArgumentError, match=r"stage B, axis i: the factor .* at least 1"):
        kernel(np.zeros((0, 6), "float32"))


def test_split_of_a_reduction_by_a_scalar_parameter_keeps_its_guard():
    A = tex.placeholder((23, 37), name="A")
    k = tex.reduce_axis((0, 37), name="k")
    C = tex.compute((23,), lambda i: tex.sum(A[i, k], axis=k), name="C")
    f = tex.var("f")
    s = tex.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=f, disable_predication=True)
    io, ii = s[C].split(C.op.axis[0], factor=f, disable_predication=True)
    s[C].reorder(io, ko, ii, ki)
    assert if_then_else_count(s, [A, C, f])
    kernel = tex.build(s, [A, C, f])
    a = random_array((23, 37))
    for value in (1, 4, 9, 40):
        np.testing.assert_allclose(kernel(a, value), a.sum(1), rtol=1e-5)


def test_disable_predication_with_a_symbolic_factor_shifts_the_last_part():
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=f, disable_predication=True)
    assert if_then_else_count(s, [A, B, f]) == 0
    assert "min(i_outer * f, n - f)" in str(tex.lower(s, [A, B, f]))
    kernel = tex.build(s, [A, B, f])
    a = random_array((43,))
    for value in (1, 4, 8, 42, 43):
        np.testing.assert_allclose(kernel(a, value), a * 2 + 1, rtol=1e-6)
    with pytest.raises(tex.ArgumentError, match=r"stage B, axis i with disable_predication: "
                                                r"the part of f iterations must fit .* 44"):
        kernel(a, 44)


@pytest.mark.parametrize("value", [0, -3])
def test_a_factor_below_one_is_refused_at_the_call(value):
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=f)
    kernel = tex.build(s, [A, B, f])
    with pytest.raises(tex.ArgumentError, match=rf"stage B, axis i: the factor f must be at "
                                                rf"least 1; .* f = {value}"):
        kernel(random_array((43,)), value)


def test_a_symbolic_factor_must_be_passed():
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=f)
    with pytest.raises(tex.LoweringError, match="variable f"):
        tex.lower(s, [A, B])


@pytest.mark.parametrize("primitive", ["vectorize", "unroll", "bind", "tensorize"])
def test_primitives_needing_a_constant_extent_refuse_a_symbolic_part(primitive):
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=f)
    with pytest.raises(tex.ScheduleError, match=rf"{primitive} on stage B, axis i_inner: its "
                                                "extent f is symbolic"):
        if primitive == "bind":
            s[B].bind(inner, tex.thread_axis((0, 4), "threadIdx.x"))
        elif primitive == "tensorize":
            s[B].tensorize(inner, _copy_intrinsic())
        else:
            getattr(s[B], primitive)(inner)


def _copy_intrinsic():
    X = tex.placeholder((4,), name="X")
    Y = tex.compute((4,), lambda i: X[i], name="Y")

    def body(ins, outs):
        return tex.tir.call_extern("int32", "copy4", ins[0].access_ptr("r"),
                                   outs[0].access_ptr("w"))
    return tex.decl_tensor_intrin(Y.op, body)


def test_a_symbolic_part_split_by_a_constant_vectorizes():
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=f * 8)
    _, lanes = s[B].split(inner, factor=8)
    s[B].vectorize(lanes)
    kernel = tex.build(s, [A, B, f])
    a = random_array((101,))
    for value in (1, 3):
        np.testing.assert_allclose(kernel(a, value), a * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("factor,fragment", [
    (0, "positive int"), (-2, "positive int"), (2.5, "positive int"),
    (tex.const(0), "positive int"), (tex.const(1.5), "positive int"),
    (tex.var("q", "float32"), "dtype float32"), ("tensor read", "must not read a tensor"),
    ("own axis", "must not depend on this stage's axes (i)")])
def test_a_factor_that_is_not_a_positive_integer_expression_is_refused(factor, fragment):
    n = tex.var("n")
    A, B = elementwise(n)
    if isinstance(factor, str):
        factor = tex.placeholder((1,), "int32", name="F")[0] if factor == "tensor read" \
            else B.op.axis[0].var + 1
    s = tex.create_schedule(B.op)
    with pytest.raises(tex.ScheduleError, match="split on stage B, axis i: factor") as info:
        s[B].split(B.op.axis[0], factor=factor)
    assert fragment in str(info.value)


def test_vscale_is_an_int32_call_that_prints():
    v = tex.tir.vscale()
    assert v.dtype == "int32" and isinstance(v, tex.tir.Call) and v.op.name == "tir.vscale"
    assert str(4 * v) == "4 * vscale()"


def vscale_split(disable_predication=False):
    n = tex.var("n")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=4 * tex.tir.vscale(),
               disable_predication=disable_predication)
    return s, [A, B]


@pytest.mark.parametrize("disable_predication", [False, True])
def test_vscale_factor_guards_or_shifts(disable_predication):
    s, args = vscale_split(disable_predication)
    assert bool(if_then_else_count(s, args)) != disable_predication
    text = str(tex.lower(s, args))
    assert "at least 1" not in text  # 4 * vscale() >= 4: nothing to check
    assert ("n >= int64(vscale() * 4)" in text) == disable_predication


@pytest.mark.parametrize("target", ["llvm", "llvm -mtriple=aarch64-linux-gnu",
                                    "llvm -mtriple=aarch64-linux-gnu -mcpu=neoverse-n1"])
def test_vscale_needs_a_target_with_scalable_vectors(target):
    s, args = vscale_split()
    with pytest.raises(tex.BuildError, match=r"vscale\(\) needs a target with scalable "
                                             r"vectors \(aarch64 with \+sve"):
        tex.build(s, args, target=target)


def test_vscale_is_refused_for_cuda():
    n = tex.var("n")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=32 * tex.tir.vscale())
    s[B].bind(bx, tex.thread_axis("blockIdx.x"))
    s[B].bind(tx, tex.thread_axis("threadIdx.x"))
    with pytest.raises(tex.BuildError, match="vscale.*CUDA has none"):
        tex.build(s, [A, B], target="cuda")


def test_vscale_is_llvm_vscale_on_aarch64_with_sve():
    s, args = vscale_split(disable_predication=True)
    kernel = tex.build(s, args, target=SVE)
    assert "call i32 @llvm.vscale.i32()" in kernel.get_source("ll")
    assert kernel.get_source("asm")
    if platform.machine() != "aarch64":
        with pytest.raises(tex.DeviceError, match="cannot run here"):
            kernel(random_array((43,)))


@pytest.mark.skipif(platform.machine() == "aarch64" or not shutil.which(CROSS_CC)
                    or not shutil.which(QEMU) or not Path(SYSROOT).is_dir(),
                    reason=f"needs {CROSS_CC} and {QEMU} (Debian: gcc-aarch64-linux-gnu, "
                           "qemu-user)")
@pytest.mark.parametrize("disable_predication", [False, True])
def test_a_vscale_split_runs_under_qemu_at_each_vector_length(tmp_path, disable_predication):
    """The library's machine code reads vscale from the CPU; with disable_predication
    its checks read it from Linux, and refuse a part longer than the axis."""
    s, args = vscale_split(disable_predication)
    kernel = tex.build(s, args, target=SVE, name="scaled")
    library = tex.export_library([kernel], tmp_path / "scaled.so")
    harness = tmp_path / "harness"
    subprocess.run([CROSS_CC, "-O1", "-o", str(harness), str(HERE / "library_harness.c"),
                    "-ldl"], check=True)
    a = random_array((43,))
    a.tofile(tmp_path / "a.bin")
    for vector_bytes in (16, 32, 64, 256):  # vscale 1, 2, 4, 16: 4 * 16 lanes > 43
        np.zeros(43, "float32").tofile(tmp_path / "b.bin")
        result = subprocess.run(
            [QEMU, "-cpu", f"max,sve-default-vector-length={vector_bytes}", "-L", SYSROOT,
             str(harness), str(library), "scaled", "1", "43", "2", str(tmp_path / "a.bin"),
             str(tmp_path / "b.bin")], capture_output=True, text=True, timeout=120)
        if disable_predication and vector_bytes == 256:
            assert result.returncode == 3 and "axis i with disable_predication" in \
                result.stderr, result.stderr
            continue
        assert result.returncode == 0, result.stderr
        got = np.fromfile(tmp_path / "b.bin.out", "float32")
        np.testing.assert_allclose(got, a * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("primitive", ["cache_write", "rfactor"])
def test_rewrites_folding_a_symbolic_split_into_new_axes_are_refused(primitive):
    """Their new operation's axes would hold the size without the check that it is >= 1."""
    f = tex.var("f")
    A = tex.placeholder((37, 5), name="A")
    k = tex.reduce_axis((0, 5), name="k")
    C = tex.compute((37,), lambda i: tex.sum(A[i, k], axis=k), name="C")
    s = tex.create_schedule(C.op)
    _, inner = s[C].split(C.op.axis[0] if primitive == "cache_write" else k, factor=f)
    with pytest.raises(tex.ScheduleError, match=rf"{primitive} on stage C: axis [ik] is split "
                                                "by the symbolic f"):
        if primitive == "cache_write":
            s.cache_write(C, "global")
        else:
            s.rfactor(C, inner)


def test_a_cache_split_by_a_scalar_parameter():
    f = tex.var("f")
    A = tex.placeholder((37, 5), name="A")
    k = tex.reduce_axis((0, 5), name="k")
    C = tex.compute((37,), lambda i: tex.sum(A[i, k], axis=k), name="C")
    s = tex.create_schedule(C.op)
    CC = s.cache_write(C, "global")
    outer, _ = s[C].split(C.op.axis[0], factor=f)
    s[CC].compute_at(s[C], outer)
    kernel = tex.build(s, [A, C, f])
    a = random_array((37, 5))
    for value in (1, 6, 37):
        np.testing.assert_allclose(kernel(a, value), a.sum(1), rtol=1e-5)
    with pytest.raises(tex.ArgumentError, match="the factor f must be at least 1"):
        kernel(a, 0)


def test_a_kernel_with_run_time_checks_stays_off_the_disk_cache(tmp_path, monkeypatch):
    """A kernel read from disk skips lowering, where its checks come from."""
    from tex.runtime import cache
    monkeypatch.setenv("TEX_CACHE_DIR", str(tmp_path))
    n, f = tex.var("n"), tex.var("f")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=f)
    tex.build(s, [A, B, f])
    cache._by_fingerprint.clear()
    kernel = tex.build(s, [A, B, f])
    assert not kernel.loaded_from_disk and not list(tmp_path.rglob("*.*"))
    with pytest.raises(tex.ArgumentError, match="the factor f must be at least 1"):
        kernel(random_array((9,)), 0)


def test_a_symbolic_split_bound_to_gpu_threads():
    """CUDA C compiled with NVRTC, run in the CPU simulator: a block of (n + 3) // 4
    threads, and the call's check that the block is not empty."""
    n = tex.size_var("n")
    A, B = elementwise(n)
    s = tex.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=(n + 3) // 4)
    s[B].bind(bx, tex.thread_axis("blockIdx.x"))
    s[B].bind(tx, tex.thread_axis("threadIdx.x"))
    kernel = tex.build(s, [A, B], target="cuda")
    for size in (1, 37):
        a = random_array((size,))
        np.testing.assert_allclose(kernel.simulate(a), a * 2 + 1, rtol=1e-6)
    with pytest.raises(tex.ArgumentError, match=r"stage B, axis i: the factor .* at least 1"):
        kernel.simulate(np.zeros(0, "float32"))
