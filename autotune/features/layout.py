"""The layout of the feature vector: its names in order, what each value means, and
the scale values are given in.

Three tables, one per group of features (`PROGRAM`, `HOT`, `ACCESS`), each a
tuple of (name, text); `FEATURE_DOCS` joins them in vector order, the access
table once per described access (`acc0.*` ... ). Programs lowered for a CUDA
target have a fourth group after those, `GPU` (`gpu.*`): `GPU_FEATURE_DOCS`
and `GPU_FEATURE_NAMES` are the CPU ones followed by it, so a CPU feature has
the same position and value in both vectors. Counts, byte sizes, extents
and strides go through `log_scale`, log2(1 + x); flags, fractions, lanes,
depths and levels are given as themselves.
"""
from __future__ import annotations

import math

import numpy as np

#: Thread counts at which the balance of the parallel loops is given.
THREADS = (2, 16, 64)
#: Accesses of the hot statement described one by one.
TOP_ACCESSES = 3

#: Arithmetic categories, counted per lane in the stored value (not in indices).
ARITH = (
    ("float_addsub", "float add and sub, abs/floor/ceil"),
    ("float_mul", "float mul not fused into an add"),
    ("float_fma", "float a*b+c or c-a*b (counted once, not as a mul and an add)"),
    ("float_div", "float div, floordiv, floormod"),
    ("float_minmax", "float min and max"),
    ("float_math", "math calls: exp, log, sqrt, rsqrt, tanh, sigmoid, erf, pow"),
    ("int_arith", "integer arithmetic (any op, including min/max/abs) on data"),
    ("compare_select", "comparisons, and/or/not, selects"),
    ("cast", "casts"),
    ("vector_reduce", "lanes combined by vector reductions (reduce_add, reduce_max, ...)"),
)

#: The `prog.*` features: the whole program.
PROGRAM = (
    *((f"prog.{name}", f"log2(1+x), x = total {text} over the program")
      for name, text in ARITH),
    ("prog.scalar_iterations", "log2(1+x), x = sum over stores of scalar iterations"),
    ("prog.n_stores", "log2(1+x), x = Store statements in the program text"),
    ("prog.n_loops", "log2(1+x), x = For loops in the program text"),
    ("prog.loop_iterations", "log2(1+x), x = iterations of all loops (loop overhead)"),
    ("prog.max_depth", "deepest loop nest"),
    ("prog.symbolic_loops", "log2(1+x), x = loops whose extent is not a constant"),
    ("prog.n_parallel_loops", "parallel loops in the program text"),
    ("prog.max_parallel_extent", "log2(1+x), x = largest product of nested parallel extents"),
    ("prog.parallel_fraction", "share of scalar iterations under a parallel loop"),
    ("prog.vector_fraction", "share of scalar iterations in vector stores"),
    ("prog.mean_lanes", "store lanes averaged over executions"),
    ("prog.max_lanes", "widest vector of any statement"),
    ("prog.max_stores_in_body", "log2(1+x), x = most stores directly in one loop body "
                                "(after unrolling: the unrolled copies)"),
    ("prog.n_guards", "log2(1+x), x = IfThenElse statements"),
    ("prog.guarded_fraction", "share of scalar iterations under at least one guard"),
    ("prog.masked_fraction", "share of scalar iterations under a vector (lane mask) guard"),
    ("prog.n_lets", "log2(1+x), x = LetStmt statements"),
    ("prog.allocs_global", "log2(1+x), x = allocations of scope global"),
    ("prog.allocs_local", "log2(1+x), x = allocations of scope local"),
    ("prog.alloc_bytes_global", "log2(1+x), x = bytes of the global allocations"),
    ("prog.alloc_bytes_local", "log2(1+x), x = bytes of the local allocations"),
    ("prog.traffic_global", "log2(1+x), x = bytes loaded and stored to global buffers"),
    ("prog.traffic_local", "log2(1+x), x = bytes loaded and stored to local buffers"),
)

#: The `hot.*` features: the hot statement, the store with the most work.
HOT = (
    *((f"hot.{name}", f"log2(1+x), x = {text} over the hot statement's executions")
      for name, text in ARITH),
    ("hot.executions", "log2(1+x), x = times the statement runs"),
    ("hot.scalar_iterations", "log2(1+x), x = executions times lanes"),
    ("hot.instructions", "log2(1+x), x = executions times arithmetic nodes (not per lane)"),
    ("hot.work_share", "the statement's share of the program's work"),
    ("hot.lanes", "vector lanes of the statement (1: scalar)"),
    ("hot.innermost_vectorized", "1 when the innermost loop is the vector lanes"),
    ("hot.innermost_parallel", "1 when the innermost For around it is parallel"),
    ("hot.innermost_extent", "log2(1+x), x = extent of the innermost For around it"),
    ("hot.depth", "For loops around it"),
    ("hot.parallel_extent", "log2(1+x), x = product of the parallel extents around it"),
    *((f"hot.parallel_balance_{t}", f"ceil(n/{t})*{t}/n for n the parallel extent: "
       f"time on {t} threads over the ideal (1 is perfect, {t} is serial)") for t in THREADS),
    ("hot.parallel_grain", "log2(1+x), x = scalar iterations in one iteration of the "
                           "innermost parallel loop around it (all of them if none)"),
    ("hot.guard_fraction", "executions over the executions without guards"),
    ("hot.masked", "1 when under a vector guard (a lane mask)"),
    ("hot.stores_in_body", "log2(1+x), x = stores directly in its innermost loop's body"),
    ("hot.accumulates", "1 when it loads the buffer it stores (a reduction update)"),
    ("hot.output_local", "1 when it stores a buffer of scope local"),
    ("hot.n_buffers", "distinct buffers it loads or stores"),
)

#: The features of one access of the hot statement, `acc{k}.*` for k < TOP_ACCESSES.
ACCESS = (
    ("present", "1 when the hot statement has this access"),
    ("read", "1 when loaded"),
    ("write", "1 when stored"),
    ("local", "1 when the buffer's scope is local"),
    ("elem_bytes", "bytes of one element"),
    ("contiguous", "1 when a vector with stride 1 along the lanes"),
    ("strided", "1 when a vector with another stride along the lanes"),
    ("broadcast", "1 when one element serves every lane of a vector statement"),
    ("gather", "1 when the index depends on loaded data or a select"),
    ("scalar", "1 when the statement is scalar"),
    ("stride_inner", "log2(1+|s|), s = stride in elements along the innermost loop"),
    ("stride_nonzero", "log2(1+|s|), s = stride along the innermost loop where it is not 0"),
    ("stride_nonzero_level", "level of that loop (0: none)"),
    ("bytes_l1", "log2(1+x), x = footprint in bytes of level 1 (one innermost loop)"),
    ("bytes_l2", "log2(1+x), x = footprint of the two innermost loops"),
    ("bytes_l3", "log2(1+x), x = footprint of the three innermost loops"),
    ("bytes_all", "log2(1+x), x = footprint of the whole nest"),
    ("lines_l1", "log2(1+x), x = distinct cache lines touched at level 1"),
    ("lines_l2", "log2(1+x), x = distinct cache lines touched at level 2"),
    ("lines_l3", "log2(1+x), x = distinct cache lines touched at level 3"),
    ("reuse_count", "log2(1+x), x = product of the extents of the loops it does not move along"),
    ("reuse_level", "level of the innermost such loop (0: no reuse)"),
    ("reuse_distance_iters", "log2(1+x), x = iterations between two uses of an element"),
    ("reuse_distance_bytes", "log2(1+x), x = bytes it touches between two uses"),
    ("traffic", "log2(1+x), x = bytes it moves over all executions"),
)

#: The names in `ACCESS`, as `acc{k}.*` features take them.
ACCESS_NAMES = tuple(name for name, _ in ACCESS)

#: name -> what the value is.
FEATURE_DOCS: dict[str, str] = dict(
    [*PROGRAM, *HOT,
     *((f"acc{k}.{name}", f"access {k} of the hot statement: {text}")
       for k in range(TOP_ACCESSES) for name, text in ACCESS)])
#: The features in vector order.
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)

#: The `gpu.*` features of a program lowered for a CUDA target. The *main kernel* is the
#: launch with the most threads (blocks times threads per block; the first on ties).
GPU = (
    ("gpu.n_kernels", "log2(1+x), x = kernel launches"),
    ("gpu.threads_per_block", "log2(1+x), x = threads per block of the main kernel"),
    ("gpu.blocks", "log2(1+x), x = blocks of the main kernel"),
    ("gpu.warp_fill", "threads per block over the threads of its warps (1: no idle lanes)"),
    ("gpu.shared_bytes", "log2(1+x), x = bytes of shared memory per block of the main kernel"),
    ("gpu.reduce_serial", "1 when no reduction combines results across threads or blocks"),
    ("gpu.reduce_shared", "1 when threads combine through a shared-memory tree (a store to "
                          "shared memory that reads the same buffer)"),
    ("gpu.reduce_warp", "1 when threads combine by warp shuffles"),
    ("gpu.reduce_atomic", "1 when blocks combine by atomic updates (split reductions); with a "
                          "warp or shared combine inside each block both flags are 1"),
)
#: name -> what the value is, for programs lowered for a CUDA target.
GPU_FEATURE_DOCS: dict[str, str] = {**FEATURE_DOCS, **dict(GPU)}
#: The features of such programs, in vector order: `FEATURE_NAMES`, then the `gpu.*` ones.
GPU_FEATURE_NAMES: tuple[str, ...] = tuple(GPU_FEATURE_DOCS)
_POSITION = {name: k for k, name in enumerate(GPU_FEATURE_NAMES)}


def feature(vector: np.ndarray, name: str) -> float:
    """The value of feature `name` in a vector from `program_features`; KeyError if unknown
    (or a `gpu.*` name asked of a CPU vector)."""
    position = _POSITION[name]
    if position >= len(vector):
        raise KeyError(f"{name} is a feature of programs lowered for a GPU target")
    return float(vector[position])


def feature_dict(vector: np.ndarray) -> dict[str, float]:
    """The vector as {name: value}, in `FEATURE_NAMES` (or `GPU_FEATURE_NAMES`) order."""
    names = GPU_FEATURE_NAMES if len(vector) == len(GPU_FEATURE_NAMES) else FEATURE_NAMES
    return {name: float(v) for name, v in zip(names, vector)}


def log_scale(x: float) -> float:
    """log2(1 + x), x clamped into [0, 1e300] (NaN counts 0)."""
    return math.log2(1.0 + min(max(x, 0.0), 1e300)) if x == x else 0.0


def clamped_ceil(x: float) -> float:
    """ceil(x) for x clamped into [-1e300, 1e300]."""
    return float(math.ceil(min(max(x, -1e300), 1e300)))

