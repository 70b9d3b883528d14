"""The best plain NumPy for every case, with outputs and temporaries allocated once.

Two systems live here:

* ``numpy`` (``FACTORIES``): every case, each NumPy call writing through
  ``out=`` into buffers the factory preallocated, so the timed call allocates
  nothing. Matrix products go to the BLAS behind ``np.matmul``; conv2d is
  im2col (padding and nine strided copies, all timed) followed by one GEMM.
* ``numpy-2thr`` (``FACTORIES2``): the memory-bound cases only, running the
  same code on the two halves of the rows (or elements) in two Python
  threads of a persistent pool. NumPy releases the GIL inside its loops, so
  the halves proceed in parallel.

Run ``python -m bench.systems.numpy_impl`` for a quick check of both.
"""
from __future__ import annotations

import concurrent.futures
import statistics
import time

import numpy as np

from bench.cases import CASES_BY_NAME, LAYERNORM_EPS, Runner, aligned_empty, relative_error

NAME = "numpy"
NAME2 = "numpy-2thr"


# --- dense cases ---------------------------------------------------------------------------

def matmul(inputs):
    """``np.matmul(a, b, out=c)``; also serves the batched case."""
    a, b = inputs
    c = aligned_empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                      a.dtype)
    return Runner(run=lambda: np.matmul(a, b, out=c), result=lambda: c)


def conv2d(inputs):
    """3x3, pad 1, stride 1 NCHW convolution as im2col plus one GEMM.

    Per image: copy the input into the interior of a zero-bordered buffer,
    gather the nine shifted windows into a ``[C*9, H*W]`` matrix, and
    multiply the ``[K, C*9]`` weights by it straight into the output.
    """
    data, weight = inputs
    n, c, h, w = data.shape
    k = weight.shape[0]
    padded = np.zeros((c, h + 2, w + 2), data.dtype)
    cols = aligned_empty((c * 9, h * w), data.dtype)
    windows = cols.reshape(c, 3, 3, h, w)
    weight2 = np.ascontiguousarray(weight.reshape(k, c * 9))
    out = aligned_empty((n, k, h, w), data.dtype)
    out2 = out.reshape(n, k, h * w)

    def run():
        for i in range(n):
            np.copyto(padded[:, 1:h + 1, 1:w + 1], data[i])
            for dy in range(3):
                for dx in range(3):
                    np.copyto(windows[:, dy, dx], padded[:, dy:dy + h, dx:dx + w])
            np.matmul(weight2, cols, out=out2[i])

    return Runner(run=run, result=lambda: out)


# --- memory-bound kernels, written once for any block of rows -------------------------------
#
# Each ``*_kernel`` takes input and output views (all rows, or one half of
# them), allocates the temporaries it needs, and returns the function that
# computes that block.

def rowsum_kernel(a, out):
    return lambda: np.sum(a, axis=1, out=out)


def fullsum_kernel(a, out):
    def run():
        out[0] = a.sum()
    return run


def softmax_kernel(x, y):
    """max -> subtract -> exp -> sum -> divide, row-wise, into ``y``."""
    rows = x.shape[0]
    mx = aligned_empty((rows, 1), x.dtype)
    s = aligned_empty((rows, 1), x.dtype)

    def run():
        np.max(x, axis=1, keepdims=True, out=mx)
        np.subtract(x, mx, out=y)
        np.exp(y, out=y)
        np.sum(y, axis=1, keepdims=True, out=s)
        np.divide(y, s, out=y)

    return run


def fused_ew_kernel(a, b, c, out):
    """``max(a*b + c, 0)`` in three passes over ``out``."""
    def run():
        np.multiply(a, b, out=out)
        np.add(out, c, out=out)
        np.maximum(out, 0, out=out)
    return run


def layernorm_kernel(x, gamma, beta, y):
    """Row-wise ``(x - mean) * rsqrt(var + eps) * gamma + beta`` into ``y``."""
    rows = x.shape[0]
    mean = aligned_empty((rows, 1), x.dtype)
    scale = aligned_empty((rows, 1), x.dtype)
    sq = aligned_empty(x.shape, x.dtype)
    eps = x.dtype.type(LAYERNORM_EPS)

    def run():
        np.mean(x, axis=1, keepdims=True, out=mean)
        np.subtract(x, mean, out=y)
        np.square(y, out=sq)
        np.mean(sq, axis=1, keepdims=True, out=scale)
        np.add(scale, eps, out=scale)
        np.sqrt(scale, out=scale)
        np.reciprocal(scale, out=scale)
        np.multiply(y, scale, out=y)
        np.multiply(y, gamma, out=y)
        np.add(y, beta, out=y)

    return run


# --- the memory-bound cases, one thread or two ---------------------------------------------

def _outputs(case_name, inputs):
    """The output array of a memory-bound case, allocated once."""
    a = inputs[0]
    if case_name == "rowsum":
        return aligned_empty(a.shape[0], a.dtype)
    if case_name == "fullsum":
        return aligned_empty(1, a.dtype)
    return aligned_empty(a.shape, a.dtype)


def _kernel(case_name, inputs, out):
    if case_name == "rowsum":
        return rowsum_kernel(inputs[0], out)
    if case_name == "fullsum":
        return fullsum_kernel(inputs[0], out)
    if case_name == "softmax":
        return softmax_kernel(inputs[0], out)
    if case_name == "fused_ew":
        return fused_ew_kernel(*inputs, out)
    if case_name == "layernorm":
        x, gamma, beta = inputs
        return layernorm_kernel(x, gamma, beta, out)
    raise KeyError(case_name)


def _one_thread(case_name):
    def factory(inputs):
        out = _outputs(case_name, inputs)
        return Runner(run=_kernel(case_name, inputs, out), result=lambda: out)
    factory.__name__ = case_name
    return factory


_POOL = None


def _pool():
    """The persistent two-worker pool of ``numpy-2thr``, created on first use."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    return _POOL


def _two_threads(case_name):
    """The same kernel on each half of the rows (elements), in two threads.

    Rows are split for 2-D inputs (gamma and beta are shared); fused_ew
    splits its flat vectors; fullsum sums the halves into two partials
    and adds them.
    """
    def factory(inputs):
        out = _outputs(case_name, inputs)
        half = inputs[0].shape[0] // 2
        halves = [slice(0, half), slice(half, inputs[0].shape[0])]
        if case_name == "layernorm":
            parts = [[inputs[0][s], inputs[1], inputs[2]] for s in halves]
        else:
            parts = [[x[s] for x in inputs] for s in halves]
        if case_name == "fullsum":
            partials = [aligned_empty(1, out.dtype) for _ in halves]
        else:
            partials = [out[s] for s in halves]
        kernels = [_kernel(case_name, p, o) for p, o in zip(parts, partials)]
        pool = _pool()

        def run():
            for f in [pool.submit(k) for k in kernels]:
                f.result()
            if case_name == "fullsum":
                out[0] = partials[0][0] + partials[1][0]

        return Runner(run=run, result=lambda: out, notes="2 Python threads")
    factory.__name__ = case_name
    return factory


MEMORY_BOUND = ["rowsum", "fullsum", "softmax", "fused_ew", "layernorm"]


# --- quick self-check, shared by the other modules' __main__ ---------------------------------

def quick_check(name, factories, calls=5):
    """Build each case, check it against the reference, print a median time and rate."""
    ok = True
    for case_name, factory in factories.items():
        case = CASES_BY_NAME[case_name]
        inputs = case.inputs()
        runner = factory(inputs)
        runner.run()
        err = relative_error(runner.result(),
                             case.reference(*[x.astype(np.float64) for x in inputs]))
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            runner.run()
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        good = err <= case.rtol
        ok &= good
        print(f"{name:>11} {case_name:<14} err {err:.1e} {'ok ' if good else 'BAD'} "
              f"{sec * 1e3:8.3f} ms {case.rate(sec):8.1f} {case.unit:<8}"
              f" build {runner.build_seconds:.2f}s {runner.notes}", flush=True)
    return ok


FACTORIES = {
    "matmul1024": matmul,
    "matmul512": matmul,
    "matmul_skinny": matmul,
    "bmm": matmul,
    "conv2d": conv2d,
    "rowsum": _one_thread("rowsum"),
    "fullsum": _one_thread("fullsum"),
    "softmax": _one_thread("softmax"),
    "fused_ew": _one_thread("fused_ew"),
    "layernorm": _one_thread("layernorm"),
}

FACTORIES2 = {
    "rowsum": _two_threads("rowsum"),
    "fullsum": _two_threads("fullsum"),
    "softmax": _two_threads("softmax"),
    "fused_ew": _two_threads("fused_ew"),
    "layernorm": _two_threads("layernorm"),
}

if __name__ == "__main__":
    quick_check(NAME, FACTORIES)
    quick_check(NAME2, FACTORIES2)
