"""GPU schedules of the benchmark and test workloads.

Each function declares a computation, schedules it for a CUDA GPU and
returns a `GpuCase`: the schedule, the kernel's arguments, a NumPy reference
and how to make inputs. `tests/test_gpu.py` compiles every case with NVRTC
(and runs it on a GPU when there is one); `bench/gpu.py` times them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import tex


@dataclass
class GpuCase:
    """A scheduled GPU computation: `build()` it, call it with `inputs()`, compare
    with `reference(*inputs)`."""

    name: str
    schedule: tex.Schedule
    args: list
    reference: Callable
    shapes: list                    # input shapes, in argument order
    dtype: str = "float32"

    def build(self, target: str = "cuda"):
        return tex.build(self.schedule, self.args, target=target, name=self.name)

    def inputs(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.uniform(-1, 1, shape).astype(self.dtype) for shape in self.shapes]


def _bind(stage, axis, tag):
    stage.bind(axis, tex.thread_axis(tag))


def elementwise(n: int, threads: int = 256, vector: int = 1) -> GpuCase:
    """max(a * b + c, 0) over n elements, `vector` consecutive elements per thread
    (4: float4 loads and stores)."""
    a, b, c = (tex.placeholder((n,), name=x) for x in "abc")
    out = tex.compute((n,), lambda i: tex.max(a[i] * b[i] + c[i], tex.const(0.0)), name="out")
    s = tex.create_schedule(out.op)
    axis = out.op.axis[0]
    if vector > 1:
        axis, lanes = s[out].split(axis, factor=vector)
        s[out].vectorize(lanes)
    blocks, thread = s[out].split(axis, factor=threads)
    _bind(s[out], blocks, "blockIdx.x")
    _bind(s[out], thread, "threadIdx.x")
    return GpuCase("elementwise" if vector == 1 else f"elementwise_x{vector}", s, [a, b, c, out],
                   lambda x, y, z: np.maximum(x * y + z, 0), [(n,)] * 3)


def matmul(n: int, m: int, k: int, tile: int = 64, per_thread: int = 4, step: int = 16,
           dtype: str = "float32", double_buffer: bool = False, vector: int = 4,
           min_blocks: int | None = None) -> GpuCase:
    """C = A @ B: a tile x tile block of C per block of (tile / per_thread)² threads, each
    thread a per_thread² register tile; A and B staged through shared memory
    `step` columns / rows at a time, fetched by all threads together, `vector`
    consecutive elements per thread and access (4 float32: 16-byte loads and stores
    where the sizes keep them aligned; the next step's while this one's are used, with
    `double_buffer`); C is written `vector` elements at a time too. `min_blocks`: the
    launch_bounds pragma (blocks per multiprocessor, which caps a thread's registers)."""
    A = tex.placeholder((n, k), dtype, name="A")
    B = tex.placeholder((k, m), dtype, name="B")
    r = tex.reduce_axis((0, k), name="r")
    C = tex.compute((n, m), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r), name="C")
    s = tex.create_schedule(C.op)
    A_shared = s.cache_read(A, "shared", [C])
    B_shared = s.cache_read(B, "shared", [C])
    C_local = s.cache_write(C, "local")
    threads = tile // per_thread
    i, j = s[C].op.axis
    bi, bj, ii, jj = s[C].tile(i, j, tile, tile)
    ty, ti = s[C].split(ii, nparts=threads)
    tx, tj = s[C].split(jj, nparts=threads)
    s[C].reorder(bi, bj, ty, tx, ti, tj)
    if vector > 1 and per_thread % vector == 0:  # C written `vector` elements at a time
        _, lanes = s[C].split(tj, factor=vector)
        s[C].vectorize(lanes)
    _bind(s[C], bi, "blockIdx.y")
    _bind(s[C], bj, "blockIdx.x")
    _bind(s[C], ty, "threadIdx.y")
    _bind(s[C], tx, "threadIdx.x")
    if min_blocks is not None:
        s[C].pragma(bi, "launch_bounds", min_blocks)
    s[C_local].compute_at(s[C], tx)
    ci, cj = s[C_local].op.axis
    ro, ri = s[C_local].split(s[C_local].op.reduce_axis[0], factor=step)
    s[C_local].reorder(ro, ri, ci, cj)
    s[C_local].unroll(ri)
    s[C_local].unroll(ci)
    s[C_local].unroll(cj)
    for staged in (A_shared, B_shared):
        s[staged].compute_at(s[C_local], ro)
        fused = s[staged].fuse(*s[staged].op.axis)
        fused, elements = s[staged].split(fused, factor=vector)
        rest, lanes = s[staged].split(fused, factor=threads * threads)
        fy, fx = s[staged].split(lanes, factor=threads)
        _bind(s[staged], fy, "threadIdx.y")
        _bind(s[staged], fx, "threadIdx.x")
        if vector > 1:
            s[staged].vectorize(elements)
        if double_buffer:
            s[staged].double_buffer()
    return GpuCase("matmul_double_buffered" if double_buffer else "matmul", s, [A, B, C],
                   lambda a, b: a.astype("float64") @ b, [(n, k), (k, m)], dtype)


def conv2d(batch: int, channels: int, filters: int, size: int, kernel: int = 3,
           threads: int = 128) -> GpuCase:
    """NCHW convolution, stride 1, zero padding kernel // 2: one output per thread,
    the padding computed inline."""
    pad = kernel // 2
    data = tex.placeholder((batch, channels, size, size), name="data")
    weight = tex.placeholder((filters, channels, kernel, kernel), name="weight")
    padded = tex.compute(
        (batch, channels, size + 2 * pad, size + 2 * pad),
        lambda b, c, y, x: tex.if_then_else(
            tex.all(y >= pad, y < size + pad, x >= pad, x < size + pad),
            data[b, c, y - pad, x - pad], tex.const(0.0)), name="padded")
    rc = tex.reduce_axis((0, channels), name="rc")
    ry = tex.reduce_axis((0, kernel), name="ry")
    rx = tex.reduce_axis((0, kernel), name="rx")
    out = tex.compute(
        (batch, filters, size, size),
        lambda b, f, y, x: tex.sum(padded[b, rc, y + ry, x + rx] * weight[f, rc, ry, rx],
                                   axis=[rc, ry, rx]), name="out")
    s = tex.create_schedule(out.op)
    s[padded].compute_inline()
    fused = s[out].fuse(*s[out].op.axis)
    blocks, lanes = s[out].split(fused, factor=threads)
    _bind(s[out], blocks, "blockIdx.x")
    _bind(s[out], lanes, "threadIdx.x")

    def reference(d, w):
        p = np.pad(d.astype("float64"), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        result = np.zeros((batch, filters, size, size))
        for dy in range(kernel):
            for dx in range(kernel):
                result += np.einsum("bcyx,fc->bfyx", p[:, :, dy:dy + size, dx:dx + size],
                                    w[:, :, dy, dx])
        return result
    return GpuCase("conv2d", s, [data, weight, out], reference,
                   [(batch, channels, size, size), (filters, channels, kernel, kernel)])


def row_reduce(rows: int, cols: int, strategy: str, threads: int = 256,
               reducer: str = "sum") -> GpuCase:
    """out[i] = reduce(a[i, :]): one block per row, its threads across the row, combined
    with `strategy` ("shared" or "warp"); or for "atomic", the row split over
    blocks (blockIdx.y) whose partial results are combined atomically."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    fn = {"sum": tex.sum, "max": tex.max, "min": tex.min}[reducer]
    out = tex.compute((rows,), lambda i: fn(a[i, k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    if strategy == "atomic":
        chunks, rest = s[out].split(k, nparts=max(1, min(64, cols // 64)))
        row_blocks, row_threads = s[out].split(out.op.axis[0], factor=threads)
        s[out].reorder(row_blocks, row_threads, chunks, rest)
        _bind(s[out], row_blocks, "blockIdx.x")
        _bind(s[out], row_threads, "threadIdx.x")
        _bind(s[out], chunks, "blockIdx.y")
    else:
        outer, lanes = s[out].split(k, factor=threads)
        _bind(s[out], out.op.axis[0], "blockIdx.x")
        _bind(s[out], lanes, "threadIdx.x")
        chunks = lanes
    s[out].reduce_strategy(chunks, strategy)
    numpy_fn = {"sum": np.sum, "max": np.max, "min": np.min}[reducer]
    return GpuCase(f"row_{reducer}_{strategy}", s, [a, out],
                   lambda x: numpy_fn(x.astype("float64"), axis=1), [(rows, cols)])


def row_argmax(rows: int, cols: int, strategy: str, threads: int = 64) -> GpuCase:
    """(index, value) of each row's maximum: a tuple reducer across threads (the first
    index wins ties only within a thread; across threads any maximal index may win)."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    argmax = tex.comm_reducer(
        lambda x, y: (tex.select(x[1] >= y[1], x[0], y[0]),
                      tex.select(x[1] >= y[1], x[1], y[1])),
        lambda index, value: (tex.const(-1, index), tex.min_value(value)), name="argmax")
    index, value = tex.compute((rows,), lambda i: argmax((k, a[i, k]), axis=k), name="argmax")
    s = tex.create_schedule(index.op)
    _, lanes = s[index].split(k, factor=threads)
    _bind(s[index], s[index].op.axis[0], "blockIdx.x")
    _bind(s[index], lanes, "threadIdx.x")
    s[index].reduce_strategy(lanes, strategy)
    return GpuCase(f"row_argmax_{strategy}", s, [a, index, value],
                   lambda x: (x.argmax(axis=1), x.max(axis=1)), [(rows, cols)])


def row_sum_rfactor(rows: int, cols: int, strategy: str, threads: int = 64) -> GpuCase:
    """Row sums where each thread first sums a strided part of the row (rfactor),
    then the threads' partial sums combine with `strategy`."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    out = tex.compute((rows,), lambda i: tex.sum(a[i, k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    _, lanes = s[out].split(k, factor=threads)
    partial = s.rfactor(out, lanes)
    lane = s[out].op.reduce_axis[0]
    _bind(s[out], out.op.axis[0], "blockIdx.x")
    _bind(s[out], lane, "threadIdx.x")
    s[out].reduce_strategy(lane, strategy)
    s[partial].compute_at(s[out], lane)
    return GpuCase(f"row_sum_rfactor_{strategy}", s, [a, out],
                   lambda x: x.astype("float64").sum(axis=1), [(rows, cols)])


def column_sum(rows: int, cols: int, threads_x: int = 32, threads_y: int = 8) -> GpuCase:
    """out[j] = sum over i of a[i, j]: threadIdx.x across columns (coalesced reads),
    threadIdx.y across rows, combined through shared memory."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, rows), name="k")
    out = tex.compute((cols,), lambda j: tex.sum(a[k, j], axis=k), name="out")
    s = tex.create_schedule(out.op)
    bx, tx = s[out].split(out.op.axis[0], factor=threads_x)
    ko, ty = s[out].split(k, factor=threads_y)
    _bind(s[out], bx, "blockIdx.x")
    _bind(s[out], tx, "threadIdx.x")
    _bind(s[out], ty, "threadIdx.y")
    s[out].reduce_strategy(ty, "shared")
    return GpuCase("column_sum", s, [a, out], lambda x: x.astype("float64").sum(axis=0),
                   [(rows, cols)])


def full_sum(n: int, strategy: str, threads: int = 256, blocks: int = 64) -> GpuCase:
    """The sum of n elements: with "atomic", `blocks` blocks each reduce a part across
    their threads (warp shuffles) and add it to the result atomically; otherwise
    one block of `threads` threads combined with `strategy`."""
    a = tex.placeholder((n,), name="a")
    k = tex.reduce_axis((0, n), name="k")
    out = tex.compute((1,), lambda _: tex.sum(a[k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    if strategy == "atomic":
        per_block, lanes = s[out].split(k, factor=threads)
        block, serial = s[out].split(per_block, nparts=blocks)
        s[out].reorder(block, serial, lanes)
        _bind(s[out], block, "blockIdx.x")
        s[out].reduce_strategy(block, "atomic")
    else:
        _, lanes = s[out].split(k, factor=threads)
    _bind(s[out], lanes, "threadIdx.x")
    s[out].reduce_strategy(lanes, "warp" if strategy == "atomic" else strategy)
    return GpuCase(f"full_sum_{strategy}", s, [a, out],
                   lambda x: np.array([x.astype("float64").sum()]), [(n,)])


def softmax(rows: int, cols: int, threads: int = 256) -> GpuCase:
    """Softmax over the last axis, one block per row: the row's max and sum of
    exponentials are reduced across the block's threads (warp shuffles) into
    shared memory, then every thread writes its part of the row."""
    a = tex.placeholder((rows, cols), name="a")
    k1 = tex.reduce_axis((0, cols), name="k1")
    k2 = tex.reduce_axis((0, cols), name="k2")
    row_max = tex.compute((rows,), lambda i: tex.max(a[i, k1], axis=k1), name="row_max")
    total = tex.compute((rows,), lambda i: tex.sum(tex.exp(a[i, k2] - row_max[i]), axis=k2),
                        name="total")
    out = tex.compute((rows, cols), lambda i, j: tex.exp(a[i, j] - row_max[i]) / total[i],
                      name="out")
    s = tex.create_schedule(out.op)
    row, col = s[out].op.axis
    _bind(s[out], row, "blockIdx.x")
    col_outer, col_thread = s[out].split(col, factor=threads)
    s[out].reorder(col_thread, col_outer)
    _bind(s[out], col_thread, "threadIdx.x")
    for stage in (row_max, total):
        s[stage].compute_at(s[out], row)
        _, lanes = s[stage].split(s[stage].op.reduce_axis[0], factor=threads)
        _bind(s[stage], lanes, "threadIdx.x")

    def reference(x):
        x = x.astype("float64")
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return GpuCase("softmax", s, [a, out], reference, [(rows, cols)])


def all_cases() -> list[GpuCase]:
    """Every schedule at small, awkward sizes (none divides its split factors)."""
    cases = [elementwise(1000), elementwise(1000, threads=64, vector=4), matmul(100, 90, 70),
             matmul(100, 90, 70, double_buffer=True), conv2d(1, 5, 6, 13), column_sum(77, 70),
             softmax(9, 1000), full_sum(10_000, "shared"), full_sum(10_000, "warp"),
             full_sum(10_000, "atomic")]
    for strategy in ("shared", "warp", "atomic"):
        cases.append(row_reduce(13, 1000, strategy))
    cases.append(row_reduce(13, 700, "shared", threads=100))
    cases.append(row_reduce(13, 1000, "warp", threads=16, reducer="max"))
    cases.append(row_reduce(13, 1000, "atomic", reducer="min"))
    for strategy in ("shared", "warp"):
        cases.append(row_sum_rfactor(13, 1000, strategy))
        cases.append(row_argmax(13, 300, strategy))
    return cases
