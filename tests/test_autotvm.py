"""AutoTVM's surface (`tex.autotvm`): templates, tasks, each tuner, logs, history, errors.

The template is AutoTVM's tutorial matmul on a small shape none of the split
factors divide; every kernel is compared with NumPy.
"""
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import autotune
import tex
from checks import loops, random_array
from autotune.autotvm.measure import pair_of_result, record_of_pair
from autotune.measure import MeasureResult
from tex import autotvm
from tex.autotvm.task.space import SplitEntity

SHAPE = (20, 12, 24)  # N, L, M
FAST = autotvm.measure_option(builder=autotvm.LocalBuilder(n_parallel=1),
                              runner=autotvm.LocalRunner(number=1, repeat=1, timeout=30))
seen_fallback = []  # cfg.is_fallback of each run of the template


@autotvm.template("test/matmul")
def matmul(N, L, M, dtype):
    A = tex.placeholder((N, L), name="A", dtype=dtype)
    B = tex.placeholder((L, M), name="B", dtype=dtype)
    k = tex.reduce_axis((0, L), name="k")
    C = tex.compute((N, M), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tex.create_schedule(C.op)
    y, x = s[C].op.axis
    k = s[C].op.reduce_axis[0]
    cfg = autotvm.get_config()
    seen_fallback.append(cfg.is_fallback)
    cfg.define_split("tile_y", y, num_outputs=2, policy="verbose")
    cfg.define_split("tile_x", x, num_outputs=2, policy="power2")
    cfg.define_knob("unroll", [0, 1])
    if cfg.is_fallback:
        cfg["tile_x"] = SplitEntity([-1, 4])  # a better default than no split
    yo, yi = cfg["tile_y"].apply(s, C, y)
    xo, xi = cfg["tile_x"].apply(s, C, x)
    s[C].reorder(yo, xo, k, yi, xi)
    if cfg["unroll"].val:
        s[C].unroll(yi)
    return s, [A, B, C]


def run_and_compare(schedule, tensors):
    a, b = random_array(SHAPE[:2]), random_array(SHAPE[1:])
    np.testing.assert_allclose(tex.build(schedule, tensors)(a, b), a @ b, rtol=1e-5,
                               atol=1e-5)


@pytest.fixture(scope="module")
def task():
    return autotvm.task.create("test/matmul", args=(*SHAPE, "float32"), target="llvm")


def test_a_task_has_the_template_s_space_and_arguments(task):
    space = task.config_space
    assert list(space.knobs) == ["tile_y", "tile_x", "unroll"]
    assert len(space) == len(space.knobs["tile_y"]) * len(space.knobs["tile_x"]) * 2
    assert {c.size for c in space.knobs["tile_x"].candidates} == {
        (-1, f) for f in (1, 2, 4, 8, 16)}  # "power2"
    assert task.args == (*SHAPE, "float32")
    assert task.workload == ("test/matmul", *SHAPE, "float32")
    assert task.flop == 2 * np.prod(SHAPE)
    assert json.loads(task.workload_key) == ["template", "test/matmul", [*SHAPE, "float32"]]


TUNERS = {"random": autotvm.tuner.RandomTuner, "grid": autotvm.tuner.GridSearchTuner,
          "genetic": lambda t: autotvm.tuner.GATuner(t, pop_size=8),
          "xgb": lambda t: autotvm.tuner.XGBTuner(t, plan_size=3)}


@pytest.mark.parametrize("kind", sorted(TUNERS))
def test_each_tuner_logs_what_it_measures_and_the_best_replays(kind, task, tmp_path):
    log = tmp_path / "matmul.log"
    tuner = TUNERS[kind](task)
    seen = []
    tuner.tune(n_trial=6, measure_option=FAST,
               callbacks=[autotvm.callback.log_to_file(str(log)),
                          lambda tuner, inputs, results: seen.extend(zip(inputs, results))])
    records = autotune.load(log)  # tex's own tuning log
    assert len(records) == len(seen) == 6 and all(r.error is None for r in records)
    assert len({json.dumps(r.config) for r in records}) == 6
    if kind == "grid":
        assert [inp.config.index for inp, _ in seen] == list(range(6))
    best = autotune.best_record(records, task.workload_key, "llvm")
    assert tuner.best_config.to_json() == best.config and tuner.best_flops > 0
    seen_fallback.clear()
    with autotvm.apply_history_best(str(log)):
        schedule, tensors = matmul(*SHAPE, "float32")
    assert seen_fallback[-1] is False
    expected = task.instantiate(task.config_space.from_json(best.config))
    assert str(tex.lower(schedule, tensors)) == str(tex.lower(*expected))
    run_and_compare(schedule, tensors)


def test_without_a_log_the_fallback_config_is_used_and_is_right():
    seen_fallback.clear()
    schedule, tensors = matmul(*SHAPE, "float32")
    assert seen_fallback[-1] is True
    # no split of i (the first candidate), j split by 4 as the template's fallback says
    assert loops(schedule, tensors)[:2] == ["range i_outer", "range j_outer"]
    assert "for j_outer in range(6)" in str(tex.lower(schedule, tensors))
    run_and_compare(schedule, tensors)


def test_records_load_as_pairs_pick_the_best_and_feed_apply_history_best(task, tmp_path):
    log, best_log = tmp_path / "matmul.log", tmp_path / "best.log"
    autotvm.tuner.RandomTuner(task).tune(4, FAST, callbacks=[autotvm.callback.log_to_file(log)])
    pairs = list(autotvm.record.load_from_file(log))
    assert len(pairs) == 4
    inp, res = pairs[0]
    assert inp.task.workload_key == task.workload_key and str(inp.target) == "llvm"
    assert res.error_no == autotvm.MeasureErrorNo.NO_ERROR and res.costs[0] > 0
    fastest = min(pairs, key=lambda pair: pair[1].costs[0])
    autotvm.record.pick_best(log, best_log)
    (best,) = autotune.load(best_log)
    assert best.config == fastest[0].config.to_json()
    with autotvm.apply_history_best(pairs):
        schedule, tensors = matmul(*SHAPE, "float32")
    expected = task.instantiate(task.config_space.from_json(best.config))
    assert str(tex.lower(schedule, tensors)) == str(tex.lower(*expected))
    tuner = autotvm.tuner.XGBTuner(task, plan_size=2)
    tuner.load_history(pairs, min_seed_records=4)  # the model starts from these
    assert [len(records) for _, records in tuner.transfer] == [4]


def test_a_failed_measurement_keeps_its_kind_and_message_in_the_log(task):
    config = task.config_space.get(3)
    failed = MeasureResult(config, (), "wrong", "output C differs", 0.25)
    inp, res = pair_of_result(task, failed)
    assert res.error_no == autotvm.MeasureErrorNo.WRONG_ANSWER and res.costs == (
        "output C differs",)
    record = record_of_pair(inp, res)
    assert (record.error, record.message, record.times) == ("wrong", "output C differs", ())
    assert record.seconds == float("inf") and record.config == config.to_json()


def test_the_progress_bar_shows_rates_and_trials(task):
    out = io.StringIO()
    bar = autotvm.callback.progress_bar(2, prefix="[matmul]", stream=out)
    autotvm.tuner.GridSearchTuner(task).tune(2, FAST, callbacks=[bar])
    text = out.getvalue()
    assert text.startswith("\r[matmul] Current/Best:") and "GFLOPS | Progress: (2/2)" in text
    assert text.endswith("Done.\n")


def test_knob_policies_and_entities():
    @autotvm.template("test/policies")
    def policies(n):
        A = tex.placeholder((n, n), name="A")
        C = tex.compute((n, n), lambda i, j: A[i, j] * 2.0, name="C")
        s = tex.create_schedule(C.op)
        i, j = C.op.axis
        cfg = autotvm.get_config()
        cfg.define_split("tile_i", i, num_outputs=3, filter=lambda e: e.size[-1] <= 4)
        cfg.define_split("tile_j", j, policy="candidate", candidate=[[-1, 2], [3, 4]])
        cfg.define_reorder("order", [i, j], policy="candidate", candidate=[[j, i], [i, j]])
        cfg.define_annotate("ann", [j], policy="try_unroll")
        cfg["order"].apply(s, C, [i, j])
        cfg["ann"].apply(s, C, [j])
        return s, [A, C]

    task = autotvm.task.create("test/policies", (12,), "llvm")
    knobs = task.config_space.knobs
    assert all(c.size[-1] <= 4 and 12 % c.size[1] == 12 % c.size[2] == 0
               for c in knobs["tile_i"].candidates)  # "factors" by default
    assert [c.size for c in knobs["tile_j"].candidates] == [(-1, 2), (-1, 4)]
    assert [c.perm for c in knobs["order"].candidates] == [(1, 0), (0, 1)]
    assert [c.anns for c in knobs["ann"].candidates] == [("none",), ("unroll",)]
    schedule, tensors = policies(12)  # fallback: the first candidates, j outermost
    assert [loop.split()[1] for loop in loops(schedule, tensors)] == ["j", "i"]
    a = random_array((12, 12))
    np.testing.assert_allclose(tex.build(schedule, tensors)(a), a * 2.0, rtol=1e-6)


def test_early_stopping_ends_the_tuning(task, tmp_path):
    log = tmp_path / "matmul.log"
    autotvm.tuner.GridSearchTuner(task).tune(
        40, FAST, early_stopping=1, callbacks=[autotvm.callback.log_to_file(log)])
    assert len(autotune.load(log)) < 40


def test_tex_autotvm_is_the_autotune_package_and_import_tex_does_not_load_it():
    from autotune.autotvm import tuner
    from tex.autotvm.tuner import XGBTuner
    assert XGBTuner is tuner.XGBTuner and autotvm.task is sys.modules["tex.autotvm.task"]
    code = "import sys, tex; print('tex.autotvm' in sys.modules, 'autotune' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_errors_name_what_was_expected_and_what_came(task):
    with pytest.raises(autotune.TuneError, match="no AutoTVM template named 'test/nope'.*"
                                                 "test/matmul"):
        autotvm.task.create("test/nope", (1,), "llvm")

    @autotvm.template("test/unread")
    def unread(n):
        A = tex.placeholder((n,), name="A")
        C = tex.compute((n,), lambda i: A[i] + 1.0, name="C")
        s = tex.create_schedule(C.op)
        autotvm.get_config()["tile"].apply(s, C, C.op.axis[0])
        return s, [A, C]

    with pytest.raises(autotune.TuneError, match="knob 'tile' is read before it is defined"):
        autotvm.task.create("test/unread", (8,), "llvm")
    with pytest.raises(autotune.TuneError, match="get_config.*outside an AutoTVM template"):
        autotvm.get_config()
    with pytest.raises(autotune.TuneError, match="policy must be one of.*got 'odd'"):
        autotvm.template("test/odd", lambda: autotvm.get_config().define_split(
            "s", 8, policy="odd"))()
    with pytest.raises(autotune.TuneError, match="loss_type must be 'rank', got 'reg'"):
        autotvm.tuner.XGBTuner(task, loss_type="reg")
    with pytest.raises(autotune.TuneError, match="runner must be 'local' or a LocalRunner"):
        autotvm.measure_option(runner="rpc")
    with pytest.raises(autotune.TuneError, match="needs a task from autotvm.task.create"):
        autotvm.tuner.RandomTuner(autotune.Task.from_compute(task.tensors))



def test_inside_a_target_context_a_template_uses_that_target_s_records(task, tmp_path):
    log = tmp_path / "matmul.log"
    autotvm.tuner.RandomTuner(task).tune(
        n_trial=2, measure_option=FAST, callbacks=[autotvm.callback.log_to_file(str(log))])
    with autotvm.apply_history_best(str(log)):
        seen_fallback.clear()
        with tex.Target("llvm"):
            schedule, tensors = matmul(*SHAPE, "float32")
        assert seen_fallback[-1] is False
        with tex.Target("llvm -mcpu=x86-64"):  # no records for this target: the fallback
            matmul(*SHAPE, "float32")
        assert seen_fallback[-1] is True
    run_and_compare(schedule, tensors)
