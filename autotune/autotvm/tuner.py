"""AutoTVM's tuners, each a way of running `autotune.tune`.

    tuner = autotvm.tuner.XGBTuner(task)
    tuner.tune(n_trial=64, measure_option=autotvm.measure_option(),
               callbacks=[autotvm.callback.log_to_file("matmul.log")])

| AutoTVM          | tex search (`autotune.search`)        | cost model          |
|------------------|---------------------------------------|---------------------|
| RandomTuner      | RandomSearch: uniform draws            | none                |
| GridSearchTuner  | GridSearch: in index order             | none                |
| GATuner          | GeneticSearch: children of the fastest | none                |
| XGBTuner         | EvolutionarySearch, model-guided       | XGBoost ranker      |

As in AutoTVM, the tuning log is written by a callback
(`autotvm.callback.log_to_file`), each `tune` call measures up to `n_trial`
new configurations, and the fastest are not measured again at the end.
Configurations whose schedule cannot be made or lowered are skipped rather
than measured. After `tune`, `best_config`, `best_flops` and
`best_measure_pair` describe the fastest configuration measured.
"""
from __future__ import annotations

import functools

from autotune import tuner as tex_tuner
from autotune.autotvm.measure import measurer_options, pair_of_result, record_of_pair
from autotune.autotvm.task import Task
from autotune.errors import TuneError
from autotune.search import GeneticSearch

__all__ = ["GATuner", "GridSearchTuner", "RandomTuner", "Tuner", "XGBTuner"]


class Tuner:
    """The tuning of one task by a search and a cost model (see the subclasses)."""

    search = "random"
    model = "random"
    batch_size = 8

    def __init__(self, task: Task):
        if not isinstance(task, Task):
            raise TuneError(f"{type(self).__name__} needs a task from autotvm.task.create, got "
                            f"{type(task).__name__}")
        self.task = task
        self.best_config = None
        self.best_flops = 0.0
        self.best_measure_pair = None
        self.transfer = []

    def tune(self, n_trial: int, measure_option, early_stopping: int | None = None,
             callbacks=()) -> None:
        """Measure up to `n_trial` configurations; after each batch, call every
        `callback(tuner, inputs, results)` with the batch's measurements. Stop early when
        `early_stopping` measurements in a row found nothing faster."""
        callbacks = list(callbacks)
        for callback in callbacks:
            if not callable(callback):
                raise TuneError(f"callbacks must be functions (tuner, inputs, results), got "
                                f"{callback!r}")

        def after_batch(progress):
            pairs = [pair_of_result(self.task, result) for result in progress.last]
            self._note_best(pairs)
            inputs, results = [i for i, _ in pairs], [r for _, r in pairs]
            for callback in callbacks:
                callback(self, inputs, results)

        tex_tuner.tune(self.task, n_trial, model=self.model, search=self.search,
                       batch_size=self.batch_size, transfer=self.transfer,
                       callback=after_batch, remeasure=0, early_stopping=early_stopping,
                       **measurer_options(measure_option))

    def _note_best(self, pairs) -> None:
        """Keep the fastest measurement so far."""
        for inp, res in pairs:
            if res.error_no == 0 and res.costs:
                flops = self.task.flop / (sum(res.costs) / len(res.costs))
                if flops > self.best_flops:
                    self.best_flops, self.best_config = flops, inp.config
                    self.best_measure_pair = (inp, res)


class RandomTuner(Tuner):
    """Measures configurations drawn at random, each once."""

    search = "random"


class GridSearchTuner(Tuner):
    """Measures configurations in the order of their index."""

    search = "grid"


class GATuner(Tuner):
    """A genetic algorithm: children of the fastest configurations (`pop_size` of them),
    mutated with probability `mutation_prob`."""

    def __init__(self, task: Task, pop_size: int = 100, mutation_prob: float = 0.1):
        super().__init__(task)
        self.search = functools.partial(GeneticSearch, population=pop_size,
                                        mutation=mutation_prob)


class XGBTuner(Tuner):
    """Model-guided search with tex's XGBoost ranker over features of the lowered program.

    `plan_size` configurations are measured between refits of the model (the
    first batch is random). `loss_type` must be "rank" (tex's model ranks);
    `feature_type` is accepted for AutoTVM's sake: tex always reads features of
    the lowered loop program (AutoTVM's "itervar" is the nearest).
    """

    search = "evolutionary"
    model = "xgboost"

    def __init__(self, task: Task, plan_size: int = 64, feature_type: str = "itervar",
                 loss_type: str = "rank"):
        super().__init__(task)
        if feature_type not in ("itervar", "knob", "curve"):
            raise TuneError(f"XGBTuner: feature_type must be 'itervar', 'knob' or 'curve', got "
                            f"{feature_type!r}")
        if loss_type != "rank":
            raise TuneError(f"XGBTuner: tex's cost model is a ranker; loss_type must be 'rank', "
                            f"got {loss_type!r}")
        if not (isinstance(plan_size, int) and plan_size >= 1):
            raise TuneError(f"XGBTuner: plan_size must be an int >= 1, got {plan_size!r}")
        self.batch_size = plan_size

    def load_history(self, data_set, min_seed_records: int = 500) -> None:
        """Pre-train the model on earlier measurements, (MeasureInput, MeasureResult) pairs
        (e.g. from `autotvm.record.load_from_file`) of this task or others; ignored when
        there are fewer than `min_seed_records`."""
        pairs = list(data_set)
        if len(pairs) < min_seed_records:
            return
        by_task: dict[str, tuple] = {}
        for inp, res in pairs:
            task, records = by_task.setdefault(inp.task.workload_key, (inp.task, []))
            records.append(record_of_pair(inp, res))
        self.transfer = list(by_task.values())
