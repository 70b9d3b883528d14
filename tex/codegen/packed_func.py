"""Packed functions: Python functions that kernels call by name (`tex.call_packed`).

`register_func(name)` puts a function in this process's registry. A kernel
looks the name up each time it makes the call, so a function may be
registered, or replaced (`override=True`), after the kernel is built, and a
kernel loaded from the disk cache calls what this process registered under
the name: the name is data in the kernel's code.

The ABI. Codegen (`tex.codegen.llvm`) turns a `PackedCall` into a call of

    int32_t tex_call_packed(const char *call, const int64_t *values,
                            const int64_t *shapes);

`call` is a constant string naming the function and the types of its
arguments, e.g. `my.add_one(float32[1],int64,float64)`: a buffer as its dtype
and rank, a scalar as int64, float64 or bool. `values[k]` holds argument k: a
buffer's data pointer, an integer (0 or 1 for a bool), or a double's bits; `shapes` the
dimensions of the buffer arguments, one buffer after another. The symbol is
a ctypes callback, made known to LLVM's JIT (`install`) when an object
refers to it. It wraps each buffer as a `PackedArray` of its dtype and shape
over the kernel's memory (no copy; valid during the call only): a NumPy array
that also has TVM NDArray's `numpy()`, `asnumpy()`, `copyfrom` and `copyto`,
so TVM's packed functions run unchanged. Then it calls the
function with the GIL held (ctypes takes it) and returns 0. When the name
is not registered or the function raises, it keeps the exception for this
thread and returns 1; the kernel then frees what it allocated and returns
at once, and its caller (`tex.runtime.kernel.Kernel`) calls `raise_failure`,
which raises `PackedFuncError` with the function's exception as the cause.

Threads. An extern stage runs at the root of its kernel, so a packed call
runs on the thread that called the kernel, outside every parallel loop
(codegen refuses one inside). Kernels may be called from several threads at
once: each failure is kept for the thread it happened on.
"""
from __future__ import annotations

import ctypes
import math
import threading
from functools import lru_cache
from typing import Callable

import llvmlite.binding as llvm
import numpy as np

from tex.dtype import as_dtype
from tex.errors import ArgumentError, PackedFuncError
from tex.ir import PackedCall

SYMBOL = "tex_call_packed"


class PackedArray(np.ndarray):
    """A NumPy array with TVM NDArray's methods: what a packed function receives for a
    buffer (a view of the kernel's memory), and the base of `tex.nd.NDArray`."""

    def numpy(self) -> np.ndarray:
        """A copy, as a plain NumPy array. TVM: `NDArray.numpy()`."""
        return np.array(self)

    asnumpy = numpy

    def copyfrom(self, source) -> "PackedArray":
        """Copy `source` (an array of this shape) into this array; returns it.
        TVM: `NDArray.copyfrom`."""
        source = np.asarray(source)
        if source.shape != self.shape:
            raise ArgumentError(f"copyfrom: the source has shape {source.shape}, this array "
                                f"{self.shape}")
        self[...] = source
        return self

    def copyto(self, target):
        """Copy this array into `target` (an array of this shape); returns `target`.
        TVM: `NDArray.copyto`."""
        if not isinstance(target, np.ndarray):
            raise ArgumentError(f"copyto: expected an array to copy into, got "
                                f"{type(target).__name__} {target!r}")
        if target.shape != self.shape:
            raise ArgumentError(f"copyto: the target has shape {target.shape}, this array "
                                f"{self.shape}")
        target[...] = self
        return target

_registry: dict[str, Callable] = {}
_registry_lock = threading.Lock()
_failures = threading.local()  # .pending: (function name, exception or None: unregistered)


def register_func(func_name, f=None, override: bool = False):
    """Register `f` as the packed function `func_name`; returns `f`.

    As a decorator: `@tex.register_func("my.name")`, or `@tex.register_func`
    to register a function under its own `__name__`. A name that is
    registered already raises PackedFuncError, unless `override` is true.
    TVM: `tvm.register_func`.
    """
    if callable(func_name) and f is None:
        f, func_name = func_name, func_name.__name__
    if not isinstance(func_name, str) or not func_name or "\0" in func_name:
        raise PackedFuncError(f"register_func: the name must be a non-empty string, got "
                              f"{func_name!r}")

    def register(fn):
        if not callable(fn):
            raise PackedFuncError(f"register_func {func_name!r}: expected a function, got "
                                  f"{type(fn).__name__} {fn!r}")
        with _registry_lock:
            if func_name in _registry and not override:
                raise PackedFuncError(f"packed function {func_name!r} is registered already; "
                                      "pass override=True to replace it")
            _registry[func_name] = fn
        return fn
    return register if f is None else register(f)


def get_global_func(name: str, allow_missing: bool = False):
    """The function registered as `name`; when there is none, None if `allow_missing`,
    else PackedFuncError. TVM: `tvm.get_global_func`."""
    fn = _registry.get(name)
    if fn is None and not allow_missing:
        raise PackedFuncError(f"no packed function is registered as {name!r}")
    return fn


def signature(call: PackedCall) -> str:
    """The constant string the call passes: its name and its arguments' types."""
    kinds = []
    for k, arg in enumerate(call.args):
        if k in call.buffer_args:
            rank = call.ranks[call.buffer_args.index(k)]
            kinds.append(f"{arg.buffer.dtype}[{rank}]")
        else:
            kinds.append("float64" if arg.dtype.is_float else
                         "bool" if arg.dtype.is_bool else "int64")
    return f"{call.name}({','.join(kinds)})"


@lru_cache(maxsize=None)
def _parse(call: bytes) -> tuple[str, tuple]:
    """(name, kinds) of a `signature`: each kind "int64", "float64", "bool" or (NumPy
    dtype, rank)."""
    name, _, arguments = call.decode()[:-1].rpartition("(")
    kinds = []
    for item in filter(None, arguments.split(",")):
        if item.endswith("]"):
            dtype, _, rank = item[:-1].partition("[")
            kinds.append((as_dtype(dtype).numpy, int(rank)))
        else:
            kinds.append(item)
    return name, tuple(kinds)


def _array(address: int | None, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """The array of `dtype` and `shape` over the memory at `address` (no copy)."""
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes == 0:
        return np.empty(shape, dtype).view(PackedArray)
    memory = (ctypes.c_char * nbytes).from_address(address)
    return np.frombuffer(memory, dtype).reshape(shape).view(PackedArray)


def _arguments(kinds: tuple, values: int, shapes: int) -> list:
    """The Python arguments of a call: arrays for buffers, ints and floats for scalars."""
    args, dims = [], 0
    for k, kind in enumerate(kinds):
        slot = values + 8 * k
        if kind == "int64":
            args.append(ctypes.c_int64.from_address(slot).value)
        elif kind == "float64":
            args.append(ctypes.c_double.from_address(slot).value)
        elif kind == "bool":
            args.append(bool(ctypes.c_int64.from_address(slot).value))
        else:
            dtype, rank = kind
            shape = tuple((ctypes.c_int64 * rank).from_address(shapes + 8 * dims))
            dims += rank
            args.append(_array(ctypes.c_void_p.from_address(slot).value, dtype, shape))
    return args


def _call(call: int, values: int, shapes: int) -> int:
    """The body of `tex_call_packed` (see the module docstring): 0, or 1 on a failure."""
    name = None
    try:
        name, kinds = _parse(ctypes.string_at(call))
        fn = _registry.get(name)
        if fn is None:
            _failures.pending = (name, None)
            return 1
        fn(*_arguments(kinds, values, shapes))
    except BaseException as err:  # all of them: raised again by the kernel's caller
        _failures.pending = (name, err)
        return 1
    return 0


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p)(_call)
_installed = False


def install():
    """Make `tex_call_packed` known to the JIT's symbol lookup (once per process)."""
    global _installed
    if not _installed:
        llvm.add_symbol(SYMBOL, ctypes.cast(_CALLBACK, ctypes.c_void_p).value)
        _installed = True


def raise_failure(kernel: str):
    """Raise for the packed call that failed in the kernel `kernel` just called on this
    thread, if one did: PackedFuncError, from the function's exception (an exception
    that is not an `Exception`, such as KeyboardInterrupt, is raised as it is)."""
    pending = getattr(_failures, "pending", None)
    if pending is None:
        return
    _failures.pending = None
    name, err = pending
    if err is None:
        raise PackedFuncError(f"kernel {kernel!r} calls packed function {name!r}, which is "
                              f"not registered; register it with @tex.register_func({name!r})")
    if not isinstance(err, Exception):
        raise err
    raise PackedFuncError(f"kernel {kernel!r}: packed function {name!r} raised "
                          f"{type(err).__name__}: {err}") from err
