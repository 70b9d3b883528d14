"""The user's intrinsic lowering rules (`tex.register_intrin_lowering`) and declared
intrinsics (`tex.register_op_attr`, `tex.tir.call_intrin`), TVM's way of choosing what a
math call becomes per target: compiled for the CPU (a vectorized loop whose size is no
multiple of the vector width) and for CUDA (NVRTC; run in the CPU simulator), compared with
NumPy, and the rewritten calls looked for in the generated code."""
import numpy as np
import pytest

import tex
from tex import intrin_rules
from tex.schedule import fingerprint
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

needs_simulator = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
N = 37


@pytest.fixture(autouse=True)
def _own_rules(monkeypatch):
    """Each test registers into empty tables, and the process's tables come back after it
    (rules are global, as in TVM, and would change every later test's kernels)."""
    monkeypatch.setattr(intrin_rules, "_rules", {})
    monkeypatch.setattr(intrin_rules, "_declared", {})
    monkeypatch.setattr(intrin_rules, "_version", intrin_rules._version)


def elementwise(fn, target="llvm", dtype="float32", name="f"):
    """`B[i] = fn(A[i])` for N elements: split by 8, the inner loop vectorized on the CPU,
    bound to blocks and threads for CUDA ("gpu": CUDA too, to run on the GPU). Returns
    (kernel, schedule, [A, B])."""
    target = "cuda" if target == "gpu" else target
    A = tex.placeholder((N,), dtype, name="A")
    B = tex.compute((N,), lambda i: fn(A[i]), name="B")
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=8)
    if target == "cuda":
        s[B].bind(outer, tex.thread_axis("blockIdx.x"))
        s[B].bind(inner, tex.thread_axis("threadIdx.x"))
    else:
        s[B].vectorize(inner)
    return tex.build(s, [A, B], target, name=name), s, [A, B]


def run(kernel, target, x):
    """The kernel's output for `x`: on the CPU, in the CUDA simulator ("cuda") or on the
    GPU ("gpu")."""
    if target == "gpu":
        return kernel(x)  # host inputs: host outputs
    out = np.empty_like(x)
    (kernel.simulate if target == "cuda" else kernel)(x, out)
    return out


def exp_by_expm1(call):
    """exp(x) = expm1(x) + 1 for float32; other dtypes keep tex's exp."""
    assert call.op.name == "tir.exp"
    if call.dtype == "float32":
        return tex.call_pure_extern("float32", "expm1f", call.args[0]) + 1.0
    return call


def random_input(dtype="float32", low=-3.0, high=3.0):
    return np.random.default_rng(5).uniform(low, high, N).astype(dtype)


TARGETS = ["llvm", pytest.param("cuda", marks=needs_simulator),
           pytest.param("gpu", marks=needs_gpu)]


@pytest.mark.parametrize("target", TARGETS)
def test_rule_rewrites_exp_for_its_target(target):
    kind = "cuda" if target == "gpu" else target
    tex.register_intrin_lowering("tir.exp", target=kind, f=exp_by_expm1, level=99)
    kernel, _, _ = elementwise(tex.exp, target)
    source = kernel.get_source("ll" if target == "llvm" else "cuda")
    assert "expm1f" in source
    x = random_input()
    np.testing.assert_allclose(run(kernel, target, x), np.exp(x), rtol=1e-6)


def test_rule_for_one_target_leaves_the_other_alone():
    tex.register_intrin_lowering("tir.exp", target="cuda", f=exp_by_expm1)
    kernel, _, _ = elementwise(tex.exp, "llvm")
    assert "expm1f" not in kernel.get_source("ll")
    cuda, _, _ = elementwise(tex.exp, "cuda")
    assert "expm1f(" in cuda.get_source("cuda")


def test_rule_that_returns_the_call_keeps_tex_code():
    tex.register_intrin_lowering("tir.exp", target="llvm", f=exp_by_expm1)
    kernel, _, _ = elementwise(tex.exp, "llvm", dtype="float64")
    assert "expm1" not in kernel.get_source("ll")
    x = random_input("float64")
    np.testing.assert_allclose(run(kernel, "llvm", x), np.exp(x), rtol=1e-14)


def test_rule_registered_after_a_build_changes_the_next_build():
    kernel, s, args = elementwise(tex.exp, "llvm")
    assert "expm1f" not in kernel.get_source("ll")
    tex.register_intrin_lowering("tir.exp", target="llvm", f=exp_by_expm1)
    again = tex.build(s, args, "llvm", name="f")
    assert "expm1f" in again.get_source("ll")


def mylog_rule(call):
    """tir.mylog as libm's log of the call's own precision."""
    return tex.call_pure_extern(call.dtype, "logf" if call.dtype == "float32" else "log",
                                call.args[0])


def mylog(x):
    return tex.tir.call_intrin(x.dtype, "tir.mylog", x)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_declared_intrinsic_is_what_its_rule_makes(target, dtype):
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    kind = "cuda" if target == "gpu" else target
    tex.register_intrin_lowering("tir.mylog", target=kind, f=mylog_rule, level=99)
    kernel, s, args = elementwise(mylog, target, dtype)
    assert "tir.mylog(A[" in str(tex.lower(s, args))  # no target: the call as it was declared
    want = "logf(" if dtype == "float32" else "log("
    assert want in kernel.get_source("cuda") if kind == "cuda" else \
        f"@{want[:-1]}(" in kernel.get_source("ll")
    x = random_input(dtype, 0.01, 50.0)
    np.testing.assert_allclose(run(kernel, target, x), np.log(x),
                               rtol=1e-6 if dtype == "float32" else 1e-14)


def test_declared_intrinsic_without_a_rule_fails_naming_it_and_the_target():
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.mylog", target="cuda", f=mylog_rule)
    with pytest.raises(tex.BuildError, match="intrinsic tir.mylog has no lowering rule for "
                       "target 'llvm'.*register_intrin_lowering"):
        elementwise(mylog, "llvm")


def test_default_rule_serves_every_target_after_the_targets_own():
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.mylog", target="default", f=mylog_rule)
    tex.register_intrin_lowering("tir.mylog", target="llvm", f=lambda call: call)
    kernel, _, _ = elementwise(mylog, "llvm")
    x = random_input(low=0.5)
    np.testing.assert_allclose(run(kernel, "llvm", x), np.log(x), rtol=1e-6)
    cuda, _, _ = elementwise(mylog, "cuda")
    assert "logf(" in cuda.get_source("cuda")


def test_rules_may_make_calls_that_rules_lower():
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_op_attr("tir.mylog2", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.mylog2", target="llvm",
                                 f=lambda call: mylog(call.args[0]) / np.log(2.0))
    tex.register_op_attr("tir.mylog", "llvm.FLowerIntrinsic", mylog_rule)
    kernel, _, _ = elementwise(lambda x: tex.tir.call_intrin("float32", "tir.mylog2", x))
    x = random_input(low=0.5)
    np.testing.assert_allclose(run(kernel, "llvm", x), np.log2(x), rtol=1e-6)


def test_higher_level_wins_and_equal_level_replaces():
    def keep_logf(call):
        return tex.call_pure_extern("float32", "logf", call.args[0])

    def log2_based(call):
        return tex.log2(call.args[0]) * float(np.log(2.0))

    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.mylog", target="llvm", f=keep_logf, level=20)
    tex.register_intrin_lowering("tir.mylog", target="llvm", f=log2_based, level=10)
    assert "@logf(" in elementwise(mylog)[0].get_source("ll")
    tex.register_intrin_lowering("tir.mylog", target="llvm", f=log2_based, level=20)
    kernel, _, _ = elementwise(mylog)
    assert "@logf(" not in kernel.get_source("ll")
    x = random_input(low=0.5)
    np.testing.assert_allclose(run(kernel, "llvm", x), np.log(x), rtol=1e-6, atol=1e-7)


def test_decorator_forms():
    @tex.register_op_attr("tir.mylog", "llvm.FLowerIntrinsic", level=11)
    def rule(call):
        return mylog_rule(call)

    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.exp", target="llvm")(exp_by_expm1)
    kernel, _, _ = elementwise(lambda x: mylog(tex.exp(x)))
    assert callable(rule) and "expm1f" in kernel.get_source("ll")
    x = random_input()
    np.testing.assert_allclose(run(kernel, "llvm", x), x, rtol=1e-5, atol=1e-6)


def test_call_intrin_of_tex_intrinsic_is_that_intrinsic():
    x = tex.var("x", "float32")
    assert tex.tir.call_intrin("float32", "tir.exp", x) == tex.exp(x)
    assert tex.tir.Call("float32", "tir.exp", [x]) == tex.exp(x)
    assert tex.exp(x).op.name == "tir.exp"


def test_every_kind_of_call_is_a_tir_call():
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    x = tex.var("x", "float32")
    calls = [tex.sin(x), mylog(x), tex.call_pure_extern("float32", "expf", x),
             tex.tir.call_llvm_pure_intrin("float32", "llvm.fabs", 1, x)]
    assert all(isinstance(c, tex.tir.Call) for c in calls)
    assert not isinstance(x + 1.0, tex.tir.Call)
    assert tex.tir.Call("float32", "tir.mylog", [x]).op.name == "tir.mylog"


def test_bad_rules_and_declarations_are_named():
    x = tex.var("x", "float32")
    with pytest.raises(tex.ExprError, match="'tir.nothing' is not an intrinsic; declare it"):
        tex.tir.call_intrin("float32", "tir.nothing", x)
    with pytest.raises(tex.ExprError, match="returns float32, not float64"):
        tex.tir.call_intrin("float64", "tir.exp", x)
    with pytest.raises(tex.ExprError, match="target must be one of llvm, cuda, default.*"
                       "'opencl'"):
        tex.register_intrin_lowering("tir.exp", target="opencl", f=exp_by_expm1)
    with pytest.raises(tex.ExprError, match="attributes 'TCallEffectKind' and "
                       "'<target>.FLowerIntrinsic', got 'FTVMCompute'"):
        tex.register_op_attr("tir.exp", "FTVMCompute", exp_by_expm1)
    with pytest.raises(tex.ExprError, match="must be a tex.tir.CallEffectKind, got 'pure'"):
        tex.register_op_attr("tir.mylog", "TCallEffectKind", "pure")


@pytest.mark.parametrize("rule, message", [
    (lambda call: 1.0, "returned 1.0, not an expression"),
    (lambda call: tex.cast("float64", call), "made float64 of a float32 call"),
    (lambda call: tex.exp(call.args[0]) + tex.const(0.5) - tex.const(0.5),
     "after 8 rounds"),
])
def test_rules_that_misbehave_fail_the_build(rule, message):
    tex.register_intrin_lowering("tir.exp", target="llvm", f=rule)
    with pytest.raises(tex.BuildError, match=f"tir.exp for target 'llvm'.*{message}"):
        elementwise(tex.exp)


def test_lowered_program_built_later_gets_the_rules_of_its_target():
    tex.register_op_attr("tir.mylog", "TCallEffectKind", tex.tir.CallEffectKind.Pure)
    tex.register_intrin_lowering("tir.mylog", target="llvm", f=mylog_rule)
    A = tex.placeholder((N,), name="A")
    B = tex.compute((N,), lambda i: mylog(A[i]) * 2.0, name="B")
    lowered = tex.lower(tex.create_schedule(B.op), [A, B])
    assert "tir.mylog(A[i]) * 2.0" in str(lowered)
    x = random_input(low=0.5)
    np.testing.assert_allclose(tex.build(lowered, "llvm")(x), np.log(x) * 2, rtol=1e-6)


def test_kernels_built_under_a_users_rule_stay_in_this_process():
    A = tex.placeholder((N,), name="A")
    with_exp = tex.create_schedule(tex.compute((N,), lambda i: tex.exp(A[i]), name="B").op)
    without = tex.create_schedule(tex.compute((N,), lambda i: A[i] + 1.0, name="C").op)
    assert fingerprint.lowering_rules("llvm", with_exp) == ""
    tex.register_intrin_lowering("tir.exp", target="default", f=exp_by_expm1)
    text = fingerprint.lowering_rules("cuda", with_exp)
    assert "'tir.exp'" in text and fingerprint.process_local(text)
    # a kernel that calls no operator with a rule is not kept from other processes
    assert fingerprint.lowering_rules("cuda", without) == ""
