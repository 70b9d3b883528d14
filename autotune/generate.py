"""Generated spaces: a space of schedules for any compute, made by rules.

`space_for(outputs, target)` runs the rules of the target's kind over a
fresh schedule, one rule per stage as Ansor's sketch rules do
(`autotune.sketch`): for CPUs those of `autotune.generate_cpu` (register
tiles, vectors, packing), for CUDA GPUs those of `autotune.generate_gpu`
(blocks, threads, shared memory and reduction strategies). The knobs the
rules define form the space (see `autotune.space`).

A configuration that breaks a rule's limits raises `InvalidConfig` when
instantiated; the search never proposes such configurations, and
`valid_configs` lists those that instantiate.
"""
from __future__ import annotations

import functools
import random

from autotune.errors import TuneError
from autotune.generate_cpu import CpuSketch, register_budget
from autotune.generate_gpu import GpuSketch
from autotune.sketch import InvalidConfig, inputs_of
from autotune.space import ConfigSpace
from autotune.targets import kind_of
from tex.target import as_target
from tex.tensor import ComputeOp, Tensor

__all__ = ["InvalidConfig", "register_budget", "space_for", "valid_configs"]


def valid_configs(space: ConfigSpace, count: int | None = None,
                  seed: int | None = None) -> list:
    """The configurations of `space` that instantiate: in index order, or in an order
    shuffled by `seed`; at most `count` of them. InvalidConfig ones are skipped; any other
    error is raised."""
    indices = list(range(len(space)))
    if seed is not None:
        random.Random(seed).shuffle(indices)
    found = []
    for index in indices:
        if count is not None and len(found) == count:
            break
        config = space.get(index)
        try:
            space.instantiate(config)
        except InvalidConfig:
            continue
        found.append(config)
    return found


def space_for(outputs, target="llvm", args=None, sizes=None) -> ConfigSpace:
    """The generated space of schedules for `outputs` (a tensor or a list of them).

    `args` is the kernel's argument list as `tex.build` takes it (default:
    the inputs in the order they are first read, then the outputs).
    `space.instantiate(config)` returns `(schedule, args)`.

    `sizes` ({size variable: value}, CPU targets only) schedules a declaration with
    symbolic shapes as if its sizes had those values: the rules decide by the extents at
    `sizes` (so a configuration tuned for those sizes applies), and the schedule's splits
    guard the extents the kernel meets at run time.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for t in outputs:
        if not isinstance(t, Tensor) or not isinstance(t.op, ComputeOp):
            raise TuneError(f"space_for: outputs must be computed tensors, got {t!r}")
    target = as_target(target)
    args = list(args) if args is not None else inputs_of(outputs) + outputs
    space = ConfigSpace()
    if sizes and kind_of(target).gpu:
        raise TuneError(f"space_for: sizes= schedules symbolic shapes for CPUs only, not "
                        f"for {target}")
    _sketch(space, outputs, args, target, sizes)
    # a partial, not a lambda: a CUDA task's space travels to a spawned runner (measure.py)
    space.make_schedule = functools.partial(_sketch, outputs=outputs, args=args, target=target,
                                            sizes=sizes)
    return space


def _sketch(cfg, outputs, args, target, sizes=None):
    """The rules of `target`'s kind run over `cfg`: (schedule, args)."""
    if kind_of(target).gpu:
        return GpuSketch(cfg, outputs, target).run(), args
    return CpuSketch(cfg, outputs, target, sizes).run(), args
