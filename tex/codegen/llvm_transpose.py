"""Copies that transpose, emitted block by block instead of one gather per step.

A packing loop such as

    for f in range(4608):
        W_packed[ramp(f * 16, 1, 16)] = W[ramp(base + f, 4608, 16)]

reads, at each step, one element from each of 16 rows (4608 elements apart)
and stores them as one dense vector; the next step reads the next element of
every row. Emitted as written, each step is a gather of 16 lanes, slow on
every x86 core. `match_transposed_copy` recognizes such a loop;
`emit_transposed_copy` runs it in blocks of `lanes` steps: `lanes` dense loads
(one per row, `lanes` consecutive elements each), a transpose in registers
(log2(lanes) rounds of two-source shuffles), and `lanes` dense stores, then
the steps left over one by one as before. It loads exactly the elements the
steps would have loaded and stores the same values at the same places.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from tex.arith.simplifier import simplify
from tex.codegen.llvm_expr import I32, const_int, element_align
from tex.expr import Binary, Const, Var
from tex.ir import For, Load, Ramp, Store
from tex.visitor import substitute, uses_var


@dataclass(frozen=True)
class TransposedCopy:
    """A loop `for j: dst[ramp(d(j), 1, L)] = src[ramp(s(j), S, L)]` with s(j + 1) = s(j) + 1,
    d(j + 1) - d(j) and S free of j, and dst, src distinct buffers."""

    store: Store
    load: Load

    @property
    def lanes(self) -> int:
        return self.load.dtype.lanes


def _step(expr, var: Var):
    """expr(var + 1) - expr(var), simplified."""
    moved = substitute(expr, {var: Binary("add", var, Const(var.dtype, 1))})
    return simplify(Binary("sub", moved, expr))


def match_transposed_copy(loop: For) -> TransposedCopy | None:
    """The transposing copy `loop` is (see the module docstring), or None."""
    store = loop.body
    if not (isinstance(store, Store) and len(store.indices) == 1
            and isinstance(store.value, Load) and len(store.value.indices) == 1):
        return None
    load, dst, src = store.value, store.indices[0], store.value.indices[0]
    lanes = load.dtype.lanes
    if lanes < 4 or lanes & (lanes - 1) or load.dtype.is_bool or load.buffer is store.buffer:
        return None
    if not (isinstance(dst, Ramp) and const_int(dst.stride) == 1 and isinstance(src, Ramp)):
        return None
    if const_int(src.stride) == 1 or uses_var(src.stride, loop.var):
        return None
    if const_int(_step(src.base, loop.var)) != 1 or uses_var(_step(dst.base, loop.var), loop.var):
        return None
    return TransposedCopy(store, load)


def transpose(b: ir.IRBuilder, rows: list) -> list:
    """The columns of the square matrix whose rows are the vectors `rows` (as many as their
    lanes, a power of two): round h swaps the off-diagonal h x h blocks of each pair of
    rows h apart."""
    rows, lanes = list(rows), len(rows)
    h = 1
    while h < lanes:
        low = [p if p & h == 0 else p - h + lanes for p in range(lanes)]
        high = [p + h if p & h == 0 else p + lanes for p in range(lanes)]
        for i in range(lanes):
            if i & h == 0:
                a, c = rows[i], rows[i + h]
                rows[i] = b.shuffle_vector(a, c, ir.Constant(ir.VectorType(I32, lanes), low))
                rows[i + h] = b.shuffle_vector(a, c,
                                               ir.Constant(ir.VectorType(I32, lanes), high))
        h *= 2
    return rows


def emit_transposed_copy(emitter, loop: For, copy: TransposedCopy, lo, extent) -> None:
    """`loop` (from `lo`, `extent` steps) through `emitter` (an `_Emitter` with no lane
    mask), `copy.lanes` steps at a time, then the rest one by one."""
    b, lanes, var = emitter.b, copy.lanes, loop.var
    src, dst = copy.load.indices[0], copy.store.indices[0]
    src_ptr, dst_ptr = emitter.buffer(copy.load.buffer), emitter.buffer(copy.store.buffer)
    step_type = lo.type
    blocks = b.sdiv(extent, ir.Constant(step_type, lanes))
    block_var = Var(f"{var.name}_block", var.dtype)

    def block():
        first = b.add(lo, b.mul(emitter.vars[block_var], ir.Constant(step_type, lanes)))
        with emitter.bound(emitter.vars, var, first):
            base, stride = emitter.index(src.base), emitter.index(src.stride)
        rows = [emitter.dense_load(src_ptr, b.add(base, b.mul(stride, ir.Constant(
            stride.type, i))), copy.load.dtype) for i in range(lanes)]
        for t, column in enumerate(transpose(b, rows)):
            at = b.add(first, ir.Constant(step_type, t))
            with emitter.bound(emitter.vars, var, at):
                emitter.dense_store(dst_ptr, emitter.index(dst.base), column,
                                     element_align(copy.store.buffer.dtype))

    emitter.counted_loop(block_var, ir.Constant(step_type, 0), blocks, block)
    done = b.add(lo, b.mul(blocks, ir.Constant(step_type, lanes)))
    emitter.counted_loop(var, done, b.add(lo, extent), lambda: emitter.stmt(loop.body))
