"""Halide (Python bindings, JIT): hand-written schedules for every case.

Each factory defines the algorithm on ``ImageParam``s, schedules it, and
JIT-compiles it with ``Pipeline.compile_to_callable`` for the host target;
that compile, plus the first call, is ``build_seconds``. The runner calls
the compiled pipeline on ``hl.Buffer`` views of the NumPy inputs and
output, made once, so nothing is copied or allocated per call.

Halide's dimensions run the other way from NumPy's: an array of shape
``(rows, cols)`` is ``A[col, row]`` here, dimension 0 being the innermost
(unit-stride) axis.

Run ``python -m bench.systems.halide_impl`` for a quick check.
"""
from __future__ import annotations

import time

import halide as hl
import numpy as np

from bench.cases import LAYERNORM_EPS, Runner, aligned_empty

NAME = "halide"

F32 = hl.Float(32)
VEC = 16  # float32 lanes of one zmm register


def _runner(outputs, params, inputs, out, notes):
    """Compile the pipeline of ``outputs`` over ``params``, bind the arrays, time the build.

    ``params`` are the ``ImageParam``s in the order of ``inputs``; ``out``
    is the preallocated NumPy output.
    """
    start = time.perf_counter()
    target = hl.get_host_target()
    compiled = hl.Pipeline(outputs).compile_to_callable(params, target)
    buffers = [hl.Buffer(x) for x in inputs] + [hl.Buffer(out)]
    compiled(*buffers)
    build = time.perf_counter() - start
    arrays = list(inputs)  # keeps the arrays behind the buffers alive

    def run():
        compiled(*buffers)

    run.arrays = arrays
    return Runner(run=run, result=lambda: out, build_seconds=build, notes=notes)


def _vector_sum(name, term, extent, lanes=4 * VEC, combine=None, init=0.0):
    """``f[y] = reduce over x < extent of term(x, y)``, vectorised by ``rfactor``.

    The reduction is split into ``lanes`` interleaved partial results that
    are computed as vectors (``lanes / 16`` independent accumulators), then
    folded. ``combine`` is the binary operator (sum by default). Returns
    ``f`` and the rfactor'd intermediate, to be placed by the caller.
    """
    combine = combine or (lambda a, b: a + b)
    y, u = hl.Var("y"), hl.Var("u")
    r = hl.RDom([hl.Range(0, extent)], name + "_r")
    f = hl.Func(name)
    f[y] = hl.f32(init)
    f[y] = combine(f[y], term(r.x, y))
    ro, ri = hl.RVar(name + "_ro"), hl.RVar(name + "_ri")
    f.update().split(r.x, ro, ri, lanes)
    partial = f.update().rfactor(ri, u)
    partial.vectorize(u, VEC).unroll(u)
    partial.update().vectorize(u, VEC).unroll(u)
    return f, partial


# --- matrix products -----------------------------------------------------------------------

#: Tile parameters per case: output tile TXB x TYB (columns x rows), k block KC,
#: register tile RX x RY (RX / 16 vectors by RY rows), and whether A's block is
#: packed too (worth it when several column tiles reuse it).
MATMUL_PARAMS = {
    "matmul1024": dict(TXB=256, TYB=128, KC=128, RX=32, RY=8, PACK_A=True),
    "matmul512": dict(TXB=256, TYB=128, KC=128, RX=32, RY=8, PACK_A=True),
    "matmul_skinny": dict(TXB=128, TYB=128, KC=256, RX=64, RY=4, PACK_A=False),
    "bmm": dict(TXB=128, TYB=128, KC=128, RX=64, RY=4, PACK_A=False),
}


def matmul_pipeline(shape_a, shape_b, TXB, TYB, KC, RX, RY, PACK_A):
    """C = A @ B for 2-D, or batched 3-D, float32 inputs.

    The output is cut into TXB x TYB tiles, run in parallel over the fused
    tile index (and batch). Each tile accumulates into ``prod`` over k
    blocks of KC. Per k block, ``B.in_()`` packs each RX-wide panel of B
    contiguously (RX x KC, L1-resident) and every RY-row strip of the tile
    reuses it; ``partial`` computes one RX x RY register tile over the
    block, fully unrolled so its accumulators stay in registers. With
    PACK_A, ``A.in_()`` also copies the tile's TYB x KC block of A.
    Tile sizes are clamped to the matrix, so they must divide it.
    """
    dims = len(shape_a)
    m, k = shape_a[-2:]
    n = shape_b[-1]
    TXB, TYB, KC = min(TXB, n), min(TYB, m), min(KC, k)
    RX, RY = min(RX, TXB), min(RY, TYB)
    assert n % TXB == 0 and m % TYB == 0 and k % KC == 0
    assert TXB % RX == 0 and TYB % RY == 0 and RX % VEC == 0

    A = hl.ImageParam(F32, dims, "A")
    B = hl.ImageParam(F32, dims, "B")
    x, y, ko, t = hl.Var("x"), hl.Var("y"), hl.Var("ko"), hl.Var("t")
    batch = [hl.Var("b")] if dims == 3 else []

    packed = B.in_()
    packed_a = A.in_() if PACK_A else A
    ri = hl.RDom([hl.Range(0, KC)], "ri")
    partial = hl.Func("partial")
    partial[[x, y, ko] + batch] = hl.f32(0)
    kk = ko * KC + ri.x
    partial[[x, y, ko] + batch] = (partial[[x, y, ko] + batch]
                                   + packed_a[[kk, y] + batch] * packed[[x, kk] + batch])
    rk = hl.RDom([hl.Range(0, k // KC)], "rk")
    prod = hl.Func("prod")
    prod[[x, y] + batch] = hl.f32(0)
    prod[[x, y] + batch] = prod[[x, y] + batch] + partial[[x, y, rk.x] + batch]
    out = hl.Func("out")
    out[[x, y] + batch] = prod[[x, y] + batch]

    # Tiles of the output, in parallel.
    xo, yo, xi, yi = hl.Var("xo"), hl.Var("yo"), hl.Var("xi"), hl.Var("yi")
    out.tile(x, y, xo, yo, xi, yi, TXB, TYB).fuse(xo, yo, t)
    if batch:
        out.fuse(t, batch[0], t)
    out.parallel(t).vectorize(xi, VEC)
    # The tile's accumulator, summed over k blocks of register tiles.
    xt, yt, xv, yv = hl.Var("xt"), hl.Var("yt"), hl.Var("xv"), hl.Var("yv")
    prod.compute_at(out, t).vectorize(x, VEC)
    (prod.update().split(x, xt, xv, RX).split(y, yt, yv, RY)
     .reorder(xv, yv, yt, xt, rk.x).vectorize(xv, VEC))
    # The operands' blocks for this tile and k block, packed.
    if PACK_A:
        packed_a.compute_at(prod, rk.x).vectorize(packed_a.args()[0], VEC)
    packed.compute_at(prod, xt).vectorize(packed.args()[0], VEC)
    # One register tile over one k block.
    xw = hl.Var("xw")
    partial.compute_at(prod, yt)
    partial.split(x, x, xw, VEC).vectorize(xw).unroll(x).unroll(y)
    (partial.update().split(x, x, xw, VEC).reorder(xw, x, y, ri.x)
     .vectorize(xw).unroll(x).unroll(y))
    return out, [A, B]


def matmul_factory(case_name):
    params = MATMUL_PARAMS[case_name]

    def factory(inputs):
        a, b = inputs
        out = aligned_empty(a.shape[:-1] + b.shape[-1:], a.dtype)
        func, args = matmul_pipeline(a.shape, b.shape, **params)
        notes = " ".join(f"{k}={v}" for k, v in params.items())
        return _runner(func, args, inputs, out, notes)

    factory.__name__ = case_name
    return factory


# --- conv2d --------------------------------------------------------------------------------

def conv2d_pipeline(data_shape, weight_shape):
    """3x3, pad 1, stride 1 NCHW convolution, direct.

    The zero padding is materialised (``pad``, per image, in parallel over
    channels). The output is computed in register tiles of 16 columns
    (one vector) x 2 rows x 8 output channels, each summing over input
    channel and the 9 taps, the taps unrolled.
    """
    n, c, h, w = data_shape
    kout = weight_shape[0]
    assert kout % 8 == 0 and h % 2 == 0 and w >= VEC
    data = hl.ImageParam(F32, 4, "data")      # data[x, y, c, n]
    weight = hl.ImageParam(F32, 4, "weight")  # weight[dx, dy, c, k]
    x, y, ch, k, b = (hl.Var(v) for v in ("x", "y", "c", "k", "n"))

    clamped = hl.BoundaryConditions.constant_exterior(data, 0.0, [(0, w), (0, h)])
    pad = hl.Func("pad")
    pad[x, y, ch, b] = clamped[x, y, ch, b]
    r = hl.RDom([hl.Range(0, 3), hl.Range(0, 3), hl.Range(0, c)], "r")
    conv = hl.Func("conv")
    conv[x, y, k, b] = hl.f32(0)
    conv[x, y, k, b] = (conv[x, y, k, b]
                        + weight[r.x, r.y, r.z, k] * pad[x + r.x - 1, y + r.y - 1, r.z, b])
    out = hl.Func("out")
    out[x, y, k, b] = conv[x, y, k, b]

    xo, xi, yo, yi, ko, ki, t = (hl.Var(v) for v in ("xo", "xi", "yo", "yi", "ko", "ki", "t"))
    (out.split(x, xo, xi, VEC).split(y, yo, yi, 2).split(k, ko, ki, 8)
     .reorder(xi, ki, yi, xo, yo, ko, b).vectorize(xi).unroll(ki).unroll(yi)
     .fuse(yo, ko, t).parallel(t))
    conv.compute_at(out, xo).vectorize(x).unroll(y).unroll(k)
    (conv.update().reorder(x, k, y, r.x, r.y, r.z)
     .vectorize(x).unroll(k).unroll(y).unroll(r.x).unroll(r.y))
    pad.compute_at(out, b).split(x, xo, xi, VEC).vectorize(xi).parallel(ch)
    return out, [data, weight]


def conv2d(inputs):
    data, weight = inputs
    n, _, h, w = data.shape
    out = aligned_empty((n, weight.shape[0], h, w), data.dtype)
    func, args = conv2d_pipeline(data.shape, weight.shape)
    return _runner(func, args, inputs, out, "register tile 16w x 2h x 8k, padded copy")


# --- reductions ----------------------------------------------------------------------------

def rowsum(inputs):
    """Row sums, 64 rows per parallel task, each row an rfactor'd vector sum."""
    (a,) = inputs
    rows, cols = a.shape
    A = hl.ImageParam(F32, 2, "A")
    s, partial = _vector_sum("rowsum", lambda i, y: A[i, y], cols)
    y, yo = s.args()[0], hl.Var("yo")
    s.split(y, yo, y, 64).parallel(yo)
    s.update().split(y, yo, y, 64).parallel(yo)
    partial.compute_at(s, y)
    out = aligned_empty(rows, a.dtype)
    return _runner(s, [A], inputs, out, "rfactor 64 lanes, parallel rows")


FULLSUM_CHUNKS = 16


def fullsum(inputs):
    """Sum of all elements: 16 parallel row chunks, each an rfactor'd vector sum."""
    (a,) = inputs
    rows, cols = a.shape
    assert rows % FULLSUM_CHUNKS == 0
    A = hl.ImageParam(F32, 2, "A")
    x, u, v = hl.Var("x"), hl.Var("u"), hl.Var("v")
    r = hl.RDom([hl.Range(0, cols), hl.Range(0, rows)], "r")
    total = hl.Func("total")
    total[x] = hl.f32(0)
    total[x] = total[x] + A[r.x, r.y]
    rxo, rxi, ryo, ryi = (hl.RVar(v) for v in ("rxo", "rxi", "ryo", "ryi"))
    total.update().split(r.y, ryo, ryi, rows // FULLSUM_CHUNKS)
    chunk = total.update().rfactor(ryo, v)
    chunk.compute_root().update().parallel(v)
    chunk.update().split(r.x, rxo, rxi, 4 * VEC)
    lanes = chunk.update().rfactor(rxi, u)
    lanes.compute_at(chunk, v).vectorize(u, VEC).unroll(u)
    lanes.update().vectorize(u, VEC).unroll(u)
    out = aligned_empty(1, a.dtype)
    return _runner(total, [A], inputs, out, f"{FULLSUM_CHUNKS} chunks x 64 lanes")


def softmax(inputs):
    """Row-wise: rfactor'd max, fast_exp into a row buffer, rfactor'd sum, scale."""
    (x_in,) = inputs
    rows, cols = x_in.shape
    X = hl.ImageParam(F32, 2, "X")
    x, y, yo = hl.Var("x"), hl.Var("y"), hl.Var("yo")
    mx, mx_part = _vector_sum("mx", lambda i, row: X[i, row], cols,
                              combine=hl.max, init=-np.inf)
    e = hl.Func("e")
    e[x, y] = hl.fast_exp(X[x, y] - mx[y])
    s, s_part = _vector_sum("s", lambda i, row: e[i, row], cols)
    out = hl.Func("out")
    out[x, y] = e[x, y] * (1.0 / s[y])
    out.split(y, yo, y, 16).parallel(yo).vectorize(x, VEC)
    for f in (mx, s, e):
        f.compute_at(out, y)
    mx_part.compute_at(mx, mx.args()[0])
    s_part.compute_at(s, s.args()[0])
    e.vectorize(x, VEC)
    y_out = aligned_empty(x_in.shape, x_in.dtype)
    return _runner(out, [X], inputs, y_out, "fast_exp, rfactor 64 lanes, 16 rows a task")


def fused_ew(inputs):
    """max(a*b + c, 0): parallel blocks of 64K elements, vectors of 16."""
    a = inputs[0]
    A, B, C = (hl.ImageParam(F32, 1, v) for v in "ABC")
    x, xo = hl.Var("x"), hl.Var("xo")
    out = hl.Func("out")
    out[x] = hl.max(A[x] * B[x] + C[x], 0.0)
    out.split(x, xo, x, 1 << 16).parallel(xo).vectorize(x, VEC)
    res = aligned_empty(a.shape, a.dtype)
    return _runner(out, [A, B, C], inputs, res, "parallel 64K blocks, vector 16")


def layernorm(inputs):
    """Row-wise, fused: rfactor'd mean, rfactor'd variance (two-pass), one output pass."""
    x_in = inputs[0]
    rows, cols = x_in.shape
    X = hl.ImageParam(F32, 2, "X")
    gamma = hl.ImageParam(F32, 1, "gamma")
    beta = hl.ImageParam(F32, 1, "beta")
    x, y, yo = hl.Var("x"), hl.Var("y"), hl.Var("yo")
    total, total_part = _vector_sum("total", lambda i, row: X[i, row], cols)
    mean = hl.Func("mean")
    mean[y] = total[y] * (1.0 / cols)
    d = hl.Func("d")
    d[x, y] = X[x, y] - mean[y]
    sq, sq_part = _vector_sum("sq", lambda i, row: d[i, row] * d[i, row], cols)
    scale = hl.Func("scale")
    scale[y] = 1.0 / hl.sqrt(sq[y] * (1.0 / cols) + hl.f32(LAYERNORM_EPS))
    out = hl.Func("out")
    out[x, y] = d[x, y] * scale[y] * gamma[x] + beta[x]
    out.split(y, yo, y, 16).parallel(yo).vectorize(x, VEC)
    for f in (total, mean, sq, scale):
        f.compute_at(out, y)
    total_part.compute_at(total, total.args()[0])
    sq_part.compute_at(sq, sq.args()[0])
    y_out = aligned_empty(x_in.shape, x_in.dtype)
    return _runner(out, [X, gamma, beta], inputs, y_out,
                   "fused per row, rfactor 64 lanes, 16 rows a task")


FACTORIES = {
    "matmul1024": matmul_factory("matmul1024"),
    "matmul512": matmul_factory("matmul512"),
    "matmul_skinny": matmul_factory("matmul_skinny"),
    "bmm": matmul_factory("bmm"),
    "conv2d": conv2d,
    "rowsum": rowsum,
    "fullsum": fullsum,
    "softmax": softmax,
    "fused_ew": fused_ew,
    "layernorm": layernorm,
}

if __name__ == "__main__":
    import sys

    from bench.systems.numpy_impl import quick_check

    names = sys.argv[1:] or list(FACTORIES)
    quick_check(NAME, {n: FACTORIES[n] for n in names})
