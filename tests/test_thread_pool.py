"""tex's thread pool (tex.codegen.thread_pool) through the kernels that call it.

Most kernels here add A to C in place (`C[i] += A[i]`), so an iteration that
runs twice, or not at all, shows in the result. Tests that need a process of
their own (TEX_NUM_THREADS, fork) run a script in a fresh Python and count
the process's threads in /proc/self/task.
"""
import ctypes
import os
import pathlib
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tex
from tex import config
from tex import dtype as dt
from tex.codegen import llvm
from tex.dtype import INDEX
from tex.expr import Binary, Const, Var
from tex.ir import Buffer, For, Load, LoweredFunc, Store

ROOT = pathlib.Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(11)
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def i64(value):
    return Const(INDEX, value)


def accumulate(outer="parallel", inner="serial"):
    """`C[i, j] += A[i, j] + i` over an (n, m) array, loops of the given kinds."""
    n, m, i, j = Var("n"), Var("m"), Var("i"), Var("j")
    A, C = Buffer("A", dt.int64, (n, m)), Buffer("C", dt.int64, (n, m))
    at = Binary("add", Binary("mul", i, m), j)
    value = Binary("add", Load(C, (at,)), Binary("add", Load(A, (at,)), i))
    body = For(j, i64(0), m, inner, Store(C, value, (at,)))
    return LoweredFunc("accumulate", (A, C), (n, m), For(i, i64(0), n, outer, body))


def call(compiled, arrays, sizes):
    pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    _ENTRY(compiled.address)(pointers, (ctypes.c_int64 * len(sizes))(*sizes))


def expected(a, c):
    return c + a + np.arange(a.shape[0])[:, None]


@pytest.fixture(scope="module")
def parallel_rows():
    return llvm.build(accumulate())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 1000, 100003])
def test_every_iteration_runs_once(parallel_rows, n):
    a, c = RNG.integers(-9, 9, (n, 3)), RNG.integers(-9, 9, (n, 3))
    want = expected(a, c)
    call(parallel_rows, [a, c], [n, 3])
    np.testing.assert_array_equal(c, want)


def test_many_small_jobs_in_a_row(parallel_rows):
    """Back-to-back jobs: a late thread never runs a finished job's chunk again."""
    a, c = RNG.integers(-9, 9, (40, 2)), np.zeros((40, 2), np.int64)
    for _ in range(3000):
        call(parallel_rows, [a, c], [40, 2])
    np.testing.assert_array_equal(c, 3000 * expected(a, np.zeros_like(c)))


def test_a_parallel_loop_nested_in_another_runs_serially():
    func = accumulate(inner="parallel")
    assert str(llvm.emit_llvm(func)).count("call void @\"tex_parallel_for\"") == 1
    compiled = llvm.build(func)
    a, c = RNG.integers(-9, 9, (57, 301)), RNG.integers(-9, 9, (57, 301))
    want = expected(a, c)
    call(compiled, [a, c], [57, 301])
    np.testing.assert_array_equal(c, want)


def test_python_threads_call_parallel_kernels_at_once(parallel_rows):
    """Calls release the GIL; one gets the pool, the others run inline, all correct."""
    def work(seed):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2000, 6000))
        a, c = rng.integers(-9, 9, (n, 16)), np.zeros((n, 16), np.int64)
        for _ in range(100):
            call(parallel_rows, [a, c], [n, 16])
        return np.array_equal(c, 100 * expected(a, np.zeros_like(c)))

    with ThreadPoolExecutor(4) as threads:
        assert all(threads.map(work, range(8)))


def test_rfactor_then_parallel_partial_sums():
    n = tex.var("n")
    A = tex.placeholder((n, 1000), name="A")
    k = tex.reduce_axis((0, 1000), name="k")
    B = tex.compute((n,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    ko, ki = s[B].split(k, nparts=8)
    BF = s.rfactor(B, ko)
    s[BF].parallel(BF.op.axis[0])
    s[B].parallel(B.op.axis[0])
    kernel = tex.build(s, [A, B])
    for rows in (1, 5, 300):
        a = RNG.standard_normal((rows, 1000)).astype("float32")
        np.testing.assert_allclose(kernel(a), a.sum(1), rtol=1e-4, atol=1e-3)


# --- in a process of its own ----------------------------------------------------------------
PRELUDE = """
import ctypes, os, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_thread_pool import accumulate, call, expected
from tex.codegen import llvm

def threads():
    return len(os.listdir("/proc/self/task"))

def run_once(compiled):
    a, c = np.ones((999, 4), np.int64), np.zeros((999, 4), np.int64)
    want = expected(a, c)
    call(compiled, [a, c], [999, 4])
    return np.array_equal(c, want)

compiled = llvm.build(accumulate())
"""


def run_script(body: str, **env) -> str:
    """Run PRELUDE + body in a fresh Python with `env` added; its stdout."""
    script = PRELUDE.format(tests=str(ROOT / "tests")) + textwrap.dedent(body)
    environ = dict(os.environ, **env,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("threads,workers", [("1", 0), ("3", 2)])
def test_tex_num_threads_sets_the_worker_count(threads, workers):
    out = run_script("""
        before = threads()
        print(run_once(compiled), threads() - before)
    """, TEX_NUM_THREADS=threads)
    assert out == f"True {workers}"


def test_a_forked_child_starts_workers_of_its_own():
    out = run_script("""
        assert run_once(compiled) and threads() >= 3  # the parent's pool: 2 workers
        pid = os.fork()
        if pid == 0:  # the child has one thread; its first parallel call starts 2 workers
            alone = threads()
            ok = run_once(compiled) and run_once(compiled)
            os._exit(0 if ok and alone == 1 and threads() == 3 else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), run_once(compiled))
    """, TEX_NUM_THREADS="3")
    assert out == "0 True"


def test_num_threads_is_the_usable_cpus_unless_set(monkeypatch):
    monkeypatch.delenv("TEX_NUM_THREADS", raising=False)
    assert config.num_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("TEX_NUM_THREADS", "5")
    assert config.num_threads() == 5
    monkeypatch.setenv("TEX_NUM_THREADS", "four")
    with pytest.raises(tex.ConfigError, match="TEX_NUM_THREADS is a whole number of threads, "
                       "got 'four'"):
        config.num_threads()
