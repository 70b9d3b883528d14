"""The benchmark suite: every case of bench/cases.py on every system at hand, in one run.

    python -m bench                         # the full table
    python -m bench --cases softmax,rowsum  # some cases
    python -m bench --json results.json     # also write {case: {system: rate}}

Systems: tex (the hand schedules of bench/schedules.py), tex tuned (the
autotuner's best after `--tune-trials` trials on this CPU, its logs kept per
CPU in bench/results/tuning/ so that a rerun only rebuilds), NumPy as written
and NumPy split over the cores in Python threads (its ufuncs use one core),
and, where installed, numba, Halide, TVM, and PyTorch eager and under
torch.compile (bench/systems/). A missing peer is reported and skipped.
Every kernel's result is checked against a float64 NumPy reference before
it is timed; a wrong or failing one is reported as such and not timed.

Timing: each sample is a batch of calls lasting at least 40 ms (inputs and
outputs allocated once, each starting on a 64-byte cache line as TVM's own
arrays do), reported per call. The systems of a case take turns:
`--samples` samples each, in rounds of three with the order rotated every
round and a 0.15 s pause between systems, so that each runtime's idle
threads (OpenBLAS, tex's and TVM's pools) go to sleep before the next one
runs. The table shows medians. Before the cases, the suite measures the
machine's FP32 FMA peak and its read and copy bandwidth from memory (DRAM)
and from the last-level cache (bench/peak.py), and prints each tex figure as
a fraction of the matching limit: a memory-bound case against the bandwidth
of where its working set lives; after them, tex's build latency and call
overhead (bench/latency.py).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import statistics
import sys
import time
import traceback

import numpy as np

import tex
from bench.cases import CASES, CASES_BY_NAME, Case, relative_error
from bench import latency as bench_latency
from bench import peak
from bench.systems import tex_tuned_impl

#: Peer modules in bench/systems/, tried in this order; each may be absent.
SYSTEM_MODULES = ["tex_impl", "tex_tuned_impl", "numpy_impl", "numba_impl", "halide_impl",
                  "tvm_impl", "torch_impl", "torch_compile_impl"]
#: Columns that are tex itself, not peers.
TEX_SYSTEMS = ("tex", "tex tuned")
BATCH_SECONDS = 0.04
PAUSE_SECONDS = 0.15
ROUND = 3


def load_systems(wanted: set[str] | None) -> tuple[dict, list[str]]:
    """{system name: {case name: factory}} for the modules that import, and notes on the rest."""
    systems, notes = {}, []
    for module_name in SYSTEM_MODULES:
        try:
            module = importlib.import_module(f"bench.systems.{module_name}")
        except ImportError as error:
            notes.append(f"{module_name.removesuffix('_impl')}: not installed ({error})")
            continue
        pairs = [(module.NAME, module.FACTORIES)]
        if hasattr(module, "NAME2"):
            pairs.append((module.NAME2, module.FACTORIES2))
        for name, factories in pairs:
            if wanted is None or name in wanted:
                systems[name] = factories
    return systems, notes


def prepare(case: Case, systems: dict) -> tuple[dict, dict]:
    """Build and check every system's runner for `case`: ({name: runner}, {name: failure})."""
    inputs = case.inputs()
    reference = case.reference(*[x.astype(np.float64) for x in inputs])
    runners, failures = {}, {}
    for name, factories in systems.items():
        factory = factories.get(case.name)
        if factory is None:
            continue
        try:
            runner = factory(inputs)
            runner.run()
            error = relative_error(runner.result(), reference)
        except Exception as exc:  # a peer's failure must not stop the suite
            failures[name] = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:160]
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            continue
        if not error <= case.rtol:
            failures[name] = f"wrong result: relative error {error:.2e} > {case.rtol:.0e}"
            continue
        runners[name] = runner
    return runners, failures


def batch_size(run) -> int:
    """Calls per sample so that one sample lasts at least BATCH_SECONDS."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(np.ceil(BATCH_SECONDS / once)))


def sample(run, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def time_interleaved(runners: dict, samples: int) -> dict[str, list[float]]:
    """Seconds per call of each runner: `samples` samples each, interleaved in rotating rounds."""
    names = list(runners)
    calls = {name: batch_size(runners[name].run) for name in names}
    times = {name: [] for name in names}
    rounds = -(-samples // ROUND)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            time.sleep(PAUSE_SECONDS)
            for _ in range(min(ROUND, samples - len(times[name]))):
                times[name].append(sample(runners[name].run, calls[name]))
    return times


def limit_for(case: Case, limits: dict) -> tuple[str, float] | None:
    """The machine limit a case's rate is read against: the FMA peak, or the read (sums)
    or copy (cases that write as much as they read) bandwidth of the cache when the
    case's working set fits in the last-level cache, else of DRAM."""
    if case.unit == "GFLOP/s":
        return "FMA peak", limits.get("fma")
    if case.unit == "GB/s":
        kind = "copy" if case.name in ("softmax", "fused_ew", "layernorm") else "read"
        where = "cache" if case.work <= tex.Target("llvm").cache_bytes[2] else "dram"
        return f"{kind} {where} bandwidth", limits.get(f"{kind} {where}")
    return None


def format_table(results: dict, columns: list[str]) -> list[str]:
    """One line per case: NumPy (the better of its two columns), tex's hand schedule and
    tuned kernel, tex over NumPy, each peer, and both tex columns over the best peer."""
    peers = [c for c in columns if c not in TEX_SYSTEMS + ("numpy", "numpy-2thr")]
    widths = {p: max(8, len(p) + 1) for p in peers}
    header = (f"{'case':34} {'unit':8} {'numpy':>8} {'tex':>8} {'tuned':>8} {'tex/np':>7} "
              + "".join(f"{p:>{widths[p]}}" for p in peers)
              + f" {'tex/best peer':>14} {'tuned/best peer':>16}")
    lines = [header, "-" * len(header)]
    for name, record in results.items():
        rates = record["rates"]
        numpy_best = max((rates[n] for n in ("numpy", "numpy-2thr") if n in rates), default=None)
        tex_rate, tuned_rate = rates.get("tex"), rates.get("tex tuned")
        best_peer = max([rates[p] for p in peers if p in rates] + [numpy_best or 0])

        def cell(value, width=8, fmt="{:.1f}"):
            return f"{fmt.format(value):>{width}}" if value is not None else f"{'-':>{width}}"

        def over(value, base):
            return value / base if value and base else None

        lines.append(f"{record['title'][:34]:34} {record['unit']:8} {cell(numpy_best)} "
                     f"{cell(tex_rate)} {cell(tuned_rate)} "
                     f"{cell(over(tex_rate, numpy_best), 7, '{:.2f}')}"
                     + "".join(cell(rates.get(p), widths[p]) for p in peers)
                     + f" {cell(over(tex_rate, best_peer), 14, '{:.2f}')}"
                     + f" {cell(over(tuned_rate, best_peer), 16, '{:.2f}')}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--systems", help="comma-separated systems (default: all installed)")
    parser.add_argument("--samples", type=int, default=21, help="samples per system (default 21)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--no-limits", action="store_true",
                        help="skip measuring the FMA peak and the bandwidth")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip measuring build latency and call overhead")
    parser.add_argument("--tune-trials", type=int, default=tex_tuned_impl.TRIALS,
                        help="trials the tuner measures per case for 'tex tuned' (default "
                             f"{tex_tuned_impl.TRIALS}; a kept log counts)")
    args = parser.parse_args(argv)
    tex_tuned_impl.TRIALS = args.tune_trials
    cases = [CASES_BY_NAME[n] for n in args.cases.split(",")] if args.cases else CASES
    systems, notes = load_systems(set(args.systems.split(",")) if args.systems else None)

    print(f"# python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"# {peak.cpu_name()} "
          f"(LLVM: {tex.Target('llvm').cpu}), "
          f"{os.cpu_count()} cores, numpy {np.__version__}, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for note in notes:
        print(f"# {note}")
    limits = {}
    if not args.no_limits:
        limits["fma"] = peak.fma_peak()
        limits.update(peak.bandwidth())
        sizes = peak.working_sets()
        print(f"# machine limits: FP32 FMA peak {limits['fma']:.0f} GFLOP/s; DRAM "
              f"({sizes['dram'] >> 20} MiB) read {limits['read dram']:.1f}, copy "
              f"{limits['copy dram']:.1f} GB/s; last-level cache ({sizes['cache'] >> 20} MiB) "
              f"read {limits['read cache']:.1f}, copy {limits['copy cache']:.1f} GB/s")

    results = {}
    columns = list(systems)
    for case in cases:
        runners, failures = prepare(case, systems)
        times = time_interleaved(runners, args.samples)
        rates = {name: case.rate(statistics.median(ts)) for name, ts in times.items()}
        results[case.name] = {"title": case.title, "unit": case.unit, "rates": rates,
                              "failures": failures,
                              "build_ms": {n: 1e3 * r.build_seconds for n, r in runners.items()},
                              "notes": {n: r.notes for n, r in runners.items() if r.notes}}
        spread = {n: (case.rate(max(ts)), case.rate(min(ts))) for n, ts in times.items()}
        detail = ", ".join(f"{n} {rates[n]:.1f} ({lo:.0f}..{hi:.0f})"
                           for n, (lo, hi) in spread.items())
        print(f"# {case.name}: {detail}", flush=True)
        for name, why in failures.items():
            print(f"#   {name}: {why}")

    print()
    for line in format_table(results, columns):
        print(line)
    print()
    for name, record in results.items():
        limit = limit_for(CASES_BY_NAME[name], limits)
        for system in TEX_SYSTEMS:
            rate = record["rates"].get(system)
            if limit and limit[1] and rate:
                print(f"{system} {name}: {rate / limit[1]:.0%} of the {limit[0]} "
                      f"({limit[1]:.0f} {record['unit']}); build "
                      f"{record['build_ms'].get(system, 0):.0f} ms")
    latency = {}
    if not args.no_latency:
        latency = {"build_ms": bench_latency.build_latency(),
                   "call_us": bench_latency.call_overhead()}
        print("build latency of the tuned 1024^3 matmul (ms): " + ", ".join(
            f"{k} {v:.3g}" for k, v in latency["build_ms"].items()))
        print("call overhead, 64 floats (us): " + ", ".join(
            f"{k} loop {v:.1f}" for k, v in latency["call_us"].items()))
    if args.json:
        out = {name: {"unit": r["unit"], "title": r["title"], **r["rates"]}
               for name, r in results.items()}
        out.update(latency)
        out["machine"] = {"cpu": peak.cpu_name(), "llvm_cpu": tex.Target("llvm").cpu,
                          "cores": os.cpu_count(), "fma_peak_gflops": limits.get("fma"),
                          **{f"{k.replace(' ', '_')}_gbs": v for k, v in limits.items()
                             if k != "fma"}}
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
