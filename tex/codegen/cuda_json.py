"""A `CudaModule` as JSON text and back, for the disk cache (`tex.runtime.cache`).

    {"source": CUDA C, "ptx": PTX text,
     "temporaries": [[name, dtype, [extent, ...]], ...],
     "launches": [{"name": S, "grid": [e, e, e], "block": [e, e, e],
                   "buffers": [k, ...], "sizes": [k, ...], "alignments": [n, ...],
                   "shared_bytes": n}, ...]}

The text describes a module relative to the kernel it belongs to: a launch
names its buffers by position among the kernel's params followed by the
module's temporaries, and its size variables by position among the kernel's
size variables. Temporaries are flat global buffers (name, dtype, shape:
what `split_host_device` leaves). Expressions (launch dimensions,
temporaries' extents, all over the size variables) are nested lists
`[node class, field, ...]`, a size variable `["Var", k]`, a `dtype` field
its name (`tex.expr_json`). The cubin is not in the text; the target is the
caller's.

`module_from_json(module_to_json(m, f), m.target, m.cubin, g)` is `m` with
`f`'s params and size variables replaced by `g`'s, when `g` has the same
interface (as two schedules with one fingerprint do).
"""
from __future__ import annotations

import json

from tex import expr_json
from tex.codegen.cuda import CudaLaunch, CudaModule
from tex.dtype import as_dtype
from tex.errors import TexError
from tex.ir import Buffer, KernelInterface, LoweredFunc

def module_to_json(module: CudaModule, func: LoweredFunc | KernelInterface) -> str:
    """The description of `module`, built for `func` (see the module docstring)."""
    sizes = {var: k for k, var in enumerate(func.size_vars)}
    buffers = {b: k for k, b in enumerate((*func.params, *module.temporaries))}

    def write(e):
        return expr_json.to_json(e, sizes)

    return json.dumps({
        "source": module.source,
        "ptx": module.ptx,
        "temporaries": [[b.name, str(b.dtype), [write(d) for d in b.shape]]
                        for b in module.temporaries],
        "launches": [{"name": launch.name, "grid": [write(e) for e in launch.grid],
                      "block": [write(e) for e in launch.block],
                      "buffers": [buffers[b] for b in launch.params],
                      "sizes": [sizes[v] for v in launch.size_vars],
                      "alignments": list(launch.alignments),
                      "shared_bytes": launch.shared_bytes} for launch in module.launches]})


def module_from_json(text: str, target, cubin: bytes,
                     func: LoweredFunc | KernelInterface) -> CudaModule | None:
    """The module `text` describes, for `func`'s params and size variables, or None when
    `text` is not such a description (damaged, or written for another interface)."""
    try:
        data = json.loads(text)
        sizes = func.size_vars

        def read(value):
            return expr_json.from_json(value, sizes)

        temporaries = tuple(Buffer(_text(name), as_dtype(dtype), tuple(map(read, shape)))
                            for name, dtype, shape in data["temporaries"])
        buffers = (*func.params, *temporaries)
        launches = tuple(_launch(launch, read, buffers, sizes) for launch in data["launches"])
        return CudaModule(target, _text(data["source"]), cubin, launches, temporaries,
                          _text(data["ptx"]))
    except (ValueError, TypeError, KeyError, IndexError, TexError):
        return None


def _launch(launch: dict, read, buffers: tuple, sizes: tuple) -> CudaLaunch:
    params = tuple(buffers[expr_json.index(k)] for k in launch["buffers"])
    alignments = tuple(map(expr_json.index, launch["alignments"]))
    if alignments and len(alignments) != len(params):
        raise ValueError("one alignment per buffer, or none")
    return CudaLaunch(_text(launch["name"]), _three(map(read, launch["grid"])),
                      _three(map(read, launch["block"])), params,
                      tuple(sizes[expr_json.index(k)] for k in launch["sizes"]), alignments,
                      expr_json.index(launch["shared_bytes"]))


def _text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _three(exprs) -> tuple:
    dims = tuple(exprs)
    if len(dims) != 3:
        raise ValueError("launch dimensions are three")
    return dims
