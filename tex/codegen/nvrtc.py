"""CUDA C source -> cubin or PTX with NVRTC, in process.

Guarantees:

* `compile_source(source, arch)` returns the cubin of `source` for the real
  architecture `arch` ("sm_80"); `compile_source(source, arch, "ptx")` the PTX
  for the virtual architecture of the same number ("compute_80");
  `compile_with_ptx(source, arch)` the cubin and the PTX NVRTC made it from
  (one compile, one cache entry).
* One (source, arch, output) compiles once per process (an in-memory cache of
  the most recent 256), and once per machine: the output is kept in the disk
  cache (`tex.disk_cache`, TEX_CACHE_DIR; `off`: none) as
  `nvrtc-<sha256>.texk`, the sha256 of its key: the source, arch, output
  kind, NVRTC's version (`nvrtc_version`), tex's version and a digest of
  tex's sources. A damaged entry is reported, deleted and rewritten; so is one
  whose output `check_output` refuses. A failed compile is not cached.
* `check_output(cubin, ptx, arch)` raises BuildError unless the cubin is a
  well-formed CUDA ELF file for `arch` (`object_file.cubin_arch`) and the PTX
  starts with the header NVRTC writes for it (`.version`, `.target <arch>`,
  `.address_size 64`): what the runtime checks before the driver loads either.
* A failed compile raises `BuildError` with NVRTC's log and the numbered source
  lines around the first line the log reports. Missing cuda-python or NVRTC,
  or missing CUDA headers, raise `BuildError` naming tex's `cuda` extra.
* The include directory of the CUDA headers (`cuda_fp16.h`, from the
  nvidia-cuda-runtime wheel) is passed only to sources that `#include`.
* `resource_usage(source, arch)` gives, per kernel function, what ptxas reports
  with `--ptxas-options=-v`: registers, spill bytes, static shared memory bytes
  (not cached: it compiles each time).

Options: `--std=c++17`; no fast-math flags, so float results follow IEEE
rounding as on the CPU. A small elementwise kernel compiles to a cubin in about
25 ms (35 ms with `cuda_fp16.h`, 18 ms to PTX); the first compile of a process
takes 100-250 ms more, loading NVRTC (NVRTC 13.5, measured on a 2-core x86 host).
A disk hit neither loads NVRTC nor compiles: it reads and checks one file.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from functools import lru_cache
from pathlib import Path

from tex import config, disk_cache
from tex.codegen import object_file
from tex.errors import BuildError
from tex.version import __version__

#: What to install for CUDA (setup.py's `cuda` extra); every "missing" error ends with it.
INSTALL_HINT = "building for CUDA needs tex's cuda extra: pip install 'tex[cuda]'"
_FILE_NAME = "tex_kernels.cu"
_CONTEXT_LINES = 3
_WHEELS = ("nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12")


def compile_source(source: str, arch: str, output: str = "cubin") -> bytes | str:
    """The cubin (bytes) or PTX (str) of CUDA C `source` for `arch` ("sm_80")."""
    if output not in ("cubin", "ptx"):
        raise ValueError(f"NVRTC output is 'cubin' or 'ptx', got {output!r}")
    result = _compile(source, arch, output)
    return result[0] if output == "cubin" else result


def compile_with_ptx(source: str, arch: str) -> tuple[bytes, str]:
    """The cubin of `source` for `arch` and the PTX it was made from, in one compile. The
    PTX targets `arch`; the driver compiles it for a device of that or a later
    architecture."""
    return _compile(source, arch, "cubin")


def clear_cache():
    """Forget the output kept in memory (the disk cache stays)."""
    _compile.cache_clear()


@lru_cache(maxsize=256)
def _compile(source: str, arch: str, output: str) -> tuple[bytes, str] | str:
    """The (cubin, PTX) or the PTX alone of `source`: from the disk cache, else NVRTC
    (and then written to the disk cache: a cubin as the entry's object code with its
    PTX as the entry's text, a PTX alone as the object code)."""
    key = _disk_key(source, arch, output)
    path = _disk_path(source, arch, output)
    entry = disk_cache.read_entry(path, key) if path else None
    if entry is not None and entry.name != output:
        disk_cache.discard_entry(path, f"it holds {entry.name!r}, not {output!r}")
    elif entry is not None:
        try:
            if output == "cubin":
                check_output(entry.object_code, entry.ll, arch)
                return entry.object_code, entry.ll
            ptx = entry.object_code.decode()
            check_output(None, ptx, arch)
            return ptx
        except (BuildError, UnicodeDecodeError) as err:
            disk_cache.discard_entry(path, str(err))  # compiled below, and rewritten
    result = _nvrtc_compile(source, arch, output)
    if path:
        data, text = result if output == "cubin" else (result.encode(), "")
        disk_cache.write_entry(path, disk_cache.Entry(key, output, data, text, ""))
    return result


def check_output(cubin: bytes | None, ptx: str | None, arch: str):
    """Raise BuildError saying what is wrong unless `cubin` (unless None) is a well-formed
    CUDA ELF file of code for `arch` ("sm_80") and `ptx` (unless None or empty) starts
    with the PTX header for `arch`."""
    wanted = int(re.sub(r"\D", "", arch))
    if cubin is not None:
        found = object_file.cubin_arch(cubin)
        if found != wanted:
            raise BuildError(f"the cubin holds code for sm_{found}, expected {arch}")
    if ptx:
        header = [line.strip() for line in ptx[:4096].splitlines()
                  if line.strip() and not line.lstrip().startswith("//")][:3]
        version, target, address = (header + ["", "", ""])[:3]
        if not (version.startswith(".version ") and address == ".address_size 64"
                and target.replace(",", " ").split()[:2] == [".target", arch]):
            raise BuildError(f"the PTX does not start with the header for {arch} (.version, "
                             f".target {arch}, .address_size 64) but with {header}")


def _disk_key(source: str, arch: str, output: str) -> str:
    """The key of the disk cache's entry of this output: what it depends on, NVRTC and tex
    included."""
    return repr((source, arch, output, nvrtc_version(), __version__,
                 disk_cache.source_digest()))


def _disk_path(source: str, arch: str, output: str) -> Path | None:
    """Where the disk cache keeps this output, or None when the disk cache is off."""
    directory = config.cache_dir()
    if directory is None:
        return None
    return disk_cache.entry_path(directory, _disk_key(source, arch, output), "nvrtc-")


@lru_cache(maxsize=1)
def nvrtc_version() -> str:
    """Which NVRTC compiles: its wheel's version, read without loading NVRTC (which costs
    ~250 ms; cuda-python looks in the wheels first), else the version NVRTC reports."""
    for wheel in _WHEELS:
        try:
            return f"{wheel} {importlib.metadata.version(wheel)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    nvrtc = _nvrtc()
    major, minor = _checked(nvrtc, "nvrtcVersion", nvrtc.nvrtcVersion())
    return f"NVRTC {major}.{minor}"


def resource_usage(source: str, arch: str) -> dict[str, dict[str, int]]:
    """{kernel function: {"registers", "spill_bytes", "shared_bytes", "stack_bytes"}} of
    `source` compiled for `arch` ("sm_90"), as ptxas reports them (`--ptxas-options=-v`);
    spill_bytes counts spill stores and loads, shared_bytes the static shared memory."""
    nvrtc = _nvrtc()
    program = _compiled_program(nvrtc, source, arch, ["--ptxas-options=-v"])
    try:
        log = _log(nvrtc, program)
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    usage: dict[str, dict[str, int]] = {}
    for name, report in re.findall(r"Compiling entry function '(\w+)'(.*?)(?=Compiling entry|\Z)",
                                   log, re.DOTALL):
        own = re.search(rf"Function properties for {name}\n([^\n]*)", report)
        frame = own[1] if own else ""
        usage[name] = {"registers": _reported(r"Used (\d+) registers", report),
                       "spill_bytes": _reported(r"(\d+) bytes spill stores", frame)
                       + _reported(r"(\d+) bytes spill loads", frame),
                       "shared_bytes": _reported(r"(\d+) bytes smem", report),
                       "stack_bytes": _reported(r"(\d+) bytes stack frame", frame)}
    return usage


def _reported(pattern: str, report: str) -> int:
    """The number `pattern`'s group matches in a ptxas report; 0 where it says nothing."""
    match = re.search(pattern, report)
    return int(match[1]) if match else 0


def _compiled_program(nvrtc, source: str, arch: str, extra: list[str]):
    """An NVRTC program holding `source` compiled for `arch` (real "sm_NN" or virtual
    "compute_NN") with `extra` options; the caller destroys it. BuildError if it fails."""
    options = [f"-arch={arch}", "--std=c++17", *extra]
    if "#include" in source:
        options.append(f"-I{header_dir()}")
    program = _checked(nvrtc, "nvrtcCreateProgram",
                       nvrtc.nvrtcCreateProgram(source.encode(), _FILE_NAME.encode(), 0, [], []))
    (result,) = nvrtc.nvrtcCompileProgram(program, len(options), [o.encode() for o in options])
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        message = failure_message(_log(nvrtc, program), source, arch)
        nvrtc.nvrtcDestroyProgram(program)
        raise BuildError(message)
    return program


def _nvrtc_compile(source: str, arch: str, output: str) -> tuple[bytes, str] | str:
    """The output of one NVRTC compile of `source`: (cubin, the PTX it was made from), or
    the PTX for the virtual architecture."""
    nvrtc = _nvrtc()
    target_arch = arch if output == "cubin" else "compute_" + arch.removeprefix("sm_")
    program = _compiled_program(nvrtc, source, target_arch, [])
    try:
        ptx = _read(nvrtc, program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
        ptx = ptx.rstrip(b"\0").decode()
        if output == "cubin":
            return _read(nvrtc, program, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN), ptx
        return ptx
    finally:
        nvrtc.nvrtcDestroyProgram(program)


@lru_cache(maxsize=1)
def _nvrtc():
    """cuda-python's NVRTC module, once NVRTC itself has been loaded."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise BuildError(f"cuda-python is missing ({e}); {INSTALL_HINT}") from None
    try:
        _checked(nvrtc, "nvrtcVersion", nvrtc.nvrtcVersion())
    except BuildError:
        raise
    except Exception as e:  # the shared library is missing or does not load
        raise BuildError(f"NVRTC could not be loaded ({e}); {INSTALL_HINT}") from None
    return nvrtc


def _checked(nvrtc, call: str, result: tuple):
    """The value of an NVRTC call's (status, value...) tuple; BuildError on a bad status."""
    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(status)
        raise BuildError(f"{call} failed: {text.decode()}")
    return values[0] if len(values) == 1 else tuple(values)


def _read(nvrtc, program, size_call, read_call) -> bytes:
    size = _checked(nvrtc, size_call.__name__, size_call(program))
    buffer = b" " * size
    _checked(nvrtc, read_call.__name__, read_call(program, buffer))
    return buffer


def _log(nvrtc, program) -> str:
    return _read(nvrtc, program, nvrtc.nvrtcGetProgramLogSize,
                 nvrtc.nvrtcGetProgramLog).rstrip(b"\0 \n").decode(errors="replace")


def failure_message(log: str, source: str, arch: str) -> str:
    """NVRTC's log, then the source lines around the first line it reports."""
    message = f"NVRTC could not compile the CUDA source for {arch}:\n{log}"
    match = re.search(re.escape(_FILE_NAME) + r"\((\d+)\)", log)
    if match is None:
        return message
    lines = source.splitlines()
    bad = int(match.group(1))
    first, last = max(1, bad - _CONTEXT_LINES), min(len(lines), bad + _CONTEXT_LINES)
    width = len(str(last))
    excerpt = "\n".join(f"{'>' if n == bad else ' '} {n:>{width}} | {lines[n - 1]}"
                        for n in range(first, last + 1))
    return f"{message}\nsource lines {first}-{last}:\n{excerpt}"


@lru_cache(maxsize=1)
def header_dir() -> str:
    """The directory holding `cuda_fp16.h` (the nvidia-cuda-runtime wheel's include/)."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory
        found = find_nvidia_header_directory("cudart")
    except Exception:  # no cuda-pathfinder, or one that does not know cudart
        found = None
    candidates = [found] if found else []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += [os.path.join(root, "cu13", "include"),
                       os.path.join(root, "cuda_runtime", "include")]
    for directory in candidates:
        if os.path.isfile(os.path.join(directory, "cuda_fp16.h")):
            return directory
    raise BuildError(f"the CUDA headers (cuda_fp16.h) were not found; {INSTALL_HINT}")
