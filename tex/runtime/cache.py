"""The compile caches: building an identical kernel again compiles nothing.

By fingerprint. `kernel_code(fingerprint, target, lower)` takes the text of
`tex.schedule.fingerprint` (which determines the lowered program) and finds
the kernel's code without lowering: in memory first, then on disk; only on a
miss does it call `lower()` and compile. This is what makes a rebuild cost
well under a millisecond and a build done before in another process a few
milliseconds.

By program. `compile_cached(func, target)` compiles a LoweredFunc once per
process: the key is the printed function (deterministic; it shows buffer
names and dtypes, loop structure and every expression), plus what the
printed form leaves out but codegen depends on (the order and dtypes of the
size variables, the dtypes of all variables) and the target. Differently
written schedules that lower to the same program share their code this way.

CUDA kernels are cached by fingerprint the same way, in memory and on disk;
their code is a `CudaModule` (`tex.codegen.cuda`), compiled by NVRTC. What
differs between the kinds of target (the compiler, compiling, the entries'
contents) is decided in one place, the table `_TARGET_CODE`.

On disk. The entries live in `config.cache_dir()` (TEX_CACHE_DIR, default
~/.cache/tex) as `<disk_key>.texk`, where `disk_key` is the sha256 of the
fingerprint, the target, tex's version, a digest of tex's own source files
(so a changed compiler never reuses old code) and the compiler: the machine
as LLVM is told it (`llvm_jit.machine_description`), or NVRTC's version. An
LLVM entry holds the object code, the optimised LLVM IR and the printed loop
program, its name is the entry symbol; a CUDA entry (named "cuda") holds the
cubin, the module's description (`tex.codegen.cuda_json`: CUDA C source,
launches, temporaries) and the printed loop program. `tex.disk_cache`
defines the format, writes entries whole, and keeps the directory under
TEX_CACHE_MAX_MB by evicting the least recently used. An LLVM hit loads the
stored object code into a new engine (`llvm_jit.load_object`) without
parsing or optimising any IR; a CUDA hit rebuilds the module's description
for the kernel's interface, without lowering or NVRTC. The thread pool's object code
(`start_thread_pool`) is kept the same way, as `thread_pool-<sha256>.texk`,
and is evicted like any other entry. An entry that does not parse, whose
load fails or whose description does not fit the kernel counts as a miss,
and the entry is rewritten.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Callable

from tex import config, disk_cache
from tex.codegen import llvm, llvm_jit, nvrtc, thread_pool
from tex.codegen.cuda import CudaModule, compile_cuda
from tex.codegen.cuda_json import module_from_json, module_to_json
from tex.codegen.llvm_jit import CompiledModule
from tex.errors import BuildError
from tex.expr import Var
from tex.ir import For, IntrinsicCall, KernelInterface, LoweredFunc
from tex.target import Target, as_target
from tex.version import __version__
from tex.visitor import collect

_cache: dict[tuple, CompiledModule] = {}
_by_fingerprint: dict[tuple[str, str], "KernelCode"] = {}
_lock = threading.Lock()
_CUDA_ENTRY = "cuda"  # the name of CUDA entries (an LLVM entry's is its entry symbol)


@dataclasses.dataclass(frozen=True)
class KernelCode:
    """What the caches hold for one kernel: its code (a CompiledModule, or a CudaModule
    for a CUDA target), its loop program as text, and the LoweredFunc when this process
    lowered it, else the KernelInterface the code was read from disk for (the params and
    size variables a CudaModule's launches name)."""

    compiled: CompiledModule | CudaModule
    tex_source: str
    func: LoweredFunc | KernelInterface


def cache_key(func: LoweredFunc, target) -> tuple:
    """What identifies the machine code of `func` on `target` (the printed program shows
    an intrinsic call's name but not the definition it links in, nor the text of the
    modules it imports, so those are added)."""
    nodes = collect(func.body, lambda n: isinstance(n, (Var, IntrinsicCall)))
    var_dtypes = tuple(str(n.dtype) for n in nodes if isinstance(n, Var))
    sizes = tuple((v.name, str(v.dtype)) for v in func.size_vars)
    definitions = sorted({(n.name, n.definition) for n in nodes if isinstance(n, IntrinsicCall)})
    return (str(func), sizes, var_dtypes, tuple(definitions), func.imports,
            str(as_target(target)))


def compile_cached(func: LoweredFunc, target="llvm") -> CompiledModule:
    """`tex.codegen.llvm.build(func, target)`, once per distinct program and target in
    this process."""
    target = as_target(target)
    return _compile_keyed(func, target, cache_key(func, target))


def _compile_keyed(func: LoweredFunc, target: Target, key: tuple) -> CompiledModule:
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    if collect(func.body, lambda n: isinstance(n, For) and n.kind == "parallel"):
        start_thread_pool()
    compiled = llvm.build(func, target)
    with _lock:
        return _cache.setdefault(key, compiled)


def disk_key(fingerprint: str, target: Target) -> str:
    """The file name (without suffix) of the kernel with `fingerprint` on `target`: a hex
    sha256 that also covers tex's version, its sources and the compiler (LLVM and the
    machine, or NVRTC)."""
    compiler = _target_code(target).compiler(target)
    text = repr((fingerprint, str(target), __version__, disk_cache.source_digest(), compiler))
    return hashlib.sha256(text.encode()).hexdigest()


def kernel_code(fingerprint: str, target, lower: Callable[[], LoweredFunc],
                interface: Callable[[], KernelInterface], on_disk: bool = True) -> KernelCode:
    """The code of the kernel whose schedule has `fingerprint`, for `target`.

    From memory, else from the disk cache (read for `interface()`, the
    kernel's interface), else `lower()` is called and its program compiled
    (through `compile_cached`, or `compile_cuda` for a CUDA target), and the
    result is kept in memory and written to disk. Without `on_disk` the disk
    is left alone (a fingerprint no other process can have).
    """
    target = as_target(target)
    key = (fingerprint, str(target))
    with _lock:
        hit = _by_fingerprint.get(key)
    if hit is not None:
        return hit
    directory = config.cache_dir() if on_disk else None
    path = directory / (disk_key(fingerprint, target) + disk_cache.SUFFIX) if directory else None
    code = _read_entry(path, target, interface) if path else None
    if code is None:
        code = _target_code(target).compile(lower(), target)
        if path:
            _write_entry(path, code, target)
    with _lock:
        return _by_fingerprint.setdefault(key, code)


def start_thread_pool():
    """Install tex's thread pool (`tex.codegen.thread_pool`) before a kernel that calls
    it is loaded, its object code read from the disk cache when it is there
    (compiling it costs ~15 ms, a noticeable part of a build that hits the disk cache)."""
    if thread_pool.installed():
        return
    with llvm_jit.LLVM_LOCK:
        if thread_pool.installed():
            return
        directory = config.cache_dir()
        path = None
        if directory is not None:
            text = repr((thread_pool.ir_text(), thread_pool.machine_description(),
                         __version__, disk_cache.source_digest()))
            digest = hashlib.sha256(text.encode()).hexdigest()
            path = directory / f"thread_pool-{digest}{disk_cache.SUFFIX}"
            entry = disk_cache.read_entry(path)
            if entry is not None and entry[0] == thread_pool.SYMBOL:
                try:
                    thread_pool.install_object(entry[1])
                    return
                except (BuildError, RuntimeError):
                    pass  # compiled below, and the entry rewritten
        object_code = thread_pool.compile_object()
        thread_pool.install_object(object_code)
        if path is not None:
            disk_cache.write_entry(path, disk_cache.format_entry(
                thread_pool.SYMBOL, object_code, thread_pool.ir_text(), ""))


def _read_entry(path: Path, target: Target,
                interface: Callable[[], KernelInterface]) -> KernelCode | None:
    """The kernel stored at `path`, or None if there is no whole, loadable entry that
    fits `interface()`."""
    entry = disk_cache.read_entry(path)
    return None if entry is None else _target_code(target).load(entry, target, interface)


def _write_entry(path: Path, code: KernelCode, target: Target):
    """Put the entry of `code`, compiled for `target`, at `path` (`tex.disk_cache.write_entry`)."""
    disk_cache.write_entry(path, _target_code(target).entry(code))


@dataclasses.dataclass(frozen=True)
class _TargetCode:
    """What the caches do with the code of one kind of target (`_TARGET_CODE`): name its
    compiler in the disk key, compile a lowered function on a miss, format its disk entry,
    and load the code back from a disk entry read for a kernel interface (None when the
    entry does not load or fit)."""

    compiler: Callable[[Target], str]
    compile: Callable[[LoweredFunc, Target], KernelCode]
    entry: Callable[[KernelCode], bytes]
    load: Callable[[tuple, Target, Callable[[], KernelInterface]], KernelCode | None]


def _llvm_compile(func: LoweredFunc, target: Target) -> KernelCode:
    """`func` compiled for a CPU, through the cache by program."""
    program_key = cache_key(func, target)  # its first part is the printed program
    return KernelCode(_compile_keyed(func, target, program_key), program_key[0], func)


def _llvm_entry(code: KernelCode) -> bytes:
    """A CPU kernel's entry: named by its entry symbol, its object code and optimised IR."""
    compiled = code.compiled
    return disk_cache.format_entry(compiled.name, compiled.object_code,
                                   compiled.get_source("ll"), code.tex_source)


def _llvm_load(entry: tuple, target: Target,
               interface: Callable[[], KernelInterface]) -> KernelCode | None:
    """A CPU kernel from its entry: its object code loaded into a new engine."""
    name, object_code, ll, tex_source = entry
    if thread_pool.SYMBOL in ll:
        start_thread_pool()
    try:
        compiled = llvm_jit.load_object(object_code, name, ll, target)
    except BuildError:
        return None
    compiled.loaded_from_disk = True
    return KernelCode(compiled, tex_source, interface())


def _cuda_compiler(target: Target) -> str:
    """The compiler of every CUDA target: NVRTC, by its version."""
    return nvrtc.nvrtc_version()


def _cuda_compile(func: LoweredFunc, target: Target) -> KernelCode:
    return KernelCode(compile_cuda(func, target), str(func), func)


def _cuda_entry(code: KernelCode) -> bytes:
    """A CUDA kernel's entry: its cubin and the module's description."""
    compiled = code.compiled
    return disk_cache.format_entry(_CUDA_ENTRY, compiled.cubin,
                                   module_to_json(compiled, code.func), code.tex_source)


def _cuda_load(entry: tuple, target: Target,
               interface: Callable[[], KernelInterface]) -> KernelCode | None:
    """A CUDA kernel from its entry: the module's description rebuilt for `interface()`."""
    name, cubin, description, tex_source = entry
    func = interface()
    module = module_from_json(description, target, cubin, func) if name == _CUDA_ENTRY else None
    return None if module is None else KernelCode(module, tex_source, func)


_TARGET_CODE = {
    "llvm": _TargetCode(llvm_jit.machine_description, _llvm_compile, _llvm_entry, _llvm_load),
    "cuda": _TargetCode(_cuda_compiler, _cuda_compile, _cuda_entry, _cuda_load),
}


def _target_code(target: Target) -> _TargetCode:
    """What the caches do with the code of `target`'s kind: the one place they decide by it."""
    return _TARGET_CODE[target.kind]


def clear_cache(disk: bool = False):
    """Forget every compiled module in memory, NVRTC's output included (kernels already
    built keep theirs); with `disk`, also delete every entry in the disk cache's directory."""
    with _lock:
        _cache.clear()
        _by_fingerprint.clear()
    nvrtc.clear_cache()
    directory = config.cache_dir()
    if disk and directory is not None and directory.is_dir():
        for entry in directory.glob("*" + disk_cache.SUFFIX):
            try:
                entry.unlink()
            except FileNotFoundError:
                pass


def cache_size() -> int:
    """How many compiled modules the in-memory cache holds."""
    return len(_cache)
