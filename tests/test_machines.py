"""Right on every machine: every x86-64 level this host can run, and aarch64 cross-compiled.

Each case runs `tests/machine_cases.py` in a fresh interpreter with the disk
cache off, so no kernel or library loaded earlier can supply a routine the
code needs (a missing one used to be a call to address 0: a crash that came
and went with the libraries the process happened to load).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tex
from tex.codegen import cpu_support, llvm_jit
from tex.errors import BuildError
from tex.target import Target

HERE = Path(__file__).parent
X86_LEVELS = ["llvm -mcpu=x86-64-v2", "llvm -mcpu=x86-64-v3", "llvm -mcpu=x86-64-v4"]
AARCH64 = ["llvm -mtriple=aarch64-linux-gnu -mcpu=neoverse-v1",
           "llvm -mtriple=aarch64-linux-gnu -mcpu=apple-m1"]
CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"


def runnable_here(spec: str) -> bool:
    target = Target(spec)
    return cpu_support.runs_on_this_machine(target) and \
        not cpu_support.missing_features(target.enabled_features)


HOST_TARGETS = ["llvm"] + [spec for spec in X86_LEVELS
                           if platform.machine() == "x86_64" and runnable_here(spec)]


def run_cases(spec: str, case: str, *extra: str, **settings: str) -> str:
    env = {**os.environ, "TEX_CACHE_DIR": "off", **settings}
    result = subprocess.run([sys.executable, str(HERE / "machine_cases.py"), spec, case, *extra],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f"{spec} {case}: exit {result.returncode}\n" \
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("case", ["casts", "kernels"])
@pytest.mark.parametrize("spec", HOST_TARGETS)
def test_every_cast_and_kernel_on_each_level_this_host_runs(spec, case):
    assert "all right" in run_cases(spec, case)


@pytest.mark.parametrize("case", ["casts", "kernels"])
def test_results_do_not_depend_on_the_irs_claims(case):
    """TEX_LLVM_CLAIMS=0 compiles without nsw/nuw/inbounds/noalias: the same results."""
    assert "all right" in run_cases("llvm", case, TEX_LLVM_CLAIMS="0")


def test_stripping_claims():
    text = 'define void @f(ptr noalias %a) {\n  %b = add nsw i64 %x, 1\n' \
           '  %c = getelementptr inbounds float, ptr %a, i64 %b\n  %d = mul nuw nsw i64 %b, 2\n'
    assert llvm_jit.strip_claims(text) == 'define void @f(ptr %a) {\n  %b = add i64 %x, 1\n' \
        '  %c = getelementptr float, ptr %a, i64 %b\n  %d = mul i64 %b, 2\n'


@pytest.mark.parametrize("spec", [s for s in X86_LEVELS if s not in HOST_TARGETS])
def test_a_level_this_host_lacks_builds_and_refuses_to_run(spec):
    A = tex.placeholder((37,), name="A")
    B = tex.compute((37,), lambda i: A[i] * 2.0, name="B")
    kernel = tex.build(tex.create_schedule(B.op), [A, B], target=spec)
    assert kernel.get_source("asm")
    with pytest.raises(tex.DeviceError, match="this CPU lacks"):
        kernel(np.ones(37, "float32"))


@pytest.mark.parametrize("case", ["casts", "kernels"])
@pytest.mark.parametrize("spec", AARCH64[1:])  # AARCH64[0] is exported and run below
def test_aarch64_kernels_build_and_refuse_to_run_here(spec, case):
    if platform.machine() == "aarch64":
        pytest.skip("this host is aarch64: the host targets above run them")
    assert "all right" in run_cases(spec, case)


@pytest.mark.skipif(platform.machine() == "aarch64" or not shutil.which(CROSS_CC)
                    or not shutil.which(QEMU) or not Path(AARCH64_SYSROOT).is_dir(),
                    reason=f"needs {CROSS_CC} and {QEMU} (Debian: gcc-aarch64-linux-gnu, "
                           "qemu-user)")
@pytest.mark.parametrize("case", ["casts", "kernels"])
def test_an_aarch64_library_runs_under_qemu(tmp_path, case):
    run_cases(AARCH64[0], case, "--export", str(tmp_path))
    harness = tmp_path / "harness"
    subprocess.run([CROSS_CC, "-O1", "-o", str(harness), str(HERE / "library_harness.c"), "-ldl"],
                   check=True)
    sys.path.insert(0, str(HERE))
    try:
        import machine_cases
    finally:
        sys.path.remove(str(HERE))
    cases = list(machine_cases.exported_cases(tmp_path))
    assert cases
    for name, inputs, wanted in cases:
        files = []
        for k, array in enumerate(inputs + [np.zeros_like(w) for w in wanted]):
            files.append(tmp_path / f"{name}.{k}.bin")
            np.ascontiguousarray(array).tofile(files[-1])
        command = [QEMU, "-L", AARCH64_SYSROOT, str(harness), str(tmp_path / "cases.so"), name,
                   "0", str(len(files)), *map(str, files)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        for k, want in enumerate(wanted):
            got = np.fromfile(f"{files[len(inputs) + k]}.out", dtype=want.dtype)
            machine_cases.compare(name, got.reshape(want.shape), want)


def test_a_call_of_an_unknown_routine_is_a_build_error_naming_it():
    ir_text = """
declare float @tex_no_such_routine(float)
define void @calls_unknown(ptr %buffers, ptr %sizes) {
  %x = call float @tex_no_such_routine(float 1.0)
  ret void
}
"""
    with pytest.raises(BuildError, match="tex_no_such_routine"):
        llvm_jit.compile_ir(ir_text, "calls_unknown", Target("llvm"))


def test_routines_the_code_generator_calls_are_defined_by_tex():
    """double -> half has no instruction before AVX512-FP16: LLVM calls __truncdfhf2,
    which tex defines (correctly rounded: not through float32, which rounds twice)."""
    A = tex.placeholder((5,), "float64", name="A")
    B = tex.compute((5,), lambda i: tex.cast("float16", A[i]), name="B")
    kernel = tex.build(tex.create_schedule(B.op), [A, B], target="llvm -mcpu=x86-64-v2") \
        if platform.machine() == "x86_64" else \
        tex.build(tex.create_schedule(B.op), [A, B])
    # 1 + 2^-11 + 2^-40 is just above a float16 tie: float32 drops the 2^-40 and the tie
    # then rounds to even (1.0); rounded once, it is 1 + 2^-10
    a = np.array([1 + 2.0**-11 + 2.0**-40, 65519.0, 65520.0, 2.0**-25 * 1.5, np.nan])
    got = kernel(a)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, a.astype(np.float16))
    assert got[0] == np.float16(1 + 2.0**-10)


def test_foreign_triples_and_cpus_are_checked():
    with pytest.raises(BuildError, match="x86_64 or aarch64"):
        Target("llvm -mtriple=riscv64-linux-gnu")
    with pytest.raises(BuildError, match="unknown CPU 'neoverse-v99' for aarch64"):
        Target("llvm -mtriple=aarch64-linux-gnu -mcpu=neoverse-v99")
    t = Target("llvm -mtriple=aarch64-linux-gnu")
    assert (t.machine, t.cpu, t.vector_bits) == ("aarch64", "generic", 128)
    assert str(t) == "llvm -mtriple=aarch64-linux-gnu" and Target(str(t)) == t


def test_export_for_another_machine_names_the_missing_cross_compiler(tmp_path):
    if platform.machine() == "aarch64":
        pytest.skip("this host is aarch64")
    A = tex.placeholder((8,), name="A")
    B = tex.compute((8,), lambda i: A[i] + 1.0, name="B")
    kernel = tex.build(tex.create_schedule(B.op), [A, B], target=AARCH64[0], name="plus1")
    with pytest.raises(BuildError, match="no-such-cc"):
        tex.export_library([kernel], tmp_path / "x.so", cc="no-such-cc")
