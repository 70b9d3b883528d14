"""A schedule: one stage per operation, and the primitives that rewrite dataflow.

`create_schedule(outputs)` makes a stage for every compute (and extern)
operation the outputs depend on, in producer-before-consumer order. `cache_read`,
`cache_write` and `rfactor` add stages and rewrite which tensors the
consumers read; consumers keep reading the tensors the user declared, and
`Schedule.stage_of` maps any of those tensors to the stage that now
computes it.
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX
from tex.errors import ScheduleError
from tex.expr import Const, Reduce, TensorRead, Var
from tex.pass_context import PassContext
from tex.scan_op import ScanOp
from tex.schedule.extern_stage import ExternStage, refuse_extern
from tex.schedule.record import History, ScheduleSnapshot, recorded
from tex.schedule.relations import pass_down, pass_down_values, pass_up, split_guards
from tex.schedule.scan import ScanStage, attach_steps
from tex.schedule.stage import SCOPES, Stage
from tex.tensor import CommReducer, ComputeOp, ExternOp, IterVar, PlaceholderOp, Range, Tensor
from tex.tensor_compute import TensorIntrinUse
from tex.visitor import substitute, transform


def _as_ops(outputs) -> list:
    items = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    result = []
    for item in items:
        op = item.op if isinstance(item, Tensor) else item
        if not isinstance(op, (ComputeOp, ExternOp, PlaceholderOp, ScanOp)):
            raise ScheduleError(f"create_schedule: expected operations or tensors, got "
                                f"{type(item).__name__} {item!r}")
        if op not in result:
            result.append(op)
    return result


def _post_order(outputs) -> list:
    """Every compute, scan and extern op the outputs depend on, producers first."""
    order, visited = [], set()

    def visit(op):
        if op in visited:
            return
        visited.add(op)
        for t in op.input_tensors:
            visit(t.op)
        if isinstance(op, (ComputeOp, ExternOp, ScanOp)):
            order.append(op)
    for op in outputs:
        visit(op)
    return order


class Schedule:
    """The stages of a computation, in dependency order. `s[T]` gives T's stage.

    Created inside `with tex.PassContext(config={"te.keep_schedule_record": True}):`,
    it keeps its history (`history`, else None): `schedule_record` and
    `primitive_record` (`tex.schedule.record`).
    """

    def __init__(self, outputs):
        self.outputs = _as_ops(outputs)
        self.stages: list[Stage] = []
        self._stage_by_op: dict = {}
        self.version = 0
        keep = PassContext.current().get("te.keep_schedule_record")
        self.history: History | None = History() if keep else None
        for op in _post_order(self.outputs):
            kind = ScanStage if isinstance(op, ScanOp) else \
                ExternStage if isinstance(op, ExternOp) else Stage
            self._add(kind.of(op, self), len(self.stages))
        for stage in self.stages:
            if isinstance(stage, ScanStage):
                attach_steps(stage)
        self.version = 0  # bumped by every primitive from now on, so builds can be cached
        if self.history is not None:
            self.history.add(self, "vanilla")

    @property
    def schedule_record(self) -> list[ScheduleSnapshot]:
        """A frozen snapshot of the schedule after `create_schedule` ("vanilla") and after
        each primitive since, when it keeps its history; else empty.
        TVM: `Schedule.schedule_record`."""
        return [] if self.history is None else list(self.history.snapshots)

    @property
    def primitive_record(self) -> list[str]:
        """The name of the primitive after which each of `schedule_record` was taken
        ("vanilla", "split", ...). TVM: `Schedule.primitive_record`."""
        return [snap.primitive for snap in self.schedule_record]

    @property
    def untouched(self) -> bool:
        """True while no primitive has been applied since `create_schedule`."""
        return self.version == 0

    def _add(self, stage: Stage, position: int):
        self.stages.insert(position, stage)
        self._stage_by_op[stage.origin_op] = stage
        self._stage_by_op[stage.op] = stage
        self.version += 1

    def __str__(self):
        """Every stage's records, one per line: what the schedule decided."""
        lines = []
        for stage in self.stages:
            lines.append(f"stage {stage.name}:")
            lines.extend(f"  {line}" for line in stage.describe())
        return "\n".join(lines)

    def __getitem__(self, key) -> Stage:
        op = key.op if isinstance(key, Tensor) else key
        stage = self._stage_by_op.get(op)
        if stage is None:
            if isinstance(op, PlaceholderOp):
                raise ScheduleError(f"{op.name} is a placeholder (an input); it has no stage "
                                    "to schedule")
            raise ScheduleError(f"{getattr(op, 'name', op)!r} is not part of this schedule")
        return stage

    def stage_of(self, tensor: Tensor) -> Stage | None:
        """The stage computing `tensor` (None for placeholders)."""
        return self._stage_by_op.get(tensor.op)

    def normalize(self) -> "Schedule":
        """This schedule itself: tex's loops already run from 0 (TVM's `normalize` rebases
        them there)."""
        return self

    def is_output(self, stage: Stage) -> bool:
        return stage.origin_op in self.outputs or stage.op in self.outputs

    def stage_owning(self, axis: IterVar) -> Stage | None:
        for stage in self.stages:
            if axis in stage.op.axis or axis in stage.op.reduce_axis:
                return stage
            for r in stage.relations:
                if axis in r.axes:
                    return stage
        return None

    def depends_on(self, consumer: Stage, producer: Stage) -> bool:
        """Whether `consumer` uses `producer`'s result, directly or through other stages."""
        pending, seen = [consumer], set()
        while pending:
            stage = pending.pop()
            for t in stage.op.input_tensors:
                source = self.stage_of(t)
                if source is producer:
                    return True
                if source is not None and source not in seen:
                    seen.add(source)
                    pending.append(source)
        return False

    def _rewrite_reads(self, stage: Stage, mapping: dict, order=None):
        """Make `stage` read mapping[t] wherever it read tensor t, with the indices
        taken in `order` (a permutation; default: as they are)."""
        def swap(node):
            if isinstance(node, TensorRead) and node.tensor in mapping:
                indices = node.indices if order is None else tuple(node.indices[d] for d in order)
                return TensorRead(mapping[node.tensor], indices)
            return None
        body = tuple(transform(b, swap) for b in stage.op.body)
        new_op = stage.op.with_body(body, tensor_intrin=stage.op.tensor_intrin)
        self._stage_by_op[new_op] = stage
        stage.op = new_op
        self.version += 1

    # --- dataflow primitives ------------------------------------------------
    @recorded("cache_read")
    def cache_read(self, tensor: Tensor, scope: str, readers, axis_order=None) -> Tensor:
        """A copy of `tensor` that the given readers read instead; returns the copy.

        The copy is a new stage (`{name}_{scope}`), usually placed with
        compute_at inside a reader's loop to stage a tile of the input.
        `axis_order` (a permutation of the tensor's dimensions) lays the copy
        out with its dimensions in that order: with (1, 0) a matrix is copied
        transposed, so that readers walking its first dimension read
        consecutive elements. TVM: `cache_read`; Halide: `in()` (with
        `reorder_storage` for the order).
        """
        _check_tensor("cache_read", tensor)
        readers = readers if isinstance(readers, (list, tuple)) else [readers]
        reader_stages = [r if isinstance(r, Stage) else self[r] for r in readers]
        if not reader_stages:
            raise ScheduleError(f"cache_read of {tensor.name}: give at least one reader")
        for stage in reader_stages:
            refuse_extern(stage, "cache_read (as a reader)")
            if not isinstance(stage.op, ComputeOp):
                raise ScheduleError(f"cache_read of {tensor.name}: stage {stage.name} computes "
                                    "nothing of its own to read a copy; give the stages that "
                                    "read the tensor")
            if tensor not in stage.op.input_tensors:
                raise ScheduleError(f"cache_read of {tensor.name}: stage {stage.name} does not "
                                    f"read {tensor.name}")
        ndim = len(tensor.shape)
        order = _permutation(axis_order, ndim, "cache_read", tensor.name)
        name = f"{tensor.name}_{scope}"
        axis = tuple(IterVar(Var(f"ax{p}"), Range(Const(INDEX, 0), tensor.shape[d]), "data")
                     for p, d in enumerate(order))
        source = [None] * ndim  # the copy's axis that walks each dimension of the tensor
        for p, d in enumerate(order):
            source[d] = axis[p].var
        op = ComputeOp(name, axis, (TensorRead(tensor, tuple(source)),))
        stage = Stage.of(op, self)
        stage.scope = _scope(scope, "cache_read", tensor.name)
        producer = self.stage_of(tensor)
        self._add(stage, self.stages.index(producer) + 1 if producer else 0)
        for reader in reader_stages:
            self._rewrite_reads(reader, {tensor: op.output(0)}, order)
        return op.output(0)

    @recorded("cache_write")
    def cache_write(self, tensor, scope: str, axis_order=None):
        """Compute `tensor` into a new stage `{name}_{scope}`, then copy it out; returns it.

        The original stage becomes the copy; the cache stage is usually put
        with compute_at inside the copy's loops so the accumulator stays in
        registers or cache. `tensor` may be a list of all the outputs of one
        operation (`s.cache_write([C, D], "local")`); a list of caches comes
        back. Called after other primitives on the stage, the cache takes over
        its loops as TE's does: the cache's axes are the stage's data loops as
        they are now (a split axis gives two, in the current order; a split that
        does not divide keeps its guard), and the copy starts afresh from the
        operation's own axes (its splits, fuses, annotations and bindings go;
        where it is computed stays). Reduction axes stay as declared.
        `axis_order` (a permutation of the cache's axes) gives them, and so its
        storage, in that order: a vectorized axis put last makes each vector
        of the accumulator consecutive in memory (one register).
        TVM: `cache_write`; Halide: `update()` into a wrapper / `in()`.
        """
        tensors = list(tensor) if isinstance(tensor, (list, tuple)) else [tensor]
        if not tensors:
            raise ScheduleError("cache_write: give a tensor or a list of tensors, got []")
        for t in tensors:
            _check_tensor("cache_write", t)
        names = ", ".join(t.name for t in tensors)
        stage = self[tensors[0]]
        refuse_extern(stage, "cache_write")
        if not isinstance(stage.op, ComputeOp):
            raise ScheduleError(f"cache_write of {names}: stage {stage.name} is not a "
                                "compute; cache the stage of its update instead")
        old = stage.op
        given = sorted(t.value_index for t in tensors)
        if any(self[t] is not stage for t in tensors) or given != list(range(old.num_outputs)):
            raise ScheduleError(f"cache_write of {names}: give every output of one operation "
                                f"(stage {stage.name} has {old.num_outputs}), each once")
        stage.refuse_mixed_fuse("cache_write")
        stage.refuse_symbolic_splits("cache_write", "data")
        self._refuse_attached_to_derived_axes(stage, names)
        data_relations = [r for r in stage.relations if r.kind == "data"]
        leaves = [v for v in stage.leaf_iter_vars if v.kind == "data"]
        ranges = pass_down(data_relations, {iv: iv.dom for iv in old.axis})
        order = _permutation(axis_order, len(leaves), "cache_write", names)
        axis = tuple(IterVar(Var(leaves[d].name), Range(Const(INDEX, 0), ranges[leaves[d]].extent),
                             "data") for d in order)
        new_axes = {leaves[d]: a for d, a in zip(order, axis)}
        new_vars = {leaf: a.var for leaf, a in new_axes.items()}
        values = pass_up(data_relations, leaves, ranges, new_vars)
        remap = {iv.var: simplify(values[iv]) for iv in old.axis}
        guards = [guard for _, guard in split_guards(data_relations, ranges, values)]
        body = tuple(_guarded(_remap_reduce_domains(substitute(b, remap), remap), guards)
                     for b in old.body)
        cache = ComputeOp(f"{old.name}_{scope}", axis, body,
                          tensor_intrin=_moved_intrin_use(stage, new_axes))
        cache_stage = Stage.of(cache, self)
        cache_stage.scope = _scope(scope, "cache_write", names)
        self._add(cache_stage, self.stages.index(stage))
        positions = pass_down_values(data_relations, ranges, {iv: iv.var for iv in old.axis})
        index = tuple(simplify(positions[leaves[d]]) for d in order)
        copy = old.with_body(tuple(TensorRead(out, index) for out in cache.outputs))
        self._stage_by_op[copy] = stage
        stage.op = copy
        stage.relations = []
        stage.leaf_iter_vars = list(copy.axis)
        for table in (stage.annotations, stage.pragmas, stage.prefetches, stage.bindings,
                      stage.reduce_strategies):
            table.clear()
        stage.tensorized = None
        caches = list(cache.outputs)
        return caches if isinstance(tensor, (list, tuple)) else caches[0]

    def _refuse_attached_to_derived_axes(self, stage: Stage, names: str):
        """cache_write forgets the stage's splits and fuses: no stage may be computed at
        one of those loops."""
        for other in self.stages:
            attach = other.attach
            if attach.kind == "at" and attach.stage is stage and \
                    attach.axis not in stage.op.axis:
                raise ScheduleError(f"cache_write of {names}: stage {other.name} is computed at "
                                    f"loop {attach.axis.name} of stage {stage.name}, which the "
                                    "copy loses; call compute_at after cache_write")

    @recorded("rfactor")
    def rfactor(self, tensor: Tensor, axis: IterVar, factor_axis: int = 0):
        """Turn the reduction leaf `axis` into a data axis of a new partial-result stage.

        With k split into (k_outer, k_inner), rfactor(C, k_inner) makes
        `C_rf[k_inner, i] = sum over k_outer` and leaves `C[i] = sum over
        k_inner of C_rf[k_inner, i]`, so the partial sums can be vectorized or
        parallelised. Returns the new tensor (a list for tuple reducers).
        TVM: `rfactor`; Halide: `rfactor`.
        """
        _check_tensor("rfactor", tensor)
        stage = self[tensor]
        refuse_extern(stage, "rfactor")
        op = stage.op
        if not op.reduce_axis:
            raise ScheduleError(f"rfactor on stage {stage.name}: it is not a reduction")
        stage._leaf(axis, "rfactor")
        stage.refuse_mixed_fuse("rfactor")
        stage.refuse_symbolic_splits("rfactor", "reduce")
        if axis.kind != "reduce":
            raise ScheduleError(f"rfactor on stage {stage.name}: axis {axis.name} is a data "
                                "axis; rfactor takes a reduction axis")
        ndim = len(op.axis)
        if not isinstance(factor_axis, int) or not 0 <= factor_axis <= ndim:
            raise ScheduleError(f"rfactor on stage {stage.name}: factor_axis must be in "
                                f"[0, {ndim}], got {factor_axis!r}")
        rf_op = _rfactor_op(stage, axis, factor_axis)
        self._add(Stage.of(rf_op, self), self.stages.index(stage))
        self._reduce_partials(stage, rf_op, factor_axis)
        return rf_op.outputs[0] if rf_op.num_outputs == 1 else list(rf_op.outputs)

    def _reduce_partials(self, stage: Stage, rf_op: ComputeOp, factor_axis: int):
        """Make `stage` combine rf_op's partial results over the factored axis."""
        op = stage.op
        first = op.body[0]
        extent = rf_op.axis[factor_axis].dom.extent
        k = IterVar(Var(f"{rf_op.axis[factor_axis].name}_v"), Range(Const(INDEX, 0), extent),
                    "reduce")
        index = [iv.var for iv in op.axis]
        index.insert(factor_axis, k.var)
        sources = tuple(t[tuple(index)] for t in rf_op.outputs)
        body = tuple(Reduce(first.combiner, sources, (k,), Const(first.condition.dtype, True), i)
                     for i in range(op.num_outputs))
        new_op = op.with_body(body)
        self._stage_by_op[new_op] = stage
        stage.op = new_op
        stage.relations = [r for r in stage.relations if r.kind == "data"]
        stage.leaf_iter_vars = [v for v in stage.leaf_iter_vars if v.kind == "data"] + [k]
        for table in ("annotations", "bindings", "reduce_strategies"):
            setattr(stage, table, {v: a for v, a in getattr(stage, table).items()
                                   if v in stage.leaf_iter_vars})
        self.version += 1


def _rfactor_op(stage: Stage, factor: IterVar, factor_axis: int) -> ComputeOp:
    """The partial-result operation of rfactor (see `Schedule.rfactor`)."""
    op = stage.op
    reduce_relations = [r for r in stage.relations if r.kind == "reduce"]
    reduce_leaves = [v for v in stage.leaf_iter_vars if v.kind == "reduce"]
    ranges = pass_down(reduce_relations, {iv: iv.dom for iv in op.reduce_axis})
    new_axis = [IterVar(Var(iv.name), iv.dom, "data") for iv in op.axis]
    factor_iv = IterVar(Var(factor.name), Range(Const(INDEX, 0), ranges[factor].extent), "data")
    new_axis.insert(factor_axis, factor_iv)
    declared_first = sorted((leaf for leaf in reduce_leaves if leaf is not factor),
                            key=lambda leaf: leaf not in op.reduce_axis)
    others = {leaf: _reduce_axis_over(leaf, ranges[leaf]) for leaf in declared_first}
    leaf_values = {factor: factor_iv.var, **{leaf: iv.var for leaf, iv in others.items()}}
    values = pass_up(reduce_relations, reduce_leaves, ranges, leaf_values)
    remap = {iv.var: simplify(values[iv]) for iv in op.reduce_axis}
    remap.update({a.var: b.var for a, b in zip(op.axis, [v for v in new_axis
                                                         if v is not factor_iv])})
    condition = substitute(op.body[0].condition, remap)
    for _, guard in split_guards(reduce_relations, ranges, values):
        condition = ops.logical("and", condition, substitute(guard, remap))
    sources = tuple(substitute(s, remap) for s in op.body[0].sources)
    combiner = op.body[0].combiner
    if others:
        axes = tuple(others.values())
        body = tuple(Reduce(combiner, sources, axes, condition, i) for i in range(len(sources)))
    else:
        body = tuple(ops.if_then_else(condition, s, ident)
                     for s, ident in zip(sources, combiner.identities))
    return ComputeOp(f"{op.name}_rf", tuple(new_axis), body)


def _reduce_axis_over(leaf: IterVar, dom: Range) -> IterVar:
    """The reduction axis of rfactor's partial stage for reduction leaf `leaf`: the leaf
    itself where it is a declared axis, else a new axis over `dom` with the leaf's variable
    (as TE keeps them; the declared axes come first)."""
    if leaf.dom is dom:
        return leaf
    return IterVar(leaf.var, Range(Const(INDEX, 0), dom.extent), "reduce")


def _moved_intrin_use(stage: Stage, new_axes: dict) -> TensorIntrinUse | None:
    """The intrinsic call of `stage`'s op for its cache (cache_write), over the cache's
    axes `new_axes` (by the stage's leaf they stand for); None when the op calls none, or
    when the stage no longer tensorizes it whole (an inner axis was split)."""
    use = stage.op.tensor_intrin
    if use is None or stage.tensorized is None or stage.tensorized[1] is not use.intrin or \
            not all(v in new_axes or v.kind == "reduce" for v in use.inner):
        return None
    return TensorIntrinUse(use.intrin, tuple(new_axes.get(v, v) for v in use.inner))


def _check_tensor(primitive: str, tensor):
    if not isinstance(tensor, Tensor):
        raise ScheduleError(f"{primitive}: expected a tensor, got {type(tensor).__name__} "
                            f"{tensor!r}")


def _scope(scope, primitive: str, name: str) -> str:
    if scope not in SCOPES:
        raise ScheduleError(f"{primitive} of {name}: scope must be one of "
                            f"{', '.join(map(repr, SCOPES))}, got {scope!r}")
    return scope


def _permutation(axis_order, ndim: int, primitive: str, name: str) -> tuple[int, ...]:
    """`axis_order` checked to be a permutation of range(ndim); the identity when None."""
    if axis_order is None:
        return tuple(range(ndim))
    order = tuple(axis_order)
    if sorted(order) != list(range(ndim)) or \
            not all(isinstance(d, int) and not isinstance(d, bool) for d in order):
        raise ScheduleError(f"{primitive} of {name}: axis_order must be a permutation of "
                            f"0..{ndim - 1}, got {axis_order!r}")
    return order


def create_schedule(outputs) -> Schedule:
    """A schedule for the operation(s) `outputs`, every stage computed at the root.

    TVM: `te.create_schedule`.
    """
    return Schedule(outputs)


def _guarded(body, guards: list):
    """`body` computed only where every guard holds: a reduction skips the other rows
    (its value there is the identity), any other value is zero there."""
    if not guards:
        return body
    cond = guards[0]
    for guard in guards[1:]:
        cond = ops.logical("and", cond, guard)
    if isinstance(body, Reduce):
        return Reduce(body.combiner, body.sources, body.axes,
                      ops.logical("and", body.condition, cond), body.value_index)
    return ops.if_then_else(cond, body, Const(body.dtype, 0))


def _remap_reduce_domains(expr, remap: dict):
    """`expr` with the domains of its reductions' axes and their reducers renamed by
    `remap` too: an axis whose bounds use a remapped variable (`reduce_axis((0, i + 1))`)
    becomes a new axis, a reducer whose identity or combination uses one a new reducer;
    the others stay the same objects."""
    def remap_axes(node):
        if not isinstance(node, Reduce):
            return None
        axes = tuple(_remapped_axis(iv, remap) for iv in node.axes)
        combiner = _remapped_combiner(node.combiner, remap)
        if all(a is b for a, b in zip(axes, node.axes)) and combiner is node.combiner:
            return None
        renamed = {old.var: new.var for old, new in zip(node.axes, axes)}
        return Reduce(combiner, tuple(substitute(x, renamed) for x in node.sources), axes,
                      substitute(node.condition, renamed), node.value_index)
    return transform(expr, remap_axes)


def _remapped_axis(iv: IterVar, remap: dict) -> IterVar:
    lo, extent = substitute(iv.dom.min, remap), substitute(iv.dom.extent, remap)
    if lo is iv.dom.min and extent is iv.dom.extent:
        return iv
    return IterVar(Var(iv.var.name, iv.var.dtype), Range(lo, extent), iv.kind)


def _remapped_combiner(combiner: CommReducer, remap: dict) -> CommReducer:
    results = tuple(substitute(r, remap) for r in combiner.results)
    identities = tuple(substitute(e, remap) for e in combiner.identities)
    if all(a is b for a, b in zip(results + identities,
                                  combiner.results + combiner.identities)):
        return combiner
    return CommReducer(combiner.name, combiner.lhs, combiner.rhs, results, identities)
