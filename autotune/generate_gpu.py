"""The GPU rules of the generated spaces: blocks, threads, shared memory, reduction strategies.

`autotune.generate.space_for(outputs, "cuda")` runs `GpuSketch`, which keeps
the structure the CPU rules have (`autotune.sketch`: stages, producers,
knobs, `InvalidConfig`) and has rules of its own:

1. **inline**: every elementwise stage that is not an output is inlined, but for
   one that reads a reduction and that several stages read (softmax's
   exponentials, layernorm's mean), which the rows rule computes once.
2. **tile** (matmul, batch matmul, convolution, matmul + bias + relu: the CPU
   rules' `tileable` reductions): the last two output axes are split into
   blocks (blockIdx.y, blockIdx.x) of threads (threadIdx.y, threadIdx.x), each
   thread a register tile (`tile_y` x `tile_x`) accumulated in a local cache;
   the leading axes run over blockIdx.z. With one reduction axis, both inputs
   may be staged through shared memory `step` reduction steps at a time
   (bench/gpu_schedules.matmul), in a pipeline of `stages` slots (1: one copy
   filled between barriers; 2 or 3: `Stage.pipeline`, cp.async fills of the
   next steps while the current one is computed).
3. **rows** (softmax, layernorm): `rows` rows per block, one per threadIdx.y
   (several short rows fill a block), `threads` threads across each; every
   row reduction is computed at the block, its rows on threadIdx.y and its
   axis across the same threads, combined by the `strategy` knob ("shared"
   or "warp"). The row is read from global memory once and written once:
   the inputs of the row's shape that several stages read are copied, and
   the group's stages of the row's shape (softmax's exponentials) computed
   once, where the `keep` knob says: "registers" (each thread keeps element
   t, t + threads, ... of its row, in unrolled loops; at most
   `REGISTER_ELEMENTS` per thread) or "shared" (the block's rows, within the
   target's shared memory); "none", only for rows longer than the registers
   of a whole block hold, reads the row again in each pass. The values of a
   row (its mean, ...) are computed once per thread, and the output divides
   by a per-row value as a multiply by its reciprocal (the "reciprocal"
   pragma, `tex.passes.hoist_reciprocals`).
4. **reduce** (an output reduction that is not tiled: row sums and maxima,
   full sums, column sums): the `strategy` knob chooses
   "serial" (one thread per output point, points over blocks x threads),
   "shared" or "warp" (`rows` points per block, one per threadIdx.y, each with
   `threads` threads across its reduction: several short rows fill a block)
   or "atomic" (each point's reduction split over `blocks` blocks along
   blockIdx.y, each combining its threads by warp shuffles and adding its
   result atomically to the output, which a generated kernel fills with the
   identity first; sum, min and max only).
5. **elementwise** (every other stage): all axes fused and split into blocks
   of `threads` threads, each thread `vector` consecutive elements (one
   access of up to 16 bytes where alignment allows).

The tile rule's `min_blocks` asks ptxas to fit that many blocks on a
multiprocessor (`pragma(..., "launch_bounds", min_blocks)`), which bounds the
registers per thread.

Thread counts are powers of two; a configuration past the target's limits
(threads per block, grid size, static shared memory) or with idle threads
(more than the work needs, rounded up to a power of two) raises
`InvalidConfig`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import tex
from autotune.sketch import Sketch, inputs_of, static_extent
from tex.schedule.stage import Stage
from tex.tensor import PlaceholderOp

#: Threads per block offered for elementwise stages and reductions.
ELEMENTWISE_THREADS = (64, 128, 256, 512, 1024)
#: Consecutive elements per thread of an elementwise stage (at most 16 bytes: one access).
ELEMENTWISE_VECTORS = (1, 2, 4, 8, 16)
#: Blocks of the tile rule asked to fit on one multiprocessor at once (`__launch_bounds__`;
#: 1 asks nothing).
MIN_BLOCKS = (1, 2)
REDUCE_THREADS = (32, 64, 128, 256, 512, 1024)
#: Output points per block of a shared or warp reduction (along threadIdx.y), for short rows.
ROWS = (1, 2, 4, 8, 16, 32)
#: Where the rows rule keeps a row between its passes: each thread's part in registers, the
#: block's rows in shared memory, or nowhere (a row too long for registers, read again and
#: its stages recomputed by each pass).
ROW_KEEP = ("registers", "shared", "none")
_SCOPES = {"registers": "local", "shared": "shared"}
#: Elements of a row one thread may keep in registers (over all its kept stages): a quarter
#: of the 255 registers a CUDA thread can have, the rest left for addresses and temporaries.
REGISTER_ELEMENTS = 64
#: Blocks per output point of an atomic (split) reduction.
ATOMIC_BLOCKS = (2, 4, 8, 16, 32, 64, 128, 256)
#: Reducers that atomics can combine (tex lowers them to atomicAdd / atomicMin / atomicMax).
ATOMIC_REDUCERS = ("sum", "min", "max")
#: Register-tile extents and threads per block axis of the tile rule.
TILE = (1, 2, 4, 8)
TILE_THREADS = (4, 8, 16, 32)
#: Reduction steps staged in shared memory at a time.
STEPS = (4, 8, 16, 32)
#: Shared copies of the staged steps in flight: 1 (one copy, filled between barriers), or a
#: pipeline of 2 or 3 slots filled by asynchronous copies ahead of the compute.
PIPELINE_STAGES = (1, 2, 3)


def _pow2_at_least(n: int) -> int:
    """The smallest power of two not below `n` (1 for n < 1)."""
    return 1 << max(0, (n - 1).bit_length())


def _bind(stage: Stage, axis, tag: str):
    """Bind `axis` of `stage` to the GPU thread axis `tag` ("blockIdx.x", ...)."""
    stage.bind(axis, tex.thread_axis(tag))


def _fuse_all(stage: Stage):
    """`stage`'s axes fused into one loop (its one axis, if it has one)."""
    return stage.fuse(*stage.op.axis) if len(stage.op.axis) > 1 else stage.op.axis[0]


@dataclass
class BlockTile:
    """Rule 2's choices for one output: per thread a register tile of `tile_y` x `tile_x`
    points, `threads_y` x `threads_x` threads per block, and with `staged` the inputs
    staged in shared memory `step` reduction steps at a time."""

    lead: list             # the output's leading axes, over blockIdx.z
    axis_y: object         # its last two axes
    axis_x: object
    ext_y: int
    ext_x: int
    tile_y: int
    tile_x: int
    threads_y: int
    threads_x: int
    reduction: Stage       # the reduction computed at the thread
    inputs: list           # its placeholder inputs
    stageable: bool        # one reduction axis and two placeholder inputs
    staged: bool
    step: int
    stages: int            # shared slots of the staged inputs (1: no pipeline)
    min_blocks: int        # blocks per multiprocessor asked of ptxas (1: none)


@dataclass
class RowPlan:
    """Rule 3's choices for one output of rows of `cols` elements."""

    cols: int
    threads: int           # threads per row
    strategy: str          # "shared" or "warp": how a row's threads combine a reduction
    rows: int              # rows per block
    keep: str              # "registers", "shared" or "none": where the kept stages live
    copied: list           # the inputs of the row's shape that several stages read
    row_shaped: list       # the group's own stages of the row's shape (softmax's exponentials)
    itemsize: int          # the largest element size of those and the output


def _shape(tensor) -> tuple:
    return tuple(int(getattr(d, "value", -1)) for d in tensor.shape)


@dataclass
class BlockReduction:
    """Rule 4's choices for one reduction of `points` output points of `steps` steps."""

    points: int
    steps: int
    strategy: str          # "serial", "shared", "warp" or "atomic"
    threads: int           # threads per point (per block, serial)
    blocks: int            # blocks per point (atomic)
    rows: int              # points per block (shared, warp)


class GpuSketch(Sketch):
    """One run of the GPU rules over a fresh schedule (see the module docstring)."""

    def inline(self):
        """Rule 1: every elementwise stage that is not an output inlined, but for one that
        reads a reduction and that several stages read (softmax's exponentials, layernorm's
        mean): the rows rule computes it once and keeps it."""
        for stage in self.compute_stages():
            if not self.s.is_output(stage) and not stage.op.reduce_axis \
                    and not (len(self.readers(stage)) > 1
                             and any(p.op.reduce_axis for p in self.producers(stage))):
                stage.compute_inline()
                self.inlined.add(stage)

    def threads_knob(self, name: str, candidates, work: int) -> int:
        """A thread-count knob; InvalidConfig for more threads than `work` rounded up to a
        power of two (beyond the smallest candidate) or than the target allows."""
        threads = self.knob(name, candidates)
        self.check(threads <= max(candidates[0], _pow2_at_least(work)),
                   f"{threads} threads for {work} points of work leave threads idle")
        self.check(threads <= self.target.max_threads_per_block,
                   f"{threads} threads exceed the target's {self.target.max_threads_per_block}"
                   " per block")
        return threads

    # --- rule 2 ----------------------------------------------------------------------
    def tile(self, out: Stage, acc: Stage | None):
        """Rule 2: blocks of threads over the last two axes, a register tile per thread."""
        if len(out.op.axis) < 2:
            return self.reduce(out) if out.op.reduce_axis else self.elementwise(out)
        plan = self.tile_knobs(out, acc)
        self.check_tile(plan)
        self.apply_tile(out, acc, plan)

    def tile_knobs(self, out: Stage, acc: Stage | None) -> BlockTile:
        """Rule 2's knobs for `out`, defined in this order: the register tile, the threads
        along y and x, shared staging and its step (staging only for a reduction of two
        placeholders along one axis)."""
        name = out.name
        *lead, axis_y, axis_x = out.op.axis
        ext_y, ext_x = static_extent(axis_y), static_extent(axis_x)
        tile_y = self.knob(f"{name}.tile_y", [t for t in TILE if t <= ext_y])
        tile_x = self.knob(f"{name}.tile_x", [t for t in TILE if t <= ext_x])
        threads_y = self.knob(f"{name}.threads_y", TILE_THREADS)
        threads_x = self.knob(f"{name}.threads_x", TILE_THREADS)
        reduction = out if acc is None else acc
        inputs = [t for t in reduction.op.input_tensors if isinstance(t.op, PlaceholderOp)]
        stageable = len(reduction.op.reduce_axis) == 1 and len(inputs) == 2
        staged = self.knob(f"{name}.shared", [False, True] if stageable else [False])
        step = self.knob(f"{name}.step", STEPS if stageable else [1])
        stages = self.knob(f"{name}.stages", PIPELINE_STAGES if stageable else [1])
        min_blocks = self.knob(f"{name}.min_blocks", MIN_BLOCKS)
        return BlockTile(lead, axis_y, axis_x, ext_y, ext_x, tile_y, tile_x, threads_y,
                         threads_x, reduction, inputs, stageable, staged, step, stages,
                         min_blocks)

    def check_tile(self, plan: BlockTile):
        """InvalidConfig for a step without staging, or a block past the output, the
        threads, shared memory or grid the target allows."""
        threads = plan.threads_y * plan.threads_x
        block_y, block_x = plan.tile_y * plan.threads_y, plan.tile_x * plan.threads_x
        self.check(plan.staged or plan.step == STEPS[0] or not plan.stageable,
                   "without shared staging the step means nothing")
        self.check(plan.staged or plan.stages == 1,
                   "without shared staging there is no pipeline")
        self.check(threads <= self.target.max_threads_per_block,
                   f"{threads} threads exceed {self.target.max_threads_per_block} per block")
        self.check(threads * plan.min_blocks <= self.target.max_threads_per_sm,
                   f"{plan.min_blocks} blocks of {threads} threads exceed the "
                   f"{self.target.max_threads_per_sm} threads of a multiprocessor")
        self.check(block_y <= _pow2_at_least(plan.ext_y) and block_x <= _pow2_at_least(plan.ext_x),
                   f"a block tile of {block_y}x{block_x} is larger than "
                   f"the {plan.ext_y}x{plan.ext_x} output")
        itemsize = plan.reduction.op.output(0).dtype.itemsize
        shared = plan.step * (block_y + block_x) * itemsize * plan.staged * plan.stages
        self.check(shared <= self.target.max_shared_bytes,
                   f"{shared} bytes of shared memory exceed {self.target.max_shared_bytes}")
        rest = math.prod(static_extent(a) for a in plan.lead)
        self.check(rest <= self.target.max_grid[2],
                   f"{rest} leading points exceed the grid's {self.target.max_grid[2]} in z")

    def apply_tile(self, out: Stage, acc: Stage | None, plan: BlockTile):
        """Schedule `out` by `plan`, with `acc` (or a new local cache) at each thread and
        the staged inputs' shared copies at each step."""
        if acc is None:
            acc = self.s[self.s.cache_write(out.op.output(0), "local")]
        thread_x = self.bind_block_tile(out, plan)
        if plan.min_blocks > 1:
            out.pragma(thread_x, "launch_bounds", plan.min_blocks)
        acc.compute_at(out, thread_x)
        steps = self.accumulate_in_registers(acc, plan)
        self.placed.add(acc)
        if plan.staged:
            for tensor in plan.inputs:
                self.stage_shared(tensor, acc, steps, plan)

    @staticmethod
    def bind_block_tile(out: Stage, plan: BlockTile):
        """`out`'s last two axes split into blocks, threads and register tiles (unrolled),
        its leading axes fused over blockIdx.z; the threadIdx.x loop."""
        lead = plan.lead
        by, iy = out.split(plan.axis_y, factor=plan.tile_y * plan.threads_y)
        bx, ix = out.split(plan.axis_x, factor=plan.tile_x * plan.threads_x)
        ty, ti = out.split(iy, nparts=plan.threads_y)
        tx, tj = out.split(ix, nparts=plan.threads_x)
        out.reorder(*lead, by, bx, ty, tx, ti, tj)
        if lead:
            _bind(out, out.fuse(*lead) if len(lead) > 1 else lead[0], "blockIdx.z")
        for axis, tag in ((by, "blockIdx.y"), (bx, "blockIdx.x"), (ty, "threadIdx.y"),
                          (tx, "threadIdx.x")):
            _bind(out, axis, tag)
        out.unroll(ti)
        out.unroll(tj)
        return tx

    @staticmethod
    def accumulate_in_registers(acc: Stage, plan: BlockTile):
        """`acc`'s reduction axes outside its register tile (unrolled), the first split by
        the step when staged; the loop of the steps, or None."""
        first, *other_reduce = acc.op.reduce_axis
        spatial = acc.op.axis
        steps = None
        if plan.staged:
            steps, within = acc.split(first, factor=plan.step)
            acc.reorder(steps, within, *other_reduce, *spatial)
        else:
            acc.reorder(first, *other_reduce, *spatial)
        for axis in spatial[-2:]:
            acc.unroll(axis)
        return steps

    def stage_shared(self, tensor, acc: Stage, at_axis, plan: BlockTile):
        """A shared-memory copy of `tensor` for `acc`, made at `at_axis` by all the block's
        threads together, 16 bytes per thread and access for 32-bit elements (one
        vector load and store where the sizes keep the addresses aligned), pipelined over
        `plan.stages` slots when there are several."""
        copy = self.s[self.s.cache_read(tensor, "shared", [acc])]
        copy.compute_at(acc, at_axis)
        fused = _fuse_all(copy)
        if tensor.dtype.bits == 32:
            fused, elements = copy.split(fused, factor=4)
            copy.vectorize(elements)
        _, lanes = copy.split(fused, factor=plan.threads_y * plan.threads_x)
        fy, fx = copy.split(lanes, factor=plan.threads_x)
        _bind(copy, fy, "threadIdx.y")
        _bind(copy, fx, "threadIdx.x")
        if plan.stages > 1:
            copy.pipeline(plan.stages)
        self.placed.add(copy)

    # --- rule 3 ----------------------------------------------------------------------
    def rows(self, out: Stage):
        """Rule 3: `rows` rows per block, one per threadIdx.y; each row read once into the
        stages kept where `keep` says (or, past what they hold, read again by each stage),
        its reductions across its threads."""
        plan = self.rows_knobs(out)
        self.check_rows(plan)
        if plan.keep == "none":  # the row's stages recomputed where they are read
            for stage in plan.row_shaped:
                stage.compute_inline()
                self.inlined.add(stage)
        else:
            stages = [out] + self.group_of(out)
            for tensor in plan.copied:
                self.s.cache_read(tensor, _SCOPES[plan.keep], self.readers_inlined(stages, tensor))
        *lead, last = out.op.axis
        block = out.fuse(*lead) if len(lead) > 1 else lead[0]
        if plan.rows > 1:
            block, row = out.split(block, factor=plan.rows)
            _bind(out, row, "threadIdx.y")
        _bind(out, block, "blockIdx.x")
        steps, lanes = out.split(last, factor=plan.threads)
        out.reorder(lanes, steps)
        _bind(out, lanes, "threadIdx.x")
        if plan.keep == "registers":
            out.unroll(steps)
        out.pragma(steps, "reciprocal")
        for stage in self.group_of(out):
            self.row_stage(stage, out, block, plan)

    def rows_knobs(self, out: Stage) -> RowPlan:
        """Rule 3's knobs for `out`, in this order: threads per row, the strategy that
        combines them, rows per block, where the row is kept; and the stages of the row's
        shape: the inputs several stages read (to be copied) and the group's own."""
        *lead, last = out.op.axis
        cols = static_extent(last)
        threads = self.threads_knob(f"{out.name}.threads", REDUCE_THREADS, cols)
        strategy = self.knob(f"{out.name}.strategy", ["shared", "warp"])
        points = math.prod(static_extent(a) for a in lead)
        rows = self.knob(f"{out.name}.rows", [r for r in ROWS if r <= _pow2_at_least(points)])
        keep = self.knob(f"{out.name}.keep", ROW_KEEP)
        stages = [out] + self.group_of(out)
        shape = tuple(static_extent(a) for a in out.op.axis)
        readers = self.readers_inlined(stages)
        copied = [t for t in inputs_of([out.op.output(0)]) if _shape(t) == shape
                  and sum(t in st.op.input_tensors for st in readers) > 1]
        row_shaped = [st for st in stages[1:]
                      if not st.op.reduce_axis and len(st.op.axis) == len(shape)]
        itemsize = max(t.dtype.itemsize for t in copied + [st.op.output(0) for st in stages])
        return RowPlan(cols, threads, strategy, rows, keep, copied, row_shaped, itemsize)

    def readers_inlined(self, stages, tensor=None) -> list[Stage]:
        """The stages that read `tensor` (any tensor: None) for `stages`, themselves or the
        inlined stages they read through."""
        found, stack = [], list(stages)
        while stack:
            stage = stack.pop()
            if stage in found:
                continue
            found.append(stage)
            stack.extend(st for st in self.compute_stages() if st in self.inlined
                         and any(t.op is st.op for t in stage.op.input_tensors))
        return [st for st in found if tensor is None or tensor in st.op.input_tensors]

    def check_rows(self, plan: RowPlan):
        """InvalidConfig for threads past the target's block, a row that its kept stages
        cannot hold (more elements per thread than `REGISTER_ELEMENTS`, more bytes per
        block than the target's shared memory), or one not kept that registers could hold
        at the target's most threads per block."""
        self.check(plan.threads * plan.rows <= self.target.max_threads_per_block,
                   f"{plan.threads} x {plan.rows} threads exceed "
                   f"{self.target.max_threads_per_block} per block")
        kept = len(plan.copied) + len(plan.row_shaped)
        per_thread = -(-plan.cols // plan.threads) * kept
        self.check(plan.keep != "registers" or per_thread <= REGISTER_ELEMENTS,
                   f"a row of {plan.cols} kept in {kept} stage(s) across {plan.threads} "
                   f"threads is {per_thread} elements per thread, more than the "
                   f"{REGISTER_ELEMENTS} kept in registers")
        shared = plan.rows * plan.cols * kept * plan.itemsize
        self.check(plan.keep != "shared" or shared <= self.target.max_shared_bytes,
                   f"{plan.rows} row(s) of {plan.cols} kept in {kept} stage(s) take "
                   f"{shared} bytes of shared memory, more than the target's "
                   f"{self.target.max_shared_bytes}")
        most = self.target.max_threads_per_block
        self.check(plan.keep != "none" or -(-plan.cols // most) * kept > REGISTER_ELEMENTS,
                   f"a row of {plan.cols} fits in the registers of {most} threads: it is kept, "
                   "not read again")

    def row_stage(self, stage: Stage, out: Stage, block, plan: RowPlan):
        """`stage` computed at `out`'s `block`: its rows on threadIdx.y where the block has
        several, its reduction (combined by the strategy) or last axis across the threads;
        a stage of the row's shape kept where `plan.keep` says, one of a value per row in
        each thread's registers."""
        lead = len(out.op.axis) - 1
        stage.compute_at(out, block)
        if plan.rows > 1:  # the block's rows, one per threadIdx.y
            rows_of = stage.fuse(*stage.op.axis[:lead]) if lead > 1 else stage.op.axis[0]
            _bind(stage, rows_of, "threadIdx.y")
        if stage.op.reduce_axis:
            steps, lanes = stage.split(stage.op.reduce_axis[-1], factor=plan.threads)
            stage.reorder(lanes, steps)
            _bind(stage, lanes, "threadIdx.x")
            stage.reduce_strategy(lanes, plan.strategy)
        elif len(stage.op.axis) == len(out.op.axis):  # kept: "none" inlined them
            stage.set_scope(_SCOPES[plan.keep])
            steps, lanes = stage.split(stage.op.axis[-1], factor=plan.threads)
            stage.reorder(lanes, steps)
            _bind(stage, lanes, "threadIdx.x")
        else:
            stage.set_scope("local")
            steps = None
        if steps is not None and plan.keep == "registers":
            stage.unroll(steps)
        self.placed.add(stage)

    # --- rule 4 ----------------------------------------------------------------------
    def reduce(self, out: Stage):
        """Rule 4: the `strategy` knob over serial, shared, warp and atomic reductions."""
        plan = self.reduce_knobs(out)
        self.check_reduce(plan)
        spatial = _fuse_all(out)
        if plan.strategy == "serial":
            block, thread = out.split(spatial, factor=plan.threads)
            _bind(out, block, "blockIdx.x")
            _bind(out, thread, "threadIdx.x")
        else:
            self.reduce_in_blocks(out, spatial, plan)

    def reduce_knobs(self, out: Stage) -> BlockReduction:
        """Rule 4's knobs for `out`, in this order: the strategy (shared and warp for one
        reduction axis, atomic also for a reducer atomics combine), threads, blocks, rows."""
        points = math.prod(static_extent(a) for a in out.op.axis)
        steps = math.prod(static_extent(a) for a in out.op.reduce_axis)
        single = len(out.op.reduce_axis) == 1 and out.op.num_outputs == 1
        combiner = out.op.body[0].combiner.name
        strategies = ["serial"] + (["shared", "warp"] if single else []) \
            + (["atomic"] if single and combiner in ATOMIC_REDUCERS else [])
        strategy = self.knob(f"{out.name}.strategy", strategies)
        threads = self.knob(f"{out.name}.threads", REDUCE_THREADS)
        blocks = self.knob(f"{out.name}.blocks", [1] + [b for b in ATOMIC_BLOCKS if b < steps])
        rows = self.knob(f"{out.name}.rows", [r for r in ROWS if r <= _pow2_at_least(points)])
        return BlockReduction(points, steps, strategy, threads, blocks, rows)

    def check_reduce(self, plan: BlockReduction):
        """InvalidConfig for knobs the strategy does not read, idle threads, threads or
        blocks past the target's limits, or a warp reduction of a partial warp."""
        strategy, threads, rows = plan.strategy, plan.threads, plan.rows
        self.check(threads * rows <= self.target.max_threads_per_block,
                   f"{threads} x {rows} threads exceed {self.target.max_threads_per_block} "
                   "per block")
        self.check((strategy == "atomic") == (plan.blocks > 1),
                   "blocks per point is a knob of the atomic strategy only")
        self.check(rows == 1 or strategy in ("shared", "warp"),
                   "points per block is a knob of the shared and warp strategies only")
        work = plan.points if strategy == "serial" else plan.steps // max(1, plan.blocks)
        self.check(threads <= max(REDUCE_THREADS[0], _pow2_at_least(work)),
                   f"{threads} threads for {work} points of work leave threads idle")
        self.check(strategy != "warp" or threads % self.target.warp_size == 0,
                   f"a warp reduction needs a multiple of {self.target.warp_size} threads, "
                   f"got {threads}")
        self.check(strategy == "serial" or -(-plan.points // rows) <= self.target.max_grid[0],
                   f"{plan.points} points exceed the grid's {self.target.max_grid[0]} blocks")

    @staticmethod
    def reduce_in_blocks(out: Stage, spatial, plan: BlockReduction):
        """`out`'s points (the fused loop `spatial`) over blocks, `rows` per block on
        threadIdx.y, each reduced across `threads` threads; atomic: over `blocks` blocks
        along blockIdx.y too, each block's threads combined by warp shuffles."""
        if plan.rows > 1:
            block, row = out.split(spatial, factor=plan.rows)
            _bind(out, block, "blockIdx.x")
            _bind(out, row, "threadIdx.y")
        else:
            _bind(out, spatial, "blockIdx.x")
        per_thread, lanes = out.split(out.op.reduce_axis[0], factor=plan.threads)
        _bind(out, lanes, "threadIdx.x")
        if plan.strategy == "atomic":
            block, serial = out.split(per_thread, nparts=plan.blocks)
            out.reorder(block, serial, lanes)
            _bind(out, block, "blockIdx.y")
            out.reduce_strategy(block, "atomic")
        out.reduce_strategy(lanes, "warp" if plan.strategy == "atomic" else plan.strategy)

    # --- rule 5 ----------------------------------------------------------------------
    def elementwise(self, stage: Stage):
        """Rule 5: all axes fused, split into blocks of `threads` threads, `vector`
        consecutive elements each."""
        points = math.prod(static_extent(a) for a in stage.op.axis)
        itemsize = stage.op.output(0).dtype.itemsize
        vector = self.knob(f"{stage.name}.vector",
                           [v for v in ELEMENTWISE_VECTORS if v * itemsize <= 16])
        threads = self.threads_knob(f"{stage.name}.threads", ELEMENTWISE_THREADS,
                                    -(-points // vector))
        fused = _fuse_all(stage)
        if vector > 1:
            fused, lanes = stage.split(fused, factor=vector)
            stage.vectorize(lanes)
        block, thread = stage.split(fused, factor=threads)
        _bind(stage, block, "blockIdx.x")
        _bind(stage, thread, "threadIdx.x")
        self.placed.add(stage)
