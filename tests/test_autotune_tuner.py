"""The tuning loop with a fake measurer: logs, resume, determinism, the cost model, dispatch."""
import json
import math

import numpy as np
import pytest

import autotune
import tex
from autotune import records
from autotune.cost_model import RandomModel, XGBoostModel, relative_throughput
from autotune.measure import MeasureResult
from autotune.tuner import FeatureCache


def declare_matmul(m=40, n=36, k=20):
    A = tex.placeholder((m, k), name="A")
    B = tex.placeholder((k, n), name="B")
    r = tex.reduce_axis((0, k), name="k")
    C = tex.compute((m, n), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


def fake_result(config, times, error=None, message=""):
    return MeasureResult(config, tuple(times), error, message, 0.0)


class FakeMeasurer:
    """Time grows with the distance of each pick from a hidden optimum; one pick fails."""

    def __init__(self):
        self.measured = []

    def measure(self, configs, best_seconds=None, on_result=None):
        results = []
        for config in configs:
            self.measured.append(config)
            if config.picks[0] == 1 and config.picks[-1] == 1:
                results.append(fake_result(config, (), "build", "boom"))
                continue
            t = 1e-3 * (1 + sum((p - 2) ** 2 for p in config.picks))
            results.append(fake_result(config, (t, t * 1.01, t * 0.99)))
        return results

    def close(self):
        pass


@pytest.fixture
def task():
    return autotune.Task.from_compute(declare_matmul())


def test_measurers_with_and_without_on_result_are_followed_per_measurement(task, tmp_path):
    """A measurer that passes each result to `on_result` as it goes, and one written
    without it (answering each batch at its end): every result is logged once and
    reported to `on_measurement` once, in either case."""
    class Streaming(FakeMeasurer):
        def measure(self, configs, best_seconds=None, on_result=None):
            results = super().measure(configs, best_seconds)
            for r in results:
                on_result(r)
            return results

    class AtTheEnd(FakeMeasurer):
        def measure(self, configs, best_seconds=None):  # the protocol without on_result
            return super().measure(configs, best_seconds)

    for kind in (Streaming, AtTheEnd):
        log, seen = tmp_path / f"{kind.__name__}.jsonl", []
        autotune.tune(task, 8, log=log, model="random", batch_size=4, measurer=kind(),
                      remeasure=0, on_measurement=lambda p: seen.append(p.last[0].config))
        assert len(seen) == len(set(seen)) == 8 == len(autotune.load(log))


def test_a_log_resumes_without_measuring_again(task, tmp_path):
    log = tmp_path / "log.jsonl"
    first = FakeMeasurer()
    result = autotune.tune(task, 12, log=log, model="random", batch_size=4, measurer=first)
    # 12 configurations, then the 3 fastest re-timed in 5 interleaved rounds
    leaders = first.measured[12:]
    assert result.measured == 12 and len(set(first.measured[:12])) == 12 and len(leaders) == 15
    for round_ in range(5):  # each round starts one further along
        turn = round_ % 3
        assert leaders[3 * round_:3 * round_ + 3] == leaders[turn:3] + leaders[:turn]
    assert set(leaders) <= set(first.measured[:12]) and result.best_config in leaders
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 27 and all(r["workload"] == task.workload_key for r in lines)
    assert [r["final"] for r in lines] == [False] * 12 + [True] * 15
    assert {r["error"] for r in lines} <= {None, "build"}

    again = FakeMeasurer()
    autotune.tune(task, 12, log=log, model="random", batch_size=4, measurer=again)
    assert again.measured == []  # the job was finished

    more = FakeMeasurer()
    autotune.tune(task, 20, log=log, model="random", batch_size=4, measurer=more)
    assert len(more.measured) == 8 + 15
    assert not set(more.measured[:8]) & set(first.measured)
    assert len(records.load(log)) == 27 + 8 + 15


def test_configurations_are_never_measured_twice_and_search_is_deterministic(task):
    runs = []
    for _ in range(2):
        fake = FakeMeasurer()
        autotune.tune(task, 24, model="xgboost", batch_size=6, measurer=fake, seed=3)
        searched = fake.measured[:24]  # then the leaders once more
        assert len(set(searched)) == len(searched) == 24
        runs.append([c.picks for c in fake.measured])
    assert runs[0] == runs[1]


class KnobSumMeasurer(FakeMeasurer):
    """Time grows with the sum of the knob picks: the first candidates of each knob win."""

    def measure(self, configs, best_seconds=None, on_result=None):
        self.measured.extend(configs)
        return [fake_result(c, (1e-3 * (1 + sum(c.picks)),)) for c in configs]


def test_the_model_guided_search_beats_random_search(task):
    def best_after(model, seed):
        # 32 trials of 192 valid configurations (at 40, random search found the optimum too)
        return autotune.tune(task, 32, model=model, batch_size=8, measurer=KnobSumMeasurer(),
                             seed=seed).best_seconds

    for seed in range(2):
        assert best_after("xgboost", seed) < best_after("random", seed)



class LuckyMeasurer(FakeMeasurer):
    """The search's first timing of one configuration is lucky (ten times too fast); every
    later timing of it, as of all others, is its true time."""

    def __init__(self):
        super().__init__()
        self.lucky = None

    def measure(self, configs, best_seconds=None, on_result=None):
        results = []
        for config in configs:
            true = 1e-3 * (1 + sum((p - 2) ** 2 for p in config.picks)) + 1e-4
            lucky = self.lucky is None and config not in self.measured
            self.lucky = config if lucky else self.lucky
            self.measured.append(config)
            results.append(fake_result(config, (true / 10 if lucky else true,) * 3))
        return results


def test_the_reported_best_is_a_re_timed_figure_not_a_lucky_one(task, tmp_path):
    log = tmp_path / "log.jsonl"
    fake = LuckyMeasurer()
    result = autotune.tune(task, 12, log=log, model="random", batch_size=4, measurer=fake)
    finalists = set(fake.measured[12:])
    assert fake.lucky in finalists  # its lucky figure made it a finalist ...
    true_times = {c: 1e-3 * (1 + sum((p - 2) ** 2 for p in c.picks)) + 1e-4
                  for c in finalists}
    best = min(true_times, key=true_times.get)
    # ... but the result, and the log's best record, give a time that re-timing reproduces
    assert result.best_config == best and result.best_seconds == pytest.approx(true_times[best])
    chosen = records.best_record(records.load(log))
    assert chosen.config == best.to_json() and chosen.final
    assert chosen.seconds == pytest.approx(true_times[best])

def test_a_corrupt_log_line_is_skipped_with_a_warning(task, tmp_path):
    log = tmp_path / "log.jsonl"
    autotune.tune(task, 4, log=log, model="random", batch_size=4, measurer=FakeMeasurer())
    with open(log, "a") as f:
        f.write('{"workload": "trunc\n')
    with pytest.warns(autotune.TuneWarning, match="skipped"):
        loaded = records.load(log)
    assert len(loaded) == 4 + 15  # and the three leaders re-timed five times


def test_a_cut_off_last_line_is_set_aside_before_appending(task, tmp_path):
    """A job killed mid-line leaves a fragment; the next run must not glue its first record
    to it (which would lose that record too)."""
    log = tmp_path / "log.jsonl"
    autotune.tune(task, 4, log=log, model="random", batch_size=4, measurer=FakeMeasurer())
    fragment = '{"workload": "cut off he'
    with open(log, "a") as f:
        f.write(fragment)
    with pytest.warns(autotune.TuneWarning, match="cut off"):
        autotune.tune(task, 8, log=log, model="random", batch_size=4, measurer=FakeMeasurer())
    assert (tmp_path / "log.jsonl.cut").read_text() == fragment + "\n"
    loaded = records.load(log)  # no warning: every line is a record
    assert len({json.dumps(r.config, sort_keys=True) for r in loaded}) == 8


def test_records_round_trip():
    record = records.Record("w", "llvm", {"a": [1, 2]}, task="t", times=(0.5, 0.25, 0.75))
    again = records.Record.from_line(record.to_line())
    assert again == record and again.seconds == 0.5
    failed = records.Record("w", "llvm", {}, error="timeout", message="ran past 10 s")
    assert records.Record.from_line(failed.to_line()).seconds == math.inf
    assert records.best_record([record, failed]) == record


def test_a_keyboard_interrupt_returns_what_was_measured(task, tmp_path):
    class Interrupting(FakeMeasurer):
        def measure(self, configs, best_seconds=None, on_result=None):
            if len(self.measured) >= 4:
                raise KeyboardInterrupt
            return super().measure(configs, best_seconds)

    log = tmp_path / "log.jsonl"
    result = autotune.tune(task, 12, log=log, model="random", batch_size=4,
                           measurer=Interrupting())
    assert result.interrupted and result.measured == 4
    assert len(records.load(log)) == 4


def test_the_ranking_model_learns_an_order():
    rng = np.random.default_rng(0)
    x = rng.random((200, 5)).astype(np.float32)
    seconds = 1.0 / (1.0 + 3 * x[:, 0] + x[:, 1])
    model = XGBoostModel(seed=0)
    model.fit(x[:150], seconds[:150])
    scores = model.predict(x[150:])
    # faster (smaller time) should score higher: strong rank agreement
    order_truth = np.argsort(seconds[150:])
    order_model = np.argsort(-scores)
    top = set(order_truth[:10]) & set(order_model[:10])
    assert len(top) >= 6
    assert len(RandomModel().predict(x)) == 200
    assert relative_throughput(np.array([2.0, 1.0, np.inf])).tolist() == [0.5, 1.0, 0.0]


def test_transfer_pretrains_the_model(task):
    other = autotune.Task.from_compute(declare_matmul(48, 44, 24))
    prior = []
    for config in [other.space.get(i) for i in range(0, len(other.space), 7)]:
        prior.append(records.Record(other.workload_key, str(other.target), config.to_json(),
                                    times=(1e-3 * (1 + sum(config.picks)),)))
    model = XGBoostModel(seed=0)
    autotune.tune(task, 0, model=model, transfer=[(other, prior)], measurer=FakeMeasurer())
    model.fit(np.zeros((0, 1)), np.zeros(0))
    assert model.trained


def test_feature_cache_marks_invalid_configs():
    task = autotune.Task.from_compute(declare_matmul(64, 48, 20))  # vectors may run down i
    features = FeatureCache(task)
    space = task.space
    configs = [space.get(i) for i in range(0, len(space), 5)]
    valid = [c for c in configs if features(c) is not None]
    invalid = [c for c in configs if features(c) is None]
    assert valid and invalid
    with pytest.raises(autotune.InvalidConfig):
        space.instantiate(invalid[0])


def test_apply_history_best_builds_the_logged_schedule(task, tmp_path):
    log = tmp_path / "log.jsonl"
    result = autotune.tune(task, 8, log=log, model="random", batch_size=4,
                           measurer=FakeMeasurer())
    A, B, C = declare_matmul()  # declared again: the same workload
    rng = np.random.default_rng(1)
    a, b = rng.random((40, 20), dtype=np.float32), rng.random((20, 36), dtype=np.float32)
    plain = tex.build(tex.create_schedule(C.op), [A, B, C])
    assert "parallel" not in plain.get_source("tex")
    with autotune.apply_history_best(log):
        tuned = tex.build(tex.create_schedule(C.op), [A, B, C])
        best_schedule, tensors = task.instantiate(result.best_config)
        assert tuned.get_source("tex") == str(tex.lower(best_schedule, tensors))
        written = tex.create_schedule(C.op)
        written[C].parallel(C.op.axis[0])  # a user's own schedule is kept
        assert "C_local" not in tex.build(written, [A, B, C]).get_source("tex")
    np.testing.assert_allclose(tuned(a, b), a @ b, rtol=1e-5)
    after = tex.build(tex.create_schedule(C.op), [A, B, C])
    assert "parallel" not in after.get_source("tex")
    with pytest.raises(autotune.TuneError, match="no tuning log"):
        autotune.apply_history_best(tmp_path / "missing.jsonl")


def test_the_reference_is_the_unscheduled_kernel_even_inside_apply_history_best(task):
    from tex import driver

    def provider(schedule, args, target):
        raise AssertionError("the reference must not ask for a tuned schedule")

    token = driver.schedule_provider.set(provider)
    try:
        inputs = task.random_inputs()
        (got,) = task.reference_outputs(inputs)
    finally:
        driver.schedule_provider.reset(token)
    np.testing.assert_allclose(got, inputs[0] @ inputs[1], rtol=1e-4, atol=1e-5)


def test_a_template_picks_its_best_config_inside_the_context(tmp_path):
    from tests.test_autotune_space import tiled_add
    task = autotune.Task.from_template(tiled_add, (37, 29))
    config = task.space.get(len(task.space) - 1)
    log = tmp_path / "log.jsonl"
    with records.RecordWriter(log) as writer:
        writer.write(records.Record(task.workload_key, "llvm", config.to_json(), times=(1e-6,)))
    default_schedule, _ = tiled_add(37, 29)
    with autotune.apply_history_best(log):
        best_schedule, _ = tiled_add(37, 29)
    assert str(task.target) == "llvm"
    assert best_schedule[best_schedule.outputs[0]].annotations != \
        default_schedule[default_schedule.outputs[0]].annotations


def test_grid_search_measures_in_index_order_and_resumes_where_it_stopped(tmp_path):
    from tests.test_autotune_space import tiled_add
    task = autotune.Task.from_template(tiled_add, (37, 29))  # every configuration is valid
    log = tmp_path / "log.jsonl"
    first = KnobSumMeasurer()
    autotune.tune(task, 6, log=log, search="grid", batch_size=4, measurer=first, remeasure=0)
    assert first.measured == [task.space.get(i) for i in range(6)]
    again = KnobSumMeasurer()
    autotune.tune(task, 9, log=log, search="grid", batch_size=4, measurer=again, remeasure=0)
    assert again.measured == [task.space.get(i) for i in range(6, 9)]


def test_genetic_search_breeds_new_configurations_from_the_fastest(task):
    runs = []
    for _ in range(2):
        fake = KnobSumMeasurer()
        result = autotune.tune(task, 18, search="genetic", model="random", batch_size=6,
                               measurer=fake, seed=5, remeasure=0)
        assert len(set(fake.measured)) == 18
        runs.append([c.picks for c in fake.measured])
    assert runs[0] == runs[1]
    random_best = autotune.tune(task, 18, search="random", batch_size=6, seed=5,
                                measurer=KnobSumMeasurer(), remeasure=0).best_seconds
    assert result.best_seconds <= random_best
    with pytest.raises(autotune.TuneError, match="search must be one of.*got 'annealing'"):
        autotune.tune(task, 4, search="annealing", measurer=FakeMeasurer())


def test_early_stopping_ends_a_run_that_stops_improving(task):
    fake = KnobSumMeasurer()  # the first configuration of the grid is the fastest
    result = autotune.tune(task, 40, search="grid", batch_size=4, measurer=fake,
                           early_stopping=5, remeasure=0)
    assert len(fake.measured) == result.measured == 8  # the second batch found nothing faster
    with pytest.raises(autotune.TuneError, match="early_stopping must be None or an int"):
        autotune.tune(task, 4, early_stopping=0, measurer=fake)


def test_a_template_may_declare_its_flops():
    @autotune.template
    def scaled(cfg, n, declared):
        A = tex.placeholder((n,), name="A")
        B = tex.compute((n,), lambda i: A[i] * 2.0, name="B")
        for flops in declared:
            cfg.add_flop(flops)
        return tex.create_schedule(B.op), [A, B]

    assert autotune.Task.from_template(scaled, (50, [])).flops == 50  # counted
    assert autotune.Task.from_template(scaled, (50, [150, 50])).flops == 200
    with pytest.raises(autotune.TuneError, match="non-negative number, got -1"):
        autotune.Task.from_template(scaled, (50, [-1]))
