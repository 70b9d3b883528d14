"""Matrix multiply-accumulate on Intel AMX tiles, for the CPU: int8 (`tdpbssd`, int32
sums) and bfloat16 (`tdpbf16ps`, float32 sums).

`amx_intrin(depth, rows, cols, dtype)` declares the intrinsic
`amx_<int8|bf16>_<rows>x<cols>x<depth>`:

    c[i, j] = sum over kq, kr of acc(a[i, kq, kr]) * acc(b[kq, j, kr])

with a and b of `dtype` (int8, signed, or bfloat16) and c of its accumulator
type acc (int32 or float32); i < rows, j < cols (16 or 32 each: one or two
16 x 16 tiles of C per dimension), kr < V and kq < depth / V, where V, the
k values of a column that a B tile keeps together, is 4 for int8 and 2 for
bfloat16, and depth is a multiple of 64 bytes of k (64 int8, 32 bfloat16).
The k index is split in two because AMX wants B in "VNNI" layout: a row of
a B tile holds, for each of 16 columns j, V consecutive k. So the layouts a
schedule's tiles must have are:

* a: row-major rows of k, `a[i, kq, kr]` at `i * lda + V * kq + kr` (any lda);
* b: `b[kq, j, kr]` at `kq * ldb + V * j + kr` (any ldb): V k values of a
  column together, the columns of a k-group side by side;
* c: row-major, `c[i, j]` at `i * ldc + j` (any ldc).

A schedule whose stage reads `A[i, k]` and `Bp[j // 16, k // V, j % 16, k % V]`
gets them by splitting k by V (see `matmul_schedule`). Other strides raise
LoweringError naming the tensor.

It lowers to `IntrinsicCall`s of functions written in LLVM IR with LLVM's AMX
intrinsics in their `.internal` form (`llvm.x86.tileloadd64.internal`,
`llvm.x86.tdpbssd.internal`, ...), whose tile shapes are operands: LLVM
chooses the tile registers and writes the tile configuration (`ldtilecfg`)
itself. One call keeps the `rows/16 x cols/16` accumulator tiles in
registers for its whole depth (a step per 64 bytes of k, each loading `rows/16` A
tiles and `cols/16` B tiles for `rows/16 x cols/16` products), so the C tile
goes through memory once per call:

* body: accumulators start at zero, are stored at the end;
* update: they are loaded from c first (the reduction continues outside);
* reset: zero tiles are stored into c.

Running needs a CPU with amx-tile and amx-int8 (or amx-bf16) and a Linux
that grants the process AMX tile data; `tex.codegen.cpu_support` asks for it when such a
kernel is built or loaded, and calling it raises DeviceError when it cannot
run. Building works for any x86-64 target: the functions carry the AMX
features themselves, and are inlined where the target has them too (the
host of an AMX machine, `-mcpu=sapphirerapids`, `-mattr=+amx-tile,+amx-int8`),
else called.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from llvmlite import ir

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX
from tex.errors import LoweringError, ScheduleError
from tex.expr import Const
from tex.ir import IntrinsicCall
from tex.ops import all_, if_then_else
from tex.schedule import create_schedule
from tex.schedule.tensorize import TileView, decl_tensor_intrin
from tex.tensor import compute, placeholder, reduce_axis
from tex.tensor import sum as sum_

TILE = 16      # rows of every tile; 4-byte columns of a C tile, columns of a B tile
STEP = 64      # bytes of a tile's row: the k of one product (64 int8, 32 bfloat16)
BLOCKS = (16, 32)


@dataclass(frozen=True)
class _Kind:
    """What an element type changes: names, types, the B layout, the instruction."""

    short: str        # in the intrinsic's name
    dtype: str        # of a and b
    acc: str          # of c
    vnni: int         # k values of a column that a row of a B tile holds
    instruction: str  # the product, `llvm.x86.<instruction>.internal`
    feature: str

    @property
    def k_step(self) -> int:
        """k of one product: a tile row of 64 bytes."""
        return STEP * self.vnni // 4

    @property
    def itemsize(self) -> int:
        return 4 // self.vnni


_KINDS = {"int8": _Kind("int8", "int8", "int32", 4, "tdpbssd", "+amx-int8"),
          "bfloat16": _Kind("bf16", "bfloat16", "float32", 2, "tdpbf16ps", "+amx-bf16")}


def _kind(dtype, where: str) -> _Kind:
    kind = _KINDS.get(str(dtype))
    if kind is None:
        raise ScheduleError(f"{where}: dtype must be one of {sorted(_KINDS)}, got {dtype!r}")
    return kind


@lru_cache(maxsize=None)
def amx_intrin(depth: int, rows: int = 16, cols: int = 16, dtype: str = "int8"):
    """The intrinsic `amx_<int8|bf16>_<rows>x<cols>x<depth>` (see the module docstring); one
    object per shape, so that schedules using it fingerprint alike within a process."""
    kind = _kind(dtype, "amx_intrin")
    if not isinstance(depth, int) or depth <= 0 or depth % kind.k_step:
        raise ScheduleError(f"amx_intrin: depth must be a positive multiple of {kind.k_step} "
                            f"for {kind.dtype}, got {depth!r}")
    for what, value in (("rows", rows), ("cols", cols)):
        if value not in BLOCKS:
            raise ScheduleError(f"amx_intrin: {what} must be one of {BLOCKS}, got {value!r}")
    v = kind.vnni
    a = placeholder((rows, depth // v, v), kind.dtype, name="a")
    b = placeholder((depth // v, cols, v), kind.dtype, name="b")
    kq = reduce_axis((0, depth // v), name="kq")
    kr = reduce_axis((0, v), name="kr")
    c = compute((rows, cols), lambda i, j: sum_(
        a[i, kq, kr].astype(kind.acc) * b[kq, j, kr].astype(kind.acc), axis=[kq, kr]),
        name="c")
    name = f"amx_{kind.short}_{rows}x{cols}x{depth}"
    shape = (rows // TILE, cols // TILE, depth // kind.k_step)
    return decl_tensor_intrin(
        c, lambda inputs, outputs: _lower(name, shape, kind, inputs, outputs), name=name)


def _lower(name: str, shape, kind: _Kind, inputs, outputs):
    """(body, reset, update), each one IntrinsicCall, after checking the tiles' layouts."""
    a, b = inputs
    (c,) = outputs
    pointers = (a.pointer(), b.pointer(), c.pointer())
    v = kind.vnni
    strides = (_leading(name, a, "a", v, f"(lda, {v}, 1): rows of k"),
               _leading(name, b, "b", v, f"(ldb, {v}, 1): VNNI, {v} k values per column"),
               _leading(name, c, "c", v, "(ldc, 1): row-major"))

    body, reset, update = (f"tex_{name}_{mode}" for mode in ("body", "reset", "update"))
    return (IntrinsicCall(body, pointers, strides, _definition(body, shape, kind, "zero"),
                          writes=(2,)),
            IntrinsicCall(reset, pointers[2:], strides[2:],
                          _definition(reset, shape, kind, "reset"), writes=(0,)),
            IntrinsicCall(update, pointers, strides, _definition(update, shape, kind, "load"),
                          writes=(2,)))


def _leading(name: str, view: TileView, what: str, vnni: int, expected: str):
    """The first stride of `view`, after checking that the others are (vnni, 1) or (1,)."""
    strides = [simplify(s) for s in view.strides]
    inner = (vnni, 1) if len(strides) == 3 else (1,)
    if not all(isinstance(s, Const) and s.value == v for s, v in zip(strides[1:], inner)):
        raise LoweringError(f"intrinsic {name}: the {what} tile in {view.buffer.name} has "
                            f"strides ({', '.join(map(str, strides))}); AMX needs {expected}")
    return ops.cast(INDEX, strides[0])


def matmul_schedule(M: int, N: int, K: int, depth: int | None = None,
                    block: tuple[int, int] = (16, 16), panel_block: int = 512,
                    dtype: str = "int8"):
    """(schedule, [A, B, C]) of `C[M, N] = A[M, K] @ B[K, N]` on AMX: A and B int8 and C
    int32, or A and B bfloat16 and C float32 (`dtype`).

    Any positive sizes: stages pad with zeros to whole tiles. `Ap` copies A
    with its rows padded to a multiple of 64 bytes (plus 64 when that is an
    even number of cache lines, so that the rows of a tile do not crowd into
    a few cache sets); `Bp` packs B into VNNI panels `cols` columns wide,
    `Bp[jo, kq, ji, kr] = B[V kq + kr, cols jo + ji]` (V = 4 for int8, 2 for
    bfloat16); `Cp` (C itself when M and N are multiples of `block` =
    (rows, cols)) is computed in
    `rows x cols` blocks, one intrinsic call each, running through `depth` of
    k (default: all of it) with its accumulators in tile registers. Panels
    are taken `panel_block` columns at a time, so that those of B stay in
    cache while the row blocks of A, split among the threads, pass by.

    The default block, one 16 x 16 tile per call over all of k, measured
    faster than 2 x 2 tiles (32 x 32) for int8 on a Sapphire Rapids class CPU:
    fewer tile loads per product matter less than the A rows and the B panel of a
    call fitting in L1 together (`bench/results/amx.txt`).

        Ap = pad(A); Bp = pack(B)                   # parallel over rows / panels
        for jb in range(Np / panel_block):          # a group of B panels
          for io in parallel(Mp / block):           # a block of rows
            for ko in range(Kp / depth):
              for jo in panels of jb:
                Cp tile (io, jo) (+)= Ap rows x Bp panel   # one intrinsic call
        C = Cp[:M, :N]                              # when padded
    """
    for what, value in (("M", M), ("N", N), ("K", K)):
        if not isinstance(value, int) or value <= 0:
            raise ScheduleError(f"matmul_schedule: {what} must be a positive int, got "
                                f"{value!r}")
    kind = _kind(dtype, "matmul_schedule")
    rows, cols = block
    step, v = kind.k_step, kind.vnni
    Mp, Np, Kp = (-(-n // f) * f for n, f in ((M, rows), (N, cols), (K, step)))
    depth = Kp if depth is None else depth
    if depth % step or Kp % depth:
        raise ScheduleError(f"matmul_schedule: depth must be a multiple of {step} dividing "
                            f"K rounded up to {step} ({Kp}), got {depth}")
    lda = Kp + step if (Kp // step) % 2 == 0 else Kp
    A = placeholder((M, K), kind.dtype, name="A")
    B = placeholder((K, N), kind.dtype, name="B")
    Ap = compute((Mp, lda), lambda i, k: if_then_else(all_(i < M, k < K), A[i, k], 0), name="Ap")
    Bp = compute((Np // cols, Kp // v, cols, v), lambda jo, kq, ji, kr: if_then_else(
        all_(v * kq + kr < K, jo * cols + ji < N), B[v * kq + kr, jo * cols + ji], 0),
        name="Bp")
    k = reduce_axis((0, Kp), name="k")
    padded = (Mp, Np) != (M, N)
    Cp = compute((Mp, Np), lambda i, j: sum_(
        Ap[i, k].astype(kind.acc)
        * Bp[j // cols, k // v, j % cols, k % v].astype(kind.acc), axis=k),
        name="Cp" if padded else "C")
    C = compute((M, N), lambda i, j: Cp[i, j], name="C") if padded else Cp
    s = create_schedule(C.op)
    for pack in (Ap, Bp):
        s[pack].parallel(pack.op.axis[0])
    stage = s[Cp]
    io, ii = stage.split(Cp.op.axis[0], factor=rows)
    jo, ji = stage.split(Cp.op.axis[1], factor=cols)
    jb, jo = stage.split(jo, factor=max(1, panel_block // cols))
    if depth == Kp:  # the whole reduction in each call: no loop around it
        kq, kr = stage.split(k, factor=v)
        stage.reorder(jb, io, jo, ii, ji, kq, kr)
    else:
        ko, kd = stage.split(k, factor=depth)
        kq, kr = stage.split(kd, factor=v)
        stage.reorder(jb, io, ko, jo, ii, ji, kq, kr)
    stage.parallel(io)
    stage.tensorize(ii, amx_intrin(depth, rows, cols, kind.dtype))
    if padded:
        s[C].parallel(C.op.axis[0])
    return s, [A, B, C]


class _TileType(ir.Type):
    """LLVM's `x86_amx`, the type of a tile register's value (llvmlite does not have it)."""

    def _to_string(self):
        return "x86_amx"


_AMX, _I16, _I64 = _TileType(), ir.IntType(16), ir.IntType(64)
_PTR = ir.IntType(8).as_pointer()


def _definition(name: str, shape, kind: _Kind, start: str) -> str:
    """The LLVM IR module defining `name`: C (+)= A B over `shape` = (row tiles, column
    tiles, steps of 64 bytes of k), accumulators first zero (`start` "zero") or loaded from
    c ("load"); or, for "reset", zero tiles stored into c. Arguments: the a, b, c pointers
    and their leading strides in elements (c and ldc alone for "reset")."""
    m, n, steps = shape
    size = _I64(kind.itemsize)  # bytes of an element of a and b
    module = ir.Module(name=name)
    args = [_PTR, _I64] if start == "reset" else [_PTR, _PTR, _PTR, _I64, _I64, _I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    for arg, arg_name in zip(fn.args, ["c", "ldc"] if start == "reset" else
                             ["a", "b", "c", "lda", "ldb", "ldc"]):
        arg.name = arg_name
    b = _TileBuilder(fn.append_basic_block("entry"))
    if start == "reset":
        c, ldc = fn.args
        zero = b.zero()
        b.store_tiles(c, ldc, [[zero] * n for _ in range(m)])
        b.ret_void()
        return _with_amx_features(module, kind)
    a, bp, c, lda, ldb, ldc = fn.args
    lda, ldb = b.mul(lda, size), b.mul(ldb, size)  # in bytes from here on
    if start == "load":
        acc = b.load_tiles(c, ldc, m, n)
    else:
        zero = b.zero()
        acc = [[zero] * n for _ in range(m)]
    entry = b.block
    loop = fn.append_basic_block("step")
    done = fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    k = b.phi(_I64, name="k")
    phis = [[b.phi(_AMX) for _ in range(n)] for _ in range(m)]
    a_tiles = [b.tile(a, [b.mul(_I64(r * TILE), lda), b.mul(k, _I64(STEP))], lda)
               for r in range(m)]
    b_tiles = [b.tile(bp, [_I64(col * STEP), b.mul(k, b.mul(ldb, _I64(TILE)))], ldb)
               for col in range(n)]
    new = [[b.dot(kind.instruction, phis[r][col], a_tiles[r], b_tiles[col])
            for col in range(n)] for r in range(m)]
    k_next = b.add(k, _I64(1))
    k.add_incoming(_I64(0), entry)
    k.add_incoming(k_next, loop)
    for r in range(m):
        for col in range(n):
            phis[r][col].add_incoming(acc[r][col], entry)
            phis[r][col].add_incoming(new[r][col], loop)
    b.cbranch(b.icmp_signed("<", k_next, _I64(steps)), loop, done)
    b.position_at_end(done)
    b.store_tiles(c, ldc, new)
    b.ret_void()
    return _with_amx_features(module, kind)


def _with_amx_features(module: ir.Module, kind: _Kind) -> str:
    """The text of `module`, its one function compiled for the baseline x86-64 CPU plus
    amx-tile and the kind's amx-int8 or amx-bf16, whatever the target (LLVM aborts on AMX
    intrinsics it may not
    select). Those features are a subset of any AMX target's, so the optimiser inlines the
    function there (and LLVM then configures the tiles once per loop nest, not per call);
    elsewhere it stays a function of its own. (llvmlite cannot attach string attributes,
    so they go in as text.)"""
    text = str(module)
    head, brace, rest = text.partition("\n{\n")  # the end of the `define` line
    features = f"+amx-tile,{kind.feature}"
    attributes = f'"target-cpu"="x86-64" "target-features"="{features}"'
    return f"{head} #0{brace}{rest}\nattributes #0 = {{ {attributes} }}\n"


class _TileBuilder(ir.IRBuilder):
    """An IRBuilder with the AMX operations on 16 x 64-byte tiles."""

    def intrinsic(self, name, ret, args):
        fn = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(ret, [a.type for a in args]), name)
        return self.call(fn, args)

    def zero(self):
        return self.intrinsic("llvm.x86.tilezero.internal", _AMX, [_I16(TILE), _I16(STEP)])

    def tile(self, base, offsets, stride):
        """The tile whose rows start at byte `base + sum(offsets)`, `stride` bytes apart."""
        for offset in offsets:
            base = self.gep(base, [offset], inbounds=True)
        return self.intrinsic("llvm.x86.tileloadd64.internal", _AMX,
                              [_I16(TILE), _I16(STEP), base, stride])

    def dot(self, instruction, acc, a, b):
        return self.intrinsic(f"llvm.x86.{instruction}.internal", _AMX,
                              [_I16(TILE), _I16(STEP), _I16(STEP), acc, a, b])

    def _c_tiles(self, c, ldc, m, n):
        """(pointer, row stride in bytes) of each of the m x n tiles of the int32 block c."""
        base = self.bitcast(c, _PTR)
        stride = self.mul(ldc, _I64(4))
        return [[self.gep(base, [self.add(self.mul(_I64(r * TILE), stride),
                                          _I64(col * TILE * 4))], inbounds=True)
                 for col in range(n)] for r in range(m)], stride

    def load_tiles(self, c, ldc, m, n):
        pointers, stride = self._c_tiles(c, ldc, m, n)
        return [[self.intrinsic("llvm.x86.tileloadd64.internal", _AMX,
                                [_I16(TILE), _I16(STEP), p, stride]) for p in row]
                for row in pointers]

    def store_tiles(self, c, ldc, tiles):
        pointers, stride = self._c_tiles(c, ldc, len(tiles), len(tiles[0]))
        for row_p, row_t in zip(pointers, tiles):
            for p, t in zip(row_p, row_t):
                self.intrinsic("llvm.x86.tilestored64.internal", ir.VoidType(),
                               [_I16(TILE), _I16(STEP), p, stride, t])


__all__ = ["amx_intrin", "matmul_schedule"]
