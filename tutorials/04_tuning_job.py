# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tuning: one kernel, a template, then a whole network on a cluster
#
# The autotuner searches the schedules of a kernel for the fastest on this
# machine. This lesson goes from the smallest use to the largest:
#
# 1. one declaration tuned from the notebook (`Task.from_compute`);
# 2. a *template*: a schedule of our own whose choices are knobs;
# 3. a **job**: every convolution of ResNet-18 and its classifier tuned
#    under one budget, spread by a task scheduler over the tasks that pay
#    most, built and measured on a Dask `LocalCluster`;
# 4. the tuning curves, and the tuned kernels built with `apply_history_best`.
#
# `SIZE` is the input image's side, 224 by default as in ResNet-18; set
# `TEX_TUTORIAL_SIZE` to change it (the tests use 128, which shrinks every
# layer's image, not its channels) and `TEX_TUTORIAL_TRIALS` for the job's
# budget per task (the tests use 2). Run it as a notebook: the cluster's
# workers are new processes, which would run a script again from the top.

# %%
import os
import pathlib
import tempfile
import time

import matplotlib
import numpy as np

import autotune
import tex
from autotune import job, ops
from autotune.cluster import connect

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZE = int(os.environ.get("TEX_TUTORIAL_SIZE", 224))
TRIALS = int(os.environ.get("TEX_TUTORIAL_TRIALS", 24))
LOGS = pathlib.Path(tempfile.mkdtemp(prefix="tex-tuning-job-"))
print(f"image {SIZE}x{SIZE}, {TRIALS} trials per task on average; logs in {LOGS}")

# %% [markdown]
# ## 1. One declaration
#
# Any declaration can be tuned: `Task.from_compute` takes what `tex.build`
# would take, and generates a space of schedules by rules (tiles, vector
# widths, loop orders, packed panels, parallel loops). `tune` measures
# candidates chosen by an XGBoost cost model and logs every measurement.

# %%
n = 2 * SIZE + 7
A = tex.placeholder((n, n), name="A")
B = tex.placeholder((n, n), name="B")
k = tex.reduce_axis((0, n), name="k")
C = tex.compute((n, n), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")

task = autotune.Task.from_compute([A, B, C], name="matmul")
result = autotune.tune(task, trials=16, log=LOGS / "matmul.jsonl", build_workers=1)
print(f"{len(task.space)} schedules in the space; best of {result.measured}: "
      f"{result.best_rate:.1f} {task.unit}")
print(result.best_config)

# %% [markdown]
# ## 2. A template
#
# When the generated space is not the one we want, a template declares its
# own knobs, AutoTVM style: `cfg.define_split` offers the ways to split an
# axis, `cfg.define_knob` any list of choices. The template is tuned like any
# task, and its configurations replay from the log.

# %%
@autotune.template("row_scale")
def row_scale(cfg, rows: int, cols: int):
    X = tex.placeholder((rows, cols), name="X")
    w = tex.placeholder((cols,), name="w")
    Y = tex.compute((rows, cols), lambda i, j: X[i, j] * w[j] + 1.0, name="Y")
    s = tex.create_schedule(Y.op)
    i, j = Y.op.axis
    cfg.define_split("split_j", j, num_outputs=2, policy="power2", max_factor=64)
    cfg.define_knob("parallel_rows", [True, False])
    outer, inner = cfg["split_j"].apply(s[Y], j)
    s[Y].vectorize(inner)
    if cfg["parallel_rows"].val:
        s[Y].parallel(i)
    return s, [X, w, Y]


template_task = autotune.Task.from_template(row_scale, (SIZE * 4 + 3, SIZE * 8 + 5))
result = autotune.tune(template_task, trials=8, log=LOGS / "row_scale.jsonl",
                       build_workers=1)
print(f"{len(template_task.space)} configurations; best {result.best_rate:.1f} "
      f"{template_task.unit}: {result.best_config}")

# %% [markdown]
# ## 3. A job: ResNet-18 on a Dask cluster
#
# ResNet-18 runs twelve distinct convolution and matrix shapes; the weight of
# each is how many times the network runs it. The job's objective is the sum
# of weight x best time, and after a warm-up round for every task, each round
# goes to the task expected to reduce it the most. `connect(workers=2)` starts
# a `LocalCluster` of two worker processes; builds go to any worker, while
# measurements take a lock of the machine, one at a time, so that they never
# disturb each other. The same job runs on a real cluster with
# `connect(scheduler="tcp://...")`, or from a shell with
# `tex-tune job net.toml --log-dir logs --workers local:2`.

# %%
def side(full: int) -> int:
    """A layer's image side for an input of SIZE (ResNet-18's own at 224)."""
    return max(1, round(full * SIZE / 224))


# (operator, shape, how many times the network runs it); conv2d: N,C,H,W,K,R,S,stride,pad
RESNET18 = [("conv2d", (1, 3, side(224), side(224), 64, 7, 7, 2, 3), 1),
            ("conv2d", (1, 64, side(56), side(56), 64, 3, 3, 1, 1), 4),
            ("conv2d", (1, 64, side(56), side(56), 128, 3, 3, 2, 1), 1),
            ("conv2d", (1, 64, side(56), side(56), 128, 1, 1, 2, 0), 1),
            ("conv2d", (1, 128, side(28), side(28), 128, 3, 3, 1, 1), 3),
            ("conv2d", (1, 128, side(28), side(28), 256, 3, 3, 2, 1), 1),
            ("conv2d", (1, 128, side(28), side(28), 256, 1, 1, 2, 0), 1),
            ("conv2d", (1, 256, side(14), side(14), 256, 3, 3, 1, 1), 3),
            ("conv2d", (1, 256, side(14), side(14), 512, 3, 3, 2, 1), 1),
            ("conv2d", (1, 256, side(14), side(14), 512, 1, 1, 2, 0), 1),
            ("conv2d", (1, 512, side(7), side(7), 512, 3, 3, 1, 1), 3),
            ("matmul", (1, 1000, 512), 1)]
entries = [job.JobEntry(ops.task_for(op, shape), weight) for op, shape, weight in RESNET18]

start = time.perf_counter()
with connect(workers=2) as client:
    outcome = job.run_job(entries, LOGS / "resnet18", trials=TRIALS * len(entries),
                          batch_size=2, client=client, build_workers=1)
print(f"the job took {time.perf_counter() - start:.0f} s and stopped: {outcome.stopped_by}")
for state in outcome.states:
    print(f"  {state.task.name:38} x{state.entry.weight:<2} {state.trials:3} trials, "
          f"best {state.best * 1e6:9.1f} us")

# %% [markdown]
# ## 4. Tuning curves, and the tuned network
#
# Each task's log holds every measurement in order. The curve of a task is
# its best time so far after each trial: it falls in steps where the search
# found something faster. The trials the scheduler gave each task show where
# it judged they paid.

# %%
figure, axes = plt.subplots(3, 4, figsize=(14, 8), sharex=False)
for ax, state in zip(axes.flat, outcome.states):
    times = [r.seconds for r in autotune.load(state.log)]
    best = np.minimum.accumulate(times) * 1e6
    failed = [t for t, x in enumerate(times) if not np.isfinite(x)]
    ax.plot(range(1, len(best) + 1), best, drawstyle="steps-post")
    ax.plot(range(1, len(times) + 1), np.asarray(times) * 1e6, ".", alpha=0.5)
    ax.plot([t + 1 for t in failed], [0] * len(failed), "rx")
    ax.set_title(state.task.name, fontsize=8)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("trial")
axes.flat[0].set_ylabel("microseconds")
figure.tight_layout()
figure.savefig(LOGS / "curves.png")
print(f"curves in {LOGS / 'curves.png'}")

# %% [markdown]
# Inside `apply_history_best`, `tex.build` of an untouched schedule of one of
# these declarations builds the logs' best configuration instead; outside
# it, the schedule is built as it is (no primitive: the plain loop nest).
# Each tuned kernel is checked against the registry's NumPy reference, then
# the network's layers are timed both ways.

# %%
logs = [state.log for state in outcome.states]
total = {"tuned": 0.0, "default": 0.0}
for state in outcome.states:
    task = state.task
    untouched = tex.create_schedule([t.op for t in task.outputs])
    with autotune.apply_history_best(logs):
        tuned = tex.build(untouched, task.tensors)      # the logs' best configuration
    default = tex.build(tex.create_schedule([t.op for t in task.outputs]), task.tensors)
    inputs = task.random_inputs()
    expected = task.reference_outputs(inputs)[0]
    np.testing.assert_allclose(tuned(*inputs), expected, rtol=1e-3,
                               atol=1e-3 * np.abs(expected).max())
    for name, kernel in (("tuned", tuned), ("default", default)):
        evaluator = kernel.time_evaluator(kernel.entry_name, tex.cpu(0), number=3, repeat=3)
        total[name] += state.entry.weight * evaluator(*inputs).mean
print(f"ResNet-18's layers, weighted: {total['default'] * 1e3:.2f} ms unscheduled, "
      f"{total['tuned'] * 1e3:.2f} ms tuned")
