"""PyTorch eager as most users would write each case.

Matrix products go to ``torch.matmul`` / ``torch.bmm`` (MKL), the convolution
to ``torch.nn.functional.conv2d`` (oneDNN), the row-wise cases to
``tensor.sum``, ``torch.softmax`` and ``torch.nn.functional.layer_norm``, and
``max(a*b + c, 0)`` to ``torch.addcmul`` followed by an in-place clamp. The
tensors are ``torch.from_numpy`` views of the suite's arrays (no copies), and
the outputs are written in place with ``out=`` where the op has it; conv2d,
the full sum and layer norm return a new tensor each call, as they do for
users. Torch runs on as many threads as the machine has cores, as the other
systems do.

``bench/systems/torch_compile_impl.py`` runs the same functions through
``torch.compile``.

Same process or not: torch runs in the suite's process, because loading it
there skews no one's figures. Measured on the 2-core AMD EPYC (Zen 4,
family 25 model 17, KVM) of this suite, torch 2.13.0+cpu, by alternating
``python -m bench --cases matmul512,softmax --no-limits --no-latency`` with
``--systems tex,numba,tvm`` and torch's modules left out of SYSTEM_MODULES
(5 runs) and with ``--systems tex,numba,tvm,torch,torch.compile`` (6 runs),
another process keeping about one core busy throughout; medians, matmul512
GFLOP/s and softmax GB/s, without torch -> with torch: tex 105.1 -> 104.1
and 13.9 -> 14.2, numba 29.3 -> 30.5 and 1.6 -> 2.0, TVM 107.9 -> 104.4 and
15.0 -> 15.6, all inside the runs' spread. torch itself, alone
(``--systems torch,torch.compile``) or beside the others: 16.8 and 4.2 in
both with a core taken; on a nearly idle machine (a quarter of a core taken)
198-204 and 27 alone, 188-201 and 25-27 beside the others, where bursts of
outside load gave single runs of 167 and 10 too. What does move torch's
figures is load from outside: with another process busy on one of the two
cores, its OpenMP barriers wait out that process's time slices and
matmul512 falls from about 200 to 17 GFLOP/s, where tex and TVM lose half.

Run ``python -m bench.systems.torch_impl`` for a quick check.
"""
from __future__ import annotations

import functools
import os
import time

import torch
import torch.nn.functional as F

from bench.cases import LAYERNORM_EPS, Runner, aligned_empty

NAME = "torch"

torch.set_num_threads(os.cpu_count() or 1)


# --- the cases, as functions of tensors ------------------------------------------------------

def matmul(a, b, c):
    return torch.matmul(a, b, out=c)


def bmm(a, b, c):
    return torch.bmm(a, b, out=c)


def conv2d(data, weight):
    return F.conv2d(data, weight, padding=1)


def rowsum(a, out):
    return torch.sum(a, dim=1, out=out)


def fullsum(a):
    return a.sum()


def softmax(x, y):
    return torch.softmax(x, dim=-1, out=y)


def fused_ew(a, b, c, out):
    return torch.addcmul(c, a, b, out=out).clamp_(min=0)


def layernorm(x, gamma, beta):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, LAYERNORM_EPS)


def _output(func, inputs):
    """The preallocated output of ``func`` if its op takes ``out=``, else None."""
    a, b = inputs[0], inputs[-1]
    if func in (matmul, bmm):
        return aligned_empty(a.shape[:-1] + b.shape[-1:], a.dtype)
    if func is rowsum:
        return aligned_empty(a.shape[0], a.dtype)
    if func in (softmax, fused_ew):
        return aligned_empty(a.shape, a.dtype)
    return None


# --- runners ---------------------------------------------------------------------------------

def runner(func, inputs, wrap=None) -> Runner:
    """A Runner calling ``func`` on tensor views of ``inputs`` (and of its output).

    ``wrap`` (such as ``torch.compile``) transforms the function first; then the
    first call, which compiles, is ``build_seconds``.
    """
    out = _output(func, inputs)
    if wrap is not None:
        func = wrap(func)
    args = [torch.from_numpy(x) for x in inputs]
    if out is not None:
        args.append(torch.from_numpy(out))
    last = [None]

    def run():
        last[0] = func(*args)

    build = 0.0
    if wrap is not None:
        start = time.perf_counter()
        run()
        build = time.perf_counter() - start
    notes = "" if out is not None else "allocates its output"
    return Runner(run=run, result=lambda: last[0].numpy(), build_seconds=build, notes=notes)


#: The function of each suite case.
FUNCTIONS = {"matmul1024": matmul, "matmul512": matmul, "matmul_skinny": matmul, "bmm": bmm,
             "conv2d": conv2d, "rowsum": rowsum, "fullsum": fullsum, "softmax": softmax,
             "fused_ew": fused_ew, "layernorm": layernorm}


def factories(wrap=None) -> dict:
    """{suite case: factory} for the functions above, each transformed by ``wrap``."""
    return {case: functools.partial(runner, func, wrap=wrap) for case, func in FUNCTIONS.items()}


FACTORIES = factories()

if __name__ == "__main__":
    from bench.systems.numpy_impl import quick_check

    quick_check(NAME, FACTORIES)
