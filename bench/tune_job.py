"""Benchmark: ResNet-18's layers tuned as one job, against PyTorch's CPU kernels.

    python -m bench.tune_job [--trials-per-task 64] [--workers local:2] [--log-dir DIR]
                             [--json FILE]

The twelve distinct convolution and matrix shapes of ResNet-18 (batch 1,
224 x 224, NCHW, float32), each weighted by how many times the network runs
it, are tuned as one `tex-tune job` (`autotune.job.run_job`: a warm-up round
for every task, then the rounds to the tasks expected to reduce the weighted
sum of best times most, and at the end each task's finalists re-timed) with a
budget of `--trials-per-task` trials per task on average, in this process or
on a Dask cluster (`--workers`). Then each layer's
tuned kernel (`apply_history_best`) and PyTorch's (`torch.nn.functional.conv2d`
and `torch.matmul`: oneDNN/MKL) are checked against each other and timed
interleaved in one run (medians of rotating batches, as `python -m bench`
times). It prints the job's wall time, a table per layer (with the time the job
reported for the layer's kernel, and how far the re-timing here is from it) and
the weighted sums.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import types

import numpy as np
import torch

import autotune
import tex
from autotune import job, ops
from bench.__main__ import time_interleaved
from bench.peak import cpu_name

#: (operator, shape, how many times ResNet-18 runs it); conv2d: N,C,H,W,K,R,S,stride,pad;
#: matmul: M,N,K (the classifier, 512 features to 1000 classes).
RESNET18 = [("conv2d", (1, 3, 224, 224, 64, 7, 7, 2, 3), 1),
            ("conv2d", (1, 64, 56, 56, 64, 3, 3, 1, 1), 4),
            ("conv2d", (1, 64, 56, 56, 128, 3, 3, 2, 1), 1),
            ("conv2d", (1, 64, 56, 56, 128, 1, 1, 2, 0), 1),
            ("conv2d", (1, 128, 28, 28, 128, 3, 3, 1, 1), 3),
            ("conv2d", (1, 128, 28, 28, 256, 3, 3, 2, 1), 1),
            ("conv2d", (1, 128, 28, 28, 256, 1, 1, 2, 0), 1),
            ("conv2d", (1, 256, 14, 14, 256, 3, 3, 1, 1), 3),
            ("conv2d", (1, 256, 14, 14, 512, 3, 3, 2, 1), 1),
            ("conv2d", (1, 256, 14, 14, 512, 1, 1, 2, 0), 1),
            ("conv2d", (1, 512, 7, 7, 512, 3, 3, 1, 1), 3),
            ("matmul", (1, 1000, 512), 1)]


def torch_layer(op: str, shape: tuple):
    """PyTorch's kernel of a layer, as a function of the registry's inputs (tensors)."""
    if op == "matmul":
        return torch.matmul
    stride, pad = shape[7], shape[8]
    return lambda x, w: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)


def run(trials_per_task: int, log_dir: str, workers: int | None, samples: int) -> dict:
    entries = [job.JobEntry(ops.task_for(op, shape), weight) for op, shape, weight in RESNET18]
    start = time.perf_counter()
    options = dict(trials=trials_per_task * len(entries), resume=True)
    if workers:
        from autotune.cluster import connect
        with connect(workers=workers) as client:
            outcome = job.run_job(entries, log_dir, client=client, **options)
    else:
        outcome = job.run_job(entries, log_dir, **options)
    wall = time.perf_counter() - start
    logs = [state.log for state in outcome.states]
    rows = []
    for (op, shape, weight), state in zip(RESNET18, outcome.states):
        task = state.task
        with autotune.apply_history_best(logs):
            kernel = tex.build(tex.create_schedule([t.op for t in task.outputs]), task.tensors)
        inputs = task.random_inputs()
        tensors = [torch.from_numpy(x) for x in inputs]
        reference = torch_layer(op, shape)
        out = np.empty(tuple(d.value for d in task.outputs[0].shape), "float32")
        kernel(*inputs, out)
        np.testing.assert_allclose(out, reference(*tensors).numpy(), rtol=1e-3,
                                   atol=1e-3 * float(np.abs(out).max()))
        times = time_interleaved({
            "tex": types.SimpleNamespace(run=lambda k=kernel, a=inputs, o=out: k(*a, o)),
            "torch": types.SimpleNamespace(run=lambda f=reference, t=tensors: f(*t))}, samples)
        rows.append({"layer": task.name, "weight": weight, "trials": state.trials,
                     "job_ms": 1e3 * state.best,
                     "tex_ms": 1e3 * statistics.median(times["tex"]),
                     "torch_ms": 1e3 * statistics.median(times["torch"])})
    return {"cpu": cpu_name(), "threads": tex.config.num_threads(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "job_seconds": wall, "stopped_by": outcome.stopped_by, "layers": rows}


def print_report(report: dict) -> None:
    print(f"CPU: {report['cpu']}; tex {report['threads']} threads, torch "
          f"{report['torch']} {report['torch_threads']} threads")
    print(f"job: {sum(r['trials'] for r in report['layers'])} trials in "
          f"{report['job_seconds'] / 60:.1f} min (stopped by the {report['stopped_by']})\n")
    print(f"{'layer':32} {'x':>2} {'trials':>6} {'job ms':>8} {'tex ms':>8} {'tex/job':>7} "
          f"{'torch ms':>8} {'torch/tex':>9}")
    for r in report["layers"]:
        print(f"{r['layer']:32} {r['weight']:2} {r['trials']:6} {r['job_ms']:8.3f} "
              f"{r['tex_ms']:8.3f} {r['tex_ms'] / r['job_ms']:7.3f} "
              f"{r['torch_ms']:8.3f} {r['torch_ms'] / r['tex_ms']:9.2f}")
    tex_sum = sum(r["weight"] * r["tex_ms"] for r in report["layers"])
    torch_sum = sum(r["weight"] * r["torch_ms"] for r in report["layers"])
    job_sum = sum(r["weight"] * r["job_ms"] for r in report["layers"])
    print(f"\nweighted sum of layer times: tex {tex_sum:.2f} ms, torch {torch_sum:.2f} ms "
          f"(torch/tex {torch_sum / tex_sum:.2f}); as the job reported them: tex "
          f"{job_sum:.2f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials-per-task", type=int, default=64, metavar="N")
    parser.add_argument("--workers", metavar="local:K",
                        help="tune on a LocalCluster of K workers (default: this process)")
    parser.add_argument("--log-dir", help="where the logs go (kept; a rerun resumes them)")
    parser.add_argument("--samples", type=int, default=15, help="timings per layer (15)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    workers = None
    if args.workers:
        kind, _, count = args.workers.partition(":")
        if kind != "local" or not count.isdigit() or int(count) < 1:
            parser.error(f"--workers: expected local:K with K >= 1, got {args.workers!r}")
        workers = int(count)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tex-tune-job-")
    os.makedirs(log_dir, exist_ok=True)
    report = run(args.trials_per_task, log_dir, workers, args.samples)
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
