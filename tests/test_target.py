"""Target: parsing, the host description, canonical strings, errors."""
import os
import sys
import types

import llvmlite.binding as llvm
import pytest

from tex import dtype as dt
from tex import target as target_module
from tex.errors import BuildError
from tex.target import Target, as_target


def test_host_target_describes_this_machine():
    t = Target("llvm")
    assert t.kind == "llvm" and t.cpu == llvm.get_host_cpu_name()
    host = llvm.get_host_cpu_features().flatten()
    assert t.features == host
    expected = 512 if "+avx512f" in host else 256 if "+avx2" in host else 128
    assert t.vector_bits == expected
    assert t.num_cores == os.cpu_count()
    assert not t.fastmath
    assert Target("llvm -mcpu=native") == t


@pytest.mark.parametrize("spec,bits", [("llvm -mcpu=skylake-avx512", 512),
                                       ("llvm -mcpu=haswell", 256),
                                       ("llvm -mcpu=nehalem", 128),
                                       ("llvm -mcpu=znver4", 512),
                                       ("llvm -mcpu=skylake-avx512 -mattr=-avx512f", 256),
                                       ("llvm -mcpu=nehalem -mattr=+avx2,+fma", 256),
                                       ("llvm -mattr=-avx512f,-avx2", 128)])
def test_vector_width_follows_cpu_and_features(spec, bits):
    t = Target(spec)
    assert t.vector_bits == bits
    assert t.vector_lanes(dt.float32) == bits // 32
    assert t.vector_lanes(dt.float64) == bits // 64
    assert t.vector_lanes(dt.int8) == bits // 8


def test_named_cpu_takes_features_from_its_name():
    t = Target("llvm -mcpu=skylake-avx512 -mattr=+avx512bw")
    assert t.cpu == "skylake-avx512" and t.features == "+avx512bw"


@pytest.mark.parametrize("spec,canonical", [
    ("llvm", "llvm"),
    ("  llvm   -mcpu=native ", "llvm"),
    ("llvm -fastmath -mcpu=haswell", "llvm -mcpu=haswell -fastmath"),
    ("llvm -mattr=+avx2 -mcpu=haswell", "llvm -mcpu=haswell -mattr=+avx2"),
    ("cuda -arch=sm_80", "cuda -arch=sm_80"),
])
def test_string_round_trips(spec, canonical):
    t = Target(spec)
    assert str(t) == canonical
    assert Target(str(t)) == t and hash(Target(str(t))) == hash(t)
    assert repr(t) == f"Target({canonical!r})"


def test_targets_compare_by_string():
    assert Target("llvm -mcpu=haswell") != Target("llvm -mcpu=skylake")
    assert len({Target("llvm"), Target("llvm -mcpu=native"), Target("llvm -fastmath")}) == 2
    assert Target("llvm -fastmath").fastmath


def test_cuda_is_parsed():
    t = Target("cuda -arch=sm_80")
    assert t.kind == "cuda" and t.arch == "sm_80" and t.cpu is None
    assert t.max_threads_per_block == 1024 and t.warp_size == 32


def test_cuda_arch_defaults_to_the_gpu_present_or_sm_80():
    t = Target("cuda")
    assert t.arch.startswith("sm_") and str(t) == f"cuda -arch={t.arch}"
    assert Target(str(t)) == t


def test_as_target():
    t = Target("llvm -mcpu=haswell")
    assert as_target(t) is t
    assert as_target("llvm -mcpu=haswell") == t
    with pytest.raises(BuildError, match="expected a Target or a target string, got int"):
        as_target(3)


@pytest.mark.parametrize("spec,bad", [
    ("opencl", "'opencl'"),
    ("llvm -arch=sm_80", "'-arch=sm_80'"),
    ("cuda -mcpu=haswell", "'-mcpu=haswell'"),
    ("llvm mcpu=haswell", "'mcpu=haswell'"),
    ("llvm -mcpu=haswel", "'haswel'"),
    ("llvm -mcpu", "-mcpu=VALUE"),
    ("llvm -fastmath=1", "-fastmath \\(no value\\)"),
    ("llvm -mattr=avx2", "'avx2'"),
    ("llvm -mcpu=haswell -mcpu=skylake", "-mcpu given twice"),
    ("cuda -arch=80", "'80'"),
    ("", "got ''"),
])
def test_bad_targets_name_the_bad_part(spec, bad):
    with pytest.raises(BuildError, match=bad):
        Target(spec)


def test_gpu_detection_skips_the_driver_where_linux_shows_none(monkeypatch, tmp_path):
    """Without a sign of the NVIDIA driver, detection answers at once, never calling
    into cuda-python (whose import and cuInit cost tens of milliseconds)."""
    calls = []
    fake_driver = types.SimpleNamespace(cuInit=lambda flags: calls.append(flags) or (1,),
                                        CUresult=types.SimpleNamespace(CUDA_SUCCESS=0))
    fake_bindings = types.ModuleType("cuda.bindings")
    fake_bindings.driver = fake_driver
    monkeypatch.setitem(sys.modules, "cuda.bindings", fake_bindings)
    monkeypatch.setattr(target_module.sys, "platform", "linux")
    monkeypatch.setattr(target_module, "_LINUX_DRIVER_SIGNS", (str(tmp_path / "absent"),))
    target_module._present_gpu_arch.cache_clear()
    try:
        assert target_module._present_gpu_arch() is None
        assert calls == []
        assert Target("cuda").arch == "sm_80"
        monkeypatch.setattr(target_module, "_LINUX_DRIVER_SIGNS", (str(tmp_path),))
        target_module._present_gpu_arch.cache_clear()
        assert target_module._present_gpu_arch() is None  # the fake driver's cuInit fails
        assert calls == [0]
    finally:
        target_module._present_gpu_arch.cache_clear()


def test_machine_facts_for_tiling():
    host = Target("llvm")
    l1, l2, last = host.cache_bytes
    assert 4096 <= l1 <= l2 <= last
    assert host.vector_registers == (32 if host.vector_bits == 512 or host.machine == "aarch64"
                                     else 16)
    assert Target("llvm -mcpu=haswell").vector_registers == 16
    assert Target("llvm -mcpu=x86-64-v4").vector_registers == 32
    arm = Target("llvm -mtriple=aarch64-linux-gnu -mcpu=neoverse-v1")
    assert (arm.machine, arm.vector_bits, arm.vector_registers) == ("aarch64", 128, 32)
    assert arm.triple.startswith("aarch64-") and "-mtriple=aarch64-linux-gnu" in str(arm)
