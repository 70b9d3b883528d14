"""`apply_history_best`: build with the best configuration a tuning log recorded.

    with autotune.apply_history_best("matmul.jsonl"):
        f = tex.build(tex.create_schedule(C.op), [A, B, C])   # the tuned schedule
        s, tensors = my_template(1024)                          # a template's best config

Inside the context, `tex.build` given an untouched schedule (no primitive
applied since `create_schedule`) looks its workload up in the logs: when a
successful record of the same declaration (see
`autotune.task.compute_workload_key`) and target exists, the kernel is built
from the fastest one's configuration of the generated space. A schedule the
user has written is always kept. Calling a `Template` inside the context
picks its best recorded configuration the same way. Contexts nest; the
innermost that knows a workload wins.

Only records measured on this machine's CPU model are used (the target
string must match too, as the lookup is by target); records of other
hardware are left out with a `TuneWarning` when a workload has no others.
`match_hardware=False` uses every record.
"""
from __future__ import annotations

import os
import warnings

from autotune import records as rec
from autotune.errors import TuneError
from autotune.hardware import matching_records, other_hardware_note
from autotune.history import active_logs, best_record
from autotune.task import Task, compute_workload_key
from tex import driver

class apply_history_best:  # noqa: N801 (a context manager named like TVM's)
    """Context in which builds and templates use the best recorded configurations.

    `logs` is a log path, a list of paths, or a list of `Record`s;
    `match_hardware` (default True) keeps only records of this machine's CPU model.
    """

    def __init__(self, logs, match_hardware: bool = True):
        if isinstance(logs, (str, os.PathLike)):
            logs = [logs]
        records = []
        for item in logs:
            if isinstance(item, rec.Record):
                records.append(item)
            elif isinstance(item, (str, os.PathLike)):
                if not os.path.exists(item):
                    raise TuneError(f"apply_history_best: no tuning log at {os.fspath(item)!r}")
                records.extend(rec.load(item))
            else:
                raise TuneError(f"apply_history_best takes log paths or Records, got "
                                f"{type(item).__name__}")
        records, other = matching_records(records, match_hardware)
        self.best: dict[tuple[str, str], rec.Record] = {}
        for workload, target in {(r.workload, r.target) for r in records}:
            found = rec.best_record(records, workload, target)
            if found is not None:
                self.best[(workload, target)] = found
        _warn_about_other_hardware(other, self.best)
        self._tokens = []

    def __enter__(self):
        self._tokens.append((active_logs.set(active_logs.get() + (self,)),
                             driver.schedule_provider.set(_tuned_schedule)))
        return self

    def __exit__(self, *exc):
        logs_token, provider_token = self._tokens.pop()
        driver.schedule_provider.reset(provider_token)
        active_logs.reset(logs_token)


def _warn_about_other_hardware(other, best) -> None:
    """A `TuneWarning` when some workloads have records only from other hardware."""
    only_other = [r for r in other if (r.workload, r.target) not in best]
    if only_other:
        names = sorted({r.task or r.workload for r in only_other})
        warnings.warn(f"apply_history_best: {', '.join(names)}: "
                      f"{other_hardware_note(only_other)}; pass match_hardware=False to "
                      f"use them", rec.TuneWarning, stacklevel=3)


def _tuned_schedule(schedule, args, target):
    """For `tex.build`: the tuned schedule of an untouched one's workload, or None."""
    if not active_logs.get():
        return None
    found = best_record(compute_workload_key(args), str(target))
    if found is None:
        return None
    task = Task.from_compute(args, target)
    tuned, tensors = task.instantiate(task.space.from_json(found.config))
    if list(tensors) != list(args):
        raise TuneError("the tuned schedule's tensors differ from the build's arguments")
    return tuned
