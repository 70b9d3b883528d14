"""Reductions combined across GPU threads and blocks.

A reduction with a reduction loop bound to a GPU thread axis accumulates,
in each thread, its terms in a local one-element buffer; each loop bound to
a thread axis then combines the threads' values along it (`ThreadReduce`, by
the strategy asked for or the warp shuffle where it applies; the innermost
first) and the first thread writes the result; a loop bound to blockIdx adds each block's result
to the output atomically, after a nest that fills the output with the
reducer's identity (`atomic_init_nest`).

In shared or global memory, the threads of a block that run the same
statements of a stage would apply a reduction's updates once each:
`one_of_the_copies` picks one of them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from tex import ops
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Expr, Var
from tex.ir import (Allocate, AtomicUpdate, Buffer, For, IfThenElse, Load, Store, ThreadIndex,
                    ThreadReduce, seq, warp_sized)
from tex.lower.bound import StagePlan, storage_scope
from tex.lower.nest import (StageLoops, point_body, stage_outputs, store_predicate,
                            update_statement)
from tex.schedule.stage import Stage
from tex.tensor import IterVar

_ZERO = Const(INDEX, 0)

#: The atomic update that combines partial results of each reducer.
_ATOMIC_OPS = {"sum": "add", "min": "min", "max": "max"}

#: Threads per block of the kernel that fills an atomically reduced output.
_FILL_THREADS = 256


@dataclass(frozen=True, eq=False)
class Binding:
    """A loop `leaf` of `stage` bound to the GPU thread axis `tag`, with its extent."""

    stage: Stage
    leaf: IterVar
    tag: str
    extent: Expr


def reduced_across_threads(stage, first: int | None) -> bool:
    """Whether a reduction loop of `stage` (from leaf position `first`) is bound to a GPU
    thread axis."""
    return first is not None and any(v in stage.bindings and v.kind == "reduce"
                                     for v in stage.leaf_iter_vars[first:])


def gpu_reduction_nest(loops: StageLoops, first: int):
    """The nest of a reduction whose reduction loops (from leaf position `first`) include
    one bound to a GPU thread axis (see the module doc)."""
    plan = loops.plan
    stage = plan.stage
    rest = stage.leaf_iter_vars[first:]
    thread_leaves, block_leaf = _bound_reduction_leaves(stage, rest)
    outputs = stage_outputs(plan, loops.lowering)
    combiner = plan.op.body[0].combiner
    accs = [_one_element(e.buffer, "_acc") for e in outputs.buffers]
    zero = (_ZERO,)
    update = update_statement(point_body(plan, loops.lowering)[0], [(a, zero) for a in accs])
    init = seq(*(Store(a, ident, zero) for a, ident in zip(accs, combiner.identities)))
    results, buffers, combine = [Load(a, zero) for a in accs], list(accs), []
    for n, leaf in enumerate(reversed(thread_leaves)):  # innermost thread axis first
        suffix = "_red" if n == 0 else f"_red{n}"
        combined = [_one_element(e.buffer, suffix) for e in outputs.buffers]
        buffers.extend(combined)
        combine.append(_thread_reduce(plan, leaf, results, combined))
        results = [Load(b, zero) for b in combined]
    write = _final_write(loops, outputs, results, (thread_leaves, block_leaf))
    write = loops.guards_moved_below(first, write)
    for cond in (one_of_the_copies(plan, loops.lowering), store_predicate(plan)):
        if cond is not None:
            write = IfThenElse(cond, write)

    def around_accumulation(update_loops):
        stmt = seq(init, update_loops, *combine, write)
        for b in reversed(buffers):
            stmt = Allocate(b, stmt)
        return stmt
    return loops.split_at(stage.leaf_iter_vars, first, update, around_accumulation)


def _one_element(like: Buffer, suffix: str) -> Buffer:
    return Buffer(f"{like.name}{suffix}", like.dtype, (Const(INDEX, 1),), "local")


def _thread_reduce(plan: StagePlan, leaf, values: list, results: list) -> ThreadReduce:
    stage = plan.stage
    extent = plan.ranges[leaf].extent
    strategy = _thread_strategy(stage, leaf, extent)
    return ThreadReduce(strategy, plan.op.body[0].combiner, tuple(values), tuple(results),
                        stage.bindings[leaf], int(extent.value))


def _final_write(loops: StageLoops, outputs, results: list, bound_leaves: tuple):
    """The statement writing the combined `results` to the outputs: atomically when a
    reduction loop is bound to blockIdx; by one thread of the group when combined
    across threads into shared or global memory."""
    stage = loops.plan.stage
    thread_leaves, block_leaf = bound_leaves
    targets = outputs.targets()
    if block_leaf is not None:
        op = _ATOMIC_OPS.get(loops.plan.op.body[0].combiner.name)
        if op is None or len(targets) > 1:
            raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}, axis "
                                f"{block_leaf.name}: atomics combine sum, min and max, not "
                                f"{loops.plan.op.body[0].combiner.name}; bind the axis to "
                                "threadIdx instead")
        (buffer, index), = targets
        write = AtomicUpdate(buffer, op, results[0], index)
    else:
        write = seq(*(Store(b, r, i) for (b, i), r in zip(targets, results)))
    if thread_leaves and storage_scope(stage) != "local":
        # every thread of the group holds the result: into shared or global memory one
        # writes it, into a local buffer each writes its own copy
        first_thread = [ops.compare("eq", ThreadIndex(stage.bindings[v]), 0)
                        for v in thread_leaves]
        write = IfThenElse(functools.reduce(lambda a, b: ops.logical("and", a, b),
                                            first_thread), write)
    return write


def _bound_reduction_leaves(stage, rest):
    """The reduction loops bound to thread axes (outermost first) and the one bound to
    blockIdx (None when absent), checked."""
    for v in rest:
        if v.kind == "data":
            raise LoweringError(f"stage {stage.name}: with reduction loop(s) bound to GPU "
                                f"threads, data loop {v.name} must come before the reduction "
                                "loops; reorder it outside them")
    thread_leaves, block_leaf = [], None
    for v in rest:
        tag, strategy = stage.bindings.get(v), stage.reduce_strategies.get(v)
        if tag is None:
            if strategy is not None:
                raise LoweringError(f"reduce_strategy on stage {stage.name}, axis {v.name}: "
                                    "the axis is not bound to a thread axis")
        elif tag.startswith("blockIdx"):
            _check_block_leaf(stage, v, block_leaf)
            block_leaf = v
        else:
            _check_thread_leaf(stage, v)
            thread_leaves.append(v)
    return thread_leaves, block_leaf


def _check_block_leaf(stage, leaf, earlier):
    tag, strategy = stage.bindings[leaf], stage.reduce_strategies.get(leaf)
    if strategy != "atomic":
        raise LoweringError(f"stage {stage.name}: reduction axis {leaf.name} is bound to "
                            f"{tag}, so blocks must combine their results; say "
                            f"s[{stage.name}].reduce_strategy({leaf.name}, 'atomic')")
    if earlier is not None or stage.attach.kind != "root":
        raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}: needs a "
                            "stage computed at the root with one block-bound "
                            "reduction axis")


def _check_thread_leaf(stage, leaf):
    tag = stage.bindings[leaf]
    if stage.reduce_strategies.get(leaf) == "atomic":
        raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}, axis "
                            f"{leaf.name}: atomics combine blocks; bind the axis to "
                            f"blockIdx, not {tag}")


def _thread_strategy(stage, leaf, extent) -> str:
    """The cross-thread strategy of `leaf`: the one asked for, else "warp" where it applies."""
    if not isinstance(extent, Const):
        raise LoweringError(f"stage {stage.name}: reduction axis {leaf.name} is bound to "
                            f"{stage.bindings[leaf]} with extent {extent}; a cross-thread "
                            "reduction needs a constant number of threads (split by a constant)")
    chosen = stage.reduce_strategies.get(leaf)
    if chosen is not None:
        return chosen
    if warp_sized(extent.value) and stage.bindings[leaf] == "threadIdx.x":
        return "warp"
    return "shared"


def atomic_init_nest(plan: StagePlan, buffers: dict):
    """For a reduction combined across blocks with atomics: a nest, bound to the GPU,
    that fills its whole output with the reducer's identity (None otherwise)."""
    stage = plan.stage
    if not any(stage.reduce_strategies.get(v) == "atomic" for v in stage.leaf_iter_vars):
        return None
    out = buffers[plan.op.output(0)].buffer
    identity = plan.op.body[0].combiner.identities[0]
    total = Const(INDEX, 1)
    for extent in out.shape:
        total = ops.binary("mul", total, extent)
    threads = _FILL_THREADS
    block, thread = Var(f"{out.name}_init_block", INDEX), Var(f"{out.name}_init_thread", INDEX)
    flat = ops.binary("add", ops.binary("mul", block, threads), thread)
    index, rest = [], flat
    for extent in reversed(out.shape):
        index.insert(0, ops.binary("floormod", rest, extent))
        rest = ops.binary("floordiv", rest, extent)
    fill = IfThenElse(ops.compare("lt", flat, total), Store(out, identity, tuple(index)))
    blocks = ops.binary("floordiv", ops.binary("add", total, threads - 1), threads)
    return For(block, _ZERO, blocks, "bound",
               For(thread, _ZERO, Const(INDEX, threads), "bound", fill, thread_tag="threadIdx.x"),
               thread_tag="blockIdx.x")


def one_of_the_copies(plan: StagePlan, lowering):
    """In a GPU kernel, the condition that picks one thread among those that run the same
    statements of `plan`'s stage, or None when no two threads do.

    Every thread of the block runs a stage's statements, for the thread indices its own
    loops are bound to; the block's other thread axes (bound by other stages of the
    kernel) repeat them. Into a local buffer each thread computes its own copy, but into
    shared or global memory the copies meet: repeated stores of one value are harmless,
    while a reduction's updates would be applied once per copy, at once, so only the
    thread at index 0 of those axes runs them."""
    stage = plan.stage
    if storage_scope(stage) == "local":
        return None
    axes = {b.tag for b in kernel_bindings(stage, lowering.plans)
            if b.tag.startswith("threadIdx")
            and not (isinstance(b.extent, Const) and b.extent.value == 1)}
    axes -= {stage.bindings[v] for v in stage.leaf_iter_vars if v in stage.bindings}
    if not axes:
        return None
    conditions = [ops.compare("eq", ThreadIndex(tag), 0) for tag in sorted(axes)]
    return functools.reduce(lambda a, b: ops.logical("and", a, b), conditions)


def kernel_bindings(stage, plans) -> list:
    """A `Binding` for every bound loop of the kernel that runs `stage`: the loops of its
    root stage and of every stage computed inside it."""
    def root(st):
        while st.attach.kind == "at":
            st = st.attach.stage
        return st
    kernel = root(stage)
    return [Binding(p.stage, leaf, p.stage.bindings[leaf], p.ranges[leaf].extent)
            for p in plans if root(p.stage) is kernel
            for leaf in p.stage.leaf_iter_vars if leaf in p.stage.bindings]
