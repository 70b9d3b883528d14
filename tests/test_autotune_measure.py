"""autotune.measure: configurations are built in worker processes, checked against the
reference and timed in a runner process; a bad candidate (wrong result, build error,
crash, hang, failing call) is reported as such and the next ones measure fine.

The template below is a 37x29x23 matmul (sizes no split factor divides) with tiling
knobs and a `fault` knob: every fault but "none" makes a candidate that goes wrong
in one way, at build time (in a builder) or at run time (in the runner).
"""
import ctypes
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tex
from autotune.errors import TuneError
from autotune.measure import ERROR_KINDS, Measurer, MeasureResult, _Plan, _time
from autotune.task import Task, template
from tex.runtime.kernel import Kernel

M, N, K = 37, 29, 23
ROOT = pathlib.Path(__file__).resolve().parent.parent

FAULTS = ["none", "plus_one", "raise", "exit", "segfault", "sleep", "bad_shape",
          "run_raise", "run_exit", "run_hang"]
_made = ["none"]  # the fault of the schedule made last; read by `faulty_calls` in the runner


@template("measure_test_matmul")
def matmul(cfg, m, n, k):
    cfg.define_knob("fault", FAULTS)
    fault = cfg["fault"].val
    if fault == "raise":
        raise ValueError("this candidate cannot be built\nsecond line")
    if fault == "exit":
        os._exit(3)
    if fault == "segfault":
        ctypes.string_at(0)
    if fault == "sleep":
        time.sleep(60)
    A = tex.placeholder((m, k + (fault == "bad_shape")), name="A")
    B = tex.placeholder((k, n), name="B")
    r = tex.reduce_axis((0, k), name="r")
    if fault == "plus_one":
        C = tex.compute((m, n), lambda i, j: tex.sum(A[i, r] * (B[r, j] + 1.0), axis=r),
                        name="C")
    else:
        C = tex.compute((m, n), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r), name="C")
    s = tex.create_schedule(C.op)
    cfg.define_split("ti", C.op.axis[0], num_outputs=2, policy="power2", max_factor=8)
    cfg.define_split("tj", C.op.axis[1], num_outputs=2, policy="power2", max_factor=8)
    io, ii = cfg["ti"].apply(s[C], C.op.axis[0])
    jo, ji = cfg["tj"].apply(s[C], C.op.axis[1])
    s[C].reorder(io, jo, ii, ji)
    _made[0] = fault
    return s, [A, B, C]


def make_task():
    return Task.from_template(matmul, (M, N, K), "llvm", reference=lambda a, b: a @ b)


TASK = make_task()


def config(fault="none", ti=4, tj=8, task=TASK):
    return task.space.from_json({"fault": fault, "ti": [-1, ti], "tj": [-1, tj]})


GOOD = [config(ti=ti, tj=tj) for ti, tj in [(1, 1), (4, 8), (8, 2), (2, 4)]]


@pytest.fixture(scope="module")
def measurer():
    with Measurer(TASK, timeout=30.0, repeat=2, min_repeat_ms=5.0) as m:
        yield m


@pytest.fixture
def faulty_calls(monkeypatch):
    """Kernel calls that fail as the runner's last schedule says ("run_*" faults).

    Only the runner calls kernels, and it is forked after this patch."""
    call = Kernel.__call__

    def faulty(self, *args):
        if _made[0] == "run_raise":
            raise RuntimeError("the kernel call failed")
        if _made[0] == "run_exit":
            os._exit(5)
        if _made[0] == "run_hang":
            time.sleep(60)
        return call(self, *args)

    monkeypatch.setattr(Kernel, "__call__", faulty)


def assert_fine(result, config, repeat=2):
    assert result.config == config
    assert result.error is None and result.message == "", result.message
    assert len(result.times) == repeat and all(t > 0 for t in result.times)
    assert result.seconds == np.median(result.times)
    assert result.build_seconds > 0


def assert_failed(result, config, kind, *words):
    assert result.config == config
    assert result.error == kind, (result.error, result.message)
    assert result.times == () and result.seconds == float("inf")
    for word in words:
        assert word in result.message, result.message


def test_good_configurations_are_timed_in_order(measurer):
    results = measurer.measure(GOOD)
    assert [r.config for r in results] == GOOD
    for result, cfg in zip(results, GOOD):
        assert_fine(result, cfg)
    again = measurer.measure(GOOD[::-1])  # the same workers, the code from their disk cache
    for result, cfg in zip(again, GOOD[::-1]):
        assert_fine(result, cfg)
    assert measurer.measure([]) == []


def test_each_failure_is_reported_and_the_next_candidates_measure(measurer):
    bad = [config("plus_one"), config("raise"), config("exit"), config("segfault", ti=2),
           config("bad_shape")]
    configs = [c for b, g in zip(bad, GOOD + GOOD) for c in (b, g)]
    results = measurer.measure(configs)
    assert [r.config for r in results] == configs
    wrong, build, exits, segfault, bad_shape = results[0::2]
    assert_failed(wrong, configs[0], "wrong", "output C", "max abs error", "relative")
    assert_failed(build, configs[2], "build", "ValueError: this candidate cannot be built")
    assert "second line" not in build.message
    assert_failed(exits, configs[4], "crash", "exit status 3")
    assert_failed(segfault, configs[6], "crash", "SIGSEGV")
    assert_failed(bad_shape, configs[8], "run", "ArgumentError", "A")
    for result, cfg in zip(results[1::2], configs[1::2]):
        assert_fine(result, cfg)
    assert {r.error for r in results} <= set(ERROR_KINDS) | {None}


def test_timeouts_and_failing_calls(faulty_calls):
    configs = [config("sleep"), GOOD[0], config("run_hang"), GOOD[1], config("run_exit"),
               GOOD[2], config("run_raise"), GOOD[3]]
    with Measurer(TASK, timeout=2.5, repeat=2, min_repeat_ms=2.0) as m:
        start = time.perf_counter()
        results = m.measure(configs)
        assert time.perf_counter() - start < 30  # the sleeps (60 s) were cut short
    assert_failed(results[0], configs[0], "timeout", "build", "2.5 s")
    assert_failed(results[2], configs[2], "timeout", "run", "2.5 s")
    assert_failed(results[4], configs[4], "crash", "runner", "exit status 5")
    assert_failed(results[6], configs[6], "run", "RuntimeError: the kernel call failed")
    for result, cfg in zip(results[1::2], configs[1::2]):
        assert_fine(result, cfg)


def test_a_slow_candidate_stops_after_one_repeat(measurer):
    slow, fine = measurer.measure(GOOD[:1], best_seconds=1e-12) + \
        measurer.measure(GOOD[2:3], best_seconds=10.0)
    assert slow.error is None and len(slow.times) == 1
    assert_fine(fine, GOOD[2])


def test_unchecked_measurement_times_even_a_wrong_kernel():
    with Measurer(TASK, check=False, repeat=1, min_repeat_ms=0.0) as m:
        wrong, = m.measure([config("plus_one")])
    assert_fine(wrong, config("plus_one"), repeat=1)


def test_integer_outputs_are_compared_exactly():
    @template("measure_test_int_add")
    def add(cfg, n, off):
        A = tex.placeholder((n,), "int32", name="A")
        cfg.define_knob("off", [0, off])
        B = tex.compute((n,), lambda i: A[i] + cfg["off"].val, name="B")
        s = tex.create_schedule(B.op)
        return s, [A, B]

    task = Task.from_template(add, (41, 1), "llvm")  # reference: the unscheduled kernel
    with Measurer(task, repeat=1, min_repeat_ms=0.0) as m:
        fine, off = m.measure([task.space.get(0), task.space.get(1)])
    assert fine.error is None
    assert off.error == "wrong" and "41 of 41 elements" in off.message


def test_each_repeat_makes_at_least_number_calls():
    calls = []
    plan = _Plan(inputs=[], reference=None, repeat=3, min_seconds=0.0, number=4)
    times = _time(lambda: calls.append(1), [], plan, best_seconds=None)
    assert len(times) == 3 and len(calls) == 12
    with pytest.raises(TuneError, match="number must be an int >= 1, got 0"):
        Measurer(TASK, number=0)


def test_misuse_raises():
    other = make_task()
    with Measurer(TASK) as m:
        with pytest.raises(TuneError, match="not a configuration"):
            m.measure([config(task=other)])
        with pytest.raises(TuneError, match="not a configuration"):
            m.measure([0])
        with pytest.raises(TuneError, match="best_seconds"):
            m.measure(GOOD[:1], best_seconds=0.0)
    with pytest.raises(TuneError, match="closed"):
        m.measure(GOOD[:1])
    with pytest.raises(TuneError, match="repeat"):
        Measurer(TASK, repeat=0)
    with pytest.raises(TuneError, match="reference"):
        Measurer(Task.from_template(matmul, (M, N, K), reference=lambda a, b: 1 / 0))


def test_close_leaves_no_processes_or_files():
    before = set(multiprocessing.active_children())
    m = Measurer(TASK, repeat=1, min_repeat_ms=0.0)
    assert m.measure(GOOD[:2])[1].error is None
    children = set(multiprocessing.active_children()) - before
    assert len(children) == 3  # two builders, one runner
    assert os.listdir(m.cache_dir)  # the compiled kernels
    m.close()
    m.close()  # twice is fine
    assert set(multiprocessing.active_children()) <= before
    assert not os.path.exists(m.cache_dir)


CHILD = """
import os, sys, time
import tex
from autotune.measure import Measurer
from autotune.task import Task, template

@template("measure_test_orphans")
def add(cfg, n):
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 2.0, name="B")
    return tex.create_schedule(B.op), [A, B]

task = Task.from_template(add, (100,), reference=lambda a: a * 2)
m = Measurer(task, repeat=1, min_repeat_ms=0.0)
assert m.measure([task.space.get(0)])[0].error is None
import multiprocessing
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_children_die_with_a_killed_parent():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env,
                              cwd=ROOT, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2  # one builder (one configuration), the runner
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(map(_running, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_running, pids))
    finally:
        parent.kill()
        parent.stdout.close()


def test_result_seconds_is_the_median():
    result = MeasureResult(GOOD[0], (3.0, 1.0, 2.0), None, "", 0.1)
    assert result.seconds == 2.0
    assert MeasureResult(GOOD[0], (), "crash", "x", 0.1).seconds == float("inf")
