"""The disk cache cannot be poisoned (tex.disk_cache, tex.runtime.cache,
tex.codegen.object_file): an entry holds its key, so entries renamed onto each
other are refused; the object code carries its key symbol, so object code
moved between entries is refused; damaged object code is checked before MCJIT
sees it and never aborts the process, and a cubin before the CUDA driver sees it
(`nvrtc.check_output`); entries are authenticated with a
per-user secret kept in the directory. Each refused entry is reported with a
warning, deleted and built again.
"""
import json
import os
import pathlib
import platform
import struct
import subprocess
import sys

import numpy as np
import pytest

import test_disk_cache
import tex
from tex import disk_cache
from tex.codegen import object_file
from tex.runtime import cache

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
ENTRY_SYMBOL = "tex_main"  # the entry point of a kernel named "main"


def scale_kernel(factor):
    """B = A * factor + 1 on 64 floats: kernels with one interface and different code."""
    A = tex.placeholder((64,), name="A")
    B = tex.compute((64,), lambda i: A[i] * factor + 1.0, name="B")
    return tex.build(tex.create_schedule(B.op), [A, B])


def computes(kernel, factor) -> bool:
    a = np.arange(64, dtype="float32")
    return bool(np.array_equal(kernel(a), a * np.float32(factor) + 1))


def kernel_entries(cache_dir) -> set[pathlib.Path]:
    return {p for p in cache_dir.glob("*" + disk_cache.SUFFIX)
            if not p.name.startswith("thread_pool-")}


def built_with_entry(factor, cache_dir):
    """`scale_kernel(factor)`, built now, and the path of the entry it wrote."""
    before = kernel_entries(cache_dir)
    kernel = scale_kernel(factor)
    [path] = kernel_entries(cache_dir) - before
    return kernel, path


def rebuilt_with_warning(factor, fragment):
    """`scale_kernel(factor)` built again from an empty memory: it must warn with
    `fragment` and compile (not load) a kernel that computes what it should."""
    cache.clear_cache()
    with pytest.warns(RuntimeWarning, match=fragment):
        kernel = scale_kernel(factor)
    assert not kernel.loaded_from_disk and computes(kernel, factor)
    return kernel


def loads_again(factor):
    cache.clear_cache()
    kernel = scale_kernel(factor)
    return kernel.loaded_from_disk and computes(kernel, factor)


# --- 1. an entry holds its key -------------------------------------------------------------
def test_entries_renamed_onto_each_other_are_refused(cache_dir):
    _, twice = built_with_entry(2.0, cache_dir)
    _, thrice = built_with_entry(3.0, cache_dir)
    data = twice.read_bytes()
    twice.write_bytes(thrice.read_bytes())
    thrice.write_bytes(data)
    rebuilt_with_warning(2.0, "holds the entry of key .*renamed or copied onto this one")
    rebuilt_with_warning(3.0, "holds the entry of key")
    assert loads_again(2.0) and loads_again(3.0)


# --- 2. the object code carries its key symbol ---------------------------------------------
def test_object_code_moved_to_another_entry_is_refused(cache_dir):
    """Even re-signed (by someone who has the secret), another kernel's object code in an
    entry does not define the entry's key symbol."""
    _, twice = built_with_entry(2.0, cache_dir)
    _, thrice = built_with_entry(3.0, cache_dir)
    secret = disk_cache.secret(cache_dir)
    other = disk_cache.parse_entry(thrice.read_bytes(), secret)
    entry = disk_cache.parse_entry(twice.read_bytes(), secret)
    twice.write_bytes(disk_cache.format_entry(entry._replace(object_code=other.object_code),
                                              secret))
    rebuilt_with_warning(2.0, "does not define tex_key_")
    assert loads_again(2.0)


def test_the_key_symbol_names_the_entry(cache_dir):
    kernel, path = built_with_entry(2.0, cache_dir)
    symbol = "tex_key_" + path.name.removesuffix(disk_cache.SUFFIX)
    assert f"@{symbol} = " in kernel.get_source("ll")
    object_file.check_object(kernel._compiled.object_code, platform.machine(),
                             (ENTRY_SYMBOL, symbol))


# --- 3. object code is checked before MCJIT sees it ----------------------------------------
def _section_headers(obj: bytes) -> list[tuple]:
    table, count = struct.unpack_from("<Q", obj, 0x28)[0], struct.unpack_from("<H", obj, 0x3C)[0]
    return [(table + 64 * k, *struct.unpack_from("<IIQQQQIIQQ", obj, table + 64 * k))
            for k in range(count)]


def _first_of_type(obj: bytes, kind: int) -> tuple:
    """(offset of the header, then the header's fields) of the first section of `kind`."""
    return next(h for h in _section_headers(obj) if h[2] == kind)


def _patched(obj: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(obj)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def section_table_outside(obj):
    return _patched(obj, 0x28, "<Q", len(obj) + 4096)


def another_machine(obj):
    return _patched(obj, 18, "<H", 183 if platform.machine() == "x86_64" else 62)


def unknown_relocation_type(obj):
    first = _first_of_type(obj, 4)[5]  # sh_offset of the first RELA section
    info = struct.unpack_from("<Q", obj, first + 8)[0]
    return _patched(obj, first + 8, "<Q", info & ~0xFFFFFFFF | 0xEE)


def relocation_outside_its_section(obj):
    return _patched(obj, _first_of_type(obj, 4)[5], "<Q", 1 << 40)


def relocation_of_no_symbol(obj):
    first = _first_of_type(obj, 4)[5]
    info = struct.unpack_from("<Q", obj, first + 8)[0]
    return _patched(obj, first + 8, "<Q", 0xFFFF << 32 | info & 0xFFFFFFFF)


def symbol_name_outside_its_table(obj):
    symbols = _first_of_type(obj, 2)[5]
    return _patched(obj, symbols + 24, "<I", 0xFFFFFF)  # symbol 1's st_name


def huge_alignment(obj):
    return _patched(obj, _section_headers(obj)[1][0] + 48, "<Q", 1 << 40)


def entry_point_renamed(obj):
    return obj.replace(ENTRY_SYMBOL.encode() + b"\0", b"tex_niam\0", 1)


def key_symbol_renamed(obj):
    return obj.replace(b"tex_key_", b"tex_kez_", 1)


def unwind_encoding_unknown(obj):
    at = obj.index(b"zR\0") + 3 + 4  # after code and data alignment, return column, length
    return obj[:at] + b"\x7f" + obj[at + 1:]


def truncated(obj):
    return obj[:len(obj) // 2]


OBJECT_DAMAGE = {
    "section table outside the file": (section_table_outside, "section table"),
    "another machine": (another_machine, "expected " + platform.machine()),
    "unknown relocation type": (unknown_relocation_type, "type 238, which MCJIT"),
    "relocation outside its section": (relocation_outside_its_section, "patches offset"),
    "relocation of no symbol": (relocation_of_no_symbol, "names symbol 65535"),
    "symbol name outside its table": (symbol_name_outside_its_table, "runs past its string"),
    "huge alignment": (huge_alignment, "alignment of 1099511627776"),
    "entry point renamed": (entry_point_renamed, f"does not define {ENTRY_SYMBOL}"),
    "key symbol renamed": (key_symbol_renamed, "does not define tex_key_"),
    "unwind table encoding": (unwind_encoding_unknown, "unknown pointer encoding"),
    "truncated": (truncated, "outside the file"),
    "not ELF": (lambda obj: b"garbage", "ELF object code only"),
}


@pytest.fixture(scope="module")
def parallel_object():
    """The object code and key symbol of a parallel, vectorized kernel calling exp:
    relocations, an unwind table, a call of tex's thread pool."""
    kernel = test_disk_cache.build()
    return kernel._compiled.object_code, llvm_key_symbol(kernel)


def llvm_key_symbol(kernel) -> str:
    return next(line.split()[0][1:] for line in kernel.get_source("ll").splitlines()
                if line.startswith("@tex_key_"))


@pytest.mark.parametrize("damage,message", OBJECT_DAMAGE.values(), ids=OBJECT_DAMAGE.keys())
def test_damaged_object_code_is_named_before_it_is_loaded(parallel_object, damage, message):
    obj, key_symbol = parallel_object
    assert object_file.check_object(obj, platform.machine(), (ENTRY_SYMBOL, key_symbol)) \
        == {"tex_parallel_for"}
    with pytest.raises(tex.BuildError, match=message):
        object_file.check_object(damage(obj), platform.machine(), (ENTRY_SYMBOL, key_symbol))


CHILD = """
import json, pathlib, sys, warnings
sys.path.insert(0, {tests!r})
import test_cache_integrity as t, test_disk_cache
from tex import disk_cache
from tex.runtime import cache
directory = pathlib.Path({directory!r})
test_disk_cache.build()
[path] = t.kernel_entries(directory)
secret = disk_cache.secret(directory)
good = disk_cache.parse_entry(path.read_bytes(), secret)
seen = {{}}
for name, (damage, _) in t.OBJECT_DAMAGE.items():
    path.write_bytes(disk_cache.format_entry(
        good._replace(object_code=damage(good.object_code)), secret))
    cache.clear_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel = test_disk_cache.build()
    seen[name] = [kernel.loaded_from_disk, test_disk_cache.matches_numpy(kernel),
                  sum("cannot be used" in str(w.message) for w in caught),
                  disk_cache.parse_entry(path.read_bytes(), secret) == good]
print(json.dumps(seen))
"""


def run_child(code: str, cache_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


def test_damaged_object_code_in_an_authentic_entry_never_aborts_the_process(cache_dir):
    """Each damage in a whole, authentic entry (a bug, or a writer with the secret): the
    process goes on, reports the entry, compiles the kernel again and rewrites the entry."""
    out = run_child(CHILD.format(tests=str(TESTS), directory=str(cache_dir)), cache_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {name: [False, True, 1, True] for name in OBJECT_DAMAGE}


POOL_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_disk_cache
print(test_disk_cache.matches_numpy(test_disk_cache.build()))
"""


def test_a_damaged_thread_pool_entry_never_aborts_the_process(cache_dir):
    code = POOL_CHILD.format(tests=str(TESTS))
    assert run_child(code, cache_dir).stdout.split() == ["True"]  # writes the pool's entry
    [pool] = cache_dir.glob("thread_pool-*")
    secret = disk_cache.secret(cache_dir)
    good = disk_cache.parse_entry(pool.read_bytes(), secret)
    pool.write_bytes(disk_cache.format_entry(
        good._replace(object_code=unknown_relocation_type(good.object_code)), secret))
    out = run_child(code, cache_dir)
    assert out.returncode == 0 and out.stdout.split() == ["True"], out.stderr[-3000:]
    assert "type 238, which MCJIT does not implement" in out.stderr
    assert disk_cache.parse_entry(pool.read_bytes(), secret) == good


# --- 4. entries are authenticated with the user's secret -----------------------------------
def with_constant(obj: bytes, old: float, new: float) -> bytes:
    """`obj` with the float32 constant `old` (there once) replaced by `new`: other machine
    code, well-formed."""
    assert obj.count(struct.pack("<f", old)) == 1
    return obj.replace(struct.pack("<f", old), struct.pack("<f", new))


def test_an_entry_signed_with_another_secret_is_refused(cache_dir):
    """Someone who can write the directory but not read the secret cannot make tex run
    their code: their entry, well-formed down to the key symbol, fails the check."""
    _, path = built_with_entry(2.5, cache_dir)
    secret = disk_cache.secret(cache_dir)
    entry = disk_cache.parse_entry(path.read_bytes(), secret)
    forged = entry._replace(object_code=with_constant(entry.object_code, 2.5, 3.5))
    path.write_bytes(disk_cache.format_entry(forged, os.urandom(disk_cache.SECRET_BYTES)))
    rebuilt_with_warning(2.5, "authentication code does not match")
    assert loads_again(2.5)
    path.write_bytes(disk_cache.format_entry(forged, secret))  # with the secret: it runs
    cache.clear_cache()
    assert computes(scale_kernel(2.5), 3.5)


def test_the_secret_is_private_and_in_the_directory(cache_dir):
    scale_kernel(2.0)
    key = cache_dir / "secret.key"
    assert disk_cache.secret_path(cache_dir) == key
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_size == disk_cache.SECRET_BYTES
    assert key.read_bytes() == disk_cache.secret(cache_dir)
    cache.clear_cache(disk=True)
    assert key.exists() and kernel_entries(cache_dir) == set()


@pytest.mark.parametrize("spoil", ["readable by others", "a link", "too short"])
def test_a_secret_that_cannot_be_trusted_means_no_disk_cache(tmp_path, monkeypatch, spoil):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("TEX_CACHE_DIR", str(directory))
    key = disk_cache.secret_path(directory)
    real = tmp_path / "elsewhere"
    real.write_bytes(os.urandom(disk_cache.SECRET_BYTES))
    real.chmod(0o600)
    if spoil == "a link":
        key.symlink_to(real)
    else:
        key.write_bytes(real.read_bytes()[:8 if spoil == "too short" else None])
        key.chmod(0o644 if spoil == "readable by others" else 0o600)
    cache.clear_cache()
    with pytest.warns(RuntimeWarning, match="secret .* cannot be used"):
        assert computes(scale_kernel(2.0), 2.0)
    assert kernel_entries(directory) == set()
    cache.clear_cache()


# --- 5. CUDA output is checked before the driver would load it -----------------------------
CUDA_SOURCE = 'extern "C" __global__ void twice(float *a) { a[threadIdx.x] *= 2.0f; }\n'


def _cuda_damages(cubin: bytes, ptx: str, other_arch_cubin: bytes) -> dict:
    """Authentic-looking NVRTC entries that must not reach the driver."""
    wrong_machine = bytearray(cubin)
    wrong_machine[18:20] = (62).to_bytes(2, "little")
    return {"truncated": (cubin[:len(cubin) // 3], ptx, "malformed object code"),
            "wrong machine": (bytes(wrong_machine), ptx, "ELF machine 62, expected 190"),
            "wrong arch": (other_arch_cubin, ptx, "holds code for sm_90, expected sm_80"),
            "wrong PTX": (cubin, ptx.replace(".target sm_80", ".target sm_90"),
                          "PTX does not start with the header for sm_80")}


@pytest.mark.parametrize("damage", ["truncated", "wrong machine", "wrong arch", "wrong PTX"])
def test_a_damaged_cubin_in_an_authentic_nvrtc_entry_is_rebuilt(cache_dir, damage):
    """An NVRTC entry whose HMAC is right but whose cubin is damaged, for another machine or
    architecture, or whose PTX targets another one, is reported, discarded and compiled
    again: what comes back is the right cubin, and the entry is rewritten."""
    pytest.importorskip("cuda.bindings.nvrtc")
    from tex.codegen import nvrtc
    cubin, ptx = nvrtc.compile_with_ptx(CUDA_SOURCE, "sm_80")
    other, _ = nvrtc.compile_with_ptx(CUDA_SOURCE, "sm_90")
    assert object_file.cubin_arch(cubin) == 80 and object_file.cubin_arch(other) == 90
    path = nvrtc._disk_path(CUDA_SOURCE, "sm_80", "cubin")
    secret = disk_cache.secret(cache_dir)
    good = disk_cache.parse_entry(path.read_bytes(), secret)
    bad_cubin, bad_ptx, message = _cuda_damages(cubin, ptx, other)[damage]
    path.write_bytes(disk_cache.format_entry(good._replace(object_code=bad_cubin, ll=bad_ptx),
                                             secret))
    nvrtc.clear_cache()
    with pytest.warns(RuntimeWarning, match=message):
        assert nvrtc.compile_with_ptx(CUDA_SOURCE, "sm_80") == (cubin, ptx)
    assert disk_cache.parse_entry(path.read_bytes(), secret) == good


def test_a_cuda_kernel_entry_with_a_cubin_for_another_arch_is_rebuilt(cache_dir):
    """The kernel cache's CUDA entry (cubin and module description) is checked as NVRTC's
    is: one holding sm_90 code for an sm_80 kernel is discarded and the kernel built
    again, with its own cubin."""
    pytest.importorskip("cuda.bindings.nvrtc")
    from tex.codegen import nvrtc

    def build():
        A = tex.placeholder((37,), name="A")
        B = tex.compute((37,), lambda i: A[i] * 2.0, name="B")
        s = tex.create_schedule(B.op)
        s[B].bind(B.op.axis[0], tex.thread_axis("threadIdx.x"))
        return tex.build(s, [A, B], target="cuda -arch=sm_80")

    cubin = build().imported_modules[0].cubin
    entries = [p for p in cache_dir.glob("*" + disk_cache.SUFFIX) if "-" not in p.name]
    [path] = entries
    secret = disk_cache.secret(cache_dir)
    good = disk_cache.parse_entry(path.read_bytes(), secret)
    assert good.object_code == cubin
    other = nvrtc.compile_source(CUDA_SOURCE, "sm_90")
    path.write_bytes(disk_cache.format_entry(good._replace(object_code=other), secret))
    cache.clear_cache()
    with pytest.warns(RuntimeWarning, match="holds code for sm_90, expected sm_80"):
        assert build().imported_modules[0].cubin == cubin
