"""The accesses of the hot statement: kind, strides, footprints, cache lines and reuse.

The vector lanes of a statement are treated as one more loop, innermost, of
the kind "vectorized" (they were a vectorized loop before the vectorize
pass). So "the innermost stride" of a vector access is its ramp's stride (1
for a contiguous vector, 0 for a broadcast scalar), and of a scalar access
the stride along its innermost loop (strides are the coefficients of the
access's flat index, autotune/features/affine.py).

The levels of an access are the loops around it counted from the innermost
(lanes first): level 1 is the innermost loop, "all" the whole nest. At each
level the access touches a *footprint* of distinct elements (the product of
the extents of the loops it moves along, at most the span they reach and
the buffer's size) and a number of distinct `CACHE_LINE`-byte cache lines.
It is *reused* along each loop whose variable it does not use.
"""
from __future__ import annotations

import math

from autotune.features.affine import LANE, Affine, plus, scaled
from autotune.features.layout import ACCESS_NAMES, clamped_ceil, log_scale
from autotune.features.walk import StoreRecord, Walk

#: Bytes of a cache line, for the cache-line counts.
CACHE_LINE = 64


def hot_accesses(hot: StoreRecord, walk: Walk) -> list[dict]:
    """The `acc*` features of every buffer the hot statement touches, largest footprint first.

    A buffer loaded and stored counts once, with the store's index; otherwise the
    index of its first load.
    """
    found: dict = {hot.store.buffer: [hot.store.indices, hot.store_lanes, False, True]}
    for load in hot.loads:
        entry = found.setdefault(load.buffer, [load.indices, load.dtype.lanes, False, False])
        entry[1], entry[2] = max(entry[1], load.dtype.lanes), True
    loops = [(l.var, e) for l, e in zip(hot.loops, hot.extents)]
    if hot.lanes > 1:
        loops.append((LANE, float(hot.lanes)))
    rows = []
    for order, (buffer, (indices, lanes, read, write)) in enumerate(found.items()):
        form = _flat_form(walk, buffer, indices)
        row = _access_values(form, buffer, walk.elements(buffer), loops, hot.lanes)
        row.update(read=float(read), write=float(write),
                   traffic=log_scale(hot.executions * lanes * buffer.dtype.itemsize))
        rows.append((-row["bytes_all"], -row["traffic"], order, row))
    return [row for *_, row in sorted(rows, key=lambda r: r[:3])]


def _flat_form(walk: Walk, buffer, indices) -> Affine:
    """The affine form of an access's flat index (row-major over the shape if not flat)."""
    forms = [walk.forms.form(i) for i in indices]
    if len(forms) == 1:
        return forms[0]
    strides = buffer.strides
    if strides is None:
        strides, step = [], 1.0
        for extent in reversed(buffer.shape):
            strides.insert(0, step)
            step *= max(1.0, walk.value(extent))
    else:
        strides = [walk.value(s) for s in strides]
    flat = Affine({})
    for f, stride in zip(forms, strides):
        flat = plus(flat, scaled(f, stride))
    return flat


def _access_values(form: Affine, buffer, elements: float, loops: list, lanes: int) -> dict:
    """Kind, strides, footprints, cache lines and reuse of one access.

    `loops` are (variable, extent) pairs, outermost first, the lanes last;
    strides are the form's coefficients of the variables.
    """
    size = buffer.dtype.itemsize
    strides = [abs(form.coefs.get(v, 0.0)) for v, _ in loops]
    extents = [e for _, e in loops]
    lane = abs(form.coefs.get(LANE, 0.0))
    row = dict.fromkeys(ACCESS_NAMES, 0.0)
    kind = ("gather" if form.gather else "scalar" if lanes == 1 else
            "broadcast" if lane == 0 else "contiguous" if lane == 1 else "strided")
    row.update({"present": 1.0, "local": float(buffer.scope == "local"),
                "elem_bytes": float(size), kind: 1.0})
    depth = len(loops)
    if depth:
        row["stride_inner"] = log_scale(strides[-1])
    for level in range(1, depth + 1):
        if strides[-level]:
            row["stride_nonzero"], row["stride_nonzero_level"] = log_scale(strides[-level]), level
            break
    for name, level in (("l1", 1), ("l2", 2), ("l3", 3), ("all", depth)):
        inner = list(zip(strides, extents))[depth - min(level, depth):]
        row["bytes_" + name] = log_scale(_footprint(inner, elements) * size)
        if name != "all":
            row["lines_" + name] = log_scale(_lines(inner, size, elements))
    reused = [level for level in range(1, depth + 1)
              if not strides[-level] and extents[-level] > 1]
    if reused:
        level = reused[0]
        inner = list(zip(strides, extents))[depth - level + 1:]
        row.update({
            "reuse_count": log_scale(math.prod(extents[-lv] for lv in reused)),
            "reuse_level": float(level),
            "reuse_distance_iters": log_scale(math.prod(e for _, e in inner)),
            "reuse_distance_bytes": log_scale(_footprint(inner, elements) * size)})
    return row


def _footprint(loops: list, elements: float) -> float:
    """Distinct elements touched over `loops` ((stride, extent) pairs): the product of
    the extents it moves along, at most the span they reach and the buffer's size."""
    moving = [(s, e) for s, e in loops if s and e > 1]
    count = math.prod(e for _, e in moving)
    span = 1.0 + sum(s * (e - 1) for s, e in moving)
    return max(1.0, min(count, span, elements))


def _lines(loops: list, size: int, elements: float) -> float:
    """Distinct cache lines touched over `loops` ((stride, extent) pairs, strides in elements).

    The loops are taken by increasing stride: one whose step stays within a cache
    line (or within the block already covered) extends that block, any other
    repeats it. The count is at most the lines of the buffer.
    """
    block, repeats = float(size), 1.0
    for stride, extent in sorted((s * size, e) for s, e in loops if s and e > 1):
        if stride <= max(block, CACHE_LINE):
            block += stride * (extent - 1)
        else:
            repeats *= extent
    return max(1.0, min(repeats * clamped_ceil(block / CACHE_LINE),
                        clamped_ceil(elements * size / CACHE_LINE)))
