"""The nest of an extern stage (`tex.extern`): its statement, run once at the root.

The statement names placeholder buffers, one per input and per output of
the extern operation; here they become the buffers the tensors got
(`tex.lower.buffers`): the parameters, or the allocations of the stages
computed at the root. Every input is whole and compact in memory there,
which is what a packed function that takes it as an array needs.
"""
from __future__ import annotations

from tex.errors import LoweringError
from tex.ir import Load, Stmt, Store
from tex.visitor import transform


def extern_nest(plan, buffers: dict) -> Stmt:
    """The statement of `plan`'s extern operation, on the buffers of its tensors."""
    op = plan.op
    bound = {}
    for tensor, placeholder in zip(op.inputs, op.input_placeholders):
        entry = buffers.get(tensor)
        if entry is None:
            raise LoweringError(f"tensor {tensor.name} is read but is neither computed by the "
                                "schedule nor given in args")
        if entry.buffer.strides is not None:
            raise LoweringError(f"the extern stage {op.name} reads {tensor.name}, whose rows "
                                "storage_align pads; its statement takes compact arrays, so "
                                f"leave storage_align out for {tensor.name}")
        bound[placeholder] = entry.buffer
    for tensor, placeholder in zip(op.outputs, op.output_placeholders):
        bound[placeholder] = buffers[tensor].buffer
    return transform(op.statement, lambda node: _rebound(node, bound))


def _rebound(node, bound: dict):
    """`node` accessing the buffer `bound` gives for its placeholder (None: unchanged)."""
    if isinstance(node, Load) and node.buffer in bound:
        return Load(bound[node.buffer], node.indices)
    if isinstance(node, Store) and node.buffer in bound:
        return Store(bound[node.buffer], node.value, node.indices)
    return None
