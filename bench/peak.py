"""The machine's limits, measured: FP32 FMA peak and memory bandwidth.

    python -m bench.peak

The FMA peak runs a JIT-compiled loop of independent vector FMA chains
(as wide as the CPU's widest vectors) on every core at once, each core in a
thread of its own (ctypes releases the GIL); flops = 2 per lane per FMA.
Bandwidth is measured with tex kernels, parallel and vectorized: a
read-only stream (a sum) and a copy, each on a working set far beyond the
last-level cache (DRAM) and on one that fits in it (half of it); bytes =
read + written. The suite reads a memory-bound case against the figure of
the working set it has (`bench.__main__.limit_for`).
These are the yardsticks the suite's table is read against, not peers.
"""
from __future__ import annotations

import ctypes
import platform
import statistics
import threading
import time

import llvmlite.binding as llvm
import numpy as np

import tex

CHAINS = 24
ITERATIONS = 20_000_000  # ~0.1 s per round: thread start-up (GIL hand-offs) stays negligible


def _fma_loop_ir(lanes: int) -> str:
    """`void fma_loop(i64 n, float* out)`: CHAINS independent FMA chains, n steps each."""
    vec = f"<{lanes} x float>"
    lines = [
        f"declare {vec} @llvm.fma.v{lanes}f32({vec}, {vec}, {vec})",
        "define void @fma_loop(i64 %n, ptr %out) {",
        "entry:",
        "  br label %loop",
        "loop:",
        "  %i = phi i64 [0, %entry], [%i.next, %loop]",
    ]
    for c in range(CHAINS):
        lines.append(f"  %acc{c} = phi {vec} [zeroinitializer, %entry], [%next{c}, %loop]")
    x = f"<{lanes} x float> splat (float 0x3FF0000000000000)"
    y = f"<{lanes} x float> splat (float 0x3F50624DE0000000)"
    for c in range(CHAINS):
        lines.append(f"  %next{c} = call {vec} @llvm.fma.v{lanes}f32({vec} %acc{c}, {x}, {y})")
    lines += ["  %i.next = add i64 %i, 1",
              "  %done = icmp eq i64 %i.next, %n",
              "  br i1 %done, label %exit, label %loop",
              "exit:"]
    total = "%next0"
    for c in range(1, CHAINS):
        lines.append(f"  %sum{c} = fadd {vec} {total}, %next{c}")
        total = f"%sum{c}"
    lines += [f"  store {vec} {total}, ptr %out, align 4", "  ret void", "}"]
    return "\n".join(lines)


def fma_peak(repeats: int = 3) -> float:
    """Median GFLOP/s of FMA chains run on every core at once."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    features = llvm.get_host_cpu_features()
    lanes = 16 if features.get("avx512f") else 8
    module = llvm.parse_assembly(_fma_loop_ir(lanes))
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=features.flatten(), opt=2)
    engine = llvm.create_mcjit_compiler(module, machine)  # the engine owns the machine
    engine.finalize_object()
    fn = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(
        engine.get_function_address("fma_loop"))
    threads = __import__("os").cpu_count() or 1
    sinks = [np.empty(lanes, np.float32) for _ in range(threads)]

    def one_round() -> float:
        workers = [threading.Thread(target=fn, args=(ITERATIONS, sink.ctypes.data))
                   for sink in sinks]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - start

    one_round()
    seconds = statistics.median(one_round() for _ in range(repeats))
    return threads * ITERATIONS * CHAINS * lanes * 2 / seconds / 1e9


def _stream_kernels(n: int):
    """(sum, copy) tex kernels over n floats, parallel and vectorized."""
    A = tex.placeholder((n,), name="A")
    k = tex.reduce_axis((0, n), name="k")
    total = tex.compute((1,), lambda _: tex.sum(A[k], axis=k), name="total")
    s = tex.create_schedule(total.op)
    chunk, _ = s[total].split(k, nparts=64)
    per_chunk = s.rfactor(total, chunk)
    (c,) = per_chunk.op.axis[:1]
    inner = per_chunk.op.reduce_axis[0]
    _, lane = s[per_chunk].split(inner, factor=64)
    lanes = s.rfactor(per_chunk, lane)
    lane_axis, *rows = lanes.op.axis
    s[lanes].reorder(*rows, *lanes.op.reduce_axis, lane_axis)
    s[lanes].vectorize(lane_axis)
    s[lanes].compute_at(s[per_chunk], c)
    s[per_chunk].parallel(c)
    reader = tex.build(s, [A, total])

    B = tex.compute((n,), lambda i: A[i], name="B")
    s = tex.create_schedule(B.op)
    outer, inner = s[B].split(B.op.axis[0], factor=1 << 16)
    _, lane = s[B].split(inner, factor=16)
    s[B].parallel(outer)
    s[B].vectorize(lane)
    return reader, tex.build(s, [A, B])


def working_sets() -> dict[str, int]:
    """Bytes of the two working sets bandwidth is measured on: "dram", eight times the
    last-level cache (at least 256 MiB), so that nearly every byte comes from memory, and
    "cache", half of it, which the last-level cache holds."""
    last_level = tex.Target("llvm").cache_bytes[2]
    return {"dram": max(8 * last_level, 256 << 20), "cache": last_level // 2}


def bandwidth(repeats: int = 21) -> dict[str, float]:
    """Median GB/s of a parallel read-only stream (a sum) and of a copy, each on both
    working sets of `working_sets` (the copy's split between source and destination):
    keys "read dram", "copy dram", "read cache", "copy cache"."""
    rates = {}
    for where, nbytes in working_sets().items():
        n, m = nbytes // 4, nbytes // 8
        reader, _ = _stream_kernels(n)
        _, copier = _stream_kernels(m)
        a = np.random.default_rng(0).random(n, dtype=np.float32)
        b, total = np.empty(m, np.float32), np.empty(1, np.float32)
        for name, run in (("read", lambda: reader(a, total)),
                          ("copy", lambda: copier(a[:m], b))):
            run()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            rates[f"{name} {where}"] = nbytes / statistics.median(times) / 1e9
    return rates


def cpu_name() -> str:
    """The CPU's model name, as the OS reports it."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    print(f"FP32 FMA peak, all cores: {fma_peak():.0f} GFLOP/s")
    rates, sizes = bandwidth(), working_sets()
    for name, rate in rates.items():
        print(f"{name} bandwidth, {sizes[name.split()[1]] >> 20} MiB, all cores: "
              f"{rate:.1f} GB/s")


if __name__ == "__main__":
    main()
