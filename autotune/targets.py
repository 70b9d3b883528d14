"""What the autotuner does differently for each kind of target, in one table.

`kind_of(target)` is the `TargetKind` of a target (a `tex.target.Target` or a
string such as "cuda -arch=sm_80"): the autotuner reads its entries rather
than comparing kind names, so that a new kind is one more row of `KINDS`.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex.target import as_target


@dataclass(frozen=True)
class TargetKind:
    """How the autotuner treats the targets of one kind."""

    #: GPU rules generate the spaces (`autotune.generate_gpu`), and program features,
    #: the `gpu.*` group included, are read from the program lowered for the target
    gpu: bool
    #: kernels run on a device: tuning needs one present, and candidates are timed in a
    #: spawned process (not a forked one) on arrays copied to the device
    on_device: bool
    #: the target the reference outputs are computed on; None: the task's own
    reference_target: str | None


KINDS = {"llvm": TargetKind(gpu=False, on_device=False, reference_target=None),
         "cuda": TargetKind(gpu=True, on_device=True, reference_target="llvm")}


def kind_of(target) -> TargetKind:
    """The entry of `KINDS` for `target`'s kind."""
    return KINDS[as_target(target).kind]
