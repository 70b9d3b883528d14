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
# # Write a kernel: a fast matrix multiplication, one schedule step at a time
#
# This lesson takes the most studied kernel there is, `C = A @ B` in float32,
# from the textbook triple loop to a kernel that runs at a large fraction of
# NumPy's BLAS. Every step keeps the *algorithm* (what `C` is) and changes only
# the *schedule* (in which order, in which pieces, on which hardware units the
# loops run), except one step that changes how `B` is laid out in memory.
#
# Each step goes the same way:
#
# 1. a few words on the idea,
# 2. the schedule,
# 3. the loop nest it produces (`tex.lower`),
# 4. a build, a check against NumPy, and a timing next to NumPy's.
#
# The matrices are 1024 x 1024 by default. Set the environment variable
# `TEX_TUTORIAL_SIZE` (a multiple of 64) to run everything at another size;
# the tests run this notebook at 128. Timings are noisy when other programs
# share the machine: compare a step with NumPy's figure printed beside it,
# which was measured at the same moment.

# %%
import os
import time

import numpy as np

import tex

SIZE = int(os.environ.get("TEX_TUTORIAL_SIZE", "1024"))
assert SIZE % 64 == 0, "the schedules below assume a size that is a multiple of 64"
M = N = K = SIZE
FLOP = 2 * M * N * K  # one multiply and one add per (i, j, k)

rng = np.random.default_rng(0)
a = rng.random((M, K), dtype=np.float32)
b = rng.random((K, N), dtype=np.float32)
expected = a.astype(np.float64) @ b.astype(np.float64)


def best_time(fn, repeat):
    """The shortest of `repeat` calls of `fn()`, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


results = {}


def evaluate(step, kernel, repeat=5):
    """Check `kernel` against NumPy, then time it (best of `repeat`) next to NumPy."""
    c = np.zeros((M, N), dtype=np.float32)
    kernel(a, b, c)
    np.testing.assert_allclose(c, expected, rtol=1e-4)
    tex_gflops = FLOP / best_time(lambda: kernel(a, b, c), repeat) / 1e9
    numpy_gflops = FLOP / best_time(lambda: np.matmul(a, b, out=c), max(repeat, 3)) / 1e9
    results[step] = (tex_gflops, numpy_gflops)
    print(f"{step}: tex {tex_gflops:7.1f} GFLOP/s   NumPy {numpy_gflops:7.1f} GFLOP/s   "
          f"tex/NumPy {tex_gflops / numpy_gflops:.3f}")


# %% [markdown]
# ## The algorithm
#
# `C[i, j]` is the sum over `k` of `A[i, k] * B[k, j]`. In tex this is one
# `compute` with a reduction axis `k`. Nothing here says in which order the
# loops run: `A`, `B` and `C` are a description, and every step below schedules
# the same description again.

# %%
A = tex.placeholder((M, K), name="A")
B = tex.placeholder((K, N), name="B")
k = tex.reduce_axis((0, K), name="k")
C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")

# %% [markdown]
# ## Step 1: the default schedule
#
# A fresh schedule computes `C` the way the expression reads: a loop over `i`,
# a loop over `j`, and for each `(i, j)` an initialisation followed by the loop
# over `k`. The innermost loop walks `B` down a column, `N` floats apart, so
# nearly every load of `B` misses the cache, and each multiply-add waits for
# the previous one. Expect well under one GFLOP/s at 1024 (it is timed once).

# %%
s = tex.create_schedule(C.op)
print(tex.lower(s, [A, B, C]))

# %%
naive = tex.build(s, [A, B, C])
evaluate("1 default", naive, repeat=1)

# %% [markdown]
# ## Step 2: blocking
#
# `tile` splits `i` and `j` into blocks of 32 x 64 and orders the loops
# (`i_outer`, `j_outer`, `i_inner`, `j_inner`): the program finishes one
# 32 x 64 block of `C` (8 KB) before it starts the next, so that whatever the
# block reuses can stay in cache. The reduction loop is still innermost.
#
# On its own, blocking barely moves the figure: the innermost loop is still a
# chain of scalar multiply-adds, each waiting for the one before, walking down
# a column of `B`. Blocking sets up the loop structure that the next steps
# exploit.

# %%
bm, bn = 32, 64  # a block of C: bm rows, bn columns

s = tex.create_schedule(C.op)
i_outer, j_outer, i_inner, j_inner = s[C].tile(C.op.axis[0], C.op.axis[1], bm, bn)
print(tex.lower(s, [A, B, C]))

# %%
evaluate("2 blocking", tex.build(s, [A, B, C]), repeat=1)

# %% [markdown]
# ## Step 3: vectorize
#
# `vectorize(j_inner)` runs the 64 iterations of `j_inner` as single vector
# operations. `j_inner` is not the innermost loop, so tex vectorizes everything
# inside it: the `k` loop now updates a whole row of 64 values of `C` at once,
# from 64 consecutive floats of a row of `B` and one value of `A` (Halide calls
# this vectorizing an outer loop). In the printout, `ramp(base, 1, 64)` is the
# 64 consecutive addresses from `base` and `broadcast(x, 64)` is `x` in every
# lane; LLVM splits each 64-lane operation into machine vectors (four 16-lane
# registers with AVX-512). The 64 columns are independent, so the chain of dependent adds is
# now spread over 64 lanes.

# %%
s[C].vectorize(j_inner)
print(tex.lower(s, [A, B, C]))

# %%
evaluate("3 vectorize", tex.build(s, [A, B, C]))

# %% [markdown]
# ## Step 4: loop permutation
#
# Look at what the loops around the vector operation touch. For each row
# `i_inner` of the block, the `k` loop walks the whole 64-column strip of `B`
# (256 KB at 1024, one row of it per 4 KB page), and the row of `C` makes a
# round trip through memory at every `k`.
#
# We split the reduction into `k_outer` and `k_inner` (4 long) and place
# `i_inner` between them. Now four rows of `B` (1 KB) are read once per
# `k_outer` and reused from the L1 cache by all 32 rows of the block; `A` is
# read four consecutive floats at a time; and the four updates of a row of `C`
# come one after the other, so the row can stay in registers in between. The
# innermost loop is still the unit-stride vector loop.

# %%
s = tex.create_schedule(C.op)
i_outer, j_outer, i_inner, j_inner = s[C].tile(C.op.axis[0], C.op.axis[1], bm, bn)
k_outer, k_inner = s[C].split(k, factor=4)
s[C].reorder(i_outer, j_outer, k_outer, i_inner, k_inner, j_inner)
s[C].vectorize(j_inner)
print(tex.lower(s, [A, B, C]))

# %%
evaluate("4 permutation", tex.build(s, [A, B, C]))

# %% [markdown]
# ## Step 5: array packing
#
# A block reads a strip of `B` that is 64 floats wide but `K` rows tall, and
# the rows are `N` floats apart in memory. Packing copies `B` once per call
# into panels: `B_packed[p, k, :]` is row `k` of the `p`-th 64-column strip, so
# each strip becomes one contiguous run of memory that the hardware
# prefetcher streams and that touches few pages.
#
# Packing changes the declaration, not only the schedule (`C` is the same
# matrix, computed from a copy of `B`): `B_packed` is a `compute` of its own,
# and `C` is declared again to read from it. The copy's schedule vectorizes it.
#
# At this step packing changes little, because the strip of `B` a block reads
# (256 KB at 1024) already stays in the L2 cache; it pays off in the next
# step, whose inner loop consumes `B` much faster.

# %%
B_packed = tex.compute((N // bn, K, bn), lambda p, kk, jj: B[kk, p * bn + jj], name="B_packed")
C2 = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B_packed[j // bn, k, j % bn], axis=k),
                 name="C")

s = tex.create_schedule(C2.op)
i_outer, j_outer, i_inner, j_inner = s[C2].tile(C2.op.axis[0], C2.op.axis[1], bm, bn)
k_outer, k_inner = s[C2].split(k, factor=4)
s[C2].reorder(i_outer, j_outer, k_outer, i_inner, k_inner, j_inner)
s[C2].vectorize(j_inner)
s[B_packed].vectorize(B_packed.op.axis[2])
print(tex.lower(s, [A, B, C2]))

# %%
evaluate("5 packing", tex.build(s, [A, B, C2]))

# %% [markdown]
# ## Step 6: a write cache, with the accumulators in registers
#
# In step 5, a row of `C` still goes to memory and back after every four
# multiply-adds, and each vector of `B` loaded feeds a single FMA. The remedy
# is to accumulate a small tile of `C` in registers over the *whole* reduction
# and write it out once. With 32 vector registers of 16 floats (AVX-512), a
# tile of 4 rows x 64 columns takes 16 registers for the accumulators, 4 for a
# row of a `B` panel and 1 for a broadcast element of `A`. Each step of `k`
# then does 16 vector FMAs from 4 vector loads and 4 scalar broadcasts.
#
# `s.cache_write(C2, "local")` creates a stage `C_local` that does the
# reduction; `C` itself becomes a copy out of it. (It must be called before any
# other primitive on `C`.) `compute_at` places `C_local` inside the loop over
# 4-row tiles of `C`, so it only computes (and allocates) one 4 x 64 tile at a
# time. Inside the cache stage the reduction loop goes outermost, the 4 rows
# are unrolled and the 64 columns vectorized: the accumulators become 16 named
# vector values that LLVM keeps in registers.
#
# The column tiles go outermost (`j_outer`, then `i_outer`): one 256 KB panel
# of `B` stays in L2 while all the rows of `A` pass by. The schedule is a
# function so that step 7 can start again from it.

# %%
mr, nr = 4, bn  # the register tile: mr rows of C, nr (the panel width) columns


def register_tiled_schedule():
    s = tex.create_schedule(C2.op)
    C_local = s.cache_write(C2, "local")
    j_outer, j_inner = s[C2].split(C2.op.axis[1], factor=nr)
    i_outer, i_inner = s[C2].split(C2.op.axis[0], factor=mr)
    s[C2].reorder(j_outer, i_outer, i_inner, j_inner)
    s[C2].unroll(i_inner)
    s[C2].vectorize(j_inner)

    s[C_local].compute_at(s[C2], i_outer)
    i_c, j_c = s[C_local].op.axis
    (k_c,) = s[C_local].op.reduce_axis
    s[C_local].reorder(k_c, i_c, j_c)
    s[C_local].unroll(i_c)
    s[C_local].vectorize(j_c)

    s[B_packed].vectorize(B_packed.op.axis[2])
    return s, j_outer


s, _ = register_tiled_schedule()
print(tex.lower(s, [A, B, C2]))

# %%
evaluate("6 write cache", tex.build(s, [A, B, C2]), repeat=10)

# %% [markdown]
# ## Step 7: parallel
#
# The last step uses every core. The column panels are independent of each
# other, so `parallel(j_outer)` hands contiguous ranges of panels to the
# threads of tex's thread pool in contiguous chunks; each thread keeps its own
# panel of `B` in its core's L2. The packing copy is parallel over panels too.

# %%
s, j_outer = register_tiled_schedule()
s[C2].parallel(j_outer)
s[B_packed].parallel(B_packed.op.axis[0])
print(tex.lower(s, [A, B, C2]))

# %%
fast = tex.build(s, [A, B, C2])
evaluate("7 parallel", fast, repeat=10)

# %% [markdown]
# ## What the inner loop became
#
# `get_source("asm")` shows the machine code. The loop below is the hottest
# one, the reduction over `k`: on an AVX-512 machine, 4 vector loads of the
# `B` panel, 4 broadcasts of `A`, and 16 `vfmadd231ps` on `zmm` registers
# that accumulate in place, with no loads or stores of `C`.

# %%
def hottest_block(asm: str) -> str:
    """The basic block of `asm` with the most fused multiply-adds."""
    blocks, current = [], []
    for line in asm.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    return "\n".join(max(blocks, key=lambda blk: sum("fmadd" in ln for ln in blk)))


print(hottest_block(fast.get_source("asm")))

# %% [markdown]
# ## Summary

# %%
print(f"{'step':16} {'tex GFLOP/s':>12} {'NumPy GFLOP/s':>14} {'tex/NumPy':>10}")
for step, (tex_gflops, numpy_gflops) in results.items():
    print(f"{step:16} {tex_gflops:12.1f} {numpy_gflops:14.1f} {tex_gflops / numpy_gflops:10.3f}")

# %% [markdown]
# From here, the autotuner can search the tile sizes and loop orders for you,
# and `bench/matmul.py` times the best hand schedule against NumPy.
