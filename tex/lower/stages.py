"""The stages lowering builds nests for: inlined stages substituted, readers found,
compute_at checked.

`inline_stages` substitutes every inlined stage into its readers and
returns the other stages with their bodies (an extern stage has none: it
reads its inputs whole, so they must not be inlined); `consumers_of` says
which of them read each one; `check_attach_targets` refuses a compute_at at the stage
itself, at a stage that does not read it, or of an output, and `check_attach` one
whose stage is read outside the loop it is computed in.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex.errors import LoweringError
from tex.expr import Expr, TensorRead
from tex.schedule.stage import Stage
from tex.tensor import ExternOp
from tex.visitor import collect, substitute, transform


@dataclass(frozen=True, eq=False)
class InlinedStage:
    """A stage that gets a loop nest, and its op's body with inlined stages substituted."""

    stage: Stage
    body: tuple[Expr, ...]

    @property
    def op(self):
        return self.stage.op


def inline_stages(sch) -> tuple[InlinedStage, ...]:
    """The stages of `sch` that are not inlined, in schedule order, with inlining applied."""
    inline_bodies = {}

    def inline(node):
        if isinstance(node, TensorRead) and node.tensor in inline_bodies:
            axis_vars, body = inline_bodies[node.tensor]
            return substitute(body, dict(zip(axis_vars, node.indices)))
        return None

    stages = []
    for stage in sch.stages:
        if isinstance(stage.op, ExternOp):
            _check_inputs_stored(stage, inline_bodies)
            stages.append(InlinedStage(stage, ()))
            continue
        body = tuple(transform(b, inline) for b in stage.op.body)
        if stage.attach.kind == "inline":
            for t in (stage.origin_op.output(0), stage.op.output(0)):
                inline_bodies[t] = ([iv.var for iv in stage.op.axis], body[0])
            continue
        stages.append(InlinedStage(stage, body))
    return tuple(stages)


def _check_inputs_stored(stage, inline_bodies: dict):
    """The inputs of the extern `stage` are in memory: none of them is inlined."""
    for t in stage.op.inputs:
        if t in inline_bodies:
            raise LoweringError(f"stage {t.op.name} is inlined, but the extern stage "
                                f"{stage.name} reads it whole from memory; leave compute_inline "
                                f"out for {t.op.name}")


def consumers_of(sch, stages) -> dict:
    """Stage -> the stages among `stages` that read it, in schedule order."""
    consumers = {s.stage: [] for s in stages}
    for reader in stages:
        for tensor in _tensors_read(reader):
            producer = sch.stage_of(tensor)
            readers = consumers.get(producer)
            if readers is not None and reader.stage not in readers:
                readers.append(reader.stage)
    return consumers


def _tensors_read(reader: InlinedStage) -> list:
    """The tensors `reader` reads: its body's reads, or an extern stage's inputs."""
    if isinstance(reader.op, ExternOp):
        return list(reader.op.inputs)
    return [read.tensor for b in reader.body
            for read in collect(b, lambda n: isinstance(n, TensorRead))]


def check_attach_targets(sch) -> None:
    """Every compute_at of `sch` names a stage that may hold its stage: another stage,
    one that uses it, and its stage is not an output. The stages computed inside others
    then follow the dataflow, so no chain of compute_at returns to where it started.
    `Stage.compute_at` records these attachments unchecked, as TE's does, so that a
    later compute_at or compute_root may correct them."""
    for stage in sch.stages:
        attach = stage.attach
        if attach.kind != "at":
            continue
        where = f"compute_at of stage {stage.name}"
        if attach.stage is stage:
            raise LoweringError(f"{where}: a stage cannot be computed inside itself; "
                                "compute it at a loop of a stage that reads it")
        if sch.is_output(stage):
            raise LoweringError(f"{where}: it is an output of the schedule and must be "
                                f"computed at the root, not at a loop of {attach.stage.name}")
        if not sch.depends_on(attach.stage, stage):
            raise LoweringError(f"{where}: stage {attach.stage.name} does not use {stage.name}, "
                                "so it is not a consumer to compute it in")


def check_attach(stage, consumers: list, lowered: set) -> None:
    """A stage computed at a loop of another is computed there legally: the target gets
    a nest (`lowered` holds the stages that do), still has that loop, and every
    consumer runs inside it; a double-buffered or pipelined stage is computed at a loop."""
    attach = stage.attach
    if attach.kind != "at":
        for primitive, used in (("double_buffer", stage.double_buffered),
                                ("pipeline", stage.pipeline_stages)):
            if used:
                raise LoweringError(f"{primitive} on stage {stage.name}: it is computed "
                                    "at the root; compute it at a serial loop of its "
                                    "consumer with compute_at")
        return
    name = stage.name
    if attach.stage not in lowered:
        raise LoweringError(f"compute_at of stage {name}: its target {attach.stage.name} is "
                            "inlined, so it has no loops to compute in")
    if attach.axis not in attach.stage.leaf_iter_vars:
        raise LoweringError(f"compute_at of stage {name}: axis {attach.axis.name} is no longer a "
                            f"loop of stage {attach.stage.name} (it was split or fused after "
                            "compute_at); attach to one of its current loops")
    position = attach.stage.leaf_iter_vars.index(attach.axis)
    for consumer in consumers:
        if not runs_inside(consumer, attach.stage, position):
            raise LoweringError(f"compute_at of stage {name}: stage {consumer.name} also "
                                f"reads {name} but runs outside loop {attach.axis.name} of "
                                f"{attach.stage.name}; compute {name} at the root instead")


def runs_inside(stage, target, position: int) -> bool:
    """Whether `stage`'s loop nest is placed inside `target`'s loop number `position`."""
    if stage is target:
        return True
    attach = stage.attach
    while attach.kind == "at":
        if attach.stage is target:
            return target.leaf_iter_vars.index(attach.axis) >= position
        attach = attach.stage.attach
    return False


def attach_depth(stage) -> int:
    """How many stages `stage`'s nest is placed inside (0 at the root)."""
    depth, attach = 0, stage.attach
    while attach.kind == "at":
        depth, attach = depth + 1, attach.stage.attach
    return depth
