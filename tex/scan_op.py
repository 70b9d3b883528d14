"""`scan`: a recurrence along the first axis, each step reading the steps before it.

    out[0:k, ...]  = init                      (k = the extent of init's first axis)
    out[t, ...]    = update at t, for t in [k, m), where update reads the state at
                     t - 1, t - 2, ... (at most t - k), meaning out's earlier rows

`scan(init, update, state_placeholder)` declares it as in TE: the state is a
placeholder standing for the scan's own output, `update` a compute over the
output's whole shape that reads it, `init` a compute (or tensor) giving the
first rows. Several states at once are lists of the three; their updates
share the first dimension. The result is a `ScanOp` with the updates' shapes
and dtypes; its `scan_axis` runs over [k, m) and `spatial_axis` over the
other dimensions: those of the first update when every update has its shape,
else those of each update in turn (as in TE).

What each step computes is the updates and every compute between them and the
states (`ScanOp.step_ops`); the schedule computes those inside the scan axis.
Operations are compared by identity, like the others of `tex.tensor`.
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX
from tex.errors import ExprError
from tex.expr import Const, TensorRead, Var
from tex.tensor import ComputeOp, IterVar, PlaceholderOp, Range, Tensor, compute
from tex.visitor import collect


class ScanOp:
    """The operation of `scan`: outputs with the updates' shape, filled row by row.

    `axis` is (`scan_axis`, *`spatial_axis`), the loops of its stage; `body[k]`
    is what output k holds at a point of them, the value of update k there (the
    update's stage writes it in place, and reads of the state read the output).
    Output k is indexed by the scan axis and its own spatial axes: all of them
    when the outputs share a shape, else its part of them, in output order.
    """

    reduce_axis = ()

    def __init__(self, name: str, axis: tuple[IterVar, ...], *, init: tuple[Tensor, ...],
                 update: tuple[Tensor, ...], state_placeholder: tuple[Tensor, ...],
                 inputs: tuple[Tensor, ...]):
        self.name, self.axis = name, axis
        self.init, self.update, self.inputs = init, update, inputs
        self.state_placeholder = state_placeholder
        self.shapes = tuple(u.shape for u in self.update)
        self.shape = self.shapes[0]
        self.dtypes = tuple(u.dtype for u in self.update)
        self.body = tuple(TensorRead(u, (axis[0].var,) + tuple(iv.var for iv in spatial))
                          for u, spatial in zip(self.update, _spatial_of_outputs(axis, update)))
        self.outputs = tuple(Tensor(self, k) for k in range(len(self.update)))

    @property
    def scan_axis(self) -> IterVar:
        """The axis of the steps, over [init extent, m); its iterations run in order."""
        return self.axis[0]

    @property
    def spatial_axis(self) -> tuple[IterVar, ...]:
        """The axes of the other dimensions."""
        return self.axis[1:]

    @property
    def num_outputs(self) -> int:
        return len(self.update)

    def output(self, index: int = 0) -> Tensor:
        return self.outputs[index]

    @property
    def input_tensors(self) -> tuple[Tensor, ...]:
        """The inits and updates: the tensors whose stages write the outputs."""
        return tuple(dict.fromkeys(self.init + self.update))

    @property
    def step_ops(self) -> tuple[ComputeOp, ...]:
        """The computes each step runs, producers first: the updates and the computes
        between them and the states that read a state (through others or not)."""
        return _reading_states(self.update, set(self.state_placeholder), set(self.inputs))

    def __repr__(self):
        return f"scan {self.name}"


def _spatial_of_outputs(axis, update) -> list[tuple[IterVar, ...]]:
    """The spatial axes of each output (see `ScanOp`)."""
    spatial = axis[1:]
    if all(_same_extents(u.shape, update[0].shape) for u in update):
        return [spatial] * len(update)
    parts, start = [], 0
    for u in update:
        parts.append(spatial[start:start + len(u.shape) - 1])
        start += len(u.shape) - 1
    return parts


def _reading_states(update, states: set, inputs: set) -> tuple[ComputeOp, ...]:
    """The compute ops that `update` reaches without passing `inputs` and that read one
    of `states` (directly or through others), producers first; the update ops always."""
    order, reads_state = [], {}

    def visit(op) -> bool:
        if op not in reads_state:
            reads_state[op] = False
            found = False
            for t in op.input_tensors:
                if t in states:
                    found = True
                elif t not in inputs and isinstance(t.op, ComputeOp):
                    found = visit(t.op) or found
            reads_state[op] = found
            order.append(op)
        return reads_state[op]
    for t in update:
        visit(t.op)
    updates = {t.op for t in update}
    return tuple(op for op in order if reads_state[op] or op in updates)


def scan(init, update, state_placeholder, inputs=None, name: str = "scan"):
    """A scan along the first axis (see the module docstring): returns the output
    tensor, or a list of them for several states.

    Errors (`ExprError`): lists of different lengths; an update that is not a
    compute, a state that is not a placeholder; shapes or dtypes that disagree
    (the state has the update's shape, init the same trailing dimensions); a
    step reading the state other than at t - c, 1 <= c <= the init's extent.
    TVM: `te.scan`.
    """
    init, update, state = (_tensors(x, what, name) for x, what in
                           ((init, "init"), (update, "update"),
                            (state_placeholder, "state_placeholder")))
    if not len(init) == len(update) == len(state):
        raise ExprError(f"scan {name}: init, update and state_placeholder must be as many, "
                        f"got {len(init)}, {len(update)} and {len(state)}")
    inputs = _tensors(inputs or [], "inputs", name)
    init = tuple(_computed(t, k, name) for k, t in enumerate(init))
    first = _check_shapes(init, update, state, name)
    op = ScanOp(name, _scan_axes(update, first, name), init=init, update=update,
                state_placeholder=state, inputs=inputs)
    _check_state_reads(op, first)
    return op.outputs[0] if op.num_outputs == 1 else list(op.outputs)


def _tensors(value, what: str, name: str) -> tuple[Tensor, ...]:
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        if not isinstance(item, Tensor):
            raise ExprError(f"scan {name}: {what} must be a tensor or a list of tensors, got "
                            f"{type(item).__name__} {item!r}")
    if not items and what != "inputs":
        raise ExprError(f"scan {name}: {what} is empty; give at least one tensor")
    return items


def _computed(init: Tensor, k: int, name: str) -> Tensor:
    """`init`, or for an input a compute copying it (the scan writes its rows in place)."""
    if isinstance(init.op, PlaceholderOp):
        return compute(init.shape, lambda *i: init[i], name=f"{name}_init{k}")
    return init


def _check_shapes(init, update, state, name: str) -> Const:
    """The checked shapes and dtypes; returns the first step (the inits' extent)."""
    for k, (i, u, s) in enumerate(zip(init, update, state)):
        shape = u.shape
        if not isinstance(u.op, ComputeOp):
            raise ExprError(f"scan {name}: update {k} must be a compute, got {u.op!r}")
        if not isinstance(s.op, PlaceholderOp):
            raise ExprError(f"scan {name}: state_placeholder {k} must be a placeholder, got "
                            f"{s.op!r}")
        if not shape or not _same_extents(shape[:1], update[0].shape[:1]):
            raise ExprError(f"scan {name}: update {u.name} has shape {_text(shape)}; every "
                            f"update needs at least one dimension and the first update's "
                            f"first, {_text(update[0].shape[:1])}")
        if not _same_extents(s.shape, shape):
            raise ExprError(f"scan {name}: state_placeholder {s.name} has shape "
                            f"{_text(s.shape)}, expected the update's {_text(shape)}")
        if len(i.shape) != len(shape) or not _same_extents(i.shape[1:], shape[1:]):
            raise ExprError(f"scan {name}: init {i.name} has shape {_text(i.shape)}; after its "
                            f"first dimension it needs the update's {_text(shape[1:])}")
        if not i.dtype == u.dtype == s.dtype:
            raise ExprError(f"scan {name}: init {i.name}, update {u.name} and state "
                            f"{s.name} must have one dtype, got {i.dtype}, {u.dtype}, {s.dtype}")
    first = simplify(init[0].shape[0])
    if not isinstance(first, Const) or not all(_same_extents(i.shape[:1], (first,))
                                               for i in init):
        raise ExprError(f"scan {name}: the inits' first dimension must be one constant number "
                        f"of rows, got {', '.join(_text(i.shape[:1]) for i in init)}")
    steps = simplify(ops.binary("sub", update[0].shape[0], first))
    if isinstance(steps, Const) and steps.value < 0:
        raise ExprError(f"scan {name}: init has {first.value} rows, more than the "
                        f"{_text(update[0].shape[:1])} of the update")
    return first


def _same_extents(a, b) -> bool:
    return len(a) == len(b) and all(
        isinstance(d := simplify(ops.binary("sub", x, y)), Const) and d.value == 0
        for x, y in zip(a, b))


def _text(shape) -> str:
    return "(" + ", ".join(str(simplify(e)) for e in shape) + ")"


def _scan_axes(update, first: Const, name: str) -> tuple[IterVar, ...]:
    """The scan axis over [first, m) and a spatial axis per other dimension: of the first
    update when all updates share its shape, else of each update in turn."""
    steps = simplify(ops.binary("sub", update[0].shape[0], first))
    axes = [IterVar(Var(f"{name}_idx", INDEX), Range(first, steps), "data")]
    shared = all(_same_extents(u.shape, update[0].shape) for u in update)
    for u in update[:1] if shared else update:
        for iv, extent in zip(u.op.axis[1:], u.shape[1:]):
            axes.append(IterVar(Var(iv.name, INDEX), Range(Const(INDEX, 0), extent), "data"))
    return tuple(axes)


def _check_state_reads(op: ScanOp, first: Const):
    """Every read of a state by a step's compute is at row `t - c`, `t` the compute's
    first axis and `1 <= c <= first` (the rows before t that exist)."""
    states = set(op.state_placeholder)
    for step in op.step_ops:
        for b in step.body:
            for read in collect(b, lambda n: isinstance(n, TensorRead) and n.tensor in states):
                if not step.axis:
                    raise ExprError(f"scan {op.name}: compute {step.name} reads state "
                                    f"{read.tensor.name} but has no first axis to be the step")
                time = step.axis[0].var
                back = simplify(ops.binary("sub", time, read.indices[0]))
                if not (isinstance(back, Const) and 1 <= back.value <= first.value):
                    rows = "t - 1" + (f" to t - {first.value}" if first.value > 1 else "")
                    raise ExprError(
                        f"scan {op.name}: compute {step.name} reads state {read.tensor.name} at "
                        f"row {read.indices[0]}; at step t (its first axis) it may read rows "
                        f"{rows} only, written by init or earlier steps")
