"""CUDA builds found by the schedule's fingerprint (tex.runtime.cache): an identical schedule
declared again, in this process or another, builds without lowering or NVRTC, from memory or
from its disk entry; different schedules get different entries; a damaged or unfitting
entry is rebuilt. Structural checks need no GPU; running a kernel read from disk does.

Each test gets its own TEX_CACHE_DIR. "Another process" is a fresh Python running
`child_build` below and printing what it saw as JSON.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tex
import tex.driver
from tex import disk_cache
from tex.codegen import nvrtc
from tex.codegen.cuda_json import module_from_json, module_to_json
from tex.runtime import cache, cuda_simulator
from tex.runtime.cuda_device import gpu_available
from tex.schedule.fingerprint import Unfingerprintable
from tex.lower import kernel_interface

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
N = 1000  # not a multiple of the split factors (64, 32)
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")


def declare(factor=64, dtype="float32", n=None):
    """c = 2 * a + b over a symbolic n (unless given), in two launches sharing the global
    temporary t; each stage split by `factor` and bound to blocks and threads."""
    n = tex.var("n") if n is None else n
    a = tex.placeholder((n,), dtype, name="a")
    b = tex.placeholder((n,), dtype, name="b")
    t = tex.compute((n,), lambda i: a[i] * 2.0, name="t")
    c = tex.compute((n,), lambda i: t[i] + b[i], name="c")
    s = tex.create_schedule(c.op)
    for stage in (t, c):
        outer, inner = s[stage].split(stage.op.axis[0], factor=factor)
        s[stage].bind(outer, tex.thread_axis("blockIdx.x"))
        s[stage].bind(inner, tex.thread_axis("threadIdx.x"))
    return s, [a, b, c]


def build(**kwargs):
    s, args = declare(**kwargs)
    return tex.build(s, args, target="cuda")


def described(kernel) -> tuple:
    """Everything about a kernel's module but the identity of its buffers and variables."""
    module = kernel._module
    return (module.source, module.cubin, str(module.target),
            [(la.name, str(la.grid), str(la.block), [b.name for b in la.params],
              [v.name for v in la.size_vars], la.alignments) for la in module.launches],
            [(b.name, str(b.dtype), str(b.shape), b.scope) for b in module.temporaries])


def refuse_lowering_and_nvrtc(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("lowered or compiled")

    monkeypatch.setattr(tex.driver, "lower", refuse)
    monkeypatch.setattr(nvrtc, "_nvrtc_compile", refuse)


@pytest.fixture
def lowerings(monkeypatch):
    """The schedules tex.build lowers from now on, one per call of `lower`."""
    seen = []
    real = tex.driver.lower

    def counted(sch, *args, **kwargs):
        seen.append(sch)
        return real(sch, *args, **kwargs)

    monkeypatch.setattr(tex.driver, "lower", counted)
    return seen



def entries(cache_dir) -> list[pathlib.Path]:
    """The kernels' entries (NVRTC keeps its own beside them)."""
    return sorted(p for p in pathlib.Path(cache_dir).glob("*" + disk_cache.SUFFIX)
                  if not p.name.startswith("nvrtc-"))


def child_build():
    """What a child process runs: build with lowering and NVRTC refused, report as JSON."""
    def refuse(*args, **kwargs):
        raise AssertionError("lowered or compiled")

    tex.driver.lower = nvrtc._nvrtc_compile = refuse
    kernel = build()
    print(json.dumps({"cuda": kernel.get_source("cuda"), "tex": kernel.get_source("tex"),
                      "lowered": kernel._func is not None}))


def run_child(cache_dir) -> dict:
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_cuda_build_cache as t; " \
           "t.child_build()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- in this process ----------------------------------------------------------------------
def test_an_identical_schedule_declared_again_is_not_lowered(cache_dir, lowerings):
    first = build()
    assert len(lowerings) == 1
    again = build()
    assert len(lowerings) == 1 and again is not first
    assert again.get_source("cuda") == first.get_source("cuda")
    assert again.get_source("tex") == first.get_source("tex")


def test_a_disk_hit_needs_neither_lowering_nor_nvrtc(cache_dir, monkeypatch):
    real_lower = tex.driver.lower
    first = build()
    assert len(entries(cache_dir)) == 1
    cache.clear_cache()  # memory only: the next build reads the disk
    refuse_lowering_and_nvrtc(monkeypatch)
    s, args = declare()
    again = tex.build(s, args, target="cuda")
    assert described(again) == described(first) and again._func is None
    assert again.get_source("tex") == first.get_source("tex") and again._func is None
    n = args[0].shape[0]
    assert all(launch.size_vars == (n,) for launch in again._module.launches)
    assert again._module.launches[0].params[0] is again._params[0].buffer
    monkeypatch.setattr(tex.driver, "lower", real_lower)
    assert str(again.func) == first.get_source("tex")  # lowered now, when asked for


def test_a_kernel_read_from_disk_cannot_lower_a_changed_schedule(cache_dir):
    build()
    cache.clear_cache()
    s, args = declare()
    kernel = tex.build(s, args, target="cuda")
    s[args[-1]].split(s[args[-1]].leaf_iter_vars[-1], factor=2)
    with pytest.raises(tex.BuildError, match="has changed"):
        kernel.func
    assert "main_kernel1" in kernel.get_source("cuda")  # the kernel itself is unaffected


def test_another_process_builds_from_the_disk_entry(cache_dir):
    first = build()
    seen = run_child(cache_dir)
    assert seen == {"cuda": first.get_source("cuda"), "tex": first.get_source("tex"),
                    "lowered": False}


def test_different_schedules_get_different_entries(cache_dir, lowerings):
    variants = [{}, {"factor": 32}, {"dtype": "float64"}, {"n": N}]
    first = [build(**v) for v in variants]
    assert len(lowerings) == len(variants) and len(entries(cache_dir)) == len(variants)
    assert len({k.get_source("cuda") for k in first}) == len(variants)
    cache.clear_cache()
    again = [build(**v) for v in variants]
    assert len(lowerings) == len(variants)
    assert [described(k) for k in again] == [described(k) for k in first]


def test_the_kernels_name_is_part_of_the_key(cache_dir, lowerings):
    s, args = declare()
    tex.build(s, args, target="cuda")
    s, args = declare()
    renamed = tex.build(s, args, target="cuda", name="other")
    assert len(lowerings) == 2 and "other_kernel0" in renamed.get_source("cuda")


# --- damaged, unfitting or unwritable entries ----------------------------------------------
def flip_last_byte(data: bytes, secret: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def resigned(change):
    """Damage that keeps the file whole and authentic: `change(entry)` is stored instead."""
    def damage(data: bytes, secret: bytes) -> bytes:
        return disk_cache.format_entry(change(disk_cache.parse_entry(data, secret)), secret)
    return damage


def with_description(change):
    """Damage that keeps the file whole: `change(description)` is stored instead."""
    def changed(entry):
        description = json.loads(entry.ll)
        change(description)
        return entry._replace(ll=json.dumps(description))
    return resigned(changed)


DAMAGE = {
    "truncated": lambda data, secret: data[:len(data) // 2],
    "flipped byte": flip_last_byte,
    "not an entry": lambda data, secret: b"garbage",
    "empty description": with_description(lambda d: d.clear()),
    "unknown buffer": with_description(lambda d: d["launches"][0]["buffers"].append(99)),
    "unknown size variable": with_description(lambda d: d["launches"][0]["sizes"].append(1)),
    "unknown node": with_description(lambda d: d["launches"][0]["grid"][0].__setitem__(0, "Eval")),
    "two launch dimensions": with_description(lambda d: d["launches"][0]["block"].pop()),
    "an alignment too many":
        with_description(lambda d: d["launches"][0]["alignments"].append(4)),
    "a name that is no string": with_description(lambda d: d["launches"][0].update(name=7)),
    "bad dtype": with_description(lambda d: d["temporaries"][0].__setitem__(1, "float7")),
    "another kind of entry": resigned(lambda entry: entry._replace(name="main")),
    "another kernel's key": resigned(lambda entry: entry._replace(key=entry.key + " ")),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_entry_is_reported_and_rebuilt(cache_dir, lowerings, damage):
    first = build()
    [path] = entries(cache_dir)
    path.write_bytes(damage(path.read_bytes(), disk_cache.secret(cache_dir)))
    cache.clear_cache()
    with pytest.warns(RuntimeWarning, match="cannot be used"):
        again = build()
    assert len(lowerings) == 2 and described(again) == described(first)
    cache.clear_cache()
    third = build()
    assert len(lowerings) == 2 and described(third) == described(first)


def test_a_process_local_fingerprint_is_not_written(cache_dir, monkeypatch, lowerings):
    monkeypatch.setattr(tex.driver, "process_local", lambda text: True)
    first = build()
    again = build()
    assert entries(cache_dir) == [] and len(lowerings) == 1
    assert again.get_source("cuda") == first.get_source("cuda")


def test_an_unfingerprintable_schedule_is_lowered_every_time(cache_dir, monkeypatch, lowerings):
    def unfingerprintable(*args):
        raise Unfingerprintable("test")

    monkeypatch.setattr(tex.driver, "fingerprint", unfingerprintable)
    first, again = build(), build()
    assert entries(cache_dir) == [] and len(lowerings) == 2
    assert again.get_source("cuda") == first.get_source("cuda") and again._func is not None


def test_without_a_disk_cache_memory_still_serves(tmp_path, monkeypatch, lowerings):
    monkeypatch.setenv("TEX_CACHE_DIR", "off")
    cache.clear_cache()
    first, again = build(), build()
    assert len(lowerings) == 1 and again.get_source("cuda") == first.get_source("cuda")
    cache.clear_cache()


# --- the description ----------------------------------------------------------------------
def test_the_description_reads_back_for_another_interface():
    kernel = build()
    s, args = declare()
    interface = kernel_interface(s, args, "main")
    text = module_to_json(kernel._module, kernel.func)
    module = module_from_json(text, kernel.target, b"cubin", interface)
    assert module.cubin == b"cubin" and module.source == kernel.get_source("cuda")
    assert module.ptx == kernel.get_source("ptx") and ".entry" in module.ptx
    assert module.temporaries[0].shape[0] is interface.size_vars[0]
    assert module.launches[1].params[:2] == interface.params[1:]
    assert module_from_json(text[:-1], kernel.target, b"", interface) is None


# --- on a GPU -----------------------------------------------------------------------------
@pytest.mark.parametrize("run", [pytest.param("call", marks=needs_gpu),
                                 pytest.param("simulate", marks=needs_compiler)])
def test_a_kernel_read_from_disk_matches_numpy(cache_dir, run):
    build()
    cache.clear_cache()
    kernel = build()
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(N).astype("float32") for _ in range(2))
    result = kernel(a, b) if run == "call" else kernel.simulate(a, b)
    np.testing.assert_allclose(result, 2 * a + b, rtol=1e-6)
