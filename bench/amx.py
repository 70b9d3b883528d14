"""Benchmark: int8 and bfloat16 matmuls on Intel AMX (tex.intrin.x86_amx) against float32 ones.

    python -m bench.amx                 # 1024^3 and 4096x4096x1024
    python -m bench.amx --save          # also append the run to bench/results/amx.txt

For each size, prints GOP/s (2 operations per multiply-add) of, interleaved
in one run (`bench.__main__.time_interleaved`, medians):

* tex AMX int8: `x86_amx.matmul_schedule(M, N, K)`, int8 in, int32 out, the
  packing of A and B (zero padding, VNNI panels) included in every call;
* tex AMX bf16: the same with `dtype="bfloat16"`, bfloat16 in (the int8
  values, exact in bfloat16), float32 out;
* tex f32: tex's best float32 hand schedule (`bench.schedules.matmul` with
  `BEST_MATMUL`) on the same values as float32;
* NumPy f32: `np.matmul` in float32 (OpenBLAS sgemm);

and NumPy's int32 matmul of the same data (`A.astype(int32) @ B.astype(int32)`:
no BLAS, a plain loop) timed once, at the smaller size only: it takes
seconds per call. The AMX results are checked against exact references
(bfloat16 to float32 rounding: sums of integers below 2^24 are exact until
a partial sum passes it, so against a relative 1e-6) before anything is
timed. Needs a CPU with AMX (and Linux that
grants it); elsewhere the benchmark says what is missing and stops.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # as bench.matmul: idle BLAS threads sleep

import numpy as np  # noqa: E402

import tex  # noqa: E402
from bench.__main__ import time_interleaved  # noqa: E402
from bench.cases import Runner  # noqa: E402
from bench.matmul import machine_load  # noqa: E402
from bench.schedules import BEST_MATMUL, matmul  # noqa: E402
from tex.codegen import cpu_support  # noqa: E402
from tex.intrin import x86_amx  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "amx.txt"
SIZES = ((1024, 1024, 1024), (4096, 4096, 1024))
NUMPY_INT32_UP_TO = 1024 ** 3  # multiply-adds; beyond, one NumPy int32 call takes minutes


def runners(M: int, N: int, K: int, seed: int = 0) -> dict[str, Runner]:
    """The timed systems on one random problem, the AMX result checked first."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-128, 128, (M, K), np.int8), rng.integers(-128, 128, (K, N), np.int8)
    exact = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int32)  # exact: < 2^53
    amx = tex.build(*x86_amx.matmul_schedule(M, N, K))
    c_amx = np.empty((M, N), np.int32)
    amx(a, b, c_amx)
    np.testing.assert_array_equal(c_amx, exact)
    a16, b16 = a.astype(tex.dtype.bfloat16.numpy), b.astype(tex.dtype.bfloat16.numpy)
    amx16 = tex.build(*x86_amx.matmul_schedule(M, N, K, dtype="bfloat16"))
    c_amx16 = np.empty((M, N), np.float32)
    amx16(a16, b16, c_amx16)
    np.testing.assert_allclose(c_amx16, exact, rtol=1e-6, atol=1)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    f32 = tex.build(*matmul(M, N, K, **BEST_MATMUL))
    c_f32, c_np = np.empty((M, N), np.float32), np.empty((M, N), np.float32)
    return {"tex AMX int8": Runner(lambda: amx(a, b, c_amx), lambda: c_amx),
            "tex AMX bf16": Runner(lambda: amx16(a16, b16, c_amx16), lambda: c_amx16),
            "tex f32": Runner(lambda: f32(af, bf, c_f32), lambda: c_f32),
            "NumPy f32": Runner(lambda: np.matmul(af, bf, out=c_np), lambda: c_np)}


def numpy_int32_seconds(M: int, N: int, K: int) -> float:
    """Seconds of one `A.astype(int32) @ B.astype(int32)` (casts excluded)."""
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (M, K), np.int8).astype(np.int32)
    b = rng.integers(-128, 128, (K, N), np.int8).astype(np.int32)
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


def benchmark(samples: int) -> list[str]:
    lines = [f"medians of {samples} interleaved samples; GOP/s = 2 M N K / seconds; "
             f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}",
             f"{'M x N x K':18} {'tex AMX int8':>13} {'tex AMX bf16':>13} {'NumPy int32':>12} "
             f"{'tex f32':>9} {'NumPy f32':>10} {'int8/tex f32':>13} {'bf16/tex f32':>13}"]
    for M, N, K in SIZES:
        ops = 2 * M * N * K
        times = time_interleaved(runners(M, N, K), samples)
        rate = {name: ops / statistics.median(ts) / 1e9 for name, ts in times.items()}
        int32 = f"{ops / numpy_int32_seconds(M, N, K) / 1e9:12.1f}" \
            if M * N * K <= NUMPY_INT32_UP_TO else f"{'(minutes)':>12}"
        lines.append(f"{f'{M}x{N}x{K}':18} {rate['tex AMX int8']:13.0f} "
                     f"{rate['tex AMX bf16']:13.0f} {int32} "
                     f"{rate['tex f32']:9.0f} {rate['NumPy f32']:10.0f} "
                     f"{rate['tex AMX int8'] / rate['tex f32']:13.1f} "
                     f"{rate['tex AMX bf16'] / rate['tex f32']:13.1f}")
    return lines


def machine() -> str:
    """The CPU's name, cores and AMX flags, from /proc/cpuinfo."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"unknown CPU, {os.cpu_count()} cores"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "unknown CPU")
    flags = sorted({f for ln in info.splitlines() if ln.startswith("flags")
                    for f in ln.split(":", 1)[1].split() if f.startswith("amx")})
    return f"{name}, {os.cpu_count()} cores, {' '.join(flags) or 'no AMX'}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15, help="timed samples of each")
    parser.add_argument("--save", action="store_true", help=f"append to {RESULTS.name}")
    args = parser.parse_args(argv)
    missing = cpu_support.amx_unavailable(("amx-bf16", "amx-int8", "amx-tile"))
    if missing is not None:
        raise SystemExit(f"bench.amx needs AMX: {missing}")
    lines = ["# python -m bench.amx", f"# {machine()}",
             "# before: " + machine_load().replace("\n", "\n# ")]
    lines += benchmark(args.samples)
    lines.append("# after: " + machine_load().splitlines()[0])
    print("\n".join(lines))
    if args.save:
        with RESULTS.open("a") as out:
            out.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
