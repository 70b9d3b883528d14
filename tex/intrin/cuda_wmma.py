"""Tensor-core matrix multiply-accumulate through CUDA's WMMA API (`nvcuda::wmma`, <mma.h>).

`wmma_intrin()` declares the intrinsic `wmma_16x16x16_f16_f32`:

    C[i, j] = sum over k of float32(A[i, k]) * float32(B[k, j])     (16 x 16 x 16)

with A and B float16 and C float32. It lowers to `IntrinsicCall`s of small
device functions (defined in the call, emitted once per module):

* update: load the A and B tiles and the C tile from memory into fragments,
  `wmma::mma_sync`, store the C tile back (`store_matrix_sync`);
* reset: fill a fragment with 0 and store it into the C tile;
* body (a reduction of exactly 16): the same with a zero accumulator;
* and an `Accumulator` that keeps the C tile in registers across the
  reduction loops outside the tile: each lane's share of the accumulator
  fragment (ACCUMULATOR_ELEMENTS floats) lives in a local array, filled with 0
  before those loops, updated by `mma_sync` in them (the share copied into a
  fragment and back, which the compiler keeps in registers) and stored to the
  C tile once after them. Lowering uses it when only reduction loops lie
  between the first of them and the tile (`matmul_schedule` does), and
  updates the C tile in memory otherwise.

**Warps.** WMMA operations are collective: the 32 lanes of a warp execute
each one together, each holding part of the fragments. So the intrinsic's
statements carry their own loop bound to threadIdx.x of extent 32
(`for warp_lane in threadIdx.x(32): tex_wmma_...(...)`), whose body does not
depend on the lane: a kernel running the intrinsic has blocks of 32 threads
along x, and one warp computes each tile. The stage's loops outside the tile
choose the tile: loops bound to blockIdx.* give each block its tiles, loops
bound to threadIdx.y or threadIdx.z give each warp of the block its own, and
serial loops walk tiles one after another in the same warp. Rules, both
checked by lowering: the stage must not bind threadIdx.x around the tile,
and other stages of the kernel that bind threadIdx.x must keep blockDim.x at
32 (bind extents of at most 32), so that each warp is one (threadIdx.y,
threadIdx.z).

**Memory.** Each tile lies in global or shared memory (not local: the
lanes of a warp share it). A C tile in shared memory (a `cache_write`
stage computed in the block) is safe: the calls declare C written, so the
barrier pass separates them from the block's other threads reading or
writing the tile before or after. Each tile is row-major or column-major
(one of its strides is 1); its leading dimension must be a multiple of 8 elements
for A and B and of 4 for C, and its first element 32-byte aligned (checked
where they are constants; with symbolic sizes they are the caller's duty).
Targets: sm_70 and newer.

`matmul_schedule(M, N, K)` builds a complete float16 matmul using it.
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX, float32
from tex.errors import LoweringError, ScheduleError
from tex.expr import Const, Var
from tex.ir import Buffer, For, IntrinsicCall, Load
from tex.schedule import create_schedule, thread_axis
from tex.schedule.tensorize import Accumulator, TileView, decl_tensor_intrin
from tex.tensor import compute, placeholder, reduce_axis, sum as sum_

NAME = "wmma_16x16x16_f16_f32"
TILE = 16
WARP = 32
ALIGN = 32  # bytes: what load_matrix_sync / store_matrix_sync need of a pointer
HEADERS = ("cuda_fp16.h", "mma.h")


def wmma_intrin():
    """The intrinsic `wmma_16x16x16_f16_f32` (see the module docstring)."""
    a = placeholder((TILE, TILE), "float16", name="a")
    b = placeholder((TILE, TILE), "float16", name="b")
    k = reduce_axis((0, TILE), name="k")
    c = compute((TILE, TILE), lambda i, j: sum_(a[i, k].astype("float32")
                                                * b[k, j].astype("float32"), axis=k), name="c")
    return decl_tensor_intrin(c, _lower, name=NAME)


def _lower(inputs, outputs):
    """(body, reset, update): each an IntrinsicCall run by one warp."""
    a, b = inputs
    (c,) = outputs
    layouts, lds = zip(*(_layout(v, what) for v, what in ((a, "A"), (b, "B"), (c, "C"))))
    for view, what in ((a, "A"), (b, "B"), (c, "C")):
        if view.scope not in ("global", "shared"):
            raise LoweringError(f"intrinsic {NAME}: the {what} tile is in {view.buffer.name}, "
                                f"a {view.scope!r} buffer; it must be in 'global' or 'shared' "
                                "memory (the lanes of a warp share the tile)")
    suffix = "".join(layout[0] for layout in layouts)   # "rrr", "rcr", ...
    pointers = (a.pointer(), b.pointer(), c.pointer())
    mma = _call("mma", suffix, layouts, pointers, lds)
    body = _call("zero_mma", suffix, layouts, pointers, lds)
    reset = _warp(IntrinsicCall(f"tex_wmma_fill_{suffix[2]}_f32", (c.pointer(),),
                                (lds[2], Const(float32, 0.0)),
                                _FILL.format(name=f"tex_wmma_fill_{suffix[2]}_f32",
                                             c_layout=_MEM[layouts[2]]),
                                HEADERS, (0,), ALIGN))
    return body, reset, mma, _accumulator(c, suffix, layouts, (a.pointer(), b.pointer()), lds)


def _accumulator(c, suffix: str, layouts, inputs, lds) -> Accumulator:
    """The C tile in registers: each lane's share of an accumulator fragment, as a local
    array of ACCUMULATOR_ELEMENTS floats."""
    registers = Buffer(f"{c.buffer.name}_fragment", float32,
                       (Const(INDEX, ACCUMULATOR_ELEMENTS),), "local")
    share = Load(registers, (Const(INDEX, 0),))
    reset = IntrinsicCall("tex_wmma_fragment_fill_f32", (share,), (Const(float32, 0.0),),
                          _FRAGMENT_FILL, HEADERS, (0,), ALIGN)
    name = f"tex_wmma_fragment_mma_16x16x16_f16_f32_{suffix[:2]}"
    update = IntrinsicCall(name, inputs + (share,), tuple(lds[:2]),
                           _FRAGMENT_MMA.format(name=name, a_layout=layouts[0],
                                                b_layout=layouts[1]), HEADERS, (2,), ALIGN)
    name = f"tex_wmma_fragment_store_{suffix[2]}_f32"
    store = IntrinsicCall(name, (c.pointer(), share), (lds[2],),
                          _FRAGMENT_STORE.format(name=name, c_layout=_MEM[layouts[2]]),
                          HEADERS, (0,), ALIGN)
    return Accumulator(registers, _warp(reset), _warp(update), _warp(store))


def _call(kind: str, suffix: str, layouts, pointers, lds):
    name = f"tex_wmma_{kind}_16x16x16_f16_f32_{suffix}"
    accumulator = (_LOAD_C if kind == "mma" else _ZERO_C).format(c_layout=_MEM[layouts[2]])
    definition = _MMA.format(name=name, a_layout=layouts[0], b_layout=layouts[1],
                             c_layout=_MEM[layouts[2]], accumulator=accumulator)
    return _warp(IntrinsicCall(name, pointers, tuple(lds), definition, HEADERS, (2,), ALIGN))


def _warp(call):
    """`call` run by the 32 lanes of one warp together."""
    lane = Var("warp_lane", INDEX)
    return For(lane, Const(INDEX, 0), Const(INDEX, WARP), "bound", call, thread_tag="threadIdx.x")


def _layout(view: TileView, what: str):
    """("row_major" | "col_major", leading dimension) of a tile, checked."""
    rows, cols = (simplify(s) for s in view.strides)
    if _is(cols, 1):
        layout, ld = "row_major", rows
    elif _is(rows, 1):
        layout, ld = "col_major", cols
    else:
        raise LoweringError(f"intrinsic {NAME}: the {what} tile in {view.buffer.name} has "
                            f"strides ({rows}, {cols}); WMMA needs one of them to be 1")
    elements = 16 // view.buffer.dtype.itemsize  # 16 bytes: the granule of ldm
    if isinstance(ld, Const) and ld.value % elements:
        raise LoweringError(f"intrinsic {NAME}: the {what} tile in {view.buffer.name} has "
                            f"leading dimension {ld.value}; WMMA needs a multiple of {elements}")
    aligned = ALIGN // view.buffer.dtype.itemsize
    misalignment = simplify(ops.binary("floormod", view.offset, aligned))
    if isinstance(misalignment, Const) and misalignment.value:
        raise LoweringError(f"intrinsic {NAME}: the {what} tile in {view.buffer.name} starts "
                            f"at element {view.offset}, not a multiple of {aligned} ({ALIGN} "
                            "bytes) as WMMA needs")
    return layout, ld


def _is(e, value: int) -> bool:
    return isinstance(e, Const) and e.value == value


_MEM = {"row_major": "wmma::mem_row_major", "col_major": "wmma::mem_col_major"}

_MMA = """\
__device__ __forceinline__ void {name}(const half* a, const half* b, float* c,
                                       long long lda, long long ldb, long long ldc) {{
  using namespace nvcuda;
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::{a_layout}> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::{b_layout}> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a, (unsigned)lda);
  wmma::load_matrix_sync(fb, b, (unsigned)ldb);
  {accumulator}
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, (unsigned)ldc, {c_layout});
}}"""
_LOAD_C = "wmma::load_matrix_sync(fc, c, (unsigned)ldc, {c_layout});"
_ZERO_C = "wmma::fill_fragment(fc, 0.0f);"
_FILL = """\
__device__ __forceinline__ void {name}(float* c, long long ldc, float value) {{
  using namespace nvcuda;
  __syncwarp();
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::fill_fragment(fc, value);
  wmma::store_matrix_sync(c, fc, (unsigned)ldc, {c_layout});
}}"""


#: Elements of a 16x16x16 float accumulator fragment each lane holds (on every
#: architecture with WMMA; the definitions check it when they compile).
ACCUMULATOR_ELEMENTS = 8

_FRAGMENT = "wmma::fragment<wmma::accumulator, 16, 16, 16, float>"
_SHARE_CHECK = (f"static_assert({_FRAGMENT}::num_elements == {ACCUMULATOR_ELEMENTS}, "
                '"a lane holds 8 elements of the accumulator");')
_FRAGMENT_FILL = """\
__device__ __forceinline__ void tex_wmma_fragment_fill_f32(float* share, float value) {
  using namespace nvcuda;
  SHARE_CHECK
  for (int e = 0; e < 8; ++e) share[e] = value;
}""".replace("SHARE_CHECK", _SHARE_CHECK)
_FRAGMENT_MMA = """\
__device__ __forceinline__ void {name}(const half* a, const half* b, float* share,
                                       long long lda, long long ldb) {{
  using namespace nvcuda;
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::{a_layout}> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::{b_layout}> fb;
  FRAGMENT fc;
  wmma::load_matrix_sync(fa, a, (unsigned)lda);
  wmma::load_matrix_sync(fb, b, (unsigned)ldb);
  for (int e = 0; e < 8; ++e) fc.x[e] = share[e];
  wmma::mma_sync(fc, fa, fb, fc);
  for (int e = 0; e < 8; ++e) share[e] = fc.x[e];
}}""".replace("FRAGMENT", _FRAGMENT)
_FRAGMENT_STORE = """\
__device__ __forceinline__ void {name}(float* c, const float* share, long long ldc) {{
  using namespace nvcuda;
  __syncwarp();
  FRAGMENT fc;
  for (int e = 0; e < 8; ++e) fc.x[e] = share[e];
  wmma::store_matrix_sync(c, fc, (unsigned)ldc, {c_layout});
}}""".replace("FRAGMENT", _FRAGMENT)


def matmul_schedule(M: int, N: int, K: int, warps: tuple[int, int] = (2, 2),
                    stage_inputs: bool = True):
    """(schedule, [A, B, C]) of `C[M, N] (float32) = A[M, K] @ B[K, N]` (float16) on tensor cores.

    M, N and K are multiples of 16. Each block computes `warps[0] x warps[1]`
    tiles of 16 x 16, one per warp: tile rows go to threadIdx.z, tile columns
    to threadIdx.y, the lanes of a warp are threadIdx.x (32). The reduction
    walks K in steps of 16; with `stage_inputs`, each step first copies the
    block's A and B panels into shared memory (all threads of the block
    together, a barrier before the tensor cores read them).

        for bi in blockIdx.y, bj in blockIdx.x, wi in threadIdx.z, wj in threadIdx.y:
          C tile = 0                                    # wmma fill, one warp
          for ko in range(K / 16):
            A_shared, B_shared = panels of A and B      # with stage_inputs
            C tile += A tile @ B tile                   # wmma mma_sync, one warp
    """
    for what, value in (("M", M), ("N", N), ("K", K)):
        if not isinstance(value, int) or value <= 0 or value % TILE:
            raise ScheduleError(f"matmul_schedule: {what} must be a positive multiple of "
                                f"{TILE}, got {value!r}")
    A = placeholder((M, K), "float16", name="A")
    B = placeholder((K, N), "float16", name="B")
    k = reduce_axis((0, K), name="k")
    C = compute((M, N), lambda i, j: sum_(A[i, k].astype("float32") * B[k, j].astype("float32"),
                                          axis=k), name="C")
    s = create_schedule(C.op)
    stage = s[C]
    i_tile, ii = stage.split(C.op.axis[0], factor=TILE)
    j_tile, ji = stage.split(C.op.axis[1], factor=TILE)
    bi, wi = stage.split(i_tile, factor=warps[0])
    bj, wj = stage.split(j_tile, factor=warps[1])
    ko, ki = stage.split(k, factor=TILE)
    stage.reorder(bi, bj, wi, wj, ko, ii, ji, ki)
    for axis, tag in ((bi, "blockIdx.y"), (bj, "blockIdx.x"), (wi, "threadIdx.z"),
                      (wj, "threadIdx.y")):
        stage.bind(axis, thread_axis(tag))
    stage.tensorize(ii, wmma_intrin())
    if stage_inputs:
        for tensor in (A, B):
            _stage_panel(s, s.cache_read(tensor, "shared", [C]), stage, ko, warps)
    return s, [A, B, C]


def _stage_panel(s, shared, consumer, ko, warps):
    """Copy a panel into shared memory at loop `ko`, spread over every thread of the block."""
    fetch = s[shared]
    fetch.compute_at(consumer, ko)
    fused = fetch.fuse(*fetch.op.axis)
    rest, lane = fetch.split(fused, factor=WARP)
    rest, wy = fetch.split(rest, factor=warps[1])
    _, wz = fetch.split(rest, factor=warps[0])
    for axis, tag in ((lane, "threadIdx.x"), (wy, "threadIdx.y"), (wz, "threadIdx.z")):
        fetch.bind(axis, thread_axis(tag))


__all__ = ["NAME", "matmul_schedule", "wmma_intrin"]
