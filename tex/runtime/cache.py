"""The compile caches: building an identical program again does not compile it again.

In memory. The key is the printed LoweredFunc (deterministic; it shows buffer
names and dtypes, loop structure and every expression), plus what the printed
form leaves out but codegen depends on: the order and dtypes of the size
variables and the dtypes of all variables, and the target string.

On disk. On a miss in memory, `compile_cached` looks in `config.cache_dir()`
(TEX_CACHE_DIR, default ~/.cache/tex) for the file `<disk_key>.texk`, where
`disk_key` is the sha256 of the in-memory key, tex's version and the machine
as LLVM is told it (`llvm_jit.machine_description`: LLVM's version, triple,
CPU, features, data layout). A hit loads the stored object code into a new
engine (`llvm_jit.load_object`) without parsing or optimising any IR; a miss
compiles and writes the entry. The format, version 1:

    tex-kernel 1\\n                                          magic line
    {"name": S, "object": N, "ll": M, "sha256": H}\\n        JSON header, one line
    N bytes of object code, then M bytes of optimised LLVM IR (UTF-8)

`name` is the entry symbol and H the hex sha256 of the N + M payload bytes.
Anything else (bad magic or header, wrong length, checksum mismatch, a load
that fails) counts as a miss, and the entry is rewritten. A writer writes a
temporary file in the same directory and `os.replace`s it into place, so
readers see a whole entry or none, and concurrent writers of one entry leave
one whole entry. A directory that cannot be written means no disk cache,
with one warning per directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path

from tex import config
from tex.codegen import llvm, llvm_jit
from tex.codegen.llvm_jit import CompiledModule
from tex.errors import BuildError
from tex.expr import Var
from tex.ir import LoweredFunc
from tex.target import Target, as_target
from tex.visitor import collect

MAGIC = b"tex-kernel 1"
SUFFIX = ".texk"

_cache: dict[tuple, CompiledModule] = {}
_lock = threading.Lock()
_warned: set[Path] = set()


def cache_key(func: LoweredFunc, target) -> tuple:
    """What identifies the machine code of `func` on `target`."""
    var_dtypes = tuple(str(v.dtype) for v in collect(func.body, lambda n: isinstance(n, Var)))
    sizes = tuple((v.name, str(v.dtype)) for v in func.size_vars)
    return str(func), sizes, var_dtypes, str(as_target(target))


def disk_key(key: tuple, target: Target) -> str:
    """The file name (without suffix) of in-memory `key` on `target`: a hex sha256 that
    also covers tex's version and `llvm_jit.machine_description(target)`."""
    from tex import __version__  # at call time: tex imports this module while starting
    text = repr((key, __version__, llvm_jit.machine_description(target)))
    return hashlib.sha256(text.encode()).hexdigest()


def compile_cached(func: LoweredFunc, target="llvm") -> CompiledModule:
    """`tex.codegen.llvm.build(func, target)`, once per distinct program and target in
    this process, and (with the disk cache on) once per machine and tex version."""
    target = as_target(target)
    key = cache_key(func, target)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    directory = config.cache_dir()
    if directory is None:
        compiled = llvm.build(func, target)
    else:
        path = directory / (disk_key(key, target) + SUFFIX)
        compiled = _read_entry(path, target)
        if compiled is None:
            compiled = llvm.build(func, target)
            _write_entry(path, compiled)
    with _lock:
        return _cache.setdefault(key, compiled)


def _read_entry(path: Path, target: Target) -> CompiledModule | None:
    """The module stored at `path`, or None if there is no whole, loadable entry."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    entry = parse_entry(data)
    if entry is None:
        return None
    try:
        compiled = llvm_jit.load_object(entry[1], entry[0], entry[2], target)
    except BuildError:
        return None
    compiled.loaded_from_disk = True
    return compiled


def parse_entry(data: bytes) -> tuple[str, bytes, str] | None:
    """(entry name, object code, IR text) of an entry file's bytes, or None unless the
    magic, header, lengths and checksum are all right."""
    magic, _, rest = data.partition(b"\n")
    header, _, payload = rest.partition(b"\n")
    if magic != MAGIC:
        return None
    try:
        fields = json.loads(header)
        name, n_object, n_ll, checksum = (fields["name"], fields["object"], fields["ll"],
                                          fields["sha256"])
        if not (isinstance(name, str) and isinstance(n_object, int) and isinstance(n_ll, int)
                and n_object >= 0 and n_ll >= 0 and len(payload) == n_object + n_ll
                and hashlib.sha256(payload).hexdigest() == checksum):
            return None
        return name, payload[:n_object], payload[n_object:].decode()
    except (ValueError, TypeError, KeyError):
        return None


def format_entry(compiled: CompiledModule) -> bytes:
    """The bytes of the entry file of `compiled` (see the module docstring)."""
    ll = compiled.get_source("ll").encode()
    payload = compiled.object_code + ll
    header = {"name": compiled.name, "object": len(compiled.object_code), "ll": len(ll),
              "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + b"\n" + json.dumps(header).encode() + b"\n" + payload


def _write_entry(path: Path, compiled: CompiledModule):
    """Put `compiled`'s entry at `path` whole, or warn (once per directory) and give up."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(format_entry(compiled))
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if path.parent not in _warned:
            _warned.add(path.parent)
            warnings.warn(f"tex: cannot write the kernel cache in {path.parent} ({err}); "
                          "kernels will be compiled in every process (set TEX_CACHE_DIR to "
                          "another directory, or to 'off')", RuntimeWarning, stacklevel=4)


def clear_cache(disk: bool = False):
    """Forget every compiled module in memory (kernels already built keep theirs); with
    `disk`, also delete every entry in the disk cache's directory."""
    with _lock:
        _cache.clear()
    directory = config.cache_dir()
    if disk and directory is not None and directory.is_dir():
        for entry in directory.glob("*" + SUFFIX):
            try:
                entry.unlink()
            except FileNotFoundError:
                pass


def cache_size() -> int:
    """How many compiled modules the in-memory cache holds."""
    return len(_cache)
