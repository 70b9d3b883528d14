"""The AMX intrinsics (tex.intrin.x86_amx, int8 and bfloat16): what they lower and compile
to, and the errors of schedules they do not fit, on any x86-64 machine; results against
NumPy where the CPU (and Linux) let this process use AMX."""
import types

import numpy as np
import pytest

import tex
from tex.codegen import cpu_support, llvm
from tex.intrin import x86_amx
from tex.ir import IntrinsicCall
from tex.runtime.kernel import Kernel

AMX_MISSING = cpu_support.amx_unavailable()
needs_amx = pytest.mark.skipif(AMX_MISSING is not None, reason=f"no AMX: {AMX_MISSING}")
AMX_BF16_MISSING = cpu_support.amx_unavailable(("amx-bf16", "amx-tile"))
needs_amx_bf16 = pytest.mark.skipif(AMX_BF16_MISSING is not None,
                                    reason=f"no AMX-BF16: {AMX_BF16_MISSING}")
BF16 = tex.dtype.bfloat16.numpy
# A target with AMX whatever the host, so that the compiled code is the same everywhere.
AMX_TARGET = "llvm -mcpu=sapphirerapids"
RNG = np.random.default_rng(7)


def int8(*shape):
    return RNG.integers(-128, 128, shape, dtype=np.int8)


def reference(a, b):
    return a.astype(np.int32) @ b.astype(np.int32)


ADD4 = """
define void @tex_test_add4(ptr %a, ptr %b, ptr %c) {
  %x = load <4 x float>, ptr %a, align 4
  %y = load <4 x float>, ptr %b, align 4
  %z = fadd <4 x float> %x, %y
  store <4 x float> %z, ptr %c, align 4
  ret void
}
"""


def add4_intrin(definition=ADD4):
    """c[i] = a[i] + b[i] over 4 floats, by a function defined in LLVM IR."""
    a, b = tex.placeholder((4,), name="a"), tex.placeholder((4,), name="b")
    c = tex.compute((4,), lambda i: a[i] + b[i], name="c")
    return tex.decl_tensor_intrin(c, lambda ins, outs: IntrinsicCall(
        "tex_test_add4", (ins[0].pointer(), ins[1].pointer(), outs[0].pointer()), (),
        definition, writes=(2,)), name="add4")


def two_adds(second_definition=ADD4, n=12):
    """D = (A + B) + B, both stages tensorized with add4."""
    A, B = tex.placeholder((n,), name="A"), tex.placeholder((n,), name="B")
    C = tex.compute((n,), lambda i: A[i] + B[i], name="C")
    D = tex.compute((n,), lambda i: C[i] + B[i], name="D")
    s = tex.create_schedule(D.op)
    for T, definition in ((C, ADD4), (D, second_definition)):
        _, inner = s[T].split(T.op.axis[0], factor=4)
        s[T].tensorize(inner, add4_intrin(definition))
    return s, [A, B, D]


def test_an_llvm_ir_definition_is_linked_in_once():
    s, args = two_adds()
    func = tex.lower(s, args)
    assert str(llvm.emit_llvm(func)).count("declare void @\"tex_test_add4\"") == 1
    a, b = RNG.random(12, dtype=np.float32), RNG.random(12, dtype=np.float32)
    np.testing.assert_allclose(tex.build(s, args)(a, b), a + 2 * b, rtol=1e-6)


def test_two_definitions_under_one_name_are_refused():
    s, args = two_adds(second_definition=ADD4.replace("fadd", "fsub"))
    with pytest.raises(tex.BuildError, match="calls of tex_test_add4 carry two different "
                       "definitions"):
        tex.build(s, args)


def test_programs_differing_only_in_a_definition_do_not_share_compiled_code():
    # Their printed programs are equal: the call names the function, not its body.
    a, b = RNG.random(8, dtype=np.float32), RNG.random(8, dtype=np.float32)
    for definition, expected in ((ADD4, a + b), (ADD4.replace("fadd", "fsub"), a - b)):
        A, B = tex.placeholder((8,), name="A"), tex.placeholder((8,), name="B")
        C = tex.compute((8,), lambda i: A[i] + B[i], name="C")
        s = tex.create_schedule(C.op)
        _, inner = s[C].split(C.op.axis[0], factor=4)
        s[C].tensorize(inner, add4_intrin(definition))
        np.testing.assert_allclose(tex.build(s, [A, B, C])(a, b), expected, rtol=1e-6)


def test_lowers_to_calls_and_compiles_to_tile_instructions():
    s, args = x86_amx.matmul_schedule(50, 70, 130)
    text = str(tex.lower(s, args))
    assert "tex_amx_int8_16x16x192_body(&Ap[" in text   # the whole reduction in one call
    assert "for i_outer in parallel(4)" in text
    kernel = tex.build(s, args, target=AMX_TARGET)
    ll, asm = kernel.get_source("ll"), kernel.get_source("asm")
    assert "@llvm.x86.tdpbssd.internal" in ll and "@llvm.x86.tileloadd64.internal" in ll
    assert "@tex_amx" not in ll                            # linked in once, then inlined
    for instruction in ("ldtilecfg", "tileloadd", "tdpbssd", "tilestored"):
        assert instruction in asm


def test_bfloat16_lowers_to_calls_and_compiles_to_tile_instructions():
    s, args = x86_amx.matmul_schedule(50, 70, 130, dtype="bfloat16")
    text = str(tex.lower(s, args))
    assert "tex_amx_bf16_16x16x160_body(&Ap[" in text     # k padded to 32s
    # B in pairs of k per column: 5 panels x 80 pairs x 16 columns x 2
    assert "Bp = allocate(bfloat16[12800]" in text and "Cp = allocate(float32[" in text
    kernel = tex.build(s, args, target=AMX_TARGET)
    ll, asm = kernel.get_source("ll"), kernel.get_source("asm")
    assert "@llvm.x86.tdpbf16ps.internal" in ll and "@tex_amx" not in ll
    for instruction in ("ldtilecfg", "tileloadd", "tdpbf16ps", "tilestored"):
        assert instruction in asm


def test_a_reduction_split_outside_the_call_resets_then_updates():
    s, args = x86_amx.matmul_schedule(40, 40, 256, depth=128, block=(32, 32))
    text = str(tex.lower(s, args))
    assert text.index("tex_amx_int8_32x32x128_reset(&Cp[") < \
        text.index("tex_amx_int8_32x32x128_update(&Ap[")


def test_builds_for_a_target_without_amx():
    """The intrinsic's functions carry the AMX features themselves: no LLVM abort."""
    s, args = x86_amx.matmul_schedule(20, 20, 64)
    kernel = tex.build(s, args, target="llvm -mcpu=skylake-avx512")
    assert "tdpbssd" in kernel.get_source("asm")


def test_a_kernel_that_cannot_use_amx_refuses_to_run():
    s, args = x86_amx.matmul_schedule(20, 20, 64)
    built = tex.build(s, args, target=AMX_TARGET)
    compiled = types.SimpleNamespace(target=built.target, address=0,
                                     cannot_run="it uses Intel AMX, and this CPU lacks amx-int8")
    kernel = Kernel(built.func, compiled)
    with pytest.raises(tex.ArgumentError):          # arguments are still checked first
        kernel(int8(20, 65), int8(64, 20))
    with pytest.raises(tex.DeviceError, match="cannot run here: .* lacks amx-int8"):
        kernel(int8(20, 64), int8(64, 20))


def test_what_the_host_lacks_is_named(monkeypatch):
    ll = "call x86_amx @llvm.x86.tdpbssd.internal(i16 16, i16 64, i16 64"
    monkeypatch.setattr(cpu_support, "_host_features", lambda: frozenset({"amx-tile"}))
    assert cpu_support.unavailable(ll) == \
        "it uses Intel AMX (amx-int8, amx-tile), and this CPU lacks amx-int8"
    assert cpu_support.unavailable("call void @llvm.memset") is None


def amx_matmul(M, N, K, dtype="int8", b_layout="vnni"):
    """A matmul whose tile (16 x 16 x 64) is tensorized with the AMX intrinsic directly."""
    A = tex.placeholder((M, K), dtype, name="A")
    shape = (N // 16, K // 4, 16, 4) if b_layout == "vnni" else (K, N)
    B = tex.placeholder(shape, dtype, name="B")
    k = tex.reduce_axis((0, K), name="k")
    b = (lambda j: B[j // 16, k // 4, j % 16, k % 4]) if b_layout == "vnni" else \
        (lambda j: B[k, j])
    C = tex.compute((M, N), lambda i, j: tex.sum(
        A[i, k].astype("int32") * b(j).astype("int32"), axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 16, 16)
    kq, kr = s[C].split(k, factor=4)
    s[C].reorder(io, jo, ii, ji, kq, kr)
    return s, [A, B, C], ii


def test_b_not_in_vnni_layout_is_refused():
    s, args, ii = amx_matmul(32, 32, 64, b_layout="plain")
    s[args[2]].tensorize(ii, x86_amx.amx_intrin(64, 16, 16))
    with pytest.raises(tex.LoweringError, match=r"stage C, axis i_inner.*the b tile in B "
                       r"has strides \(128, 1, 32\); AMX needs \(ldb, 4, 1\): VNNI"):
        tex.lower(s, args)


def test_a_depth_other_than_the_tile_is_refused():
    s, args, ii = amx_matmul(32, 32, 128)
    s[args[2]].tensorize(ii, x86_amx.amx_intrin(64, 16, 16))
    with pytest.raises(tex.LoweringError, match="loop k_outer has extent 32 where intrinsic "
                       "amx_int8_16x16x64's axis kq has 16"):
        tex.lower(s, args)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_wrong_dtypes_are_refused(dtype):
    s, args, ii = amx_matmul(32, 32, 64, dtype=dtype)
    s[args[2]].tensorize(ii, x86_amx.amx_intrin(64, 16, 16))
    with pytest.raises(tex.LoweringError, match=f"the body differs from intrinsic "
                       f"amx_int8_16x16x64's: dtype {dtype} vs int8"):
        tex.lower(s, args)


def test_bad_arguments_are_refused():
    with pytest.raises(tex.ScheduleError, match="depth must be a positive multiple of 64"):
        x86_amx.amx_intrin(96)
    with pytest.raises(tex.ScheduleError, match="rows must be one of"):
        x86_amx.amx_intrin(64, rows=8)
    with pytest.raises(tex.ScheduleError, match="K must be a positive int, got 0"):
        x86_amx.matmul_schedule(4, 4, 0)
    with pytest.raises(tex.ScheduleError, match="depth must be a multiple of 64 dividing"):
        x86_amx.matmul_schedule(4, 4, 200, depth=192)
    with pytest.raises(tex.ScheduleError, match="positive multiple of 32 for bfloat16"):
        x86_amx.amx_intrin(48, dtype="bfloat16")
    with pytest.raises(tex.ScheduleError, match=r"dtype must be one of \['bfloat16', 'int8'\]"):
        x86_amx.matmul_schedule(4, 4, 4, dtype="float16")


@needs_amx
@pytest.mark.parametrize("M, N, K, options", [
    (50, 70, 130, {}),
    (1, 17, 64, {}),
    (200, 33, 300, {}),
    (200, 33, 300, {"block": (32, 32), "depth": 64}),
    (96, 64, 128, {"block": (32, 16)}),                  # tiles divide: no copy stage
    (300, 700, 520, {"panel_block": 128}),
])
def test_matches_numpy(M, N, K, options):
    s, args = x86_amx.matmul_schedule(M, N, K, **options)
    kernel = tex.build(s, args)
    a, b = int8(M, K), int8(K, N)
    np.testing.assert_array_equal(kernel(a, b), reference(a, b))


@needs_amx_bf16
@pytest.mark.parametrize("M, N, K, options", [
    (50, 70, 130, {}),
    (1, 17, 32, {}),
    (200, 33, 300, {"block": (32, 32), "depth": 32}),
    (96, 64, 128, {"block": (32, 16)}),                  # tiles divide: no copy stage
])
def test_bfloat16_matches_numpy(M, N, K, options):
    kernel = tex.build(*x86_amx.matmul_schedule(M, N, K, dtype="bfloat16", **options))
    # small integers: every product and partial sum is exact in float32, in any order
    a, b = int8(M, K) // 16, int8(K, N) // 16
    np.testing.assert_array_equal(kernel(a.astype(BF16), b.astype(BF16)),
                                  reference(a, b).astype(np.float32))
    a, b = RNG.standard_normal((M, K)).astype(BF16), RNG.standard_normal((K, N)).astype(BF16)
    np.testing.assert_allclose(kernel(a, b), a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-5, atol=1e-5)


@needs_amx
def test_directly_tensorized_tiles_match_numpy():
    s, args, ii = amx_matmul(48, 64, 192)
    s[args[2]].tensorize(ii, x86_amx.amx_intrin(192, 16, 16))
    a, b = int8(48, 192), int8(192, 64)
    packed = np.ascontiguousarray(b.reshape(48, 4, 4, 16).transpose(2, 0, 3, 1))
    np.testing.assert_array_equal(tex.build(s, args)(a, packed), reference(a, b))
