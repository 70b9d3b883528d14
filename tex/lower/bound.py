"""Bound inference: which region of each stage has to be computed, and where.

Stages are visited consumers first. A stage computed at the root covers its
whole domain. A stage computed at a consumer's loop covers the union of what
its consumers read, with every loop variable that is not yet fixed at the
attach point relaxed to its range; the result is a region whose start may
depend on the enclosing loop variables and whose extent has a constant upper
bound (the size of its buffer). Where the region may stray outside the
stage's domain, `StagePlan.guards` keeps the computation inside it.

On a GPU a buffer is shared by several threads, so the loops bound to
thread axes above the attach point are relaxed too, as the buffer's scope
says (`storage_scope`): a "shared" buffer holds what every thread of the
block needs (threadIdx and vthread loops relaxed), a "global" one what the
whole grid needs (every bound loop relaxed), a "local" one what its thread
needs. A "local" buffer computed at a loop above the thread loops (one block
per row, say, its threads each keeping their part of the row) holds only
what one thread writes and reads: with every loop bound to threadIdx.* read
as that thread's index (`ThreadIndex`), the part each thread touches of a
dimension, when a constant extent covers it, is the buffer's
(`per_thread_storage`; `StagePlan.storage_offsets` and `thread_vars` index it).
The stage's loops still cover the whole region.

A thread's part of a dimension may be strided: a thread owning columns
`4*tx + 64*jo + lane` (jo < 2, lane < 4) reads 8 columns spread over 68. Such
a dimension of a stage computed inside the thread loops, where every reader's
index in one thread is the same start plus the same sum of relaxed loop
variables times constants whose ranges do not overlap (digits of a
mixed-radix number), is stored compactly, by the digits only: 8 elements,
not 68, as a virtual thread's part would be. The stage then
computes just those points: its loops cover the compact positions
`0 <= q < 8` and the root axis takes the value `start + f(q)`, f placing the
digits of q at their strides (`StagePlan.storage_digits`; `TensorBuffer.index`
maps an index back to q). So is a dimension of a stage computed above the thread
loops whose own threadIdx-bound loops write, in each thread, the points its
readers read there (one block per row, each thread keeping columns
`tx + threads * o` of it), where its other loops over that dimension are
unrolled (the buffer then lives in registers; a rolled loop keeps TE's span):
its loops stay as they are, its writes mapped to the compact positions as the
reads are.

A split by a symbolic size (a scalar parameter, `vscale()`) gives its plan
`checks`: that the size is at least 1, and, where `disable_predication` shifts
its last part inwards, that the part fits in its axis, where these are not
provable; each call of the kernel tests them (`tex.ir.RuntimeCheck`).

`infer_bounds` returns one frozen `StagePlan` per stage; nest building only
reads them. `drop_unneeded_guards`, run once buffers are known, returns new
plans without the guards no access needs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping

from tex import ops
from tex.arith import Interval, bound, const_bound, prove, simplify
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Binary, Const, Expr, TensorRead, Var
from tex.ir import RuntimeCheck, ThreadIndex
from tex.schedule.relations import Split, pass_down, pass_up, split_extents, split_guards
from tex.schedule.stage import Stage
from tex.tensor import IterVar, Range
from tex.visitor import collect, free_vars, substitute, transform

_ZERO = Const(INDEX, 0)


@dataclass(frozen=True)
class Guard:
    """A condition a stage's statements run under. A data guard keeps the stage inside
    its domain (a split that does not divide, a tile at an edge); a reduction guard
    decides which terms a reduction adds."""

    on_data: bool
    cond: Expr


#: A strided dimension of a per-thread buffer: ((stride, extent), ...) by increasing
#: stride, each stride at least the span of the digits below it.
Digits = tuple[tuple[int, int], ...]


def spread(position: Expr, digits: Digits) -> Expr:
    """The offset from a strided part's start of its compact `position`: each digit of
    `position` (mixed radix, lowest first) times its stride."""
    total, radix = _ZERO, 1
    for k, (stride, extent) in enumerate(digits):
        digit = ops.binary("floordiv", position, radix) if radix > 1 else position
        if k < len(digits) - 1:
            digit = ops.binary("floormod", digit, extent)
        total = ops.binary("add", total, ops.binary("mul", digit, stride))
        radix *= extent
    return total


def compact(offset: Expr, digits: Digits) -> Expr:
    """The compact position of a strided part's element at `offset` from its start (the
    inverse of `spread`)."""
    total, radix = _ZERO, 1
    for k, (stride, extent) in enumerate(digits):
        digit = ops.binary("floordiv", offset, stride) if stride > 1 else offset
        if k < len(digits) - 1:
            digit = ops.binary("floormod", digit, extent)
        total = ops.binary("add", total, ops.binary("mul", digit, radix))
        radix *= extent
    return total


@dataclass(frozen=True, eq=False)
class StagePlan:
    """What bound inference found for one stage that is not inlined; read-only."""

    stage: Stage
    body: tuple[Expr, ...]              # the op's body with inlined stages substituted
    region: tuple[Range, ...]           # per dimension: the part computed
    alloc_shape: tuple[Expr, ...]       # per dimension: the buffer's extent
    ranges: Mapping[IterVar, Range]     # every axis, roots and derived
    values: Mapping[IterVar, Expr]      # every axis, over the leaf loop variables
    guards: tuple[Guard, ...]
    storage_offsets: tuple[Expr, ...] | None = None     # a per-thread buffer's offsets
    storage_digits: tuple[Digits | None, ...] | None = None  # its strided dimensions
    checks: tuple[RuntimeCheck, ...] = ()   # what each call checks of its splits' sizes

    @property
    def op(self):
        return self.stage.op

    @property
    def offsets(self) -> list[Expr]:
        """Subtract these from an index of the op's domain to index its buffer (after
        `thread_vars` for a per-thread buffer)."""
        if self.storage_offsets is not None:
            return list(self.storage_offsets)
        if self.stage.attach.kind == "at":
            return [r.min for r in self.region]
        return [_ZERO] * len(self.region)

    @property
    def root_values(self) -> dict:
        """Each root axis variable (data and reduction) -> its value over the leaf loops."""
        op = self.op
        return {iv.var: self.values[iv] for iv in op.axis + op.reduce_axis}


def loop_intervals(plans) -> dict:
    """Interval of every leaf loop variable of the given plans (leaf loops start at 0)."""
    intervals = {}
    for plan in plans:
        intervals.update(_leaf_intervals(plan.stage, plan.ranges))
    return intervals


def _leaf_intervals(stage, ranges) -> dict:
    return {leaf.var: Interval.from_extent(_ZERO, ranges[leaf].extent)
            for leaf in stage.leaf_iter_vars if leaf in ranges}


def enclosing_loops(stage) -> list:
    """(IterVar, its stage) for every loop enclosing the place `stage`'s nest goes."""
    loops = []
    attach = stage.attach
    while attach.kind == "at":
        leaves = attach.stage.leaf_iter_vars
        loops.extend((v, attach.stage) for v in leaves[:leaves.index(attach.axis) + 1])
        attach = attach.stage.attach
    return loops


def storage_scope(stage) -> str:
    """The scope `stage`'s buffer gets: its own, or for a "global" stage placed inside
    a GPU kernel, "local" under a threadIdx loop and "shared" under blockIdx loops only."""
    tags = {owner.bindings.get(v) for v, owner in enclosing_loops(stage)} - {None}
    if stage.scope != "global" or not tags:
        return stage.scope
    return "local" if any(t.startswith("threadIdx") for t in tags) else "shared"


def _relaxed_by_scope(scope: str, tag: str | None) -> bool:
    """Whether a loop bound to `tag` is relaxed for a buffer in `scope` (see the module doc)."""
    if tag is None or scope == "local":
        return False
    return scope == "global" or not tag.startswith("blockIdx")


def visible_vars(stage) -> set:
    """Loop variables whose value is fixed for one instance of `stage`'s buffer: the
    loops enclosing its place, less the thread loops its scope spans."""
    scope = storage_scope(stage)
    return {v.var for v, owner in enclosing_loops(stage)
            if not _relaxed_by_scope(scope, owner.bindings.get(v))}


def infer_bounds(stages, consumers: dict) -> tuple[StagePlan, ...]:
    """The plan of each of `stages` (`InlinedStage`s, in schedule order), inferred
    consumers first; `consumers` maps a stage to the stages reading it."""
    done: list[StagePlan] = []
    by_stage = {}
    for source in reversed(stages):
        readers = [by_stage[c] for c in consumers[source.stage]]
        region, alloc_shape = _region(source, readers, done)
        plan = _with_loops(source, region, alloc_shape, done)
        if source.stage.attach.kind == "at" and storage_scope(source.stage) == "local":
            plan, compact = per_thread_storage(plan, readers, done)
            if any(compact):  # compute only the strided part's points
                compact_region = tuple(Range(r.min, shape) if digits else r for r, shape, digits
                                       in zip(region, plan.alloc_shape, compact))
                plan = replace(_with_loops(source, compact_region, plan.alloc_shape, done,
                                           compact),
                               storage_offsets=plan.storage_offsets,
                               storage_digits=plan.storage_digits)
        done.append(plan)
        by_stage[source.stage] = plan
    return tuple(by_stage[s.stage] for s in stages)


def _region(source, readers: list, done: list) -> tuple[tuple, tuple]:
    """(region, buffer shape) of the stage of `source`: its whole domain at the root, else
    the union of what its `readers` read of it (their plans are in `done`)."""
    op = source.op
    shape = op.shape
    if source.stage.attach.kind != "at":  # the axes' domains (a scan's starts after init)
        return tuple(iv.dom for iv in op.axis), tuple(shape)
    intervals = loop_intervals(done)
    visible = visible_vars(source.stage)
    relaxed = {v: i for v, i in intervals.items() if v not in visible}
    lows, highs = [[] for _ in shape], [[] for _ in shape]
    for consumer in readers:
        for read in _reads_of(source.stage, consumer):
            for d, index in enumerate(read.indices):
                index, unknown = _loaded_values_unknown(substitute(index, consumer.root_values))
                i = bound(index, {**relaxed, **unknown})
                lows[d].append(i.lo)
                highs[d].append(i.hi)
    region, alloc = [], []
    for d, extent in enumerate(shape):
        part = _part_read(lows[d], highs[d], intervals)
        if part is None:
            region.append(Range(_ZERO, extent))
            alloc.append(extent)
        else:
            region.append(part[0])
            alloc.append(part[1])
    return tuple(region), tuple(alloc)


def thread_vars(plans) -> dict:
    """Each loop variable of `plans` bound to threadIdx.* -> the thread's index along it
    (the loop runs once per thread, its variable equal to that index)."""
    return {leaf.var: ThreadIndex(tag) for plan in plans
            for leaf, tag in plan.stage.bindings.items() if tag.startswith("threadIdx")}


def per_thread_storage(plan: StagePlan, readers: list,
                       done: list) -> tuple[StagePlan, tuple]:
    """`plan` of a "local" stage with a buffer of what one thread writes and reads of each
    dimension where a constant extent covers it (see the module docstring); and per
    dimension, the digits of a strided one whose loops cover just the thread's span (the
    stage is computed inside the thread loops), which are to cover its compact positions
    instead, else None (its own threadIdx-bound loops write the thread's points)."""
    threads, visible = thread_vars([plan, *done]), visible_vars(plan.stage)
    unchanged = (None,) * len(plan.alloc_shape)
    if not threads:
        return plan, unchanged
    every = loop_intervals([plan, *done])
    intervals = {v: i for v, i in every.items() if v not in threads and v not in visible}
    indices = [[plan.values[iv] for iv in plan.op.axis]]
    for consumer in readers:
        indices += [[substitute(i, consumer.root_values) for i in read.indices]
                    for read in _reads_of(plan.stage, consumer)]
    shape, offsets = list(plan.alloc_shape), list(plan.offsets)
    strided: list[Digits | None] = [None] * len(shape)
    compact: list[Digits | None] = [None] * len(shape)
    smaller = False
    for d in range(len(shape)):
        bounds = [_bound_in_thread(index[d], every, threads, intervals) for index in indices]
        part = _part_read([b.lo for b in bounds], [b.hi for b in bounds], intervals)
        if part is not None and part[1].value < _constant(shape[d]):
            offsets[d], shape[d], smaller = part[0].min, part[1], True
        # strided: where the stage's loops cover just this thread's span (computed inside
        # the thread loops), so that they can cover its points instead, or where its own
        # threadIdx-bound loops write the same points as the readers read
        inside = part is not None and part[1].value == _constant(plan.alloc_shape[d])
        if part is not None and len(indices) > 1 and \
                (inside or _unrolled_but_threads(plan.stage, plan.op.axis[d])):
            digits = _common_digits([simplify(substitute(index[d], threads), every)
                                     for index in (indices[1:] if inside else indices)],
                                    intervals)
            if digits and _count(digits) < min(part[1].value, _constant(shape[d])):
                offsets[d], shape[d], smaller = part[0].min, Const(INDEX, _count(digits)), True
                strided[d] = digits
                compact[d] = digits if inside else None
    if not smaller:
        return plan, unchanged
    return replace(plan, alloc_shape=tuple(shape), storage_offsets=tuple(offsets),
                   storage_digits=tuple(strided) if any(strided) else None), tuple(compact)


def _unrolled_but_threads(stage: Stage, root: IterVar) -> bool:
    """Whether every loop `stage` makes of its axis `root` (split only, not fused) is
    bound to a thread or unrolled: then a buffer of the thread's points of that axis can
    be indexed by constants and live in registers. (A rolled loop keeps TE's layout, the
    thread's span, as TE's own allocations show it.)"""
    derived = {root}
    for r in stage.relations:
        if isinstance(r, Split) and r.parent in derived:
            derived |= {r.outer, r.inner}
        elif any(a in derived for a in r.axes):
            return False
    return all(leaf in stage.bindings or stage.annotations.get(leaf) == "unroll"
               for leaf in stage.leaf_iter_vars if leaf in derived)


def _count(digits: Digits) -> int:
    total = 1
    for _, extent in digits:
        total *= extent
    return total


def _common_digits(indices: list, intervals: dict) -> Digits | None:
    """The digits of a strided dimension read at `indices` (one thread's, each an index
    over the relaxed loop variables of `intervals`), or None unless every index is the
    same start plus the same non-overlapping digits (see the module docstring)."""
    found = [_digits(index, intervals) for index in indices]
    if any(f is None for f in found):
        return None
    (start, digits), rest = found[0], found[1:]
    if any(d != digits or not prove(ops.compare("eq", s, start), intervals) for s, d in rest):
        return None
    return digits


def _digits(index: Expr, intervals: dict):
    """(start, digits) when `index` is `start + sum(stride * v)` over relaxed loop variables
    `v` of constant range, with strides that do not overlap, dense runs merged; else None."""
    terms, start = [], index
    for var in free_vars(index) & intervals.keys():
        stride = simplify(ops.binary("sub", substitute(index, {var: Const(INDEX, 1)}),
                                     substitute(index, {var: _ZERO})))
        lo, hi = intervals[var].lo, intervals[var].hi
        if not (isinstance(stride, Const) and stride.value > 0 and isinstance(lo, Const)
                and lo.value == 0 and isinstance(hi, Const)):
            return None
        if hi.value > 0:
            terms.append((stride.value, hi.value + 1))
        start = substitute(start, {var: _ZERO})
    if free_vars(simplify(start)) & intervals.keys():
        return None
    merged: list[tuple[int, int]] = []
    for stride, extent in sorted(terms):
        if merged and stride < merged[-1][0] * merged[-1][1]:
            return None  # overlapping digits
        if merged and stride == merged[-1][0] * merged[-1][1]:
            merged[-1] = (merged[-1][0], merged[-1][1] * extent)
        else:
            merged.append((stride, extent))
    return simplify(start), tuple(merged)


def _bound_in_thread(index, every: dict, threads: dict, intervals: dict) -> Interval:
    """The bounds of `index` in one thread: simplified knowing every loop's range, each
    threadIdx-bound loop variable then read as its thread's index, loaded values unknown."""
    index, unknown = _loaded_values_unknown(substitute(simplify(index, every), threads))
    return bound(index, {**intervals, **unknown})


def _constant(extent) -> float:
    return extent.value if isinstance(extent, Const) else float("inf")


def _reads_of(stage, consumer: StagePlan) -> list:
    """The reads of `stage`'s output in `consumer`'s body."""
    ops_ = (stage.op, stage.origin_op)
    return [read for b in consumer.body
            for read in collect(b, lambda n: isinstance(n, TensorRead))
            if any(read.tensor.op is o for o in ops_)]


def _part_read(lows: list, highs: list, intervals: dict):
    """(Range read, constant buffer extent) of one dimension from the bounds of its
    indices, or None when the whole dimension must be computed."""
    if not lows or any(x is None for x in lows + highs):
        return None
    lo, hi = _fold(ops.minimum, lows), _fold(ops.maximum, highs)
    size = simplify(ops.binary("add", ops.binary("sub", hi, lo), 1), intervals)
    _, size_max = const_bound(size, intervals)
    if size_max is None:
        return None
    return Range(simplify(lo, intervals), size), Const(INDEX, max(size_max, 1))


def _loaded_values_unknown(index):
    """`index` with each tensor read in it (a gather) replaced by a variable that may take
    any value, and those variables' (unbounded) intervals."""
    unknown = {}

    def opaque(node):
        if isinstance(node, TensorRead):
            var = Var(f"{node.tensor.name}_value", node.dtype)
            unknown[var] = Interval.everything()
            return var
        return None
    return transform(index, opaque), unknown


def _fold(combine, items):
    result = items[0]
    for item in items[1:]:
        result = combine(result, item)
    return simplify(result)


def _with_loops(source, region: tuple, alloc_shape: tuple, done: list,
                digits: tuple | None = None) -> StagePlan:
    """The plan of `source`'s stage computing `region`: the ranges of every axis, the
    value of every axis over the leaf loops, and the guards. A dimension with `digits`
    has a compact region: its axis's value is the strided point (see `spread`)."""
    stage, op = source.stage, source.op
    roots = {iv: r for iv, r in zip(op.axis, region)}
    roots.update({iv: iv.dom for iv in op.reduce_axis})
    ranges = pass_down(stage.relations, roots)
    intervals = loop_intervals(done)
    intervals.update(_leaf_intervals(stage, ranges))
    shifted, checks = _tails_shifted_inwards(stage, ranges, intervals)
    checks = _symbolic_sizes_checked(stage, intervals) + checks
    values = pass_up(stage.relations, stage.leaf_iter_vars, ranges, shifted=shifted)
    split_conds = split_guards(stage.relations, ranges, values, shifted)
    for iv, r, d in zip(op.axis, region, digits or ()):
        if d is not None:
            position = simplify(ops.binary("sub", values[iv], r.min), intervals)
            values[iv] = ops.binary("add", r.min, spread(position, d))
    ranges, values = _data_axes_placed(op, ranges, values)
    values = {iv: simplify(v, intervals) if digits else simplify(v) for iv, v in values.items()}
    guards = [Guard(axis.kind == "data", simplify(cond, intervals))
              for axis, cond in split_conds]
    if stage.attach.kind == "at":
        for iv, extent in zip(op.axis, op.shape):
            value = values[iv]
            for cond in (ops.compare("ge", value, 0), ops.compare("lt", value, extent)):
                if not prove(cond, intervals):
                    guards.append(Guard(True, simplify(cond, intervals)))
    guards = tuple(g for g in guards if not (isinstance(g.cond, Const) and g.cond.value))
    plan = StagePlan(stage, source.body, region, alloc_shape, MappingProxyType(ranges),
                     MappingProxyType(values), guards, checks=checks)
    _check_constant_extents(plan)
    return plan


def _tails_shifted_inwards(stage, ranges: dict,
                           intervals: dict) -> tuple[frozenset, tuple[RuntimeCheck, ...]]:
    """The splits of `stage` given `disable_predication` whose last part is shifted back
    inside the parent rather than guarded, and the run-time checks they need.

    A split is shifted where computing a point twice stores the same value twice (a
    stage without reduction axes, whose data axis is split; not tensorized; no
    reduction computed at one of its loops, which a parallel or thread-bound loop's
    overlapping iterations could accumulate into at once) and the parent holds a whole
    part: provably, or, for a symbolic factor (or nparts) where that depends only on
    what the call binds, by a `RuntimeCheck`. A reduction keeps its guard: repeating a
    point's update in the middle of its accumulation would count it twice; so does a
    constant factor of an axis not provably as long (a symbolic extent: every size
    stays valid), and a part whose parent's extent depends on enclosing loops."""
    asked = [r for r in stage.relations if isinstance(r, Split) and r.disable_predication
             and r.kind == "data"]
    if not asked or stage.tensorized is not None or getattr(stage.op, "reduce_axis", ()) or \
            any(s.attach.kind == "at" and s.attach.stage is stage and
                getattr(s.op, "reduce_axis", ()) for s in stage.schedule.stages):
        return frozenset(), ()
    shifted, checks = set(), []
    for r in asked:
        extent = ranges[r.parent].extent
        part = split_extents(r, ranges[r.parent])[1]
        fits = ops.compare("ge", extent, part)
        if prove(fits, intervals):
            shifted.add(r)
        elif r.symbolic is not None and not free_vars(fits) & intervals.keys():
            shifted.add(r)
            checks.append(RuntimeCheck(simplify(fits), (
                f"split on stage {stage.name}, axis {r.parent.name} with disable_predication: "
                f"the part of {part} iterations must fit in the axis, of extent {extent}")))
    return frozenset(shifted), tuple(checks)


def _symbolic_sizes_checked(stage, intervals: dict) -> tuple[RuntimeCheck, ...]:
    """A `RuntimeCheck` that each symbolic split factor (or nparts) of `stage` is at least
    1, where that is not provable (`4 * vscale()` is; a scalar parameter is not)."""
    checks = []
    for r in stage.relations:
        size = r.symbolic if isinstance(r, Split) else None
        if size is not None and not prove(ops.compare("ge", size, 1), intervals):
            what = "factor" if r.factor is not None else "nparts"
            checks.append(RuntimeCheck(ops.compare("ge", size, 1), (
                f"split on stage {stage.name}, axis {r.parent.name}: the {what} {size} "
                "must be at least 1")))
    return tuple(checks)


def _data_axes_placed(op, ranges: dict, values: dict) -> tuple[dict, dict]:
    """Ranges and values of the reduction axes with each data axis variable in their
    bounds (`reduce_axis((0, i + 1))`) replaced by that axis's value over the leaf
    loops: the data axis may be split, fused or offset into a region."""
    points = {iv.var: values[iv] for iv in op.axis}
    reducing = [iv for iv in ranges if iv.kind == "reduce"]
    used = set().union(*(free_vars(ranges[iv].min) | free_vars(ranges[iv].extent)
                         for iv in reducing))
    if not used & points.keys():
        return ranges, values
    ranges = {iv: Range(substitute(r.min, points), substitute(r.extent, points))
              if iv.kind == "reduce" else r for iv, r in ranges.items()}
    return ranges, {iv: substitute(v, points) if iv.kind == "reduce" else v
                    for iv, v in values.items()}


#: The most lanes a vectorized loop and copies an unrolled loop may have: beyond them
#: LLVM works for minutes or aborts the process (65536 lanes overflow its node operands).
LOOP_LIMITS = {"vectorize": 1024, "unroll": 1024}


def _check_constant_extents(plan: StagePlan):
    for leaf, what in plan.stage.annotations.items():
        if what in LOOP_LIMITS:
            extent = plan.ranges[leaf].extent
            if not isinstance(extent, Const):
                raise LoweringError(f"{what} on stage {plan.stage.name}, axis {leaf.name}: the "
                                    f"loop extent must be a constant, got {extent}; split the "
                                    "axis by a constant factor and annotate the inner part")
            if extent.value > LOOP_LIMITS[what]:
                raise LoweringError(f"{what} on stage {plan.stage.name}, axis {leaf.name}: the "
                                    f"loop has {extent.value} iterations, more than the "
                                    f"{LOOP_LIMITS[what]} tex allows; split the axis and "
                                    f"{what} an inner part of at most {LOOP_LIMITS[what]}")


def drop_unneeded_guards(plans, buffers: dict) -> tuple[StagePlan, ...]:
    """`plans` with a stage's data guards removed when, without them, every access stays
    in its buffer.

    A data guard keeps a stage inside its domain (a split that does not
    divide, a tile at an edge). Computing a few points outside it is harmless
    when all of the stage's loads and stores, dimension by dimension, still
    land inside their buffers (a zero-padded producer, a local tile) and the
    body cannot trap (no integer division by a computed value); the extra
    values are never read. Dropping the guard keeps tiles free of branches,
    so a register tile stays in registers. Guards on reduction axes are kept:
    they decide which terms the reduction adds.

    `buffers` maps each tensor to its `TensorBuffer` as lowering allocates them.
    """
    intervals = loop_intervals(plans)
    return tuple(_without_data_guards(plan) if _data_guards_unneeded(plan, buffers, intervals)
                 else plan for plan in plans)


def _data_guards_unneeded(plan: StagePlan, buffers: dict, intervals: dict) -> bool:
    if not any(g.on_data for g in plan.guards) or _may_trap(plan.body):
        return False
    op, roots = plan.op, plan.root_values
    accesses = [(t, [plan.values[iv] for iv in op.axis]) for t in op.outputs]
    for b in plan.body:
        for read in collect(b, lambda n: isinstance(n, TensorRead)):
            accesses.append((read.tensor, [substitute(i, roots) for i in read.indices]))
    return all(_inside(index, buffers.get(t), intervals) for t, index in accesses)


def _without_data_guards(plan: StagePlan) -> StagePlan:
    return replace(plan, guards=tuple(g for g in plan.guards if not g.on_data))


def _inside(index, entry, intervals) -> bool:
    """Whether every index stays inside its buffer dimension (False if no buffer is known;
    the lanes of a vector dtype always are)."""
    if entry is None:  # a tensor missing from args: lowering reports it later
        return False
    for position, extent in zip(entry.index(index)[:len(index)], entry.buffer.shape):
        if not (prove(ops.compare("ge", position, 0), intervals)
                and prove(ops.compare("lt", position, extent), intervals)):
            return False
    return True


def _may_trap(body) -> bool:
    """Whether evaluating `body` at arbitrary points could fault (integer division by a value)."""
    return any(collect(b, lambda n: isinstance(n, Binary) and n.op in ("floordiv", "floormod")
                       and n.dtype.is_int and not isinstance(n.b, Const)) for b in body)
