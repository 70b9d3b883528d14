"""The record of a schedule's history: a snapshot after each primitive applied.

A schedule created inside `with tex.PassContext(config={"te.keep_schedule_record":
True}):` keeps a `History`: the snapshot of `create_schedule` ("vanilla"), then
one per primitive applied, with the primitive's name. A primitive made of others
is recorded as those (`tile` is split, split, reorder); one that fails records
nothing. A snapshot is a frozen copy: the stages' records as they were
(relations and leaf axes as tuples, tables as read-only mappings, a stage an
attachment points at by its name), which later primitives cannot change. It is
data to read and print (`str(snapshot)` as `print(schedule)`), not a schedule to
build. The snapshots cost a copy of every stage's records per primitive, so only
schedules created under that config keep them.
TVM: `Schedule.schedule_record`, `Schedule.primitive_record`.
"""
from __future__ import annotations

import dataclasses
import functools
from types import MappingProxyType

from tex.schedule.relations import Attach


@dataclasses.dataclass(frozen=True, slots=True)
class AttachSnapshot:
    """Where a stage was computed: "root", "inline", or "at" loop `axis` of stage
    `stage` (its name)."""

    kind: str
    stage: str | None
    axis: object


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class StageSnapshot:
    """One stage as a primitive left it: `name`, `op`, and each field of `Stage`
    (`relations`, `leaf_iter_vars`, `attach`, `annotations`, `bindings`, ...) frozen
    in `fields`, also readable as attributes (`snapshot.leaf_iter_vars`)."""

    name: str
    fields: MappingProxyType
    lines: tuple[str, ...]

    def __getattr__(self, field: str):
        try:
            return object.__getattribute__(self, "fields")[field]
        except KeyError:
            raise AttributeError(f"a stage snapshot has no field {field!r}") from None


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ScheduleSnapshot:
    """A schedule as a primitive (`primitive`) left it: its stages' snapshots, in order.
    `str()` prints it as `print(schedule)` did then."""

    primitive: str
    stages: tuple[StageSnapshot, ...]

    def __getitem__(self, name_or_tensor) -> StageSnapshot:
        """The snapshot of the stage called `name` (or computing the given tensor)."""
        name = getattr(name_or_tensor, "name", name_or_tensor)
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"the snapshot after {self.primitive} has no stage {name!r}")

    def __str__(self):
        return "\n".join(line for stage in self.stages
                         for line in (f"stage {stage.name}:",
                                      *(f"  {text}" for text in stage.lines)))


def _frozen(value):
    """`value` as data no later primitive can change."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(v) for key, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Attach):
        stage = value.stage
        return AttachSnapshot(value.kind, None if stage is None else stage.name, value.axis)
    return value


def snapshot(schedule, primitive: str) -> ScheduleSnapshot:
    """The frozen copy of `schedule` after `primitive`."""
    stages = []
    for stage in schedule.stages:
        fields = {f.name: _frozen(getattr(stage, f.name))
                  for f in dataclasses.fields(stage) if f.name != "schedule"}
        stages.append(StageSnapshot(stage.name, MappingProxyType(fields),
                                    tuple(stage.describe())))
    return ScheduleSnapshot(primitive, tuple(stages))


class History:
    """The snapshots of one schedule, and how deep inside primitives it is now (a
    primitive called by another is not recorded apart)."""

    def __init__(self):
        self.snapshots: list[ScheduleSnapshot] = []
        self.depth = 0

    def add(self, schedule, primitive: str):
        self.snapshots.append(snapshot(schedule, primitive))


def recorded(name: str):
    """A schedule primitive (a method of Stage or Schedule) that, on a schedule keeping its
    history, adds a snapshot named `name` once it returns, unless another recorded
    primitive called it."""
    def decorate(primitive):
        @functools.wraps(primitive)
        def apply(self, *args, **kwargs):
            schedule = getattr(self, "schedule", self)
            history = schedule.history
            if history is None:
                return primitive(self, *args, **kwargs)
            history.depth += 1
            try:
                result = primitive(self, *args, **kwargs)
            finally:
                history.depth -= 1
            if history.depth == 0:
                history.add(schedule, name)
            return result
        return apply
    return decorate
