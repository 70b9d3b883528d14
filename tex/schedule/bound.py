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
needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tex import ops
from tex.arith import Interval, bound, const_bound, prove, simplify
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Binary, Const, Expr, TensorRead, Var
from tex.schedule.relations import pass_down, pass_up, split_guards
from tex.tensor import Range
from tex.visitor import collect, substitute, transform

_ZERO = Const(INDEX, 0)


@dataclass(eq=False)
class StagePlan:
    """What lowering knows about one stage that is not inlined."""

    stage: object
    body: tuple[Expr, ...]                 # the op's body with inlined stages substituted
    region: list = field(default_factory=list)      # per dim: Range actually computed
    alloc_shape: list = field(default_factory=list)  # per dim: buffer extent
    ranges: dict = field(default_factory=dict)      # IterVar -> Range, every axis
    values: dict = field(default_factory=dict)      # IterVar -> Expr over leaf vars
    guards: list = field(default_factory=list)      # (is_data_guard, condition)
    consumers: list = field(default_factory=list)   # StagePlans reading this stage

    @property
    def op(self):
        return self.stage.op

    @property
    def offsets(self) -> list[Expr]:
        """Subtract these from an index of the op's domain to index its buffer."""
        if self.stage.attach.kind == "at":
            return [r.min for r in self.region]
        return [_ZERO] * len(self.region)


def loop_intervals(plans) -> dict:
    """Interval of every leaf loop variable of the given plans (leaf loops start at 0)."""
    intervals = {}
    for plan in plans:
        for leaf in plan.stage.leaf_iter_vars:
            r = plan.ranges.get(leaf)
            if r is not None:
                intervals[leaf.var] = Interval.from_extent(_ZERO, r.extent)
    return intervals


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


def infer_region(plan: StagePlan, done: list) -> None:
    """Fill `plan.region` and `plan.alloc_shape` (consumers are already in `done`)."""
    op = plan.op
    shape = op.shape
    if plan.stage.attach.kind != "at":
        plan.region = [Range(_ZERO, e) for e in shape]
        plan.alloc_shape = list(shape)
        return
    intervals = loop_intervals(done)
    visible = visible_vars(plan.stage)
    relaxed = {v: i for v, i in intervals.items() if v not in visible}
    lows, highs = [[] for _ in shape], [[] for _ in shape]
    for consumer in plan.consumers:
        root_values = {iv.var: v for iv, v in consumer.values.items()
                       if iv in consumer.op.axis or iv in consumer.op.reduce_axis}
        for b in consumer.body:
            for read in collect(b, lambda n: isinstance(n, TensorRead)):
                if read.tensor.op is not op and read.tensor.op is not plan.stage.origin_op:
                    continue
                for d, index in enumerate(read.indices):
                    index, unknown = _loaded_values_unknown(substitute(index, root_values))
                    i = bound(index, {**relaxed, **unknown})
                    lows[d].append(i.lo)
                    highs[d].append(i.hi)
    region, alloc = [], []
    for d, extent in enumerate(shape):
        whole = Range(_ZERO, extent)
        if not lows[d] or any(x is None for x in lows[d] + highs[d]):
            region.append(whole)
            alloc.append(extent)
            continue
        lo, hi = _fold(ops.minimum, lows[d]), _fold(ops.maximum, highs[d])
        size = simplify(ops.binary("add", ops.binary("sub", hi, lo), 1), intervals)
        _, size_max = const_bound(size, intervals)
        if size_max is None:
            region.append(whole)
            alloc.append(extent)
            continue
        region.append(Range(simplify(lo, intervals), size))
        alloc.append(Const(INDEX, max(size_max, 1)))
    plan.region, plan.alloc_shape = region, alloc


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


def infer_loops(plan: StagePlan, done: list) -> None:
    """Fill the ranges of every axis, the value of every root axis and the guards."""
    stage, op = plan.stage, plan.op
    roots = {iv: r for iv, r in zip(op.axis, plan.region)}
    roots.update({iv: iv.dom for iv in op.reduce_axis})
    plan.ranges = pass_down(stage.relations, roots)
    plan.values = pass_up(stage.relations, stage.leaf_iter_vars, plan.ranges)
    plan.values = {iv: simplify(v) for iv, v in plan.values.items()}
    intervals = loop_intervals(done + [plan])
    guards = split_guards(stage.relations, plan.ranges, plan.values)
    plan.guards = [(axis.kind == "data", simplify(cond, intervals)) for axis, cond in guards]
    if stage.attach.kind == "at":
        for iv, extent in zip(op.axis, op.shape):
            value = plan.values[iv]
            for cond in (ops.compare("ge", value, 0), ops.compare("lt", value, extent)):
                if not prove(cond, intervals):
                    plan.guards.append((True, simplify(cond, intervals)))
    plan.guards = [(d, c) for d, c in plan.guards
                   if not (isinstance(c, Const) and c.value)]
    _check_constant_extents(plan)


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


def drop_unneeded_guards(plans: list, buffers: dict) -> None:
    """Remove a stage's data guards when, without them, every access stays in its buffer.

    A data guard keeps a stage inside its domain (a split that does not
    divide, a tile at an edge). Computing a few points outside it is harmless
    when all of the stage's loads and stores, dimension by dimension, still
    land inside their buffers (a zero-padded producer, a local tile) and the
    body cannot trap (no integer division by a computed value); the extra
    values are never read. Dropping the guard keeps tiles free of branches,
    so a register tile stays in registers. Guards on reduction axes are kept:
    they decide which terms the reduction adds.

    `buffers` maps each tensor to (Buffer, offsets) as lowering allocates them.
    """
    intervals = loop_intervals(plans)
    for plan in plans:
        if not any(data for data, _ in plan.guards) or _may_trap(plan.body):
            continue
        op = plan.op
        roots = {iv.var: plan.values[iv] for iv in op.axis + op.reduce_axis}
        accesses = [(t, [plan.values[iv] for iv in op.axis]) for t in op.outputs]
        for b in plan.body:
            for read in collect(b, lambda n: isinstance(n, TensorRead)):
                accesses.append((read.tensor, [substitute(i, roots) for i in read.indices]))
        if all(_inside(index, buffers.get(t), intervals) for t, index in accesses):
            plan.guards = [(data, cond) for data, cond in plan.guards if not data]


def _inside(index, entry, intervals) -> bool:
    """Whether every index stays inside its buffer dimension (False if no buffer is known)."""
    if entry is None:  # a tensor missing from args: lowering reports it later
        return False
    buffer, offsets = entry
    offsets = offsets or [_ZERO] * len(index)
    for i, offset, extent in zip(index, offsets, buffer.shape):
        position = ops.binary("sub", i, offset)
        if not (prove(ops.compare("ge", position, 0), intervals)
                and prove(ops.compare("lt", position, extent), intervals)):
            return False
    return True


def _may_trap(body) -> bool:
    """Whether evaluating `body` at arbitrary points could fault (integer division by a value)."""
    return any(collect(b, lambda n: isinstance(n, Binary) and n.op in ("floordiv", "floormod")
                       and n.dtype.is_int and not isinstance(n.b, Const)) for b in body)
