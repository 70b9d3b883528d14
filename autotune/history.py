"""The tuning logs in effect: the `apply_history_best` contexts entered, innermost last.

Kept apart from `autotune.dispatch` (which enters them and builds tuned
schedules from tasks) so that `autotune.task` can look a template's best
configuration up without importing it.
"""
from __future__ import annotations

import contextvars

#: The active `apply_history_best` contexts, each with `best`: (workload, target) -> Record.
active_logs: contextvars.ContextVar = contextvars.ContextVar("tuning_logs", default=())


def best_record(workload: str, target: str):
    """The fastest record of `workload` on `target` in the innermost context that has
    one, or None."""
    for context in reversed(active_logs.get()):
        found = context.best.get((workload, target))
        if found is not None:
            return found
    return None


def best_config(task):
    """The best recorded configuration of `task` in the active contexts, or None."""
    found = best_record(task.workload_key, str(task.target))
    return None if found is None else task.space.from_json(found.config)
