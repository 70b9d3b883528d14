"""PyTorch's ``torch.compile``: the functions of bench/systems/torch_impl.py, compiled.

Each factory wraps the case's function in ``torch.compile(fullgraph=True,
dynamic=False)`` (Inductor, which generates C++/OpenMP kernels for the CPU
and calls MKL or oneDNN for the matrix products and the convolution) and
calls it once on the real inputs; that first call, which traces and
compiles (Inductor's on-disk cache may hold the C++ build of an earlier
run), is ``build_seconds``, so no compilation is timed. Shapes are static:
the three matmul cases share one function, and each gets its own kernel.

Importing this module compiles a one-line function first: where Inductor
cannot compile (no C++ compiler, say), it raises ImportError, which is how
the harness tells that a peer is absent.

Run ``python -m bench.systems.torch_compile_impl`` for a quick check.
"""
from __future__ import annotations

import torch

from bench.systems import torch_impl

NAME = "torch.compile"


def _compile(func):
    return torch.compile(func, fullgraph=True, dynamic=False)


def _probe() -> None:
    """Raise ImportError unless Inductor compiles and runs a small kernel here."""
    try:
        x = torch.arange(64, dtype=torch.float32)
        ok = torch.equal(_compile(lambda t: t * 2 + 1)(x), x * 2 + 1)
    except Exception as exc:  # whatever stops Inductor stops the peer
        raise ImportError(f"torch.compile cannot compile here: "
                          f"{type(exc).__name__}: {exc}".splitlines()[0][:200]) from exc
    if not ok:
        raise ImportError("torch.compile computed a wrong result on a one-line function")


_probe()
FACTORIES = torch_impl.factories(_compile)

if __name__ == "__main__":
    from bench.systems.numpy_impl import quick_check

    quick_check(NAME, FACTORIES)
