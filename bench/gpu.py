"""GPU benchmark: tex's CUDA kernels against PyTorch (cuBLAS) on the same device, in one run.

    python -m bench.gpu [--samples N] [--json FILE] [--quick]

Prints, with the device's name:
* float32 matmul 4096³ (GFLOP/s; tex's shared-memory schedule, plain, double-buffered
  through registers and pipelined by cp.async, against torch.matmul),
* float16 tensor-core matmul 4096³ with float32 accumulation (tex's WMMA schedule
  against torch.matmul on float16), and float16 and bfloat16 ones through mma.sync
  with a cp.async pipeline (`matmul_mma`, tex.intrin.cuda_mma),
* row sum and softmax over 8192x8192 (GB/s, against the measured device-to-device
  copy bandwidth, bytes read plus bytes written),
* the three reduction strategies (shared, warp, atomic) on row sums with rows of 32
  to 1M elements (the same 2^24 elements in all), showing which wins where.

Every result is checked against the reference before it is timed. Times are
medians of `samples` batches of calls queued back to back, measured with CUDA
events on the stream the calls run on: tex's `time_calls` on its launch stream,
which for PyTorch tensors is PyTorch's current stream, where the references'
events are recorded too. Inputs live on the device (PyTorch tensors, passed
through __cuda_array_interface__), so no copies are timed. Needs a GPU and
PyTorch; without them it says so and exits.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench import gpu_schedules as cases


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _median(run, samples: int) -> float:
    """Median seconds per call over `samples` batches, where `run(count)` gives the GPU's
    seconds for `count` calls queued back to back; a warm-up call first, and batches
    of about 50 ms."""
    run(1)
    once = max(run(1), 1e-6)
    repeat = max(1, int(0.05 / once))
    return float(np.median([run(repeat) / repeat for _ in range(samples)]))


def _time_tex(kernel, args, samples: int) -> float:
    """Median seconds per call of `kernel(*args)`: CUDA events on its launch stream
    (PyTorch's current stream, for tensors), `kernel.time_calls`."""
    return _median(lambda count: kernel.time_calls(args, count), samples)


def _time_torch(torch, fn, samples: int) -> float:
    """Median seconds per call of `fn`, timed with CUDA events on PyTorch's current stream."""
    def run(count: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(count):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    return _median(run, samples)


def _device_inputs(torch, case, seed=0):
    return [torch.from_numpy(x).cuda() for x in case.inputs(seed)]


def _checked(torch, kernel, case, inputs, output_shape, output_dtype="float32", rtol=1e-3):
    out = torch.empty(output_shape, dtype=getattr(torch, output_dtype), device="cuda")
    kernel(*inputs, out)
    expected = case.reference(*(x.cpu().numpy() for x in inputs))
    np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=rtol, atol=rtol)
    return out


def copy_bandwidth(torch, samples: int) -> float:
    """Device-to-device copy of 1 GiB, in GB/s counting bytes read and written."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    seconds = _time_torch(torch, lambda: dst.copy_(src), samples)
    return 2 * src.numel() * 4 / seconds / 1e9


def matmul_rows(torch, samples: int, n: int) -> list:
    rows = []
    flops = 2 * n**3
    for fetch_ahead, named in (({}, ""), ({"double_buffer": True}, ", double-buffered"),
                               ({"pipelined": True}, ", cp.async pipeline")):
        case = cases.matmul(n, n, n, tile=128, per_thread=8, step=8, min_blocks=2,
                            **fetch_ahead)
        kernel = case.build()
        inputs = _device_inputs(torch, case)
        out = _checked(torch, kernel, case, inputs, (n, n), rtol=1e-2)
        tex_s = _time_tex(kernel, (*inputs, out), samples)
        ref_s = _time_torch(torch, lambda: torch.matmul(*inputs), samples)
        label = f"matmul {n}^3 float32{named}"
        rows.append((label, "GFLOP/s", flops / tex_s / 1e9, flops / ref_s / 1e9, "cuBLAS"))
    kernel = cases.matmul_wmma(n, n, n).build()
    a = torch.randn(n, n, device="cuda").half()
    b = torch.randn(n, n, device="cuda").half()
    c = torch.empty(n, n, device="cuda")
    kernel(a, b, c)
    expected = (a.float() @ b.float())
    torch.testing.assert_close(c, expected, rtol=2e-2, atol=2e-1)
    tex_s = _time_tex(kernel, (a, b, c), samples)
    ref_s = _time_torch(torch, lambda: torch.matmul(a, b), samples)
    rows.append((f"matmul {n}^3 float16 tensor cores", "GFLOP/s", flops / tex_s / 1e9,
                 flops / ref_s / 1e9, "cuBLAS"))
    for dtype in ("float16", "bfloat16"):
        case = cases.matmul_mma(n, n, n, dtype)
        kernel = case.build()
        a, b = (torch.randn(n, n, device="cuda").to(getattr(torch, dtype)) for _ in "ab")
        kernel(a, b, c)
        torch.testing.assert_close(c, a.float() @ b.float(), rtol=2e-2, atol=2e-1)
        tex_s = _time_tex(kernel, (a, b, c), samples)
        ref_s = _time_torch(torch, lambda: torch.matmul(a, b), samples)
        rows.append((f"matmul {n}^3 {dtype} mma.sync, cp.async pipeline", "GFLOP/s",
                     flops / tex_s / 1e9, flops / ref_s / 1e9, "cuBLAS"))
    return rows


def memory_rows(torch, samples: int, n: int, copy: float) -> list:
    rows = []
    for label, case, output in (("row sum", cases.row_reduce(n, n, "warp", threads=512), (n,)),
                                ("softmax", cases.softmax(n, n, threads=512), (n, n))):
        kernel = case.build()
        inputs = _device_inputs(torch, case)
        out = _checked(torch, kernel, case, inputs, output)
        moved = sum(x.numel() for x in inputs) * 4 + out.numel() * 4
        seconds = _time_tex(kernel, (*inputs, out), samples)
        rows.append((f"{label} {n}x{n}", "GB/s", moved / seconds / 1e9, copy, "copy"))
    return rows


def strategy_table(torch, samples: int, total: int = 2**24) -> list:
    """GB/s of each strategy for rows of 32 .. 1M elements (`total` elements in all)."""
    table = []
    length = 32
    while length <= 2**20:
        rows = total // length
        line = [length]
        for strategy in ("shared", "warp", "atomic"):
            threads = min(256, max(32, length))
            case = cases.row_reduce(rows, length, strategy, threads=threads)
            kernel = case.build()
            inputs = _device_inputs(torch, case)
            out = _checked(torch, kernel, case, inputs, (rows,))
            seconds = _time_tex(kernel, (*inputs, out), samples)
            line.append(total * 4 / seconds / 1e9)
        table.append(line)
        length *= 4
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=11)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    options = parser.parse_args(argv)
    torch = _torch()
    if torch is None:
        print("bench.gpu needs an NVIDIA GPU and PyTorch with CUDA; neither is usable here.")
        return 1
    n_matmul, n_rows = (1024, 2048) if options.quick else (4096, 8192)
    device = torch.cuda.get_device_name(0)
    copy = copy_bandwidth(torch, options.samples)
    print(f"device: {device}; device-to-device copy {copy:.0f} GB/s (read + write)")
    rows = matmul_rows(torch, options.samples, n_matmul)
    rows += memory_rows(torch, options.samples, n_rows, copy)
    print(f"{'case':40s} {'unit':8s} {'tex':>10s} {'reference':>10s} {'ratio':>6s}")
    for name, unit, ours, reference, who in rows:
        print(f"{name:40s} {unit:8s} {ours:10.1f} {reference:10.1f} {ours / reference:6.2f}"
              f"  (reference: {who})")
    table = strategy_table(torch, options.samples, 2**22 if options.quick else 2**24)
    print("\nrow sums by strategy, GB/s (rows x length = 2^24 elements)")
    print(f"{'length':>8s} {'shared':>8s} {'warp':>8s} {'atomic':>8s}  best")
    for length, *rates in table:
        best = ("shared", "warp", "atomic")[int(np.argmax(rates))]
        print(f"{length:8d} " + " ".join(f"{r:8.1f}" for r in rates) + f"  {best}")
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"device": device, "copy_GBps": copy,
                       "cases": [dict(zip(("case", "unit", "tex", "reference", "against"), r))
                                 for r in rows],
                       "strategies": [dict(zip(("length", "shared", "warp", "atomic"), r))
                                      for r in table]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
