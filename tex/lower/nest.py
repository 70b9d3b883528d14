"""The loop nest of one stage.

A stage's nest is its leaf loops in order around the statements that
compute one point: a store for each output, or for a reduction an init
nest (the identity stored, over the data loops among the reduction loops)
and an update (`out = combine(out, source)`) inside the reduction loops.
Each guard goes just inside the innermost loop it depends on. A stage
computed at a loop is placed at the top of that loop's body, with its
buffers allocated around the rest of it; loops asked to prefetch or to
double-buffer are marked for the passes that do it (`tex.lower.loop_marks`).
Where a data axis is fused with a reduction axis, the identity is stored
under `first_visit` next to the update instead of in an init nest. A data
loop bound to a GPU thread axis may lie inside the reduction loops: its copy
in the init nest is bound to the same axis, so each thread stores the
identity of the points it then updates (as TE, which starts those threads
inside the serial reduction loop).
A reduction with a reduction loop bound to a GPU thread axis is built by
`tex.lower.gpu_reduction`, a tensorized tile by `tex.lower.tile`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

from tex import ops
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Expr, Reduce, Var
from tex.ir import (IMPORT_PRAGMAS, Allocate, For, IfThenElse, LetStmt, Load, Stmt, Store,
                    ThreadIndex, seq)
from tex.lower.bound import StagePlan
from tex.lower.buffers import TensorBuffer, to_loads
from tex.lower.loop_marks import check_double_buffer, mark_double_buffer, mark_pipeline, \
    mark_prefetches
from tex.schedule.relations import Fuse
from tex.tensor import Tensor
from tex.visitor import collect, free_vars, substitute

_ZERO = Const(INDEX, 0)
_LOOP_KIND = {None: "serial", "parallel": "parallel", "vectorize": "vectorized",
              "unroll": "unrolled"}


@dataclass(frozen=True, eq=False)
class Lowering:
    """What nest building reads: the plan of every stage that gets a nest, in schedule
    order, and the buffer of every tensor."""

    plans: tuple[StagePlan, ...]
    buffers: Mapping[Tensor, TensorBuffer]

    def attached_at(self, stage) -> dict:
        """Leaf loop of `stage` -> the plans of the stages computed at it."""
        attached = {}
        for p in self.plans:
            if p.stage.attach.kind == "at" and p.stage.attach.stage is stage:
                attached.setdefault(p.stage.attach.axis, []).append(p)
        return attached


@dataclass(frozen=True, eq=False)
class StageOutputs:
    """Where a stage's statements write: the buffer of each output, and the point of
    the stage's domain its leaf loops are at."""

    buffers: tuple[TensorBuffer, ...]
    point: tuple[Expr, ...]

    def index(self, entry: TensorBuffer) -> tuple[Expr, ...]:
        """The index of the point in the buffer of `entry`."""
        return entry.index(self.point)

    def targets(self) -> list[tuple]:
        """(buffer, index) of the point in each output."""
        return [(e.buffer, self.index(e)) for e in self.buffers]


class StageLoops:
    """Builds loops over some of one stage's leaf axes around a body.

    `depth` maps each guard of the stage to the position, among the stage's
    leaves, of the loop it goes just inside (-1: above all of them). `nests`
    holds the finished nests of the stages computed inside this one.
    """

    def __init__(self, plan: StagePlan, lowering: Lowering, nests: Mapping):
        self.plan, self.lowering, self.nests = plan, lowering, nests
        self.attached = lowering.attached_at(plan.stage)
        self.depth = _guard_depths(plan, self.attached)

    def around(self, leaves, body, levels: dict, *, rename=None, with_children=True):
        """Loops over `leaves` (outermost first) around `body`; `levels` maps each
        guard to the index in `leaves` of the loop it goes just inside (-1: above all).
        `rename` gives fresh loop variables (for the init nest of a reduction), which
        has no stages computed in it (`with_children` False)."""
        rename = rename or {}
        stmt = substitute(body, rename)
        for pos in range(len(leaves) - 1, -2, -1):
            here = [c for c, level in levels.items() if level == pos]
            if here:
                stmt = IfThenElse(substitute(ops.all_(*here), rename), stmt)
            if pos >= 0:
                leaf = leaves[pos]
                stmt = self._loop(leaf, rename.get(leaf.var, leaf.var), stmt, with_children)
        return stmt

    def split_at(self, leaves, first: int, inner_body, wrap):
        """Loops over `leaves[first:]` around `inner_body`; `wrap(inner_loops)` adds what
        runs around them (an init nest before, a store after); loops over
        `leaves[:first]` around that. Each guard goes at the loop it depends on, in
        whichever part that loop is."""
        inner = {c: d - first for c, d in self.depth.items() if d >= first}
        outer = {c: d for c, d in self.depth.items() if d < first}
        return self.around(leaves[:first], wrap(self.around(leaves[first:], inner_body, inner)),
                           outer)

    def _loop(self, leaf, var: Var, body, with_children: bool) -> For:
        """Loop `leaf` (variable `var`) around `body`, with the stages computed at it."""
        stage = self.plan.stage
        children = self.attached.get(leaf, []) if with_children else []
        for child in reversed([c for c in children if not _fetched_ahead(c.stage)]):
            body = seq(self.nests[child.stage], body)
            for t in child.op.outputs:
                if self.lowering.buffers[t].allocated_here:
                    body = Allocate(self.lowering.buffers[t].buffer, body)
        if with_children and leaf in stage.prefetches:
            body = mark_prefetches(self.plan, leaf, body, self.lowering.buffers)
        tag = stage.bindings.get(leaf)
        kind = "bound" if tag else _LOOP_KIND[stage.annotations.get(leaf)]
        fills = [c for c in children if c.stage.double_buffered]
        if fills:
            buffers = check_double_buffer(kind, fills, self.lowering.buffers)
            body = mark_double_buffer(buffers, [self.nests[c.stage] for c in fills], body)
        pipelined = [c for c in children if c.stage.pipeline_stages]
        if fills and pipelined:
            raise LoweringError(f"stages {fills[0].stage.name} (double_buffer) and "
                                f"{pipelined[0].stage.name} (pipeline) are computed at loop "
                                f"{leaf.name} of stage {stage.name}; use one of the two there")
        if pipelined:
            body = mark_pipeline(kind, pipelined, self.nests, self.lowering.buffers, body)
        pragmas = tuple(p for p in stage.pragmas.get(leaf, ()) if p[0] not in IMPORT_PRAGMAS)
        return For(var, _ZERO, self.plan.ranges[leaf].extent, kind, body, pragmas, tag)

    def guards_moved_below(self, first: int, stmt):
        """`stmt`, which runs after the reduction loops from position `first`, under the
        data guards of the loops that went down into them (below stages computed
        there, which every thread must reach)."""
        moved = [g.cond for g in self.plan.guards if g.on_data and self.depth[g.cond] >= first]
        if not moved:
            return stmt
        return IfThenElse(functools.reduce(lambda a, b: ops.logical("and", a, b), moved), stmt)


def _fetched_ahead(stage) -> bool:
    """Whether a stage computed at a loop is fetched by that loop's double buffer or
    pipeline mark rather than at the top of its body."""
    return stage.double_buffered or bool(stage.pipeline_stages)


def _guard_depths(plan: StagePlan, attached: dict) -> dict:
    """Guard condition -> position of the innermost leaf it depends on (-1: none). In a
    GPU kernel every thread must reach the stages computed inside the nest (they may
    be fetched cooperatively), so guards go below the deepest of them."""
    leaves = plan.stage.leaf_iter_vars
    depth = {g.cond: leaf_depth(g.cond, leaves) for g in plan.guards}
    if plan.stage.bindings and attached:
        deepest = max(leaves.index(axis) for axis in attached)
        depth = {cond: max(d, deepest) for cond, d in depth.items()}
    return depth


def leaf_depth(cond, leaves) -> int:
    """Position in `leaves` of the innermost leaf `cond` depends on, or -1 for none."""
    used = free_vars(cond)
    return max((i for i, v in enumerate(leaves) if v.var in used), default=-1)


def stage_outputs(plan: StagePlan, lowering: Lowering) -> StageOutputs:
    op = plan.op
    return StageOutputs(tuple(lowering.buffers[t] for t in op.outputs),
                        tuple(plan.values[iv] for iv in op.axis))


def point_body(plan: StagePlan, lowering: Lowering) -> tuple:
    """The stage's body at the point of its leaf loops, tensor reads made loads."""
    roots = plan.root_values
    return tuple(to_loads(substitute(b, roots), lowering.buffers) for b in plan.body)


def reduction_start(stage) -> int | None:
    """Position of the first reduction loop among `stage`'s leaves (None: no reduction)."""
    if not stage.op.reduce_axis:
        return None
    return next(i for i, v in enumerate(stage.leaf_iter_vars) if v.kind == "reduce")


def stage_nest(loops: StageLoops, one_thread=None):
    """The nest of a stage that is neither tensorized nor reduced across GPU threads.
    `one_thread`, when given, is the condition under which a reduction's statements
    run (see `gpu_reduction.one_of_the_copies`)."""
    plan, lowering = loops.plan, loops.lowering
    body, outputs = point_body(plan, lowering), stage_outputs(plan, lowering)
    leaves = plan.stage.leaf_iter_vars
    first = reduction_start(plan.stage)
    predicate = store_predicate(plan)
    if first is None:
        provide = seq(*(Store(b, v, i) for (b, i), v in zip(outputs.targets(), body)))
        provide = provide if predicate is None else IfThenElse(predicate, provide)
        return loops.around(leaves, provide, dict(loops.depth))
    identities = plan.op.body[0].combiner.identities
    init = seq(*(Store(b, ident, i) for (b, i), ident in zip(outputs.targets(), identities)))
    update = update_statement(body[0], outputs.targets())
    for cond in (one_thread, predicate):
        if cond is not None:
            init, update = IfThenElse(cond, init), IfThenElse(cond, update)
    if any(isinstance(r, Fuse) and r.mixed for r in plan.stage.relations):
        return loops.around(leaves, seq(IfThenElse(first_visit(plan), init), update),
                            dict(loops.depth))
    return init_and_update(loops, leaves, first, (init, update))


def first_visit(plan: StagePlan) -> Expr:
    """True at the first iteration of the leaf loops that reaches each output point: where
    every reduction axis is at its start. The loops run in order, so among the iterations
    sharing a point (the same data axes) that one comes first. Used where a data axis is
    fused with a reduction axis, so no loop runs over the data points alone."""
    roots = plan.root_values
    return ops.all_(*(ops.compare("eq", roots[iv.var], substitute(iv.dom.min, roots))
                      for iv in plan.op.reduce_axis))


def store_predicate(plan: StagePlan) -> Expr | None:
    """The condition of `Stage.set_store_predicate` over the stage's leaf loops (None when
    not set), checked: each thread index it reads is one some loop of the schedule is
    bound to, and it reads no reduction axis (the initial value is stored outside them)."""
    cond, stage = plan.stage.store_predicate, plan.stage
    if cond is None:
        return None
    bound = {tag for st in stage.schedule.stages for tag in st.bindings.values()}
    for thread in collect(cond, lambda n: isinstance(n, ThreadIndex)):
        if thread.tag not in bound:
            raise LoweringError(f"stage {stage.name}: the store predicate reads "
                                f"{thread.tag}, but no loop of the schedule is bound to it")
    reduce_vars = {v.var for v in (*plan.op.reduce_axis, *stage.leaf_iter_vars)
                   if v.kind == "reduce"}
    for var in free_vars(cond) & reduce_vars:
        raise LoweringError(f"stage {stage.name}: the store predicate reads reduction axis "
                            f"{var.name}; it may read data axes, thread indices and sizes")
    return substitute(cond, plan.root_values)


def init_and_update(loops: StageLoops, leaves, first: int, statements: tuple):
    """Loops over `leaves` (the reduction loops from position `first`) around `update`,
    with `init` run first for each point of the data loops among them (under fresh
    variables); `statements` is (init, update)."""
    init, update = statements
    init_leaves = [v for v in leaves[first:] if v.kind == "data"]
    fresh = {v.var: Var(v.name + "_init", INDEX) for v in init_leaves}
    init_levels = {g.cond: leaf_depth(g.cond, init_leaves) for g in loops.plan.guards
                   if g.on_data and loops.depth[g.cond] >= first}
    init_nest = loops.around(init_leaves, init, init_levels, rename=fresh, with_children=False)
    return loops.split_at(leaves, first, update, lambda inner: seq(init_nest, inner))


def update_statement(reduce: Reduce, targets) -> Stmt:
    """`out = combine(out, source)` for each (buffer, index) of `targets`, one per
    output of the reduction `reduce`."""
    combiner = reduce.combiner
    current = [Load(b, i) for b, i in targets]
    mapping = dict(zip(combiner.lhs, current))
    mapping.update(zip(combiner.rhs, reduce.sources))
    results = [substitute(r, mapping) for r in combiner.results]
    if len(targets) == 1:
        (buffer, index), = targets
        stmt = Store(buffer, results[0], index)
    else:
        temps = [Var(f"{b.name}_new", b.dtype) for b, _ in targets]
        stmt = seq(*(Store(b, t, i) for (b, i), t in zip(targets, temps)))
        for t, r in reversed(list(zip(temps, results))):
            stmt = LetStmt(t, r, stmt)
    if not (isinstance(reduce.condition, Const) and reduce.condition.value):
        stmt = IfThenElse(reduce.condition, stmt)
    return stmt
