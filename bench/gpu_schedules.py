"""GPU schedules of the benchmark and test workloads.

Each function declares a computation, schedules it for a CUDA GPU and
returns a `GpuCase`: the schedule, the kernel's arguments, a NumPy reference,
how to make inputs and the work of one block; its name names the kernel.
`tests/test_gpu.py` compiles every case with NVRTC (and runs it on a GPU when
there is one); `bench/gpu.py` times them, `bench/gpu_static.py` reads their SASS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import tex
from tex.dtype import as_dtype
from tex.intrin import cuda_mma
from tex.intrin.cuda_wmma import matmul_schedule


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
    #: (flops, bytes of global memory read and written) of one block, each element counted
    #: once; each add, multiply, max, exp, ... of the definition is one flop
    block_work: tuple[int, int] | None = None

    def build(self, target: str = "cuda"):
        return tex.build(self.schedule, self.args, target=target, name=self.name)

    def inputs(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        dtype = as_dtype(self.dtype).numpy
        return [rng.uniform(-1, 1, shape).astype(dtype) for shape in self.shapes]


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
    per_block = min(n, threads * vector)
    return GpuCase("elementwise" if vector == 1 else f"elementwise_x{vector}", s, [a, b, c, out],
                   lambda x, y, z: np.maximum(x * y + z, 0), [(n,)] * 3,
                   block_work=(3 * per_block, 16 * per_block))


def matmul(n: int, m: int, k: int, tile: int = 64, per_thread: int = 4, step: int = 16,
           dtype: str = "float32", double_buffer: bool = False, vector: int = 4,
           min_blocks: int | None = None, pipelined: bool = False) -> GpuCase:
    """C = A @ B: a tile x tile block of C per block of (tile / per_thread)² threads, each
    thread a per_thread² register tile (its rows contiguous, its columns in groups of
    `vector` interleaved with the other threads': thread x owns columns
    x * vector + threads * vector * g + {0..vector-1}, so B's shared reads are 16-byte and
    free of bank conflicts); A and B staged through shared memory
    `step` columns / rows at a time, fetched by all threads together, `vector`
    consecutive elements per thread and access (4 float32: 16-byte loads and stores
    where the sizes keep them aligned). The next step's panels are fetched while this
    one's are used, with one barrier per step: with `double_buffer` through registers
    (any GPU; `tex.passes.inject_double_buffer`), with `pipelined` by cp.async into two
    slots (sm_80 and later; `tex.passes.inject_pipeline`), which needs no staging
    registers. C is written `vector` elements at a time too. `min_blocks`: the
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
    group = vector if per_thread % vector == 0 else 1
    tj, rest = s[C].split(jj, factor=threads * group)  # columns interleaved across threads
    tx, lanes = s[C].split(rest, nparts=threads)
    s[C].reorder(bi, bj, ty, tx, ti, tj, lanes)
    if group > 1:  # C written `vector` elements at a time
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
    s[C_local].reorder(ro, ri, cj, ci)  # column outer: fewer live values (no spills at 128)
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
        if pipelined:
            s[staged].pipeline(2)
        elif double_buffer:
            s[staged].double_buffer()
    size = np.dtype(dtype).itemsize
    name = f"matmul_{_short(dtype)}" + ("_pipelined" if pipelined else
                                        "_double_buffered" if double_buffer else "")
    return GpuCase(name, s, [A, B, C], lambda a, b: a.astype("float64") @ b,
                   [(n, k), (k, m)], dtype, _matmul_work(min(tile, n), min(tile, m), k, size))


def _short(dtype: str) -> str:
    return dtype.replace("float", "f")


def _matmul_work(rows: int, cols: int, depth: int, size: int, out_size: int = 4):
    """(flops, bytes) of a rows x cols tile of C over a reduction of `depth`: A's panel and
    B's panel read once, the tile written once."""
    return 2 * rows * cols * depth, (rows + cols) * depth * size + rows * cols * out_size


def matmul_wmma(n: int, m: int, k: int, warps: tuple[int, int] = (2, 2)) -> GpuCase:
    """C (float32) = A @ B (float16) on tensor cores: `tex.intrin.cuda_wmma.matmul_schedule`,
    a 16 x 16 tile per warp, warps[0] x warps[1] warps per block, panels staged in shared
    memory (n, m, k multiples of 16)."""
    s, args = matmul_schedule(n, m, k, warps)
    return GpuCase("matmul_f16_wmma", s, args, lambda a, b: a.astype("float64") @ b,
                   [(n, k), (k, m)], "float16",
                   _matmul_work(16 * warps[0], 16 * warps[1], k, 2))


#: The tensor-core matmul's tiles: 128 x 256 blocks of 8 warps of 64 x 64, k-tiles of 32,
#: three cp.async stages (80 KB of dynamic shared memory).
MMA_TILES = {"block": (128, 256), "warp": (64, 64), "k_tile": 32, "stages": 3}


def matmul_mma(n: int, m: int, k: int, dtype: str = "float16", **tiles) -> GpuCase:
    """C (float32) = A @ B (float16 or bfloat16) on tensor cores: mma.sync with ldmatrix
    operands, cp.async pipelined shared tiles (`tex.intrin.cuda_mma.matmul_schedule`;
    `tiles` are its block, warp, k_tile and stages, MMA_TILES where not given)."""
    tiles = {**MMA_TILES, **tiles}
    s, args = cuda_mma.matmul_schedule(n, m, k, dtype, **tiles)
    rows, cols = tiles["block"]
    return GpuCase(f"matmul_{cuda_mma.DTYPES[dtype]}_mma", s, args,
                   lambda a, b: a.astype("float64") @ b.astype("float64"), [(n, k), (k, m)],
                   dtype, _matmul_work(min(rows, n), min(cols, m), k, 2))


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
    outputs = min(threads, batch * filters * size * size)
    data_rows = min(size, -(-outputs // size) + kernel)    # the rows one block's outputs read
    moved = 4 * (channels * data_rows * size + channels * kernel * kernel + outputs)
    return GpuCase("conv2d", s, [data, weight, out], reference,
                   [(batch, channels, size, size), (filters, channels, kernel, kernel)],
                   block_work=(2 * outputs * channels * kernel * kernel, moved))


def row_reduce(rows: int, cols: int, strategy: str, threads: int = 256,
               reducer: str = "sum") -> GpuCase:
    """out[i] = reduce(a[i, :]): one block per row, its threads across the row (a warp
    reads consecutive elements), combined with `strategy` ("shared" or "warp"); or
    for "atomic", the row cut into up to 64 contiguous chunks, one block each
    (blockIdx.y; at least 4 elements per thread), each chunk reduced across its
    threads with warp shuffles (so `threads` is a power of two up to 32 or a multiple
    of 32) and the chunks' results combined atomically."""
    a = tex.placeholder((rows, cols), name="a")
    k = tex.reduce_axis((0, cols), name="k")
    fn = {"sum": tex.sum, "max": tex.max, "min": tex.min}[reducer]
    out = tex.compute((rows,), lambda i: fn(a[i, k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    steps, lanes = s[out].split(k, factor=threads)
    _bind(s[out], out.op.axis[0], "blockIdx.x")
    _bind(s[out], lanes, "threadIdx.x")
    per_block = cols
    if strategy == "atomic":
        chunks = max(1, min(64, cols // (4 * threads)))
        chunk, _ = s[out].split(steps, nparts=chunks)
        _bind(s[out], chunk, "blockIdx.y")
        s[out].reduce_strategy(chunk, "atomic")
        s[out].reduce_strategy(lanes, "warp")
        per_block = -(-cols // chunks)
    else:
        s[out].reduce_strategy(lanes, strategy)
    numpy_fn = {"sum": np.sum, "max": np.max, "min": np.min}[reducer]
    return GpuCase(f"row_{reducer}_{strategy}", s, [a, out],
                   lambda x: numpy_fn(x.astype("float64"), axis=1), [(rows, cols)],
                   block_work=_reduction_work(per_block))


def _reduction_work(elements: int, results: int = 1, size: int = 4):
    """(flops, bytes) of a block reducing `elements` of `size` bytes into `results` values."""
    return elements, size * (elements + results)


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
                   lambda x: (x.argmax(axis=1), x.max(axis=1)), [(rows, cols)],
                   block_work=_reduction_work(cols, results=2))


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
                   lambda x: x.astype("float64").sum(axis=1), [(rows, cols)],
                   block_work=_reduction_work(cols))


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
                   [(rows, cols)], block_work=_reduction_work(rows * threads_x, threads_x))


def full_sum(n: int, strategy: str, threads: int = 256, blocks: int = 64) -> GpuCase:
    """The sum of n elements: with "atomic", `blocks` blocks each reduce a part across
    their threads (warp shuffles) and add it to the result atomically; otherwise
    one block of `threads` threads combined with `strategy`."""
    a = tex.placeholder((n,), name="a")
    k = tex.reduce_axis((0, n), name="k")
    out = tex.compute((1,), lambda _: tex.sum(a[k], axis=k), name="out")
    s = tex.create_schedule(out.op)
    elements = n
    if strategy == "atomic":
        elements = -(-n // blocks)
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
                   lambda x: np.array([x.astype("float64").sum()]), [(n,)],
                   block_work=_reduction_work(elements))


def softmax(rows: int, cols: int, threads: int = 256) -> GpuCase:
    """Softmax over the last axis in one pass over memory, one block per row: each thread
    keeps its part of the row in registers (`_row_in_registers`: element t, t + threads,
    ... of the row), so the row is read once and written once; the max and the sum of
    exponentials are reduced across the block (warp shuffles), each exponential
    computed once and kept, and the output is each kept exponential times the
    reciprocal of the sum (one divide per thread). Up to 32 or so elements per thread
    (cols / threads) stay in registers."""
    a = tex.placeholder((rows, cols), name="a")
    x = _row_view(a, threads, tex.min_value("float32"), "x")
    row_max = _row_reduction(x, lambda v, axes: tex.max(v, axis=axes), "row_max")
    e = tex.compute(x.shape, lambda i, o, t: tex.exp(x[i, o, t] - row_max[i]), name="e")
    total = _row_reduction(e, lambda v, axes: tex.sum(v, axis=axes), "total")
    scale = tex.compute((rows,), lambda i: tex.const(1.0) / total[i], name="scale")
    out = tex.compute((rows, cols), lambda i, j: e[i, j // threads, j % threads] * scale[i],
                      name="out")
    s = tex.create_schedule(out.op)
    row = _row_in_registers(s, out, threads, [x, e], [row_max, total], [scale])

    def reference(v):
        v = v.astype("float64")
        exp = np.exp(v - v.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    return GpuCase("softmax", s, [a, out], reference, [(rows, cols)],
                   block_work=(5 * row, 8 * row))


def layernorm(rows: int, cols: int, threads: int = 256, eps: float = 1e-5) -> GpuCase:
    """(a - mean) / sqrt(variance + eps) * gamma + beta over the last axis, in one pass
    over memory as `softmax`: each thread keeps its part of the row in registers,
    the sum and the sum of squares are reduced together across the block (a tuple
    reducer, warp shuffles), then each thread normalises its elements with the row's
    mean and 1 / sqrt(variance + eps) (computed once per thread)."""
    a = tex.placeholder((rows, cols), name="a")
    gamma = tex.placeholder((cols,), name="gamma")
    beta = tex.placeholder((cols,), name="beta")
    x = _row_view(a, threads, tex.const(0.0), "x")
    moments = tex.comm_reducer(lambda p, q: (p[0] + q[0], p[1] + q[1]),
                               lambda s, q: (tex.const(0.0, s), tex.const(0.0, q)),
                               name="moments")
    total, squares = _row_reduction(
        x, lambda v, axes: moments((v, v * v), axis=axes), "moments")
    mean = tex.compute((rows,), lambda i: total[i] * (1.0 / cols), name="mean")
    scale = tex.compute((rows,), lambda i: tex.rsqrt(
        squares[i] * (1.0 / cols) - mean[i] * mean[i] + eps), name="scale")
    out = tex.compute((rows, cols), lambda i, j: (x[i, j // threads, j % threads] - mean[i])
                      * scale[i] * gamma[j] + beta[j], name="out")
    s = tex.create_schedule(out.op)
    row = _row_in_registers(s, out, threads, [x], [total], [mean, scale])

    def reference(v, g, b):
        v = v.astype("float64")
        centred = v - v.mean(axis=1, keepdims=True)
        return centred / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + eps) * g + b
    return GpuCase("layernorm", s, [a, gamma, beta, out], reference,
                   [(rows, cols), (cols,), (cols,)], block_work=(7 * row, 16 * row))


def _row_view(a, threads: int, fill, name: str):
    """Row-major `a` (rows x cols) seen as rows x steps x threads: [i, o, t] is
    a[i, o * threads + t], or `fill` past the end of the row."""
    rows, cols = (int(d.value) for d in a.shape)
    steps = -(-cols // threads)
    return tex.compute((rows, steps, threads), lambda i, o, t: tex.if_then_else(
        o * threads + t < cols, a[i, o * threads + t], fill), name=name)


def _row_reduction(view, reduce, name: str):
    """reduce(view[i, o, t], [o, t]) per row i of a `_row_view`."""
    rows, steps, threads = (int(d.value) for d in view.shape)
    o = tex.reduce_axis((0, steps), name=f"{name}_o")
    t = tex.reduce_axis((0, threads), name=f"{name}_t")
    return tex.compute((rows,), lambda i: reduce(view[i, o, t], [o, t]), name=name)


def _row_in_registers(s, out, threads: int, views, reductions, per_row) -> int:
    """Schedule a row-wise computation one row per block: `out`'s columns and every
    `_row_view`-shaped stage of `views` (kept in registers, "local") over `threads`
    threads, a thread's elements in an unrolled loop; each of `reductions` across the
    threads (warp shuffles); each of `per_row` (a value per row) once per thread.
    Returns the elements per block."""
    row, col = s[out].op.axis
    _bind(s[out], row, "blockIdx.x")
    steps, lane = s[out].split(col, factor=threads)
    s[out].reorder(lane, steps)
    _bind(s[out], lane, "threadIdx.x")
    s[out].unroll(steps)
    for view in views:
        s[view].set_scope("local")
        s[view].compute_at(s[out], row)
        _, step, thread = s[view].op.axis
        s[view].reorder(thread, step)
        _bind(s[view], thread, "threadIdx.x")
        s[view].unroll(step)
    for reduction in reductions:
        s[reduction].compute_at(s[out], row)
        step, thread = s[reduction].op.reduce_axis
        s[reduction].reorder(thread, step)
        _bind(s[reduction], thread, "threadIdx.x")
        s[reduction].unroll(step)
        s[reduction].reduce_strategy(thread, "warp")
    for value in per_row:
        s[value].set_scope("local")
        s[value].compute_at(s[out], row)
    return int(out.shape[1].value)


def all_cases() -> list[GpuCase]:
    """Every schedule at small, awkward sizes (none divides its split factors)."""
    cases = [elementwise(1000), elementwise(1000, threads=64, vector=4), matmul(100, 90, 70),
             matmul(100, 90, 70, double_buffer=True), matmul(100, 90, 70, pipelined=True),
             conv2d(1, 5, 6, 13), column_sum(77, 70),
             softmax(9, 1000), softmax(5, 300, threads=128), layernorm(9, 1000),
             layernorm(4, 77, threads=32), full_sum(10_000, "shared"), full_sum(10_000, "warp"),
             full_sum(10_000, "atomic"), matmul_mma(150, 140, 70),
             matmul_mma(150, 140, 70, "bfloat16")]
    for strategy in ("shared", "warp"):
        cases.append(row_reduce(13, 1000, strategy))
    cases.append(row_reduce(13, 1000, "atomic", threads=64))      # 3 chunks of 334
    cases.append(row_reduce(13, 700, "shared", threads=100))
    cases.append(row_reduce(13, 1000, "warp", threads=16, reducer="max"))
    cases.append(row_reduce(13, 1000, "atomic", threads=32, reducer="min"))  # 7 chunks
    cases.append(matmul_wmma(48, 32, 64))
    for strategy in ("shared", "warp"):
        cases.append(row_sum_rfactor(13, 1000, strategy))
        cases.append(row_argmax(13, 300, strategy))
    return cases
