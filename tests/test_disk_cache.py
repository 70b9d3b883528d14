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
import time
import warnings

import numpy as np
import pytest

import tex
from tex import config, disk_cache
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


def files_in(directory) -> list[pathlib.Path]:
    """The files in `directory` but its secret."""
    return [p for p in pathlib.Path(directory).iterdir() if p.name != disk_cache.SECRET_FILE]


def entries(cache_dir) -> list[pathlib.Path]:
    """The kernels' entries (the thread pool keeps one of its own beside them)."""
    return sorted(p for p in pathlib.Path(cache_dir).glob("*" + disk_cache.SUFFIX)
                  if not p.name.startswith("thread_pool-"))



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


def whole(path) -> bool:
    """Whether the file at `path` is a whole, authentic entry."""
    try:
        disk_cache.parse_entry(path.read_bytes(), disk_cache.secret(path.parent))
        return True
    except disk_cache.DamagedEntry:
        return False


def truncate(data: bytes, secret: bytes) -> bytes:
    return data[:len(data) // 2]


def flip_payload_byte(data: bytes, secret: bytes) -> bytes:
    return data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]


def flip_header_byte(data: bytes, secret: bytes) -> bytes:
    at = data.index(b'"name"') + 1
    return data[:at] + b"N" + data[at + 1:]


def bad_magic(data: bytes, secret: bytes) -> bytes:
    return b"tex-kernel 0" + data[len(disk_cache.MAGIC):]


def empty(data: bytes, secret: bytes) -> bytes:
    return b""


def wrong_name(data: bytes, secret: bytes) -> bytes:
    """A whole, authentic entry whose entry symbol is not in the object: the load fails."""
    entry = disk_cache.parse_entry(data, secret)
    return disk_cache.format_entry(entry._replace(name="nowhere"), secret)


@pytest.mark.parametrize("damage", [truncate, flip_payload_byte, flip_header_byte, bad_magic,
                                    empty, wrong_name])
def test_a_damaged_entry_is_reported_deleted_and_rewritten(cache_dir, damage):
    build()
    [path] = entries(cache_dir)
    path.write_bytes(damage(path.read_bytes(), disk_cache.secret(cache_dir)))
    assert whole(path) == (damage is wrong_name)
    cache.clear_cache()
    with pytest.warns(RuntimeWarning, match=f"cache entry {path} cannot be used"):
        again = build()
    assert not again.loaded_from_disk and matches_numpy(again)
    assert whole(path)
    cache.clear_cache()
    third = build()
    assert third.loaded_from_disk and matches_numpy(third)


def test_processes_building_at_once_leave_one_whole_entry(cache_dir):
    children = [start_child(cache_dir) for _ in range(4)]
    assert all(child_result(c)["correct"] for c in children)
    [path] = entries(cache_dir)
    assert all(p.suffix == disk_cache.SUFFIX for p in files_in(cache_dir))  # no temporary files
    assert whole(path)
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
    monkeypatch.setattr(cache, "__version__", "999.0")
    assert key() != base
    monkeypatch.undo()
    monkeypatch.setattr(disk_cache, "source_digest", lambda: "a changed compiler")
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
    assert warnings_of_two_builds("kernel cache") == 1


def warnings_of_two_builds(fragment: str) -> int:
    """How many warnings containing `fragment` building two kernels raises, each kernel
    checked against NumPy (the in-memory caches emptied before and after)."""
    cache.clear_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert matches_numpy(build("float32"))
        assert matches_numpy(build("float64"), "float64")
    cache.clear_cache()
    return len([w for w in caught if fragment in str(w.message)])


def test_the_thread_pool_is_loaded_from_disk_too(cache_dir):
    child_result(start_child(cache_dir))  # writes the kernel's and the pool's entries
    [pool] = [p for p in cache_dir.glob("thread_pool-*" + disk_cache.SUFFIX)]
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
    pool.write_bytes(truncate(pool.read_bytes(), b""))  # a damaged pool entry: compiled again
    assert child_result(start_child(cache_dir))["correct"]
    assert whole(pool)


# The size bound (tex.disk_cache): least recently used entries go first, down to the
# low-water mark, whoever writes.

ENTRY_BYTES = 1000


def limit_mb(n_bytes: int) -> str:
    """TEX_CACHE_MAX_MB for a bound of about `n_bytes` (a little more, never less)."""
    return repr((n_bytes + 1) / 2**20)


def write_aged(directory, names, start=1_000_000.0):
    """Write an entry of ENTRY_BYTES for each name, each one second younger than the last."""
    paths = []
    for age, name in enumerate(names):
        path = directory / (name + disk_cache.SUFFIX)
        disk_cache.write_whole(path, b"x" * ENTRY_BYTES)
        os.utime(path, (start + age, start + age))
        paths.append(path)
    return paths


def names_in(directory) -> set[str]:
    return {p.name.removesuffix(disk_cache.SUFFIX) for p in directory.glob("*" + disk_cache.SUFFIX)}


def test_a_write_over_the_bound_evicts_the_oldest_down_to_the_low_water_mark(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(10 * ENTRY_BYTES + 500))
    names = [f"e{i}" for i in range(12)]
    write_aged(tmp_path, names[:10])
    assert names_in(tmp_path) == set(names[:10])  # 10,000 bytes: under the bound
    write_aged(tmp_path, names[10:11], start=2_000_000.0)
    # 11,000 bytes > 10,500: the three oldest go, leaving 8,000 <= 80% of the bound
    assert names_in(tmp_path) == set(names[3:11])
    write_aged(tmp_path, names[11:12], start=2_000_001.0)
    assert names_in(tmp_path) == set(names[3:12])  # 9,000 bytes: nothing more to evict


def test_a_hit_makes_an_entry_recent(tmp_path, monkeypatch):
    def entry(name):
        return disk_cache.Entry(name, name, b"\0" * 100, "", "")

    size = len(disk_cache.format_entry(entry("a"), disk_cache.secret(tmp_path)))
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(3 * size))
    paths = []
    for age, name in enumerate("abc"):
        path = tmp_path / (name + disk_cache.SUFFIX)
        disk_cache.write_entry(path, entry(name))
        os.utime(path, (1_000_000.0 + age, 1_000_000.0 + age))
        paths.append(path)
    assert disk_cache.read_entry(paths[0], "a").name == "a"  # the oldest is used now
    assert paths[0].stat().st_mtime > paths[2].stat().st_mtime
    disk_cache.write_entry(tmp_path / ("d" + disk_cache.SUFFIX), entry("d"))
    assert names_in(tmp_path) == {"a", "d"}  # b and c, used before a, went first


def test_the_entry_just_written_stays_even_over_the_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(ENTRY_BYTES // 2))
    for name in ["a", "b", "c"]:
        write_aged(tmp_path, [name], start=time.time())
        assert names_in(tmp_path) == {name}


def test_no_bound_when_the_limit_is_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", "0")
    write_aged(tmp_path, [f"e{i}" for i in range(100)])
    assert len(names_in(tmp_path)) == 100


def test_the_bound_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("TEX_CACHE_MAX_MB", raising=False)
    assert config.cache_max_bytes() == 1024 * 2**20
    for value, expected in [("0.5", 2**19), ("64", 64 * 2**20), (" 2 ", 2 * 2**20),
                            ("", 1024 * 2**20), ("0", None)]:
        monkeypatch.setenv("TEX_CACHE_MAX_MB", value)
        assert config.cache_max_bytes() == expected
    for value in ["1G", "nan", "inf"]:
        monkeypatch.setenv("TEX_CACHE_MAX_MB", value)
        with pytest.raises(ValueError, match="TEX_CACHE_MAX_MB is a number of megabytes") as info:
            config.cache_max_bytes()
        assert isinstance(info.value, tex.ConfigError)


def test_old_temporary_files_are_removed_and_young_ones_left(tmp_path, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(ENTRY_BYTES))  # a 100-byte write scans
    young = tmp_path / ("a" + disk_cache.SUFFIX + ".x1.tmp")
    old = tmp_path / ("b" + disk_cache.SUFFIX + ".x2.tmp")
    for path in (young, old):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * disk_cache.STALE_TMP_SECONDS
    os.utime(old, (hours_ago, hours_ago))
    disk_cache.write_whole(tmp_path / ("c" + disk_cache.SUFFIX), b"x" * 100)
    assert young.exists() and not old.exists()


def test_a_write_scans_the_directory_at_random_or_once_its_estimate_passes_the_bound(
        tmp_path, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(100 * ENTRY_BYTES))
    scans = []
    real_entries = disk_cache._entries
    monkeypatch.setattr(disk_cache, "_entries", lambda d: scans.append(d) or real_entries(d))
    draws = [0.99]  # a scan is due when a draw is below size / (SLACK * bound) = 0.2 here
    monkeypatch.setattr(disk_cache.random, "random", lambda: draws[0])
    write_aged(tmp_path, [f"e{i}" for i in range(101)])
    assert scans == [] and len(names_in(tmp_path)) == 101  # 1% over: not looked at yet
    draws[0] = 0.1
    write_aged(tmp_path, ["f"], start=2_000_000.0)
    assert len(scans) == 1 and len(names_in(tmp_path)) == 80
    draws[0] = 0.99
    write_aged(tmp_path, [f"g{i}" for i in range(20)], start=2_000_001.0)
    assert len(scans) == 1 and len(names_in(tmp_path)) == 100  # the estimate is at the bound
    write_aged(tmp_path, ["h"], start=2_000_100.0)
    assert len(scans) == 2 and len(names_in(tmp_path)) == 80  # and now past it


CHURN = """
import os, random, sys, pathlib
from tex import disk_cache
directory, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
def data(name):
    return disk_cache.Entry(name, name, name.encode() * 200, "", "")
for _ in range(300):
    name = f"e{rng.randrange(60)}"
    path = directory / (name + disk_cache.SUFFIX)
    if rng.random() < 0.5:
        disk_cache.write_entry(path, data(name))
    else:
        entry = disk_cache.read_entry(path, name)
        assert entry is None or entry == data(name), name
print("ok")
"""


def test_processes_writing_and_evicting_at_once_leave_a_whole_directory(tmp_path,
                                                                        monkeypatch):
    limit = 20_000  # about 25 entries of ~700 bytes
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(limit))
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    children = [subprocess.Popen([sys.executable, "-W", "error", "-c", CHURN, str(tmp_path),
                                  str(seed)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for seed in range(4)]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0 and out.strip() == "ok" and err == "", err
    files = files_in(tmp_path)
    assert files and all(p.suffix == disk_cache.SUFFIX for p in files)  # no temporary files
    assert all(whole(p) for p in files)
    assert sum(p.stat().st_size for p in files) <= len(children) * (limit + 1000)
    disk_cache.write_whole(tmp_path / ("last" + disk_cache.SUFFIX), b"x" * 2000)  # scans
    assert sum(p.stat().st_size for p in files_in(tmp_path)) <= limit


def test_kernels_and_the_thread_pool_are_evicted_like_any_entry(cache_dir, monkeypatch):
    monkeypatch.setenv("TEX_CACHE_MAX_MB", limit_mb(1000))  # less than one entry
    result = child_result(start_child(cache_dir))  # writes the pool's entry, then the kernel's
    assert result["correct"] and not result["from_disk"]
    [kept] = files_in(cache_dir)
    assert not kept.name.startswith("thread_pool-")


def test_a_kernel_loaded_from_disk_becomes_recent(cache_dir):
    build()
    [path] = entries(cache_dir)
    os.utime(path, (1_000_000.0, 1_000_000.0))
    cache.clear_cache()
    assert build().loaded_from_disk
    assert path.stat().st_mtime > time.time() - 600


def test_a_new_cache_directory_is_private(tmp_path, monkeypatch):
    directory = tmp_path / "new" / "cache"
    monkeypatch.setenv("TEX_CACHE_DIR", str(directory))
    cache.clear_cache()
    assert matches_numpy(build())
    assert directory.stat().st_mode & 0o777 == 0o700 and entries(directory)
    cache.clear_cache()


def test_a_directory_others_can_write_is_not_used(tmp_path, monkeypatch):
    """tex runs the code it finds there: a group- or world-writable directory is refused,
    with one warning, and kernels are compiled as if there were no disk cache."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    monkeypatch.setenv("TEX_CACHE_DIR", str(directory))
    assert warnings_of_two_builds("written by other users") == 1
    assert not list(directory.iterdir())


@pytest.mark.filterwarnings("ignore:tex. cannot write the kernel cache")  # a directory there
@pytest.mark.parametrize("replacement", ["fifo", "link to /dev/zero", "directory"])
def test_an_entry_replaced_by_something_else_is_a_miss(cache_dir, replacement):
    """Neither waited on (a FIFO), nor read without end (a device), nor followed (a link):
    the kernel is compiled again, promptly."""
    build()
    (entry,) = entries(cache_dir)
    entry.unlink()
    if replacement == "fifo":
        os.mkfifo(entry)
    elif replacement == "directory":
        entry.mkdir()
    else:
        entry.symlink_to("/dev/zero")
    assert disk_cache.read_entry(entry, "any key") is None
    cache.clear_cache()
    start = time.perf_counter()
    kernel = build()
    assert not kernel.loaded_from_disk and matches_numpy(kernel)
    assert time.perf_counter() - start < 30
