"""Tensorize: a stage's innermost loops replaced by a declared intrinsic.

`decl_tensor_intrin(C, lower_fn, name)` declares that the small computation
`C` (a `tex.compute` over placeholders, every axis from 0) is done by an
intrinsic; `s[T].tensorize(axis, intrin)` asks for the loops of stage
T from `axis` inward (the *tile*) to be replaced by it. This module holds
what a user declares and what `lower_fn` works with (`TileView`,
`Accumulator`, `loop_nest`); lowering (`tex.lower.tile`) checks that tile
and intrinsic match and then calls `lower_fn(inputs, outputs)` with a
`TileView` of each of the intrinsic's tensors.

What must match (each failure raises `LoweringError` naming the stage, the
axis and what differs):

1. **Loops.** The tile's data loops, in loop order, pair with the
   intrinsic's data axes (`C.op.axis`) in order; its reduction loops, in
   order, with the intrinsic's reduction axes. Data and reduction loops may
   interleave; the extents must be equal (an extent the intrinsic declares
   as a variable, `(n,)`, is bound to the loop's), and leading axes of
   extent 1 may have no loop (a tile of no loops is the stage's body). No
   loop of the tile is bound, annotated or hosts a stage computed at it,
   and no guard depends on a loop of the tile: the tile never strays
   outside the domain (splits divide).
2. **Body.** The stage's body is the intrinsic's with tensors and index
   variables renamed: the same operations, constants, casts, reducer and
   dtypes, with tensors read in the same places. Index variables may appear
   only in tensor indices. Where the intrinsic has one of its `scalar_params`,
   the stage may have any expression that the tile's loops do not change:
   lowering binds the parameter to it.
3. **Accesses.** Where the intrinsic indexes a tensor plainly (each index
   one of its axes, no axis twice: `P[i, k]`), each index of the matching
   access of the stage (and of its output), as a function of the tile's
   loop variables, is affine with constant coefficients, and varies only
   along tile loops whose intrinsic axes the intrinsic's access uses; the
   coefficients and the buffer's strides give the view's strides. Where it
   uses other index expressions (`P[j // 3 + i % 3, ...]`), the stage's last
   indices must be the same expressions of the tile's loops plus amounts
   the tile does not change (the view's origin), its other indices fixed.
4. **Threads.** An intrinsic whose statements bind a thread axis themselves
   (a warp's lanes: `threadIdx.x(32)`) owns that axis: no loop around the
   tile is bound to it, and no stage of the kernel binds it to more threads
   than the intrinsic's loop has, so the block has exactly that many.

An intrinsic may also keep the output tile in registers across the
reduction loops outside the tile (`Accumulator`): lowering then resets a
local buffer before those loops, updates it in them and stores it to the
output tile after them, when every loop between the first of them and the
tile is a plain reduction loop (else the tile is updated in memory).

An intrinsic may declare the memory layout it expects of its tensors
(`binds`, from `tex.tir.decl_buffer`); lowering checks every tile against
those declarations and binds their variables (`tex.lower.tile_binds`).

TVM: `te.decl_tensor_intrin` and `s[C].tensorize`; the (body, reset, update)
triple that `lower_fn` may return, the declared buffers and what a `TileView`
offers as one (`access_ptr`, `data`, `elem_offset`, `vload`, `vstore`) are
TVM's, so that TE's `intrin_func`s, written with `tex.tir.ir_builder` and
`tex.tir.call_extern`, work as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.arith import simplify
from tex.buffer_decl import BufferDecl, decl_buffer
from tex.dtype import INDEX, as_dtype
from tex.errors import ExprError, LoweringError, ScheduleError
from tex.expr import Const, Expr, Var, structurally_equal
from tex.ir import Buffer, For, Load, Stmt, Store, strides_of
from tex.ir_builder import AccessPtr, BufferView, access_mode
from tex.tensor import ComputeOp, PlaceholderOp, Tensor
from tex.tensor_compute import TensorIntrinCall

_ZERO = Const(INDEX, 0)


def _indices(begin) -> tuple:
    return tuple(begin) if isinstance(begin, (tuple, list)) else (begin,)


@dataclass(frozen=True, eq=False)
class TileView(BufferView):
    """Where one tensor of an intrinsic lies in a buffer of the lowered program.

    Element `x = (x_0, ..., x_r-1)` of the intrinsic's tensor (rank r, `shape`)
    is the element `offset + sum(x_e * strides[e])` of `buffer`, counted in
    elements from its start (row-major, or by the buffer's own strides).
    Before storage is flattened, accesses index a buffer with one index per
    dimension: `origin` is the index of element 0, and `steps[e][d]` how much
    index `d` grows per unit of `x_e`. Build accesses with `index`, `load`
    and `store`; `pointer()` is the access whose address an `IntrinsicCall`
    passes.

    It is also what TE's `intrin_func(ins, outs)` receives as a bound buffer:
    `access_ptr(mode)` and `data` are pointers for `tex.tir.call_extern`,
    `elem_offset` is `offset`, `vload`/`vstore` read and write elements, and
    `name` is the declared buffer's name (or the tensor's). `tex.call_packed`
    takes a compact one as an array of its shape.
    """

    buffer: Buffer
    offset: Expr
    strides: tuple[Expr, ...]
    origin: tuple[Expr, ...]
    steps: tuple[tuple[int, ...], ...]
    shape: tuple[Expr, ...]
    name: str

    @property
    def scope(self) -> str:
        return self.buffer.scope

    @property
    def dtype(self):
        return self.buffer.dtype

    @property
    def elem_offset(self) -> Expr:
        """The tile's first element, counted in elements from the buffer's start."""
        return self.offset

    @property
    def data(self) -> AccessPtr:
        """The buffer's start (element 0, not the tile's), which a call may write.
        TVM: `Buffer.data`."""
        return AccessPtr(Load(self.buffer, tuple(_ZERO for _ in self.buffer.shape)), True)

    def access_ptr(self, access_mask, ptr_type: str = "handle", content_lanes: int = 1,
                   offset=0, extent=None) -> AccessPtr:
        """The address of the tile's element `offset` (counted in elements, of
        `content_lanes` lanes each, in memory order from the tile's first), for
        `call_extern`; `access_mask` ("r", "w", "rw") says whether the call may write
        through it. `ptr_type` and `extent` change nothing (LLVM and C pointers carry
        no extent). TVM: `Buffer.access_ptr`.
        """
        where = f"access_ptr of {self.name}"
        write = access_mode(access_mask, where)
        extra = ops.binary("mul", ops.as_expr(offset, INDEX), content_lanes)
        origin = list(self.origin)
        if not (isinstance(extra, Const) and extra.value == 0):
            stride = strides_of(self.buffer)[-1] if origin else None
            if not (isinstance(stride, Const) and stride.value == 1):
                raise LoweringError(f"{where}: an offset needs the last dimension of "
                                    f"{self.buffer.name} to have stride 1")
            origin[-1] = ops.binary("add", origin[-1], extra)
        return AccessPtr(Load(self.buffer, tuple(origin)), write)

    def vload(self, begin, dtype=None) -> Load:
        """Element `begin` (a tuple of indices) of the tile. TVM: `Buffer.vload` (scalars)."""
        if dtype is not None and as_dtype(dtype) != self.dtype:
            raise LoweringError(f"vload of {self.name}: loads {self.dtype} elements, not "
                                f"{dtype}")
        return self.load(*_indices(begin))

    def vstore(self, begin, value) -> Store:
        """Write `value` into element `begin` of the tile. TVM: `Buffer.vstore`."""
        return self.store(value, *_indices(begin))

    def index(self, *x) -> tuple[Expr, ...]:
        """The buffer index (one expression per dimension) of element `x` of the tile."""
        if len(x) != len(self.steps):
            raise LoweringError(f"tile of {self.buffer.name}: {len(self.steps)} index(es) "
                                f"expected, got {len(x)}")
        index = []
        for d, origin in enumerate(self.origin):
            total = origin
            for xe, step in zip(x, self.steps):
                if step[d]:
                    total = ops.binary("add", total, ops.binary("mul", xe, step[d]))
            index.append(total)
        return tuple(index)

    def load(self, *x) -> Load:
        """The value of element `x` of the tile."""
        return Load(self.buffer, self.index(*x))

    def store(self, value, *x) -> Store:
        """Write `value` into element `x` of the tile."""
        return Store(self.buffer, ops.cast(self.buffer.dtype, ops.as_expr(value)), self.index(*x))

    def pointer(self) -> Load:
        """The tile's first element; `IntrinsicCall` passes its address."""
        return Load(self.buffer, self.origin)


@dataclass(frozen=True)
class Accumulator:
    """An intrinsic's output tile kept in `buffer` (scope "local": registers) across the
    reduction loops outside the tile: `reset` fills it with the reducer's identity,
    `update` accumulates one tile of the inputs into it, `store` writes it to the
    output tile once the reduction is done."""

    buffer: Buffer
    reset: Stmt
    update: Stmt
    store: Stmt


class TensorIntrin:
    """A declared intrinsic: the computation `op` it performs and how to lower it.

    `inputs` are the placeholders `op` reads, in the order of first use;
    `lower_fn(inputs, outputs)` receives a `TileView` for each of them, and
    one for `op`'s output, in that order (and `scalar_params` third, when
    there are any). `binds` maps a tensor of `op` to the `BufferDecl` that
    lowering checks its tile against.
    """

    def __init__(self, name: str, op: ComputeOp, lower_fn, binds: dict | None = None,
                 scalar_params: tuple = ()):
        self.name, self.op, self.lower_fn = name, op, lower_fn
        self.inputs: tuple[Tensor, ...] = op.input_tensors
        self.output: Tensor = op.output(0)
        self.binds: dict[Tensor, BufferDecl] = binds or {}
        self.scalar_params: tuple[Var, ...] = scalar_params

    @property
    def buffers(self) -> tuple:
        """The declared buffer (`decl_buffer`'s) of each tensor, inputs then the output;
        None for a tensor neither `binds` nor `default_buffer_params` declares.
        TVM: `TensorIntrin.buffers`."""
        return tuple(self.binds.get(t) for t in (*self.inputs, self.output))

    @property
    def reduce_init(self) -> None:
        """TVM's initial value of a reduction with `init=`; tex's reductions start from
        their reducer's identity, so there is none. TVM: `TensorIntrin.reduce_init`."""
        return None

    def __call__(self, *args, reduce_axis=(), scalar_inputs=None) -> TensorIntrinCall:
        """The intrinsic applied to regions of tensors (`A[i, 0:16]`) and scalar inputs
        (one per scalar parameter, in order, or given as `scalar_inputs`), over the
        reduction axes `reduce_axis` outside it: what a `tex.compute` whose function
        takes fewer indices than its shape has dimensions returns (`tex.tensor_compute`
        has the rules). TVM: `TensorIntrin.__call__`."""
        return TensorIntrinCall.of(self, args, reduce_axis, scalar_inputs)

    def __repr__(self):
        return f"TensorIntrin({self.name})"

    def describe(self) -> str:
        """The intrinsic's loops, e.g. `i(16), j(16), k(16, reduce)`."""
        data = [f"{iv.name}({iv.dom.extent})" for iv in self.op.axis]
        red = [f"{iv.name}({iv.dom.extent}, reduce)" for iv in self.op.reduce_axis]
        return ", ".join(data + red)


def decl_tensor_intrin(compute, lower_fn, name: str | None = None, binds: dict | None = None,
                       default_buffer_params: dict | None = None,
                       scalar_params=None) -> TensorIntrin:
    """Declare that the computation `compute` is carried out by an intrinsic.

    `compute` is a tensor made by `tex.compute` (or its operation) over
    `tex.placeholder`s, with one output and every axis starting at 0 (its
    extents constants or variables, bound to a tile's loop extents).
    `lower_fn(inputs, outputs)` gets a `TileView` per input (in first-use
    order, `TensorIntrin.inputs`) and one for the output, and returns loop
    IR: TVM's `(body, reset, update)`, any of which may be None (a single
    statement, or a shorter list, is the body and what follows it): `body`
    computes the tile from scratch, `reset` fills the output tile with the
    reducer's identity, `update` accumulates into it. A reduction
    tensorized with its reduction loops outside the tile needs reset and
    update; with all of them inside, body (or reset then update); a tile
    without reduction, body (or update). A fourth element, an
    `Accumulator` (or None), keeps the tile in registers across reduction
    loops outside it where lowering can.

    `binds` maps tensors of `compute` (inputs or output) to
    `tex.tir.decl_buffer` declarations, which each tile must satisfy (their
    stride and offset variables are bound to the tile's);
    `default_buffer_params` (decl_buffer's keywords) declares the tensors
    that `binds` leaves out, compact. `scalar_params`, variables, are
    passed to `lower_fn` as a third argument; lowering binds each to what
    the stage's body has in its place (a call inside `compute` passes them:
    `intrin(A[i, 0:16], 2.0)`, see `tex.tensor_compute`).

        a = tex.placeholder((16, 16), "float16"); b = ...
        k = tex.reduce_axis((0, 16))
        c = tex.compute((16, 16), lambda i, j: tex.sum(..., axis=k))
        mma = tex.decl_tensor_intrin(c, lower_fn, name="mma16")
        s[C].tensorize(i_inner, mma)
        D = tex.compute((n, 16), lambda i: vadd(A[i, 0:16], B[i, 0:16]))  # a call

    Raises ScheduleError when an argument breaks one of those rules.
    TVM: `te.decl_tensor_intrin`.
    """
    op = compute.op if isinstance(compute, Tensor) else compute
    if not isinstance(op, ComputeOp):
        raise ScheduleError(f"decl_tensor_intrin: expected a tensor made by tex.compute, got "
                            f"{type(compute).__name__} {compute!r}")
    name = op.name if name is None else name
    where = f"decl_tensor_intrin {name}"
    if not callable(lower_fn):
        raise ScheduleError(f"{where}: lower_fn must be callable, got {lower_fn!r}")
    _check_computation(op, where)
    declared = _declared_buffers(op, binds, default_buffer_params, where)
    params = tuple(scalar_params or ())
    for v in params:
        if not isinstance(v, Var):
            raise ScheduleError(f"{where}: scalar_params must be variables, got {v!r}")
    return TensorIntrin(name, op, lower_fn, declared, params)


def _check_computation(op: ComputeOp, where: str):
    """One output, axes over [0, extent), placeholders read."""
    if op.num_outputs != 1:
        raise ScheduleError(f"{where}: the computation must have one output, it has "
                            f"{op.num_outputs}")
    for iv in op.axis + op.reduce_axis:
        if not (isinstance(iv.dom.min, Const) and iv.dom.min.value == 0):
            raise ScheduleError(f"{where}: axis {iv.name} must run over [0, extent), got "
                                f"min {iv.dom.min}, extent {iv.dom.extent}")
    for t in op.input_tensors:
        if not isinstance(t.op, PlaceholderOp):
            raise ScheduleError(f"{where}: it reads {t.name}, which is not a placeholder")


def _declared_buffers(op: ComputeOp, binds, defaults, where: str) -> dict:
    """{tensor: BufferDecl} from `binds` and, for the other tensors, `defaults`; checked."""
    tensors = list(op.input_tensors) + [op.output(0)]
    if binds is not None and not isinstance(binds, dict):
        raise ScheduleError(f"{where}: binds must be a dict {{tensor: decl_buffer(...)}}, got "
                            f"{binds!r}")
    declared = {}
    for t, decl in (binds or {}).items():
        if not any(t is u for u in tensors):
            raise ScheduleError(f"{where}: binds has {getattr(t, 'name', t)!r}, which is none of "
                                f"the intrinsic's tensors ({', '.join(u.name for u in tensors)})")
        if not isinstance(decl, BufferDecl):
            raise ScheduleError(f"{where}: binds[{t.name}] must come from "
                                f"tex.tir.decl_buffer, got {decl!r}")
        declared[t] = decl
    for t in tensors:
        if t not in declared and defaults is not None:
            try:
                declared[t] = decl_buffer(t.shape, t.dtype, t.op.name, **defaults)
            except (TypeError, ExprError) as e:
                raise ScheduleError(f"{where}: default_buffer_params {defaults!r}: {e}") from e
    for t, decl in declared.items():
        _check_declaration(t, decl, where)
    return declared


def _check_declaration(t: Tensor, decl: BufferDecl, where: str):
    """The declaration has the tensor's dtype and shape."""
    same_shape = len(decl.shape) == len(t.shape) and all(
        structurally_equal(simplify(a), simplify(b)) for a, b in zip(decl.shape, t.shape))
    if decl.dtype != t.dtype or not same_shape:
        raise ScheduleError(f"{where}: buffer {decl.name} is declared {decl.dtype}"
                            f"{_dims(decl.shape)} for tensor {t.name}, which is {t.dtype}"
                            f"{_dims(t.shape)}")


def _dims(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def loop_nest(extents, body) -> Stmt:
    """Serial loops over `extents` (outermost first) around `body(*loop_vars)`; for lower_fns
    that write an intrinsic as plain loops."""
    loop_vars = [Var(f"t{d}", INDEX) for d in range(len(extents))]
    stmt = body(*loop_vars)
    for v, extent in reversed(list(zip(loop_vars, extents))):
        stmt = For(v, _ZERO, ops.as_expr(extent, INDEX), "serial", stmt)
    return stmt
