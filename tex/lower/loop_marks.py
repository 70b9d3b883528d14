"""Marks on loops for the passes that expand them, with the schedule's checks.

`Stage.prefetch`, `Stage.double_buffer` and `Stage.pipeline` change how a loop
runs, not what it computes. Lowering checks that they apply where the schedule
put them and marks the loop's body (`PrefetchAhead`, `DoubleBuffer`,
`Pipeline`); the passes `inject_prefetch`, `inject_double_buffer` and
`inject_pipeline` expand the marks.
"""
from __future__ import annotations

from tex.errors import LoweringError
from tex.ir import DoubleBuffer, Load, Pipeline, PrefetchAhead, seq
from tex.lower.bound import enclosing_loops
from tex.visitor import collect


def check_double_buffer(kind: str, fills: list, buffers: dict,
                        primitive: str = "double_buffer") -> tuple:
    """The buffers of the double-buffered (or pipelined: `primitive`) stages `fills`, all
    computed at one loop of kind `kind`, checked: the loop is serial and the buffers
    are in shared memory. `buffers` maps tensors to their `TensorBuffer`s."""
    found = []
    for child in fills:
        attach = child.stage.attach
        where = (f"{primitive} on stage {child.stage.name}: it is computed at loop "
                 f"{attach.axis.name} of stage {attach.stage.name}")
        if kind != "serial":
            raise LoweringError(f"{where}, which is {kind}; {_VERB[primitive]} at a serial "
                                "loop")
        for t in child.op.outputs:
            buffer = buffers[t].buffer
            if buffer.scope != "shared":
                raise LoweringError(f"{where}, into {buffer.scope} memory; "
                                    f"{_NOUN[primitive]} is for shared memory (compute it at a "
                                    "loop outside the threadIdx loops, or set_scope('shared'))")
            found.append(buffer)
    return tuple(found)


_VERB = {"double_buffer": "double-buffer", "pipeline": "pipeline"}
_NOUN = {"double_buffer": "double buffering", "pipeline": "pipelining"}


def mark_double_buffer(buffers: tuple, fill_nests: list, body) -> DoubleBuffer:
    """A loop body that runs the `fill_nests` (writing `buffers`), then `body`."""
    return DoubleBuffer(buffers, seq(*fill_nests), body)


def mark_pipeline(kind: str, fills: list, nests: dict, buffers: dict, body) -> Pipeline:
    """A loop body (of a loop of kind `kind`) that runs the nests of the pipelined stages
    `fills`, then `body`; checked as `check_double_buffer` does, the loop runs in a
    GPU kernel, and the stages agree on the number of slots."""
    found = check_double_buffer(kind, fills, buffers, "pipeline")
    consumer = fills[0].stage.attach.stage
    if not (consumer.bindings or any(owner.bindings for _, owner in enclosing_loops(consumer))):
        raise LoweringError(f"pipeline on stage {fills[0].stage.name}: stage {consumer.name} "
                            "runs outside any GPU kernel; pipelines are for GPU kernels "
                            "(asynchronous copies into shared memory)")
    stages = {child.stage.pipeline_stages for child in fills}
    if len(stages) > 1:
        names = ", ".join(f"{c.stage.name} ({c.stage.pipeline_stages})" for c in fills)
        attach = fills[0].stage.attach
        raise LoweringError(f"pipeline at loop {attach.axis.name} of stage "
                            f"{attach.stage.name}: the stages computed there ask for "
                            f"different numbers of stages: {names}; give them the same")
    return Pipeline(found, stages.pop(), seq(*(nests[c.stage] for c in fills)), body)


def mark_prefetches(plan, leaf, body, buffers: dict):
    """`body`, the body of loop `leaf` of `plan`'s stage, marked to prefetch each tensor
    `Stage.prefetch` named there, checked: the loop runs on a CPU, is not vectorized,
    and reads the tensor (not only by gathers) from a buffer that outlives the loop."""
    stage = plan.stage
    if stage.bindings or any(owner.bindings for _, owner in enclosing_loops(stage)):
        raise LoweringError(f"prefetch on stage {stage.name}, axis {leaf.name}: the stage runs "
                            "in a GPU kernel; prefetch is for CPU loops")
    if stage.annotations.get(leaf) == "vectorize":
        raise LoweringError(f"prefetch on stage {stage.name}: axis {leaf.name} is vectorized; "
                            "prefetch at a serial, unrolled or parallel loop")
    marked = []
    for tensor, offset in stage.prefetches[leaf]:
        where = f"prefetch on stage {stage.name}, axis {leaf.name}"
        _check_prefetched(stage, leaf, tensor)
        entry = buffers.get(tensor)
        loads = [] if entry is None else [
            load for load in collect(body, lambda n: isinstance(n, Load))
            if load.buffer is entry.buffer]
        if not loads:
            raise LoweringError(f"{where}: tensor {tensor.name} is not read inside that loop")
        if all(is_gather(load) for load in loads):
            raise LoweringError(f"{where}: every read of {tensor.name} inside that loop is a "
                                "gather (its index is read from memory), so none can be "
                                "prefetched ahead")
        marked.append((entry.buffer, offset))
    for buffer, offset in reversed(marked):
        body = PrefetchAhead(buffer, offset, body)
    return body


def _check_prefetched(stage, leaf, tensor):
    producer = stage.schedule.stage_of(tensor)
    if producer is not None and producer.attach.kind != "root":
        how = "inlined" if producer.attach.kind == "inline" else "computed at a loop " \
            "(compute_at), in a buffer that lives inside that loop"
        raise LoweringError(f"prefetch of {tensor.name} on stage {stage.name}, axis "
                            f"{leaf.name}: {tensor.name} is {how}; prefetch an input or "
                            "a stage computed at the root")


def is_gather(load: Load) -> bool:
    """Whether `load`'s address is known only once another load is done."""
    return any(collect(i, lambda n: isinstance(n, Load)) for i in load.indices)
