"""The cases of the benchmark suite: what each computes, on which inputs, and how to check it.

A case knows nothing of the systems that run it. Each system (NumPy, tex,
and the optional peers in bench/systems/) maps a case's name to a *factory*:
a function that takes the case's input arrays and returns a `Runner`. The
runner's `run()` computes the case once into outputs allocated by the
factory, and `result()` returns that output as a NumPy array, which the
suite compares with the case's float64 reference before timing anything.

Rates count the work of one call: 2 flops per multiply-add for the dense
cases; for the memory-bound ones, the bytes of every input read plus every
output written once (not counting the cache's read for ownership).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

import tex

FLOAT = np.float32


def aligned_empty(shape, dtype=FLOAT) -> np.ndarray:
    """An array whose data starts on a 64-byte cache line, as TVM's runtime allocates
    its tensors. Every system gets its inputs and outputs aligned so: NumPy's own
    16-byte alignment would split a 64-byte vector access across two cache lines
    for all systems but TVM, which copies its arguments."""
    return tex.empty(shape, dtype)


@dataclasses.dataclass(frozen=True)
class Runner:
    """One system's kernel for one case, with its inputs and outputs bound."""

    run: Callable[[], None]
    result: Callable[[], np.ndarray]
    build_seconds: float = 0.0
    notes: str = ""


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    title: str
    unit: str  # "GFLOP/s" or "GB/s"
    work: float  # flops (GFLOP/s cases) or bytes (GB/s cases) per call
    input_shapes: tuple[tuple[int, ...], ...]
    reference: Callable[..., np.ndarray]  # float64 arrays in, float64 result out
    rtol: float = 1e-5

    def inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Random float32 inputs in [0.5, 1.5): never zero, never negative; each starts on
        a cache line (`aligned_empty`)."""
        rng = np.random.default_rng(seed)
        arrays = [aligned_empty(shape) for shape in self.input_shapes]
        for a in arrays:
            a[...] = rng.random(a.shape, dtype=FLOAT) + FLOAT(0.5)
        return arrays

    def rate(self, seconds: float) -> float:
        return self.work / seconds / 1e9


def relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    """Relative L2 error of `result` against the float64 `reference`."""
    result = np.asarray(result, np.float64).reshape(reference.shape)
    return float(np.linalg.norm(result - reference) / np.linalg.norm(reference))


# --- references, in float64 ----------------------------------------------------------------

def conv2d_reference(data, weight):
    """NCHW convolution, stride 1, padding 1, 3x3 kernels."""
    n, c, h, w = data.shape
    padded = np.pad(data, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, weight.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("kc,nchw->nkhw", weight[:, :, dy, dx],
                             padded[:, :, dy:dy + h, dx:dx + w])
    return out


def softmax_reference(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


LAYERNORM_EPS = 1e-5


def layernorm_reference(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYERNORM_EPS) * gamma + beta


def _matmul(name, title, m, n, k):
    return Case(name, title, "GFLOP/s", 2.0 * m * n * k, ((m, k), (k, n)),
                lambda a, b: a @ b)


def _bytes(*shapes) -> float:
    return 4.0 * sum(int(np.prod(s)) for s in shapes)


#: Every case of `python -m bench`, in the order of the table.
CASES = [
    _matmul("matmul1024", "matmul 1024^3", 1024, 1024, 1024),
    _matmul("matmul512", "matmul 512^3", 512, 512, 512),
    _matmul("matmul_skinny", "matmul 4096x4096 @ 4096x64", 4096, 64, 4096),
    Case("bmm", "batch matmul 16 x 256^3", "GFLOP/s", 2.0 * 16 * 256 ** 3,
         ((16, 256, 256), (16, 256, 256)), lambda a, b: a @ b),
    Case("conv2d", "conv2d NCHW 1x64x56x56, 64 3x3, pad 1", "GFLOP/s",
         2.0 * 64 * 56 * 56 * 64 * 9, ((1, 64, 56, 56), (64, 64, 3, 3)), conv2d_reference),
    Case("rowsum", "row sum 4096x4096", "GB/s", _bytes((4096, 4096), (4096,)),
         ((4096, 4096),), lambda a: a.sum(axis=1)),
    Case("fullsum", "full sum 4096x4096", "GB/s", _bytes((4096, 4096)),
         ((4096, 4096),), lambda a: np.array([a.sum()]), rtol=1e-4),
    Case("softmax", "softmax 4096x1024 (last axis)", "GB/s", _bytes((4096, 1024), (4096, 1024)),
         ((4096, 1024),), softmax_reference),
    Case("fused_ew", "max(a*b+c, 0), 16M", "GB/s", _bytes(*[(1 << 24,)] * 4),
         ((1 << 24,),) * 3, lambda a, b, c: np.maximum(a * b + c, 0)),
    Case("layernorm", "layernorm 4096x1024 (fused chain)", "GB/s",
         _bytes((4096, 1024), (1024,), (1024,), (4096, 1024)),
         ((4096, 1024), (1024,), (1024,)), layernorm_reference),
]

CASES_BY_NAME = {case.name: case for case in CASES}
