"""The stage of a scan (`tex.scan`), and where the stages of its steps go.

A scan's stage has the loops (scan axis, spatial axes...). The scan axis
runs the steps in order: it stays the outermost loop and a plain serial one
(not split, fused, reordered inward, annotated or bound). The spatial axes
take every primitive; the stages of a step computed at one of them compute
the part of the step that loop covers (e.g. a tile per parallel iteration).

`create_schedule` computes each stage of `ScanOp.step_ops` (the updates and
the computes between them and the states) at the scan axis: each step
computes its row, after the rows before it. The inits stay at the root and
run before the scan's loop; all of them write the scan's output in place.
TVM: the stage of a `ScanOp`, its updates attached at the scan axis.
"""
from __future__ import annotations

from tex.errors import ScheduleError
from tex.schedule.relations import Attach
from tex.schedule.stage import Stage


def attach_steps(stage: Stage) -> None:
    """Compute the stages of the steps of the scan of `stage` at its scan axis."""
    op = stage.op
    for step in op.step_ops:
        stage.schedule[step].attach = Attach("at", stage, op.scan_axis)


def _listed(axes) -> tuple:
    """The axes given to fuse or reorder, as separate arguments or as one list."""
    return tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (list, tuple)) else axes


class ScanStage(Stage):
    """The stage of a scan; its primitives refuse what would reorder the steps."""

    def _not_the_scan_axis(self, axes, primitive: str) -> None:
        for axis in axes:
            if axis is self.op.scan_axis:
                raise ScheduleError(
                    f"{primitive} on stage {self.name}: axis {axis.name} is the scan axis, whose "
                    "steps run in order, each reading the ones before; it stays the outermost, "
                    "serial loop (schedule the spatial axes, or the update's stage)")

    def split(self, parent, factor=None, nparts=None, disable_predication: bool = False):
        self._not_the_scan_axis([parent], "split")
        return super().split(parent, factor=factor, nparts=nparts,
                             disable_predication=disable_predication)

    def fuse(self, *axes):
        self._not_the_scan_axis(_listed(axes), "fuse")
        return super().fuse(*axes)

    def reorder(self, *axes):
        listed = _listed(axes)
        if self.op.scan_axis in listed and listed[0] is not self.op.scan_axis:
            self._not_the_scan_axis([self.op.scan_axis], "reorder")
        return super().reorder(*axes)

    def _annotate(self, axis, what: str):
        self._not_the_scan_axis([axis], what)
        return super()._annotate(axis, what)

    def bind(self, axis, thread_axis):
        self._not_the_scan_axis([axis], "bind")
        return super().bind(axis, thread_axis)

    def tensorize(self, axis, intrin):
        raise ScheduleError(f"tensorize on stage {self.name}: a scan computes nothing of its "
                            "own; tensorize the stage of its update")

    def compute_at(self, parent, axis):
        raise ScheduleError(f"compute_at on stage {self.name}: a scan is computed at the root, "
                            "every row of it")

    def compute_inline(self):
        raise ScheduleError(f"compute_inline on stage {self.name}: a scan cannot be inlined; "
                            "its rows depend on each other")
