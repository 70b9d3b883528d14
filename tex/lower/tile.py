"""Tensorized tiles: a stage's innermost loops replaced by its intrinsic's statements.

`tensorized_nest` builds the nest of a stage with `Stage.tensorize`: its
loops outside the tile as usual, the tile replaced by what the intrinsic's
`lower_fn` returns, once `tex.lower.tile_match` has checked that tile and
intrinsic match (the rules are in `tex.schedule.tensorize`). With reduction
loops outside the tile, the intrinsic's reset takes the place of the init
nest's body and its update that of the update's; or, when those loops are
plain reductions and the intrinsic has an `Accumulator`, the tile stays in
its local buffer across them and is stored once after them.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.errors import ExprError, LoweringError
from tex.expr import Const, TensorRead, structurally_equal
from tex.ir import Allocate, For, Stmt, seq
from tex.lower.bound import enclosing_loops
from tex.lower.gpu_reduction import kernel_bindings
from tex.lower.nest import StageLoops, init_and_update
from tex.lower.tile_binds import bind_buffers
from tex.lower.tile_match import BodyMatch, Tile, TileViews, pair_axes
from tex.schedule.tensorize import Accumulator
from tex.visitor import collect, substitute, uses_var


@dataclass(frozen=True)
class TileStatements:
    """What replaces a stage's tile: the loops from `position` (in the stage's loop order)
    inward are replaced by `whole` where the tile computes its outputs from scratch,
    or by `update` with `reset` in place of the reduction's init nest, or by
    `accumulator`'s statements (see `Accumulator`) when the intrinsic has one."""

    position: int
    whole: Stmt | None
    reset: Stmt | None
    update: Stmt | None
    accumulator: Accumulator | None = None


def tensorized_nest(loops: StageLoops):
    """The nest of a tensorized stage (see the module doc)."""
    stage = loops.plan.stage
    leaves = stage.leaf_iter_vars
    axis = stage.tensorized[0]   # None: the body inside all the loops
    outer = leaves[:leaves.index(axis)] if axis in leaves else leaves
    first = next((i for i, v in enumerate(outer) if v.kind == "reduce"), None)
    tile = lower_tile(loops, _enclosing_tags(stage, outer), first is not None)
    if first is None:
        return loops.around(outer, tile.whole, loops.depth)
    if any(v in stage.bindings for v in outer[first:]):
        raise LoweringError(f"{_where(stage)}: a reduction "
                            "loop outside the tile is bound to a GPU thread axis; keep the "
                            "reduction loops serial around a tensorized tile")
    accumulator = tile.accumulator
    if accumulator is not None and all(v.kind == "reduce" and stage.annotations.get(v) in
                                       (None, "unroll") for v in outer[first:]):
        store = loops.guards_moved_below(first, accumulator.store)
        return loops.split_at(outer, first, accumulator.update, lambda update: Allocate(
            accumulator.buffer, seq(accumulator.reset, update, store)))
    return init_and_update(loops, outer, first, (tile.reset, tile.update))


def _enclosing_tags(stage, outer) -> set:
    """The thread axes bound to loops around the tile."""
    tags = {stage.bindings[v] for v in outer if v in stage.bindings}
    return tags | {owner.bindings[v] for v, owner in enclosing_loops(stage)
                   if v in owner.bindings}


def lower_tile(loops: StageLoops, enclosing_tags: set, reductions_outside: bool):
    """The intrinsic's statements for the tile of `loops.plan`'s stage, after checking
    that they match. `enclosing_tags` are the thread axes bound around the tile;
    `reductions_outside` says whether some reduction loop of the stage lies outside
    the tile (then reset and update are needed). Raises LoweringError when anything
    differs (see `tex.schedule.tensorize`)."""
    plan = loops.plan
    stage = plan.stage
    axis, intrin = stage.tensorized
    where = _where(stage)
    leaves = stage.leaf_iter_vars
    if axis is not None and axis not in leaves:
        raise LoweringError(f"{where}: {axis.name} is no longer a loop of the stage (it was "
                            "fused or factored after tensorize); tensorize a current loop")
    tile = Tile(plan, intrin, len(leaves) if axis is None else leaves.index(axis), where)
    _check_tile_loops(tile, loops)
    result, bindings = _call_lower_fn(tile, loops.lowering.buffers)
    parts, accumulator = _parts(result, intrin, where)
    parts = tuple(None if p is None else substitute(p, bindings) for p in parts)
    statements = parts if accumulator is None else \
        parts + (accumulator.reset, accumulator.update, accumulator.store)
    _check_thread_loops(statements, tile, enclosing_tags,
                        kernel_bindings(stage, loops.lowering.plans))
    return _tile_statements(tile, parts, accumulator, reductions_outside)


def _where(stage) -> str:
    """Names the tensorize in messages."""
    axis = stage.tensorized[0]
    return f"tensorize on stage {stage.name}, " + \
        ("its body" if axis is None else f"axis {axis.name}")


def _call_lower_fn(tile: Tile, buffers: dict):
    """What the intrinsic's lower_fn returns for the views of the tile's tensors, and the
    values of the intrinsic's variables: its variable extents (the loops'), its declared
    buffers' variables (`tex.lower.tile_binds`) and its scalar parameters (what the
    stage's body has in their place, which the tile's loops must not change)."""
    plan, intrin = tile.plan, tile.intrin
    tile_var, sizes = pair_axes(tile)
    match = BodyMatch(tile)
    if len(plan.body) != len(intrin.op.body):
        raise LoweringError(f"{tile.where}: the stage has {len(plan.body)} output(s), intrinsic "
                            f"{intrin.name} {len(intrin.op.body)}")
    match.expr(plan.body[0], intrin.op.body[0])
    views = TileViews(tile, buffers, tile_var)
    inputs = [views.input(p, match) for p in intrin.inputs]
    output = views.output(intrin)
    tensors = intrin.inputs + (intrin.output,)
    bindings = bind_buffers(tile, dict(zip(tensors, inputs + [output])), views.ranges, sizes)
    bindings.update(_scalar_values(tile, match, views))
    scalars = (list(intrin.scalar_params),) if intrin.scalar_params else ()
    try:
        return intrin.lower_fn(inputs, [output], *scalars), bindings
    except (LoweringError, ExprError) as e:  # the intrinsic refuses these tiles: say where
        raise LoweringError(f"{tile.where}: {e}") from e


def _scalar_values(tile: Tile, match: BodyMatch, views: TileViews) -> dict:
    """{scalar parameter: its value over the loops} from the body's match, or for a
    parameter the intrinsic's computation does not use, from the call of the intrinsic
    in `compute` (`TensorIntrinUse.scalars`), checked to be the same all over the tile.
    A parameter neither gives is left to the kernel's arguments."""
    use = getattr(tile.plan.op, "tensor_intrin", None)
    given = dict(use.scalars) if use is not None and use.intrin is tile.intrin else {}
    values = {}
    for param, value in {**given, **match.scalars}.items():
        if collect(value, lambda n: isinstance(n, TensorRead)):
            raise LoweringError(f"{tile.where}: intrinsic {tile.intrin.name}'s scalar "
                                f"parameter {param.name} stands for `{value}`, which reads a "
                                "tensor; pass a value made of the loop variables and sizes")
        value = substitute(value, views.root_values)
        moving = [v for v in views.tile_vars if uses_var(value, v)]
        if moving:
            raise LoweringError(f"{tile.where}: intrinsic {tile.intrin.name}'s scalar "
                                f"parameter {param.name} stands for `{value}`, which changes "
                                f"along loop {moving[0].name} inside the tile")
        values[param] = ops.cast(param.dtype, value)
    return values


def _tile_statements(tile: Tile, parts: tuple, accumulator, reductions_outside: bool):
    """The TileStatements for this placement of the tile, checked to be all given."""
    body, reset, update = parts
    reduces = bool(tile.plan.op.reduce_axis)
    if reductions_outside or (body is None and reduces):
        needed = {"reset": reset, "update": update}
    else:
        needed = {} if body is not None else {"update": update}
    for which, stmt in needed.items():
        if stmt is None:
            raise LoweringError(f"{tile.where}: intrinsic {tile.intrin.name} gives no {which} "
                                "statement, which this placement of the tile needs (lower_fn "
                                "returns (body, reset, update))")
    if reductions_outside:
        return TileStatements(tile.position, None, reset, update, accumulator)
    if body is None:
        body = seq(reset, update) if reduces else update
    return TileStatements(tile.position, body, reset, update)


def _check_tile_loops(tile: Tile, loops: StageLoops):
    """The tile's loops are plain: not bound, annotated, hosting stages, or guarded."""
    stage, where, children = tile.plan.stage, tile.where, loops.attached
    for leaf in tile.leaves:
        if leaf in stage.bindings:
            what = f"bound to {stage.bindings[leaf]}"
        elif leaf in stage.annotations:
            what = f"marked {stage.annotations[leaf]}"
        elif stage.pragmas.get(leaf):
            what = "given a pragma"
        elif children.get(leaf):
            what = f"where stage {children[leaf][0].stage.name} is computed"
        else:
            continue
        raise LoweringError(f"{where}: loop {leaf.name} inside the tile is {what}; the "
                            "intrinsic replaces those loops, so they must be plain")
    for cond, level in loops.depth.items():
        if level >= tile.position:
            leaf = stage.leaf_iter_vars[level]
            raise LoweringError(f"{where}: the tile can stray outside the domain (guard "
                                f"`{cond}` depends on loop {leaf.name} inside it); tensorize "
                                "needs tiles that divide the domain: make the extents "
                                "multiples of the tile's")


def _parts(result, intrin, where) -> tuple:
    """((body, reset, update), accumulator or None) from what lower_fn returned, checked:
    a statement alone, or a list shorter than three, is the body and what follows it."""
    if isinstance(result, Stmt):
        result = (result,)
    if not (isinstance(result, (tuple, list)) and 1 <= len(result) <= 4):
        raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} must return a "
                            f"statement or (body, reset, update[, accumulator]), got {result!r}")
    parts = tuple(result[:3]) + (None,) * (3 - min(len(result), 3))
    accumulator = result[3] if len(result) == 4 else None
    for which, stmt in zip(("body", "reset", "update"), parts):
        if stmt is not None and not isinstance(stmt, Stmt):
            raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} returned a "
                                f"{type(stmt).__name__} as {which}, not a loop-IR statement")
    if accumulator is not None and not (isinstance(accumulator, Accumulator)
                                        and accumulator.buffer.scope == "local"):
        raise LoweringError(f"{where}: lower_fn of intrinsic {intrin.name} returned "
                            f"{accumulator!r} as its accumulator, not an Accumulator of a "
                            "local buffer")
    return parts, accumulator


def _check_thread_loops(parts, tile: Tile, enclosing_tags: set, bindings: list):
    """An intrinsic that binds a thread axis itself (a warp: threadIdx.x(32)) owns that axis.
    No loop around the tile may be bound to it (its lanes would compute different tiles),
    and no stage of the kernel may bind it to more threads than the intrinsic's loop has,
    so that the block has exactly that many along it (a warp is then one threadIdx.y, z)."""
    intrin, where = tile.intrin, tile.where
    for stmt in parts:
        if stmt is None:
            continue
        for loop in collect(stmt, lambda n: isinstance(n, For) and n.kind == "bound"):
            tag = loop.thread_tag
            if tag in enclosing_tags:
                raise LoweringError(f"{where}: intrinsic {intrin.name} runs on the threads of "
                                    f"{tag} itself, so no loop around the tile may be bound "
                                    f"to {tag}")
            for b in bindings:
                if b.tag == tag and not _at_most(b.extent, loop.extent):
                    raise LoweringError(
                        f"{where}: intrinsic {intrin.name} runs on {tag}({loop.extent}) "
                        f"itself, so its kernel's blocks must have {loop.extent} threads along "
                        f"{tag}; stage {b.stage.name} binds loop {b.leaf.name} to {tag} with "
                        f"extent {b.extent}: split it so that at most {loop.extent} are bound")


def _at_most(extent, limit) -> bool:
    """Whether the loop extent `extent` is provably at most `limit`."""
    if isinstance(extent, Const) and isinstance(limit, Const):
        return extent.value <= limit.value
    return structurally_equal(extent, limit)
