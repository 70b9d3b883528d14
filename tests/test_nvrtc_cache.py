"""NVRTC's output in the disk cache (tex.codegen.nvrtc): a compile done before, in this
process or another, is read from disk without calling NVRTC; a damaged entry is compiled
again and rewritten; keys separate sources, architectures, outputs and compilers;
TEX_CACHE_DIR=off turns it off. No GPU is needed.
"""
import os
import pathlib
import subprocess
import sys

import pytest

import tex
from tex import disk_cache
from tex.codegen import nvrtc

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = 'extern "C" __global__ void scale(float* a) { a[threadIdx.x] *= 3.0f; }\n'



@pytest.fixture
def compiles(monkeypatch):
    """The (source, arch, output) of every NVRTC compile from now on."""
    seen = []
    real = nvrtc._nvrtc_compile

    def counted(source, arch, output):
        seen.append((source, arch, output))
        return real(source, arch, output)

    monkeypatch.setattr(nvrtc, "_nvrtc_compile", counted)
    return seen


def refuse_nvrtc(monkeypatch):
    def refuse(*args):
        raise AssertionError("NVRTC was called")

    monkeypatch.setattr(nvrtc, "_nvrtc_compile", refuse)


def nvrtc_entries(cache_dir) -> list[pathlib.Path]:
    return sorted(cache_dir.glob("nvrtc-*" + disk_cache.SUFFIX))


@pytest.mark.parametrize("output", ["cubin", "ptx"])
def test_a_second_compile_reads_the_disk_without_nvrtc(cache_dir, monkeypatch, output):
    first = nvrtc.compile_source(SOURCE, "sm_80", output)
    assert len(nvrtc_entries(cache_dir)) == 1
    tex.runtime.clear_cache()
    refuse_nvrtc(monkeypatch)
    assert nvrtc.compile_source(SOURCE, "sm_80", output) == first


def test_a_cuda_build_loads_its_cubin_from_disk(cache_dir, monkeypatch):
    from bench import gpu_schedules as cases

    first = cases.elementwise(1000).build()
    tex.runtime.clear_cache()
    refuse_nvrtc(monkeypatch)
    again = cases.elementwise(1000).build()
    assert again._module.cubin == first._module.cubin
    assert again._module.ptx == first._module.ptx
    assert ".entry elementwise_kernel0" in again._module.ptx
    assert again.get_source("ptx") == first.get_source("ptx") == first._module.ptx


def test_another_process_needs_neither_nvrtc_nor_its_library(cache_dir):
    nvrtc.compile_source(SOURCE, "sm_80")
    code = ("import sys\n"
            "from tex.codegen import nvrtc\n"
            "def refuse(*args): raise AssertionError('NVRTC was called')\n"
            "nvrtc._nvrtc_compile = nvrtc._nvrtc = refuse\n"
            f"cubin = nvrtc.compile_source({SOURCE!r}, 'sm_80')\n"
            "assert 'cuda.bindings.nvrtc' not in sys.modules\n"
            "print(len(cubin))\n")
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(nvrtc.compile_source(SOURCE, "sm_80"))


def truncate(data: bytes, secret: bytes) -> bytes:
    return data[:len(data) // 2]


def flip_last_byte(data: bytes, secret: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def ptx_for_cubin(data: bytes, secret: bytes) -> bytes:
    """A whole, authentic entry of the other output kind."""
    entry = disk_cache.parse_entry(data, secret)
    return disk_cache.format_entry(entry._replace(name="ptx"), secret)


@pytest.mark.parametrize("damage", [truncate, flip_last_byte, ptx_for_cubin])
def test_a_damaged_entry_is_compiled_again_and_rewritten(cache_dir, compiles, damage):
    first = nvrtc.compile_source(SOURCE, "sm_80")
    [path] = nvrtc_entries(cache_dir)
    secret = disk_cache.secret(cache_dir)
    path.write_bytes(damage(path.read_bytes(), secret))
    tex.runtime.clear_cache()
    with pytest.warns(RuntimeWarning, match="cannot be used"):
        assert nvrtc.compile_source(SOURCE, "sm_80") == first
    assert len(compiles) == 2
    entry = disk_cache.parse_entry(path.read_bytes(), secret)
    assert (entry.name, entry.object_code) == ("cubin", first)


def test_keys_separate_sources_archs_outputs_and_compilers(cache_dir, monkeypatch):
    def key(source=SOURCE, arch="sm_80", output="cubin"):
        return nvrtc._disk_path(source, arch, output).name

    base = key()
    assert key() == base
    others = {key(SOURCE + "\n"), key(arch="sm_90"), key(output="ptx")}
    real_version = nvrtc.nvrtc_version
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "NVRTC 99.0")
    others.add(key())
    monkeypatch.setattr(nvrtc, "nvrtc_version", real_version)
    monkeypatch.setattr(disk_cache, "source_digest", lambda: "a changed compiler")
    others.add(key())
    monkeypatch.setattr(nvrtc, "__version__", "999.0")
    others.add(key())
    assert len(others) == 6 and base not in others


def test_nvrtc_version_names_the_compiler():
    assert nvrtc.nvrtc_version().split()[-1][0].isdigit()


@pytest.mark.parametrize("value", ["off", ""])
def test_off_means_no_disk_cache(tmp_path, monkeypatch, compiles, value):
    monkeypatch.setenv("TEX_CACHE_DIR", value)
    monkeypatch.chdir(tmp_path)
    tex.runtime.clear_cache()
    first = nvrtc.compile_source(SOURCE, "sm_80")
    tex.runtime.clear_cache()
    assert nvrtc.compile_source(SOURCE, "sm_80") == first
    assert len(compiles) == 2 and list(tmp_path.iterdir()) == []
    tex.runtime.clear_cache()
