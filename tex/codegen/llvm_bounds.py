"""Bound checks of CPU kernels built under `tir.instrument_bound_checkers` (`tex.PassContext`).

In a kernel whose `LoweredFunc.bound_checked` is set, every `Load` and `Store`
checks the (flat) index of each lane it touches against its buffer's extent,
the product of the buffer's shape: `0 <= index < extent`, one unsigned compare.
An access that is out of bounds is skipped (a load gives zero; a vector access
keeps its other lanes) and reported; the kernel runs on to its end, and its
caller (`tex.runtime.kernel.Kernel`) raises `OutOfBoundsError`.

Reporting. The entry's `sizes` array has two slots more than the kernel's
size variables, zero on entry: the first reported access stores, with one
atomic compare-and-swap from zero, the address of a constant string of the
module naming the access ("load from A (shape (n, 4))") into the first, and
then its index into the second; later reports (other lanes, other threads of
a parallel loop) leave them. Function bodies reach the slots through the
pointer `ERROR_SLOT` stands for, a parameter like a buffer's.
Prefetches, and the pointers that intrinsic, extern and packed calls take, are
not checked.
"""
from __future__ import annotations

from llvmlite import ir

from tex.codegen.llvm_constants import splat_constant
from tex.codegen.llvm_expr import I1, I64, mangle, single_index, value_type
from tex.dtype import INDEX
from tex.expr import Const
from tex.ir import Buffer
from tex.printer import to_text

#: Stands for the pointer to the two reporting slots in the emitters' `buffers`.
ERROR_SLOT = Buffer("bound_error", INDEX, (Const(INDEX, 2),))

_I64_MAX = (1 << 63) - 1


def checked_access(em, node, access: str, emit):
    """`emit(node)` for the load or store `node`, with the lanes whose index is outside
    the buffer left out and reported (the module docstring); a load's value."""
    buf = node.buffer
    index = em.index(single_index(node))
    extent = _extent(em, buf)
    lanes = index.type.count if isinstance(index.type, ir.VectorType) else 1
    inside = em.b.icmp_unsigned("<", index, em.splat(extent, lanes) if lanes > 1 else extent)
    if lanes > 1:
        active = em.mask if em.mask is not None else splat_constant(I1(1), lanes)
        bad = em.b.and_(active, em.b.not_(inside))
        picked = em.b.select(bad, index, em.splat(I64(_I64_MAX), lanes))
        smallest = em.mod.function(f"llvm.vector.reduce.smin.{mangle(index.type)}", I64,
                                   [index.type])
        _report(em, em.any_lane(bad), em.b.call(smallest, [picked]), buf, access)
        with em.masked(em.b.and_(active, inside)):
            return emit(node)
    if em.mask is not None:  # a scalar access in vector code: made if any lane is active
        bad = em.b.and_(em.any_lane(em.mask), em.b.not_(inside))
        _report(em, bad, index, buf, access)
        with em.masked(em.b.and_(em.mask, em.splat(inside, em.mask.type.count))):
            return emit(node)
    _report(em, em.b.not_(inside), index, buf, access)
    if access.startswith("store"):
        with em.b.if_then(inside):
            emit(node)
        return None
    return em.guarded(inside, lambda: emit(node), value_type(node.dtype))


def _extent(em, buf: Buffer) -> ir.Value:
    """The number of elements of `buf` (1 for a 0-d buffer), as i64."""
    count = I64(1)
    for dim in buf.shape:
        count = em.b.mul(count, em.index(dim))
    return count


def _report(em, bad: ir.Value, index: ir.Value, buf: Buffer, access: str):
    """Where `bad` holds: the first report of this call takes the slots."""
    shape = ", ".join(to_text(d) for d in buf.shape) + ("," if len(buf.shape) == 1 else "")
    text = em.mod.string(f"{access} {buf.name} (shape ({shape}))")
    slots = em.buffer(ERROR_SLOT)
    with em.b.if_then(bad, likely=False):
        message = em.b.ptrtoint(em.b.gep(text, [I64(0), I64(0)], inbounds=True), I64)
        swap = em.b.cmpxchg(slots, I64(0), message, "monotonic", "monotonic")
        with em.b.if_then(em.b.extract_value(swap, 1)):
            em.b.store(index, em.b.gep(slots, [I64(1)], inbounds=True))
