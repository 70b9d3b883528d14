"""Tuning jobs on a Dask cluster: real builds and timings on a LocalCluster of two worker
processes, a worker killed in the middle of a build and of a measurement, a worker that
hangs, and the checks at the start."""
import contextlib
import fcntl
import functools
import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (comes with distributed)
import distributed  # noqa: E402

from autotune import TuneError, cli, cluster, job, ops  # noqa: E402
from autotune import records as rec  # noqa: E402
from autotune.hardware import host_cpu_model  # noqa: E402
from autotune.measure import Measurer  # noqa: E402
from autotune.tuner import REMEASURED, RETIMING_ROUNDS  # noqa: E402

TASKS = [{"op": "matmul", "shape": [40, 36, 20], "weight": 2},
         {"op": "reduce_sum", "shape": [33, 70]}]

# The workers cannot import this file; they get its functions and classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def tasks_file(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"tasks": TASKS}))
    return path


def check_logs(states, trials, judged=True):
    """Every trial logged exactly once, by a worker of this machine, then each task's
    finalists re-timed, and the best configuration the in-process job would name (the
    best median of the re-timings; the job's states too where `judged`, states from its
    result); the number of records in all."""
    assert sum(s.trials for s in states) == trials
    count = 0
    for state in states:
        records = rec.load(state.log)
        count += len(records)
        finals = [r for r in records if r.final]
        configs = [json.dumps(r.config, sort_keys=True) for r in records if not r.final]
        assert len(configs) == len(set(configs)) == state.trials
        assert all(r.error is None for r in records), [r.message for r in records]
        assert all(r.hardware["cpu_model"] == host_cpu_model() for r in records)
        assert len(finals) == RETIMING_ROUNDS * min(REMEASURED, state.trials)
        medians = {}
        for r in finals:
            medians.setdefault(state.task.space.from_json(r.config), []).append(r.seconds)
        medians = {c: statistics.median(t) for c, t in medians.items()}
        assert math.isfinite(min(medians.values()))
        assert state.best == min(medians.values()) or not judged
        best = rec.best_record(records)
        assert state.task.space.from_json(best.config) == min(medians, key=medians.get)
    return count


def test_tex_tune_job_on_a_local_cluster_logs_each_trial_once(tasks_file, tmp_path, capsys):
    status = cli.main(["job", str(tasks_file), "--log-dir", str(tmp_path / "logs"),
                       "--trials", "8", "--batch-size", "2", "--model", "random",
                       "--workers", "local:2"])
    assert status == cli.EXIT_OK, capsys.readouterr().err
    states = [job._initial_state(e, tmp_path / "logs", resume=True)
              for e in job.load_tasks(tasks_file)]
    check_logs(states, 8, judged=False)
    table = capsys.readouterr().out
    assert "matmul 40,36,20" in table and "reduce_sum 33,70" in table


class DyingMeasurer(Measurer):
    """A Measurer whose worker process dies at its first build and at its first run of the
    whole test (marker files in `marks` say they happened), as a machine lost mid-task; it
    appends when each of its runs began and ended to `marks`/runs."""

    def __init__(self, task, marks):
        super().__init__(task, build_workers=1, repeat=1, min_repeat_ms=1.0)
        self.marks = marks

    def build(self, configs):
        self._die_once("build")
        return super().build(configs)

    def run(self, config, best_seconds=None):
        self._die_once("run")
        began = time.monotonic()  # one clock for every process of the machine
        answer = super().run(config, best_seconds)
        with open(os.path.join(self.marks, "runs"), "a") as f:
            f.write(f"{began} {time.monotonic()}\n")
        return answer

    def _die_once(self, stage):
        try:
            os.close(os.open(os.path.join(self.marks, stage), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os._exit(1)


def test_a_worker_dying_mid_build_and_mid_measurement_loses_no_trial(tasks_file, tmp_path):
    entries = job.load_tasks(tasks_file)
    with cluster.connect(workers=2) as client:
        result = job.run_job(entries, tmp_path / "logs", trials=6, batch_size=2,
                             model="random", client=client,
                             make_measurer=functools.partial(DyingMeasurer,
                                                             marks=str(tmp_path)))
    assert result.stopped_by == "trial budget"
    assert (tmp_path / "build").exists() and (tmp_path / "run").exists()
    records = check_logs(result.states, 6)
    runs = sorted(tuple(map(float, line.split()))
                  for line in (tmp_path / "runs").read_text().splitlines())
    assert len(runs) == records  # the trials and the re-timings, one at a time
    assert all(end <= next_began for (_, end), (next_began, _) in zip(runs, runs[1:]))



class StallingMeasurer(Measurer):
    """A Measurer whose first run of the whole test writes its process's pid to
    `marks`/running and stalls there, holding the machine, until it is killed or stopped."""

    def __init__(self, task, marks):
        super().__init__(task, build_workers=1, repeat=1, min_repeat_ms=1.0)
        self.marks = marks

    def run(self, config, best_seconds=None):
        try:
            mark = os.open(os.path.join(self.marks, "running"),
                           os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().run(config, best_seconds)
        os.write(mark, str(os.getpid()).encode())
        os.close(mark)
        time.sleep(300)
        return super().run(config, best_seconds)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGSTOP], ids=["dies", "hangs"])
def test_a_dask_worker_that_dies_or_hangs_mid_measurement_loses_no_trial(tasks_file, tmp_path,
                                                                         stop):
    """A real `dask scheduler` and two real `dask worker` processes (no nanny to restart
    them), each with a temporary directory, so a measurement slot, of its own; the worker
    measuring first is killed with SIGKILL, or stopped with SIGSTOP (a hang: the
    scheduler drops it when its heartbeats stop, after its worker-ttl), while it holds
    its slot, and the other one measures what it was given."""
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False",
               DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL="3s")
    address_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(address_file)],
                                  env=env, **quiet)]
    try:
        for n in range(2):
            (tmp_path / f"machine{n}").mkdir()
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", "--scheduler-file", str(address_file),
                 "--nthreads", "1", "--no-nanny", "--no-dashboard", "--resources",
                 f"{cluster.RESOURCE}=1"], env=dict(env, TMPDIR=str(tmp_path / f"machine{n}")),
                **quiet))
        stopped = []
        stopper = threading.Thread(target=_signal_when_stalled, args=(tmp_path, stopped, stop),
                                   daemon=True)
        stopper.start()
        with distributed.Client(scheduler_file=str(address_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            result = job.run_job(job.load_tasks(tasks_file), tmp_path / "logs", trials=6,
                                 batch_size=2, model="random", client=client,
                                 make_measurer=functools.partial(StallingMeasurer,
                                                                 marks=str(tmp_path)))
        stopper.join()
        assert stopped and stopped[0] in {p.pid for p in processes[1:]}
        worker = processes[1 + [p.pid for p in processes[1:]].index(stopped[0])]
        if stop == signal.SIGKILL:
            assert worker.wait() == -signal.SIGKILL
        else:
            assert worker.poll() is None  # still there, stopped, holding its slot
        assert result.stopped_by == "trial budget"
        check_logs(result.states, 6)
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _signal_when_stalled(marks, signalled, signum, patience: float = 120.0):
    """Send `signum` to the process whose pid `marks`/running names, once it appears."""
    running = marks / "running"
    deadline = time.monotonic() + patience
    while not (running.exists() and running.read_text()):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    signalled.append(int(running.read_text()))
    os.kill(signalled[0], signum)


def test_the_machine_lock_shuts_out_other_processes():
    def try_lock(conn):
        with open(os.path.join(tempfile.gettempdir(), cluster.LOCK_FILE), "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                conn.send("locked")
            except BlockingIOError:
                conn.send("refused")

    for held, expected in ((True, "refused"), (False, "locked")):
        ours, theirs = multiprocessing.get_context("fork").Pipe()
        with cluster._machine_lock() if held else contextlib.nullcontext():
            other = multiprocessing.get_context("fork").Process(target=try_lock,
                                                               args=(theirs,))
            other.start()
            assert ours.recv() == expected
            other.join()


def test_a_cluster_without_measuring_workers_is_refused_at_the_start(tmp_path):
    entries = [job.JobEntry(ops.task_for("reduce_sum", (33, 70)))]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as plain:
        with cluster.connect(scheduler=plain.scheduler_address) as client:
            with pytest.raises(TuneError, match=r"offers the resource 'tex-measure'.*"
                                                r"dask worker .* --resources tex-measure=1"):
                job.run_job(entries, tmp_path / "logs", trials=2, client=client)
    assert not (tmp_path / "logs").exists()


def test_tex_tune_job_on_a_running_cluster(tasks_file, tmp_path, capsys):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  resources={cluster.RESOURCE: 1},
                                  dashboard_address=None) as running:
        status = cli.main(["job", str(tasks_file), "--log-dir", str(tmp_path / "logs"),
                           "--trials", "4", "--batch-size", "2", "--model", "random",
                           "--scheduler", running.scheduler_address])
    assert status == cli.EXIT_OK, capsys.readouterr().err
    states = [job._initial_state(e, tmp_path / "logs", resume=True)
              for e in job.load_tasks(tasks_file)]
    check_logs(states, 4, judged=False)


def test_daemonic_workers_which_cannot_start_processes_are_refused(tmp_path):
    entries = [job.JobEntry(ops.task_for("reduce_sum", (33, 70)))]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  resources={cluster.RESOURCE: 1},
                                  dashboard_address=None) as daemonic, \
            distributed.Client(daemonic) as client:
        with pytest.raises(TuneError, match="daemonic processes.*"
                                            "DASK_DISTRIBUTED__WORKER__DAEMON=False"):
            job.run_job(entries, tmp_path / "logs", trials=2, client=client)


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(TuneError, match="cannot connect to the Dask scheduler at "
                                        "'tcp://127.0.0.1:1'"):
        with cluster.connect(scheduler="tcp://127.0.0.1:1", timeout=1.0):
            pass


@pytest.mark.parametrize("argv, words", [
    (["--workers", "local:0"], "expected local:K with K >= 1"),
    (["--workers", "4"], "got '4'"),
    (["--workers", "local:x"], "got 'local:x'"),
    (["--workers", "local:2", "--scheduler", "tcp://h:8786"], "not allowed with argument"),
])
def test_bad_cluster_options_are_usage_errors(tasks_file, tmp_path, capsys, argv, words):
    status = cli.main(["job", str(tasks_file), "--log-dir", str(tmp_path), "--trials", "2",
                       *argv])
    assert status == cli.EXIT_USAGE
    assert words in capsys.readouterr().err


def test_without_dask_a_cluster_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(TuneError, match=r"pip install 'tex\[cluster\]'"):
        with cluster.connect(workers=2):
            pass
