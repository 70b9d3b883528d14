"""AutoTVM's user surface over tex's autotuner, for TE code written against TVM's AutoTVM.

    from tex import autotvm          # or: import autotune.autotvm as autotvm

    @autotvm.template("tutorial/matmul")
    def matmul(N, L, M, dtype):
        ...                                   # tex.placeholder, tex.compute, ...
        cfg = autotvm.get_config()
        cfg.define_split("tile_y", y, num_outputs=2)
        yo, yi = cfg["tile_y"].apply(s, C, y)
        ...
        return s, [A, B, C]

    task = autotvm.task.create("tutorial/matmul", args=(512, 512, 512, "float32"),
                               target="llvm")
    tuner = autotvm.tuner.XGBTuner(task)    # or RandomTuner, GridSearchTuner, GATuner
    tuner.tune(n_trial=32, measure_option=autotvm.measure_option(),
               callbacks=[autotvm.callback.log_to_file("matmul.log")])
    with autotvm.apply_history_best("matmul.log"):
        s, tensors = matmul(512, 512, 512, "float32")
        kernel = tex.build(s, tensors)

Everything maps onto `autotune`: templates become `autotune.Template`s
(`task`), knob values AutoTVM's entities (`space`), tuners runs of
`autotune.tune` with a search and a cost model (`tuner`), and logs are tex's
(`record`, `callback`). Not here: RPC measurement (tex measures locally),
TOPI's templates, and a current-target context (a template call uses the
target of its records).
"""
from autotune.autotvm import callback, measure, record, space, task, tuner
from autotune.autotvm.measure import (LocalBuilder, LocalRunner, MeasureErrorNo, MeasureInput,
                                      MeasureResult, measure_option)
from autotune.autotvm.record import apply_history_best
from autotune.autotvm.task import get_config, template

__all__ = ["LocalBuilder", "LocalRunner", "MeasureErrorNo", "MeasureInput", "MeasureResult",
           "apply_history_best", "callback", "get_config", "measure", "measure_option", "record",
           "space", "task", "template", "tuner"]
