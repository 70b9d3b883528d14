"""Features of a lowered loop program, the input of the autotuner's cost model.

`program_features(func)` turns a `LoweredFunc` (the output of `tex.lower`,
after every pass: flat buffers, vector loads and stores, unrolled loops
expanded, parallel loops marked on `For`) into one float32 vector of fixed
length, `len(FEATURE_NAMES)`, whatever the program. The model (XGBoost,
ranking) only compares schedules of one operator, so the features aim at
what tells schedules apart: how much work each statement does, how it is
spread over threads and vector lanes, and how each buffer access walks memory.
The ideas are Ansor's per-store features and AutoTVM's per-loop features.

The modules, in the order extraction runs:

* `walk.py`: one walk over the program records every Store with its loops,
  their extents narrowed by guards, and program totals;
  `arithmetic.py` counts the arithmetic and loads of each statement and
  `affine.py` reads indices as affine forms of the loop variables.
* `access.py`: the hot statement's accesses: kind, strides, footprints,
  cache lines and reuse.
* `vector.py`: `program_features`, the records combined into the vector.
* `layout.py`: the names in vector order, what each value means
  (`FEATURE_DOCS`) and the scales values are given in.

The vector
----------
Three groups, each documented in its table in layout.py (`FEATURE_DOCS`
holds the text, `feature(vector, name)` reads one value by name):

* `prog.*`: the whole program: totals of arithmetic, loops, parallelism,
  vectorization, guards, allocations, memory traffic.
* `hot.*`: the hot statement, the store with the most work (scalar
  iterations times one plus its arithmetic per lane): its arithmetic, lanes,
  loop context, parallel extent and balance.
* `acc0.*`, `acc1.*`, `acc2.*`: the three buffers that the hot statement
  touches with the largest footprint over its whole nest (a load and a store
  of one buffer are one access), each with its kind, strides, footprints,
  cache lines and reuse; missing ones are all zeros.

For a program lowered for a CUDA target (`program_features(func, target)`,
`func` from `tex.lower(..., target="cuda")`), a fourth group follows:

* `gpu.*`: the main kernel's threads per block, blocks, warp fill and shared
  memory per block, the number of launches, and flags for the reduction
  strategies the program uses (`autotune/features/gpu.py`).

Counts, byte sizes, extents and strides are given as log2(1 + x); flags,
fractions, lanes, depths and levels as themselves. Arithmetic is counted per
lane: a 16-lane vector add counts 16, so vectorizing a loop does not change
its operation totals (the lanes features tell the two apart). Index
arithmetic is not counted (codegen hoists and strength-reduces it).

Guarantees: the vector has `len(FEATURE_NAMES)` finite float32 values; the
same program gives the same vector; every program tex can lower is accepted.
Extraction is pure Python over the statements of the program (about 1 ms for
a register-tiled 1024^3 matmul).
"""
from autotune.features.access import CACHE_LINE
from autotune.features.affine import SYMBOLIC_EXTENT
from autotune.features.layout import (ARITH, FEATURE_DOCS, FEATURE_NAMES, GPU_FEATURE_DOCS,
                                      GPU_FEATURE_NAMES, THREADS, TOP_ACCESSES,
                                      feature, feature_dict)
from autotune.features.vector import program_features

__all__ = ["ARITH", "CACHE_LINE", "FEATURE_DOCS", "FEATURE_NAMES", "GPU_FEATURE_DOCS",
           "GPU_FEATURE_NAMES", "SYMBOLIC_EXTENT", "THREADS", "TOP_ACCESSES",
           "feature", "feature_dict", "program_features"]
