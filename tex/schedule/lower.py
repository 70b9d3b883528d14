"""From a schedule to a loop program.

`schedule_to_func(schedule, args)` does, in order:

1. substitutes inlined stages into their consumers;
2. checks each compute_at (the target reads the stage; every consumer lies
   inside the attach point);
3. infers bounds, consumers first (`tex.schedule.bound`);
4. builds each stage's loop nest (leaf axes in order, guards placed at the
   innermost loop they depend on, reductions split into an init nest and an
   update nest), with the stages attached at a loop inserted at its top,
   below the prefetches `Stage.prefetch` asked for there;
   the loops of a tensorized tile are replaced by its intrinsic's statements;
   a loop bound to a GPU thread axis becomes a "bound" loop, and a reduction
   with a reduction loop bound to one accumulates per thread and combines
   across threads (`ThreadReduce`) or blocks (`AtomicUpdate`, after a nest
   that fills the output with the identity);
5. wraps intermediate buffers in allocations and names the parameters.

The result is multi-dimensional loop IR; the passes in `tex.passes` take it
from there.
"""
from __future__ import annotations

import functools

from tex import ops
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, TensorRead, Var
from tex.arith import Interval, bound, const_bound, simplify
from tex.ir import (Allocate, AtomicUpdate, Buffer, For, IfThenElse, KernelInterface, LetStmt, Load,
                    LoweredFunc, Prefetch, Store, ThreadIndex, ThreadReduce, seq, warp_sized)
from tex.schedule.bound import (StagePlan, drop_unneeded_guards, enclosing_loops, infer_loops,
                                infer_region, storage_scope)
from tex.schedule.tensorize import lower_tile
from tex.tensor import PlaceholderOp, Tensor
from tex.visitor import Rewriter, collect, free_vars, substitute, transform, unique_definitions

_ZERO = Const(INDEX, 0)
_LOOP_KIND = {None: "serial", "parallel": "parallel", "vectorize": "vectorized",
              "unroll": "unrolled"}


def kernel_interface(sch, args, name: str = "main") -> KernelInterface:
    """How the kernel of `sch` with parameters `args` is called: exactly the params,
    size variables and outputs of `schedule_to_func(sch, args, name)`, without lowering."""
    args = _check_args(sch, args)
    params = tuple(Buffer(t.name, t.dtype, t.shape) for t in args)
    size_vars = _size_vars(args)
    outputs = tuple(p for t, p in zip(args, params) if sch.stage_of(t) is not None)
    return KernelInterface(name, params, size_vars, outputs)


def schedule_to_func(sch, args, name: str = "main") -> LoweredFunc:
    """Lower `sch` to a LoweredFunc whose parameters are `args` in order."""
    interface = kernel_interface(sch, args, name)
    args = list(args)
    plans = _plan_stages(sch)
    params = dict(zip(args, interface.params))
    _check_args_computed_at_root(sch, args)
    done = []
    for plan in reversed(plans):
        infer_region(plan, done)
        infer_loops(plan, done)
        done.append(plan)
    buffers = _make_buffers(sch, plans, params)
    drop_unneeded_guards(plans, buffers)
    roots = [p for p in plans if p.stage.attach.kind == "root"]
    _check_root_scopes(sch, roots)
    body = seq(*(nest for p in roots  # attached stages go inside their parents' nests
                 for nest in (_atomic_init_nest(p, buffers), _stage_nest(p, buffers, plans))))
    param_buffers = set(params.values())
    for plan in reversed(roots):
        for t in plan.op.outputs:
            if buffers[t][0] not in param_buffers:
                body = Allocate(buffers[t][0], body)
    body = unique_definitions(body)  # a reduce axis may be shared by several computes
    _check_sizes_defined(interface.size_vars, body)
    return LoweredFunc(name, interface.params, interface.size_vars, body, interface.outputs)


def _check_args(sch, args) -> list[Tensor]:
    if not isinstance(args, (list, tuple)) or not args:
        raise LoweringError(f"lower/build: args must be a non-empty list of tensors, got {args!r}")
    for i, a in enumerate(args):
        if not isinstance(a, Tensor):
            raise LoweringError(f"lower/build: argument {i} must be a tensor, got "
                                f"{type(a).__name__} {a!r}")
        if args.count(a) > 1:
            raise LoweringError(f"lower/build: tensor {a.name} is given twice in args")
    for op in sch.outputs:
        for t in op.outputs:
            if t not in args and not isinstance(op, PlaceholderOp):
                raise LoweringError(f"lower/build: output {t.name} of the schedule is missing "
                                    "from args")
    return list(args)


def _check_args_computed_at_root(sch, args):
    for t in args:
        stage = sch.stage_of(t)
        if stage is not None and stage.attach.kind != "root":
            raise LoweringError(f"stage {stage.name} is a kernel argument, so it must be "
                                f"computed at the root, not {stage.attach.kind}")


def _check_root_scopes(sch, roots):
    """In a GPU schedule, a stage computed at the root lives in global memory: shared and
    local memory exist only inside a kernel."""
    if not any(st.bindings for st in sch.stages):
        return
    for plan in roots:
        if plan.stage.scope != "global":
            raise LoweringError(f"stage {plan.stage.name} has scope {plan.stage.scope!r} but is "
                                "computed at the root, outside every GPU kernel; compute it "
                                "inside a kernel with compute_at, or give it scope 'global'")


def _plan_stages(sch) -> list[StagePlan]:
    """Plans for the non-inlined stages, with inlining applied and compute_at checked."""
    inline_bodies = {}

    def inline(node):
        if isinstance(node, TensorRead) and node.tensor in inline_bodies:
            axis_vars, body = inline_bodies[node.tensor]
            return substitute(body, dict(zip(axis_vars, node.indices)))
        return None

    plans = []
    for stage in sch.stages:
        body = tuple(transform(b, inline) for b in stage.op.body)
        if stage.attach.kind == "inline":
            for t in (stage.origin_op.output(0), stage.op.output(0)):
                inline_bodies[t] = ([iv.var for iv in stage.op.axis], body[0])
            continue
        plans.append(StagePlan(stage, body))
    by_stage = {p.stage: p for p in plans}
    for plan in plans:
        for b in plan.body:
            for read in collect(b, lambda n: isinstance(n, TensorRead)):
                producer = by_stage.get(sch.stage_of(read.tensor))
                if producer is not None and plan not in producer.consumers:
                    producer.consumers.append(plan)
    for plan in plans:
        _check_attach(plan, by_stage)
    return plans


def _check_attach(plan: StagePlan, by_stage: dict):
    attach = plan.stage.attach
    if attach.kind != "at":
        if plan.stage.double_buffered:
            raise LoweringError(f"double_buffer on stage {plan.stage.name}: it is computed "
                                "at the root; compute it at a serial loop of its consumer "
                                "with compute_at")
        return
    target = by_stage.get(attach.stage)
    name = plan.stage.name
    if target is None:
        raise LoweringError(f"compute_at of stage {name}: its target {attach.stage.name} is "
                            "inlined, so it has no loops to compute in")
    if attach.axis not in attach.stage.leaf_iter_vars:
        raise LoweringError(f"compute_at of stage {name}: axis {attach.axis.name} is no longer a "
                            f"loop of stage {attach.stage.name} (it was split or fused after "
                            "compute_at); attach to one of its current loops")
    position = attach.stage.leaf_iter_vars.index(attach.axis)
    for consumer in plan.consumers:
        if not _inside(consumer.stage, attach.stage, position):
            raise LoweringError(f"compute_at of stage {name}: stage {consumer.stage.name} also "
                                f"reads {name} but runs outside loop {attach.axis.name} of "
                                f"{attach.stage.name}; compute {name} at the root instead")


def _inside(stage, target, position: int) -> bool:
    """Whether `stage`'s loop nest is placed inside `target`'s loop number `position`."""
    if stage is target:
        return True
    attach = stage.attach
    while attach.kind == "at":
        if attach.stage is target:
            return target.leaf_iter_vars.index(attach.axis) >= position
        attach = attach.stage.attach
    return False


def _make_buffers(sch, plans, params) -> dict:
    """tensor -> (Buffer, offsets) for every tensor a kernel reads or writes."""
    buffers = {t: (b, None) for t, b in params.items() if isinstance(t.op, PlaceholderOp)}
    for plan in plans:
        stage = plan.stage
        for k in range(plan.op.num_outputs):
            origin, current = stage.origin_op.output(k), plan.op.output(k)
            buf = params.get(origin) or params.get(current)
            if buf is None:
                buf = Buffer(current.name, current.dtype, tuple(plan.alloc_shape),
                             storage_scope(stage), _aligned_strides(stage, plan.alloc_shape))
            entry = (buf, plan.offsets)
            buffers[origin] = buffers[current] = entry
    return buffers


def _aligned_strides(stage, shape):
    """Strides honouring storage_align, or None for compact row-major."""
    if not stage.storage_aligns:
        return None
    strides = [Const(INDEX, 1)]
    for d in range(len(shape) - 1, 0, -1):
        if not isinstance(shape[d], Const) or not isinstance(strides[0], Const):
            raise LoweringError(f"storage_align on stage {stage.name}: the buffer shape must be "
                                f"constant, got {shape[d]}")
        stride = strides[0].value * shape[d].value
        if d - 1 in stage.storage_aligns:
            factor, offset = stage.storage_aligns[d - 1]
            stride += (offset - stride) % factor
        strides.insert(0, Const(INDEX, stride))
    return tuple(strides)


def _to_loads(expr, buffers):
    """Replace tensor reads by buffer loads (shifted by the producer's region start)."""
    def load(node):
        if isinstance(node, TensorRead):
            entry = buffers.get(node.tensor)
            if entry is None:
                raise LoweringError(f"tensor {node.tensor.name} is read but is neither computed "
                                    "by the schedule nor given in args")
            buf, offsets = entry
            idx = node.indices if offsets is None else tuple(
                ops.binary("sub", i, o) for i, o in zip(node.indices, offsets))
            return Load(buf, idx)
        return None
    return transform(expr, load)


def _stage_nest(plan: StagePlan, buffers, plans) -> object:
    """The loop nest computing `plan`'s region, with attached stages inside."""
    stage, op = plan.stage, plan.op
    root_values = {iv.var: plan.values[iv] for iv in op.axis + op.reduce_axis}
    outs = [buffers[t] for t in op.outputs]
    index = [plan.values[iv] for iv in op.axis]

    def store_index(offsets):
        return tuple(ops.binary("sub", i, o) for i, o in zip(index, offsets or [0] * len(index)))

    body = tuple(_to_loads(substitute(b, root_values), buffers) for b in plan.body)
    leaves = stage.leaf_iter_vars
    children = {}
    for p in plans:
        if p.stage.attach.kind == "at" and p.stage.attach.stage is stage:
            children.setdefault(p.stage.attach.axis, []).append(p)
    depth = {cond: _depth(cond, leaves) for _, cond in plan.guards}
    if stage.bindings and children:
        # Every thread must reach the stages computed inside the nest (they may be
        # fetched cooperatively), so guards go below the deepest of them.
        deepest = max(leaves.index(axis) for axis in children)
        depth = {cond: max(d, deepest) for cond, d in depth.items()}
    nest = _NestBuilder(plan, buffers, plans, children)
    if stage.tensorized is not None:
        return _tensorized_nest(plan, nest, buffers, depth)
    if not op.reduce_axis:
        provide = seq(*(Store(b, v, store_index(o)) for (b, o), v in zip(outs, body)))
        return nest.build(leaves, provide, dict(depth))
    first = next(i for i, v in enumerate(leaves) if v.kind == "reduce")
    for v in leaves[first:]:
        if v.kind == "data" and v in stage.bindings:
            raise LoweringError(f"stage {stage.name}: data loop {v.name} is bound to "
                                f"{stage.bindings[v]} inside a reduction loop, where threads "
                                "would start accumulating before others set the initial "
                                "values; reorder it outside the reduction loops")
    if any(v in stage.bindings for v in leaves[first:]):
        return _gpu_reduction(plan, nest, body, outs, store_index, depth, first)
    identities = op.body[0].combiner.identities
    init = seq(*(Store(b, ident, store_index(o)) for (b, o), ident in zip(outs, identities)))
    update = _update(body, outs, store_index)
    one_thread = _one_of_the_copies(plan, plans)
    if one_thread is not None:
        init, update = IfThenElse(one_thread, init), IfThenElse(one_thread, update)
    return _init_and_update(plan, nest, leaves, first, init, update, depth)


def _one_of_the_copies(plan: StagePlan, plans):
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
    axes = {tag for _, _, tag, extent in _kernel_bindings(stage, plans)
            if tag.startswith("threadIdx")
            and not (isinstance(extent, Const) and extent.value == 1)}
    axes -= {stage.bindings[v] for v in stage.leaf_iter_vars if v in stage.bindings}
    if not axes:
        return None
    conditions = [ops.compare("eq", ThreadIndex(tag), 0) for tag in sorted(axes)]
    return functools.reduce(lambda a, b: ops.logical("and", a, b), conditions)


def _init_and_update(plan, nest, leaves, first: int, init, update, depth):
    """Loops over `leaves` (the reduction loops from position `first`) around `update`, with
    `init` run first for each point of the data loops among them (under fresh variables)."""
    rest = leaves[first:]
    update = nest.build(rest, update, {c: d - first for c, d in depth.items() if d >= first})
    init_leaves = [v for v in rest if v.kind == "data"]
    fresh = {v.var: Var(v.name + "_init", INDEX) for v in init_leaves}
    init_levels = {c: _depth(c, init_leaves) for data, c in plan.guards
                   if data and depth[c] >= first}
    init_nest = nest.build(init_leaves, init, init_levels, rename=fresh, with_children=False)
    return nest.build(leaves[:first], seq(init_nest, update),
                      {c: d for c, d in depth.items() if d < first})


def _tensorized_nest(plan: StagePlan, nest, buffers, depth):
    """The nest of a stage whose loops from its tensorize axis inward (the tile) are
    replaced by the intrinsic's statements (`tex.schedule.tensorize.lower_tile` checks
    that they match). With reduction loops outside the tile, the intrinsic's reset
    takes the place of the init nest's body and its update that of the update's; or,
    when those loops are plain reductions and the intrinsic has an `Accumulator`, the
    tile stays in its local buffer across them and is stored once after them."""
    stage = plan.stage
    leaves = stage.leaf_iter_vars
    axis = stage.tensorized[0]
    outer = leaves[:leaves.index(axis)] if axis in leaves else leaves
    first = next((i for i, v in enumerate(outer) if v.kind == "reduce"), None)
    enclosing = {stage.bindings[v] for v in outer if v in stage.bindings}
    enclosing |= {owner.bindings[v] for v, owner in enclosing_loops(stage) if v in owner.bindings}
    tile = lower_tile(plan, buffers, nest.children, depth, enclosing,
                      _kernel_bindings(stage, nest.plans), first is not None)
    if first is None:
        return nest.build(outer, tile.whole, depth)
    if any(v in stage.bindings for v in outer[first:]):
        raise LoweringError(f"tensorize on stage {stage.name}, axis {axis.name}: a reduction "
                            "loop outside the tile is bound to a GPU thread axis; keep the "
                            "reduction loops serial around a tensorized tile")
    accumulator = tile.accumulator
    if accumulator is not None and all(v.kind == "reduce" and stage.annotations.get(v) in
                                       (None, "unroll") for v in outer[first:]):
        update = nest.build(outer[first:], accumulator.update,
                            {c: d - first for c, d in depth.items() if d >= first})
        store = _under_moved_guards(plan, depth, first, accumulator.store)
        body = Allocate(accumulator.buffer, seq(accumulator.reset, update, store))
        return nest.build(outer[:first], body, {c: d for c, d in depth.items() if d < first})
    return _init_and_update(plan, nest, outer, first, tile.reset, tile.update, depth)


def _under_moved_guards(plan, depth, first: int, stmt):
    """`stmt`, which runs after the reduction loops from position `first`, under the bound
    checks of the data loops that went down into them (below stages computed there,
    which every thread must reach)."""
    moved = [cond for data, cond in plan.guards if data and depth[cond] >= first]
    if not moved:
        return stmt
    return IfThenElse(functools.reduce(lambda a, b: ops.logical("and", a, b), moved), stmt)


def _kernel_bindings(stage, plans) -> list:
    """(stage, leaf, thread tag, extent) of every bound loop of the kernel that runs `stage`:
    the loops of its root stage and of every stage computed inside it."""
    def root(st):
        while st.attach.kind == "at":
            st = st.attach.stage
        return st
    kernel = root(stage)
    return [(p.stage, leaf, p.stage.bindings[leaf], p.ranges[leaf].extent)
            for p in plans if root(p.stage) is kernel
            for leaf in p.stage.leaf_iter_vars if leaf in p.stage.bindings]


def _gpu_reduction(plan, nest, body, outs, store_index, depth, first):
    """The nest of a reduction with a reduction loop bound to a GPU thread axis.

    Each thread accumulates its terms in a local one-element buffer; a loop
    bound to threadIdx then combines the threads' values (`ThreadReduce`)
    and the first of them writes the result, and a loop bound to blockIdx
    adds each block's result to the output atomically (`_atomic_init_nest`
    fills it with the identity first).
    """
    stage = plan.stage
    leaves = stage.leaf_iter_vars
    rest = leaves[first:]
    thread_leaf, block_leaf = _gpu_reduction_leaves(stage, rest)
    combiner = plan.op.body[0].combiner
    accs = [Buffer(f"{b.name}_acc", b.dtype, (Const(INDEX, 1),), "local") for b, _ in outs]
    acc_outs = [(a, None) for a in accs]
    zero = (_ZERO,)
    update = nest.build(rest, _update(body, acc_outs, lambda _: zero),
                        {c: d - first for c, d in depth.items() if d >= first})
    init = seq(*(Store(a, ident, zero) for a, ident in zip(accs, combiner.identities)))
    results = [Load(a, zero) for a in accs]
    steps = [init, update]
    buffers = list(accs)
    if thread_leaf is not None:
        extent = plan.ranges[thread_leaf].extent
        strategy = _thread_strategy(stage, thread_leaf, extent)
        combined = [Buffer(f"{b.name}_red", b.dtype, (Const(INDEX, 1),), "local") for b, _ in outs]
        buffers.extend(combined)
        steps.append(ThreadReduce(strategy, combiner, tuple(results), tuple(combined),
                                  stage.bindings[thread_leaf], int(extent.value)))
        results = [Load(b, zero) for b in combined]
    if block_leaf is not None:
        op = _ATOMIC_OPS.get(combiner.name)
        if op is None or len(outs) > 1:
            raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}, axis "
                                f"{block_leaf.name}: atomics combine sum, min and max, not "
                                f"{combiner.name}; bind the axis to threadIdx instead")
        write = AtomicUpdate(outs[0][0], op, results[0], store_index(outs[0][1]))
    else:
        write = seq(*(Store(b, r, store_index(o)) for (b, o), r in zip(outs, results)))
    if thread_leaf is not None and storage_scope(stage) != "local":
        # every thread of the group holds the result: into shared or global memory one
        # writes it, into a local buffer each writes its own copy
        write = IfThenElse(ops.compare("eq", ThreadIndex(stage.bindings[thread_leaf]), 0), write)
    write = _under_moved_guards(plan, depth, first, write)
    one_thread = _one_of_the_copies(plan, nest.plans)
    if one_thread is not None:
        write = IfThenElse(one_thread, write)
    steps.append(write)
    stmt = seq(*steps)
    for b in reversed(buffers):
        stmt = Allocate(b, stmt)
    return nest.build(leaves[:first], stmt, {c: d for c, d in depth.items() if d < first})


#: The atomic update that combines partial results of each reducer.
_ATOMIC_OPS = {"sum": "add", "min": "min", "max": "max"}

#: Threads per block of the kernel that fills an atomically reduced output.
_FILL_THREADS = 256


def _gpu_reduction_leaves(stage, rest):
    """The reduction loops bound to threadIdx and to blockIdx (None when absent), checked."""
    for v in rest:
        if v.kind == "data":
            raise LoweringError(f"stage {stage.name}: with reduction loop(s) bound to GPU "
                                f"threads, data loop {v.name} must come before the reduction "
                                "loops; reorder it outside them")
    thread_leaf = block_leaf = None
    for v in rest:
        tag, strategy = stage.bindings.get(v), stage.reduce_strategies.get(v)
        if tag is None:
            if strategy is not None:
                raise LoweringError(f"reduce_strategy on stage {stage.name}, axis {v.name}: "
                                    "the axis is not bound to a thread axis")
            continue
        if tag.startswith("blockIdx"):
            if strategy != "atomic":
                raise LoweringError(f"stage {stage.name}: reduction axis {v.name} is bound to "
                                    f"{tag}, so blocks must combine their results; say "
                                    f"s[{stage.name}].reduce_strategy({v.name}, 'atomic')")
            if block_leaf is not None or stage.attach.kind != "root":
                raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}: needs a "
                                    "stage computed at the root with one block-bound "
                                    "reduction axis")
            block_leaf = v
        else:
            if strategy == "atomic":
                raise LoweringError(f"reduce_strategy 'atomic' on stage {stage.name}, axis "
                                    f"{v.name}: atomics combine blocks; bind the axis to "
                                    f"blockIdx, not {tag}")
            if thread_leaf is not None:
                raise LoweringError(f"stage {stage.name}: reduction axes {thread_leaf.name} and "
                                    f"{v.name} are both bound to threads; fuse them into one")
            thread_leaf = v
    return thread_leaf, block_leaf


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


def _atomic_init_nest(plan: StagePlan, buffers):
    """For a reduction combined across blocks with atomics: a nest, bound to the GPU,
    that fills its whole output with the reducer's identity (None otherwise)."""
    stage = plan.stage
    if not any(stage.reduce_strategies.get(v) == "atomic" for v in stage.leaf_iter_vars):
        return None
    out, _ = buffers[plan.op.output(0)]
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


def _update(body, outs, store_index):
    """`out = combine(out, source)` for each output of a reduction."""
    reduce = body[0]
    combiner = reduce.combiner
    current = [Load(b, store_index(o)) for b, o in outs]
    mapping = dict(zip(combiner.lhs, current))
    mapping.update(zip(combiner.rhs, reduce.sources))
    results = [substitute(r, mapping) for r in combiner.results]
    if len(outs) == 1:
        stmt = Store(outs[0][0], results[0], store_index(outs[0][1]))
    else:
        temps = [Var(f"{b.name}_new", b.dtype) for b, _ in outs]
        stmt = seq(*(Store(b, t, store_index(o)) for (b, o), t in zip(outs, temps)))
        for t, r in reversed(list(zip(temps, results))):
            stmt = LetStmt(t, r, stmt)
    if not (isinstance(reduce.condition, Const) and reduce.condition.value):
        stmt = IfThenElse(reduce.condition, stmt)
    return stmt


def _depth(cond, leaves) -> int:
    """Position in `leaves` of the innermost leaf `cond` depends on, or -1 for none."""
    used = free_vars(cond)
    return max((i for i, v in enumerate(leaves) if v.var in used), default=-1)


class _NestBuilder:
    """Builds loops over some of a stage's leaf axes around a body."""

    def __init__(self, plan, buffers, plans, children):
        self.plan, self.buffers, self.plans, self.children = plan, buffers, plans, children

    def build(self, leaves, body, levels: dict, rename=None, with_children=True):
        """Loops over `leaves` (outermost first) around `body`.

        `levels` maps each guard to the index in `leaves` of the loop it goes
        just inside (-1: above all of them). Stages attached at a loop go at
        its top, with their buffers allocated around the rest of the loop.
        `rename` gives fresh loop variables (for the init nest of a reduction).
        """
        rename = rename or {}
        plan = self.plan
        stmt = substitute(body, rename)
        for pos in range(len(leaves) - 1, -2, -1):
            here = [c for c, level in levels.items() if level == pos]
            if here:
                stmt = IfThenElse(substitute(ops.all_(*here), rename), stmt)
            if pos < 0:
                break
            leaf = leaves[pos]
            children = self.children.get(leaf, []) if with_children else []
            for child in reversed([c for c in children if not c.stage.double_buffered]):
                child_nest = _stage_nest(child, self.buffers, self.plans)
                stmt = seq(child_nest, stmt)
                for t in child.op.outputs:
                    stmt = Allocate(self.buffers[t][0], stmt)
            if with_children and leaf in plan.stage.prefetches:
                stmt = seq(_prefetch_nest(plan, leaf, self.buffers, self.plans), stmt)
            extent = plan.ranges[leaf].extent
            tag = plan.stage.bindings.get(leaf)
            kind = "bound" if tag else _LOOP_KIND[plan.stage.annotations.get(leaf)]
            pragmas = tuple(plan.stage.pragmas.get(leaf, ()))
            var = rename.get(leaf.var, leaf.var)
            fills = [c for c in children if c.stage.double_buffered]
            if fills:
                stmt = self._double_buffered(leaf, var, extent, kind, pragmas, fills, stmt)
            else:
                stmt = For(var, _ZERO, extent, kind, stmt, pragmas, tag)
        return stmt

    def _double_buffered(self, leaf, var, extent, kind, pragmas, fills, rest):
        """Loop `leaf` (variable `var`) over `rest`, with the `fills` (the double-buffered
        stages computed at it) filling one of two buffers for the next iteration while
        `rest` reads the other (see `Stage.double_buffer`): unrolled by two, with the
        first fill before the loop."""
        stage = self.plan.stage
        buffers = []
        for child in fills:
            where = (f"double_buffer on stage {child.stage.name}: it is computed at loop "
                     f"{leaf.name} of stage {stage.name}")
            if kind != "serial":
                raise LoweringError(f"{where}, which is {kind}; double-buffer at a serial loop")
            for t in child.op.outputs:
                buffer = self.buffers[t][0]
                if buffer.scope != "shared":
                    raise LoweringError(f"{where}, into {buffer.scope} memory; double "
                                        "buffering is for shared memory (compute it at a loop "
                                        "outside the threadIdx loops, or set_scope('shared'))")
                buffers.append(buffer)
        second = {b: Buffer(b.name + "_next", b.dtype, b.shape, b.scope, b.strides)
                  for b in buffers}
        fill = seq(*(_stage_nest(c, self.buffers, self.plans) for c in fills))

        def step(stmt, index, odd: bool):
            stmt = substitute(stmt, {var: index})
            return _BufferSwap(second).rewrite(stmt) if odd else stmt

        pair = Var(var.name + "_pair", INDEX)
        even = ops.binary("mul", pair, 2)
        odd = ops.binary("add", even, 1)
        after = ops.binary("add", even, 2)
        body = seq(IfThenElse(ops.compare("lt", odd, extent), step(fill, odd, True)),
                   step(rest, even, False),
                   IfThenElse(ops.compare("lt", odd, extent), seq(
                       IfThenElse(ops.compare("lt", after, extent), step(fill, after, False)),
                       step(rest, odd, True))))
        pairs = ops.binary("floordiv", ops.binary("add", extent, 1), 2)
        stmt = seq(step(fill, _ZERO, False), For(pair, _ZERO, pairs, "serial", body, pragmas))
        if not (isinstance(extent, Const) and extent.value >= 1):
            stmt = IfThenElse(ops.compare("lt", _ZERO, extent), stmt)
        for buffer in reversed(buffers):
            stmt = Allocate(buffer, Allocate(second[buffer], stmt))
        return stmt


class _BufferSwap(Rewriter):
    """Loads and stores of the buffers of `mapping` redirected to the buffers it maps to."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def rewrite_Load(self, node: Load):
        node = self.generic_rewrite(node)
        buffer = self.mapping.get(node.buffer)
        return node if buffer is None else Load(buffer, node.indices)

    def rewrite_Store(self, node: Store):
        node = self.generic_rewrite(node)
        buffer = self.mapping.get(node.buffer)
        return node if buffer is None else Store(buffer, node.value, node.indices)


#: Bytes of a cache line: one prefetch per line.
_CACHE_LINE = 64


def _prefetch_nest(plan: StagePlan, leaf, buffers, plans):
    """Prefetches, at the top of loop `leaf`, of each tensor `Stage.prefetch` named there:
    the box of elements read of it inside the loop (by the stage and the stages computed
    inside the loop), at `leaf + offset`, clamped into the buffer, one `Prefetch` per
    cache line of its last dimension."""
    stage = plan.stage
    if stage.bindings or any(owner.bindings for _, owner in enclosing_loops(stage)):
        raise LoweringError(f"prefetch on stage {stage.name}, axis {leaf.name}: the stage runs "
                            "in a GPU kernel; prefetch is for CPU loops")
    if stage.annotations.get(leaf) == "vectorize":
        raise LoweringError(f"prefetch on stage {stage.name}: axis {leaf.name} is vectorized; "
                            "prefetch at a serial, unrolled or parallel loop")
    leaves = stage.leaf_iter_vars
    readers = [(plan, leaves[leaves.index(leaf) + 1:])]
    readers += [(p, p.stage.leaf_iter_vars) for p in plans
                if p is not plan and _inside(p.stage, stage, leaves.index(leaf))]
    inside, body = {}, []
    for reader, loops in readers:
        inside.update((v.var, Interval.from_extent(_ZERO, reader.ranges[v].extent))
                      for v in loops)
        op = reader.op
        root_values = {iv.var: reader.values[iv] for iv in op.axis + op.reduce_axis}
        body += [_to_loads(substitute(b, root_values), buffers) for b in reader.body]
    nests = []
    for tensor, offset in stage.prefetches[leaf]:
        producer = stage.schedule.stage_of(tensor)
        if producer is not None and producer.attach.kind != "root":
            how = "inlined" if producer.attach.kind == "inline" else "computed at a loop " \
                "(compute_at), in a buffer that lives inside that loop"
            raise LoweringError(f"prefetch of {tensor.name} on stage {stage.name}, axis "
                                f"{leaf.name}: {tensor.name} is {how}; prefetch an input or "
                                "a stage computed at the root")
        entry = buffers.get(tensor)
        loads = [load for b in body for load in collect(b, lambda n: isinstance(n, Load))
                 if entry is not None and load.buffer is entry[0]]
        if not loads:
            raise LoweringError(f"prefetch on stage {stage.name}, axis {leaf.name}: tensor "
                                f"{tensor.name} is not read inside that loop")
        # A gather's address is known only once its index is loaded: it is left out.
        loads = [load for load in loads
                 if not any(collect(i, lambda n: isinstance(n, Load)) for i in load.indices)]
        if not loads:
            raise LoweringError(f"prefetch on stage {stage.name}, axis {leaf.name}: every read "
                                f"of {tensor.name} inside that loop is a gather (its index is "
                                "read from memory), so none can be prefetched ahead")
        ahead = {leaf.var: ops.binary("add", leaf.var, offset)}
        nests.append(_prefetch_box(entry[0], loads, inside, ahead))
    return seq(*nests)


def _prefetch_box(buffer, loads, inside, ahead):
    """Prefetches of the box of `buffer` that `loads` cover while the `inside` loops run,
    shifted by `ahead` (see `_prefetch_nest`). A side of the box is its constant upper
    bound where there is one; a dimension whose indices have no bound is taken whole."""
    starts, extents = [], []
    for d, size in enumerate(buffer.shape):
        spans = [bound(load.indices[d], inside) for load in loads]
        if any(s.lo is None or s.hi is None for s in spans):
            lo, hi = _ZERO, ops.binary("sub", size, 1)
        else:
            lo = functools.reduce(ops.minimum, (s.lo for s in spans))
            hi = functools.reduce(ops.maximum, (s.hi for s in spans))
        extent = simplify(ops.binary("add", ops.binary("sub", hi, lo), 1))
        _, most = const_bound(extent)
        starts.append(substitute(lo, ahead))
        extents.append(Const(INDEX, most) if most is not None else substitute(extent, ahead))
    line = max(1, _CACHE_LINE // buffer.dtype.itemsize)
    # lines from the start's, past the last element
    extents[-1] = simplify(ops.binary("add", ops.binary("floordiv", extents[-1], line), 1))
    loops = {d: Var(f"{buffer.name}_prefetch{d}", INDEX) for d, extent in enumerate(extents)
             if not (isinstance(extent, Const) and extent.value <= 1)}
    indices = []
    for d, (start, size) in enumerate(zip(starts, buffer.shape)):
        step = loops.get(d, _ZERO)
        if d == len(extents) - 1:
            step = ops.binary("mul", step, line)
        index = ops.minimum(ops.binary("add", ops.maximum(start, 0), step),
                            ops.binary("sub", size, 1))
        indices.append(simplify(index))
    stmt = Prefetch(buffer, tuple(indices))
    for d in sorted(loops, reverse=True):
        stmt = For(loops[d], _ZERO, extents[d], "serial", stmt)
    return stmt


def _size_vars(args) -> tuple[Var, ...]:
    """Symbolic sizes in order of first appearance in the parameters' shapes."""
    found = []
    for t in args:
        for e in t.shape:
            for v in collect(e, lambda n: isinstance(n, Var)):
                if v not in found:
                    found.append(v)
    return tuple(found)


def _check_sizes_defined(size_vars, body):
    for v in free_vars(body):
        if v not in size_vars:
            raise LoweringError(f"variable {v.name} is used by the computation but no argument's "
                                "shape defines it; add a tensor with that size to args")
