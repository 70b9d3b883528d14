"""Tuning jobs with a fake measurer: the TASKS file, the scheduler, budgets, resume, and
records tied to the hardware they were measured on."""
import io
import json
import math
import statistics
import sys
import warnings

import pytest

import autotune
import autotune.userfile
from autotune import cli, job
from autotune import records as rec
from autotune.hardware import host_cpu_model
from autotune.measure import MeasureResult
from checks import USER_OPS_FILE

TASKS_TOML = '''
[[tasks]]
op = "matmul"
shape = [40, 36, 20]
weight = 2

[[tasks]]
op = "full_sum"
shape = "1000"

[[tasks]]
file = "my_ops.py"
function = "scale"
args = [100]
'''

class FakeMeasurer:
    """Times from the configuration's picks, scaled per task; first pick 1 fails."""

    def __init__(self, scale=1.0):
        self.measured, self.scale = [], scale

    def measure(self, configs, best_seconds=None, on_result=None):
        results = []
        for config in configs:
            self.measured.append(config)
            if config.picks[0] == 1:
                results.append(MeasureResult(config, (), "build", "boom", 0.0))
            else:
                t = self.scale * 1e-4 * (1 + sum(config.picks))
                results.append(MeasureResult(config, (t, t, t), None, "", 0.0))
        return results

    def close(self):
        pass


@pytest.fixture
def tasks_file(tmp_path):
    (tmp_path / "my_ops.py").write_text(USER_OPS_FILE)
    path = tmp_path / "job.toml"
    path.write_text(TASKS_TOML)
    return path


def run(entries, log_dir, measurers, **options):
    """run_job with one FakeMeasurer per task (kept in `measurers` by task name)."""
    def make(task):
        return measurers.setdefault(task.name, FakeMeasurer())
    return job.run_job(entries, log_dir, make_measurer=make, batch_size=3, model="random",
                       **options)


def test_a_job_of_three_tasks_spends_its_trial_budget_writing_each_record_once(
        tasks_file, tmp_path):
    entries = job.load_tasks(tasks_file)
    assert [e.weight for e in entries] == [2.0, 1.0, 1.0]
    assert [e.task.name for e in entries] == ["matmul 40,36,20", "full_sum 1000", "scale"]
    measurers = {}
    result = run(entries, tmp_path / "logs", measurers, trials=20)
    assert result.stopped_by == "trial budget"
    assert sum(s.trials for s in result.states) == 20
    for state in result.states:
        records = rec.load(state.log)
        trials = [r for r in records if not r.final]
        configs = [json.dumps(r.config, sort_keys=True) for r in trials]
        assert len(configs) == len(set(configs)) == state.trials >= 3
        check_finalists(state, trials, [r for r in records if r.final])
        assert state.task.name.split()[0] in state.log
        assert all(r.hardware["cpu_model"] == host_cpu_model() for r in records)
        assert records[0].hardware["llvm_cpu"] == state.task.target.cpu
        assert records[0].hardware["cores"] >= 1 and records[0].hardware["features"]
    rows = job.summary_rows(result.states)
    assert all(r.speedup >= 1 for r in rows if math.isfinite(r.best_seconds))
    # NumPy's time for the registry operators, none for the function of a file
    assert [math.isfinite(r.numpy_seconds) for r in rows] == [True, True, False]
    assert all(r.numpy_seconds > 0 and r.over_numpy == r.numpy_seconds / r.best_seconds
               for r in rows[:2])


def check_finalists(state, trials, finals):
    """The job's end: the REMEASURED fastest trials each re-timed in RETIMING_ROUNDS
    rounds, and the task's best the best median of those re-timings."""
    ok = sorted((r for r in trials if r.error is None), key=lambda r: r.seconds)
    leaders = [json.dumps(r.config, sort_keys=True) for r in ok[:autotune.tuner.REMEASURED]]
    assert sorted(json.dumps(r.config, sort_keys=True) for r in finals) == \
        sorted(leaders * autotune.tuner.RETIMING_ROUNDS)
    medians = {c: statistics.median(r.seconds for r in finals
                                    if json.dumps(r.config, sort_keys=True) == c)
               for c in leaders}
    assert state.best == min(medians.values())
    assert json.dumps(rec.best_record(trials + finals).config, sort_keys=True) == \
        min(medians, key=medians.get)


def test_resume_measures_nothing_twice(tasks_file, tmp_path):
    entries = job.load_tasks(tasks_file)
    first = {}
    run(entries, tmp_path / "logs", first, trials=12, remeasure=0)
    with pytest.raises(autotune.TuneError, match="pass --resume"):
        run(entries, tmp_path / "logs", {}, trials=20)
    again = {}
    result = run(entries, tmp_path / "logs", again, trials=20, resume=True, remeasure=0)
    assert sum(s.trials for s in result.states) == 20
    for name, measurer in again.items():
        assert not set(measurer.measured) & set(first.get(name, FakeMeasurer()).measured)
    finished = {}  # nor are the finalists of a finished job re-timed
    run(entries, tmp_path / "logs", finished, trials=20, resume=True)
    assert all(not m.measured for m in finished.values())


def test_the_tasks_finalists_are_timed_again_round_by_round(tasks_file, tmp_path):
    """Each round of the re-timing times every task's finalists, so that a slow spell of
    the machine falls on one round of each task rather than on all rounds of one."""
    calls = []

    class Named(FakeMeasurer):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def measure(self, configs, best_seconds=None, on_result=None):
            calls.append(self.name)
            return super().measure(configs, best_seconds)
    entries = job.load_tasks(tasks_file)
    job.run_job(entries, tmp_path / "logs", trials=12, batch_size=3, model="random",
                make_measurer=lambda task: Named(task.name))
    names = [e.task.name for e in entries]
    rounds = autotune.tuner.RETIMING_ROUNDS
    assert calls[-rounds * len(names):] == names * rounds


class LuckyMeasurer(FakeMeasurer):
    """Times as FakeMeasurer's, but the first timing of the first configuration whose picks
    sum to 3 or more is a thousand times too fast: a lucky measurement."""

    lucky = None

    def measure(self, configs, best_seconds=None, on_result=None):
        results = super().measure(configs, best_seconds)
        for n, result in enumerate(results):
            if self.lucky is None and result.error is None and sum(result.config.picks) >= 3:
                self.lucky = result.config
                results[n] = MeasureResult(result.config, tuple(t / 1000 for t in result.times),
                                           None, "", 0.0)
        return results


def true_seconds(config):
    return 1e-4 * (1 + sum(config.picks))


def test_a_job_judges_each_task_by_its_finalists_timed_again(tmp_path):
    """A lucky timing wins the search, but not the re-timing at the job's end: the job's
    best, `best_record` and `apply_history_best` all name the truly fastest finalist."""
    task = autotune.ops.task_for("matmul", "40,36,20")
    measurer = LuckyMeasurer()
    result = job.run_job([job.JobEntry(task)], tmp_path / "logs", trials=30, batch_size=6,
                         search="grid", model="random", make_measurer=lambda t: measurer)
    state, = result.states
    records = rec.load(state.log)
    trials, finals = [r for r in records if not r.final], [r for r in records if r.final]
    winner = min((r for r in trials if r.error is None), key=lambda r: r.seconds)
    assert task.space.from_json(winner.config) == measurer.lucky  # the search's winner
    check_finalists(state, trials, finals)
    others = {task.space.from_json(r.config) for r in finals} - {measurer.lucky}
    assert others and state.best == min(map(true_seconds, others)) < \
        true_seconds(measurer.lucky)
    best = rec.best_record(records)
    assert task.space.from_json(best.config) != measurer.lucky
    with autotune.apply_history_best(state.log) as context:
        assert list(context.best.values())[0].config == best.config


def state_of(weight, history, exhausted=False):
    entry = job.JobEntry(task=None, weight=weight)
    trials, best = history[-1]
    return job.TaskState(entry, "", trials, best, list(history), exhausted)


def test_the_scheduler_favours_the_larger_weighted_gain():
    improving = state_of(1, [(3, 2e-3), (6, 1e-3)])   # fell by 1/3 ms a trial
    stalled = state_of(1, [(3, 1e-3), (6, 1e-3)])
    assert job.estimated_gain(improving) > job.estimated_gain(stalled) > 0
    assert job.pick_task([stalled, improving]) is improving
    heavy = state_of(10, [(3, 1e-3), (6, 1e-3)])       # stalled, but weighs ten times more
    assert job.pick_task([improving, heavy]) is heavy
    spent = state_of(100, [(3, 2e-3), (6, 1e-3)], exhausted=True)
    assert job.pick_task([spent, stalled]) is stalled
    assert job.pick_task([spent]) is None


def test_the_tasks_of_a_job_share_their_measurements_with_each_others_model(
        tmp_path, monkeypatch):
    """Each round's XGBoost model knows beforehand, as one ranking group per task, what the
    other tasks of the job have logged so far, and the search follows it from the first
    batch of the task's warm-up round."""
    models = []

    class Spy(job.XGBoostModel):
        def __init__(self, seed=0):
            super().__init__(seed)
            self.priors = []
            models.append(self)

        def add_prior(self, features, seconds):
            self.priors.append(len(features))
            super().add_prior(features, seconds)
    ready = []  # (measured, model_ready) of each batch's proposal
    next_batch = autotune.search.EvolutionarySearch.next_batch

    def spy_next_batch(self, count, measured, model_ready):
        ready.append((len(measured), model_ready))
        return next_batch(self, count, measured, model_ready)
    monkeypatch.setattr(job, "XGBoostModel", Spy)
    monkeypatch.setattr(autotune.search.EvolutionarySearch, "next_batch", spy_next_batch)
    entries = [job.JobEntry(autotune.ops.task_for("matmul", shape))
               for shape in ("40,36,20", "24,48,33")]
    measurers = {}
    result = job.run_job(entries, tmp_path / "logs", trials=18, batch_size=3,
                         make_measurer=lambda task: measurers.setdefault(task.name,
                                                                         FakeMeasurer()))
    assert result.stopped_by == "trial budget"
    logged = [len(autotune.tuner.measured_configs(s.task, rec.load(s.log)))
              for s in result.states]
    assert models[0].priors == []  # the first warm-up: nothing known yet, random
    assert ready[0] == (0, False)
    assert all(len(m.priors) == 1 and 3 <= m.priors[0] <= max(logged) for m in models[1:])
    assert ready[1] == (0, True)  # the second task's warm-up follows the first's model


def test_a_time_budget_stops_the_job(tasks_file, tmp_path):
    ticks = iter(range(1000))
    result = run(job.load_tasks(tasks_file), tmp_path / "logs", {}, time_budget=5,
                 clock=lambda: float(next(ticks)))  # a second passes at each look
    assert result.stopped_by == "time budget"
    assert sum(s.trials for s in result.states) < 20


def test_early_stop_ends_a_job_that_stops_improving(tasks_file, tmp_path):
    result = run(job.load_tasks(tasks_file), tmp_path / "logs", {}, trials=500, early_stop=1)
    assert result.stopped_by.startswith("no improvement for 1 rounds")
    assert sum(s.trials for s in result.states) < 500


@pytest.mark.parametrize("text, suffix, words", [
    ("[[tasks]]\nop = 'matmul'\n", ".toml", ["task 1", "matmul needs shape"]),
    ("[[tasks]]\nop = 'gemm'\nshape = [4]\n", ".toml", ["task 1", "unknown operator 'gemm'"]),
    ("[[tasks]]\nop = 'matmul'\nshape = [4, 4, 4]\nwieght = 2\n", ".toml",
     ["unknown keys ['wieght']"]),
    ("[[tasks]]\nop = 'matmul'\nshape = [4, 4, 4]\nweight = -1\n", ".toml",
     ["weight must be a positive number, got -1"]),
    ("[[tasks]]\nop = 'matmul'\nfile = 'x.py'\n", ".toml", ["either op", "got both"]),
    ("[[tasks]]\nfile = 'missing.py'\nfunction = 'f'\n", ".toml", ["no Python file"]),
    ("[[tasks]\n", ".toml", ["not valid TOML"]),
    ('{"tasks": []}', ".json", ["non-empty list of tasks"]),
    ('[{"op": "matmul", "shape": [4, 4, 4]}, {"op": "matmul", "shape": [4, 4, 4]}]', ".json",
     ["listed twice"]),
    ("{op: matmul}", ".json", ["not valid JSON"]),
])
def test_bad_tasks_files_give_clear_errors(tmp_path, text, suffix, words):
    path = tmp_path / f"tasks{suffix}"
    path.write_text(text)
    with pytest.raises(autotune.TuneError) as err:
        job.load_tasks(path)
    for word in words:
        assert word in str(err.value)


# --- records tied to hardware ---------------------------------------------------------------

def declare_matmul():
    return autotune.ops.task_for("matmul", "40,36,20")


def foreign_log(tmp_path, model="Imaginary CPU 9000"):
    """A log of matmul 40,36,20 whose records claim another CPU model."""
    task = declare_matmul()
    log = tmp_path / "other.jsonl"
    autotune.tune(task, 3, log=log, model="random", batch_size=3, remeasure=0,
                  measurer=FakeMeasurer())
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        line["hardware"]["cpu_model"] = model
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return task, log


def test_apply_history_best_leaves_out_records_of_other_hardware(tmp_path):
    task, log = foreign_log(tmp_path)
    with pytest.warns(autotune.TuneWarning, match="Imaginary CPU 9000"):
        context = autotune.apply_history_best(log)
    assert context.best == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autotune.apply_history_best(log, match_hardware=False).best


def test_old_logs_without_hardware_still_load_and_match(tmp_path):
    task, log = foreign_log(tmp_path)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        del line["hardware"]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert all(r.hardware == {} for r in rec.load(log))
    assert autotune.apply_history_best(log).best


def test_tex_tune_best_says_when_records_are_of_other_hardware(tmp_path, capsys):
    task, log = foreign_log(tmp_path)
    assert cli.main(["best", str(log)]) == 0
    out = capsys.readouterr().out
    assert "Imaginary CPU 9000" in out and "--any-hardware" in out and "config:" not in out
    assert cli.main(["best", str(log), "--any-hardware"]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "config:" in out and "C[" in out


def test_tex_tune_best_shows_rate_and_loop_nest_of_a_file_workload(tmp_path, capsys):
    source = tmp_path / "my_ops.py"
    source.write_text(USER_OPS_FILE)
    task = autotune.userfile.function_task(str(source), "scale", [100], "llvm")
    log = tmp_path / "s.jsonl"
    autotune.tune(task, 3, log=log, model="random", batch_size=3, remeasure=0,
                  measurer=FakeMeasurer())
    assert cli.main(["best", str(log)]) == 0
    assert "pass the --file" in capsys.readouterr().out
    assert cli.main(["best", str(log), "--file", str(source)]) == 0
    out = capsys.readouterr().out
    assert "GB/s" in out and "B[" in out


def test_tex_tune_job_prints_a_summary(tasks_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "Measurer", lambda task, **options: FakeMeasurer())
    argv = ["job", str(tasks_file), "--log-dir", str(tmp_path / "logs"), "--trials", "12",
            "--batch-size", "3", "--model", "random"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "speed-up" in out and "vs NumPy" in out
    assert "matmul 40,36,20" in out and "scale" in out
    assert "12/12 trials" in err and "stopped by the trial budget" in err
    assert cli.main(argv) == 2 and "--resume" in capsys.readouterr().err
    assert cli.main(argv[:-6] + ["--model", "random"]) == 2
    assert "--trials N or --time-budget" in capsys.readouterr().err


def test_tex_tune_job_redraws_a_line_per_task_after_each_measurement_on_a_terminal(
        tasks_file, tmp_path, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(cli, "Measurer", lambda task, **options: FakeMeasurer())
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert cli.main(["job", str(tasks_file), "--log-dir", str(tmp_path / "logs"), "--trials",
                     "12", "--batch-size", "3", "--model", "random"]) == 0
    text = sys.stderr.getvalue()
    frames = text.split("\x1b[4F")  # each redraw goes up over the header and three tasks
    # a frame per measurement, per round of 3, and per task's re-timed finalists
    assert len(frames) == 12 + 4 + 3
    last = frames[-1].replace("\x1b[2K", "").splitlines()
    assert last[0].startswith("12/12 trials")
    assert [line[2:].split()[0] for line in last[1:4]] == ["matmul", "full_sum", "scale"]
    assert sum(line.startswith(">") for line in last[1:4]) == 1
    assert sum(int(line.split("trials")[0].split()[-1]) for line in last[1:4]) == 12


def test_tex_tune_plot_draws_a_panel_per_task_of_a_job(tasks_file, tmp_path, capsys,
                                                       monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(cli, "Measurer", lambda task, **options: FakeMeasurer())
    logs = tmp_path / "logs"
    assert cli.main(["job", str(tasks_file), "--log-dir", str(logs), "--trials", "9",
                     "--batch-size", "3", "--model", "random"]) == 0
    run([job.JobEntry(autotune.ops.task_for("reduce_sum", (33, 70)))], tmp_path / "more", {},
        trials=3)
    other = next((tmp_path / "more").iterdir())  # a fourth workload's log file

    def png_size(path):  # width, height from the PNG's IHDR chunk
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")

    assert cli.main(["plot", str(logs), "-o", str(tmp_path / "job.png")]) == 0
    assert png_size(tmp_path / "job.png") == (700, 3 * 320)  # three panels in a column
    assert cli.main(["plot", str(logs), str(other), "-o", str(tmp_path / "all.png")]) == 0
    assert png_size(tmp_path / "all.png") == (2 * 700, 2 * 320)  # four, in two columns
    capsys.readouterr()
    assert cli.main(["plot", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no tuning log" in capsys.readouterr().err
