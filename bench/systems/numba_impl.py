"""Numba: straightforward loops, ``@njit(parallel=True, fastmath=True)``, ``prange`` outside.

No tiling or packing: the matrix products run i-k-j so the innermost loop
is unit-stride (and vectorised by LLVM), conv2d is a direct loop nest over
(output channel, row, input channel, tap, column), and the row-wise cases
parallelise over rows. ``fastmath`` lets LLVM reassociate the sums so the
reductions vectorise.

Each factory JIT-compiles a fresh dispatcher for its kernel and calls it
once on the real inputs; that first call's time is ``build_seconds``.

Run ``python -m bench.systems.numba_impl`` for a quick check.
"""
from __future__ import annotations

import time

import numba
import numpy as np

from bench.cases import LAYERNORM_EPS, Runner, aligned_empty

NAME = "numba"


def _jit(func):
    """A fresh parallel, fastmath dispatcher for ``func`` (compiled on its first call)."""
    return numba.njit(parallel=True, fastmath=True, cache=False)(func)


def _runner(kernel, args, out, notes=""):
    """JIT ``kernel``, time its first call on ``args`` as the build, return the Runner."""
    jitted = _jit(kernel)
    start = time.perf_counter()
    jitted(*args)
    build = time.perf_counter() - start
    return Runner(run=lambda: jitted(*args), result=lambda: out,
                  build_seconds=build, notes=notes)


# --- kernels (plain Python, compiled by _jit) ----------------------------------------------

def matmul_kernel(a, b, c):
    m, kk = a.shape
    n = b.shape[1]
    for i in numba.prange(m):
        for j in range(n):
            c[i, j] = 0.0
        for k in range(kk):
            aik = a[i, k]
            for j in range(n):
                c[i, j] += aik * b[k, j]


def bmm_kernel(a, b, c):
    batch, m, kk = a.shape
    n = b.shape[2]
    for bi in numba.prange(batch * m):
        p = bi // m
        i = bi % m
        for j in range(n):
            c[p, i, j] = 0.0
        for k in range(kk):
            aik = a[p, i, k]
            for j in range(n):
                c[p, i, j] += aik * b[p, k, j]


def conv2d_kernel(data, weight, out):
    """Direct 3x3, pad 1 convolution; the border taps are clipped, not padded."""
    n, ch, h, w = data.shape
    kout = weight.shape[0]
    for nk in numba.prange(n * kout):
        img = nk // kout
        k = nk % kout
        for y in range(h):
            for x in range(w):
                out[img, k, y, x] = 0.0
            for c in range(ch):
                for dy in range(3):
                    yy = y + dy - 1
                    if yy < 0 or yy >= h:
                        continue
                    for dx in range(3):
                        wv = weight[k, c, dy, dx]
                        lo = max(0, 1 - dx)
                        hi = min(w, w + 1 - dx)
                        for x in range(lo, hi):
                            out[img, k, y, x] += wv * data[img, c, yy, x + dx - 1]


def rowsum_kernel(a, out):
    for i in numba.prange(a.shape[0]):
        s = np.float32(0.0)
        for j in range(a.shape[1]):
            s += a[i, j]
        out[i] = s


def fullsum_kernel(a, out):
    """Per-row float32 sums, added up in a float64 prange reduction."""
    total = 0.0
    for i in numba.prange(a.shape[0]):
        s = np.float32(0.0)
        for j in range(a.shape[1]):
            s += a[i, j]
        total += s
    out[0] = total


def softmax_kernel(x, y):
    rows, cols = x.shape
    for i in numba.prange(rows):
        mx = x[i, 0]
        for j in range(cols):
            mx = max(mx, x[i, j])
        s = np.float32(0.0)
        for j in range(cols):
            e = np.exp(x[i, j] - mx)
            y[i, j] = e
            s += e
        r = np.float32(1.0) / s
        for j in range(cols):
            y[i, j] *= r


def fused_ew_kernel(a, b, c, out):
    for i in numba.prange(a.shape[0]):
        out[i] = max(a[i] * b[i] + c[i], np.float32(0.0))


def layernorm_kernel(x, gamma, beta, y):
    rows, cols = x.shape
    eps = np.float32(LAYERNORM_EPS)
    for i in numba.prange(rows):
        s = np.float32(0.0)
        for j in range(cols):
            s += x[i, j]
        mean = s / np.float32(cols)
        v = np.float32(0.0)
        for j in range(cols):
            d = x[i, j] - mean
            v += d * d
        r = np.float32(1.0) / np.sqrt(v / np.float32(cols) + eps)
        for j in range(cols):
            y[i, j] = (x[i, j] - mean) * r * gamma[j] + beta[j]


# --- factories -----------------------------------------------------------------------------

def matmul(inputs):
    a, b = inputs
    c = aligned_empty((a.shape[0], b.shape[1]), a.dtype)
    return _runner(matmul_kernel, (a, b, c), c, "i-k-j loops, prange over i")


def bmm(inputs):
    a, b = inputs
    c = aligned_empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    return _runner(bmm_kernel, (a, b, c), c, "i-k-j loops, prange over batch*i")


def conv2d(inputs):
    data, weight = inputs
    n, _, h, w = data.shape
    out = aligned_empty((n, weight.shape[0], h, w), data.dtype)
    return _runner(conv2d_kernel, (data, weight, out), out, "direct loops, prange over k")


def rowsum(inputs):
    (a,) = inputs
    out = aligned_empty(a.shape[0], a.dtype)
    return _runner(rowsum_kernel, (a, out), out)


def fullsum(inputs):
    (a,) = inputs
    out = aligned_empty(1, a.dtype)
    return _runner(fullsum_kernel, (a, out), out)


def softmax(inputs):
    (x,) = inputs
    y = aligned_empty(x.shape, x.dtype)
    return _runner(softmax_kernel, (x, y), y)


def fused_ew(inputs):
    a, b, c = inputs
    out = aligned_empty(a.shape, a.dtype)
    return _runner(fused_ew_kernel, (a, b, c, out), out)


def layernorm(inputs):
    x, gamma, beta = inputs
    y = aligned_empty(x.shape, x.dtype)
    return _runner(layernorm_kernel, (x, gamma, beta, y), y)


FACTORIES = {
    "matmul1024": matmul,
    "matmul512": matmul,
    "matmul_skinny": matmul,
    "bmm": bmm,
    "conv2d": conv2d,
    "rowsum": rowsum,
    "fullsum": fullsum,
    "softmax": softmax,
    "fused_ew": fused_ew,
    "layernorm": layernorm,
}

if __name__ == "__main__":
    from bench.systems.numpy_impl import quick_check

    quick_check(NAME, FACTORIES)
