"""Scans (`tex.scan`): the inits, then the steps in order, all in the scan's output.

A scan's output is one buffer. Its inits are root stages that run before the
scan (schedule order puts them there) and write rows [0, k); each update is
computed inside the scan axis and writes row t; every read of a state reads
the buffer too. The scan's own nest is

    for t in range(k, m):                 # the scan axis: serial, outermost
        <the stages of step t computed at t, the update's last>
        for <spatial loops>: <the stages computed at them>   (empty loops dropped)

`check_scan_placement` refuses a scan whose stages are placed where the
steps would not run in order; `check_scans`, after bound inference, one
whose steps read rows that are not written yet (at step t, every row of a
state read lies in [0, t)), and guards the init's rows when the output may
have fewer. `share_scan_buffers` gives the inits, updates and states the
scan's buffer; `scan_nest` builds the nest above.

On a GPU the scan is one kernel (the init another, before it): a barrier
ends each step, so that the block's threads see the row the others wrote,
unless every thread reads back only the points it computed itself (a
column-wise recurrence), which also lets blocks share the work. Stages of a
step that are not computed under a thread loop keep the scope they are
given ("shared" for a row that the block computes together).
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.arith import bound, prove, simplify
from tex.errors import LoweringError
from tex.expr import TensorRead, structurally_equal
from tex.ir import Barrier, For, IfThenElse, Seq, seq
from tex.lower.bound import Guard, StagePlan, loop_intervals
from tex.lower.buffers import TensorBuffer
from tex.lower.nest import StageLoops
from tex.lower.stages import runs_inside
from tex.scan_op import ScanOp
from tex.visitor import collect, substitute, transform


def check_scan_placement(stages, consumers: dict) -> None:
    """Each scan's inits at the root, its updates inside it and read by it alone, every
    stage that reads a state inside its scan axis. `stages` are the `InlinedStage`s
    that get nests, `consumers` maps each to the stages reading it."""
    for scan in (s for s in stages if isinstance(s.op, ScanOp)):
        _check_placement(scan, stages, consumers)


def check_scans(plans) -> tuple[StagePlan, ...]:
    """`plans` checked to read, at each step of a scan, rows of its states written
    before, with its inits' rows guarded where the output may have fewer."""
    intervals = loop_intervals(plans)
    guards = {}
    for scan in (p for p in plans if isinstance(p.op, ScanOp)):
        _check_rows_read(scan, plans, intervals)
        guards.update(_init_guards(scan, plans, intervals))
    return tuple(dataclasses.replace(p, guards=p.guards + (guards[p.stage],))
                 if p.stage in guards else p for p in plans)


def _check_placement(scan, stages, consumers: dict):
    op, sch, lowered = scan.op, scan.stage.schedule, {s.stage for s in stages}
    for t in op.init:
        stage = sch.stage_of(t)
        if stage not in lowered or stage.attach.kind != "root":
            raise LoweringError(f"stage {stage.name} is an init of scan {op.name}, so it is "
                                "computed at the root, before the steps; it is computed "
                                f"{_where(stage)}")
    for t in op.update:
        stage = sch.stage_of(t)
        if stage not in lowered or stage.attach.stage is not scan.stage:
            raise LoweringError(f"stage {stage.name} is the update of scan {op.name}, so it is "
                                f"computed in each step (compute_at a loop of {op.name}); it is "
                                f"computed {_where(stage)}")
        for reader in consumers[stage]:
            if reader is not scan.stage:
                raise LoweringError(f"stage {reader.name} reads {stage.name}, the update of "
                                    f"scan {op.name}; read the scan's output instead")
    for plan, read in _state_reads(op, stages):
        if not runs_inside(plan.stage, scan.stage, 0):
            raise LoweringError(f"stage {plan.stage.name} reads {read.tensor.name}, a state of "
                                f"scan {op.name}, so it is computed in each step (compute_at "
                                f"the scan axis of {op.name}); it is computed "
                                f"{_where(plan.stage)}")


def _where(stage) -> str:
    attach = stage.attach
    if attach.kind == "at":
        return f"at loop {attach.axis.name} of stage {attach.stage.name}"
    return "inline" if attach.kind == "inline" else "at the root"


def _state_reads(op: ScanOp, plans) -> list:
    """(plan, read) for every read of one of `op`'s states in a plan's body (or an
    `InlinedStage`'s)."""
    states = set(op.state_placeholder)
    return [(plan, read) for plan in plans for b in plan.body
            for read in collect(b, lambda n: isinstance(n, TensorRead) and n.tensor in states)]


def _check_rows_read(scan: StagePlan, plans, intervals: dict):
    """At step t every stage reads the states at rows in [0, t), whatever its loops."""
    op = scan.op
    step = scan.stage.leaf_iter_vars[0].var
    t = scan.values[op.scan_axis]
    relaxed = {v: i for v, i in intervals.items() if v is not step}
    for plan, read in _state_reads(op, plans):
        rows = bound(substitute(read.indices[0], plan.root_values), relaxed)
        if rows.lo is None or rows.hi is None or \
                not prove(ops.compare("ge", rows.lo, 0), intervals) or \
                not prove(ops.compare("lt", rows.hi, t), intervals):
            shown = {step: ops.binary("sub", op.scan_axis.var, op.scan_axis.dom.min)}
            lo, hi = (simplify(substitute(e, shown)) if e is not None else "?"
                      for e in (rows.lo, rows.hi))
            raise LoweringError(f"stage {plan.stage.name} reads {read.tensor.name}, a state of "
                                f"scan {op.name}, at rows [{lo}, {hi}] in step "
                                f"{op.scan_axis.name}; a step reads only rows that init or "
                                f"the steps before wrote, [0, {op.scan_axis.name})")


def _init_guards(scan: StagePlan, plans, intervals: dict) -> dict:
    """Stage -> guard for each init whose rows may outnumber the scan's output's."""
    by_stage = {p.stage: p for p in plans}
    guards = {}
    for t in scan.op.init:
        plan = by_stage[scan.stage.schedule.stage_of(t)]
        row = plan.values[plan.op.axis[0]]
        inside = ops.compare("lt", row, scan.op.shape[0])
        if not prove(inside, intervals):
            guards[plan.stage] = Guard(True, simplify(inside, intervals))
    return guards


def share_scan_buffers(plans, buffers: dict, params: dict) -> dict:
    """`buffers` (tensor -> TensorBuffer) with each scan's inits, updates and states
    in the scan's output buffer; `params` maps the argument tensors to parameters."""
    buffers = dict(buffers)
    for scan in (p for p in plans if isinstance(p.op, ScanOp)):
        op, sch = scan.op, scan.stage.schedule
        for k, output in enumerate(op.outputs):
            shared = TensorBuffer(buffers[output].buffer, None, borrowed=True,
                                  lanes=output.dtype.lanes)
            for t in (op.init[k], op.update[k], op.state_placeholder[k]):
                if t in params:
                    raise LoweringError(f"tensor {t.name} is part of scan {op.name}, whose "
                                        "output holds it; leave it out of args and pass "
                                        f"{output.name}")
                stage = sch.stage_of(t)
                current = () if stage is None else (stage.op.output(t.value_index),)
                for x in (t, *current):
                    buffers[x] = shared
    return buffers


def scan_nest(loops: StageLoops):
    """The nest of a scan's stage (see the module docstring)."""
    plan = loops.plan
    end_of_step = _barrier_between_steps(plan, loops.lowering.plans)
    nest = loops.split_at(plan.stage.leaf_iter_vars, 1, seq(),
                          lambda spatial: seq(_without_empty_loops(spatial), end_of_step))
    return _from_first_step(nest, plan.ranges[plan.op.scan_axis].min)


def _without_empty_loops(stmt):
    """`stmt` without the loops and branches that do nothing."""
    def drop(node):
        if isinstance(node, For) and _empty(node.body) or \
                isinstance(node, IfThenElse) and _empty(node.then_body) and \
                (node.else_body is None or _empty(node.else_body)):
            return seq()
        return None
    return transform(stmt, drop)


def _empty(stmt) -> bool:
    return isinstance(stmt, Seq) and not stmt.stmts


def _from_first_step(nest, start):
    """The scan's loop counting from its first step, `for t in range(k, m)`, rather than
    from 0 (lowering's leaf loops all start at 0, the value of t being `t + k`)."""
    if not isinstance(nest, For):
        return nest
    var = nest.var
    body = substitute(nest.body, {var: ops.binary("sub", var, start)})
    return dataclasses.replace(nest, min=start, body=body)


def _barrier_between_steps(scan: StagePlan, plans):
    """A barrier to end each step of a scan whose steps run on GPU threads that read
    what other threads wrote (None where none is needed); such a scan is one block."""
    inside = [p for p in plans if runs_inside(p.stage, scan.stage, 0)]
    tags = {tag for p in inside for tag in p.stage.bindings.values()}
    if not tags - {"vthread"} or _reads_own_points(scan, inside):
        return None
    blocks = sorted(t for t in tags if t.startswith("blockIdx"))
    if blocks:
        raise LoweringError(f"scan {scan.op.name}: its steps are bound to {', '.join(blocks)}, "
                            "but each step reads what other threads wrote in the steps before, "
                            "and blocks cannot wait for each other; bind the loops of the steps "
                            "to threadIdx only (one block)")
    return Barrier()


def _reads_own_points(scan: StagePlan, inside) -> bool:
    """Whether every read of a state in the steps is by an update's stage, at the
    point of that stage's spatial axes: each thread then reads what it wrote."""
    op, sch = scan.op, scan.stage.schedule
    writer = {s: sch.stage_of(u) for s, u in zip(op.state_placeholder, op.update)}
    for plan, read in _state_reads(op, inside):
        own = [iv.var for iv in plan.op.axis[1:]]
        if writer[read.tensor] is not plan.stage or len(own) != len(read.indices) - 1 or \
                not all(structurally_equal(i, v) for i, v in zip(read.indices[1:], own)):
            return False
    return True
