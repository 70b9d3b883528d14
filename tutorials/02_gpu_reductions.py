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
# # Reduce on a GPU: one schedule decision, four strategies
#
# A reduction is the computation where a GPU schedule has to decide the most:
# many threads must cooperate on one sum, and *how* they combine their parts
# is a choice of its own. This lesson sums the rows of a matrix four ways and
# shows, for each, the schedule and the loop program it lowers to:
#
# 1. **serial**: one thread per row;
# 2. **shared**: one block per row, the threads' partial sums combined by a
#    tree in shared memory;
# 3. **warp**: the same, combined by warp shuffles;
# 4. **atomic**: each row split over several blocks, whose sums are added with
#    atomics (split-K).
#
# Every kernel is built for real: NVRTC compiles CUDA C on any machine, with
# or without a GPU. Timing needs an NVIDIA GPU; where there is none, each
# step checks its kernel in tex's CPU simulator instead (`kernel.simulate`,
# which compiles the same CUDA C for the CPU and runs it thread by thread).
# A CPU kernel opens the lesson as the baseline, and runs everywhere.
#
# The matrix has `SIZE + 3` rows and `8 * SIZE + 3` columns of float32, with
# `SIZE` 2048 by default (2051 x 16387, 134 MB: more than an H100's 50 MB L2 cache).
# Set the environment variable `TEX_TUTORIAL_SIZE` to change it; the tests run
# this notebook at 128 (131 x 1027). The "+ 3" is on purpose: neither extent
# is a multiple of any thread count below, so the guards that keep threads
# inside the matrix show in the loop programs.

# %%
import os
import time

import numpy as np

import autotune
import tex
from tex.runtime.cuda_device import gpu_available

SIZE = int(os.environ.get("TEX_TUTORIAL_SIZE", "2048"))
ROWS, COLS = SIZE + 3, 8 * SIZE + 3
BYTES = 4 * (ROWS * COLS + ROWS)  # a row sum reads the matrix once and writes one float a row

rng = np.random.default_rng(0)
a = rng.random((ROWS, COLS), dtype=np.float32)
expected = a.astype(np.float64).sum(axis=1)


def best_time(fn, repeat):
    """The shortest of `repeat` calls of `fn()`, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


results = {}


def report(step, seconds):
    """Record and print the bandwidth of a run that took `seconds`."""
    results[step] = BYTES / seconds / 1e9
    print(f"{step}: {results[step]:8.1f} GB/s")


# %% [markdown]
# ## The computation
#
# `B[i]` is the sum over `k` of `A[i, k]`: one `compute` with a reduction axis.
# Every schedule below starts again from this one declaration.

# %%
A = tex.placeholder((ROWS, COLS), name="A")
k = tex.reduce_axis((0, COLS), name="k")
B = tex.compute((ROWS,), lambda i: tex.sum(A[i, k], axis=k), name="B")

# %% [markdown]
# ## The baseline: the CPU
#
# On the CPU, the rows go to the cores in parallel, and each row is summed
# into 64 partial sums, one per vector lane (`rfactor` on the inner part of
# `k`, vectorized), that are added together at the end of the row. A row sum does one addition
# per float it reads, so it is limited by memory bandwidth, and GB/s is the
# figure to watch; NumPy's `sum(axis=1)` is timed beside it.

# %%
LANES = 64

s = tex.create_schedule(B.op)
(i,) = B.op.axis
_, k_lane = s[B].split(k, factor=LANES)
partial = s.rfactor(B, k_lane)      # partial[lane, i]: every LANES-th element of row i
lane, row = partial.op.axis
s[partial].reorder(row, *partial.op.reduce_axis, lane)
s[partial].vectorize(lane)
s[partial].compute_at(s[B], i)
s[B].vectorize(s[B].op.reduce_axis[0])  # the final sum of the 64 lanes, as vectors
s[B].parallel(i)
print(tex.lower(s, [A, B]))

# %%
cpu = tex.build(s, [A, B])
b = np.zeros(ROWS, dtype=np.float32)
cpu(a, b)
np.testing.assert_allclose(b, expected, rtol=1e-4)
report("cpu tex", best_time(lambda: cpu(a, b), 5))
report("cpu NumPy", best_time(lambda: np.sum(a, axis=1, out=b), 5))

# %% [markdown]
# ## Running on the GPU, when there is one
#
# `run_on_gpu` copies the matrix to the GPU once (`tex.device_array`), calls
# the kernel on device arrays, so that the timing holds no copies, checks the
# result against NumPy and prints GB/s. Kernel calls are asynchronous: a call
# queues the launches and returns, so the time is taken on the GPU, by CUDA
# events around the call (`kernel.time_calls`). Without
# a GPU it checks the result of `kernel.simulate` against NumPy: the simulator
# runs the blocks one after another and the threads of a block in turns,
# switching at every barrier and warp shuffle, and reports a barrier that some
# threads miss. It says nothing about speed.

# %%
HAVE_GPU = gpu_available()
a_device = tex.device_array(a) if HAVE_GPU else None


def run_on_gpu(kernel, name, repeat=20):
    """Check `kernel` against NumPy on the GPU and time it; without a GPU, check it in
    the CPU simulator."""
    if not HAVE_GPU:
        np.testing.assert_allclose(kernel.simulate(a), expected, rtol=1e-4)
        print(f"{name}: built ({len(kernel.get_source('ptx'))} characters of PTX); no GPU "
              "here, so checked against NumPy in the CPU simulator, not timed")
        return
    b_device = tex.empty_device((ROWS,), "float32")
    kernel(a_device, b_device)
    np.testing.assert_allclose(b_device.numpy(), expected, rtol=1e-4)
    report(name, min(kernel.time_calls((a_device, b_device), 1) for _ in range(repeat)))


def show_lines(kernel, *words):
    """The lines of the kernel's CUDA C that contain one of `words`."""
    for line in kernel.get_source("cuda").splitlines():
        if any(word in line for word in words):
            print(line)


# %% [markdown]
# ## Strategy 1, serial: one thread per row
#
# The simplest GPU schedule gives every row to a thread of its own: the row
# axis is split into blocks of 64 threads, bound to `blockIdx.x` and
# `threadIdx.x`, and each thread runs the whole loop over `k` alone. The
# launch line shows the grid and the block; the last block has threads past
# the last row, and the `if` keeps them idle.
#
# It is a poor fit for a GPU: there are only as many threads as rows, and at
# each step of `k` the 32 threads of a warp read 32 addresses a whole row
# apart, so no two loads share a memory transaction (the reads are not
# *coalesced*).

# %%
s = tex.create_schedule(B.op)
row_block, row_thread = s[B].split(B.op.axis[0], factor=64)
s[B].bind(row_block, tex.thread_axis("blockIdx.x"))
s[B].bind(row_thread, tex.thread_axis("threadIdx.x"))
print(tex.lower(s, [A, B], target="cuda"))

# %%
serial = tex.build(s, [A, B], target="cuda")
run_on_gpu(serial, "gpu serial")

# %% [markdown]
# ## Strategy 2, shared: a block per row, a tree in shared memory
#
# Turn it around: one block per row (`blockIdx.x`), and the reduction axis
# split so that its inner 256 iterations go across the block's threads
# (`threadIdx.x`). At each step of `k_outer`, the 256 threads read 256
# consecutive floats: fully coalesced. Each thread first sums its own
# elements into `B_acc` (the guard skips the columns past the end of the
# row), and then the 256 partial sums must be combined.
#
# Binding a *reduction* axis to threads is what asks for that combination,
# and `reduce_strategy` says how. With `"shared"`, every thread writes its sum
# to a shared-memory array, and a tree of halvings adds the upper half onto the
# lower half, 8 times for 256 threads, with a barrier (`sync_threads()`)
# after each step so that no thread reads a value before it is written.
# Thread 0 writes the row's sum.

# %%
THREADS = 256


def block_per_row(strategy):
    """A schedule with one block per row, THREADS threads across it, combined by `strategy`."""
    s = tex.create_schedule(B.op)
    _, k_thread = s[B].split(k, factor=THREADS)
    s[B].bind(B.op.axis[0], tex.thread_axis("blockIdx.x"))
    s[B].bind(k_thread, tex.thread_axis("threadIdx.x"))
    s[B].reduce_strategy(k_thread, strategy)
    return s


s = block_per_row("shared")
print(tex.lower(s, [A, B], target="cuda"))

# %% [markdown]
# In the CUDA C, the tree is a `__shared__` array and a `__syncthreads()`
# between the steps:

# %%
shared = tex.build(s, [A, B], target="cuda")
show_lines(shared, "__shared__", "__syncthreads")
run_on_gpu(shared, "gpu shared")

# %% [markdown]
# ## Strategy 3, warp: shuffles, and shared memory only between warps
#
# The 32 threads of a warp run in lockstep and can read each other's
# registers directly: `__shfl_xor_sync(mask, value, offset)` returns `value`
# as held by the lane whose number differs from this one in the bit
# `offset`. Five such exchanges (offsets 16, 8, 4, 2, 1) leave the warp's sum
# in every lane, with no shared memory and no barrier. With `"warp"`, each of
# the 8 warps of the block does that, its first lane writes the warp's sum to
# a shared array of 8 floats, one barrier follows, and the warps read the 8
# sums back and combine them by three more shuffles (thread 0 writes the
# result).
#
# The schedule is the same as before; only the strategy differs. ("warp" is
# also the default where it applies, when a reduction axis is bound to
# threads without `reduce_strategy`.)

# %%
s = block_per_row("warp")
print(tex.lower(s, [A, B], target="cuda"))

# %%
warp = tex.build(s, [A, B], target="cuda")
show_lines(warp, "__shared__", "__syncthreads", "__shfl_xor_sync")
run_on_gpu(warp, "gpu warp")

# %% [markdown]
# ## Strategy 4, atomic: split each row over several blocks
#
# One block per row keeps a GPU busy only if there are many rows. With few
# and long rows (a batch of 8 rows of a million floats, say), most of the
# GPU would sit idle. Split-K splits the reduction itself over blocks too:
# here the steps of `k_outer` are divided into `CHUNKS` parts bound to
# `blockIdx.y`, so the grid is rows x `CHUNKS` blocks. Each block sums its
# part of its row as in strategy 3 (warp shuffles), and then thread 0 adds
# the block's result to `B[i]` with `atomic_add` (CUDA's `atomicAdd`), which
# makes concurrent additions to one address safe.
#
# Adding into `B` needs `B` to start at zero: the lowered program therefore
# has two launches, a small kernel that fills `B` with the identity of the
# sum (0.0) and then the reduction. Both run on every call.
#
# One consequence: the blocks' additions happen in whatever order the blocks
# finish, and float addition is not associative, so two runs of this kernel
# may differ in the last bits of a sum. The other strategies always add in the
# same order and give the same bits every time.

# %%
CHUNKS = 4

s = tex.create_schedule(B.op)
k_outer, k_thread = s[B].split(k, factor=THREADS)
k_chunk, k_step = s[B].split(k_outer, nparts=CHUNKS)
s[B].reorder(B.op.axis[0], k_chunk, k_step, k_thread)
s[B].bind(B.op.axis[0], tex.thread_axis("blockIdx.x"))
s[B].bind(k_chunk, tex.thread_axis("blockIdx.y"))
s[B].bind(k_thread, tex.thread_axis("threadIdx.x"))
s[B].reduce_strategy(k_thread, "warp")     # within a block
s[B].reduce_strategy(k_chunk, "atomic")    # across the blocks of a row
print(tex.lower(s, [A, B], target="cuda"))

# %%
atomic = tex.build(s, [A, B], target="cuda")
show_lines(atomic, "__global__", "atomicAdd")
run_on_gpu(atomic, "gpu atomic")

# %% [markdown]
# ## Summary

# %%
print(f"{'kernel':12} {'GB/s':>8}")
for step, gbps in results.items():
    print(f"{step:12} {gbps:8.1f}")
if not HAVE_GPU:
    print("(no GPU here: the four GPU kernels were built and simulated, not timed)")

# %% [markdown]
# ## The autotuner makes the same decision
#
# The strategy is one knob of the space that the autotuner generates for a
# reduction on a GPU, next to the threads per block, the blocks per row
# (used by "atomic" only) and the rows per block (for "shared" and "warp":
# several short rows share a block, one per threadIdx.y).
# `autotune.Task.from_compute` builds that space for this very declaration;
# from the command line, `tex-tune reduce_sum --shape ROWS,COLS --target
# cuda` tunes the registry's row sum the same way. Tuning times every
# candidate, so it needs a GPU; listing the space does not.
#
# A configuration becomes a schedule with `space.instantiate`: the one with
# strategy "warp" and 256 threads lowers to exactly the program of strategy 3.

# %%
task = autotune.Task.from_compute([A, B], target="cuda")
print(task.space)
for knob in task.space.knobs.values():
    print(f"{knob.name:12}", [choice.val for choice in knob.candidates])

config = task.space.from_json({"B.strategy": "warp", "B.threads": THREADS, "B.blocks": 1,
                               "B.rows": 1})
tuned, args = task.space.instantiate(config)
same = str(tex.lower(tuned, args, target="cuda")) == str(
    tex.lower(block_per_row("warp"), [A, B], target="cuda"))
print(f"{config}: the same loop program as strategy 3: {same}")
print(f"to tune it on a GPU: tex-tune reduce_sum --shape {ROWS},{COLS} --target cuda --trials 64")
