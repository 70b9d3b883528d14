"""Features of a lowered loop program, the input of the autotuner's cost model.

`program_features(func)` turns a `LoweredFunc` (the output of `tex.lower`,
after every pass: flat buffers, vector loads and stores, unrolled loops
expanded, parallel loops marked on `For`) into one float32 vector of fixed
length, `len(FEATURE_NAMES)`, whatever the program. The model (XGBoost,
ranking) only compares schedules of one operator, so the features aim at
what tells schedules apart: how much work each statement does, how it is
spread over threads and vector lanes, and how each buffer access walks memory.
The ideas are Ansor's per-store features and AutoTVM's per-loop features.

How the program is read
-----------------------
The walk keeps the stack of loops around each `Store`. A loop's extent is its
constant, or, when symbolic, its expression evaluated with every size
variable set to `SYMBOLIC_EXTENT` (128). Guards narrow the loops they test:
under `if i < 62` the loop over i counts 62 iterations, its else branch the
rest; a guard that is not one loop variable against a constant counts as the
estimated share of the iterations that pass it (uniform over its range; a
condition read from data counts one half). A statement's *executions* are
the product of its loops' extents times that share; its *scalar iterations*
are executions times its vector lanes.

The vector lanes of a statement are treated as one more loop, innermost, of
the kind "vectorized" (they were a vectorized loop before the vectorize
pass). So "the innermost stride" of a vector access is its ramp's stride (1
for a contiguous vector, 0 for a broadcast scalar), and of a scalar access
the stride along its innermost loop. The stride of an access along a loop
is the change of its flat index (in elements) when that loop's variable
grows by one: exact for affine indices, the average step through `//`, and
the step through `%`, taken at zero for a product of two loop variables.

The levels of an access are the loops around it counted from the innermost
(lanes first): level 1 is the innermost loop, "all" the whole nest. At each
level the access touches a *footprint* of distinct elements (the product of
the extents of the loops it moves along, at most the span they reach and
the buffer's size) and a number of distinct 64-byte cache lines. It is
*reused* along each loop whose variable it does not use.

The vector
----------
Three groups, each documented in its table below (`FEATURE_DOCS` holds the
text, `feature(vector, name)` reads one value by name):

* `prog.*`: the whole program: totals of arithmetic, loops, parallelism,
  vectorization, guards, allocations, memory traffic.
* `hot.*`: the hot statement, the store with the most work (scalar
  iterations times one plus its arithmetic per lane): its arithmetic, lanes,
  loop context, parallel extent and balance.
* `acc0.*`, `acc1.*`, `acc2.*`: the three buffers that the hot statement
  touches with the largest footprint over its whole nest (a load and a store
  of one buffer are one access), each with its kind, strides, footprints,
  cache lines and reuse; missing ones are all zeros.

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
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tex.expr import Binary, Call, Cast, Compare, Const, Expr, Let, Logical, Not, Var
from tex.ir import Allocate, Broadcast, For, IfThenElse, LetStmt, Load, LoweredFunc, Ramp, Store
from tex.visitor import Visitor, child_fields

#: The value assumed for every symbolic size (`tex.var`) when it sets an extent or a stride.
SYMBOLIC_EXTENT = 128
#: Bytes of a cache line, for the cache-line counts.
CACHE_LINE = 64
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
_ARITH_INDEX = {name: k for k, (name, _) in enumerate(ARITH)}

_PROGRAM = (
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

_HOT = (
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

_ACCESS = (
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

_ACCESS_NAMES = tuple(name for name, _ in _ACCESS)

#: name -> what the value is.
FEATURE_DOCS: dict[str, str] = dict(
    [*_PROGRAM, *_HOT,
     *((f"acc{k}.{name}", f"access {k} of the hot statement: {text}")
       for k in range(TOP_ACCESSES) for name, text in _ACCESS)])
#: The features in vector order.
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)
_POSITION = {name: k for k, name in enumerate(FEATURE_NAMES)}


def feature(vector: np.ndarray, name: str) -> float:
    """The value of feature `name` in a vector from `program_features`; KeyError if unknown."""
    return float(vector[_POSITION[name]])


def feature_dict(vector: np.ndarray) -> dict[str, float]:
    """The vector as {name: value}, in `FEATURE_NAMES` order."""
    return {name: float(v) for name, v in zip(FEATURE_NAMES, vector)}


def program_features(func: LoweredFunc) -> np.ndarray:
    """The feature vector of a lowered program: float32, shape (len(FEATURE_NAMES),), finite.

    Deterministic; accepts any program `tex.lower` returns (the walk has a
    fallback for every node and never evaluates data).
    """
    walk = _Walk(func)
    walk.visit(func.body)
    values = _program_values(walk)
    hot = max(walk.stores, key=lambda s: (s.cost, -s.order), default=None)
    values.update(_hot_values(hot, walk))
    accesses = _hot_accesses(hot, walk) if hot is not None else []
    for k in range(TOP_ACCESSES):
        row = accesses[k] if k < len(accesses) else dict.fromkeys(_ACCESS_NAMES, 0.0)
        values.update((f"acc{k}.{name}", value) for name, value in row.items())
    vector = np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)
    # Values are bounded by construction; this keeps the promise should an estimate overflow.
    return np.nan_to_num(vector, nan=0.0, posinf=1e30, neginf=-1e30).astype(np.float32)


def _log(x: float) -> float:
    """log2(1 + x), x clamped into [0, 1e300] (NaN counts 0)."""
    return math.log2(1.0 + min(max(x, 0.0), 1e300)) if x == x else 0.0


def _ceil(x: float) -> float:
    """ceil(x) for x clamped into [-1e300, 1e300]."""
    return float(math.ceil(min(max(x, -1e300), 1e300)))


# --- affine forms of indices ---------------------------------------------------------------

#: The lane pseudo-variable of affine forms: the lane number within a vector.
_LANE = Var("lane")


@dataclass(slots=True)
class _Affine:
    """`sum(coefs[v] * v) + const` over loop variables (and `_LANE`).

    `exact` is False where the form approximates (through `//`, `%`, min/max or a
    product of variables); `gather` is True where the value depends on loaded
    data or a select, and then every variable found inside has coefficient 1.
    """

    coefs: dict
    const: float = 0.0
    exact: bool = True
    gather: bool = False


def _plus(a: _Affine, b: _Affine, sign: float = 1.0) -> _Affine:
    coefs = dict(a.coefs)
    for v, c in b.coefs.items():
        coefs[v] = coefs.get(v, 0.0) + sign * c
    return _Affine({v: c for v, c in coefs.items() if c}, a.const + sign * b.const,
                   a.exact and b.exact, a.gather or b.gather)


def _scaled(a: _Affine, k: float) -> _Affine:
    return _Affine({v: c * k for v, c in a.coefs.items() if c * k}, a.const * k,
                   a.exact, a.gather)


class _Forms:
    """Affine forms of index expressions: size variables count `SYMBOLIC_EXTENT`,
    let-bound variables their value's form, any other variable is itself."""

    def __init__(self, sizes):
        self.sizes = set(sizes)
        self.lets: dict = {}  # definitions are unique after lowering, so one dict serves all

    def form(self, e: Expr) -> _Affine:
        if isinstance(e, Const):
            value = float(e.value)
            return _Affine({}, value) if math.isfinite(value) else _Affine({}, 0.0, False, True)
        if isinstance(e, Var):
            if e in self.lets:
                return self.lets[e]
            return _Affine({}, float(SYMBOLIC_EXTENT)) if e in self.sizes else _Affine({e: 1.0})
        if isinstance(e, Ramp):
            base, stride = self.form(e.base), self.form(e.stride)
            lane = _Affine({_LANE: stride.const}, 0.0, stride.exact and not stride.coefs,
                           stride.gather)
            return _plus(base, lane)
        if isinstance(e, (Broadcast, Cast)):
            return self.form(e.value)
        if isinstance(e, Let):
            self.lets[e.var] = self.form(e.value)
            return self.form(e.body)
        if isinstance(e, Binary):
            return self._binary(e.op, self.form(e.a), self.form(e.b))
        return self._gather(e)

    def _binary(self, op: str, a: _Affine, b: _Affine) -> _Affine:
        if op in ("add", "sub"):
            return _plus(a, b, 1.0 if op == "add" else -1.0)
        if op == "mul":
            if not a.coefs or not b.coefs:
                k, other = (a, b) if not a.coefs else (b, a)
                result = _scaled(other, k.const)
                return _Affine(result.coefs, result.const, a.exact and b.exact,
                               a.gather or b.gather)
            # A product of two variables: its slope at the origin.
            slope = _plus(_scaled(_Affine(a.coefs), b.const), _scaled(_Affine(b.coefs), a.const))
            return _Affine(slope.coefs, a.const * b.const, False, a.gather or b.gather)
        if op in ("floordiv", "floormod", "div") and not b.coefs and b.const:
            c = b.const
            if op == "floormod":
                return _Affine(dict(a.coefs), a.const % c, not a.coefs, a.gather)
            const = a.const / c
            const = math.floor(const) if op == "floordiv" and math.isfinite(const) else const
            return _Affine({v: k / c for v, k in a.coefs.items()}, const,
                           not a.coefs and op == "floordiv", a.gather)
        # min, max, or division by a variable: the first operand's form, inexact.
        return _Affine(dict(a.coefs), a.const, False, a.gather or b.gather)

    def _gather(self, e) -> _Affine:
        """A value from data (a load, a select, a call): depends on what it reads."""
        coefs: dict = {}
        for name in child_fields(type(e)):
            value = getattr(e, name)
            for child in (value if isinstance(value, tuple) else (value,)):
                if isinstance(child, Expr):
                    coefs.update(dict.fromkeys(self.form(child).coefs, 1.0))
        return _Affine(coefs, 0.0, False, True)


# --- arithmetic and loads of one statement ---------------------------------------------------

_FLOAT_CATEGORY = {"add": "float_addsub", "sub": "float_addsub", "mul": "float_mul",
                   "div": "float_div", "floordiv": "float_div", "floormod": "float_div",
                   "min": "float_minmax", "max": "float_minmax"}
_CHEAP_CALLS = ("abs", "floor", "ceil")


class _Scan(Visitor):
    """Counts the arithmetic of a stored value per lane and collects its loads.

    Loads inside indices (gathers) are collected too, their index arithmetic
    is not counted. A variable bound by a LetStmt counts its value's arithmetic
    and loads at its first use. `lanes` is the widest vector met.
    """

    def __init__(self, lets: dict):
        self.lets = lets   # let-bound variable -> its value, counted where the variable is used
        self.counts = [0.0] * len(ARITH)
        self.nodes = 0
        self.loads: list[Load] = []
        self.lanes = 1
        self.counting = True

    def count(self, category: str, e: Expr, amount: int | None = None):
        self.lanes = max(self.lanes, e.dtype.lanes)
        if self.counting:
            self.counts[_ARITH_INDEX[category]] += e.dtype.lanes if amount is None else amount
            self.nodes += 1

    def visit_Binary(self, e: Binary):
        if not e.dtype.is_float:
            self.count("int_arith", e)
            return self.generic_visit(e)
        if e.op in ("add", "sub"):
            for mul, other in ((e.a, e.b), (e.b, e.a)):
                if isinstance(mul, Binary) and mul.op == "mul":
                    self.count("float_fma", e)
                    for child in (mul.a, mul.b, other):
                        self.visit(child)
                    return None
        self.count(_FLOAT_CATEGORY[e.op], e)
        return self.generic_visit(e)

    def visit_Call(self, e: Call):
        if not e.dtype.is_float:
            self.count("int_arith", e)
        else:
            self.count("float_addsub" if e.name in _CHEAP_CALLS else "float_math", e)
        return self.generic_visit(e)

    def _compare(self, e):
        self.count("compare_select", e)
        return self.generic_visit(e)

    visit_Compare = visit_Logical = visit_Not = visit_Select = _compare

    def visit_Cast(self, e: Cast):
        self.count("cast", e)
        return self.generic_visit(e)

    def visit_VectorReduce(self, e):
        self.lanes = max(self.lanes, e.value.dtype.lanes)
        self.count("vector_reduce", e, e.value.dtype.lanes - 1)
        return self.generic_visit(e)

    def visit_Load(self, e: Load):
        self.lanes = max(self.lanes, e.dtype.lanes)
        self.loads.append(e)
        self.indices(e.indices)

    def visit_Var(self, v: Var):
        value = self.lets.pop(v, None)   # counted once per statement, as if inlined
        if value is not None:
            self.visit(value)

    def visit_Ramp(self, e: Ramp):
        self.lanes = max(self.lanes, e.lanes)
        return self.generic_visit(e)

    visit_Broadcast = visit_Ramp

    def indices(self, indices):
        """Collect the loads of an index without counting its arithmetic."""
        counting, self.counting = self.counting, False
        for index in indices:
            self.visit(index)
        self.counting = counting


# --- the walk over the loop nest -----------------------------------------------------------

@dataclass(slots=True)
class _Loop:
    var: Var
    kind: str
    extent: float  # before guards narrow it
    key: int       # the loop's position in the program text, for grouping its stores


@dataclass(slots=True)
class _StoreRecord:
    """One Store with what the walk knew around it."""

    store: Store
    order: int
    loops: list            # [_Loop], outermost first
    extents: list          # effective extent of each loop (guards applied)
    executions: float
    nominal: float         # executions without the guards
    lanes: int             # of the statement: widest vector in it
    store_lanes: int
    counts: list           # per execution, per lane
    nodes: int             # arithmetic nodes per execution
    loads: list
    guarded: bool
    masked: bool
    parallel: float        # product of parallel extents around it (0: none)
    grain: float           # executions per iteration of the innermost parallel loop
    cost: float = field(init=False)

    def __post_init__(self):
        self.cost = self.executions * (self.lanes + sum(self.counts))


class _Walk(Visitor):
    """Walks the program once, recording every Store in its loop context and program totals."""

    def __init__(self, func: LoweredFunc):
        self.forms = _Forms(func.size_vars)
        self.loops: list[_Loop] = []
        self.ranges: dict = {}   # loop var -> (lo, hi), narrowed by the guards
        self.share = 1.0         # share of iterations passing the guards that narrow nothing
        self.guards = 0
        self.masked = False
        self.stores: list[_StoreRecord] = []
        self.let_values: dict = {}  # let-bound variable -> value, in the current scope
        self.n = dict.fromkeys(("loops", "symbolic", "parallel", "guards", "lets", "depth",
                                "allocs_global", "allocs_local", "bytes_global", "bytes_local",
                                "loop_iterations", "max_parallel"), 0.0)

    def value(self, e: Expr) -> float:
        """An estimate of an integer expression: sizes at SYMBOLIC_EXTENT, loop variables
        at the middle of their ranges."""
        f = self.forms.form(e)
        if f.gather:
            return float(SYMBOLIC_EXTENT)
        total = f.const
        for v, c in f.coefs.items():
            lo, hi = self.ranges.get(v, (0.0, SYMBOLIC_EXTENT - 1.0))
            total += c * (lo + hi) / 2
        return total if math.isfinite(total) else float(SYMBOLIC_EXTENT)

    def extents(self) -> list:
        return [max(0.0, hi - lo + 1) for lo, hi in (self.ranges[l.var] for l in self.loops)]

    def visit_For(self, node: For):
        lo, extent = self.value(node.min), max(0.0, float(round(self.value(node.extent))))
        self.n["loops"] += 1
        self.n["symbolic"] += not isinstance(node.extent, Const)
        self.n["parallel"] += node.kind == "parallel"
        self.loops.append(_Loop(node.var, node.kind, extent, int(self.n["loops"])))
        self.ranges[node.var] = (lo, lo + extent - 1)
        self.n["loop_iterations"] += math.prod(self.extents()) * self.share
        self.n["depth"] = max(self.n["depth"], len(self.loops))
        self.n["max_parallel"] = max(self.n["max_parallel"], self.parallel_extent())
        self.visit(node.body)
        self.loops.pop()
        del self.ranges[node.var]

    def parallel_extent(self) -> float:
        """The product of the parallel extents around here; 0 when there is no parallel loop."""
        extents = [e for l, e in zip(self.loops, self.extents()) if l.kind == "parallel"]
        return math.prod(extents) if extents else 0.0

    def grain(self) -> float:
        """Iterations of the loops inside the innermost parallel loop (of all loops if none)."""
        extents = self.extents()
        inner = [k for k, l in enumerate(self.loops) if l.kind == "parallel"][-1:]
        return math.prod(extents[inner[0] + 1:] if inner else extents) * self.share

    def visit_IfThenElse(self, node: IfThenElse):
        self.n["guards"] += 1
        then, otherwise = self.guard(node.cond)
        masked = node.cond.dtype.lanes > 1
        self.under(then, node.then_body, masked)
        if node.else_body is not None:
            self.under(otherwise, node.else_body, masked)

    def under(self, effect, body, masked: bool):
        """Visit `body` with the guard `effect` (narrowed ranges, share) applied."""
        narrowed, share = effect
        saved = (dict(self.ranges), self.share, self.guards, self.masked)
        self.ranges.update(narrowed)
        self.share *= share
        self.guards += 1
        self.masked = self.masked or masked
        self.visit(body)
        self.ranges, self.share, self.guards, self.masked = saved

    def visit_LetStmt(self, node: LetStmt):
        self.n["lets"] += 1
        self.forms.lets[node.var] = self.forms.form(node.value)
        self.let_values[node.var] = node.value
        self.visit(node.body)
        del self.let_values[node.var]

    def visit_Allocate(self, node: Allocate):
        scope = "local" if node.buffer.scope == "local" else "global"
        self.n["allocs_" + scope] += 1
        self.n["bytes_" + scope] += _elements(self, node.buffer) * node.buffer.dtype.itemsize
        self.visit(node.body)

    def visit_Store(self, node: Store):
        scan = _Scan(dict(self.let_values))
        scan.lanes = node.value.dtype.lanes
        scan.visit(node.value)
        scan.indices(node.indices)
        extents = self.extents()
        self.stores.append(_StoreRecord(
            node, len(self.stores), list(self.loops), extents,
            math.prod(extents) * self.share, math.prod(l.extent for l in self.loops),
            max([scan.lanes, *(i.dtype.lanes for i in node.indices)]), node.value.dtype.lanes,
            scan.counts, scan.nodes, scan.loads, self.guards > 0, self.masked,
            self.parallel_extent(), self.grain()))

    # --- guards ---

    def guard(self, cond: Expr):
        """((narrowed ranges, share) of the then branch, the same of the else branch).

        A comparison of one loop variable with a constant narrows that loop's range;
        other conditions estimate the share of iterations that pass them.
        """
        if isinstance(cond, Broadcast):
            return self.guard(cond.value)
        if isinstance(cond, Not):
            then, otherwise = self.guard(cond.a)
            return otherwise, then
        if isinstance(cond, Logical):
            (ta, ea), (tb, eb) = self.guard(cond.a), self.guard(cond.b)
            if cond.op == "and":
                then = self.both(ta, tb)
                return then, ({}, 1.0 - self.passing(then))
            otherwise = self.both(ea, eb)
            return ({}, 1.0 - self.passing(otherwise)), otherwise
        if isinstance(cond, Compare):
            return self.compare(cond)
        if isinstance(cond, Const):
            return ({}, float(bool(cond.value))), ({}, float(not cond.value))
        return ({}, 0.5), ({}, 0.5)

    def both(self, a, b):
        """The effect of two guards that must both pass."""
        narrowed = dict(a[0])
        for v, (lo, hi) in b[0].items():
            lo0, hi0 = narrowed.get(v, (lo, hi))
            narrowed[v] = (max(lo, lo0), min(hi, hi0))
        return narrowed, a[1] * b[1]

    def passing(self, effect) -> float:
        """The share of the current iterations that an effect lets through."""
        narrowed, share = effect
        for v, (lo, hi) in narrowed.items():
            lo0, hi0 = self.ranges[v]
            share *= max(0.0, hi - lo + 1) / max(1.0, hi0 - lo0 + 1)
        return share

    def compare(self, cond: Compare):
        """The effects of a comparison, read as `d < 0`, `d == 0` or `d != 0`."""
        a, b = self.forms.form(cond.a), self.forms.form(cond.b)
        flip = cond.op in ("gt", "ge")
        d = _plus(b, a, -1.0) if flip else _plus(a, b, -1.0)
        if d.gather:
            return ({}, 0.5), ({}, 0.5)
        if d.exact:
            lo, hi = self.span(d, cond.a.dtype.lanes)
        else:  # through // or %: the operands' intervals keep their ranges
            ia, ib = self.interval(cond.a), self.interval(cond.b)
            if ia is None or ib is None:
                return ({}, 0.5), ({}, 0.5)
            (alo, ahi), (blo, bhi) = (ib, ia) if flip else (ia, ib)
            lo, hi = alo - bhi, ahi - blo
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return ({}, 0.5), ({}, 0.5)
        integer = not cond.a.dtype.is_float
        if cond.op in ("le", "ge") and integer:   # d <= 0 is d - 1 < 0
            d.const, lo, hi = d.const - 1.0, lo - 1.0, hi - 1.0
        if cond.op in ("eq", "ne"):
            share = 1.0 / (hi - lo + 1) if lo <= 0 <= hi else 0.0
            share = 1.0 - share if cond.op == "ne" else share
        elif integer and d.exact and len(d.coefs) == 1 and next(iter(d.coefs)) in self.ranges:
            (v, c), = d.coefs.items()
            return self.narrow(v, c, d.const)
        elif integer:
            share = min(1.0, max(0.0, -lo / (hi - lo + 1)))
        else:
            share = min(1.0, max(0.0, -lo / (hi - lo))) if hi > lo else float(lo < 0)
        return ({}, share), ({}, 1.0 - share)

    def interval(self, e: Expr):
        """(least, greatest) value of an index expression over the current ranges, or None."""
        if isinstance(e, Const):
            value = float(e.value)
            return (value, value) if math.isfinite(value) else None
        if isinstance(e, Var):
            if e in self.let_values:
                return self.interval(self.let_values[e])
            if e in self.forms.sizes:
                return float(SYMBOLIC_EXTENT), float(SYMBOLIC_EXTENT)
            return self.ranges.get(e, (0.0, SYMBOLIC_EXTENT - 1.0))
        if isinstance(e, (Broadcast, Cast)):
            return self.interval(e.value)
        if isinstance(e, Ramp):
            base, stride = self.interval(e.base), self.interval(e.stride)
            if base is None or stride is None:
                return None
            last = (e.lanes - 1) * stride[0], (e.lanes - 1) * stride[1]
            return base[0] + min(0.0, *last), base[1] + max(0.0, *last)
        if isinstance(e, Binary):
            a, b = self.interval(e.a), self.interval(e.b)
            return None if a is None or b is None else _interval_op(e.op, a, b)
        return None

    def narrow(self, v, c: float, k: float):
        """The ranges of `v` where `c*v + k < 0` holds (then) and where it does not (else)."""
        lo, hi = self.ranges[v]
        if c > 0:
            last = math.ceil(-k / c) - 1
            return ({v: (lo, min(hi, last))}, 1.0), ({v: (max(lo, last + 1), hi)}, 1.0)
        first = math.floor(-k / c) + 1
        return ({v: (max(lo, first), hi)}, 1.0), ({v: (lo, min(hi, first - 1))}, 1.0)

    def span(self, f: _Affine, lanes: int):
        """The least and greatest value of an affine form over the current ranges."""
        lo = hi = f.const
        for v, c in f.coefs.items():
            if v is _LANE:
                a, b = 0.0, lanes - 1.0
            else:
                a, b = self.ranges.get(v, (0.0, SYMBOLIC_EXTENT - 1.0))
            lo += min(c * a, c * b)
            hi += max(c * a, c * b)
        return lo, hi


def _interval_op(op: str, a: tuple, b: tuple):
    """The interval of `a op b` for intervals a and b, or None."""
    if op == "add":
        return a[0] + b[0], a[1] + b[1]
    if op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if op in ("mul", "min", "max"):
        if op != "mul":
            f = min if op == "min" else max
            return f(a[0], b[0]), f(a[1], b[1])
        ends = [x * y for x in a for y in b]
        return min(ends), max(ends)
    if b[0] != b[1] or not b[0]:   # only a division by a constant
        return None
    c = b[0]
    if op == "floordiv" and math.isfinite(a[0] / c) and math.isfinite(a[1] / c):
        ends = math.floor(a[0] / c), math.floor(a[1] / c)
        return float(min(ends)), float(max(ends))
    if op == "floormod" and c > 0:
        return a if 0 <= a[0] and a[1] < c else (0.0, c - 1.0)
    return None


def _elements(walk: _Walk, buffer) -> float:
    """Elements of a buffer (its shape's product, symbolic sizes estimated)."""
    return max(1.0, math.prod(max(1.0, walk.value(d)) for d in buffer.shape))


# --- combining the records -----------------------------------------------------------------

def _program_values(walk: _Walk) -> dict:
    """The `prog.*` features."""
    stores, n = walk.stores, walk.n
    scalar = [s.executions * s.lanes for s in stores]
    total = sum(scalar) or 1.0

    def share(flags) -> float:
        return sum(w for w, flag in zip(scalar, flags) if flag) / total

    traffic = {"global": 0.0, "local": 0.0}
    for s in stores:
        for buffer, lanes in [(s.store.buffer, s.store_lanes),
                              *((load.buffer, load.dtype.lanes) for load in s.loads)]:
            scope = "local" if buffer.scope == "local" else "global"
            traffic[scope] += s.executions * lanes * buffer.dtype.itemsize
    executions = sum(s.executions for s in stores) or 1.0
    values = {f"prog.{name}": _log(sum(s.executions * s.counts[k] for s in stores))
              for k, (name, _) in enumerate(ARITH)}
    values.update({
        "prog.scalar_iterations": _log(sum(scalar)),
        "prog.n_stores": _log(len(stores)),
        "prog.n_loops": _log(n["loops"]),
        "prog.loop_iterations": _log(n["loop_iterations"]),
        "prog.max_depth": n["depth"],
        "prog.symbolic_loops": _log(n["symbolic"]),
        "prog.n_parallel_loops": n["parallel"],
        "prog.max_parallel_extent": _log(n["max_parallel"]),
        "prog.parallel_fraction": share(any(l.kind == "parallel" for l in s.loops)
                                        for s in stores),
        "prog.vector_fraction": share(s.lanes > 1 for s in stores),
        "prog.mean_lanes": sum(s.executions * s.lanes for s in stores) / executions,
        "prog.max_lanes": max((s.lanes for s in stores), default=0),
        "prog.max_stores_in_body": _log(max(_stores_per_body(stores).values(), default=0)),
        "prog.n_guards": _log(n["guards"]),
        "prog.guarded_fraction": share(s.guarded for s in stores),
        "prog.masked_fraction": share(s.masked for s in stores),
        "prog.n_lets": _log(n["lets"]),
        "prog.allocs_global": _log(n["allocs_global"]),
        "prog.allocs_local": _log(n["allocs_local"]),
        "prog.alloc_bytes_global": _log(n["bytes_global"]),
        "prog.alloc_bytes_local": _log(n["bytes_local"]),
        "prog.traffic_global": _log(traffic["global"]),
        "prog.traffic_local": _log(traffic["local"]),
    })
    return values


def _stores_per_body(stores) -> dict:
    """Innermost loop (its key; 0 outside loops) -> stores directly in its body."""
    counts: dict = {}
    for s in stores:
        key = s.loops[-1].key if s.loops else 0
        counts[key] = counts.get(key, 0) + 1
    return counts


def _hot_values(hot: _StoreRecord | None, walk: _Walk) -> dict:
    """The `hot.*` features (all zeros for a program without stores)."""
    values = dict.fromkeys((name for name, _ in _HOT), 0.0)
    if hot is None:
        return values
    values.update({f"hot.{name}": _log(hot.executions * hot.counts[k])
                   for k, (name, _) in enumerate(ARITH)})
    loads = {load.buffer for load in hot.loads}
    innermost = hot.loops[-1] if hot.loops else None
    parallel = max(1.0, hot.parallel)
    values.update({
        "hot.executions": _log(hot.executions),
        "hot.scalar_iterations": _log(hot.executions * hot.lanes),
        "hot.instructions": _log(hot.executions * hot.nodes),
        "hot.work_share": hot.cost / (sum(s.cost for s in walk.stores) or 1.0),
        "hot.lanes": hot.lanes,
        "hot.innermost_vectorized": float(hot.lanes > 1),
        "hot.innermost_parallel": float(innermost is not None and innermost.kind == "parallel"),
        "hot.innermost_extent": _log(hot.extents[-1] if hot.extents else 0.0),
        "hot.depth": len(hot.loops),
        "hot.parallel_extent": _log(hot.parallel),
        "hot.parallel_grain": _log(hot.grain * hot.lanes),
        "hot.guard_fraction": hot.executions / hot.nominal if hot.nominal else 0.0,
        "hot.masked": float(hot.masked),
        "hot.stores_in_body": _log(_stores_per_body(walk.stores)[
            hot.loops[-1].key if hot.loops else 0]),
        "hot.accumulates": float(hot.store.buffer in loads),
        "hot.output_local": float(hot.store.buffer.scope == "local"),
        "hot.n_buffers": len(loads | {hot.store.buffer}),
    })
    for t in THREADS:
        values[f"hot.parallel_balance_{t}"] = _ceil(parallel / t) * t / parallel
    return values


def _hot_accesses(hot: _StoreRecord, walk: _Walk) -> list[dict]:
    """The `acc*` features of every buffer the hot statement touches, largest footprint first.

    A buffer loaded and stored counts once, with the store's index; otherwise the
    index of its first load.
    """
    found: dict = {hot.store.buffer: [hot.store.indices, hot.store_lanes, False, True]}
    for load in hot.loads:
        entry = found.setdefault(load.buffer, [load.indices, load.dtype.lanes, False, False])
        entry[1], entry[2] = max(entry[1], load.dtype.lanes), True
    loops = [(l.var, e) for l, e in zip(hot.loops, hot.extents)]
    if hot.lanes > 1:
        loops.append((_LANE, float(hot.lanes)))
    rows = []
    for order, (buffer, (indices, lanes, read, write)) in enumerate(found.items()):
        form = _flat_form(walk, buffer, indices)
        row = _access_values(form, buffer, _elements(walk, buffer), loops, hot.lanes)
        row.update(read=float(read), write=float(write),
                   traffic=_log(hot.executions * lanes * buffer.dtype.itemsize))
        rows.append((-row["bytes_all"], -row["traffic"], order, row))
    return [row for *_, row in sorted(rows, key=lambda r: r[:3])]


def _flat_form(walk: _Walk, buffer, indices) -> _Affine:
    """The affine form of an access's flat index (row-major over the shape if not flat)."""
    forms = [walk.forms.form(i) for i in indices]
    if len(forms) == 1:
        return forms[0]
    strides = buffer.strides
    if strides is None:
        strides, step = [], 1.0
        for extent in reversed(buffer.shape):
            strides.insert(0, step)
            step *= max(1.0, walk.value(extent))
    else:
        strides = [walk.value(s) for s in strides]
    flat = _Affine({})
    for f, stride in zip(forms, strides):
        flat = _plus(flat, _scaled(f, stride))
    return flat


def _access_values(form: _Affine, buffer, elements: float, loops: list, lanes: int) -> dict:
    """Kind, strides, footprints, cache lines and reuse of one access.

    `loops` are (variable, extent) pairs, outermost first, the lanes last;
    strides are the form's coefficients of the variables.
    """
    size = buffer.dtype.itemsize
    strides = [abs(form.coefs.get(v, 0.0)) for v, _ in loops]
    extents = [e for _, e in loops]
    lane = abs(form.coefs.get(_LANE, 0.0))
    row = dict.fromkeys(_ACCESS_NAMES, 0.0)
    kind = ("gather" if form.gather else "scalar" if lanes == 1 else
            "broadcast" if lane == 0 else "contiguous" if lane == 1 else "strided")
    row.update({"present": 1.0, "local": float(buffer.scope == "local"),
                "elem_bytes": float(size), kind: 1.0})
    depth = len(loops)
    if depth:
        row["stride_inner"] = _log(strides[-1])
    for level in range(1, depth + 1):
        if strides[-level]:
            row["stride_nonzero"], row["stride_nonzero_level"] = _log(strides[-level]), level
            break
    for name, level in (("l1", 1), ("l2", 2), ("l3", 3), ("all", depth)):
        inner = list(zip(strides, extents))[depth - min(level, depth):]
        row["bytes_" + name] = _log(_footprint(inner, elements) * size)
        if name != "all":
            row["lines_" + name] = _log(_lines(inner, size, elements))
    reused = [level for level in range(1, depth + 1)
              if not strides[-level] and extents[-level] > 1]
    if reused:
        level = reused[0]
        inner = list(zip(strides, extents))[depth - level + 1:]
        row.update({
            "reuse_count": _log(math.prod(extents[-lv] for lv in reused)),
            "reuse_level": float(level),
            "reuse_distance_iters": _log(math.prod(e for _, e in inner)),
            "reuse_distance_bytes": _log(_footprint(inner, elements) * size)})
    return row


def _footprint(loops: list, elements: float) -> float:
    """Distinct elements touched over `loops` ((stride, extent) pairs): the product of
    the extents it moves along, at most the span they reach and the buffer's size."""
    moving = [(s, e) for s, e in loops if s and e > 1]
    count = math.prod(e for _, e in moving)
    span = 1.0 + sum(s * (e - 1) for s, e in moving)
    return max(1.0, min(count, span, elements))


def _lines(loops: list, size: int, elements: float) -> float:
    """Distinct cache lines touched over `loops` ((stride, extent) pairs, strides in elements).

    The loops are taken by increasing stride: one whose step stays within a cache
    line (or within the block already covered) extends that block, any other
    repeats it. The count is at most the lines of the buffer.
    """
    block, repeats = float(size), 1.0
    for stride, extent in sorted((s * size, e) for s, e in loops if s and e > 1):
        if stride <= max(block, CACHE_LINE):
            block += stride * (extent - 1)
        else:
            repeats *= extent
    return max(1.0, min(repeats * _ceil(block / CACHE_LINE), _ceil(elements * size / CACHE_LINE)))
