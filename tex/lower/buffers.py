"""The buffer of every tensor a kernel reads or writes, and tensor reads made loads.

A parameter is its own buffer, indexed by the tensor's own indices (also
when its stage is computed at a loop, part by part). Each output of an extern
stage has a buffer of its own whole shape. A stage computed at the
root gets a buffer of its whole shape; one computed at a loop gets a buffer of
the part it computes there (`StagePlan.alloc_shape`), indexed from the part's start (`offsets`),
in the scope `storage_scope` gives it, with the strides `storage_align` asks
for; a per-thread "local" buffer is indexed from offsets in the thread's
index, written as the index's own threadIdx-bound loop variable
(`tex.lower.bound.per_thread_storage`); a strided dimension of it holds only
the thread's points, an index mapped to its compact position (`bound.compact`).
A tensor of a vector dtype lives in a buffer of its element dtype with the lanes as a
last dimension (`tex.ir.tensor_buffer`); reading or writing an element accesses all
its lanes at once, a vector load or store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from tex import ops
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Expr, TensorRead
from tex.ir import Buffer, Load, ThreadIndex, lane_index, tensor_buffer
from tex.lower.bound import compact, storage_scope, thread_vars
from tex.tensor import ExternOp, PlaceholderOp
from tex.visitor import free_vars, transform

_ZERO = Const(INDEX, 0)


@dataclass(frozen=True, eq=False)
class TensorBuffer:
    """Where a tensor lives: element `x` of the tensor is `buffer[x - offsets]`
    (`offsets` None: `buffer[x]`). An `argument` buffer is a kernel parameter; a
    `borrowed` one is another tensor's, which allocates it (a scan's inits, updates
    and states live in the scan's output). Lowering allocates the others. A
    per-thread buffer's offsets hold `ThreadIndex`es; `thread_vars` maps each
    threadIdx-bound loop variable to its thread's index; `digits` (per dimension, None
    where contiguous) map a strided dimension's offset to its compact position.
    """

    buffer: Buffer
    offsets: tuple[Expr, ...] | None = None
    argument: bool = False
    borrowed: bool = False
    thread_vars: Mapping | None = None
    digits: tuple | None = None
    lanes: int = 1

    @property
    def allocated_here(self) -> bool:
        """Whether lowering allocates this buffer for the tensor."""
        return not (self.argument or self.borrowed)

    def index(self, indices) -> tuple[Expr, ...]:
        """The buffer index of the tensor's element `indices` (of a vector dtype, with
        all the lanes of the last dimension: the index is a vector)."""
        index = self._element_index(indices)
        return index if self.lanes == 1 else (*index, lane_index(self.lanes))

    def _element_index(self, indices) -> tuple[Expr, ...]:
        if self.offsets is None:
            return tuple(indices)
        if self.thread_vars is None:
            return tuple(ops.binary("sub", i, o) for i, o in zip(indices, self.offsets))
        index = tuple(ops.binary("sub", i, self._thread_offset(o, i))
                      for i, o in zip(indices, self.offsets))
        if self.digits is None:
            return index
        return tuple(i if d is None else compact(i, d) for i, d in zip(index, self.digits))

    def _thread_offset(self, offset: Expr, index: Expr) -> Expr:
        """A per-thread buffer's `offset` (in `ThreadIndex`es) for `index`: each thread's
        index written as the loop variable bound to it in `index`, if any, so that the
        two cancel where the loop's range is known."""
        own = {self.thread_vars[v].tag: v for v in free_vars(index) if v in self.thread_vars}
        return transform(offset, lambda n: own.get(n.tag) if isinstance(n, ThreadIndex)
                         else None)


def make_buffers(plans, params: dict) -> dict:
    """Tensor -> TensorBuffer for every tensor a kernel reads or writes; `params` maps
    the argument tensors to their parameter buffers."""
    buffers = {t: TensorBuffer(b, argument=True, lanes=t.dtype.lanes)
               for t, b in params.items() if isinstance(t.op, PlaceholderOp)}
    threads = thread_vars(plans)
    for plan in plans:
        stage = plan.stage
        for k in range(plan.op.num_outputs):
            origin, current = stage.origin_op.output(k), plan.op.output(k)
            buf, lanes = params.get(origin) or params.get(current), current.dtype.lanes
            if isinstance(plan.op, ExternOp):  # whole outputs, which may differ in shape
                entry = TensorBuffer(buf or Buffer(current.name, current.dtype, current.shape),
                                     argument=buf is not None)
            elif buf is None:
                buf = tensor_buffer(current.name, current.dtype, plan.alloc_shape,
                                    storage_scope(stage),
                                    _aligned_strides(stage, plan.alloc_shape))
                per_thread = threads if plan.storage_offsets is not None else None
                entry = TensorBuffer(buf, tuple(plan.offsets), thread_vars=per_thread,
                                     digits=plan.storage_digits, lanes=lanes)
            else:  # an argument holds the whole tensor, even when computed part by part
                entry = TensorBuffer(buf, tuple(_ZERO for _ in plan.offsets), argument=True,
                                     lanes=lanes)
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


def to_loads(expr, buffers: dict):
    """`expr` with each tensor read replaced by a load of the tensor's buffer."""
    def load(node):
        if isinstance(node, TensorRead):
            entry = buffers.get(node.tensor)
            if entry is None:
                raise LoweringError(f"tensor {node.tensor.name} is read but is neither computed "
                                    "by the schedule nor given in args")
            return Load(entry.buffer, entry.index(node.indices))
        return None
    return transform(expr, load)
