"""Asynchronous global -> shared copies (`cp.async`, sm_80 and newer) in pipelined fills.

`lower_async_copies` assumes the storage is flat and vectors are made (it runs
on GPU kernels, before the barrier pass). Inside each `AsyncFill` mark it
turns a store into a shared buffer whose value is a plain copy of a global
buffer's elements into an `IntrinsicCall` of a copy helper:

* `S[i] = G[j]` of 4, 8 or 16 bytes (a scalar of 4 or 8 bytes, or a vector
  `Ramp` of stride 1 whose first index on both sides is provably a multiple
  of its lanes) becomes `tex_cp_async_N(&S[i], &G[j])`;
* `S[i] = select(c, G[j], 0)` becomes `tex_cp_async_zfill_N(&S[i], &G[j], bytes)`,
  which reads the first `bytes` of the N (cp.async's source size) and fills
  the rest with zeros, when the lanes where `c` holds are a prefix whose
  length lowering can write: `c` the same for every lane (all or none), a
  bound on the lanes `ramp(b, 1, L) < broadcast(e)` (the first e - b), or an
  `and` of those (the shorter prefix). A padded tail is then one copy.

Other stores (2-byte elements, unaligned or gathered vectors, other
conditions, stores under a branch on a vector condition) stay ordinary
stores: they are still ordered by the pipeline's barrier, only not
asynchronous. The marks stay (the barrier pass removes them). The copy
helpers, and the commit and wait helpers that
`inject_pipeline` calls, come with their definitions: inline PTX on sm_80
and newer (`cp.async.cg` for 16 bytes, `.ca` for 4 and 8), a synchronous copy
on older devices, and under TEX_CUDA_SIMULATOR the simulator's model, which
lands each thread's copies only when it waits for their group (so a read
before the wait sees the old bytes, as it may on the device).
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX, int32
from tex.expr import Compare, Const, Logical, Select
from tex.ir import AsyncFill, Broadcast, IfThenElse, IntrinsicCall, Load, Ramp, Stmt, Store
from tex.visitor import Rewriter, transform

#: The sizes one cp.async copies, with the integer type of that many bytes (the
#: synchronous copy on devices without cp.async).
COPY_TYPES = {4: "int", 8: "int2", 16: "int4"}


def lower_async_copies(stmt: Stmt) -> Stmt:
    """`stmt` with the copies of its `AsyncFill` marks made asynchronous where they can
    be (see the module docstring)."""
    def convert(node):
        if isinstance(node, AsyncFill):
            return AsyncFill(_Copies().rewrite(node.body))
        return None
    return transform(stmt, convert)


class _Copies(Rewriter):
    def rewrite_IfThenElse(self, node: IfThenElse):
        if node.cond.dtype.lanes > 1:  # stores lane by lane: no single copy
            return node
        return self.generic_rewrite(node)

    def rewrite_Store(self, node: Store):
        if node.buffer.scope != "shared":
            return node
        value, valid = node.value, None
        lanes = value.dtype.lanes
        if isinstance(value, Select) and _is_zero(value.false_value):
            value, valid = value.true_value, _valid_lanes(value.cond, lanes)
            if valid is None:
                return node
        if not (isinstance(value, Load) and value.buffer.scope == "global"):
            return node
        nbytes = lanes * value.dtype.itemsize
        dst, src = _first(node.indices[0], lanes), _first(value.indices[0], lanes)
        if nbytes not in COPY_TYPES or dst is None or src is None:
            return node
        pointers = (Load(node.buffer, (dst,)), Load(value.buffer, (src,)))
        if valid is None:
            return copy(nbytes, pointers)
        source_bytes = simplify(ops.binary("mul", valid, value.dtype.itemsize))
        return copy(nbytes, pointers, ops.cast(int32, source_bytes))


def _first(index, lanes: int):
    """The first element's index of a copy of `lanes` elements at `index`, when the copy
    is contiguous and aligned to its size; else None."""
    if lanes == 1:
        return index if index.dtype.lanes == 1 else None
    if not (isinstance(index, Ramp) and _is_const(index.stride, 1)):
        return None
    misalignment = simplify(ops.binary("floormod", index.base, lanes))
    return index.base if _is_const(misalignment, 0) else None


def _valid_lanes(cond, lanes: int):
    """How many lanes, from the first, `cond` holds in (an index expression), when they
    are a prefix of a form the module docstring lists; else None."""
    if cond.dtype.lanes == 1 or isinstance(cond, Broadcast):
        scalar = cond if cond.dtype.lanes == 1 else cond.value
        return ops.binary("mul", ops.cast(INDEX, scalar), lanes)
    if isinstance(cond, Compare) and cond.op == "lt" and isinstance(cond.a, Ramp) \
            and _is_const(cond.a.stride, 1) and isinstance(cond.b, Broadcast):
        count = ops.binary("sub", cond.b.value, cond.a.base)
        return ops.minimum(ops.maximum(count, Const(INDEX, 0)), Const(INDEX, lanes))
    if isinstance(cond, Logical) and cond.op == "and":
        a, b = _valid_lanes(cond.a, lanes), _valid_lanes(cond.b, lanes)
        return None if a is None or b is None else ops.minimum(a, b)
    return None


def _is_zero(e) -> bool:
    if isinstance(e, Broadcast):
        e = e.value
    return isinstance(e, Const) and e.value == 0


def _is_const(e, value: int) -> bool:
    return isinstance(e, Const) and e.value == value


def copy(nbytes: int, pointers: tuple, source_bytes=None) -> IntrinsicCall:
    """cp.async of `nbytes` from `pointers[1]` (global) to `pointers[0]` (shared); with
    `source_bytes` (an int32 expression), only that many are read, zeros after them."""
    kind = "cg" if nbytes == 16 else "ca"  # .cg (bypassing L1) exists for 16 bytes only
    if source_bytes is None:
        name = f"tex_cp_async_{nbytes}"
        definition = _COPY.format(name=name, params="", bytes=nbytes, kind=kind,
                                  sim_bytes=nbytes, size_operand="", size_input="",
                                  fallback=_WHOLE.format(type=COPY_TYPES[nbytes]))
        return IntrinsicCall(name, pointers, (), definition, (), (0,), nbytes)
    name = f"tex_cp_async_zfill_{nbytes}"
    definition = _COPY.format(name=name, params=", int source_bytes", bytes=nbytes, kind=kind,
                              sim_bytes="source_bytes", size_operand=", %2",
                              size_input=', "r"(source_bytes)',
                              fallback=_PART.format(type=COPY_TYPES[nbytes]))
    return IntrinsicCall(name, pointers, (source_bytes,), definition, (), (0,), nbytes)


def commit_group() -> IntrinsicCall:
    """Close this thread's copies issued since the last commit into one group."""
    return IntrinsicCall("tex_cp_async_commit", (), (), _COMMIT)


def wait_group(pending: int) -> IntrinsicCall:
    """Wait until at most `pending` of this thread's newest groups are still in flight."""
    name = f"tex_cp_async_wait_group_{pending}"
    return IntrinsicCall(name, (), (), _WAIT.format(name=name, pending=pending))


_COPY = """\
__device__ __forceinline__ void {name}(void* dst, const void* src{params}) {{
#if defined(TEX_CUDA_SIMULATOR)
  tex_sim::cp_async(dst, src, {bytes}, {sim_bytes});
#elif __CUDA_ARCH__ >= 800
  const unsigned shared = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.{kind}.shared.global [%0], [%1], {bytes}{size_operand};\\n"
               :: "r"(shared), "l"(src){size_input} : "memory");
#else
{fallback}
#endif
}}"""
_WHOLE = "  *({type}*)dst = *(const {type}*)src;"
_PART = """\
  *({type}*)dst = {type}{{}};
  memcpy(dst, src, source_bytes);"""
_COMMIT = """\
__device__ __forceinline__ void tex_cp_async_commit() {
#if defined(TEX_CUDA_SIMULATOR)
  tex_sim::cp_async_commit();
#elif __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\\n" ::: "memory");
#endif
}"""
_WAIT = """\
__device__ __forceinline__ void {name}() {{
#if defined(TEX_CUDA_SIMULATOR)
  tex_sim::cp_async_wait({pending});
#elif __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group {pending};\\n" ::: "memory");
#endif
}}"""
