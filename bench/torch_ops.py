"""Benchmark: tex kernels as PyTorch operators (`tex.torch.register`).

    python -m bench.torch_ops [--steps N] [--json FILE]

Two tables, both measured in one run on this machine's CPU:

* **Call overhead.** A kernel adding 1 to 64 floats, called four ways: directly
  with NumPy arrays, directly with torch tensors (through DLPack), as the
  registered operator `torch.ops.texbench.add_one`, and PyTorch's own `x + 1`.
  "added by the op" is the operator's time less the direct call on tensors
  with the output passed in: the price of the dispatcher, the tensor checks
  and `torch.empty` for the output, less what the operator saves by passing
  the tensors' pointers straight to the kernel for shapes it has seen. Goal:
  at most 5 us.
* **A training step** of a two-layer perceptron, loss and SGD included,
  `x -> gelu(x @ W1 + b1) @ W2` (GELU in its tanh form), in three variants:
  eager PyTorch; eager PyTorch with the bias and GELU as one tex operator
  (forward and backward each one fused tex kernel); and `torch.compile` of
  each. Times are medians over `--steps` steps after warm-up.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch

import tex
import tex.torch
from bench.peak import cpu_name

_GELU_C = math.sqrt(2 / math.pi)
_GELU_A = 0.044715


# --- call overhead ----------------------------------------------------------------------------
def add_one_kernel():
    A = tex.placeholder((64,), name="A")
    B = tex.compute((64,), lambda i: A[i] + 1.0, name="B")
    return tex.build(tex.create_schedule(B.op), [A, B], name="add_one")


def per_call(call, calls: int = 20000) -> float:
    """Seconds per call of `call()`: the median of five timed runs after a warm-up."""
    for _ in range(1000):
        call()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls // 5):
            call()
        runs.append((time.perf_counter() - start) / (calls // 5))
    return statistics.median(runs)


def overhead_rows() -> list[tuple[str, float]]:
    kernel = add_one_kernel()
    op = tex.torch.register("texbench::add_one", kernel)
    a, b = np.ones(64, np.float32), np.empty(64, np.float32)
    x, y = torch.ones(64), torch.empty(64)
    rows = [("kernel(numpy, out)", per_call(lambda: kernel(a, b))),
            ("kernel(torch, out)", per_call(lambda: kernel(x, y))),
            ("torch.ops.texbench.add_one(x)", per_call(lambda: op(x))),
            ("torch: x + 1", per_call(lambda: x + 1))]
    rows.append(("added by the op", rows[2][1] - rows[1][1]))
    return rows


# --- a training step --------------------------------------------------------------------------
def _gelu_tanh(z):
    """GELU in its tanh form, for tex expressions."""
    return 0.5 * z * (1.0 + tex.tanh(_GELU_C * (z + _GELU_A * z * z * z)))


def _gelu_tanh_grad(z):
    """The derivative of `_gelu_tanh` at z."""
    t = tex.tanh(_GELU_C * (z + _GELU_A * z * z * z))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * _GELU_A * z * z)


def _rows_schedule(out, width: int):
    """Rows in parallel, each row's columns in vectors of 16."""
    s = tex.create_schedule(out.op)
    rows, cols = out.op.axis
    s[out].parallel(rows)
    _, inner = s[out].split(cols, factor=16 if width % 16 == 0 else 8)
    s[out].vectorize(inner)
    return s


def bias_gelu_kernels(width: int):
    """(forward, backward) tex kernels of y = gelu(x + b) over rows of `width`, for any
    number of rows; the backward gives dL/dx from x, b and dL/dy."""
    n = tex.size_var("n")
    X = tex.placeholder((n, width), name="X")
    B = tex.placeholder((width,), name="B")
    Y = tex.compute((n, width), lambda i, j: _gelu_tanh(X[i, j] + B[j]), name="Y")
    forward = tex.build(_rows_schedule(Y, width), [X, B, Y], name="bias_gelu")
    G = tex.placeholder((n, width), name="G")
    DX = tex.compute((n, width), lambda i, j: G[i, j] * _gelu_tanh_grad(X[i, j] + B[j]),
                     name="DX")
    backward = tex.build(_rows_schedule(DX, width), [X, B, G, DX], name="bias_gelu_grad")
    return forward, backward


def register_bias_gelu(width: int):
    """The operator texbench::bias_gelu, whose backward is the operator
    texbench::bias_gelu_grad (an operator, so that torch.compile can trace it) and a
    column sum."""
    forward, backward_kernel = bias_gelu_kernels(width)
    gradient = tex.torch.register("texbench::bias_gelu_grad", backward_kernel)

    def backward(inputs, outputs, grad_outputs):
        x, b = inputs
        dx = gradient(x.detach(), b.detach(), grad_outputs[0])
        return dx, dx.sum(0)
    return tex.torch.register("texbench::bias_gelu", forward, backward=backward)


class Perceptron(torch.nn.Module):
    def __init__(self, width: int, hidden: int, bias_gelu=None):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(width, hidden, generator=generator) * 0.05)
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.w2 = torch.nn.Parameter(torch.randn(hidden, width, generator=generator) * 0.05)
        self.bias_gelu = bias_gelu

    def forward(self, x):
        z = x @ self.w1
        if self.bias_gelu is None:
            h = torch.nn.functional.gelu(z + self.b1, approximate="tanh")
        else:
            h = self.bias_gelu(z, self.b1)
        return h @ self.w2


def step_time(model, steps: int, batch: int, width: int) -> tuple[float, float]:
    """(median seconds per training step, final loss) of `model` on fixed random data."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, width, generator=generator)
    target = torch.randn(batch, width, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        return loss
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(loss.detach())


def step_rows(steps: int, batch: int = 256, width: int = 512, hidden: int = 1024) -> list:
    bias_gelu = register_bias_gelu(hidden)
    rows = []
    for label, uses_tex, compiled in (("eager PyTorch", False, False),
                                      ("eager, tex bias+GELU", True, False),
                                      ("torch.compile", False, True),
                                      ("torch.compile, tex bias+GELU", True, True)):
        model = Perceptron(width, hidden, bias_gelu if uses_tex else None)
        runnable = torch.compile(model, fullgraph=True) if compiled else model
        seconds, loss = step_time(runnable, steps, batch, width)
        rows.append((label, seconds, loss))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.torch_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (30)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_name()}; {tex.config.num_threads()} threads; torch {torch.__version__}")
    print("\ncall overhead, 64 floats (us per call)")
    overhead = overhead_rows()
    for label, seconds in overhead:
        print(f"  {label:32} {1e6 * seconds:7.2f}")
    print("\ntraining step, x -> gelu(x @ W1 + b1) @ W2, batch 256, 512 -> 1024 -> 512 "
          "(ms per step, median)")
    steps = step_rows(args.steps)
    eager = steps[0][1]
    for label, seconds, loss in steps:
        print(f"  {label:32} {1e3 * seconds:7.2f}  x{eager / seconds:5.2f} of eager  "
              f"(loss {loss:.5f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "overhead_us": {k: 1e6 * v for k, v in overhead},
                       "step_ms": {k: 1e3 * v for k, v, _ in steps}}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
