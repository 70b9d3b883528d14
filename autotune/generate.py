"""Generated spaces: a space of CPU schedules for any compute, made by rules.

`space_for(outputs, target)` walks the stages and applies, as Ansor's
sketch rules do, one rule per stage; the knobs the rules define form the
space (see `autotune.space`). The rules:

1. **inline**: an elementwise stage that is not an output is inlined into
   its readers. When a reduction reads it (padding before a convolution, a
   row's exponentials) a knob may compute it separately instead.
2. **tile** (a reduction whose result has as many axes as the output that
   holds it: matmul, batch matmul, convolution, matmul + bias + relu): the
   output's axes are split into outer loops and a register tile: one of the
   last three axes is the vector axis (one whose extent is a multiple of the
   vector lanes, where there is one; one, two or four whole vector
   registers wide), the others get tile extents (`tile_0`, `tile_1`: the
   tile's rows, in axis order) and are unrolled. The outer loops are fused
   into one parallel loop, the vector axis's first (consecutive tiles share
   a panel of the input the vectors walk) and the others in a chosen order.
   The reduction is computed at the tile, reduction axes outermost, so that
   its accumulator stays in registers: a write cache of the output laid out
   with the vector axis last, or the reduction itself when an elementwise
   epilogue reads it. Each input may be packed: copied, with the dimension
   the vector walks laid out last, in the vector axis's outer loop, which then
   runs serially around the parallel loop of the others, so that the tile
   reads a compact panel.
   When the vector runs along another axis than the output's last (the
   channels of an NCHW convolution), a knob writes the result back by rows
   instead of by tiles: the accumulator holds whole rows of the last axis
   (one per vector lane), filled one register tile at a time (a second write
   cache), and the output's rows are written from it in vectors along the
   last axis; its packed copies are then made once, before the parallel loop.
3. **rows** (reductions along the rows of the output that reads them:
   softmax, layernorm): the output's rows run in parallel, with its last axis
   vectorized. Each reduction is computed at the row through vector partial
   results (`rfactor`) of a chosen width. A knob prefetches the next row of
   the inputs while a row is computed in L1.
4. **reduce** (an output reduction with little spatial work per row, such as
   a row sum or a full sum): the same vector partials, and with few rows the
   reduction is first split into parallel chunks (`rfactor`).
5. **elementwise** (every other stage): all axes are fused, split into
   vector lanes, and the rest runs in parallel.

For a CUDA target the rules are those of `autotune.generate_gpu` (blocks,
threads, shared memory and reduction strategies instead of vectors).

A configuration that breaks a rule's limits (a register tile of more vector
registers than the CPU has, a packing with no serial loop to hold it) raises
`InvalidConfig` when instantiated; the search never proposes such
configurations.
"""
from __future__ import annotations

import functools
import itertools
import math
import random

import tex
from autotune.errors import TuneError
from autotune.space import ConfigSpace
from tex.schedule.stage import Stage
from tex.expr import TensorRead
from tex.target import as_target
from tex.tensor import ComputeOp, PlaceholderOp, Tensor
from tex.visitor import collect, uses_var

#: Vector registers a register tile leaves free for its operands (the vectors of
#: one input, a broadcast of the other) and the addresses.
OPERAND_REGISTERS = 4
#: Parallel chunks per core offered for a reduction with few points (rule 4).
CHUNKS_PER_CORE = (2, 8, 32)
#: Register-tile extents offered for the axes that are not vectorized.
TILE_ROWS = (1, 2, 3, 4, 6, 7, 8, 14)


def register_budget(target) -> int:
    """The vector registers a register tile may occupy on `target`: all of them
    (`Target.vector_registers`: 32 with AVX-512 or on aarch64, 16 with AVX2 or SSE)
    but OPERAND_REGISTERS, kept for the operands of each step of the reduction."""
    return as_target(target).vector_registers - OPERAND_REGISTERS


class InvalidConfig(TuneError):
    """A configuration outside a generated rule's limits; it is never measured."""


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


def space_for(outputs, target="llvm", args=None) -> ConfigSpace:
    """The generated space of schedules for `outputs` (a tensor or a list of them).

    `args` is the kernel's argument list as `tex.build` takes it (default:
    the inputs in the order they are first read, then the outputs).
    `space.instantiate(config)` returns `(schedule, args)`.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for t in outputs:
        if not isinstance(t, Tensor) or not isinstance(t.op, ComputeOp):
            raise TuneError(f"space_for: outputs must be computed tensors, got {t!r}")
    target = as_target(target)
    args = list(args) if args is not None else _inputs_of(outputs) + outputs
    space = ConfigSpace()
    _sketch(space, outputs, args, target)
    # a partial, not a lambda: a CUDA task's space travels to a spawned runner (measure.py)
    space.make_schedule = functools.partial(_sketch, outputs=outputs, args=args, target=target)
    return space


def _inputs_of(outputs) -> list[Tensor]:
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


def _extent(axis) -> int:
    value = getattr(axis.dom.extent, "value", None)
    if not isinstance(value, int):
        raise TuneError(f"axis {axis.name} has a symbolic extent; tuning needs static shapes")
    return value


class _Sketch:
    """One run of the rules over a fresh schedule, defining or reading knobs on `cfg`."""

    def __init__(self, cfg, outputs, target):
        self.cfg, self.target = cfg, target
        self.collecting = isinstance(cfg, ConfigSpace)
        self.s = tex.create_schedule([t.op for t in outputs])
        self.lanes = target.vector_lanes(outputs[0].dtype)
        self.inlined: set = set()
        self.placed: set = set()  # stages a rule has scheduled

    def check(self, condition: bool, why: str):
        """InvalidConfig(why) unless `condition`; while the space is being collected (with
        every knob at its first candidate) the rules go on, so that all knobs get defined."""
        if not condition and not self.collecting:
            raise InvalidConfig(why)

    def knob(self, name: str, candidates):
        candidates = list(dict.fromkeys(candidates))
        self.cfg.define_knob(name, candidates)
        return self.cfg[name].val

    # --- structure -------------------------------------------------------------------
    def compute_stages(self) -> list[Stage]:
        return [st for st in self.s.stages if isinstance(st.op, ComputeOp)]

    def readers(self, stage: Stage) -> list[Stage]:
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

    # --- rule 1 ----------------------------------------------------------------------
    def inline(self):
        for stage in self.compute_stages():
            if self.s.is_output(stage) or stage.op.reduce_axis:
                continue
            if any(r.op.reduce_axis for r in self.readers(stage)):
                width = self.elementwise_width(stage)  # defined whichever way this goes
                if not self.knob(f"{stage.name}.inline", [True, False]):
                    continue
                self.check(width == self.width_choices(stage)[0],  # no duplicate schedules
                           f"{stage.name} is inlined, so its vector width means nothing")
            stage.compute_inline()
            self.inlined.add(stage)

    # --- the rules per output ----------------------------------------------------------
    def schedule_output(self, out: Stage):
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

    def tileable(self, stage: Stage) -> bool:
        """Worth a register tile: two spatial axes or more (a reduction of each row, such as
        a row sum or a matrix-vector product, is rule 4's: vector partials along the
        row), enough spatial points and reduction steps, a wide last axis."""
        spatial = [_extent(a) for a in stage.op.axis]
        steps = math.prod(_extent(a) for a in stage.op.reduce_axis)
        return (stage.op.num_outputs == 1 and len(spatial) >= 2 and spatial[-1] >= 8
                and math.prod(spatial) >= 1024 and steps >= 8)

    # --- rule 2 ----------------------------------------------------------------------
    def tile(self, out: Stage, acc: Stage | None):
        """Rule 2 for `out`, with `acc` computed at its tile: the reduction `out` reads, or
        when None, a write cache of `out` laid out with the vector axis last."""
        name, axes = out.name, list(out.op.axis)
        extents = [_extent(a) for a in axes]
        movable = [d for d in range(len(axes)) if extents[d] > 1][-3:] or [len(axes) - 1]
        whole = [d for d in reversed(movable) if extents[d] % self.lanes == 0]
        vector_axes = whole or [len(axes) - 1]  # no lanes wasted on a tail, where it can be
        vector_at = self.knob(f"{name}.vector_axis", vector_axes)
        widest = max(extents[d] for d in vector_axes)
        widths = [v * self.lanes for v in (1, 2, 4) if v * self.lanes <= widest]
        vector = self.knob(f"{name}.vector", widths or sorted({extents[d] for d in vector_axes}))
        others = [d for d in movable if d != vector_at]  # the register tile's other axes
        longest = max(extents[d] for d in movable)
        rows = [self.knob(f"{name}.tile_{r}", [t for t in TILE_ROWS if t <= longest])
                for r in range(len(movable) - 1)]
        order = self.knob(f"{name}.order", list(itertools.permutations(range(len(movable) - 1))))
        reduction = out if acc is None else acc
        inputs = [t for t in reduction.op.input_tensors if len(t.shape) >= 2]
        packs = [self.knob(f"{name}.pack_{t.name}", [False, True]) for t in inputs]
        unroll = self.knob(f"{name}.unroll_reduce", self.reduce_unroll_choices(reduction))
        transposable = acc is None and len(axes) - 1 in movable  # into a write cache
        write_back = self.knob(f"{name}.write_back", ["tile", "row"]) if transposable else "tile"

        self.check(vector <= extents[vector_at],
                   f"a vector of {vector} is wider than axis {axes[vector_at].name}")
        tiles = [1] * len(axes)
        tiles[vector_at] = vector
        for d, t in zip(others, rows):
            self.check(t <= extents[d], f"a tile of {t} is longer than axis {axes[d].name}")
            tiles[d] = t
        registers, budget = math.prod(rows) * -(-vector // self.lanes), register_budget(self.target)
        self.check(registers <= budget,
                   f"a register tile of {registers} vectors exceeds {budget}, the "
                   f"{self.target.vector_registers} vector registers of {self.target} less "
                   f"{OPERAND_REGISTERS} for the operands")
        last, by_row = len(axes) - 1, write_back == "row"
        # the copies are made in the first outer loop, run serially; by row, before all
        serial_first = any(packs) and not by_row
        self.check(not any(p and self.s.stage_of(t) in self.inlined
                           for t, p in zip(inputs, packs)), "an inlined stage cannot be packed")
        vector_var = reduction.op.axis[vector_at].var
        layouts = [_vector_dimension_last(reduction, t, vector_var) for t in inputs]
        for t, pack, copy_order in zip(inputs, packs, layouts):
            self.check(pack or list(copy_order) == sorted(copy_order),
                       f"the vectors would gather {t.name}: it must be packed")
        # the accumulator's axes (and storage): the vector axis last
        layout = [d for d in range(len(axes)) if d != vector_at] + [vector_at]
        if acc is None:
            acc = self.s[self.s.cache_write(out.op.output(0), "local", axis_order=layout)]
        else:
            self.check(vector_at == len(axes) - 1, "a reduction read by an epilogue keeps its "
                       "layout, so only its last axis can be vectorized")
        self.check(not by_row or (vector_at != last and tiles[last] > 1
                                  and others[order[-1]] == last),
                   "a row write-back needs the vector on another axis than the last, and a "
                   "register tile along the last, its outer loop last in the order (which then "
                   "leaves it out)")
        tile = self.s[self.s.cache_write(acc.op.output(0), "local")] if by_row else acc

        outer, inner = [], []  # inner: the register tile's loops, the vector loop last
        for d, (axis, t) in enumerate(zip(axes, tiles)):
            if t > 1 and not (by_row and d == last):
                o, i = out.split(axis, factor=t)
                outer.append(o)
                inner.insert(len(inner) if d != vector_at else 0, i)
            else:
                outer.append(axis)
        if tiles[vector_at] > 1 and not by_row:
            inner.append(inner.pop(0))
        fixed = [outer[d] for d in range(len(axes)) if d not in movable]
        moved = [outer[vector_at]] + [outer[others[p]] for p in order
                                      if not (by_row and others[p] == last)]
        lanes = list(out.split(outer[last], factor=self.lanes)) if by_row else []
        out.reorder(*fixed, *moved, *inner, *lanes)
        self.check(not serial_first or len(moved) > 1, "packed copies are made in a serial "
                   "outer loop, and this tile has only the one it runs in parallel")
        first = moved[0] if serial_first else None
        fused = out.fuse(*(moved[1:] if first is not None else fixed + moved))
        out.parallel(fused)
        if by_row:  # the rows of the tiles, each written out along the last axis in vectors
            out.vectorize(lanes[-1])
        else:
            for i in inner[:-1]:
                out.unroll(i)
            if tiles[vector_at] > 1:
                out.vectorize(inner[-1])
        acc.compute_at(out, fused)

        if by_row:
            self.rows_of_tiles(acc, tile, layout, tiles)
        *tile_spatial, vector_loop = tile.op.axis  # in `layout` order
        reduce_axes = list(tile.op.reduce_axis)
        tile.reorder(*reduce_axes, *tile_spatial, vector_loop)
        innermost = reduce_axes[-1]
        if unroll == _extent(innermost):
            tile.unroll(innermost)
        elif unroll > 1:
            _, k_inner = tile.split(innermost, factor=unroll)
            tile.unroll(k_inner)
        for a, d in zip(tile_spatial, layout):
            if tiles[d] > 1:
                tile.unroll(a)
        if vector > 1:
            tile.vectorize(vector_loop)
        self.placed.update((acc, tile))

        for tensor, pack, copy_order in zip(inputs, packs, layouts):
            if pack:
                copy = self.s[self.s.cache_read(tensor, "global", [tile], axis_order=copy_order)]
                if not by_row:
                    copy.compute_at(out, first)
                _, lane = copy.split(copy.op.axis[-1], factor=self.lanes)
                copy.vectorize(lane)
                if len(copy.op.axis) > 1:  # the copy runs in parallel too, before the tiles
                    copy.parallel(copy.op.axis[0])
                self.placed.add(copy)

    @staticmethod
    def rows_of_tiles(acc: Stage, tile: Stage, layout: list[int], tiles: list[int]):
        """For a row write-back: `acc` holds whole rows of the output's last axis; that
        axis is split into register tiles, which `tile` computes one at a time, and each
        is copied into `acc` (its other tile loops unrolled, the vector loop vectorized)."""
        *spatial, vector_loop = acc.op.axis  # in `layout` order
        last = len(layout) - 1
        along = spatial[layout.index(last)]
        tile_outer, tile_inner = acc.split(along, factor=tiles[last])
        rest = [a for a in spatial if a is not along]
        acc.reorder(tile_outer, *rest, tile_inner, vector_loop)
        for a, d in zip(spatial, layout):
            if tiles[d] > 1 and a is not along:
                acc.unroll(a)
        acc.unroll(tile_inner)
        acc.vectorize(vector_loop)
        tile.compute_at(acc, tile_outer)

    @staticmethod
    def reduce_unroll_choices(acc: Stage) -> list[int]:
        """Unroll factors for the innermost reduction axis: 1, 2, 4, or all of a short one."""
        extent = _extent(acc.op.reduce_axis[-1])
        return [1] + [u for u in (2, 4) if u < extent] + ([extent] if 1 < extent <= 4 else [])

    # --- rule 3 ----------------------------------------------------------------------
    def rows(self, out: Stage):
        """Rule 3: `out`'s rows in parallel; what it reads (reductions with vector partials,
        elementwise stages vectorized) computed at the row; a knob prefetches the next
        row of each input shaped like `out` at the top of a row."""
        *lead, last = out.op.axis
        row = out.fuse(*lead)
        out.parallel(row)
        self.vectorize_last(out, last)
        group = self.group_of(out)
        for stage in group:
            if stage.op.reduce_axis:
                self.vector_partials(stage, stage.op.axis[-1], self.partial_lanes(stage))
            elif len(stage.op.axis) == len(out.op.axis):
                self.vectorize_last(stage, stage.op.axis[-1])
            stage.compute_at(out, row)
            self.placed.add(stage)
        row_inputs = [t for t in _inputs_of([out.op.output(0)]) if len(t.shape) == len(out.op.axis)]
        if row_inputs and self.knob(f"{out.name}.prefetch", [False, True]):
            for tensor in row_inputs:
                out.prefetch(tensor, row, 1)

    def group_of(self, out: Stage) -> list[Stage]:
        """The non-inlined compute stages `out` reads, directly or not, producers first."""
        found, stack = set(), [out]
        while stack:
            for p in self.producers(stack.pop()):
                if p not in found:
                    found.add(p)
                    stack.append(p)
        return [st for st in self.compute_stages() if st in found]

    def vectorize_last(self, stage: Stage, axis):
        """Split `axis` by the stage's vector-width knob and vectorize the lanes."""
        width = self.elementwise_width(stage)
        if width > 1:
            _, lane = stage.split(axis, factor=width)
            stage.vectorize(lane)

    def partial_lanes(self, stage: Stage) -> int:
        """The knob of how many vector partial results reduce `stage` (0: none)."""
        extent = _extent(stage.op.reduce_axis[-1])
        return self.knob(f"{stage.name}.lanes",
                         [0] + [w for w in (self.lanes, 4 * self.lanes) if w <= extent])

    def vector_partials(self, stage: Stage, at_axis, lanes: int):
        """Reduce `stage`'s innermost reduction axis through `lanes` vector partial results."""
        innermost = stage.op.reduce_axis[-1]
        if not lanes or stage.op.num_outputs != 1:
            return
        _, k_inner = stage.split(innermost, factor=lanes)
        partial = self.s[self.s.rfactor(stage.op.output(0), k_inner)]
        lane, *rest = partial.op.axis
        partial.reorder(*rest, *partial.op.reduce_axis, lane)
        partial.vectorize(lane)
        partial.compute_at(stage, at_axis)
        stage.vectorize(stage.op.reduce_axis[-1])
        self.placed.add(partial)

    # --- rule 4 ----------------------------------------------------------------------
    def reduce(self, out: Stage):
        """Rule 4: a reduction at the root, split into parallel chunks when it has fewer
        points than 32 per core, each reduced through vector partials: 2, 8 or 32 chunks
        per core (`CHUNKS_PER_CORE`; 4, 16 or 64 on 2 cores)."""
        points = math.prod(_extent(a) for a in out.op.axis)
        first = out.op.reduce_axis[0]
        cores = self.target.num_cores or 1
        few = points < CHUNKS_PER_CORE[-1] * cores
        chunk_choices = [1] + [c * cores for c in CHUNKS_PER_CORE
                               if few and c * cores < _extent(first)]
        chunks = self.knob(f"{out.name}.chunks", chunk_choices)
        lanes = self.partial_lanes(out)
        work = out
        if chunks > 1 and out.op.num_outputs == 1:
            chunk_axis, _ = out.split(first, nparts=chunks)
            work = self.s[self.s.rfactor(out.op.output(0), chunk_axis)]
            self.placed.add(work)
        if not work.op.axis:
            return
        spatial = work.fuse(*work.op.axis) if len(work.op.axis) > 1 else work.op.axis[0]
        if len(work.op.reduce_axis) and work.op.num_outputs == 1:
            self.vector_partials(work, spatial, lanes)
        if chunks > 1 or points >= 2:
            work.parallel(spatial)

    # --- rule 5 ----------------------------------------------------------------------
    def width_choices(self, stage: Stage) -> list[int]:
        extent = _extent(stage.op.axis[-1])
        return [w for w in (self.lanes, 4 * self.lanes) if w <= extent] or [1]

    def elementwise_width(self, stage: Stage) -> int:
        return self.knob(f"{stage.name}.vector", self.width_choices(stage))

    def elementwise(self, stage: Stage):
        """Rule 5: leading axes fused into a parallel loop, the last axis split into vectors."""
        *lead, last = stage.op.axis
        width = self.elementwise_width(stage)
        outer = last
        if width > 1:
            outer, lane = stage.split(last, factor=width)
            stage.vectorize(lane)
        rows = stage.fuse(*lead, outer)
        if math.prod(_extent(a) for a in stage.op.axis) >= 2 * width:
            stage.parallel(rows)
        self.placed.add(stage)

    # --- all of it -------------------------------------------------------------------
    def run(self):
        self.inline()
        for stage in self.compute_stages():
            if self.s.is_output(stage):
                self.schedule_output(stage)
                self.placed.add(stage)
        for stage in self.compute_stages():  # what no rule placed: at the root
            if stage not in self.placed and stage not in self.inlined \
                    and stage.attach.kind == "root":
                if stage.op.reduce_axis:
                    self.reduce(stage)
                else:
                    self.elementwise(stage)
        return self.s


def _vector_dimension_last(stage: Stage, tensor: Tensor, vector_var) -> tuple[int, ...]:
    """The dimension order of a packed copy of `tensor`: the one dimension `stage` indexes
    with the vector loop's variable goes last, so the vector reads consecutive elements."""
    ndim = len(tensor.shape)
    dims = {d for read in collect(stage.op.body[0], lambda n: isinstance(n, TensorRead))
            if read.tensor == tensor
            for d, index in enumerate(read.indices) if uses_var(index, vector_var)}
    if len(dims) != 1:
        return tuple(range(ndim))
    (d,) = dims
    return tuple(x for x in range(ndim) if x != d) + (d,)


def _sketch(cfg, outputs, args, target):
    """The rules of `target` run over `cfg`: the GPU rules (autotune/generate_gpu.py,
    imported here as it builds on this module) for CUDA, the CPU rules above otherwise."""
    if target.kind == "cuda":
        from autotune.generate_gpu import GpuSketch
        return GpuSketch(cfg, outputs, target).run(), args
    return _Sketch(cfg, outputs, target).run(), args
