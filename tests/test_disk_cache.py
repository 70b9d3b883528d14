"""The disk cache of compiled kernels (tex.runtime.cache): a kernel built in one process
loads from disk in the next; damaged entries are recompiled and rewritten; concurrent
writers leave one whole entry; keys separate targets, dtypes and tex versions.

Each test gets its own TEX_CACHE_DIR. "Another process" is a fresh Python running
`child_build` below and printing what it saw as JSON.
"""
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tex
from tex import config
from tex.runtime import cache
from tex.schedule.fingerprint import fingerprint

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
M, N, K = 37, 45, 19  # divisible by neither split factor (4 rows, 16 lanes)


def declare(dtype="float32"):
    """C[i, j] = sum_k exp(A[i, k]) * B[k, j]: rows split and parallel, columns split
    and vectorized, the reduction calling libm."""
    A = tex.placeholder((M, K), dtype, name="A")
    B = tex.placeholder((K, N), dtype, name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(tex.exp(A[i, k]) * B[k, j], axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=4)
    jo, ji = s[C].split(C.op.axis[1], factor=16)
    s[C].reorder(io, jo, ii, ji)
    s[C].parallel(io)
    s[C].vectorize(ji)
    return s, [A, B, C]


def build(dtype="float32", target="llvm"):
    s, args = declare(dtype)
    return tex.build(s, args, target=target)


def matches_numpy(kernel, dtype="float32") -> bool:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    return bool(np.allclose(kernel(a, b), np.exp(a) @ b, rtol=1e-4, atol=1e-4))


def child_build():
    """What a child process runs: build, check, and report as JSON on stdout."""
    kernel = build()
    print(json.dumps({"from_disk": kernel.loaded_from_disk,
                      "correct": matches_numpy(kernel),
                      "asm_has_entry": kernel._compiled.name in kernel.get_source("asm")}))


def start_child(cache_dir) -> subprocess.Popen:
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_disk_cache as t; " \
           "t.child_build()"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True)


def child_result(child: subprocess.Popen) -> dict:
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def entries(cache_dir) -> list[pathlib.Path]:
    """The kernels' entries (the thread pool keeps one of its own beside them)."""
    return sorted(p for p in pathlib.Path(cache_dir).glob("*" + cache.SUFFIX)
                  if not p.name.startswith("thread_pool-"))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty disk cache of its own, and an empty in-memory cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TEX_CACHE_DIR", str(path))
    cache.clear_cache()
    yield path
    cache.clear_cache()


def test_a_kernel_built_before_loads_from_disk_in_another_process(cache_dir):
    first = build()
    assert not first.loaded_from_disk and matches_numpy(first)
    assert len(entries(cache_dir)) == 1
    seen = child_result(start_child(cache_dir))
    assert seen == {"from_disk": True, "correct": True, "asm_has_entry": True}


def test_a_disk_hit_shows_the_same_sources(cache_dir):
    first = build()
    cache.clear_cache()  # memory only: the next build reads the disk
    again = build()
    assert again.loaded_from_disk and matches_numpy(again)
    assert again.get_source("ll") == first.get_source("ll")
    assert again.get_source("asm") == first.get_source("asm")
    assert again.get_source("tex") == first.get_source("tex")


def truncate(data: bytes) -> bytes:
    return data[:len(data) // 2]


def flip_payload_byte(data: bytes) -> bytes:
    return data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]


def flip_header_byte(data: bytes) -> bytes:
    at = data.index(b'"name"') + 1
    return data[:at] + b"N" + data[at + 1:]


def bad_magic(data: bytes) -> bytes:
    return b"tex-kernel 0" + data[len(cache.MAGIC):]


def empty(data: bytes) -> bytes:
    return b""


def wrong_name(data: bytes) -> bytes:
    """A whole entry whose entry symbol is not in the object: the load fails."""
    magic, header, payload = data.split(b"\n", 2)
    fields = dict(json.loads(header), name="nowhere")
    return b"\n".join([magic, json.dumps(fields).encode(), payload])


@pytest.mark.parametrize("damage", [truncate, flip_payload_byte, flip_header_byte, bad_magic,
                                    empty, wrong_name])
def test_a_damaged_entry_is_recompiled_and_rewritten(cache_dir, damage):
    build()
    [path] = entries(cache_dir)
    good = path.read_bytes()
    path.write_bytes(damage(good))
    assert cache.parse_entry(path.read_bytes()) is None or damage is wrong_name
    cache.clear_cache()
    again = build()
    assert not again.loaded_from_disk and matches_numpy(again)
    assert cache.parse_entry(path.read_bytes()) is not None
    cache.clear_cache()
    third = build()
    assert third.loaded_from_disk and matches_numpy(third)


def test_processes_building_at_once_leave_one_whole_entry(cache_dir):
    children = [start_child(cache_dir) for _ in range(4)]
    assert all(child_result(c)["correct"] for c in children)
    [path] = entries(cache_dir)
    assert all(p.suffix == cache.SUFFIX for p in cache_dir.iterdir())  # no temporary files
    assert cache.parse_entry(path.read_bytes()) is not None
    assert build().loaded_from_disk


def fingerprint_of(dtype="float32"):
    s, args = declare(dtype)
    return fingerprint(s, args, "main")


def test_keys_separate_targets_dtypes_versions_and_sources(monkeypatch):
    def key(dtype="float32", target="llvm"):
        return cache.disk_key(fingerprint_of(dtype), tex.Target(target))

    base = key()
    assert key() == base
    assert len({base, key(target="llvm -fastmath"), key(target="llvm -mcpu=x86-64"),
                key(target="llvm -mcpu=haswell"), key("float64")}) == 5
    monkeypatch.setattr(tex, "__version__", "999.0")
    assert key() != base
    monkeypatch.undo()
    monkeypatch.setattr(cache, "source_digest", lambda: "a changed compiler")
    assert key() != base


def test_a_disk_hit_lowers_only_when_the_program_is_asked_for(cache_dir):
    built = build()
    cache.clear_cache()
    s, args = declare()
    kernel = tex.build(s, args)
    assert kernel.loaded_from_disk and kernel._func is None
    assert kernel.get_source("tex") == built.get_source("tex") and kernel._func is None
    assert str(kernel.func) == built.get_source("tex")  # lowered now
    cache.clear_cache()
    s, args = declare()
    kernel = tex.build(s, args)
    s[args[-1]].split(s[args[-1]].leaf_iter_vars[0], factor=2)
    with pytest.raises(tex.BuildError, match="has changed"):
        kernel.func
    assert matches_numpy(kernel)  # the kernel itself is unaffected


def test_a_kernel_for_another_target_or_dtype_is_another_entry(cache_dir):
    for dtype, target in [("float32", "llvm"), ("float64", "llvm"),
                          ("float32", "llvm -mcpu=x86-64")]:
        kernel = build(dtype, target)
        assert not kernel.loaded_from_disk and matches_numpy(kernel, dtype)
    assert len(entries(cache_dir)) == 3


def test_clear_cache_with_disk_deletes_the_entries(cache_dir):
    build()
    cache.clear_cache()
    assert len(entries(cache_dir)) == 1  # memory only, by default
    cache.clear_cache(disk=True)
    assert entries(cache_dir) == []
    assert not build().loaded_from_disk


@pytest.mark.parametrize("value", ["off", "OFF", ""])
def test_the_disk_cache_can_be_turned_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("TEX_CACHE_DIR", value)
    monkeypatch.chdir(tmp_path)
    assert config.cache_dir() is None
    cache.clear_cache()
    assert matches_numpy(build())
    assert list(tmp_path.iterdir()) == []
    cache.clear_cache()


def test_the_default_directory_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("TEX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.cache_dir() == tmp_path / "tex"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.cache_dir() == tmp_path / ".cache" / "tex"


def test_the_test_session_does_not_use_the_users_cache():
    assert config.cache_dir() != pathlib.Path("~/.cache/tex").expanduser()


def test_an_unwritable_directory_means_no_disk_cache_and_one_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("TEX_CACHE_DIR", str(blocker / "cache"))  # under a file: never a dir
    cache.clear_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert matches_numpy(build("float32"))
        assert matches_numpy(build("float64"), "float64")
    assert len([w for w in caught if "kernel cache" in str(w.message)]) == 1
    cache.clear_cache()


def test_the_thread_pool_is_loaded_from_disk_too(cache_dir):
    child_result(start_child(cache_dir))  # writes the kernel's and the pool's entries
    [pool] = [p for p in cache_dir.glob("thread_pool-*" + cache.SUFFIX)]
    code = ("import json, sys; sys.path.insert(0, {tests!r}); import test_disk_cache as t\n"
            "from tex.codegen import thread_pool\n"
            "def refuse(): raise AssertionError('the pool was compiled, not loaded')\n"
            "thread_pool.compile_object = refuse\n"
            "t.child_build()\n").format(tests=str(TESTS))
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["correct"]
    pool.write_bytes(truncate(pool.read_bytes()))  # a damaged pool entry is compiled again
    assert child_result(start_child(cache_dir))["correct"]
    assert cache.parse_entry(pool.read_bytes()) is not None
