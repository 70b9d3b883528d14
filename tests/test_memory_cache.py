"""The in-memory kernel caches are bounded (tex.runtime.cache): each keeps the most recently
used TEX_CACHE_MEMORY_KERNELS kernels, dropping a kernel frees its machine code once no
Kernel uses it, and a Kernel still in use keeps working after eviction or clear_cache."""
import gc
import json
import os
import pathlib
import subprocess
import sys
import weakref

import numpy as np
import pytest

import tex
from tex import config
from tex.runtime import cache

ROOT = pathlib.Path(__file__).resolve().parent.parent


def scaled(factor):
    """B = A * factor on 64 floats: a distinct small kernel for each factor."""
    A = tex.placeholder((64,), name="A")
    B = tex.compute((64,), lambda i: A[i] * float(factor), name="B")
    return tex.build(tex.create_schedule(B.op), [A, B])


def computes(kernel, factor) -> bool:
    a = np.arange(64, dtype="float32")
    return bool(np.array_equal(kernel(a), a * np.float32(factor)))


def test_the_bound_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("TEX_CACHE_MEMORY_KERNELS", raising=False)
    assert config.cache_memory_kernels() == 256
    for value, expected in [("0", 0), (" 12 ", 12), ("", 256)]:
        monkeypatch.setenv("TEX_CACHE_MEMORY_KERNELS", value)
        assert config.cache_memory_kernels() == expected
    for value in ["-1", "many", "2.5"]:
        monkeypatch.setenv("TEX_CACHE_MEMORY_KERNELS", value)
        with pytest.raises(tex.ConfigError, match="TEX_CACHE_MEMORY_KERNELS is a whole "
                                                  f"number of kernels .*got '{value}'"):
            config.cache_memory_kernels()


def test_the_least_recently_used_kernels_are_dropped(cache_dir, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MEMORY_KERNELS", "3")
    kept = [scaled(factor) for factor in range(1, 6)]
    assert len(cache._by_fingerprint) == 3
    assert all(computes(kernel, factor) for factor, kernel in enumerate(kept, 1))  # evicted too
    assert scaled(5)._compiled is kept[4]._compiled  # still in memory
    again = scaled(1)  # dropped from memory: read back from disk
    assert again.loaded_from_disk and again._compiled is not kept[0]._compiled


def test_dropped_code_is_freed_and_kept_code_still_runs(cache_dir):
    kept, dropped = scaled(2), scaled(3)
    engine = dropped._compiled._engine
    code = weakref.ref(dropped._compiled)
    del dropped
    cache.clear_cache()
    gc.collect()
    assert code() is None and engine.closed  # the machine code is unmapped
    assert computes(kept, 2) and not kept._compiled._engine.closed


MANY_BUILDS = """
import gc, json, os, sys
sys.path.insert(0, {tests!r})
import test_memory_cache as t
from tex.runtime import cache

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def growth_per_build(factors, settled):
    for factor in factors[:settled]:
        t.scaled(factor)
    gc.collect()
    before = rss()
    for factor in factors[settled:]:
        t.scaled(factor)
    gc.collect()
    return (rss() - before) / (len(factors) - settled)

factors = [1 + k / 1024 for k in range({builds})]
compiled = growth_per_build(factors, {settled})
cache.clear_cache()
loaded = growth_per_build(factors, {settled})
print(json.dumps({{"compiled": compiled, "loaded": loaded}}))
"""


def test_memory_stays_bounded_over_many_builds(tmp_path):
    """1000 distinct kernels built (compiled, then in a second round loaded from the disk
    cache), none kept, in a process of their own. Past the first 300 (the bound is 256),
    memory grows by at most 2 KiB a kernel loaded from disk (0 here; 8 KiB while every
    kernel was kept) and by at most 100 KiB a kernel compiled (77 KiB here; 136 KiB while
    every kernel was kept): llvmlite's O3 pipeline never frees what a PassBuilder
    allocates (its PassInstrumentationCallbacks), ~60-75 KiB a compile out of tex's reach
    even when the kernel itself is freed."""
    code = MANY_BUILDS.format(tests=str(ROOT / "tests"), builds=1000, settled=300)
    env = dict(os.environ, TEX_CACHE_DIR=str(tmp_path / "cache"), TEX_VERIFY="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("TEX_CACHE_MEMORY_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    growth = json.loads(out.stdout.strip().splitlines()[-1])
    assert growth["loaded"] < 2 * 1024, growth
    assert growth["compiled"] < 100 * 1024, growth
