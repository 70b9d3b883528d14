"""The autotuner: schedule spaces, program features, an XGBoost cost model,
model-guided search, safe measurement and tuning logs.

    task = autotune.Task.from_compute([A, B, C])          # a generated space
    result = autotune.tune(task, trials=64, log="matmul.jsonl")
    with autotune.apply_history_best("matmul.jsonl"):
        f = tex.build(tex.create_schedule(C.op), [A, B, C])   # the best schedule

Templates (`@autotune.template`) declare their own knobs; `tex-tune` is the
command line (autotune/cli.py).
"""
from autotune.dispatch import apply_history_best
from autotune.errors import TuneError
from autotune.generate import space_for
from autotune.records import Record, TuneWarning, best_record, load
from autotune.sketch import InvalidConfig
from autotune.space import Config, ConfigSpace
from autotune.task import Task, Template, template
from autotune.tensorcore import matmul_tensorcore
from autotune.tuner import Progress, TuneResult, tune

__all__ = ["Config", "ConfigSpace", "InvalidConfig", "Progress", "Record", "Task", "Template",
           "TuneError", "TuneResult", "TuneWarning", "apply_history_best", "best_record", "load",
           "matmul_tensorcore", "space_for", "template", "tune"]
