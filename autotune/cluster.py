"""Tuning jobs on a Dask cluster: builds on any worker, timings one at a time per machine.

    with connect(workers=4) as client:           # a LocalCluster of 4 worker processes
        run_job(entries, "logs/", trials=2000, client=client)
    with connect(scheduler="tcp://host:8786") as client:        # a cluster already running
        ...

Each round of a job hands its batch to the cluster in two waves, as a
`Measurer` does in one process: first every configuration is *built* as a
Dask task on any worker, then every one that built is *measured* (built again, from the disk cache
when the same worker built it, as Dask prefers; checked against the
reference; timed) as a Dask task that needs the worker resource
`tex-measure`, on a host whose hardware is the task's (below). No build of
the job runs while it measures.

Exclusive timing. A machine is one measurement slot: a measuring task takes
an exclusive lock (`flock`) on the file `tex-measure.lock` in the machine's
temporary directory for as long as it checks and times, so two timings on
one machine never overlap, however many of its workers offer `tex-measure`
(a LocalCluster's K workers all do) and whichever job they serve. The kernel
releases the lock of a process that dies. A CUDA target measures on the
machine's first GPU, so one slot per machine is one per GPU used.

Hardware. At the start the job asks every worker for its hardware facts
(`autotune.hardware`) and, per task, picks the hardware to measure on: this
machine's when a measuring worker has it, else that of the first measuring
worker (for a CUDA target, only workers that see a GPU count). Measurements
are restricted to the hosts of that hardware, and each record keeps the
facts of the worker that measured it.

Failures. Each worker builds and measures through its own `Measurer`, so a
candidate that crashes kills only that Measurer's child, and one that hangs
is killed past the Measurer's `timeout`; each is recorded as a "crash" or a
"timeout". A worker
that dies in the middle of a build or measurement loses nothing: Dask runs
its task again on another worker (a build anywhere, a measurement on a host
of the same hardware); a task whose workers keep dying is recorded as a
"crash" once Dask gives it up (`distributed.scheduler.allowed-failures`, 3
retries by default). A worker that hangs (stops answering the scheduler's
heartbeats) is dropped after `distributed.scheduler.worker-ttl`
(`WORKER_TTL` on a LocalCluster of `connect`; set it on a scheduler you
start), and its tasks go on as if it had died; a hung worker still holding
its machine's slot leaves that machine unable to measure until it is stopped.
Only the client writes logs, one record per result that reaches it, and a
Dask task has one result however often it ran, so no record is written twice.

Workers must be able to start processes: a LocalCluster is made so; start
external ones with `DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker ...`
(and `--resources tex-measure=1` on each machine that measures).
`dask` and `distributed` are imported only here, from `pip install
'tex[cluster]'`.
"""
from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import tempfile
import threading
import uuid

from autotune.errors import TuneError
from autotune.hardware import hardware_of
from autotune.measure import MeasureResult, Measurer, _describe
from autotune.space import Config
from autotune.targets import kind_of

#: The worker resource a measurement needs; offer it with `--resources tex-measure=1`.
RESOURCE = "tex-measure"

#: The file, in each machine's temporary directory, whose lock a timing holds.
LOCK_FILE = "tex-measure.lock"

#: How long a LocalCluster's scheduler waits for a silent worker before it drops the worker
#: and hands its tasks to others (Dask's default is 5 minutes). Workers wait for their
#: Measurer's children, so builds and timings never silence them this long.
WORKER_TTL = "60s"

INSTALL = "pip install 'tex[cluster]'"


def import_distributed():
    """The `distributed` module; TuneError naming the extra when it is missing."""
    try:
        import distributed
    except ImportError as err:
        raise TuneError(f"tuning on a Dask cluster needs dask and distributed "
                        f"({_describe(err)}); install them with {INSTALL}") from None
    return distributed


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, timeout: float = 20.0):
    """A `distributed.Client`: of a LocalCluster of `workers` processes (one thread each,
    each offering `tex-measure`), closed at the end, or of the scheduler at address
    `scheduler`, waiting up to `timeout` seconds for it. Exactly one of the two."""
    if (workers is None) == (scheduler is None):
        raise TuneError("connect: give either workers (a LocalCluster's size) or scheduler "
                        "(an address), not both or neither")
    distributed = import_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise TuneError(f"cannot connect to the Dask scheduler at {scheduler!r} "
                            f"({_describe(err)})") from None
        with client:
            yield client
        return
    if not (isinstance(workers, int) and workers >= 1):
        raise TuneError(f"connect: workers must be an int >= 1, got {workers!r}")
    import dask
    # Worker processes that may start the Measurer's children; the nanny reads this each
    # time it (re)starts a worker, so it holds while the cluster lives.
    with dask.config.set({"distributed.worker.daemon": False,
                          "distributed.scheduler.worker-ttl": WORKER_TTL}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     resources={RESOURCE: 1}, dashboard_address=None) \
            as local, distributed.Client(local) as client:
        yield client


# --- the check at the start -----------------------------------------------------------------

def measuring_hosts(client, tasks) -> list[list[str]]:
    """Per task, the hosts to measure it on (see the module docstring); TuneError when no
    worker offers `tex-measure`, a worker cannot start processes, or no measuring worker
    can run a task's target."""
    targets = [task.target for task in tasks]
    facts = client.run(_worker_facts, targets)
    offers = {address: info.get("resources", {}).get(RESOURCE, 0) > 0
              for address, info in client.scheduler_info()["workers"].items()}
    where = f"the Dask cluster at {client.scheduler.address}"
    daemonic = sorted(address for address, f in facts.items() if f["daemon"])
    if daemonic:
        raise TuneError(f"the workers {daemonic} of {where} run as daemonic processes, which "
                        f"cannot start the processes that build and time candidates; start "
                        f"them with DASK_DISTRIBUTED__WORKER__DAEMON=False (or --no-nanny)")
    measuring = sorted(address for address in facts if offers.get(address))
    if not measuring:
        raise TuneError(f"no worker of {where} offers the resource {RESOURCE!r} that "
                        f"measuring needs; start one worker per machine that measures with "
                        f"`dask worker {client.scheduler.address} --resources {RESOURCE}=1`")
    here = [_hardware_key(hardware_of(target), target) for target in targets]
    hosts = []
    for n, task in enumerate(tasks):
        keys = {address: _hardware_key(facts[address]["hardware"][n], task.target)
                for address in measuring}
        keys = {address: key for address, key in keys.items() if key is not None}
        if not keys:
            raise TuneError(f"no measuring worker of {where} can run {task.name} on "
                            f"{task.target}: none of {measuring} sees a GPU")
        wanted = here[n] if here[n] in keys.values() else keys[min(keys)]
        hosts.append(sorted({facts[address]["host"] for address, key in keys.items()
                             if key == wanted}))
    return hosts


def _worker_facts(targets, dask_worker=None) -> dict:
    """What the start check needs of a worker: its host, whether it is daemonic, and its
    hardware facts for each target. (Run on every worker by `client.run`.)"""
    from distributed.comm import get_address_host
    return {"host": get_address_host(dask_worker.address),
            "daemon": multiprocessing.current_process().daemon,
            "hardware": [hardware_of(target) for target in targets]}


def _hardware_key(facts: dict, target):
    """What hardware must match for timings of `target` to compare: the CPU model, and
    for a CUDA target the GPU and its compute capability (None: no GPU there)."""
    if not kind_of(target).on_device:
        return (facts["cpu_model"],)
    if "gpu_name" not in facts:
        return None
    return (facts["cpu_model"], facts["gpu_name"], facts["compute_capability"])


# --- the client's side ----------------------------------------------------------------------

class DaskMeasurer:
    """Measures configurations of `task` on the cluster of `client`, as a `Measurer` does in
    one process (`measure(configs, best_seconds, on_result)`, `close()`), timing them on `hosts`.

    `make_measurer(task)` makes each worker's own Measurer of the task (default
    `Measurer(task)`; it must pickle, as a module's function or a functools.partial does).
    """

    def __init__(self, task, client, hosts, make_measurer=Measurer):
        self.task, self.client, self.hosts = task, client, list(hosts)
        self.make_measurer = make_measurer
        self.name = uuid.uuid4().hex  # names this measurer's Measurers on the workers
        self.calls = 0
        self._futures = []

    def measure(self, configs, best_seconds=None, on_result=None) -> list[MeasureResult]:
        """One MeasureResult per configuration, in the order given; each is also passed to
        `on_result(result)` as soon as it reaches the client."""
        configs = list(configs)
        self.calls += 1
        distributed = import_distributed()
        try:
            builds = [self._submit(_build_on_worker, "build", config) for config in configs]
            answers = [_result(future) or ("crash", _failure(future), 0.0)
                       for future in builds]
            results, runs = {}, {}
            for config, build, (error, message, build_seconds) in zip(configs, builds, answers):
                if error is None:
                    runs[self._submit(_measure_on_worker, "measure", config, best_seconds,
                                      build, resources={RESOURCE: 1},
                                      workers=self.hosts)] = (config, build_seconds)
                else:
                    results[config] = MeasureResult(config, (), error, message, build_seconds)
                    if on_result is not None:
                        on_result(results[config])
            for future in distributed.as_completed(list(runs)):
                config, build_seconds = runs[future]
                error, times, message, hardware = _result(future) or (
                    "crash", (), _failure(future), {})
                results[config] = MeasureResult(config, tuple(times), error, message,
                                                build_seconds, hardware)
                if on_result is not None:
                    on_result(results[config])
            return [results[config] for config in configs]
        finally:
            self.client.cancel(self._futures)  # only the unfinished when interrupted
            self._futures = []

    def close(self):
        """Close the Measurers the workers made for this one."""
        self.client.run(_close_local_measurer, self.name, on_error="ignore")

    def _submit(self, function, stage: str, config, *args, **placement):
        key = f"tex-{stage}-{self.name}-{self.calls}-{'.'.join(map(str, config.picks))}"
        future = self.client.submit(function, self.name, self.task, self.make_measurer,
                                    config.picks, *args, key=key, **placement)
        self._futures.append(future)
        return future


def _result(future):
    """The future's result, or None when its task failed (its workers died too often, or
    it raised)."""
    try:
        return future.result()
    except Exception:
        return None


def _failure(future) -> str:
    return f"the Dask task failed ({_describe(future.exception())})"


# --- the workers' side ----------------------------------------------------------------------

#: Each worker process's Measurers by the name of the DaskMeasurer they serve, each with a
#: lock (a worker with several threads must not talk to one Measurer's children from two).
_local_measurers: dict = {}
_local_measurers_lock = threading.Lock()


def _local_measurer(name: str, task, make_measurer):
    with _local_measurers_lock:
        if name not in _local_measurers:
            _local_measurers[name] = (make_measurer(task), threading.Lock())
        return _local_measurers[name]


def _close_local_measurer(name: str) -> None:
    with _local_measurers_lock:
        measurer, lock = _local_measurers.pop(name, (None, None))
    if measurer is not None:
        with lock:
            measurer.close()


def _build_on_worker(name: str, task, make_measurer, picks) -> tuple:
    """(error kind or None, message, seconds) of building one configuration here."""
    measurer, lock = _local_measurer(name, task, make_measurer)
    with lock:
        return measurer.build([Config(measurer.task.space, picks)])[0]


def _measure_on_worker(name: str, task, make_measurer, picks, best_seconds, _built) -> tuple:
    """(error kind or None, times, message, hardware facts) of checking and timing one
    configuration here, holding this machine's measurement lock. (`_built`, the build's
    answer, makes the measurement wait for the build and prefer the worker that did it.)"""
    measurer, lock = _local_measurer(name, task, make_measurer)
    config = Config(measurer.task.space, picks)
    with lock, _machine_lock():
        error, times, message = measurer.run(config, best_seconds)
    return error, times, message, hardware_of(task.target)


@contextlib.contextmanager
def _machine_lock():
    """Hold the exclusive lock of this machine's measurement slot (see the module
    docstring)."""
    path = os.path.join(tempfile.gettempdir(), LOCK_FILE)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
