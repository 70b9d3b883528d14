"""The feature vector of a lowered program: the walk's records combined into values.

`program_features` walks the program once (autotune/features/walk.py), picks
the hot statement, the store with the most work (scalar iterations times one
plus its arithmetic per lane), and fills the `prog.*`, `hot.*` and `acc{k}.*`
values in the order of `FEATURE_NAMES` (autotune/features/layout.py).
"""
from __future__ import annotations

import numpy as np

from autotune.features.access import hot_accesses
from autotune.features.gpu import gpu_values
from autotune.features.layout import (ACCESS_NAMES, ARITH, FEATURE_NAMES, GPU_FEATURE_NAMES, HOT,
                                      THREADS, TOP_ACCESSES, clamped_ceil, log_scale)
from autotune.features.walk import StoreRecord, Walk, memory_scope
from autotune.targets import kind_of
from tex.ir import LoweredFunc


def program_features(func: LoweredFunc, target=None) -> np.ndarray:
    """The feature vector of a lowered program: float32, shape (len(FEATURE_NAMES),), finite.

    With a CUDA `target` (the program lowered for it, with its kernel launches)
    the `gpu.*` features follow: shape (len(GPU_FEATURE_NAMES),). Deterministic;
    accepts any program `tex.lower` returns (the walk has a fallback for every
    node and never evaluates data).
    """
    walk = Walk(func)
    walk.visit(func.body)
    values = _program_values(walk)
    hot = max(walk.stores, key=lambda s: (s.cost, -s.order), default=None)
    values.update(_hot_values(hot, walk))
    accesses = hot_accesses(hot, walk) if hot is not None else []
    for k in range(TOP_ACCESSES):
        row = accesses[k] if k < len(accesses) else dict.fromkeys(ACCESS_NAMES, 0.0)
        values.update((f"acc{k}.{name}", value) for name, value in row.items())
    names = FEATURE_NAMES
    if target is not None and kind_of(target).gpu:
        values.update(gpu_values(func.body))
        names = GPU_FEATURE_NAMES
    vector = np.array([values[name] for name in names], dtype=np.float64)
    # Values are bounded by construction; this keeps the promise should an estimate overflow.
    return np.nan_to_num(vector, nan=0.0, posinf=1e30, neginf=-1e30).astype(np.float32)


def _program_values(walk: Walk) -> dict:
    """The `prog.*` features."""
    stores, n = walk.stores, walk.n
    scalar = [s.executions * s.lanes for s in stores]
    total = sum(scalar) or 1.0

    def share(flags) -> float:
        return sum(w for w, flag in zip(scalar, flags) if flag) / total

    traffic = {"global": 0.0, "local": 0.0}
    for s in stores:
        for buffer, lanes in [(s.store.buffer, s.store_lanes),
                              *((load.buffer, load.dtype.lanes) for load in s.loads)]:
            traffic[memory_scope(buffer)] += s.executions * lanes * buffer.dtype.itemsize
    executions = sum(s.executions for s in stores) or 1.0
    values = {f"prog.{name}": log_scale(sum(s.executions * s.counts[k] for s in stores))
              for k, (name, _) in enumerate(ARITH)}
    values.update({
        "prog.scalar_iterations": log_scale(sum(scalar)),
        "prog.n_stores": log_scale(len(stores)),
        "prog.n_loops": log_scale(n["loops"]),
        "prog.loop_iterations": log_scale(n["loop_iterations"]),
        "prog.max_depth": n["depth"],
        "prog.symbolic_loops": log_scale(n["symbolic"]),
        "prog.n_parallel_loops": n["parallel"],
        "prog.max_parallel_extent": log_scale(n["max_parallel"]),
        "prog.parallel_fraction": share(any(l.kind == "parallel" for l in s.loops)
                                        for s in stores),
        "prog.vector_fraction": share(s.lanes > 1 for s in stores),
        "prog.mean_lanes": sum(s.executions * s.lanes for s in stores) / executions,
        "prog.max_lanes": max((s.lanes for s in stores), default=0),
        "prog.max_stores_in_body": log_scale(max(_stores_per_body(stores).values(), default=0)),
        "prog.n_guards": log_scale(n["guards"]),
        "prog.guarded_fraction": share(s.guarded for s in stores),
        "prog.masked_fraction": share(s.masked for s in stores),
        "prog.n_lets": log_scale(n["lets"]),
        "prog.allocs_global": log_scale(n["allocs_global"]),
        "prog.allocs_local": log_scale(n["allocs_local"]),
        "prog.alloc_bytes_global": log_scale(n["bytes_global"]),
        "prog.alloc_bytes_local": log_scale(n["bytes_local"]),
        "prog.traffic_global": log_scale(traffic["global"]),
        "prog.traffic_local": log_scale(traffic["local"]),
    })
    return values


def _stores_per_body(stores) -> dict:
    """Innermost loop (its key; 0 outside loops) -> stores directly in its body."""
    counts: dict = {}
    for s in stores:
        counts[s.body] = counts.get(s.body, 0) + 1
    return counts


def _hot_values(hot: StoreRecord | None, walk: Walk) -> dict:
    """The `hot.*` features (all zeros for a program without stores)."""
    values = dict.fromkeys((name for name, _ in HOT), 0.0)
    if hot is None:
        return values
    values.update({f"hot.{name}": log_scale(hot.executions * hot.counts[k])
                   for k, (name, _) in enumerate(ARITH)})
    loads = {load.buffer for load in hot.loads}
    innermost = hot.loops[-1] if hot.loops else None
    parallel = max(1.0, hot.parallel)
    values.update({
        "hot.executions": log_scale(hot.executions),
        "hot.scalar_iterations": log_scale(hot.executions * hot.lanes),
        "hot.instructions": log_scale(hot.executions * hot.nodes),
        "hot.work_share": hot.cost / (sum(s.cost for s in walk.stores) or 1.0),
        "hot.lanes": hot.lanes,
        "hot.innermost_vectorized": float(hot.lanes > 1),
        "hot.innermost_parallel": float(innermost is not None and innermost.kind == "parallel"),
        "hot.innermost_extent": log_scale(hot.extents[-1] if hot.extents else 0.0),
        "hot.depth": len(hot.loops),
        "hot.parallel_extent": log_scale(hot.parallel),
        "hot.parallel_grain": log_scale(hot.grain * hot.lanes),
        "hot.guard_fraction": hot.executions / hot.nominal if hot.nominal else 0.0,
        "hot.masked": float(hot.masked),
        "hot.stores_in_body": log_scale(_stores_per_body(walk.stores)[hot.body]),
        "hot.accumulates": float(hot.store.buffer in loads),
        "hot.output_local": float(hot.store.buffer.scope == "local"),
        "hot.n_buffers": len(loads | {hot.store.buffer}),
    })
    for t in THREADS:
        values[f"hot.parallel_balance_{t}"] = clamped_ceil(parallel / t) * t / parallel
    return values
