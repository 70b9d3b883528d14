"""The rules of the generated spaces for CPUs (`autotune.generate.space_for`).

`CpuSketch` walks the stages and applies, as Ansor's sketch rules do, one
rule per stage (`autotune.sketch`); the knobs the rules define form the
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
   reads a compact panel. For a reduction over several axes (a convolution)
   two more knobs: `pack_at` "parallel" makes the vector axis's outer loop the
   parallel one, each of its iterations packing its own panel (a block of
   output channels' weights, which then stays in that core's cache) before its
   tiles run serially; and `reduce_order` "longest_last" puts the longest
   reduction axis innermost (the input channels inside the kernel's taps), so
   that the unrolled loops around the tile are the short ones.
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

A configuration that breaks a rule's limits (a register tile of more vector
registers than the CPU has, a packing with no serial loop to hold it) raises
`InvalidConfig` when instantiated; the search never proposes such
configurations.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from autotune.sketch import Sketch, inputs_of
from tex.expr import TensorRead
from tex.schedule.stage import Stage
from tex.target import as_target
from tex.tensor import Tensor
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


@dataclass
class TilePlan:
    """Rule 2's choices for one output, as its knobs give them, and what follows."""

    axes: list                # the output's axes
    extents: list[int]
    movable: list[int]        # the register tile's axes: the last three longer than 1
    vector_at: int            # the vector axis
    vector: int               # the vector's width
    rows: list[int]           # the tile extents of the other movable axes, in axis order
    order: tuple[int, ...]    # the order of their outer loops
    reduction: Stage          # the reduction computed at the tile
    inputs: list[Tensor]      # its inputs that may be packed
    packs: list[bool]
    copy_orders: list[tuple]  # the dimension order of each input's packed copy
    unroll: int               # the unroll factor of the innermost reduction axis
    by_row: bool              # the result written back by rows of the last axis
    pack_in_parallel: bool    # the copies made per iteration of the parallel loop
    reduce_order: list[int]   # the reduction's axes (their positions), outermost first
    innermost_extent: int     # the extent of the innermost of them

    @property
    def last(self) -> int:
        """The output's last axis."""
        return len(self.axes) - 1

    @property
    def others(self) -> list[int]:
        """The register tile's axes other than the vector axis."""
        return [d for d in self.movable if d != self.vector_at]

    @property
    def tiles(self) -> list[int]:
        """The register tile's extent along each axis of the output."""
        tiles = [1] * len(self.axes)
        tiles[self.vector_at] = self.vector
        for d, t in zip(self.others, self.rows):
            tiles[d] = t
        return tiles

    @property
    def layout(self) -> list[int]:
        """The accumulator's axes (and storage): the vector axis last."""
        return [d for d in range(len(self.axes)) if d != self.vector_at] + [self.vector_at]

    @property
    def serial_first(self) -> bool:
        """Whether the copies are made in the first outer loop, run serially (by row they
        are made before all, in parallel each iteration of the parallel loop makes its own)."""
        return any(self.packs) and not self.by_row and not self.pack_in_parallel


class CpuSketch(Sketch):
    """One run of the CPU rules over a fresh schedule (see the module docstring)."""

    def __init__(self, cfg, outputs, target, sizes=None):
        super().__init__(cfg, outputs, target, sizes)
        self.lanes = target.vector_lanes(outputs[0].dtype)

    # --- rule 1 ----------------------------------------------------------------------
    def inline(self):
        """Rule 1: elementwise stages that are not outputs inlined; a knob may keep one
        that a reduction reads as a stage of its own."""
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

    # --- rule 2 ----------------------------------------------------------------------
    def tile(self, out: Stage, acc: Stage | None):
        """Rule 2 for `out`, with `acc` computed at its tile: the reduction `out` reads, or
        when None, a write cache of `out` laid out with the vector axis last."""
        plan = self.tile_knobs(out, acc)
        self.check_tile(plan, epilogue=acc is not None)
        self.apply_tile(out, acc, plan)

    def tile_knobs(self, out: Stage, acc: Stage | None) -> TilePlan:
        """Rule 2's knobs for `out`, defined in this order: the vector axis and width, the
        tile extents, the loop order, packing per input, for a reduction over several
        axes of different extents their order, the reduction's unrolling, into a write
        cache holding the last axis in the tile the write-back, and for a reduction over
        several axes where the packed copies are made."""
        name, axes = out.name, list(out.op.axis)
        extents = [self.extent(a) for a in axes]
        movable = [d for d in range(len(axes)) if extents[d] > 1][-3:] or [len(axes) - 1]
        vector_at, vector = self.vector_knobs(name, extents, movable)
        longest = max(extents[d] for d in movable)
        rows = [self.knob(f"{name}.tile_{r}", [t for t in TILE_ROWS if t <= longest])
                for r in range(len(movable) - 1)]
        order = self.knob(f"{name}.order", list(itertools.permutations(range(len(movable) - 1))))
        reduction = out if acc is None else acc
        inputs = [t for t in reduction.op.input_tensors if len(t.shape) >= 2]
        packs = [self.knob(f"{name}.pack_{t.name}", [False, True]) for t in inputs]
        extents_of_reduce = [self.extent(a) for a in reduction.op.reduce_axis]
        declared = list(range(len(extents_of_reduce)))
        longest_last = sorted(declared, key=lambda r: extents_of_reduce[r])
        several = len(declared) > 1  # a convolution's channels and taps
        orderable = sum(e > 1 for e in extents_of_reduce) > 1 and longest_last != declared
        reduce_order = declared
        if orderable and self.knob(f"{name}.reduce_order", ["declared", "longest_last"]) \
                == "longest_last":
            reduce_order = longest_last
        innermost = {declared[-1], longest_last[-1] if orderable else declared[-1]}
        unroll = self.knob(f"{name}.unroll_reduce", sorted(
            {u for r in innermost for u in self.reduce_unroll_choices(extents_of_reduce[r])}))
        transposable = acc is None and len(axes) - 1 in movable  # into a write cache
        by_row = transposable and self.knob(f"{name}.write_back", ["tile", "row"]) == "row"
        pack_in_parallel = several and inputs and \
            self.knob(f"{name}.pack_at", ["serial", "parallel"]) == "parallel"
        vector_var = reduction.op.axis[vector_at].var
        copy_orders = [_vector_dimension_last(reduction, t, vector_var) for t in inputs]
        return TilePlan(axes, extents, movable, vector_at, vector, rows, order, reduction,
                        inputs, packs, copy_orders, unroll, by_row, bool(pack_in_parallel),
                        reduce_order, extents_of_reduce[reduce_order[-1]])

    def vector_knobs(self, name: str, extents: list[int], movable: list[int]):
        """(vector axis, width) from their knobs: the axis one of the tile's whose extent is
        a multiple of the lanes (no lanes wasted on a tail) where there is one, else the
        last; the width one, two or four vector registers, no wider than those axes."""
        whole = [d for d in reversed(movable) if extents[d] % self.lanes == 0]
        vector_axes = whole or [len(extents) - 1]
        vector_at = self.knob(f"{name}.vector_axis", vector_axes)
        widest = max(extents[d] for d in vector_axes)
        widths = [v * self.lanes for v in (1, 2, 4) if v * self.lanes <= widest]
        vector = self.knob(f"{name}.vector", widths or sorted({extents[d] for d in vector_axes}))
        return vector_at, vector

    @staticmethod
    def reduce_unroll_choices(extent: int) -> list[int]:
        """Unroll factors for an innermost reduction axis of `extent`: 1, 2, 4, or all of a
        short one."""
        return [1] + [u for u in (2, 4) if u < extent] + ([extent] if 1 < extent <= 4 else [])

    def check_tile(self, plan: TilePlan, epilogue: bool):
        """InvalidConfig for a register tile that does not fit its axes or the vector
        registers, for packing that is impossible or missing, and for a layout or a
        write-back the tile cannot have (`epilogue`: the reduction is read by one)."""
        axes, extents = plan.axes, plan.extents
        self.check(plan.vector <= extents[plan.vector_at],
                   f"a vector of {plan.vector} is wider than axis {axes[plan.vector_at].name}")
        for d, t in zip(plan.others, plan.rows):
            self.check(t <= extents[d], f"a tile of {t} is longer than axis {axes[d].name}")
        self.check_registers(plan)
        self.check_packing(plan)
        self.check(not epilogue or plan.vector_at == plan.last, "a reduction read by an "
                   "epilogue keeps its layout, so only its last axis can be vectorized")
        self.check(not plan.by_row or (plan.vector_at != plan.last and plan.tiles[plan.last] > 1
                                       and plan.others[plan.order[-1]] == plan.last),
                   "a row write-back needs the vector on another axis than the last, and a "
                   "register tile along the last, its outer loop last in the order (which then "
                   "leaves it out)")
        self.check(not plan.serial_first or len(plan.movable) > 1, "packed copies are made in "
                   "a serial outer loop, and this tile has only the one it runs in parallel")
        self.check(plan.unroll <= plan.innermost_extent, f"an unroll of {plan.unroll} is "
                   f"longer than the innermost reduction axis ({plan.innermost_extent})")
        self.check(not plan.pack_in_parallel or (any(plan.packs) and not plan.by_row),
                   "packing in the parallel loop needs a packed input and a write-back by tiles")

    def check_registers(self, plan: TilePlan):
        """InvalidConfig for a register tile of more vectors than `register_budget`."""
        registers = math.prod(plan.rows) * -(-plan.vector // self.lanes)
        budget = register_budget(self.target)
        self.check(registers <= budget,
                   f"a register tile of {registers} vectors exceeds {budget}, the "
                   f"{self.target.vector_registers} vector registers of {self.target} less "
                   f"{OPERAND_REGISTERS} for the operands")

    def check_packing(self, plan: TilePlan):
        """InvalidConfig for packing an inlined stage, or for not packing an input whose
        vectors would gather (the vector loop does not index its last dimension)."""
        self.check(not any(p and self.s.stage_of(t) in self.inlined
                           for t, p in zip(plan.inputs, plan.packs)),
                   "an inlined stage cannot be packed")
        for t, pack, copy_order in zip(plan.inputs, plan.packs, plan.copy_orders):
            self.check(pack or list(copy_order) == sorted(copy_order),
                       f"the vectors would gather {t.name}: it must be packed")

    def apply_tile(self, out: Stage, acc: Stage | None, plan: TilePlan):
        """Schedule `out` by `plan`: its tiles in a parallel loop, the accumulator (`acc`,
        or a new write cache) and the reduction at the tile, the packed copies."""
        if acc is None:
            acc = self.s[self.s.cache_write(out.op.output(0), "local", axis_order=plan.layout)]
        tile = self.s[self.s.cache_write(acc.op.output(0), "local")] if plan.by_row else acc
        tile_at, pack_at = self.tile_loops(out, plan)
        acc.compute_at(out, tile_at)
        if plan.by_row:
            self.rows_of_tiles(acc, tile, plan.layout, plan.tiles)
        self.reduce_in_registers(tile, plan)
        self.placed.update((acc, tile))
        self.pack_inputs(out, tile, pack_at, plan)

    def tile_loops(self, out: Stage, plan: TilePlan):
        """`out`'s loops: the outer loops fused into one parallel loop, then the register
        tile's loops unrolled and its vector loop vectorized, or by row the last axis's
        lanes vectorized. Where packed copies are made in the vector axis's outer loop,
        that loop runs serially around the parallel loop of the others; where they are
        made in the parallel loop, it is the parallel loop (with the loops of the axes
        outside the tile) and the others run serially inside it. (The loop the tile is
        computed at, the loop the copies are made at or None for before all of `out`.)"""
        outer, inner = self.split_tiles(out, plan)
        fixed = [outer[d] for d in range(len(plan.axes)) if d not in plan.movable]
        moved = [outer[plan.vector_at]] + [outer[plan.others[p]] for p in plan.order
                                           if not (plan.by_row and plan.others[p] == plan.last)]
        lanes = list(out.split(outer[plan.last], factor=self.lanes)) if plan.by_row else []
        out.reorder(*fixed, *moved, *inner, *lanes)
        if plan.serial_first:
            tile_at, pack_at = out.fuse(*moved[1:]), moved[0]
            out.parallel(tile_at)
        elif plan.pack_in_parallel:
            pack_at = out.fuse(*fixed, moved[0])
            out.parallel(pack_at)
            tile_at = moved[-1] if len(moved) > 1 else pack_at
        else:
            tile_at, pack_at = out.fuse(*fixed, *moved), None
            out.parallel(tile_at)
        if plan.by_row:  # the rows of the tiles, each written out along the last axis
            out.vectorize(lanes[-1])
        else:
            for i in inner[:-1]:
                out.unroll(i)
            if plan.tiles[plan.vector_at] > 1:
                out.vectorize(inner[-1])
        return tile_at, pack_at

    @staticmethod
    def split_tiles(out: Stage, plan: TilePlan):
        """Each of `out`'s axes with a tile (but the last, by row) split into an outer loop
        and a tile loop: (the outer loops per axis, the tile loops, the vector's last)."""
        outer, inner = [], []
        tiles = plan.tiles
        for d, (axis, t) in enumerate(zip(plan.axes, tiles)):
            if t > 1 and not (plan.by_row and d == plan.last):
                o, i = out.split(axis, factor=t)
                outer.append(o)
                inner.insert(len(inner) if d != plan.vector_at else 0, i)
            else:
                outer.append(axis)
        if tiles[plan.vector_at] > 1 and not plan.by_row:
            inner.append(inner.pop(0))
        return outer, inner

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

    def reduce_in_registers(self, tile: Stage, plan: TilePlan):
        """The register tile's reduction: the reduction axes outermost (in the plan's
        order), the innermost unrolled by the knob, the tile's loops unrolled and its
        vector loop vectorized."""
        *tile_spatial, vector_loop = tile.op.axis  # in `layout` order
        reduce_axes = [tile.op.reduce_axis[r] for r in plan.reduce_order]
        tile.reorder(*reduce_axes, *tile_spatial, vector_loop)
        innermost = reduce_axes[-1]
        # unrolled whole only when its extent is a constant (not just at the sizes scheduled for)
        if plan.unroll == getattr(innermost.dom.extent, "value", None):
            tile.unroll(innermost)
        elif plan.unroll > 1:
            _, k_inner = tile.split(innermost, factor=plan.unroll)
            tile.unroll(k_inner)
        for a, d in zip(tile_spatial, plan.layout):
            if plan.tiles[d] > 1:
                tile.unroll(a)
        if plan.vector > 1:
            tile.vectorize(vector_loop)

    def pack_inputs(self, out: Stage, tile: Stage, pack_at, plan: TilePlan):
        """The packed copies `tile` reads, vectorized: made in `out`'s loop `pack_at`, or
        by row before all of `out`; in parallel themselves unless `pack_at` is the
        parallel loop."""
        for tensor, pack, copy_order in zip(plan.inputs, plan.packs, plan.copy_orders):
            if not pack:
                continue
            copy = self.s[self.s.cache_read(tensor, "global", [tile], axis_order=copy_order)]
            if pack_at is not None:
                copy.compute_at(out, pack_at)
            *rows, last = copy.op.axis
            block, lane = copy.split(last, factor=self.lanes)
            copy.vectorize(lane)
            if rows and copy_order[-1] != len(copy_order) - 1:
                # the vector's lanes are rows apart in the input: the other dimensions are
                # fused into one loop inside the vector's blocks, each step reading the
                # next element of every row, which the codegen copies lanes x lanes at a
                # time through a transpose in registers instead of gathers
                copy.reorder(block, *rows, lane)
                rows = [copy.fuse(*rows) if len(rows) > 1 else rows[0]]
            if rows and not plan.pack_in_parallel:
                copy.parallel(rows[0])  # before the tiles
            self.placed.add(copy)

    # --- rule 3 ----------------------------------------------------------------------
    def rows(self, out: Stage):
        """Rule 3: `out`'s rows in parallel; what it reads (reductions with vector partials,
        elementwise stages vectorized) computed at the row; a knob prefetches the next
        row of each input shaped like `out` at the top of a row."""
        group = self.group_of(out)
        widths, prefetched = self.rows_knobs(out, group)
        *lead, last = out.op.axis
        row = out.fuse(*lead)
        out.parallel(row)
        self.vectorize_last(out, last, widths[out])
        for stage in group:
            if stage.op.reduce_axis:
                self.vector_partials(stage, stage.op.axis[-1], widths[stage])
            elif len(stage.op.axis) == len(out.op.axis):
                self.vectorize_last(stage, stage.op.axis[-1], widths[stage])
            stage.compute_at(out, row)
            self.placed.add(stage)
        for tensor in prefetched:
            out.prefetch(tensor, row, 1)

    def rows_knobs(self, out: Stage, group: list[Stage]):
        """Rule 3's knobs, defined in this order: `out`'s vector width, per stage of
        `group` the vector partials of a reduction or the vector width of a stage as long
        as `out`, then prefetching. ({stage: width or partials}, the inputs to prefetch)."""
        widths = {out: self.elementwise_width(out)}
        for stage in group:
            if stage.op.reduce_axis:
                widths[stage] = self.partial_lanes(stage)
            elif len(stage.op.axis) == len(out.op.axis):
                widths[stage] = self.elementwise_width(stage)
        row_inputs = [t for t in inputs_of([out.op.output(0)])
                      if len(t.shape) == len(out.op.axis)]
        prefetch = bool(row_inputs) and self.knob(f"{out.name}.prefetch", [False, True])
        return widths, row_inputs if prefetch else []

    @staticmethod
    def vectorize_last(stage: Stage, axis, width: int):
        """Split `axis` into vectors of `width` lanes and vectorize them (none if 1)."""
        if width > 1:
            _, lane = stage.split(axis, factor=width)
            stage.vectorize(lane)

    def partial_lanes(self, stage: Stage) -> int:
        """The knob of how many vector partial results reduce `stage` (0: none)."""
        extent = self.extent(stage.op.reduce_axis[-1])
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
        """Rule 4: a reduction at the root, split into parallel chunks when it has few
        points (`chunk_choices`), each reduced through vector partials."""
        points = math.prod(self.extent(a) for a in out.op.axis)
        first = out.op.reduce_axis[0]
        chunks = self.knob(f"{out.name}.chunks", self.chunk_choices(out))
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

    def chunk_choices(self, out: Stage) -> list[int]:
        """Parallel chunks of `out`'s first reduction axis: 1, and when it has fewer points
        than 32 per core, 2, 8 or 32 chunks per core (`CHUNKS_PER_CORE`; 4, 16 or 64 on 2
        cores) fewer than the axis's extent."""
        points = math.prod(self.extent(a) for a in out.op.axis)
        cores = self.target.num_cores or 1
        few = points < CHUNKS_PER_CORE[-1] * cores
        return [1] + [c * cores for c in CHUNKS_PER_CORE
                      if few and c * cores < self.extent(out.op.reduce_axis[0])]

    # --- rule 5 ----------------------------------------------------------------------
    def width_choices(self, stage: Stage) -> list[int]:
        """Vector widths for `stage`'s last axis: one or four vector registers, or 1."""
        extent = self.extent(stage.op.axis[-1])
        return [w for w in (self.lanes, 4 * self.lanes) if w <= extent] or [1]

    def elementwise_width(self, stage: Stage) -> int:
        """The knob of `stage`'s vector width."""
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
        if math.prod(self.extent(a) for a in stage.op.axis) >= 2 * width:
            stage.parallel(rows)
        self.placed.add(stage)


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
