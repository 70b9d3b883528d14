"""Timing a kernel as TVM's `time_evaluator` does.

    timer = f.time_evaluator(f.entry_name, tex.cpu(0), number=10, repeat=3)
    result = timer(a, b, c)        # result.mean, .median, .min, .max, .std, .results (s)

One call runs the kernel once to warm it up (load, first touch), then
`repeat` times runs it `number` times in a row and records the mean time of
one run: `results` holds those `repeat` means, in seconds. With
`min_repeat_ms`, `number` grows until one such run of `number` calls lasts at
least that long. The kernel times its own runs (`time_calls`): a CPU kernel's
calls are synchronous and timed by the wall clock; a CUDA kernel's are queued
back to back on their stream between two CUDA events, and the time is the
device's between them (`CudaKernel.time_calls`). For a CUDA kernel, arrays
already on the device (`tex.nd.array(x, tex.cuda(0))`) keep the copies out of
the time.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from tex.errors import ArgumentError

#: How much `number` grows, at least, while a run is shorter than `min_repeat_ms`.
_GROWTH = 1.618


@dataclass(frozen=True)
class TimingResult:
    """The mean time of one kernel call in each repeat, in seconds (`results`), and
    their statistics. TVM: `BenchmarkResult`."""

    results: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.results)

    @property
    def median(self) -> float:
        return statistics.median(self.results)

    @property
    def min(self) -> float:
        return min(self.results)

    @property
    def max(self) -> float:
        return max(self.results)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.results)

    def __str__(self):
        ms = [1e3 * t for t in (self.mean, self.median, self.max, self.min, self.std)]
        return ("Execution time summary:\n"
                " mean (ms)   median (ms)    max (ms)     min (ms)     std (ms)\n"
                + "".join(f"{t:12.4f} " for t in ms).rstrip())


def time_evaluator(kernel, func_name: str, dev, number: int = 10, repeat: int = 1,
                   min_repeat_ms: float = 0):
    """A function that calls `kernel` with its arguments as the module docstring says and
    returns a `TimingResult`. `func_name` must be the kernel's `entry_name` and `dev` a
    device (`tex.runtime.nd.Device`) of the kind it runs on."""
    if func_name != kernel.entry_name:
        raise ArgumentError(f"time_evaluator: kernel {kernel.entry_name!r} has no function "
                            f"{func_name!r}; pass f.entry_name")
    if getattr(dev, "kind", None) != kernel.device_kind:
        raise ArgumentError(f"time_evaluator: kernel {kernel.entry_name} runs on a "
                            f"{kernel.device_kind} device, got {dev!r}; pass "
                            f"tex.{kernel.device_kind}(0)")
    for label, value in (("number", number), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"time_evaluator: {label} must be an int >= 1, got {value!r}")
    if not isinstance(min_repeat_ms, (int, float)) or min_repeat_ms < 0:
        raise ArgumentError(f"time_evaluator: min_repeat_ms must be a number >= 0, got "
                            f"{min_repeat_ms!r}")

    def evaluate(*args) -> TimingResult:
        kernel(*args)
        calls = number
        results = []
        for _ in range(repeat):
            elapsed = kernel.time_calls(args, calls)
            while elapsed * 1e3 < min_repeat_ms:
                wanted = calls * min_repeat_ms / max(elapsed * 1e3, 1e-3)
                calls = int(max(wanted, calls * _GROWTH)) + 1
                elapsed = kernel.time_calls(args, calls)
            results.append(elapsed / calls)
        return TimingResult(tuple(results))
    return evaluate

