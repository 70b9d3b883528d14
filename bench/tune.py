"""How well the autotuner does: tune matmul 1024^3 and the ResNet conv2d with generated spaces.

    python -m bench.tune                       # 64 then 256 trials on both
    python -m bench.tune --ops matmul --trials 64
    python -m bench.tune --json bench/results/tune.json
    python -m bench.tune --peer tvm            # MetaSchedule tuned alongside, where installed

For each operator and each trial count (ascending, the larger continuing
the smaller's log, so its time is the total), the tuner runs with the
XGBoost model on the space `autotune.space_for` generates. Then the best
configuration is built again and timed by the suite's harness
(bench/__main__.py: interleaved batches, medians, results checked against
float64) beside NumPy and the hand schedule of bench/schedules.py, so the
figure is a fresh measurement rather than the tuner's own. Last, the cost
model's ranking quality: an XGBoost model fitted on a random 80% of the
operator's measurements ranks the other 20%; the table gives Kendall's tau
and the recall of the true top 10% among the predicted top 10%.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import tempfile

import numpy as np

import autotune
import tex
from autotune import ops as registry
from autotune.cost_model import XGBoostModel
from autotune.tuner import FeatureCache, measured_configs
from bench.__main__ import time_interleaved
from bench.cases import CASES_BY_NAME, Runner, relative_error
from bench.peak import cpu_name
from bench.systems import numpy_impl, tex_impl

#: operator -> (registry shape, bench case)
OPERATORS = {
    "matmul": ((1024, 1024, 1024), "matmul1024"),
    "conv2d": ((1, 64, 56, 56, 64), "conv2d"),
}


def kendall_tau(a, b) -> float:
    """Kendall's tau-a between two score lists (pairs tied in either count as neither)."""
    n, agree = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            agree += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(agree / (n * (n - 1) / 2)) if n > 1 else math.nan


def ranking_quality(task, log: str, seed: int = 0) -> dict:
    """Kendall tau and top-10% recall of a model trained on 80% of the log, on the other 20%."""
    measured = measured_configs(task, autotune.load(log))
    features = FeatureCache(task)
    rows = [(features(c), t) for c, t in measured.items() if math.isfinite(t)]
    rows = [(x, t) for x, t in rows if x is not None]
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * 0.8)
    train, test = rows[:cut], rows[cut:]
    if len(train) < 4 or len(test) < 4:
        return {"tau": math.nan, "top10_recall": math.nan, "held_out": len(test)}
    model = XGBoostModel(seed=seed)
    model.fit(np.stack([x for x, _ in train]), np.array([t for _, t in train]))
    scores = model.predict(np.stack([x for x, _ in test]))
    speed = [-t for _, t in test]
    k = max(1, len(test) // 10)
    true_top = set(np.argsort(speed)[-k:])
    predicted_top = set(np.argsort(scores)[-k:])
    return {"tau": kendall_tau(list(scores), speed),
            "top10_recall": len(true_top & predicted_top) / k, "held_out": len(test)}


def remeasure(task, config, case_name: str, samples: int, peers=None) -> dict:
    """Rates of the tuned kernel, NumPy, the hand schedule and `peers` (name -> Runner on
    the case's inputs), timed together."""
    case = CASES_BY_NAME[case_name]
    inputs = case.inputs()
    reference = case.reference(*[x.astype(np.float64) for x in inputs])
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target=task.target)
    output = kernel(*inputs)
    runners = {"tuned": Runner(lambda: kernel(*inputs, output), lambda: output),
               "hand": tex_impl.FACTORIES[case_name](inputs),
               "numpy": numpy_impl.FACTORIES[case_name](inputs)}
    runners.update(peers or {})
    for name, runner in runners.items():
        runner.run()
        error = relative_error(runner.result(), reference)
        if not error < 1e-4:
            raise AssertionError(f"{name} on {case_name}: relative error {error:.2e}")
    times = time_interleaved(runners, samples)
    return {name: case.rate(statistics.median(ts)) for name, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="matmul,conv2d")
    parser.add_argument("--trials", default="64,256", help="ascending trial counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--log-dir", help="keep the tuning logs here (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--peer", choices=["tvm"], help="also tune with TVM's MetaSchedule "
                        "(from scratch at each trial count) and time its kernel beside ours")
    args = parser.parse_args(argv)
    if args.peer == "tvm":
        from bench.systems import tvm_tune  # ImportError here: TVM is not installed
    trial_counts = sorted(int(t) for t in args.trials.split(","))
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tex-tune-")
    os.makedirs(log_dir, exist_ok=True)
    print(f"# python -m bench.tune --ops {args.ops} --trials {args.trials} --seed {args.seed}")
    print(f"# {cpu_name()}, "
          f"{os.cpu_count()} cores; logs in {log_dir}")
    results = {}
    for op in args.ops.split(","):
        shape, case_name = OPERATORS[op]
        task = registry.task_for(op, shape)
        log = os.path.join(log_dir, f"{op}.jsonl")
        spent = 0.0
        print(f"# {op} {shape}: {len(task.space)} configurations in the generated space",
              flush=True)
        for trials in trial_counts:
            result = autotune.tune(task, trials, log=log, seed=args.seed)
            spent += result.elapsed
            peers, peer_seconds = {}, {}
            if args.peer == "tvm":
                peers["tvm"], peer_seconds["tvm"] = tvm_tune.metaschedule(
                    case_name, trials, CASES_BY_NAME[case_name].inputs(), args.seed)
            rates = remeasure(task, result.best_config, case_name, args.samples, peers)
            row = {"trials": trials, "tuning_seconds": spent, "peer_seconds": peer_seconds,
                   "tuner_best": result.best_rate, **rates,
                   "config": result.best_config.to_json()}
            results.setdefault(op, []).append(row)
            peer_text = "".join(f"  {name} {rates[name]:6.1f} ({peer_seconds[name]:.0f} s)"
                                for name in peers)
            print(f"{op:7s} {trials:4d} trials {spent:6.1f} s  tuned {rates['tuned']:6.1f}  "
                  f"(tuner said {result.best_rate:6.1f})  numpy {rates['numpy']:6.1f}  "
                  f"hand {rates['hand']:6.1f}{peer_text} {task.unit}   {row['config']}",
                  flush=True)
        quality = ranking_quality(task, log, args.seed)
        results[op + ":model"] = quality
        print(f"{op:7s} cost model on {quality['held_out']} held-out measurements: Kendall tau "
              f"{quality['tau']:.2f}, top-10% recall {quality['top10_recall']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_name(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
