"""Random programs under random legal schedules, compiled and compared with NumPy.

Each case is one seed. `fuzz_programs` writes a small random DAG of 2-5
computes with its NumPy reference (float32, sometimes float64, or int32
without reductions; broadcasts, transposed reads, reads at shifted, clamped,
reversed, halved, wrapped or gathered indices, sum/max/min reductions);
`fuzz_schedules` writes a random legal schedule for it (split, reorder, fuse,
tile, compute_inline, compute_at, compute_root, cache_read, cache_write,
rfactor, parallel, vectorize, unroll). The case runs as one script: build,
run on random data (twice, with other sizes, when some are symbolic) into
NaN-filled outputs, compare with the reference computed in float64. A
failure shows the seed, the whole script (program, schedule steps, check:
save it and run it with python to reproduce), the schedule's records and the
lowered loop program.

    python -m pytest tests/test_fuzz.py                          # seeds 0..39
    TEX_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py   # seeds 0..1999
    TEX_FUZZ_SEED=5000 TEX_FUZZ_EXAMPLES=500 python -m pytest tests/test_fuzz.py
    python tests/test_fuzz.py 17 > case17.py                     # the script of seed 17

`test_random_gpu_programs` runs the same programs under GPU schedules
(loops bound to blocks and threads, reductions across threads): built for
"cuda" and compiled by NVRTC, and run against the reference, on the GPU
when one is present, else in the CPU simulator (`CudaKernel.simulate`). A
schedule tex refuses with a clear `TexError` passes, but most must build.

The number of cases comes from `tex.config.fuzz_examples()` (TEX_FUZZ_EXAMPLES,
default 40), the first seed from `tex.config.fuzz_seed()` (TEX_FUZZ_SEED, default 0). The bugs the
fuzzer found are kept at the end of this file as small named regression tests.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import traceback

import numpy as np
import pytest

import tex
from checks import check, random_array
from fuzz_programs import Program, random_program
from fuzz_schedules import random_schedule
from tex import config
from tex.runtime.cuda_device import gpu_available

PRELUDE = '''\
import numpy as np
import tex


def grid(*sizes):
    """One index array per axis of a box of `sizes`, ready to broadcast (like np.ogrid)."""
    return tuple(np.arange(n).reshape([-1 if a == d else 1 for a in range(len(sizes))])
                 for d, n in enumerate(sizes))


def at(array, *index):
    """array[index], each index clamped into range (np.where evaluates both sides)."""
    return array[tuple(np.clip(i, 0, n - 1) for i, n in zip(index, array.shape))]


def sigmoid(x):
    return 0.5 + 0.5 * np.tanh(0.5 * x)  # 1 / (1 + exp(-x)), without overflow


def data(shape, dtype, rng):
    """Random inputs, never all zeros."""
    if dtype == "int32":
        return rng.integers(-50, 50, size=shape).astype(dtype)
    return (rng.standard_normal(shape) + 0.1).astype(dtype)


def tolerance(exact, rounded, length, dtype):
    """atol for an output that is `exact` in float64 and `rounded` computed by NumPy in float32.

    1e-4 (float64: 1e-9) of its largest value, more after long reductions; or 64 times
    the rounding error NumPy makes (scaled to dtype's precision), whichever is larger.
    """
    scale = 1e-4 if dtype == "float32" else 1e-9
    error = np.max(np.abs(rounded - exact)) * np.finfo(dtype).eps / np.finfo(np.float32).eps
    size = max(1.0, np.max(np.abs(exact)))
    return max(scale * size * (1 + np.sqrt(length) / 8), 64 * error)
'''

RTOL = {"float32": 1e-4, "float64": 1e-9}


def fuzz_seeds() -> range:
    start = config.fuzz_seed()
    return range(start, start + config.fuzz_examples())


class Case:
    """One seed's script: prelude, program, schedule, then the check.

    `write()` executes the program and the schedule as it writes them (the
    schedule's choices read the live schedule); `check()` executes the rest.
    With `gpu`, the schedule binds GPU threads and the kernel is built for
    "cuda": compiled to PTX, and run and compared on the GPU when one is here, else
    in the CPU simulator.
    """

    def __init__(self, seed: int, gpu: bool = False):
        self.seed, self.gpu, self.ns, self.schedule = seed, gpu, {}, []
        self.rng = random.Random(seed)
        self.program = random_program(self.rng)
        self.check_lines = reference_function(self.program) + [""] + \
            check_lines(self.program, seed, gpu)

    def write(self) -> "Case":
        exec(PRELUDE + "\n".join(self.program.tex_lines), self.ns)  # noqa: S102
        outputs = [t.name for t in self.program.outputs]
        random_schedule(self.rng, self.ns, outputs, self.schedule, self.gpu)
        return self

    def check(self):
        exec("\n".join(self.check_lines), self.ns)  # noqa: S102 - the script is the test

    def script(self) -> str:
        return "\n".join([PRELUDE, "# the program", *self.program.tex_lines, "",
                          "# the schedule", *self.schedule, "", *self.check_lines])

    def report(self) -> str:
        """The failure report: seed, traceback, script, the schedule's records, loop program."""
        s, args = self.ns.get("s"), self.ns.get("args")
        return (f"fuzz seed {self.seed} failed:\n{traceback.format_exc()}\n"
                f"--- script (python reproduces it) ---\n{self.script()}\n"
                f"--- the schedule's records ---\n{_text(lambda: str(s))}\n"
                f"--- tex.lower(s, args) ---\n{_text(lambda: str(tex.lower(s, args)))}")


def _text(make) -> str:
    try:
        return make()
    except Exception as err:  # noqa: BLE001 - shown in a failure report
        return f"(not available: {type(err).__name__}: {err})"


def reference_function(prog: Program) -> list[str]:
    params = ", ".join([t.name for t in prog.inputs] + [d.text for d in prog.symbols])
    body = prog.reference_lines + [f"return {', '.join(t.name for t in prog.outputs)},"]
    if any(t.dtype for t in prog.inputs):   # integer inputs, cast to the float type
        body.insert(0, f"ftype = {prog.inputs[0].name}.dtype")
    return [f"def reference({params}):"] + ["    " + line for line in body]


def check_lines(prog: Program, seed: int, gpu: bool = False) -> list[str]:
    """Build; run with NaN-filled outputs (for each set of sizes); compare with the reference.
    For a GPU schedule without a GPU here: build, check that PTX came out, and run
    in the CPU simulator."""
    args = [t.name for t in prog.inputs + prog.outputs]
    target = ', target="cuda"' if gpu else ""
    lines = [f"args = [{', '.join(args)}]",
             "# print(s)",
             f"# print(tex.lower(s, args{target}))",
             f"f = tex.build(s, args{target})",
             f"rng = np.random.default_rng({seed})"]
    call = "f"
    if gpu and not gpu_available():
        lines.append('assert ".entry" in f.get_source("ptx")')
        call = "f.simulate"
    run = _run_lines(prog, call)
    if not prog.symbols:
        return lines + run
    names = ", ".join(d.text for d in prog.symbols)
    runs = ", ".join("(" + ", ".join(str(d.sizes[k]) for d in prog.symbols) + ",)"
                     for k in range(2))
    return lines + [f"for {names}, in [{runs}]:"] + ["    " + line for line in run]


def _run_lines(prog: Program, call: str) -> list[str]:
    is_int, dtype = prog.dtype == "int32", prog.dtype
    fill = "np.iinfo(np.int32).min" if is_int else "np.nan"
    lines = [f'{t.name}_np = data({prog.shape(t.dims)}, "{t.dtype or dtype}", rng)'
             for t in prog.inputs]
    lines += [f'{t.name}_out = np.full({prog.shape(t.dims)}, {fill}, "{dtype}")'
              for t in prog.outputs]
    arrays = [t.name + "_np" for t in prog.inputs] + [t.name + "_out" for t in prog.outputs]
    lines.append(f"{call}({', '.join(arrays)})")
    sizes = [f"{d.text}={d.text}" for d in prog.symbols]
    versions = [("expected", "int64" if is_int else "float64")]
    versions += [] if is_int else [("rounded", "float32")]
    for name, version in versions:
        params = [f'{t.name}_np.astype("{"int64" if t.dtype else version}")'
                  for t in prog.inputs]
        lines.append(f"{name} = reference({', '.join(params + sizes)})")
    for k, t in enumerate(prog.outputs):
        if is_int:
            lines.append(f"np.testing.assert_array_equal({t.name}_out, expected[{k}], "
                         f"err_msg='{t.name}')")
        else:
            atol = f'tolerance(expected[{k}], rounded[{k}], {t.length}, "{dtype}")'
            lines.append(f"np.testing.assert_allclose({t.name}_out, expected[{k}], "
                         f"rtol={RTOL[dtype]}, atol={atol}, err_msg='{t.name}')")
    return lines


def run_case(seed: int, gpu: bool = False) -> bool:
    """Run seed's case; on any failure, fail with the seed, the script and the loop program.

    On a GPU, a schedule tex refuses with a clear error (a `TexError` while
    scheduling, lowering or building: too many threads, a warp reduction over
    a block that is not whole warps, ...) is no failure; returns whether the
    case got past building."""
    case = Case(seed, gpu)
    try:
        case.write().check()
    except tex.TexError:
        if not gpu:
            pytest.fail(case.report(), pytrace=False)
        return False
    except Exception:  # noqa: BLE001 - every failure is reported with its script
        pytest.fail(case.report(), pytrace=False)
    return True


@pytest.mark.parametrize("seed", fuzz_seeds(), ids=lambda seed: f"seed{seed}")
def test_random_program(seed):
    run_case(seed)


def test_random_gpu_programs():
    """The same programs with GPU schedules; most of them must build."""
    seeds = fuzz_seeds()
    built = sum(run_case(seed, gpu=True) for seed in seeds)
    assert built >= 0.6 * len(seeds), f"only {built} of {len(seeds)} GPU schedules built"


FEATURES = [
    "tex.var(", '"float64"', '"int32"', "tex.sum(", "tex.max(", "tex.min(", "where=",
    "tex.if_then_else(", " - 1)", " + 1 <", " >= 2)", " // 2", ") % ", " - 1 - ", "M[i0] % ",
    'tex.cast("float32", M[', "tex.exp(", "tex.sqrt(", " / (", " // (",
    ".split(", "nparts=", ".reorder(", ".fuse(", ".tile(", ".vectorize(", ".unroll(",
    ".parallel(", ".compute_at(", ".compute_inline(", ".compute_root(", "s.cache_read(",
    "s.cache_write(", "s.rfactor(", "create_schedule([C.op, ",
]


def test_generator_writes_every_feature():
    """The first seeds' scripts use every construct and primitive the generator knows."""
    scripts = "\n".join(Case(seed).write().script() for seed in range(80))
    missing = [f for f in FEATURES if f not in scripts.replace(PRELUDE, "")]
    assert not missing, f"no script of seeds 0..79 uses {missing}"


# --- regressions: bugs the fuzzer found ------------------------------------------------------

@pytest.mark.parametrize("mask", ["constants", "row"])
def test_vectorized_select_with_lane_invariant_values(mask):
    """A select whose condition varies along a vectorized loop but whose values do not.

    Found by fuzz seeds 256 and 264 (of the first generator): vectorize_loops kept the
    scalar select, whose loop variable then escaped its loop (BuildError). Fixed in 393b68e.
    """
    A = tex.placeholder((13, 37), name="A")
    X = tex.placeholder((13,), name="X")
    if mask == "constants":   # a step function of the data
        body = lambda i, j: A[i, j] * tex.if_then_else(A[i, j] <= 0.0, 0.0, 1.5)  # noqa: E731
    else:                     # an upper triangle of a row broadcast
        body = lambda i, j: tex.if_then_else(i < j, X[i], 0.5)  # noqa: E731
    C = tex.compute((13, 37), body, name="C")
    s = tex.create_schedule(C.op)
    _, inner = s[C].split(C.op.axis[1], factor=8)
    s[C].vectorize(inner)
    a, x = random_array((13, 37)), random_array((13,))
    i, j = np.indices((13, 37))
    if mask == "constants":
        check(s, [A, C], [a], a * np.where(a <= 0, 0.0, 1.5))
    else:
        check(s, [X, C], [x], np.where(i < j, x[:, None], 0.5))


def test_compute_at_producer_of_a_gather():
    """A stage computed at the loop of a consumer that reads it at a position loaded from
    an input (a gather). Found by fuzz seeds 42 and 216 (with a cache_read copy there):
    the region of D started at `M[i] % 13`, a tensor read left unlowered in its offsets."""
    A = tex.placeholder((13,), name="A")
    M = tex.placeholder((13,), "int32", name="M")
    D = tex.compute((13,), lambda i: A[i] * 2.0, name="D")
    E = tex.compute((13,), lambda i: D[M[i] % 13], name="E")
    s = tex.create_schedule(E.op)
    s[D].compute_at(s[E], E.op.axis[0])
    a, m = random_array((13,)), random_array((13,), "int32")
    check(s, [A, M, E], [a, m], 2 * a[m % 13])


def run_case_in_a_child(seed: int, seconds: float):
    """Seed's CPU case in a fresh interpreter (disk cache off), which must exit cleanly
    within `seconds`: for failures that crash or hang rather than raise."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_fuzz import Case; "
            f"Case({seed}).write().check()")
    env = {**os.environ, "TEX_CACHE_DIR": "off"}
    result = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)],
                            capture_output=True, text=True, env=env, timeout=seconds)
    assert result.returncode == 0, f"seed {seed}: exit {result.returncode}\n" \
        + result.stderr[-3000:]


def test_a_uniform_division_in_a_vectorized_branch():
    """Fuzz seed 777696 segfaulted: `C[.. (k1 + 2) % n1 ..]` read in one arm of a select,
    in an inner loop LLVM's vectorizer if-converts. LLVM computed the division (uniform
    across lanes) under the first lane's mask only and gave the other lanes a poison
    address. `hoist_divisions` now computes it before the loops. Run in a child process:
    the failure is a crash."""
    run_case_in_a_child(777696, seconds=300)


def test_index_arithmetic_llvm_widens_to_128_bits_links(monkeypatch):
    """Fuzz seed 932271, built with the IR's claims stripped (TEX_LLVM_CLAIMS=0): without
    `nsw`, LLVM widened a remainder of the index arithmetic to 128 bits and called
    `__umodti3`, which neither tex nor the process defined. tex defines the 128-bit
    division routines now (`tex.codegen.llvm_builtins`)."""
    monkeypatch.setenv("TEX_LLVM_CLAIMS", "0")
    monkeypatch.setenv("TEX_CACHE_DIR", "off")
    run_case(932271)


def test_min_max_of_selects_compiles_in_seconds():
    """Fuzz seed 777473 (min/max reductions over selects of loads) kept LLVM's O3 pipeline
    busy for minutes with the old `a > b ? a : b` form of max; it builds in about a second
    with NumPy's NaN-propagating form. A child process with a time limit, so that a
    regression fails here instead of stalling the suite."""
    run_case_in_a_child(777473, seconds=120)


def test_a_thread_loop_of_one_iteration_in_a_wider_block():
    """Fuzz seed 777396 (GPU, simulated) had 3 of 21 elements wrong: a stage bound to
    threadIdx.x with one iteration, in a block of 4 threads, lost its loop to the
    simplifier, so all 4 threads ran it (adding one sum four times over)."""
    from tex.runtime import cuda_simulator
    if cuda_simulator.compiler() is None:
        pytest.skip("the simulator needs g++")
    assert run_case(777396, gpu=True)


if __name__ == "__main__":
    print(Case(int(sys.argv[1])).write().script() if len(sys.argv) > 1 else __doc__)
