"""The in-memory compile cache: building an identical program twice compiles once.

The key is the printed LoweredFunc (deterministic; it shows buffer names and
dtypes, loop structure and every expression), plus what the printed form
leaves out but codegen depends on: the order and dtypes of the size
variables and the dtypes of all variables, and the target string.
"""
from __future__ import annotations

import threading

from tex.codegen import llvm
from tex.codegen.llvm_jit import CompiledModule
from tex.expr import Var
from tex.ir import LoweredFunc
from tex.target import as_target
from tex.visitor import collect

_cache: dict[tuple, CompiledModule] = {}
_lock = threading.Lock()


def cache_key(func: LoweredFunc, target) -> tuple:
    """What identifies the machine code of `func` on `target`."""
    var_dtypes = tuple(str(v.dtype) for v in collect(func.body, lambda n: isinstance(n, Var)))
    sizes = tuple((v.name, str(v.dtype)) for v in func.size_vars)
    return str(func), sizes, var_dtypes, str(as_target(target))


def compile_cached(func: LoweredFunc, target="llvm") -> CompiledModule:
    """`tex.codegen.llvm.build(func, target)`, once per distinct program and target."""
    target = as_target(target)
    key = cache_key(func, target)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    compiled = llvm.build(func, target)
    with _lock:
        return _cache.setdefault(key, compiled)


def clear_cache():
    """Forget every compiled module (kernels already built keep theirs)."""
    with _lock:
        _cache.clear()


def cache_size() -> int:
    return len(_cache)
