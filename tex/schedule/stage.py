"""A stage: how one operation is computed. Its primitives only record decisions.

Each primitive checks its arguments, appends a record (`Split`, `Fuse`) or
sets an attribute, and returns the new axes; only lowering reads the records.
Records are plain data and print (`Stage.describe`, `print(schedule)`), so a
schedule can be logged; their serialised form comes with the autotuner.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tex import ops
from tex.dtype import INDEX
from tex.errors import ScheduleError
from tex.expr import Const, Expr, Reduce, TensorRead, Var
from tex.ir import IMPORT_PRAGMAS, LAUNCH_BOUNDS_PRAGMA, THREAD_TAGS
from tex.schedule.record import recorded
from tex.schedule.relations import INLINE, ROOT, Attach, Fuse, Singleton, Split
from tex.schedule.tensorize import TensorIntrin
from tex.schedule.thread_axis import ThreadAxis
from tex.tensor import IterVar, Tensor
from tex.visitor import collect, free_vars

#: Loop annotations a leaf axis may carry (at most one each).
ANNOTATIONS = ("unroll", "vectorize", "parallel")

#: TVM's iteration type (`IterVar.Unrolled`, ...) of each annotation.
_ITER_TYPES = {"unroll": IterVar.Unrolled, "vectorize": IterVar.Vectorized,
               "parallel": IterVar.Parallelized}

#: TVM's attach types (`Stage.attach_type`) of tex's attachments.
_ATTACH_TYPES = {"root": 1, "inline": 2, "at": 4}


@dataclass(frozen=True, slots=True)
class PragmaKey:
    """A pragma's key as TVM's `iter_var_attrs[axis].pragma_keys` gives it (`.value`)."""

    value: str


@dataclass(frozen=True, slots=True)
class IterVarAttr:
    """What a schedule says of one leaf axis, as TVM's `Stage.iter_var_attrs[axis]`:
    `iter_type` (`tex.IterVar.Vectorized`, ...), `bind_thread` (the thread tag or None),
    `pragma_keys` and `pragma_values`, `tensor_intrin` (None unless tensorized there)."""

    iter_type: int
    bind_thread: str | None
    pragma_keys: tuple[PragmaKey, ...]
    pragma_values: tuple
    tensor_intrin: TensorIntrin | None

#: Where a stage's buffer lives (see `Stage.set_scope`).
SCOPES = ("global", "shared", "local")

#: How the partial results of a reduction axis bound to a GPU thread axis are
#: combined (see `Stage.reduce_strategy`).
REDUCE_STRATEGIES = ("shared", "warp", "atomic")


@dataclass(eq=False)
class Stage:
    """The schedule of one operation: its loop axes, their order and annotations.

    `op` is the operation this stage computes now; dataflow rewrites
    (cache_read, cache_write, rfactor) may replace it, while `origin_op`
    stays what the user declared so `s[C]` keeps working.
    """

    op: object
    origin_op: object
    schedule: object
    relations: list = field(default_factory=list)
    leaf_iter_vars: list = field(default_factory=list)
    attach: Attach = ROOT
    annotations: dict = field(default_factory=dict)   # IterVar -> "unroll"|"vectorize"|"parallel"
    pragmas: dict = field(default_factory=dict)       # IterVar -> [(key, value)]
    prefetches: dict = field(default_factory=dict)    # IterVar -> [(Tensor, offset)]
    storage_aligns: dict = field(default_factory=dict)  # dim -> (factor, offset)
    scope: str = "global"
    bindings: dict = field(default_factory=dict)      # IterVar -> thread tag
    reduce_strategies: dict = field(default_factory=dict)  # IterVar -> "shared"|"warp"|"atomic"
    tensorized: tuple | None = None                   # (IterVar, TensorIntrin) or None
    double_buffered: bool = False
    pipeline_stages: int = 0                          # Stage.pipeline's stages, 0: none
    store_predicate: object = None                    # bool Expr or None

    @classmethod
    def of(cls, op, schedule, origin_op=None) -> "Stage":
        """The stage of `op`, its loops in declared order: data axes, then reduction axes.
        A compute that calls a tensor intrinsic (`op.tensor_intrin`) has the intrinsic's
        axes innermost instead, tensorized with it (or, with none, its body is)."""
        stage = cls(op, origin_op or op, schedule)
        stage.leaf_iter_vars = list(op.axis) + list(op.reduce_axis)
        use = getattr(op, "tensor_intrin", None)
        if use is not None:
            outer = [v for v in stage.leaf_iter_vars if v not in use.inner]
            stage.leaf_iter_vars = outer + list(use.inner)
            stage.tensorized = (use.inner[0] if use.inner else None, use.intrin)
        return stage

    @property
    def name(self) -> str:
        return self.op.name

    def __repr__(self):
        return f"Stage({self.name})"

    @property
    def all_iter_vars(self) -> list:
        """Every axis of the stage: the operation's own, then those its splits and fuses
        made, in the order they were made. TVM: `Stage.all_iter_vars`."""
        found = list(self.op.axis) + list(self.op.reduce_axis)
        for r in self.relations:
            found.extend(a for a in r.axes if a not in found)
        return found

    @property
    def attach_type(self) -> int:
        """TVM's attach type: 1 at the root, 2 inlined, 4 computed at a loop."""
        return _ATTACH_TYPES[self.attach.kind]

    @property
    def iter_var_attrs(self) -> dict:
        """`IterVarAttr` of each leaf axis the schedule annotated, bound, gave pragmas or
        tensorized. TVM: `Stage.iter_var_attrs`."""
        found = {}
        for axis in self.leaf_iter_vars:
            pragmas = self.pragmas.get(axis, [])
            intrin = self.tensorized[1] if self.tensorized and self.tensorized[0] is axis \
                else None
            if axis in self.annotations or axis in self.bindings or pragmas or intrin:
                iter_type = IterVar.Tensorized if intrin else \
                    _ITER_TYPES.get(self.annotations.get(axis),
                                    IterVar.ThreadIndex if axis in self.bindings else
                                    IterVar.CommReduce if axis.kind == "reduce" else
                                    IterVar.DataPar)
                found[axis] = IterVarAttr(iter_type, self.bindings.get(axis),
                                          tuple(PragmaKey(k) for k, _ in pragmas),
                                          tuple(v for _, v in pragmas), intrin)
        return found

    # --- checks ---------------------------------------------------------
    def _leaf(self, axis, primitive: str) -> IterVar:
        if not isinstance(axis, IterVar):
            raise ScheduleError(f"{primitive} on stage {self.name}: expected an axis "
                                f"(IterVar), got {type(axis).__name__} {axis!r}")
        if axis in self.leaf_iter_vars:
            return axis
        owner = self.schedule.stage_owning(axis)
        if owner is not None and owner is not self:
            raise ScheduleError(f"{primitive} on stage {self.name}: axis {axis.name} belongs "
                                f"to stage {owner.name}")
        if owner is self:
            raise ScheduleError(f"{primitive} on stage {self.name}: axis {axis.name} is no "
                                "longer a loop of this stage (it was split or fused)")
        raise ScheduleError(f"{primitive} on stage {self.name}: axis {axis.name} is not an "
                            "axis of this stage")

    def _positive(self, value, what: str, primitive: str, axis) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ScheduleError(f"{primitive} on stage {self.name}, axis {axis.name}: {what} "
                                f"must be a positive int, got {value!r}")
        return value

    def _part_size(self, value, what: str, axis) -> int | Expr:
        """A split's `factor` or `nparts`: a positive int, or a scalar integer expression
        of variables bound when the kernel is called (`tex.var`, `tex.tir.vscale()`),
        as an index expression; lowering checks at run time that it is at least 1."""
        if isinstance(value, Const):
            value = value.value
        where = f"split on stage {self.name}, axis {axis.name}: {what}"
        if not isinstance(value, Expr):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ScheduleError(f"{where} must be a positive int or an integer "
                                    f"expression, got {value!r}")
            return value
        if not value.dtype.is_int or value.dtype.lanes != 1:
            raise ScheduleError(f"{where} must be a positive int or a scalar integer "
                                f"expression, got {value} of dtype {value.dtype}")
        if collect(value, lambda n: isinstance(n, (TensorRead, Reduce))):
            raise ScheduleError(f"{where} must not read a tensor or reduce, got {value}")
        axes = {iv.var for iv in self.all_iter_vars}
        looped = [v.name for v in free_vars(value) if v in axes]
        if looped:
            raise ScheduleError(f"{where} must not depend on this stage's axes "
                                f"({', '.join(looped)}), got {value}")
        return ops.cast(INDEX, value) if value.dtype != INDEX else value

    def _refuse_symbolic(self, axes: list, primitive: str):
        """ScheduleError if one of `axes` has the extent of a split's symbolic factor (or
        nparts), which `primitive` needs constant."""
        for rel in self.relations:
            if isinstance(rel, Split) and rel.symbolic is not None and rel.symbolic_axis in axes:
                raise ScheduleError(f"{primitive} on stage {self.name}, axis "
                                    f"{rel.symbolic_axis.name}: its extent {rel.symbolic} is "
                                    f"symbolic (split by it), and {primitive} needs a constant "
                                    "one; split it again by a constant factor and "
                                    f"{primitive} the inner part")

    def _touch(self):
        self.schedule.version += 1

    # --- loop structure ---------------------------------------------------
    @recorded("split")
    def split(self, parent, factor=None, nparts=None, disable_predication: bool = False):
        """Split `parent` into (outer, inner); returns both.

        `factor` fixes the inner extent, `nparts` the outer one; exactly one is
        given: a positive int, or an integer expression of variables the call binds
        (a size variable, a scalar parameter passed in `build`'s args, `tex.tir.vscale()`),
        which each call checks is at least 1 (an ArgumentError naming the stage and axis
        otherwise). A symbolic part cannot be unrolled, vectorized, tensorized or bound
        to a thread axis of declared extent (ScheduleError). When the extent does not
        divide, the last iteration is guarded.

            for i in range(n):          for i_outer in range(ceil(n / 8)):
              body(i)           ->        for i_inner in range(8):
                                            if i_outer * 8 + i_inner < n: body(...)

        Lowering drops the guard where it can prove the split divides. With
        `disable_predication=True` it has no guard either way: the last part is shifted
        back to end at the parent's end, overlapping the part before (points computed
        twice, the same value stored twice), where that is safe: a data axis holding
        at least one whole part, of a stage without reduction axes that is not
        tensorized and at whose loops no reduction is computed; elsewhere the guard
        stays (TE trusts the split to divide). With a symbolic factor, where a whole
        part fitting in the axis depends on the call, each call checks it: an
        ArgumentError naming the stage and axis when the part is longer than the axis.

            for i_outer in range(ceil(n / 8)):
              for i_inner in range(8): body(min(i_outer * 8, n - 8) + i_inner)

        TVM: `split`; Halide: `split` (TailStrategy::GuardWithIf, or ShiftInwards
        with `disable_predication`).
        """
        parent = self._leaf(parent, "split")
        if (factor is None) == (nparts is None):
            raise ScheduleError(f"split on stage {self.name}, axis {parent.name}: give exactly "
                                "one of factor= and nparts=")
        if factor is not None:
            factor = self._part_size(factor, "factor", parent)
        else:
            nparts = self._part_size(nparts, "nparts", parent)
        outer = IterVar(Var(f"{parent.name}_outer", INDEX), None, parent.kind)
        inner = IterVar(Var(f"{parent.name}_inner", INDEX), None, parent.kind)
        self.relations.append(Split(parent, outer, inner, factor, nparts,
                                    bool(disable_predication)))
        self._replace_leaf(parent, [outer, inner])
        return outer, inner

    def tile(self, x_parent, y_parent, x_factor, y_factor):
        """Split two axes and order them (x_outer, y_outer, x_inner, y_inner); returns the four.

        TVM: `tile`; Halide: `tile`.
        """
        xo, xi = self.split(x_parent, factor=x_factor)
        yo, yi = self.split(y_parent, factor=y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    @recorded("fuse")
    def fuse(self, *axes):
        """Fuse adjacent axes (outermost first) into one; returns the fused axis.

            for i in range(n):                for i_j_fused in range(n * m):
              for j in range(m):      ->        body(i_j_fused // m, i_j_fused % m)

        One axis fuses to itself, so code that fuses a varying number of
        loops needs no special case; no axis gives a new outermost loop of one
        iteration (a 0-d stage gets a loop to bind to a GPU block, say).
        Stages computed at a fused axis move to the fused one.
        A data axis fused with a reduction axis gives a reduction axis (as in
        TE); each output's initial value is then stored at its first iteration,
        and the stage can no longer be rfactored, cached with cache_write, or
        have that axis bound to a thread axis.
        TVM: `fuse`; Halide: `fuse`.
        """
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        if not axes:
            return self._singleton()
        leaves = [self._leaf(a, "fuse") for a in axes]
        positions = [self.leaf_iter_vars.index(a) for a in leaves]
        for (a, pa), (b, pb) in zip(zip(leaves, positions), zip(leaves[1:], positions[1:])):
            if pb != pa + 1:
                order = ", ".join(v.name for v in self.leaf_iter_vars)
                raise ScheduleError(f"fuse on stage {self.name}: axes {a.name} and {b.name} are "
                                    f"not adjacent (outer first) in the loop order [{order}]")
        fused = leaves[0]
        for inner in leaves[1:]:
            kind = "reduce" if "reduce" in (fused.kind, inner.kind) else "data"
            new = IterVar(Var(f"{fused.name}_{inner.name}_fused", INDEX), None, kind)
            self.relations.append(Fuse(fused, inner, new))
            self._replace_leaf(fused, [new])
            self.leaf_iter_vars.remove(inner)
            fused = new
        self._move_attachments(leaves, fused)
        self._touch()
        return fused

    def refuse_mixed_fuse(self, primitive: str):
        """Raise ScheduleError if the stage fused a data axis with a reduction axis."""
        for r in self.relations:
            if isinstance(r, Fuse) and r.mixed:
                raise ScheduleError(f"{primitive} on stage {self.name}: axis {r.fused.name} "
                                    f"fuses data axis and reduction axis ({r.outer.name}, "
                                    f"{r.inner.name}); {primitive} needs them apart")

    def refuse_symbolic_splits(self, primitive: str, kind: str):
        """Raise ScheduleError if an axis of `kind` ("data" or "reduce") is split by a
        symbolic size: `primitive` would fold the split into the axes of a new operation,
        where lowering no longer sees it to check the size at run time."""
        for r in self.relations:
            if isinstance(r, Split) and r.kind == kind and r.symbolic is not None:
                raise ScheduleError(f"{primitive} on stage {self.name}: axis {r.parent.name} is "
                                    f"split by the symbolic {r.symbolic}, which {primitive} "
                                    "cannot carry over; split the axes it makes instead")

    def _singleton(self) -> IterVar:
        axis = IterVar(Var("singleton", INDEX), None, "data")
        self.relations.append(Singleton(axis))
        self.leaf_iter_vars.insert(0, axis)
        self._touch()
        return axis

    def _move_attachments(self, old_axes, new_axis: IterVar):
        """Stages computed at one of `old_axes` (split or fused away) go to `new_axis`,
        the innermost loop of what was that axis."""
        for stage in self.schedule.stages:
            attach = stage.attach
            if attach.kind == "at" and attach.stage is self and attach.axis in old_axes:
                stage.attach = Attach("at", self, new_axis)

    @recorded("reorder")
    def reorder(self, *axes):
        """Put the given axes in this order, in the loop positions they occupy now.

        TVM: `reorder`; Halide: `reorder` (which lists innermost first).
        """
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        leaves = [self._leaf(a, "reorder") for a in axes]
        seen = set()
        for a in leaves:
            if a in seen:
                raise ScheduleError(f"reorder on stage {self.name}: axis {a.name} is given "
                                    "twice")
            seen.add(a)
        positions = sorted(self.leaf_iter_vars.index(a) for a in leaves)
        for pos, a in zip(positions, leaves):
            self.leaf_iter_vars[pos] = a
        self._touch()

    def _replace_leaf(self, old, new: list):
        pos = self.leaf_iter_vars.index(old)
        self.leaf_iter_vars[pos:pos + 1] = new
        self._move_attachments([old], new[-1])
        for table in (self.annotations, self.pragmas, self.prefetches, self.bindings,
                      self.reduce_strategies):
            table.pop(old, None)
        if self.tensorized is not None and self.tensorized[0] is old:
            self.tensorized = None
        self._touch()

    # --- annotations -------------------------------------------------------
    def _annotate(self, axis, what: str):
        axis = self._leaf(axis, what)
        if axis in self.bindings:
            raise ScheduleError(f"{what} on stage {self.name}: axis {axis.name} is bound to "
                                f"{self.bindings[axis]}")
        if what == "parallel" and axis.kind == "reduce":
            raise ScheduleError(f"parallel on stage {self.name}: axis {axis.name} is a "
                                "reduction axis; parallel iterations would race on the "
                                "accumulator (use rfactor first)")
        if what in ("unroll", "vectorize"):
            self._refuse_symbolic([axis], what)
        previous = self.annotations.get(axis)
        if previous is not None and previous != what:
            raise ScheduleError(f"{what} on stage {self.name}: axis {axis.name} is already "
                                f"marked {previous}")
        self.annotations[axis] = what
        self._touch()

    @recorded("unroll")
    def unroll(self, axis):
        """Replace the loop by copies of its body (the extent must be constant: a
        split's symbolic part is a ScheduleError).

        TVM: `unroll`; Halide: `unroll`.
        """
        self._annotate(axis, "unroll")

    @recorded("vectorize")
    def vectorize(self, axis):
        """Run the loop as vector instructions, one lane per iteration (constant extent:
        a split's symbolic part is a ScheduleError).

        Loads and stores along the axis become vector loads and stores; a loop
        that cannot be vectorised (an inner loop whose bounds vary by lane, an
        allocation inside, a body already of vectors: a stage of a vector dtype
        such as float32x4, or an inner vectorized loop) runs as a plain loop
        instead.
        TVM: `vectorize`; Halide: `vectorize`.
        """
        self._annotate(axis, "vectorize")

    @recorded("parallel")
    def parallel(self, axis):
        """Run the loop's iterations on the thread pool (data axes only).

        TVM: `parallel`; Halide: `parallel`.
        """
        self._annotate(axis, "parallel")

    @recorded("pragma")
    def pragma(self, axis, key: str, value=None):
        """Attach a free-form (key, value) note to a loop; it is kept on the loop IR.

        Two keys are modules for the kernel instead, whatever the loop:
        "import_llvm" (an LLVM IR module's text, linked into CPU kernels) and
        "import_c" (CUDA C source, put before CUDA kernels); they define the
        functions that `tex.tir.call_extern` calls (`LoweredFunc.imports`).
        "launch_bounds" with a positive int `min_blocks`, on any loop of a CUDA
        kernel (e.g. the one bound to blockIdx.x), asks that `min_blocks` blocks fit
        on one multiprocessor at once: the kernel is emitted with
        `__launch_bounds__(threads, min_blocks)`, so ptxas keeps each thread within
        registers / (threads * min_blocks) registers. Its block size must be constant
        and threads * min_blocks at most the target's `max_threads_per_sm` (a
        `BuildError` otherwise). "reciprocal" (no value) asks that each float division
        in the loop's body by a value that does not change in the loop be a multiply by
        the value's reciprocal, computed once before the loop (softmax's division by the
        row sum; results may differ in the last bit, hence the opt-in;
        `tex.passes.hoist_reciprocals`). The divisor is then read before the loop, even
        when the loop runs no iteration, so it must be valid there.

        As in TVM, the keys "unroll" and "vectorize" without a value are `unroll(axis)`
        and `vectorize(axis)`. TVM: `pragma`; TVM's CUDA backend writes
        `__launch_bounds__` itself.
        """
        if key in ("unroll", "vectorize") and value is None:
            return getattr(self, key)(axis)
        axis = self._leaf(axis, "pragma")
        if not isinstance(key, str) or not key:
            raise ScheduleError(f"pragma on stage {self.name}, axis {axis.name}: key must be a "
                                f"non-empty string, got {key!r}")
        if key in IMPORT_PRAGMAS and not (isinstance(value, str) and value.strip()):
            raise ScheduleError(f"pragma {key} on stage {self.name}, axis {axis.name}: the "
                                f"value must be the module's text, got {value!r}")
        if key == LAUNCH_BOUNDS_PRAGMA and (type(value) is not int or value < 1):
            raise ScheduleError(f"pragma {key} on stage {self.name}, axis {axis.name}: the "
                                f"value is the least number of blocks per multiprocessor, a "
                                f"positive int, got {value!r}")
        self.pragmas.setdefault(axis, []).append((key, value))
        self._touch()

    @recorded("prefetch")
    def prefetch(self, tensor, axis, offset: int = 1):
        """At the top of each iteration of loop `axis`, prefetch the part of `tensor`
        that this stage reads `offset` iterations later, so that the memory traffic
        overlaps the current iteration's work (CPU loops).

            for i in range(n):                  for i in range(n):
              Y[i, :] = f(X[i, :])      ->        prefetch(X[min(i + 1, n - 1), :])
                                                  Y[i, :] = f(X[i, :])

        The part is what this stage and the stages computed inside `axis` read
        of `tensor` in the loops inside it, as bound inference would compute it
        (gathers left out: their addresses are not known ahead), one prefetch
        per 64-byte cache line; it is kept inside the tensor (the last
        iterations prefetch their own lines again). Prefetching changes no
        result. Worth it where an iteration
        computes a while on data it has already loaded, e.g. a row softmax,
        whose passes over a row in L1 leave the memory idle.

        Errors: `tensor` must be a tensor that this stage reads (checked when
        lowering) and `offset` a positive int; `axis` must not be vectorized or
        bound to a GPU thread axis. Splitting or fusing `axis` drops it.
        TVM: `prefetch(tensor, var, offset)`; Halide: `prefetch`.
        """
        axis = self._leaf(axis, "prefetch")
        if not isinstance(tensor, Tensor):
            raise ScheduleError(f"prefetch on stage {self.name}, axis {axis.name}: expected a "
                                f"tensor, got {type(tensor).__name__} {tensor!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
            raise ScheduleError(f"prefetch of {tensor.name} on stage {self.name}, axis "
                                f"{axis.name}: offset must be a positive int, got {offset!r}")
        if axis in self.bindings or self.annotations.get(axis) == "vectorize":
            how = self.bindings.get(axis) or "vectorized"
            raise ScheduleError(f"prefetch of {tensor.name} on stage {self.name}: axis "
                                f"{axis.name} is {how}; prefetch at a serial, unrolled or "
                                "parallel loop")
        self.prefetches.setdefault(axis, []).append((tensor, offset))
        self._touch()

    # --- where it is computed -------------------------------------------------
    @recorded("compute_at")
    def compute_at(self, parent, axis):
        """Compute this stage inside loop `axis` of its consumer `parent`, only the part needed.

            for i in range(n):            for i in range(n):
              P[i] = f(i)         ->        P_at[0] = f(i)       # just what C[i] reads
            for i in range(n):              C[i] = g(P_at[0])
              C[i] = g(P[i])

        Splitting or fusing `axis` afterwards moves this stage to the innermost
        loop made of it (the same place). A kernel argument may be computed at
        a loop: each iteration writes its part into the argument.
        Errors: `parent` must be a stage and `axis` one of its loops. As in TE,
        the rest is checked when lowering, so that a later `compute_at` or
        `compute_root` may correct it: `parent` is not this stage and uses it
        (directly or through other stages), this stage is not an output, and
        every stage that reads this one runs inside that loop.
        TVM: `compute_at`; Halide: `compute_at`.
        """
        if not isinstance(parent, Stage):
            raise ScheduleError(f"compute_at on stage {self.name}: parent must be a stage "
                                f"(s[T]), got {type(parent).__name__}")
        parent._leaf(axis, "compute_at")
        self.attach = Attach("at", parent, axis)
        self._touch()

    @recorded("compute_inline")
    def compute_inline(self):
        """Substitute this stage's expression into every consumer; it gets no loops of its own.

        TVM: `compute_inline`; Halide: the default (no schedule).
        """
        if self.schedule.is_output(self):
            raise ScheduleError(f"compute_inline on stage {self.name}: it is an output of the "
                                "schedule, so it must be stored")
        if self.op.reduce_axis:
            raise ScheduleError(f"compute_inline on stage {self.name}: a reduction cannot be "
                                "inlined; compute it at a consumer's loop instead")
        if self.op.num_outputs > 1:
            raise ScheduleError(f"compute_inline on stage {self.name}: an operation with "
                                "several outputs cannot be inlined")
        self.attach = INLINE
        self._touch()

    @recorded("compute_root")
    def compute_root(self):
        """Compute this stage in full, at the top level, before its consumers (the default).

        TVM: `compute_root`; Halide: `compute_root`.
        """
        self.attach = ROOT
        self._touch()

    # --- storage ---------------------------------------------------------------
    @recorded("storage_align")
    def storage_align(self, axis, factor: int, offset: int):
        """Pad the stride of dimension `axis` so that stride % factor == offset.

        `axis` is one of the operation's own axes (`op.axis[d]`). Used to
        avoid cache-set (or shared-memory bank) conflicts.
        TVM: `storage_align`.
        """
        if axis not in self.op.axis:
            name = getattr(axis, "name", axis)
            raise ScheduleError(f"storage_align on stage {self.name}: {name} is not one of "
                                "the operation's own data axes (op.axis)")
        self._positive(factor, "factor", "storage_align", axis)
        if not isinstance(offset, int) or not 0 <= offset < factor:
            raise ScheduleError(f"storage_align on stage {self.name}, axis {axis.name}: offset "
                                f"must be an int in [0, {factor}), got {offset!r}")
        self.storage_aligns[list(self.op.axis).index(axis)] = (factor, offset)
        self._touch()

    @recorded("set_scope")
    def set_scope(self, scope: str):
        """Where the stage's buffer lives: "global", "shared" or "local".

        On a GPU, "shared" memory is seen by every thread of a block and
        "local" is private to each thread (registers). A stage computed
        inside a GPU kernel keeps the scope it is given; left "global", it
        becomes "local" under a loop bound to threadIdx and "shared" under
        loops bound to blockIdx only. Bound inference sizes a shared buffer
        for every thread of the block, a local one for one thread.
        TVM: `set_scope`; Halide: `store_in(MemoryType.GPUShared)`.
        """
        if scope not in SCOPES:
            raise ScheduleError(f"set_scope on stage {self.name}: scope must be one of "
                                f"{', '.join(map(repr, SCOPES))}, got {scope!r}")
        self.scope = scope
        self._touch()

    @recorded("double_buffer")
    def double_buffer(self):
        """Overlap the copy into this stage's shared buffer with the work that reads it.

        For a stage computed in shared memory at a serial loop of its consumer (a tile
        fetched at each step of a reduction, say), lowering keeps two buffers and
        fills one for the next iteration while the consumer reads the other: the
        first tile is fetched before the loop, and each iteration loads the next one
        into registers before computing on the current one and stores it to the other
        buffer after (the loop is unrolled by two, each half with its own buffer;
        `tex.passes.inject_double_buffer`). One barrier per iteration remains instead
        of two, and the next tile's loads are issued before the arithmetic on this one.
        Checked by lowering: the stage is computed with compute_at, at a serial loop
        (not bound, unrolled, vectorized or parallel), in shared memory. Replaces an
        earlier `pipeline` of the stage.
        TVM: `double_buffer`.
        """
        self.double_buffered = True
        self.pipeline_stages = 0
        self._touch()

    @recorded("pipeline")
    def pipeline(self, stages: int = 3):
        """Fetch this stage's shared tiles `stages - 1` iterations ahead, asynchronously.

        For a stage computed in shared memory at a serial loop `v` of its consumer,
        like `double_buffer`: its buffer gets a leading dimension of `stages` slots;
        before the loop the tiles of iterations 0 .. stages-2 are fetched, and
        iteration v waits for its tile, passes one barrier, starts fetching the tile
        of v + stages - 1 into the slot iteration v - 1 read, and computes on its own.
        The copies from global memory are `cp.async` (sm_80 and newer: 4, 8 or 16
        bytes each, a zero-filled copy for a padded element) wherever the store
        is a plain copy of that many aligned bytes; others stay ordinary stores.
        Each iteration's copies are one commit group, and `cp.async.wait_group`
        stages-2 waits for the oldest. `stages=2` is double buffering with
        asynchronous copies; `double_buffer()` keeps its synchronous two-buffer form.

            for v in range(n):             fill(0) ... fill(stages-2) into slots
              fill(v)                      for v in range(n):
              body(v)              ->        wait until fill(v) landed; barrier
                                             fill(v + stages - 1) into its slot
                                             body(v) reading slot v % stages

        Args: `stages`, the number of slots (tiles in flight plus the one read).
        Checked by lowering: the stage is computed with compute_at, at a serial
        loop of a GPU kernel, in shared memory, and the stages computed at that loop
        with `pipeline` agree on `stages` (and none of them is double-buffered).
        The loop ends with a wait for every copy and one more barrier. Raises
        ScheduleError unless `stages` is an int of at least 2. Replaces an
        earlier `double_buffer` of the stage.
        TVM: `software_pipeline_stage` annotations; CUTLASS: multistage mainloop.
        """
        if not isinstance(stages, int) or isinstance(stages, bool) or stages < 2:
            raise ScheduleError(f"pipeline on stage {self.name}: stages must be an int of at "
                                f"least 2, got {stages!r}")
        self.pipeline_stages = stages
        self.double_buffered = False
        self._touch()

    # --- GPU ---------------------------------------------------------------------
    @recorded("bind")
    def bind(self, axis, thread_axis):
        """Run the iterations of loop `axis` on the GPU threads of `thread_axis`.

        `thread_axis` is `tex.thread_axis(tag)` (or the tag itself). Each tag
        is bound at most once per stage. Stages computed inside a bound loop
        may bind the same tag again: it means the same threads (that is how a
        block fetches a shared tile together). A reduction axis bound to a
        threadIdx axis is reduced across threads (`reduce_strategy` "shared"
        or "warp"); one bound to a blockIdx axis is split across blocks and
        combined with atomics ("atomic").
        TVM: `bind`; Halide: `gpu_blocks` / `gpu_threads`.
        """
        axis = self._leaf(axis, "bind")
        tag = thread_axis.tag if isinstance(thread_axis, ThreadAxis) else thread_axis
        if tag not in THREAD_TAGS:
            raise ScheduleError(f"bind on stage {self.name}, axis {axis.name}: expected "
                                f"tex.thread_axis(...) or one of {', '.join(THREAD_TAGS)}, "
                                f"got {thread_axis!r}")
        if axis in self.annotations:
            raise ScheduleError(f"bind on stage {self.name}: axis {axis.name} is already "
                                f"marked {self.annotations[axis]}")
        for other, other_tag in self.bindings.items():
            if other_tag == tag and other is not axis and tag != "vthread":
                raise ScheduleError(f"bind on stage {self.name}: {tag} is already bound to "
                                    f"axis {other.name}; a thread axis is bound once per stage")
        if axis.kind == "reduce":
            self.refuse_mixed_fuse("bind")
        if axis.kind == "reduce" and tag == "vthread":
            raise ScheduleError(f"bind on stage {self.name}: reduction axis {axis.name} "
                                "cannot be a vthread; bind it to threadIdx or blockIdx")
        declared, known = getattr(thread_axis, "extent", None), self._known_extent(axis)
        if declared is not None:
            self._refuse_symbolic([axis], "bind")
        if declared is not None and known is not None and declared != known:
            raise ScheduleError(f"bind on stage {self.name}: axis {axis.name} has {known} "
                                f"iterations but thread axis {thread_axis.name} was declared "
                                f"with range (0, {declared})")
        self.bindings[axis] = tag
        self._touch()

    def _known_extent(self, axis: IterVar) -> int | None:
        """The constant extent of `axis` where its declaration or split fixes it, else None."""
        for rel in self.relations:
            if isinstance(rel, Split) and axis is rel.inner and rel.factor is not None:
                return None if rel.symbolic is not None else rel.factor
            if isinstance(rel, Split) and axis is rel.outer and rel.nparts is not None:
                return None if rel.symbolic is not None else rel.nparts
        if axis.dom is not None and isinstance(axis.dom.extent, Const) \
                and isinstance(axis.dom.min, Const) and axis.dom.min.value == 0:
            return axis.dom.extent.value
        return None

    @recorded("set_store_predicate")
    def set_store_predicate(self, predicate):
        """Store the stage's values only where `predicate` holds: every store into its
        output (a reduction's initial value and updates too; after a reduction across
        GPU threads, the write of the combined result).

        `predicate` is a bool expression of the stage's axes and of thread axes'
        `var` (`tx.var.equal(0)`: only the first thread along `tx` writes, as after
        a reduction across threads). TVM: `set_store_predicate`.
        """
        cond = ops.as_expr(predicate)
        if not cond.dtype.is_bool or cond.dtype.lanes != 1:
            raise ScheduleError(f"set_store_predicate on stage {self.name}: expected a bool "
                                f"expression, got {cond} ({cond.dtype})")
        self.store_predicate = cond
        self._touch()

    @recorded("reduce_strategy")
    def reduce_strategy(self, axis, strategy: str):
        """How the partial results of reduction loop `axis`, bound to GPU threads, combine.

        * "shared": each thread stores its partial result in shared memory and
          the block combines them in a tree (halving the active threads per
          step, a barrier between steps). Any reducer, any bound threadIdx axis.
        * "warp": warp shuffles combine the lanes of each warp without memory;
          with more than one warp per reduction, one value per warp passes
          through shared memory and a second shuffle round combines those.
          The axis must be bound to threadIdx.x, with a power of two up to 32
          threads or a multiple of 32. The default for a threadIdx-bound
          reduction that allows it (else "shared").
        * "atomic": the axis is bound to a blockIdx axis (split-K); each block
          reduces its part and adds it to the output with one atomic update
          per element, after a generated kernel fills the output with the
          identity. Sum, min and max only. Float sums then depend on the
          order blocks finish in, so results may differ in the last bits
          from run to run.

        TVM: `tvm.tir.transform.LowerThreadAllreduce` chooses shared or warp
        by itself; tex makes it a schedule decision the autotuner can search.
        """
        axis = self._leaf(axis, "reduce_strategy")
        if axis.kind != "reduce":
            raise ScheduleError(f"reduce_strategy on stage {self.name}: axis {axis.name} is a "
                                "data axis; give a reduction axis bound to a thread axis")
        if strategy not in REDUCE_STRATEGIES:
            raise ScheduleError(f"reduce_strategy on stage {self.name}, axis {axis.name}: "
                                "strategy must be one of "
                                f"{', '.join(map(repr, REDUCE_STRATEGIES))}, got {strategy!r}")
        self.reduce_strategies[axis] = strategy
        self._touch()

    # --- intrinsics ----------------------------------------------------------------
    @recorded("tensorize")
    def tensorize(self, axis, intrin):
        """Replace the loops from `axis` inward (the tile) by the intrinsic `intrin`.

        `intrin` comes from `tex.decl_tensor_intrin`. At lowering the tile's
        data loops, in order, must have the extents of the intrinsic's data
        axes, its reduction loops those of its reduction axes, and the
        stage's body must be the intrinsic's with tensors and variables
        renamed (`tex.schedule.tensorize` has the rules); otherwise
        LoweringError names what differs. The tile must divide the domain
        (no guard inside it). For a reduction with reduction loops outside
        the tile, the intrinsic's reset statement replaces the init of the
        tile and its update the accumulation. Splitting or fusing `axis`
        afterwards forgets the decision.

            for io, jo, ko:                       for io, jo:
              for ii in range(16):                  mma_reset(C tile)
                for ji in range(16):      ->        for ko:
                  for ki in range(16):                mma_update(A, B, C tiles)
                    C[...] += A[...] * B[...]

        TVM: `tensorize`.
        """
        axis = self._leaf(axis, "tensorize")
        if not isinstance(intrin, TensorIntrin):
            raise ScheduleError(f"tensorize on stage {self.name}, axis {axis.name}: expected an "
                                f"intrinsic from tex.decl_tensor_intrin, got "
                                f"{type(intrin).__name__} {intrin!r}")
        self._refuse_symbolic(self.leaf_iter_vars[self.leaf_iter_vars.index(axis):],
                              "tensorize")
        self.tensorized = (axis, intrin)
        self._touch()

    def describe(self) -> list[str]:
        """The stage's records, one line each (for logs and printing)."""
        lines = [r.describe() for r in self.relations]
        lines.append("loops: " + ", ".join(v.name for v in self.leaf_iter_vars))
        for iv, what in self.annotations.items():
            lines.append(f"{what}({iv.name})")
        for iv, tag in self.bindings.items():
            lines.append(f"bind({iv.name}, {tag})")
        for iv, strategy in self.reduce_strategies.items():
            lines.append(f"reduce_strategy({iv.name}, {strategy!r})")
        if self.tensorized is not None:
            axis, intrin = self.tensorized
            lines.append(f"tensorize({'body' if axis is None else axis.name}, {intrin.name})")
        if self.scope != "global":
            lines.append(f"set_scope({self.scope!r})")
        if self.double_buffered:
            lines.append("double_buffer()")
        if self.pipeline_stages:
            lines.append(f"pipeline(stages={self.pipeline_stages})")
        if self.attach.kind == "at":
            lines.append(f"compute_at({self.attach.stage.name}, {self.attach.axis.name})")
        elif self.attach.kind == "inline":
            lines.append("compute_inline()")
        return lines

