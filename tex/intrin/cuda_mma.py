"""Tensor-core matrix multiply-accumulate through PTX `mma.sync` and `ldmatrix` (sm_80+).

`mma_intrin(warp_m, warp_n, dtype)` declares the intrinsic
`mma_m16n8k16_<f16|bf16>_f32_<warp_m>x<warp_n>`, one warp's tile of

    C[i, j] = sum over k of float32(A[i, k]) * float32(B[k, j])   (warp_m x warp_n x 16)

with A and B float16 or bfloat16 and C float32. The warp covers its tile with
(warp_m / 16) x (warp_n / 8) instructions `mma.sync.aligned.m16n8k16.row.col`,
their operands loaded from shared memory with `ldmatrix...m8n8.x4.shared.b16`:
one x4 per 16 x 16 block of A, one x4 `.trans` per 16 x 16 block of B (B is
row-major, k by n, so its 8 x 8 blocks are transposed into the column
fragments the instruction takes). It lowers to `IntrinsicCall`s of device
functions (emitted once per module) that are inline PTX on the device and,
under TEX_CUDA_SIMULATOR, the simulator's warp collectives with the same
fragment layouts (tex_cuda_simulator_sm80.h):

* an `Accumulator`: each lane holds its share of the C tile, warp_m * warp_n
  / 32 floats in a local array (registers), filled with 0 before the
  reduction loops outside the tile, updated by the loads and mma's in them,
  and stored to the C tile once after them (lane 4g + t holds, for each
  16 x 8 block, rows g and g + 8, columns 2t and 2t + 1);
* reset and update in memory (the C tile read into registers, updated and
  written back), where the accumulator cannot stay in registers.

**Warps** are as for `tex.intrin.cuda_wmma`: the statements carry their own
loop bound to threadIdx.x(32), so the kernel's blocks have 32 threads along x
and each warp is one (threadIdx.y, threadIdx.z).

**Memory.** The A and B tiles are in shared memory, row-major (their last
stride is 1), with a leading dimension that is a multiple of 8 elements (16
bytes: each ldmatrix row is 16 bytes) and a first element 16-byte aligned
(checked where constant). A row length of 16 bytes times an odd number
(`storage_align(axis, factor, 8)` on 16-bit elements) makes every ldmatrix
free of bank conflicts: its 8 rows fall into the 8 different 16-byte columns
of the banks. The C tile is in global or shared memory, row-major.

`matmul_schedule(M, N, K, dtype)` builds a complete matmul with it: block
tiles, a tile per warp, shared tiles padded as above and fetched by a cp.async
pipeline (`Stage.pipeline`), any M, N and K (zero padding).
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

WARP = 32
K_STEP = 16           # the k of one m16n8k16
ROW_BYTES = 16        # one ldmatrix row
DTYPES = {"float16": "f16", "bfloat16": "bf16"}


def mma_intrin(warp_m: int = 64, warp_n: int = 64, dtype: str = "float16"):
    """The intrinsic of one warp's warp_m x warp_n x 16 tile (see the module docstring).

    warp_m and warp_n are positive multiples of 16; dtype is "float16" or "bfloat16".
    Raises ScheduleError otherwise."""
    for what, value in (("warp_m", warp_m), ("warp_n", warp_n)):
        if not isinstance(value, int) or value <= 0 or value % 16:
            raise ScheduleError(f"mma_intrin: {what} must be a positive multiple of 16, "
                                f"got {value!r}")
    if dtype not in DTYPES:
        raise ScheduleError(f"mma_intrin: dtype must be one of {', '.join(DTYPES)}, "
                            f"got {dtype!r}")
    a = placeholder((warp_m, K_STEP), dtype, name="a")
    b = placeholder((K_STEP, warp_n), dtype, name="b")
    k = reduce_axis((0, K_STEP), name="k")
    c = compute((warp_m, warp_n), lambda i, j: sum_(a[i, k].astype("float32")
                                                    * b[k, j].astype("float32"), axis=k),
                name="c")
    return decl_tensor_intrin(c, _lower, name=_name(warp_m, warp_n, dtype))


def _name(warp_m: int, warp_n: int, dtype: str) -> str:
    return f"mma_m16n8k16_{DTYPES[dtype]}_f32_{warp_m}x{warp_n}"


def _lower(inputs, outputs):
    """(body, reset, update, accumulator): IntrinsicCalls run by one warp."""
    a, b = inputs
    (c,) = outputs
    dtype = str(a.buffer.dtype)
    warp_m, warp_n = a.shape[0].value, b.shape[1].value
    name = _name(warp_m, warp_n, dtype)
    lda = _leading(a, "A", name, ("shared",), ROW_BYTES)
    ldb = _leading(b, "B", name, ("shared",), ROW_BYTES)
    ldc = _leading(c, "C", name, ("global", "shared"), c.buffer.dtype.itemsize)
    shape = _Shape(warp_m, warp_n, DTYPES[dtype])
    registers = Buffer(f"{c.buffer.name}_fragment", float32,
                       (Const(INDEX, shape.elements),), "local")
    share = Load(registers, (Const(INDEX, 0),))
    inputs = (a.pointer(), b.pointer())
    accumulator = Accumulator(
        registers,
        _warp(_call(shape.fill(), (share,), (), 0, 4)),
        _warp(_call(shape.update(), inputs + (share,), (lda, ldb), 2, ROW_BYTES)),
        _warp(_call(shape.store(), (c.pointer(), share), (ldc,), 0, 4)))
    reset = _warp(_call(shape.zero_tile(), (c.pointer(),), (ldc,), 0, 4))
    update = _warp(_call(shape.update_tile(), inputs + (c.pointer(),), (lda, ldb, ldc), 2,
                         ROW_BYTES))
    return None, reset, update, accumulator


def _call(named_definition, pointers, values, written: int, align: int) -> IntrinsicCall:
    """The call of a device function that writes its pointer `written`; every buffer its
    pointers reach is aligned to `align` bytes (16 where ldmatrix reads it)."""
    name, definition = named_definition
    return IntrinsicCall(name, pointers, values, definition, (), (written,), align)


def _warp(call):
    """`call` run by the 32 lanes of one warp together."""
    lane = Var("warp_lane", INDEX)
    return For(lane, Const(INDEX, 0), Const(INDEX, WARP), "bound", call, thread_tag="threadIdx.x")


def _leading(view: TileView, what: str, name: str, scopes: tuple, align: int):
    """The leading dimension of a row-major tile, checked (see the module docstring)."""
    where = f"intrinsic {name}: the {what} tile in {view.buffer.name}"
    if view.scope not in scopes:
        raise LoweringError(f"{where} is in {view.scope!r} memory; it must be in "
                            f"{' or '.join(map(repr, scopes))} memory")
    rows, cols = (simplify(s) for s in view.strides)
    if not (isinstance(cols, Const) and cols.value == 1):
        raise LoweringError(f"{where} has strides ({rows}, {cols}); it must be row-major "
                            "(last stride 1)")
    elements = align // view.buffer.dtype.itemsize
    if isinstance(rows, Const) and rows.value % elements:
        raise LoweringError(f"{where} has leading dimension {rows.value}; it must be a "
                            f"multiple of {elements} elements ({align} bytes)")
    misalignment = simplify(ops.binary("floormod", view.offset, elements))
    if isinstance(misalignment, Const) and misalignment.value:
        raise LoweringError(f"{where} starts at element {view.offset}, not a multiple of "
                            f"{elements} ({align} bytes)")
    return rows


class _Shape:
    """The device functions of one warp tile shape and input type: (name, definition),
    each definition preceded by the fragment helpers and, where it calls it, the update
    (each guarded, so that a module defines them once)."""

    def __init__(self, warp_m: int, warp_n: int, short: str):
        self.elements = warp_m * warp_n // WARP
        self.suffix = f"{short}_f32_{warp_m}x{warp_n}"
        self.format = dict(rows=warp_m // 16, cols=warp_n // 8, elements=self.elements,
                           short=short, update=f"tex_mma_update_{self.suffix}")

    def _named(self, kind: str, template: str, *before: str):
        name = f"tex_mma_{kind}_{self.suffix}"
        text = _guarded(name, template.format(name=name, **self.format))
        return name, "\n".join((_FRAGMENTS,) + before + (text,))

    def fill(self):
        return self._named("fill", _FILL)

    def update(self):
        return self._named("update", _UPDATE)

    def store(self):
        return self._named("store", _STORE)

    def zero_tile(self):
        return self._named("zero_tile", _ZERO_TILE)

    def update_tile(self):
        return self._named("update_tile", _UPDATE_TILE, self.update()[1])


def _guarded(name: str, text: str) -> str:
    """`text`, skipped where a definition of `name` came before it."""
    return f"#ifndef TEX_DEFINED_{name}\n#define TEX_DEFINED_{name}\n{text}\n#endif"


def matmul_schedule(M: int, N: int, K: int, dtype: str = "float16",
                    block: tuple[int, int] = (128, 128), warp: tuple[int, int] = (64, 64),
                    k_tile: int = 16, stages: int = 4):
    """(schedule, [A, B, C]) of `C[M, N] (float32) = A[M, K] @ B[K, N]` (dtype) with mma.sync.

    Each block computes a block[0] x block[1] tile of C, one warp[0] x warp[1] tile per
    warp (warps along rows bound to threadIdx.z, along columns to threadIdx.y, lanes to
    threadIdx.x), walking K in steps of k_tile. The block's k_tile-wide panels of A and B
    are fetched into shared memory by all its threads, 16 bytes per copy, by a pipeline
    of `stages` slots (cp.async, `Stage.pipeline`); their rows are padded to an odd
    number of 16 bytes so that ldmatrix is free of bank conflicts. Each warp keeps its
    C tile in registers across the K loop. M, N and K need not divide the tiles: A and
    B are read through zero-padded views (`if_then_else`, inlined into the copies), and
    C is computed into a padded temporary and copied out, when they do not. The
    defaults (128 x 128 x 16, warps of 64 x 64, 4 stages) fill 42 KB of static shared
    memory; `block=(128, 256), stages=3` gives 8 warps in 44 KB.

        for bi in blockIdx.y, bj in blockIdx.x, wi in threadIdx.z, wj in threadIdx.y:
          acc = 0                                       # the warp's tile, registers
          pipeline(stages) for ko in range(K / k_tile):
            A_shared, B_shared = panels (cp.async)
            for kk in range(k_tile / 16): acc += A tile @ B tile    # ldmatrix, mma.sync
          C tile = acc
    """
    _check_tiles(M, N, K, dtype, block, warp, k_tile, stages)
    padded = [-(-size // tile) * tile for size, tile in ((M, block[0]), (N, block[1]),
                                                           (K, k_tile))]
    A = placeholder((M, K), dtype, name="A")
    B = placeholder((K, N), dtype, name="B")
    A_in, B_in = _zero_padded(A, padded[0], padded[2]), _zero_padded(B, padded[2], padded[1])
    k = reduce_axis((0, padded[2]), name="k")
    product = compute((padded[0], padded[1]), lambda i, j: sum_(
        A_in[i, k].astype("float32") * B_in[k, j].astype("float32"), axis=k),
        name="C" if padded[:2] == [M, N] else "C_padded")
    C = product if padded[:2] == [M, N] else compute((M, N), lambda i, j: product[i, j],
                                                     name="C")
    s = create_schedule(C.op)
    stage = s[product]
    bi, ii = stage.split(product.op.axis[0], factor=block[0])
    bj, ji = stage.split(product.op.axis[1], factor=block[1])
    wi, ii = stage.split(ii, factor=warp[0])
    wj, ji = stage.split(ji, factor=warp[1])
    ko, kr = stage.split(k, factor=k_tile)
    kk, ki = stage.split(kr, factor=K_STEP)
    stage.reorder(bi, bj, wi, wj, ko, kk, ii, ji, ki)
    for axis, tag in ((bi, "blockIdx.y"), (bj, "blockIdx.x"), (wi, "threadIdx.z"),
                      (wj, "threadIdx.y")):
        stage.bind(axis, thread_axis(tag))
    stage.tensorize(ii, mma_intrin(warp[0], warp[1], dtype))
    warps = (block[0] // warp[0], block[1] // warp[1])
    for tensor in (A_in, B_in):
        shared = s.cache_read(tensor, "shared", [product])
        if tensor.op is not A.op and tensor.op is not B.op:
            s[tensor].compute_inline()
        _stage_panel(s[shared], stage, ko, warps, stages)
    if C is not product:
        _copy_out(s[C], WARP * warps[0] * warps[1])
    return s, [A, B, C]


def panel_bytes(block: tuple[int, int], k_tile: int, dtype: str) -> int:
    """Shared memory of one pipeline slot of `matmul_schedule`: A's block[0] x k_tile
    panel and B's k_tile x block[1] panel, each row padded to an odd number of 16 bytes."""
    itemsize = 2  # float16 and bfloat16

    def padded(row_bytes: int) -> int:
        units = -(-row_bytes // ROW_BYTES)
        return (units | 1) * ROW_BYTES
    return block[0] * padded(k_tile * itemsize) + k_tile * padded(block[1] * itemsize)


def _check_tiles(M, N, K, dtype, block, warp, k_tile, stages):
    for what, value in (("M", M), ("N", N), ("K", K), ("k_tile", k_tile), ("stages", stages)):
        if not isinstance(value, int) or value <= 0:
            raise ScheduleError(f"matmul_schedule: {what} must be a positive int, "
                                f"got {value!r}")
    if k_tile % K_STEP:
        raise ScheduleError(f"matmul_schedule: k_tile must be a multiple of {K_STEP}, "
                            f"got {k_tile}")
    for d, what in enumerate(("rows", "columns")):
        if block[d] % warp[d]:
            raise ScheduleError(f"matmul_schedule: the block's {what} ({block[d]}) must be "
                                f"a multiple of the warp's ({warp[d]})")


def _zero_padded(tensor, rows: int, cols: int):
    """`tensor` read as a rows x cols matrix, zero past its edges (itself if it fits)."""
    height, width = (d.value for d in tensor.shape)
    if (rows, cols) == (height, width):
        return tensor
    zero = ops.const(0, tensor.dtype)
    return compute((rows, cols), lambda i, j: ops.if_then_else(
        ops.logical("and", i < height, j < width), tensor[i, j], zero),
        name=f"{tensor.name}_padded")


def _stage_panel(fetch, consumer, ko, warps: tuple, stages: int):
    """Copy a panel into shared memory at loop `ko`, 16 bytes per copy spread over every
    thread of the block, its rows padded to an odd number of 16 bytes, pipelined over
    `stages` slots."""
    fetch.compute_at(consumer, ko)
    rows, cols = fetch.op.axis
    vector = ROW_BYTES // fetch.op.output(0).dtype.itemsize
    fetch.storage_align(rows, 2 * vector, vector)  # rows of an odd number of 16 bytes
    fused = fetch.fuse(rows, cols)
    rest, lanes = fetch.split(fused, factor=vector)
    rest, lane = fetch.split(rest, factor=WARP)
    rest, wy = fetch.split(rest, factor=warps[1])
    _, wz = fetch.split(rest, factor=warps[0])
    for axis, tag in ((lane, "threadIdx.x"), (wy, "threadIdx.y"), (wz, "threadIdx.z")):
        fetch.bind(axis, thread_axis(tag))
    fetch.vectorize(lanes)
    fetch.pipeline(stages)


def _copy_out(stage, threads: int):
    """C from the padded product: one element per thread, blocks of `threads` (as many as
    the product's kernel has)."""
    fused = stage.fuse(*stage.op.axis)
    blocks, lanes = stage.split(fused, factor=threads)
    stage.bind(blocks, thread_axis("blockIdx.x"))
    stage.bind(lanes, thread_axis("threadIdx.x"))


#: The fragment helpers every function below uses, defined once per module (the guard).
_FRAGMENTS = """\
#ifndef TEX_MMA_FRAGMENTS
#define TEX_MMA_FRAGMENTS
/* Four 8x8 blocks of 16-bit elements, row r of block m at the address lane 8m + r gives. */
__device__ __forceinline__ void tex_ldmatrix_x4(unsigned* r, const void* row) {
#if defined(TEX_CUDA_SIMULATOR)
  tex_sim::ldmatrix(r, 4, row, false);
#else
  const unsigned address = (unsigned)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
#endif
}
/* The same blocks transposed. */
__device__ __forceinline__ void tex_ldmatrix_x4_trans(unsigned* r, const void* row) {
#if defined(TEX_CUDA_SIMULATOR)
  tex_sim::ldmatrix(r, 4, row, true);
#else
  const unsigned address = (unsigned)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
#endif
}
/* d += a (16x16, row) * b (16x8, col), float32 accumulators, for each input type. */
#define TEX_MMA_M16N8K16(short, ptx_type, bf16) \\
__device__ __forceinline__ void tex_mma_m16n8k16_##short(float* d, const unsigned* a, \\
                                                          const unsigned* b) { \\
  TEX_MMA_BODY(ptx_type, bf16) \\
}
#if defined(TEX_CUDA_SIMULATOR)
#define TEX_MMA_BODY(ptx_type, bf16) tex_sim::mma_m16n8k16(d, a, b, d, bf16);
#else
#define TEX_MMA_BODY(ptx_type, bf16) \\
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." ptx_type "." ptx_type ".f32 " \\
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\\n" \\
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) \\
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
TEX_MMA_M16N8K16(f16, "f16", false)
TEX_MMA_M16N8K16(bf16, "bf16", true)
/* Where element e of a lane's share of a tile of 16 x 8 blocks, `cols` blocks wide, lies
   in a row-major tile of leading dimension ld: block e / 4, rows g and g + 8, columns 2t
   and 2t + 1 of lane 4g + t. */
__device__ __forceinline__ long long tex_mma_at(int e, int cols, long long ld) {
  const int lane = threadIdx.x & 31, block = e / 4, r = e % 4;
  const int row = block / cols * 16 + lane / 4 + r / 2 * 8;
  const int col = block % cols * 8 + lane % 4 * 2 + r % 2;
  return row * ld + col;
}
#endif"""

_FILL = """\
__device__ __forceinline__ void {name}(float* share) {{
  #pragma unroll
  for (int e = 0; e < {elements}; ++e) share[e] = 0.0f;
}}"""

# Block (i, j) of 16 x 8 is share[(i * {cols} + j) * 4 ...]; one x4 of A per row block i
# (lane l gives row l % 16, column l / 16 * 8), one x4.trans of B per pair of column blocks
# (lane l gives k row l % 16, column l / 16 * 8): b0, b1 of block j, then of j + 1.
_UPDATE = """\
__device__ __forceinline__ void {name}(const void* a, const void* b, float* share,
                                       long long lda, long long ldb) {{
  const int lane = threadIdx.x & 31;
  const unsigned short* a_row = (const unsigned short*)a + (lane % 16) * lda + lane / 16 * 8;
  const unsigned short* b_row = (const unsigned short*)b + (lane % 16) * ldb + lane / 16 * 8;
  unsigned fa[{rows}][4], fb[{cols}][2];
  #pragma unroll
  for (int i = 0; i < {rows}; ++i) tex_ldmatrix_x4(fa[i], a_row + i * 16 * lda);
  #pragma unroll
  for (int j = 0; j < {cols}; j += 2) {{
    unsigned r[4];
    tex_ldmatrix_x4_trans(r, b_row + j * 8);
    fb[j][0] = r[0]; fb[j][1] = r[1]; fb[j + 1][0] = r[2]; fb[j + 1][1] = r[3];
  }}
  #pragma unroll
  for (int i = 0; i < {rows}; ++i) {{
    #pragma unroll
    for (int j = 0; j < {cols}; ++j)
      tex_mma_m16n8k16_{short}(share + (i * {cols} + j) * 4, fa[i], fb[j]);
  }}
}}"""
_STORE = """\
__device__ __forceinline__ void {name}(float* c, const float* share, long long ldc) {{
  #pragma unroll
  for (int e = 0; e < {elements}; ++e) c[tex_mma_at(e, {cols}, ldc)] = share[e];
}}"""
_ZERO_TILE = """\
__device__ __forceinline__ void {name}(float* c, long long ldc) {{
  #pragma unroll
  for (int e = 0; e < {elements}; ++e) c[tex_mma_at(e, {cols}, ldc)] = 0.0f;
}}"""
_UPDATE_TILE = """\
__device__ __forceinline__ void {name}(const void* a, const void* b, float* c,
                                       long long lda, long long ldb, long long ldc) {{
  float share[{elements}];
  #pragma unroll
  for (int e = 0; e < {elements}; ++e) share[e] = c[tex_mma_at(e, {cols}, ldc)];
  {update}(a, b, share, lda, ldb);
  #pragma unroll
  for (int e = 0; e < {elements}; ++e) c[tex_mma_at(e, {cols}, ldc)] = share[e];
}}"""


__all__ = ["DTYPES", "matmul_schedule", "mma_intrin"]
