"""tex-tune end to end: logs, resume, best, plot, --file, --transfer, errors and Ctrl-C.

Most runs measure with a fake measurer (patched into the CLI's `tune`), so that they take
milliseconds and their counts are exact; the run through `python -m autotune.cli` measures
for real.
"""
import functools
import io
import json
import subprocess
import sys

import pytest

import autotune
from autotune import cli
from autotune.measure import MeasureResult
from checks import USER_OPS_FILE

SHAPE = "40,36,20"  # matmul: big enough for the generated register tiles
# Runs of one round (trials <= batch size) take the search's random start, which is cheap;
# later rounds lower dozens of candidates, so runs of several rounds tune a small full_sum.
ROUNDS = ["full_sum", "--shape", "1000"]


def fake_result(config, times, error=None, message=""):
    return MeasureResult(config, tuple(times), error, message, 0.0)


class FakeMeasurer:
    """Times from the configuration's picks; configurations whose first pick is 1 fail.
    After `interrupt_after` configurations, the next measure() is a Ctrl-C."""

    def __init__(self, interrupt_after=None):
        self.measured, self.interrupt_after = [], interrupt_after

    def measure(self, configs, best_seconds=None, on_result=None):
        if self.interrupt_after is not None and len(self.measured) >= self.interrupt_after:
            raise KeyboardInterrupt
        results = []
        for config in configs:
            self.measured.append(config)
            if config.picks[0] == 1:
                results.append(fake_result(config, (), "build", "boom"))
            else:
                t = 1e-4 * (1 + sum(config.picks))
                results.append(fake_result(config, (t, t, t)))
            if on_result is not None:
                on_result(results[-1])
        return results

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch):
    """The FakeMeasurer that every `tune` of the CLI uses; `.calls` keeps tune's kwargs."""
    measurer = FakeMeasurer()
    measurer.calls = []

    def fake_tune(task, trials, **kwargs):
        measurer.calls.append(kwargs)
        return autotune.tune(task, trials, measurer=measurer, **kwargs)
    monkeypatch.setattr(cli, "tune", fake_tune)
    return measurer


def tex_tune(capsys, *argv):
    """(exit status, stdout, stderr) of `tex-tune argv...`."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def tune_args(log, trials=3, *extra, op=("matmul", "--shape", SHAPE)):
    """Arguments of a quick tuning run: no final re-measurement, so one log line per trial."""
    return [*op, "--trials", trials, "--batch-size", 3, "--model", "random", "--log", log,
            "--remeasure", 0, *extra]


def lines(path):
    return path.read_text().splitlines()


def test_tune_writes_one_record_per_trial(fake, tmp_path, capsys):
    log = tmp_path / "m.jsonl"
    status, out, err = tex_tune(capsys, *tune_args(log))
    assert status == 0, err
    assert len(lines(log)) == 3 == len(fake.measured)
    record = json.loads(lines(log)[0])
    assert record["task"] == f"matmul {SHAPE}" and record["target"] == "llvm"
    assert f"matmul {SHAPE} on llvm: best" in out and "GFLOP/s" in out
    best = json.loads(out.split("config: ", 1)[1])
    assert set(best) == set(autotune.load(log)[0].config)


def test_a_log_holding_the_workload_needs_resume(fake, tmp_path, capsys):
    log = tmp_path / "m.jsonl"
    assert tex_tune(capsys, *tune_args(log))[0] == 0
    status, out, err = tex_tune(capsys, *tune_args(log))
    assert status == 2 and len(lines(log)) == 3
    assert err.startswith("tex-tune: error: ") and "--resume" in err and "--log" in err
    assert "Traceback" not in err


def test_resume_counts_the_trials_already_in_the_log(fake, tmp_path, capsys):
    log = tmp_path / "s.jsonl"
    assert tex_tune(capsys, *tune_args(log, 4, op=ROUNDS))[0] == 0
    status, out, err = tex_tune(capsys, *tune_args(log, 4, "--resume", op=ROUNDS))
    assert status == 0 and len(lines(log)) == 4 and len(fake.measured) == 4
    assert "nothing to measure" in err and "best" in out
    status, out, err = tex_tune(capsys, *tune_args(log, 9, "--resume", op=ROUNDS))
    assert status == 0 and len(lines(log)) == 9 and len(fake.measured) == 9
    configs = [json.dumps(r.config, sort_keys=True) for r in autotune.load(log)]
    assert len(set(configs)) == 9  # nothing measured twice
    # not a terminal: one progress line per round (of 3), then the best on stdout
    rounds = [line for line in err.splitlines() if "/9 trials" in line]
    assert [line.split("]")[1].split()[0] for line in rounds] == ["7/9", "9/9"]
    assert "GB/s" in rounds[-1] and "failed" in rounds[-1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_redrawn_per_measurement_on_a_terminal_else_a_line_per_round(
        fake, monkeypatch, tmp_path, capsys, tty):
    stream = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    status, _, _ = tex_tune(capsys, *tune_args(tmp_path / "s.jsonl", 6, op=ROUNDS))
    assert status == 0
    text = stream.getvalue()
    progress = [line for line in text.replace("\r", "\n").splitlines() if "] " in line]
    failed = sum(c.picks[0] == 1 for c in fake.measured)
    if tty:  # once per measurement, in place
        assert text.count("\r") == 6 and len(progress) == 6
    else:  # once per round of 3
        assert "\r" not in text and len(progress) == 2
    assert "6/6 trials" in progress[-1] and f"{failed} failed" in progress[-1]
    assert "GFLOP/s" in progress[-1] or "GB/s" in progress[-1]


def test_ctrl_c_stops_cleanly(monkeypatch, tmp_path, capsys):
    measurer = FakeMeasurer(interrupt_after=3)
    monkeypatch.setattr(cli, "tune", functools.partial(autotune.tune, measurer=measurer))
    log = tmp_path / "s.jsonl"
    status, out, err = tex_tune(capsys, *tune_args(log, 9, op=ROUNDS))
    assert status == 130 and len(lines(log)) == 3
    assert "stopped; the log keeps 3 measurements" in err


def test_best_prints_the_config_and_its_loop_nest(fake, tmp_path, capsys):
    log = tmp_path / "m.jsonl"
    assert tex_tune(capsys, *tune_args(log))[0] == 0
    status, out, err = tex_tune(capsys, "best", log)
    assert status == 0, err
    best = autotune.best_record(autotune.load(log))
    assert f"== matmul {SHAPE} on llvm" in out and "GFLOP/s" in out
    assert f"config: {json.dumps(best.config)}" in out
    assert "for " in out and "C[" in out  # the loop nest
    assert tex_tune(capsys, "best", log, "--workload", f"matmul {SHAPE}")[1] == out
    status, out, err = tex_tune(capsys, "best", log, "--workload", "matmul 1,2,3")
    assert status == 2 and f"matmul {SHAPE}" in err


def test_plot_writes_a_png(fake, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log, png = tmp_path / "m.jsonl", tmp_path / "curve.png"
    assert tex_tune(capsys, *tune_args(log))[0] == 0
    status, out, err = tex_tune(capsys, "plot", log, "-o", png)
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, fake, tmp_path, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    log = tmp_path / "m.jsonl"
    assert tex_tune(capsys, *tune_args(log))[0] == 0
    status, out, err = tex_tune(capsys, "plot", log, "-o", tmp_path / "curve.png")
    assert status == 2 and "pip install matplotlib" in err


def test_xgboost_model(fake, tmp_path, capsys):
    pytest.importorskip("xgboost")
    log = tmp_path / "s.jsonl"
    status, out, err = tex_tune(capsys, *ROUNDS, "--trials", 8, "--batch-size", 2,
                                "--model", "xgboost", "--log", log)
    assert status == 0, err
    assert len(lines(log)) == 8 + 15  # and the three fastest re-timed five times


def test_xgboost_missing_is_a_clear_error(monkeypatch, fake, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "xgboost", None)
    status, out, err = tex_tune(capsys, "matmul", "--shape", SHAPE, "--trials", 3,
                                "--model", "xgboost", "--log", tmp_path / "m.jsonl")
    assert status == 2 and "pip install xgboost" in err and "Traceback" not in err


def test_transfer_hands_other_registry_workloads_to_tune(fake, tmp_path, capsys):
    other = tmp_path / "other.jsonl"
    assert tex_tune(capsys, *tune_args(other, op=("matmul", "--shape", "48,40,24")))[0] == 0
    with open(other, "a") as f:  # a workload the registry does not declare is skipped
        f.write(json.dumps({"workload": "template:x", "target": "llvm", "config": {},
                            "task": "my_template", "times": [1.0]}) + "\n")
    status, out, err = tex_tune(capsys, *tune_args(tmp_path / "m.jsonl", 3, "--transfer",
                                                   other))
    assert status == 0, err
    assert "transfer: 3 measurements of 1 workloads" in err and "my_template" in err
    [(task, records)] = fake.calls[-1]["transfer"]
    assert task.name == "matmul 48,40,24" and len(records) == 3


def test_file_with_a_template(fake, tmp_path, capsys):
    source = tmp_path / "my_ops.py"
    source.write_text(USER_OPS_FILE)
    log = tmp_path / "t.jsonl"
    status, out, err = tex_tune(capsys, "--file", source, "scale", "--args", "100",
                                "--trials", 4, "--model", "random", "--log", log,
                                "--remeasure", 0)
    assert status == 0, err
    records = autotune.load(log)
    assert len(records) == 4 and records[0].task == "scale"
    assert records[0].workload == json.dumps(["template", "scale", [100]])
    assert "scale on llvm: best" in out


def test_file_with_a_function_returning_tensors(fake, tmp_path, capsys):
    source = tmp_path / "my_ops.py"
    source.write_text(USER_OPS_FILE)
    log = tmp_path / "f.jsonl"
    status, out, err = tex_tune(capsys, "--file", source, "my_matmul", "--args", SHAPE,
                                "--trials", 3, "--model", "random", "--log", log,
                                "--remeasure", 0)
    assert status == 0, err
    assert [r.task for r in autotune.load(log)] == [f"my_matmul {SHAPE}"] * 3
    # the same declaration as the registry's matmul: the same workload
    assert autotune.load(log)[0].workload == autotune.ops.task_for("matmul", SHAPE).workload_key
    status, out, err = tex_tune(capsys, "--file", source, "nothing", "--trials", 3,
                                "--log", log)
    assert status == 2 and "no function 'nothing'" in err and "my_matmul, scale" in err


@pytest.mark.parametrize("argv, words", [
    (["gemm", "--shape", "4,4,4"], ["unknown operator 'gemm'", "matmul", "softmax"]),
    (["matmul", "--shape", "4,4"], ["matmul takes 3 shape values (M,N,K)"]),
    (["matmul", "--shape", "4,x,4"], ["integers separated by commas"]),
    (["matmul", "--shape", "4,0,4"], ["N must be positive, got 0"]),
    (["conv2d"], ["conv2d needs --shape N,C,H,W,K[,R,S,stride,pad]"]),
    (["matmul", "--shape", "4,4,4", "--args", "1"], ["--args goes with --file"]),
    (["--file", "missing.py", "f"], ["no Python file at 'missing.py'"]),
])
def test_usage_errors_exit_2_with_a_clear_message(tmp_path, capsys, argv, words):
    status, out, err = tex_tune(capsys, *argv, "--trials", 3, "--log", tmp_path / "x.jsonl")
    assert status == 2 and err.startswith("tex-tune: error: ") and "Traceback" not in err
    for word in words:
        assert word in err
    assert not (tmp_path / "x.jsonl").exists()


def test_argparse_errors_exit_2(capsys):
    status, out, err = tex_tune(capsys, "matmul", "--shape", "4,4,4")  # no --trials, --log
    assert status == 2 and "--trials" in err and "usage: tex-tune" in err
    assert tex_tune(capsys, "best")[0] == 2
    assert tex_tune(capsys)[0] == 2
    status, out, err = tex_tune(capsys, "--help")
    assert status == 0 and "tune" in out and "best" in out and "plot" in out


def test_ops_lists_the_registry(capsys):
    status, out, err = tex_tune(capsys, "ops")
    assert status == 0
    assert "conv2d" in out and "N,C,H,W,K[,R,S,stride,pad]" in out


def test_python_dash_m_measures_for_real(tmp_path):
    log = tmp_path / "m.jsonl"
    proc = subprocess.run([sys.executable, "-m", "autotune.cli", *map(str, tune_args(log, 3))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = autotune.load(log)
    assert len(records) == 3 and all(r.error is None for r in records), proc.stderr
    assert "3/3 trials" in proc.stderr and "best" in proc.stdout
