"""Hand-written schedules that the benchmarks time against NumPy and the peers.

Each function declares its operation for the shape it is given, schedules it,
and returns `(schedule, args)`, ready for `tex.build(schedule, args)`: the
inputs first, the output last. tests/test_bench_schedules.py builds every one
at small, awkward sizes and compares it with NumPy.
"""
from __future__ import annotations

import tex
from tex.dtype import as_dtype
from tex.target import Target, as_target

FLOAT32 = as_dtype("float32")


# --- machine facts -> schedule parameters --------------------------------------------------
# Every tile, width and chunk below is a function of a `tex.Target` (default: this host,
# "llvm"), so that a schedule tuned on one CPU stays sensible on the next (STYLE.md).

def _target(target) -> Target:
    return as_target("llvm" if target is None else target)


def vector_lanes(target=None) -> int:
    """Lanes of elementwise loops: floats in one vector register. Wider vectors measured
    slower on streaming loops (24 against 31 GB/s on the fused elementwise case, AVX-512)."""
    return _target(target).vector_lanes(FLOAT32)


def reduce_lanes(target=None) -> int:
    """Lanes of the vector accumulators of the row reductions: four vector registers, so
    that four additions (latency 3-4 cycles, two issued a cycle) are in flight."""
    return 4 * vector_lanes(target)


def matmul_config(target=None) -> dict:
    """The matmul register tile for `target`: nr = registers / 8 vectors of B (4 of the 32
    AVX-512 / NEON registers, 2 of AVX2's 16), mr = the rows of accumulators that fit in
    the rest, one register kept for A's broadcast: mr * nv + nv + 1 <= registers. AVX-512:
    6 x 64 (24 accumulators), the best of `python -m bench.matmul --sweep` on the
    development machine (bench/results/matmul.txt); AVX2: 6 x 16, BLIS's Haswell sgemm
    tile (built for AVX2 on the Zen 4 host, 512^3: 187 GFLOP/s against 58 with 6 x 64,
    which needs 48 registers). unroll_k 2 was measured best on AVX-512 (see `matmul`)."""
    t = _target(target)
    vectors = max(1, t.vector_registers // 8)
    mr = (t.vector_registers - vectors - 1) // vectors
    return {"mr": mr, "nr": vectors * vector_lanes(t), "kc": None, "pack_a": False,
            "unroll_k": 2}


def conv_tile(target=None) -> tuple[int, int]:
    """(kb, wb) of conv2d's register tile: kb = one vector of output channels, wb = pixels,
    one accumulator each: as many as the registers hold beside a weight vector and a
    broadcast, at most 14 (which divides the 56-pixel rows). On the AMD EPYC (Zen 4) host,
    1x64x56x56: AVX-512 16 x 14 109 GFLOP/s against 16 x 28 103, 16 x 8 97, 32 x 14 79;
    built for AVX2 (16 registers), 8 x 14 75-98 against 8 x 7 79, 8 x 6 71, 16 x 7 52."""
    t = _target(target)
    return vector_lanes(t), max(1, min(14, t.vector_registers - 2))


def row_partial_lanes(target=None) -> int:
    """Lanes of the vector partials of a reduction fused into a row-wise schedule (softmax,
    layernorm): one vector register. The row is in L1 by then, and one chain of vector
    additions (16 floats per 3-4 cycles) outruns the memory a core streams the row from.
    Wider partials make the loop over a row short (16 steps of 4 AVX-512 vectors at 1024
    columns), LLVM unrolls it fully, keeps the whole row in registers between the passes
    and spills (86 stack accesses in layernorm's AVX-512 kernel, 5 with one vector). On the
    AMD EPYC (Zen 4) host, 1 thread, layernorm 4096 x 1024: 27 GB/s with 4 vectors, 33
    with one (no prefetch)."""
    return vector_lanes(target)


def row_prefetch(target=None) -> int:
    """Rows ahead that a row-wise schedule prefetches its input (0: none), one prefetch per
    cache line at the top of a row. Intel's L2 streamer stops at each 4 KB page, which a
    row of 1024 floats is, so on the development Xeon the prefetch of the next row paid
    (softmax 39 -> 43 GB/s, layernorm 51 -> 55 on 4096 x 1024). On AMD Zen (`znver*`) the
    hardware prefetchers keep up and the 65 prefetches per row only cost: on the EPYC Zen 4
    host layernorm ran 49 GB/s without, 18 with; softmax 16 against 15."""
    return 0 if (_target(target).cpu or "").startswith("znver") else 1


def elementwise_chunk(target=None, arrays: int = 4) -> int:
    """Floats per parallel task of a streaming loop over `arrays` arrays: the task's share
    of every array fills about the L2 of a core (1 MiB: 64 Ki floats by 4 arrays), large
    enough that a task's start is noise, small enough to balance the cores."""
    l2 = _target(target).cache_bytes[1]
    return max(1024, 1 << (l2 // (4 * arrays)).bit_length() - 1)


#: The matmul configuration of this host (`matmul_config()`), for the scripts that time it.
BEST_MATMUL = matmul_config()

ZERO = tex.const(0.0, "float32")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --- matmul -------------------------------------------------------------------------------

def _pack_b(B, K: int, N: int, nr: int, batch: int | None):
    """B in panels of nr columns: packed[p, k, jj] = B[k, p * nr + jj] (zero past N).

    With a batch, the batch index goes first: packed[b, p, k, jj] = B[b, k, p * nr + jj].
    """
    panels = _ceil_div(N, nr)

    def value(read, p, k, jj):
        if N % nr == 0:
            return read(k, p * nr + jj)
        return tex.if_then_else(p * nr + jj < N, read(k, p * nr + jj), ZERO)

    if batch is None:
        return tex.compute((panels, K, nr), lambda p, k, jj: value(lambda *ix: B[ix], p, k, jj),
                           name="B_packed")
    return tex.compute((batch, panels, K, nr),
                       lambda b, p, k, jj: value(lambda *ix: B[(b,) + ix], p, k, jj),
                       name="B_packed")


def _pack_a(A, M: int, K: int, mr: int):
    """A in panels of mr rows: A_packed[p, k, ii] = A[p * mr + ii, k] (zero past M)."""
    panels = _ceil_div(M, mr)
    if M % mr == 0:
        return tex.compute((panels, K, mr), lambda p, k, ii: A[p * mr + ii, k], name="A_packed")
    return tex.compute(
        (panels, K, mr),
        lambda p, k, ii: tex.if_then_else(p * mr + ii < M, A[p * mr + ii, k], ZERO),
        name="A_packed")


def matmul(M: int, N: int, K: int, *, mr: int | None = None, nr: int | None = None,
           kc: int | None = None, pack_a: bool = False, unroll_k: int | None = None,
           parallel: bool = True, batch: int | None = None, target=None):
    """C = A @ B (float32) with an mr x nr tile of C accumulated in registers.

    B is packed into panels nr columns wide, so that the inner loop reads one
    contiguous row of a panel per step of k; with `pack_a`, A is packed into
    panels mr rows tall, so that the mr broadcasts of a step read consecutive
    floats. The loops over column panels go outermost, so one panel of B
    stays in a core's L2 while the rows of A pass by; they are fused with the
    loop over row tiles (and the batch loop, with `batch`) into the loop that
    runs in parallel, so that a narrow B (one panel) still keeps both cores busy.

    Without `kc`, the tile is a write cache (`cache_write` + `compute_at`)
    reduced over all of k and copied to C once, its k loop unrolled by
    `unroll_k` (at 1024^3, in one interleaved run of 15 samples: 307 GFLOP/s
    without, 335 by 2, 323 by 4; by 2 also leads at 512^3 and on the batch,
    while on the skinny shape 4 was 2% ahead, 329 against 323). With `kc`, k is split
    by kc and its outer loop goes outside the loop over row tiles (the k-blocked
    "GotoBLAS" order): C itself accumulates, one kc-deep slice of A at a time.
    With `batch`, A, B and C carry a leading batch axis of that extent.
    mr, nr and unroll_k left out come from `matmul_config(target)`.
    Returns (schedule, [A, B, C]).
    """
    config = matmul_config(target)
    mr = config["mr"] if mr is None else mr
    nr = config["nr"] if nr is None else nr
    unroll_k = config["unroll_k"] if unroll_k is None else unroll_k
    lead = () if batch is None else (batch,)
    A = tex.placeholder(lead + (M, K), name="A")
    B = tex.placeholder(lead + (K, N), name="B")
    B_packed = _pack_b(B, K, N, nr, batch)
    k = tex.reduce_axis((0, K), name="k")
    if pack_a and batch is not None:
        raise ValueError("pack_a is not offered with a batch")
    A_packed = _pack_a(A, M, K, mr) if pack_a else None

    def product(b, i, j):
        a = A_packed[i // mr, k, i % mr] if pack_a else A[b + (i, k)]
        return a * B_packed[b + (j // nr, k, j % nr)]

    if batch is None:
        C = tex.compute((M, N), lambda i, j: tex.sum(product((), i, j), axis=k), name="C")
    else:
        C = tex.compute((batch, M, N), lambda b, i, j: tex.sum(product((b,), i, j), axis=k),
                        name="C")
    s = tex.create_schedule(C.op)
    outer = list(C.op.axis[:-2])
    if kc is None:
        tile_loops = _register_tile_cached(s, C, mr, nr, outer, parallel, unroll_k)
    else:
        tile_loops = _register_tile_k_blocked(s, C, mr, nr, kc, outer)
    _schedule_pack(s, B_packed, parallel, "vectorize")
    if pack_a:  # a transpose of mr-row strips: unroll the short lane loop, no gathers
        _schedule_pack(s, A_packed, parallel, "unroll")
    if parallel and kc is not None:
        s[C].parallel(tile_loops)
    return s, [A, B, C]


def _register_tile_cached(s, C, mr: int, nr: int, outer: list, parallel: bool, unroll_k: int):
    """An mr x nr write cache computed at each tile of C, its k loop unrolled by
    unroll_k; returns the fused tile loop."""
    C_local = s.cache_write(C, "local")
    i, j = C.op.axis[-2:]
    j_outer, j_inner = s[C].split(j, factor=nr)
    i_outer, i_inner = s[C].split(i, factor=mr)
    s[C].reorder(*outer, j_outer, i_outer, i_inner, j_inner)
    tiles = s[C].fuse(*outer, j_outer, i_outer)
    s[C].unroll(i_inner)
    s[C].vectorize(j_inner)
    if parallel:
        s[C].parallel(tiles)
    s[C_local].compute_at(s[C], tiles)
    i_c, j_c = C_local.op.axis[-2:]
    (k_c,) = s[C_local].op.reduce_axis
    s[C_local].reorder(k_c, i_c, j_c)
    if unroll_k > 1:
        _, k_unrolled = s[C_local].split(k_c, factor=unroll_k)
        s[C_local].unroll(k_unrolled)
    s[C_local].unroll(i_c)
    s[C_local].vectorize(j_c)
    return tiles


def _register_tile_k_blocked(s, C, mr: int, nr: int, kc: int, outer: list):
    """C accumulated in place, k split by kc outside the row tiles; returns the panel loop."""
    i, j = C.op.axis[-2:]
    (k,) = C.op.reduce_axis
    j_outer, j_inner = s[C].split(j, factor=nr)
    i_outer, i_inner = s[C].split(i, factor=mr)
    k_outer, k_inner = s[C].split(k, factor=kc)
    s[C].reorder(*outer, j_outer, k_outer, i_outer, k_inner, i_inner, j_inner)
    s[C].unroll(i_inner)
    s[C].vectorize(j_inner)
    return s[C].fuse(*outer, j_outer)


def _schedule_pack(s, packed, parallel: bool, lanes: str):
    *panels, _, lane = packed.op.axis
    getattr(s[packed], lanes)(lane)
    if parallel:
        s[packed].parallel(s[packed].fuse(*panels))


# --- conv2d -------------------------------------------------------------------------------

def conv2d(N: int, C: int, H: int, W: int, K: int, *, kb: int | None = None,
           wb: int | None = None, target=None):
    """NCHW convolution with K 3x3 filters, stride 1, padding 1 (float32).

    The kernel pads the input into a buffer of its own, packs the weights so
    that kb output channels of one (c, dy, dx) are contiguous, and computes
    the output in blocks of kb channels, channel-innermost (`conv_blocked`),
    as kb x wb register tiles: per step of the reduction, kb/16 vector loads
    of weights and wb broadcasts of one input pixel feed kb*wb/16 vector FMAs.
    The NCHW output is written row by row, in parallel over (n, channel
    block, y): each row's block of kb channels is computed into a small
    buffer inside the loop, then read back transposed (a gather per vector
    of x), so the blocked result never goes through memory as a whole.
    kb and wb left out come from `conv_tile(target)`.
    Returns (schedule, [data, weight, out]).
    """
    kb = conv_tile(target)[0] if kb is None else kb
    wb = conv_tile(target)[1] if wb is None else wb
    data = tex.placeholder((N, C, H, W), name="data")
    weight = tex.placeholder((K, C, 3, 3), name="weight")
    padded = tex.compute(
        (N, C, H + 2, W + 2),
        lambda n, c, y, x: tex.if_then_else(tex.all(y >= 1, y <= H, x >= 1, x <= W),
                                            data[n, c, y - 1, x - 1], ZERO),
        name="padded")
    blocks = _ceil_div(K, kb)
    w_packed = tex.compute(
        (blocks, C, 3, 3, kb),
        lambda ko, c, dy, dx, ki: tex.if_then_else(ko * kb + ki < K,
                                                   weight[ko * kb + ki, c, dy, dx], ZERO)
        if K % kb else weight[ko * kb + ki, c, dy, dx],
        name="w_packed")
    rc = tex.reduce_axis((0, C), name="rc")
    ry = tex.reduce_axis((0, 3), name="ry")
    rx = tex.reduce_axis((0, 3), name="rx")
    blocked = tex.compute(
        (N, blocks, H, W, kb),
        lambda n, ko, y, x, ki: tex.sum(
            padded[n, rc, y + ry, x + rx] * w_packed[ko, rc, ry, rx, ki], axis=[rc, ry, rx]),
        name="conv_blocked")
    out = tex.compute((N, K, H, W), lambda n, k, y, x: blocked[n, k // kb, y, x, k % kb],
                      name="conv")
    s = tex.create_schedule(out.op)

    s[padded].parallel(s[padded].fuse(*padded.op.axis[:2]))
    s[padded].vectorize(padded.op.axis[3])
    s[w_packed].parallel(s[w_packed].fuse(*w_packed.op.axis[:2]))
    s[w_packed].vectorize(w_packed.op.axis[4])

    local = s.cache_write(blocked, "local")
    n, k, y, x = out.op.axis
    k_block, k_inner = s[out].split(k, factor=kb)
    s[out].reorder(n, k_block, y, k_inner, x)
    rows = s[out].fuse(n, k_block, y)
    s[out].parallel(rows)
    s[out].vectorize(x)
    s[blocked].compute_at(s[out], rows)
    *_, x, ki = blocked.op.axis
    x_outer, x_inner = s[blocked].split(x, factor=wb)
    s[blocked].reorder(x_outer, x_inner, ki)
    s[blocked].unroll(x_inner)
    s[blocked].vectorize(ki)
    s[local].compute_at(s[blocked], x_outer)
    *_, x_local, ki_local = local.op.axis
    s[local].reorder(*local.op.reduce_axis, *local.op.axis)
    s[local].unroll(x_local)
    s[local].vectorize(ki_local)
    return s, [data, weight, out]


# --- reductions ---------------------------------------------------------------------------

def _vector_partials(s, R, at_stage, at_axis, lanes: int):
    """Reduce R's innermost reduction axis through `lanes` vector partial results.

    `rfactor` splits the axis into lanes partial reductions, vectorized
    across the lanes and computed at (at_stage, at_axis); R then combines
    the lanes, its loop over them vectorized too (a tree of halvings rather
    than a chain of `lanes` dependent additions). Returns the partial stage.
    """
    k = R.op.reduce_axis[-1]
    _, k_inner = s[R].split(k, factor=lanes)
    partial = s.rfactor(R, k_inner)
    lane, *rows = partial.op.axis
    s[partial].reorder(*rows, *partial.op.reduce_axis, lane)
    s[partial].vectorize(lane)
    s[partial].compute_at(at_stage, at_axis)
    s[R].vectorize(s[R].op.reduce_axis[-1])
    return partial


def row_sum(rows: int, cols: int, *, target=None):
    """B[i] = sum of A[i, :], rows in parallel. Returns (schedule, [A, B])."""
    A = tex.placeholder((rows, cols), name="A")
    k = tex.reduce_axis((0, cols), name="k")
    B = tex.compute((rows,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    (i,) = B.op.axis
    _vector_partials(s, B, s[B], i, reduce_lanes(target))
    s[B].parallel(i)
    return s, [A, B]


def full_sum(rows: int, cols: int, *, chunks: int | None = None, target=None):
    """B[0] = sum of all of A: chunks of rows summed in parallel, then the chunks' sums.

    The rows are split into `chunks` parts (rfactor), each summed by one task
    into vector partials; the last step adds the chunks. By default 8 chunks per
    core (16 on 2 cores), so that a core that is held up leaves little for the
    others to wait on. Returns (schedule, [A, B]).
    """
    if chunks is None:
        chunks = 8 * _target(target).num_cores
    A = tex.placeholder((rows, cols), name="A")
    r = tex.reduce_axis((0, rows), name="r")
    c = tex.reduce_axis((0, cols), name="c")
    B = tex.compute((1,), lambda _: tex.sum(A[r, c], axis=[r, c]), name="B")
    s = tex.create_schedule(B.op)
    r_chunk, _ = s[B].split(r, nparts=chunks)
    per_chunk = s.rfactor(B, r_chunk)
    chunk = per_chunk.op.axis[0]
    _vector_partials(s, per_chunk, s[per_chunk], chunk, reduce_lanes(target))
    s[per_chunk].parallel(chunk)
    return s, [A, B]


def softmax(rows: int, cols: int, *, lanes: int | None = None,
            partial_lanes: int | None = None, prefetch: int | None = None, target=None):
    """Y = softmax of X over its last axis, one row per task, in one pass over memory.

    The row's maximum, its exponentials (kept in a row buffer, so exp runs
    once per element) and their sum are all computed at the row, and the
    output multiplies by the sum's reciprocal. Returns (schedule, [X, Y]).
    """
    X = tex.placeholder((rows, cols), name="X")
    k1 = tex.reduce_axis((0, cols), name="k1")
    k2 = tex.reduce_axis((0, cols), name="k2")
    row_max = tex.compute((rows,), lambda i: tex.max(X[i, k1], axis=k1), name="row_max")
    E = tex.compute((rows, cols), lambda i, j: tex.exp(X[i, j] - row_max[i]), name="E")
    row_sum = tex.compute((rows,), lambda i: tex.sum(E[i, k2], axis=k2), name="row_sum")
    Y = tex.compute((rows, cols), lambda i, j: E[i, j] * (1.0 / row_sum[i]), name="Y")
    s = tex.create_schedule(Y.op)
    lanes = vector_lanes(target) if lanes is None else lanes
    _rows_in_parallel(s, X, Y, [row_max, row_sum], [E], lanes, partial_lanes, prefetch, target)
    _vectorize_split(s, E, E.op.axis[1], lanes)
    return s, [X, Y]


def layernorm(rows: int, cols: int, *, eps: float = 1e-5, lanes: int | None = None,
              partial_lanes: int | None = None, prefetch: int | None = None, target=None):
    """Y = (X - mean) / sqrt(var + eps) * gamma + beta over the last axis, one row per task.

    The mean and the variance (of the centred row, as NumPy computes it) are
    vector reductions at the row; the row is read from memory once and
    written once. Returns (schedule, [X, gamma, beta, Y]).
    """
    X = tex.placeholder((rows, cols), name="X")
    gamma = tex.placeholder((cols,), name="gamma")
    beta = tex.placeholder((cols,), name="beta")
    k1 = tex.reduce_axis((0, cols), name="k1")
    k2 = tex.reduce_axis((0, cols), name="k2")
    total = tex.compute((rows,), lambda i: tex.sum(X[i, k1], axis=k1), name="total")
    mean = tex.compute((rows,), lambda i: total[i] * (1.0 / cols), name="mean")
    squares = tex.compute((rows,), lambda i: tex.sum((X[i, k2] - mean[i]) * (X[i, k2] - mean[i]),
                                                     axis=k2), name="squares")
    scale = tex.compute((rows,), lambda i: tex.rsqrt(squares[i] * (1.0 / cols) + eps),
                        name="scale")
    Y = tex.compute((rows, cols),
                    lambda i, j: (X[i, j] - mean[i]) * scale[i] * gamma[j] + beta[j], name="Y")
    s = tex.create_schedule(Y.op)
    _rows_in_parallel(s, X, Y, [total, squares], [mean, scale], lanes, partial_lanes, prefetch,
                      target)
    return s, [X, gamma, beta, Y]


def _rows_in_parallel(s, X, Y, reductions, others, lanes, partial_lanes, prefetch, target):
    """Y's rows in parallel, its columns vectorized; the row `reductions` (vector
    partials, `row_partial_lanes` wide) and the `others` it reads are computed at Y's
    row. Where `row_prefetch` says so, each row starts by prefetching a later row of X:
    the row's passes run in L1 and leave the memory idle. Parameters left None come
    from `target`."""
    i, j = Y.op.axis
    s[Y].parallel(i)
    prefetch = row_prefetch(target) if prefetch is None else prefetch
    if prefetch:
        s[Y].prefetch(X, i, prefetch)
    _vectorize_split(s, Y, j, vector_lanes(target) if lanes is None else lanes)
    partial_lanes = row_partial_lanes(target) if partial_lanes is None else partial_lanes
    for R in reductions:
        _vector_partials(s, R, s[R], R.op.axis[0], partial_lanes)
        s[R].compute_at(s[Y], i)
    for T in others:
        s[T].compute_at(s[Y], i)


def _vectorize_split(s, T, axis, lanes: int):
    _, inner = s[T].split(axis, factor=lanes)
    s[T].vectorize(inner)


# --- elementwise --------------------------------------------------------------------------

def fused_elementwise(n: int, *, chunk: int | None = None, lanes: int | None = None,
                      target=None):
    """D = max(A * B + C, 0) over n floats: chunks in parallel, vectorized inside.

    chunk and lanes left out come from `elementwise_chunk` and `vector_lanes` of
    `target`. Returns (schedule, [A, B, C, D]).
    """
    chunk = elementwise_chunk(target) if chunk is None else chunk
    lanes = vector_lanes(target) if lanes is None else lanes
    A, B, C = (tex.placeholder((n,), name=name) for name in "ABC")
    D = tex.compute((n,), lambda i: tex.max(A[i] * B[i] + C[i], ZERO), name="D")
    s = tex.create_schedule(D.op)
    outer, inner = s[D].split(D.op.axis[0], factor=chunk)
    s[D].parallel(outer)
    _vectorize_split(s, D, inner, lanes)
    return s, [A, B, C, D]
