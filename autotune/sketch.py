"""The base of the generated spaces' rules: one run over a fresh schedule.

A `Sketch` walks the compute stages of a schedule and hands each output to
one rule, as Ansor's sketch rules do. It defines the knobs the rules read
(while collecting a `ConfigSpace`) or reads them (from a `Config`), and
answers the questions every rule asks about stages: which compute stages
there are, which read a stage, which it reads through inlined ones, and the
static extent of an axis. Subclasses supply the rules themselves:
`autotune.generate_cpu.CpuSketch` and `autotune.generate_gpu.GpuSketch`.
"""
from __future__ import annotations

import math

import tex
from autotune.errors import TuneError
from autotune.space import ConfigSpace
from tex.arith import evaluate
from tex.expr import Var
from tex.schedule.stage import Stage
from tex.tensor import ComputeOp, PlaceholderOp, Tensor
from tex.visitor import collect


class InvalidConfig(TuneError):
    """A configuration outside a generated rule's limits; it is never measured."""


def static_extent(axis, sizes=None) -> int:
    """The constant extent of `axis`, or, given `sizes` ({size variable: value}), the
    value its symbolic extent takes at those sizes; TuneError when it is symbolic and
    `sizes` does not bind it."""
    extent = axis.dom.extent
    value = getattr(extent, "value", None)
    if isinstance(value, int):
        return value
    if sizes and all(v in sizes for v in collect(extent, lambda n: isinstance(n, Var))):
        return int(evaluate(extent, sizes))
    raise TuneError(f"axis {axis.name} has a symbolic extent; tuning needs static shapes")


def inputs_of(outputs) -> list[Tensor]:
    """The placeholders the outputs read, in the order of first appearance."""
    found, seen, stack = [], set(), [t.op for t in reversed(outputs)]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if isinstance(op, PlaceholderOp):
            found.append(op.output(0))
        else:
            stack.extend(t.op for t in reversed(op.input_tensors))
    return found


class Sketch:
    """One run of the rules over a fresh schedule, defining or reading knobs on `cfg`.

    A subclass defines the rules `run` applies: `inline()` over all stages, then
    per output `tile(out, acc)`, `rows(out)`, `reduce(out)` or `elementwise(out)`
    (see `schedule_output`), the last two also for stages no rule placed.
    """

    def __init__(self, cfg, outputs, target, sizes=None):
        self.cfg, self.target, self.sizes = cfg, target, sizes
        self.collecting = isinstance(cfg, ConfigSpace)
        self.s = tex.create_schedule([t.op for t in outputs])
        self.inlined: set = set()
        self.placed: set = set()  # stages a rule has scheduled

    def check(self, condition: bool, why: str):
        """InvalidConfig(why) unless `condition`; while the space is being collected (with
        every knob at its first candidate) the rules go on, so that all knobs get defined."""
        if not condition and not self.collecting:
            raise InvalidConfig(why)

    def knob(self, name: str, candidates):
        """Define the knob `name` over `candidates` (duplicates dropped); its value."""
        candidates = list(dict.fromkeys(candidates))
        self.cfg.define_knob(name, candidates)
        return self.cfg[name].val

    def extent(self, axis) -> int:
        """The extent of `axis`: its constant, or its value at `self.sizes` (the sizes a
        declaration with symbolic shapes is scheduled for; see `static_extent`)."""
        return static_extent(axis, self.sizes)

    # --- structure -------------------------------------------------------------------
    def compute_stages(self) -> list[Stage]:
        """The schedule's compute stages, in schedule order."""
        return [st for st in self.s.stages if isinstance(st.op, ComputeOp)]

    def readers(self, stage: Stage) -> list[Stage]:
        """The compute stages that read `stage` directly."""
        return [st for st in self.compute_stages()
                if any(t.op is stage.op for t in st.op.input_tensors)]

    def producers(self, stage: Stage) -> list[Stage]:
        """The compute stages `stage` reads, looking through inlined ones."""
        found, stack = [], list(stage.op.input_tensors)
        while stack:
            producer = self.s.stage_of(stack.pop())
            if producer is None or not isinstance(producer.op, ComputeOp) or producer in found:
                continue
            if producer in self.inlined:
                stack.extend(producer.op.input_tensors)
            else:
                found.append(producer)
        return found

    def group_of(self, out: Stage) -> list[Stage]:
        """The non-inlined compute stages `out` reads, directly or not, producers first."""
        found, stack = set(), [out]
        while stack:
            for p in self.producers(stack.pop()):
                if p not in found:
                    found.add(p)
                    stack.append(p)
        return [st for st in self.compute_stages() if st in found]

    def tileable(self, stage: Stage) -> bool:
        """Worth a register tile: two spatial axes or more (a reduction of each row, such as
        a row sum or a matrix-vector product, is the reduce rule's: vector partials along
        the row), enough spatial points (512: a vector-matrix product's row of outputs is
        enough) and reduction steps, and a wide axis for the vector:
        the last, or, when the last is short but not 1 (a convolution's 7 x 7 image), one of
        the two before it (its channels)."""
        spatial = [self.extent(a) for a in stage.op.axis]
        steps = math.prod(self.extent(a) for a in stage.op.reduce_axis)
        wide = spatial[-1] >= 8 or (spatial[-1] > 1 and max(spatial[-3:]) >= 8)
        return (stage.op.num_outputs == 1 and len(spatial) >= 2 and wide
                and math.prod(spatial) >= 512 and steps >= 8)

    # --- the rules per output ----------------------------------------------------------
    def schedule_output(self, out: Stage):
        """Apply the one rule that fits the output `out` and the reductions it reads."""
        reductions = [p for p in self.producers(out) if p.op.reduce_axis]
        if out.op.reduce_axis:
            if self.tileable(out):
                self.tile(out, None)
            else:
                self.reduce(out)
        elif reductions and all(len(r.op.axis) == len(out.op.axis) for r in reductions) \
                and len(reductions) == 1 and self.tileable(reductions[0]):
            self.tile(out, reductions[0])
        elif reductions and all(len(r.op.axis) < len(out.op.axis) for r in reductions):
            self.rows(out)
        else:
            self.elementwise(out)

    def run(self):
        """The schedule: stages inlined, each output scheduled by its rule, then what no
        rule placed scheduled at the root."""
        self.inline()
        for stage in self.compute_stages():
            if self.s.is_output(stage):
                self.schedule_output(stage)
                self.placed.add(stage)
        for stage in self.compute_stages():
            if stage not in self.placed and stage not in self.inlined \
                    and stage.attach.kind == "root":
                if stage.op.reduce_axis:
                    self.reduce(stage)
                else:
                    self.elementwise(stage)
        return self.s
