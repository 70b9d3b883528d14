"""Benchmark: float32 matmul (1024^3 by default), tex's best hand schedule against NumPy.

    python -m bench.matmul             # or: python bench/matmul.py
    python -m bench.matmul --save      # also write bench/results/matmul.txt
    python -m bench.matmul --sweep     # time every schedule variant in bench/schedules.py
    python -m bench.matmul --alone     # tex and NumPy each in a process of its own

Prints, in one run: the GFLOP/s of NumPy and of tex, each the median of
interleaved samples (one tex call, one NumPy call, alternating which goes
first), their ratio, and tex's build times: the first build in the process
(cold), a rebuild of the same schedule object (the per-schedule cache), and a
build of a freshly declared identical schedule (the compiled-code cache).
Results are checked against NumPy in float64 before anything is timed.

Both libraries run thread pools whose idle threads spin for a while before
they sleep (OpenBLAS for about 2^28 cycles, tex's pool for some tens of
microseconds), so in an interleaved run OpenBLAS's spinning threads would
steal cores from tex. Unless the environment says otherwise, the benchmark
therefore sets OPENBLAS_THREAD_TIMEOUT=4 before NumPy loads, so that its idle
threads sleep at once; the printed header shows the value.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

#: OpenBLAS's idle threads sleep at once (see the docstring); read when it loads.
POOL_SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4"}
for _name, _value in POOL_SETTINGS.items():
    os.environ.setdefault(_name, _value)

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import tex  # noqa: E402
from bench import peak  # noqa: E402
from bench.schedules import BEST_MATMUL, matmul  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "matmul.txt"

#: The variants `--sweep` compares (keyword arguments of bench.schedules.matmul).
VARIANTS = [
    {"mr": 4, "nr": 64},
    {"mr": 6, "nr": 32},
    {"mr": 8, "nr": 32},
    {"mr": 4, "nr": 48},
    {"mr": 6, "nr": 64},
    {"mr": 6, "nr": 64, "unroll_k": 2},
    {"mr": 6, "nr": 64, "unroll_k": 4},
    {"mr": 5, "nr": 64},
    {"mr": 12, "nr": 32},
    {"mr": 14, "nr": 32},
    {"mr": 4, "nr": 64, "pack_a": True},
    {"mr": 6, "nr": 64, "pack_a": True},
    {"mr": 6, "nr": 64, "kc": 512},
    {"mr": 4, "nr": 64, "kc": 256},
    {"mr": 4, "nr": 64, "kc": 512},
    {"mr": 8, "nr": 32, "kc": 256},
    {"mr": 4, "nr": 64, "kc": 256, "pack_a": True},
]


def inputs(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)


def check(kernel, a, b):
    """Run `kernel` once and compare with NumPy in float64."""
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    kernel(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4)


def interleaved(kernel, a, b, samples: int):
    """Median seconds of tex and of NumPy, sampled alternately (after two warm-up calls)."""
    c_tex = np.empty((a.shape[0], b.shape[1]), np.float32)
    c_np = np.empty_like(c_tex)
    run = {"tex": lambda: kernel(a, b, c_tex), "numpy": lambda: np.matmul(a, b, out=c_np)}
    times = {"tex": [], "numpy": []}
    for fn in run.values():
        fn()
        fn()
    for r in range(samples):
        for name in (("tex", "numpy") if r % 2 == 0 else ("numpy", "tex")):
            start = time.perf_counter()
            run[name]()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["tex"]), statistics.median(times["numpy"])


def build_times(size: int, config: dict):
    """(cold, same schedule again, fresh identical schedule) build seconds, and the kernel."""
    s, args = matmul(size, size, size, **config)
    start = time.perf_counter()
    kernel = tex.build(s, args)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = tex.build(s, args)
    rebuild = time.perf_counter() - start
    assert again is kernel
    s2, args2 = matmul(size, size, size, **config)
    start = time.perf_counter()
    tex.build(s2, args2)
    fresh = time.perf_counter() - start
    return (cold, rebuild, fresh), kernel


def machine_load() -> str:
    """Load averages, and the processes using the most CPU other than this one."""
    lines = ["load average (1, 5, 15 min): %.2f %.2f %.2f on %d cores"
             % (*os.getloadavg(), os.cpu_count())]
    try:
        ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etime,args", "--sort=-pcpu"],
                            capture_output=True, text=True, timeout=5).stdout.splitlines()
        me = str(os.getpid())
        busy = [ln.split(None, 4) for ln in ps[1:]]
        busy = [f for f in busy if len(f) == 5 and me not in f[:2] and float(f[2]) >= 10.0]
        lines += ["other busy processes (pid %cpu elapsed command):"] + \
            [f"  {f[0]} {f[2]} {f[3]} {f[4][:70]}" for f in busy[:6]] if busy \
            else ["no other busy process"]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return "\n".join(lines)


def gflops(size: int, seconds: float) -> float:
    return 2 * size ** 3 / seconds / 1e9


def describe(config: dict) -> str:
    text = f"{config['mr']}x{config['nr']} register tile"
    if config.get("kc"):
        text += f", k blocked by {config['kc']}"
    if config.get("pack_a"):
        text += ", A packed"
    if config.get("unroll_k", 1) > 1:
        text += f", k unrolled by {config['unroll_k']}"
    return text


def benchmark(size: int, samples: int) -> list[str]:
    load_before = machine_load()
    (cold, rebuild, fresh), kernel = build_times(size, BEST_MATMUL)
    a, b = inputs(size)
    check(kernel, a, b)
    t_tex, t_np = interleaved(kernel, a, b, samples)
    return [
        f"matmul {size}x{size}x{size} float32, tex schedule: {describe(BEST_MATMUL)}, "
        "B packed in panels, parallel over column panels",
        f"medians of {samples} interleaved samples each; "
        + ", ".join(f"{n}={os.environ.get(n)}" for n in POOL_SETTINGS),
        f"  NumPy      {gflops(size, t_np):8.1f} GFLOP/s   ({1e3 * t_np:.2f} ms)",
        f"  tex        {gflops(size, t_tex):8.1f} GFLOP/s   ({1e3 * t_tex:.2f} ms)",
        f"  tex/NumPy  {t_np / t_tex:8.3f}",
        "tex build times",
        f"  first build in the process (cold)      {1e3 * cold:9.1f} ms",
        f"  same schedule object again (cached)    {1e3 * rebuild:9.3f} ms",
        f"  fresh identical schedule (structural)  {1e3 * fresh:9.1f} ms",
        "machine before the run: " + load_before,
        "machine after the run: " + machine_load().splitlines()[0],
    ]


def one_side(name: str, size: int, samples: int) -> float:
    """Median seconds of tex's best schedule or of NumPy, with nothing else running."""
    a, b = inputs(size)
    c = np.empty((size, size), np.float32)
    if name == "tex":
        s, args = matmul(size, size, size, **BEST_MATMUL)
        kernel = tex.build(s, args)
        check(kernel, a, b)
        run = lambda: kernel(a, b, c)  # noqa: E731
    else:
        run = lambda: np.matmul(a, b, out=c)  # noqa: E731
    for _ in range(3):
        run()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alone(size: int, samples: int) -> list[str]:
    """Each side timed in a process of its own, so neither's thread pool meets the other's."""
    lines = [f"matmul {size}^3 float32, each side alone in a fresh process, median of "
             f"{samples}; " + ", ".join(f"{n}={os.environ.get(n)}" for n in POOL_SETTINGS)]
    seconds = {}
    for name in ("numpy", "tex"):
        out = subprocess.run([sys.executable, "-m", "bench.matmul", "--only", name,
                              "--size", str(size), "--samples", str(samples)],
                             capture_output=True, text=True, check=True,
                             cwd=pathlib.Path(__file__).resolve().parent.parent)
        seconds[name] = float(out.stdout.split()[-1])
        lines.append(f"  {name:6} {gflops(size, seconds[name]):8.1f} GFLOP/s")
    lines.append(f"  tex/NumPy {seconds['numpy'] / seconds['tex']:6.3f}")
    return lines


def sweep(size: int, samples: int, clock=time.perf_counter) -> list[str]:
    """Every variant and NumPy, timed round-robin (one call each per round); medians."""
    a, b = inputs(size)
    c = np.empty((size, size), np.float32)
    calls = {"NumPy": lambda: np.matmul(a, b, out=c)}
    for config in VARIANTS:
        s, args = matmul(size, size, size, **config)
        kernel = tex.build(s, args)
        check(kernel, a, b)
        calls[describe(config)] = lambda kernel=kernel: kernel(a, b, c)
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(samples):
        for name, fn in calls.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    t_np = statistics.median(times["NumPy"])
    lines = [f"{'variant':44} {'GFLOP/s':>8} {'/NumPy':>7}"]
    for name, ts in times.items():
        t = statistics.median(ts)
        lines.append(f"{name:44} {gflops(size, t):8.1f} {t_np / t:7.3f}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="M = N = K (default 1024)")
    parser.add_argument("--samples", type=int, default=20, help="timed calls of each")
    parser.add_argument("--sweep", action="store_true", help="compare the schedule variants")
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS.name} too")
    parser.add_argument("--alone", action="store_true",
                        help="time tex and NumPy each in a process of its own")
    parser.add_argument("--only", choices=("tex", "numpy"), help=argparse.SUPPRESS)
    parser.add_argument("--thread-time", action="store_true",
                        help="sweep with the calling thread's CPU time instead of wall time "
                             "(for TEX_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 on a busy machine)")
    args = parser.parse_args(argv)
    if args.only:  # one side of --alone: print the median seconds
        print(one_side(args.only, args.size, args.samples))
        return
    if args.alone:
        lines = alone(args.size, args.samples) + ["machine: " + machine_load().splitlines()[0]]
    elif args.sweep:
        load_before = machine_load()
        clock = time.thread_time if args.thread_time else time.perf_counter
        lines = sweep(args.size, args.samples, clock)
        lines += [f"medians of {args.samples} round-robin samples, clock: {clock.__name__}",
                  "machine before the run: " + load_before,
                  "machine after the run: " + machine_load().splitlines()[0]]
    else:
        lines = benchmark(args.size, args.samples)
    print("\n".join(lines))
    if args.save:
        command = " ".join(["python -m bench.matmul"] + list(argv or sys.argv[1:]))
        threads = ", ".join(f"{n}={os.environ.get(n, '(unset)')}"
                            for n in ("TEX_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
        header = [f"# {command}",
                  f"# {peak.cpu_name()}, {os.cpu_count()} cores, {threads}, "
                  f"numpy {np.__version__}, tex {tex.__version__}"]
        RESULTS.parent.mkdir(exist_ok=True)
        with open(RESULTS, "a") as out:
            out.write("\n".join(header + lines) + "\n\n")
        print(f"appended to {RESULTS}")

if __name__ == "__main__":
    main()
