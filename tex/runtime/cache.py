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
size variables, the dtypes of all variables) and the target. Builds without
a fingerprint share their code this way; a kernel found by fingerprint is
compiled with its own key symbol (below), so it shares its code with no
other fingerprint.

CUDA kernels are cached by fingerprint the same way, in memory and on disk;
their code is a `CudaModule` (`tex.codegen.cuda`), compiled by NVRTC. What
differs between the kinds of target (the compiler, compiling, the entries'
contents) is decided in one place, the table `_TARGET_CODE`.

In memory, both caches are bounded: each keeps the most recently used
`config.cache_memory_kernels()` kernels (TEX_CACHE_MEMORY_KERNELS, default 256)
and drops the least recently used beyond that. Dropping a kernel's code, here
or by `clear_cache`, frees its machine code (the MCJIT engine) as soon as no
Kernel uses it; a Kernel holds its own code, so it keeps working.

On disk. The entries live in `config.cache_dir()` (TEX_CACHE_DIR, default
~/.cache/tex) as `<disk_key>.texk`, where `disk_key` is the sha256 of the
entry's key (`entry_key`): the fingerprint, the target, tex's version, a
digest of tex's own source files (so a changed compiler never reuses old
code) and the compiler: the machine as LLVM is told it
(`llvm_jit.machine_description`), or NVRTC's version. The entry holds its key
and is authenticated with the user's secret (`tex.disk_cache`), so an entry
renamed, copied or written by someone else is refused. An LLVM entry holds the
object code, the optimised LLVM IR and the printed loop program, its name is
the entry symbol, and the code defines the key symbol of its key
(`llvm_jit.key_symbol`): object code moved between entries is refused too. A
CUDA entry (named "cuda") holds the cubin, the module's description
(`tex.codegen.cuda_json`: CUDA C source, launches, temporaries) and the
printed loop program. `tex.disk_cache` defines the format, writes entries
whole, and keeps the directory under TEX_CACHE_MAX_MB by evicting the least
recently used. An LLVM hit checks the stored object code
(`object_file.check_object`) and loads it into a new engine
(`llvm_jit.load_object`) without parsing or optimising any IR; a CUDA hit
rebuilds the module's description for the kernel's interface, without
lowering or NVRTC. The thread pool's object code (`start_thread_pool`) is
kept the same way, as `thread_pool-<sha256>.texk`, and is evicted like any
other entry. An entry that does not parse, whose load fails or whose
description does not fit the kernel is reported (a warning), deleted and
rewritten (`disk_cache.discard_entry`).
"""
from __future__ import annotations

import collections
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
from tex.ir import For, IntrinsicCall, KernelInterface, LoweredFunc, PackedCall
from tex.runtime import cuda_simulator
from tex.target import Target, as_target
from tex.version import __version__
from tex.visitor import collect

_CUDA_ENTRY = "cuda"  # the name of CUDA entries (an LLVM entry's is its entry symbol)


class _RecentlyUsed:
    """A thread-safe map that keeps the `config.cache_memory_kernels()` most recently used
    items (the bound is read at each insertion)."""

    def __init__(self):
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        """The value of `key` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def setdefault(self, key, value):
        """The value of `key` if there is one, else `value`, now kept under `key`; the least
        recently used items beyond the bound are dropped."""
        with self._lock:
            kept = self._items.setdefault(key, value)
            self._items.move_to_end(key)
            dropped = []  # released after the lock: dropping code may dispose of an engine
            while len(self._items) > config.cache_memory_kernels():
                dropped.append(self._items.popitem(last=False))
        return kept

    def clear(self):
        with self._lock:
            dropped = list(self._items.items())
            self._items.clear()
        del dropped  # released after the lock, as above

    def __len__(self):
        return len(self._items)


_cache = _RecentlyUsed()           # CompiledModule by `cache_key`
_by_fingerprint = _RecentlyUsed()  # KernelCode by (fingerprint, target)


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
    modules it imports, nor the shapes a packed call passes its arrays in, so those are
    added, nor whether TEX_LLVM_CLAIMS strips claims)."""
    nodes = collect(func.body, lambda n: isinstance(n, (Var, IntrinsicCall, PackedCall)))
    var_dtypes = tuple(str(n.dtype) for n in nodes if isinstance(n, Var))
    sizes = tuple((v.name, str(v.dtype)) for v in func.size_vars)
    definitions = sorted({(n.name, n.definition) for n in nodes if isinstance(n, IntrinsicCall)})
    packed_shapes = tuple((n.ranks, tuple(map(str, n.shapes))) for n in nodes
                          if isinstance(n, PackedCall))
    return (str(func), sizes, var_dtypes, tuple(definitions), packed_shapes, func.imports,
            str(as_target(target)), config.llvm_claims())


def compile_cached(func: LoweredFunc, target="llvm") -> CompiledModule:
    """`tex.codegen.llvm.build(func, target)`, once per distinct program and target in
    this process (of those most recently used)."""
    target = as_target(target)
    key = cache_key(func, target)
    hit = _cache.get(key)
    return hit if hit is not None else _cache.setdefault(key, _compile(func, target))


def _compile(func: LoweredFunc, target: Target, key: str | None = None) -> CompiledModule:
    """`llvm.build(func, target, key)`, tex's thread pool installed first if `func` has a
    parallel loop."""
    if collect(func.body, lambda n: isinstance(n, For) and n.kind == "parallel"):
        start_thread_pool()
    return llvm.build(func, target, key=key)


def entry_key(fingerprint: str, target: Target) -> str:
    """The key of the disk entry of the kernel with `fingerprint` on `target`: the text of
    everything its code depends on, tex's version, its sources and the compiler (LLVM and
    the machine, or NVRTC) included."""
    compiler = _target_code(target).compiler(target)
    return repr((fingerprint, str(target), __version__, disk_cache.source_digest(), compiler))


def disk_key(fingerprint: str, target: Target) -> str:
    """The file name (without suffix) of the kernel with `fingerprint` on `target`: the hex
    sha256 of its `entry_key`."""
    return hashlib.sha256(entry_key(fingerprint, target).encode()).hexdigest()


def kernel_code(fingerprint: str, target, lower: Callable[[], LoweredFunc],
                interface: Callable[[], KernelInterface], on_disk: bool = True) -> KernelCode:
    """The code of the kernel whose schedule has `fingerprint`, for `target`.

    From memory, else from the disk cache (read for `interface()`, the
    kernel's interface), else `lower()` is called and its program compiled
    (marked with its `entry_key`, or by `compile_cuda` for a CUDA target), and
    the result is kept in memory and written to disk. Without `on_disk` the
    disk is left alone (a fingerprint no other process can have).
    """
    target = as_target(target)
    memory_key = (fingerprint, str(target))
    hit = _by_fingerprint.get(memory_key)
    if hit is not None:
        return hit
    key = entry_key(fingerprint, target)
    directory = config.cache_dir() if on_disk else None
    path = disk_cache.entry_path(directory, key) if directory else None
    code = _read_entry(path, key, target, interface) if path else None
    if code is None:
        code = _target_code(target).compile(lower(), target, key)
        if path:
            disk_cache.write_entry(path, _target_code(target).entry(code, key))
    return _by_fingerprint.setdefault(memory_key, code)


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
        key = repr((thread_pool.ir_text(), thread_pool.machine_description(), __version__,
                    disk_cache.source_digest()))
        path = disk_cache.entry_path(directory, key, "thread_pool-") if directory else None
        entry = disk_cache.read_entry(path, key) if path else None
        if entry is not None:
            try:
                if entry.name != thread_pool.SYMBOL:
                    raise BuildError(f"it is named {entry.name!r}, not {thread_pool.SYMBOL!r}")
                thread_pool.install_object(entry.object_code)
                return
            except (BuildError, RuntimeError) as err:
                disk_cache.discard_entry(path, str(err))  # compiled below, and rewritten
        object_code = thread_pool.compile_object()
        thread_pool.install_object(object_code)
        if path is not None:
            disk_cache.write_entry(path, disk_cache.Entry(
                key, thread_pool.SYMBOL, object_code, thread_pool.ir_text(), ""))


def _read_entry(path: Path, key: str, target: Target,
                interface: Callable[[], KernelInterface]) -> KernelCode | None:
    """The kernel stored at `path` under `key`, or None if there is no whole, loadable
    entry that fits `interface()` (one that is there but does not is discarded)."""
    entry = disk_cache.read_entry(path, key)
    if entry is None:
        return None
    try:
        return _target_code(target).load(entry, target, interface)
    except disk_cache.DamagedEntry as err:
        disk_cache.discard_entry(path, str(err))
        return None


@dataclasses.dataclass(frozen=True)
class _TargetCode:
    """What the caches do with the code of one kind of target (`_TARGET_CODE`): name its
    compiler in the entry key, compile a lowered function on a miss (given the entry key),
    make its disk entry (given the key), and load the code back from a disk entry read for
    a kernel interface (raising DamagedEntry when it does not load or fit)."""

    compiler: Callable[[Target], str]
    compile: Callable[[LoweredFunc, Target, str], KernelCode]
    entry: Callable[[KernelCode, str], disk_cache.Entry]
    load: Callable[[disk_cache.Entry, Target, Callable[[], KernelInterface]], KernelCode]


def _llvm_compile(func: LoweredFunc, target: Target, key: str) -> KernelCode:
    """`func` compiled for a CPU, its code marked with `key` (`llvm_jit.key_symbol`)."""
    return KernelCode(_compile(func, target, key), str(func), func)


def _llvm_entry(code: KernelCode, key: str) -> disk_cache.Entry:
    """A CPU kernel's entry: named by its entry symbol, its object code and optimised IR."""
    compiled = code.compiled
    return disk_cache.Entry(key, compiled.name, compiled.object_code,
                            compiled.get_source("ll"), code.tex_source)


def _llvm_load(entry: disk_cache.Entry, target: Target,
               interface: Callable[[], KernelInterface]) -> KernelCode:
    """A CPU kernel from its entry: its object code checked and loaded into a new engine."""
    if thread_pool.SYMBOL in entry.ll:
        start_thread_pool()
    try:
        compiled = llvm_jit.load_object(entry.object_code, entry.name, entry.ll, target,
                                        entry.key)
    except (BuildError, RuntimeError) as err:
        raise disk_cache.DamagedEntry(f"its object code does not load ({err})") from None
    compiled.loaded_from_disk = True
    return KernelCode(compiled, entry.tex, interface())


def _cuda_compiler(target: Target) -> str:
    """The compiler of every CUDA target: NVRTC, by its version."""
    return nvrtc.nvrtc_version()


def _cuda_compile(func: LoweredFunc, target: Target, key: str) -> KernelCode:
    return KernelCode(compile_cuda(func, target), str(func), func)


def _cuda_entry(code: KernelCode, key: str) -> disk_cache.Entry:
    """A CUDA kernel's entry: its cubin and the module's description."""
    compiled = code.compiled
    return disk_cache.Entry(key, _CUDA_ENTRY, compiled.cubin,
                            module_to_json(compiled, code.func), code.tex_source)


def _cuda_load(entry: disk_cache.Entry, target: Target,
               interface: Callable[[], KernelInterface]) -> KernelCode:
    """A CUDA kernel from its entry: the module's description rebuilt for `interface()`, its
    cubin and PTX checked (`nvrtc.check_output`)."""
    if entry.name != _CUDA_ENTRY:
        raise disk_cache.DamagedEntry(f"it is named {entry.name!r}, not {_CUDA_ENTRY!r}")
    func = interface()
    module = module_from_json(entry.ll, target, entry.object_code, func)
    if module is None:
        raise disk_cache.DamagedEntry("its module description does not fit the kernel")
    try:
        nvrtc.check_output(module.cubin, module.ptx, target.arch)
    except BuildError as err:
        raise disk_cache.DamagedEntry(str(err)) from None
    return KernelCode(module, entry.tex, func)


_TARGET_CODE = {
    "llvm": _TargetCode(llvm_jit.machine_description, _llvm_compile, _llvm_entry, _llvm_load),
    "cuda": _TargetCode(_cuda_compiler, _cuda_compile, _cuda_entry, _cuda_load),
}


def _target_code(target: Target) -> _TargetCode:
    """What the caches do with the code of `target`'s kind: the one place they decide by it."""
    return _TARGET_CODE[target.kind]


def clear_cache(disk: bool = False):
    """Forget every compiled module in memory, NVRTC's output included: the machine code of
    kernels no longer used is freed (kernels still used keep theirs), and the CUDA
    simulator's libraries are unloaded. With `disk`, also delete every entry in the disk
    cache's directory."""
    _cache.clear()
    _by_fingerprint.clear()
    nvrtc.clear_cache()
    cuda_simulator.unload_all()
    directory = config.cache_dir()
    if disk and directory is not None and directory.is_dir():
        for entry in directory.glob("*" + disk_cache.SUFFIX):
            try:
                entry.unlink()
            except FileNotFoundError:
                pass


def cache_size() -> int:
    """How many compiled modules the in-memory cache by program holds."""
    return len(_cache)
