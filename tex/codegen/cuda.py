"""Loop IR -> CUDA C, compiled with NVRTC.

`compile_cuda(func, target)` takes a LoweredFunc whose body is host-level code
(`Allocate`s of global temporaries around a `Seq` of `KernelLaunch`es, as
`split_host_device` leaves it) and returns a `CudaModule`: the CUDA C source
of every kernel, the machine code (cubin) for `target.arch`, and what the
runtime needs to launch each kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex.expr import Expr, Var
from tex.ir import Buffer


@dataclass(frozen=True, eq=False)
class CudaLaunch:
    """One kernel launch: the `__global__` function `name`, its grid and block
    (x, y, z; expressions over the size variables), and its arguments: the
    pointers of `params`, then the int64 values of `size_vars`."""

    name: str
    grid: tuple[Expr, Expr, Expr]
    block: tuple[Expr, Expr, Expr]
    params: tuple[Buffer, ...]
    size_vars: tuple[Var, ...]


@dataclass(frozen=True, eq=False)
class CudaModule:
    """Compiled CUDA code. `launches` run in order; `temporaries` are the global
    buffers the host allocates on the device before them (and frees after)."""

    target: object
    source: str
    cubin: bytes
    launches: tuple[CudaLaunch, ...]
    temporaries: tuple[Buffer, ...]
