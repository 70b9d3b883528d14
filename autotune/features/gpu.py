"""The `gpu.*` features of a program lowered for a CUDA target (see `GPU` in layout.py).

They are read from the `KernelLaunch` nodes of the fully lowered program:
the main kernel's grid and block (extents that are not constants count
`SYMBOLIC_EXTENT`), its shared allocations, and which cross-thread combines
the GPU passes emitted (warp shuffles, shared-memory tree steps, atomics).
"""
from __future__ import annotations

import math

from autotune.features.affine import SYMBOLIC_EXTENT
from autotune.features.layout import log_scale
from tex.expr import Const
from tex.ir import Allocate, AtomicUpdate, KernelLaunch, Load, Store, WarpShuffle
from tex.visitor import collect

#: Threads of a warp, for `gpu.warp_fill`.
WARP = 32


def gpu_values(body) -> dict:
    """The `gpu.*` values of a lowered program's body (all zeros for one without launches,
    but `gpu.reduce_serial`)."""
    launches = collect(body, lambda n: isinstance(n, KernelLaunch))
    values = dict.fromkeys(("gpu.n_kernels", "gpu.threads_per_block", "gpu.blocks",
                            "gpu.warp_fill", "gpu.shared_bytes"), 0.0)
    if launches:
        main = max(launches, key=lambda k: _size(k.grid) * _size(k.block))
        threads = _size(main.block)
        shared = sum(_size(a.buffer.shape) * a.buffer.dtype.itemsize for a in collect(
            main.body, lambda n: isinstance(n, Allocate) and n.buffer.scope == "shared"))
        values.update({
            "gpu.n_kernels": log_scale(len(launches)),
            "gpu.threads_per_block": log_scale(threads),
            "gpu.blocks": log_scale(_size(main.grid)),
            "gpu.warp_fill": threads / (WARP * math.ceil(threads / WARP)),
            "gpu.shared_bytes": log_scale(shared),
        })
    flags = {
        "gpu.reduce_shared": any(_tree_step(s) for s in collect(
            body, lambda n: isinstance(n, Store) and n.buffer.scope == "shared")),
        "gpu.reduce_warp": bool(collect(body, lambda n: isinstance(n, WarpShuffle))),
        "gpu.reduce_atomic": bool(collect(body, lambda n: isinstance(n, AtomicUpdate))),
    }
    values["gpu.reduce_serial"] = float(not any(flags.values()))
    values.update((name, float(flag)) for name, flag in flags.items())
    return values


def _size(extents) -> float:
    """The product of launch extents or buffer dimensions (SYMBOLIC_EXTENT for each
    one that is not a constant)."""
    return float(math.prod(e.value if isinstance(e, Const) else SYMBOLIC_EXTENT
                           for e in extents))


def _tree_step(store: Store) -> bool:
    """Whether a store to shared memory reads its own buffer: a step of a tree combine."""
    return bool(collect(store.value, lambda n: isinstance(n, Load) and n.buffer is store.buffer))
