"""Helpers shared by the tests: random inputs, the compile-and-compare check, the SASS
of CUDA C (cuobjdump), and a user's file of workloads for the tuner's tests."""
from __future__ import annotations

import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import pytest

import tex

RNG = np.random.default_rng(20261121)


def random_array(shape, dtype="float32", rng=RNG) -> np.ndarray:
    """Random, never-all-zero data of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -50
        return rng.integers(lo, 50, size=shape).astype(dtype)
    return (rng.standard_normal(shape) + 0.1).astype(dtype)


def loops(schedule, args) -> list[str]:
    """The loops of the lowered program, in print order, as "kind name" ("range i_outer")."""
    found = []
    for line in str(tex.lower(schedule, args)).splitlines():
        words = line.split()
        if words and words[0] == "for":
            found.append(f"{words[3].split('(')[0]} {words[1]}")
    return found


def check(schedule, args, inputs, expected, rtol=1e-5, atol=1e-5, target="llvm"):
    """Build `schedule`, run it on `inputs` (outputs allocated) and compare with `expected`.

    Returns the kernel so tests can look at its source.
    """
    kernel = tex.build(schedule, args, target)
    results = kernel(*inputs)
    results = results if isinstance(results, tuple) else (results,)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return kernel


def gpu_elementwise(n, threads: int = 32):
    """(schedule, A, B) of B = A * 2 + 1 over `n` floats, in blocks of `threads` GPU
    threads."""
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 2 + 1, name="B")
    s = tex.create_schedule(B.op)
    bx, tx = s[B].split(B.op.axis[0], factor=threads)
    s[B].bind(bx, tex.thread_axis("blockIdx.x"))
    s[B].bind(tx, tex.thread_axis("threadIdx.x"))
    return s, A, B


def row_parallel_matmul(name: str = "matmul"):
    """C (n, 48) = A (n, 64) @ B (64, 48) over a symbolic row count, its rows split by 8
    and run in parallel, its columns vectorized: built for the CPU under `name`."""
    n = tex.var("n")
    A = tex.placeholder((n, 64), name="A")
    B = tex.placeholder((64, 48), name="B")
    k = tex.reduce_axis((0, 64), name="k")
    C = tex.compute((n, 48), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, _ = s[C].split(C.op.axis[0], factor=8)
    s[C].parallel(io)
    s[C].vectorize(C.op.axis[1])
    return tex.build(s, [A, B, C], name=name)


def _cuobjdump() -> str | None:
    """cuobjdump: on the PATH, else from the nvidia-cuda-cuobjdump wheel; None if neither."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    wheel = Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu13" / "bin" / "cuobjdump"
    return str(wheel) if wheel.exists() else None


needs_cuobjdump = pytest.mark.skipif(_cuobjdump() is None, reason="needs cuobjdump")


def _has_nvdisasm() -> bool:
    """Whether `bench.gpu_static` finds nvdisasm (on the PATH or from its wheel)."""
    from bench import gpu_static
    try:
        gpu_static.nvdisasm()
    except RuntimeError:
        return False
    return True


needs_nvdisasm = pytest.mark.skipif(not _has_nvdisasm(), reason="needs nvidia-cuda-nvdisasm")


def sass(source: str, arch: str = "sm_90") -> str:
    """The SASS (cuobjdump -sass) of CUDA C `source` compiled by NVRTC for `arch`."""
    from tex.codegen.nvrtc import compile_source
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "kernels.cubin"
        path.write_bytes(compile_source(source, arch))
        return subprocess.run([_cuobjdump(), "-sass", str(path)], capture_output=True,
                              text=True, check=True).stdout


def check_staged_row_sums_over_symbolic_steps(stage_it, steps=(0, 1, 2, 3)):
    """out[i] = 2 * sum(a[i, :]) for 40 rows of a symbolic length k, the rows on threads and
    k in steps of 8 through a shared copy of `a` that `stage_it(stage)` schedules (double
    buffering, a pipeline); simulated against NumPy at 8 * steps - 3 columns (0 for none),
    so that the last step is partial."""
    n, k = 40, tex.var("k")
    a = tex.placeholder((n, k), name="a")
    r = tex.reduce_axis((0, k), name="r")
    out = tex.compute((n,), lambda i: tex.sum(a[i, r] * 2.0, axis=r), name="out")
    s = tex.create_schedule(out.op)
    cached = s.cache_read(a, "shared", [out])
    bo, bi = s[out].split(out.op.axis[0], factor=16)
    ro, _ = s[out].split(r, factor=8)
    s[out].bind(bo, tex.thread_axis("blockIdx.x"))
    s[out].bind(bi, tex.thread_axis("threadIdx.x"))
    s[cached].compute_at(s[out], ro)
    s[cached].bind(s[cached].op.axis[0], tex.thread_axis("threadIdx.x"))
    stage_it(s[cached])
    kernel = tex.build(s, [a, out], target="cuda")
    for count in steps:
        data = np.random.default_rng(count).standard_normal((n, 8 * count - 3 * (count > 0)))
        data = data.astype("float32")
        np.testing.assert_allclose(kernel.simulate(data), 2 * data.sum(axis=1), rtol=1e-5,
                                   atol=1e-5)


#: A user's Python file of workloads, as `tex-tune --file` and TASKS files name them: an
#: `@autotune.template` with a split knob, and a plain function returning its tensors.
USER_OPS_FILE = '''
import autotune
import tex


@autotune.template
def scale(cfg, n):
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 2.0, name="B")
    s = tex.create_schedule(B.op)
    cfg.define_split("split", n, num_outputs=2, policy="power2")
    cfg["split"].apply(s[B], B.op.axis[0])
    return s, [A, B]


def my_matmul(m, n, k):
    A = tex.placeholder((m, k), name="A")
    B = tex.placeholder((k, n), name="B")
    r = tex.reduce_axis((0, k), name="k")
    return [A, B, tex.compute((m, n), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r),
                              name="C")]
'''
