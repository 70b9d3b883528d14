"""Statements written the TE way: `call_extern`, access pointers and TVM's IR builder.

    ib = tex.tir.ir_builder.create()
    ib.emit(tex.tir.call_extern("int32", "gemv_update", cc.access_ptr("w"),
                                aa.access_ptr("r"), bb.access_ptr("r"), m, l, bb.strides[0]))
    with ib.for_range(0, 4, name="i") as i:
        out[i] = ...                 # out = ib.buffer_ptr(cc): element access
    stmt = ib.get()

`call_extern` makes an `ExternCall` statement: a call of a C function for
what it does (its result is dropped), its pointer arguments the `AccessPtr`s
that a tensor intrinsic's tile views hand out (`access_ptr`, `data`).
`IRBuilder` collects statements in order, with loops, branches and
allocations opened by `with` blocks or calls, and `get()` returns them as one
statement. TVM: `tvm.tir.call_extern`, `tvm.tir.ir_builder`.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

from tex import ops
from tex.dtype import INDEX, as_dtype
from tex.errors import ExprError
from tex.expr import Const, Var
from tex.ir import Allocate, Buffer, ExternCall, For, IfThenElse, Load, Stmt, Store, seq

_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: TVM's loop kinds, as tex calls them.
_LOOP_KINDS = {"serial": "serial", "parallel": "parallel", "vectorize": "vectorized",
               "unroll": "unrolled"}
#: Results a call may have that no dtype describes: dropped like any result.
_NO_RESULT = (None, "void", "handle")


@dataclass(frozen=True)
class AccessPtr:
    """The address of an element, as an argument of `call_extern`: `element` is a scalar
    `Load` of it; the callee may write through it when `write`. TVM: `tvm_access_ptr`."""

    element: Load
    write: bool


def access_mode(mask, where: str) -> bool:
    """Whether the access mask `mask` ("r", "w", "rw", or TVM's bits: 1 read, 2 write)
    allows writing; anything else raises ExprError."""
    if isinstance(mask, str) and mask and set(mask) <= {"r", "w"}:
        return "w" in mask
    if isinstance(mask, int) and not isinstance(mask, bool) and mask in (1, 2, 3):
        return bool(mask & 2)
    raise ExprError(f"{where}: the access mask must be 'r', 'w', 'rw' or 1, 2, 3, got {mask!r}")


def call_extern(dtype, func_name: str, *args) -> ExternCall:
    """A call of the C function `func_name` for what it does; its result (of `dtype`,
    or "handle" / "void") is dropped. `args` are access pointers (`view.access_ptr(mode)`,
    `view.data`), buffers (their first element, which the call may write), and scalars
    (numbers, expressions over sizes and loop variables). On a CPU the function comes
    from an LLVM IR module given with `s[T].pragma(axis, "import_llvm", text)`, whose
    signature the arguments are converted to, or else from the process (libc, libm);
    for CUDA from `pragma(axis, "import_c", cuda_source)` or CUDA's own functions.
    TVM: `tvm.tir.call_extern` (a statement here; emit it with `IRBuilder.emit`).
    """
    if not isinstance(func_name, str) or not _C_NAME.match(func_name):
        raise ExprError(f"call_extern: the function name must be a C identifier, got "
                        f"{func_name!r}")
    result = None if dtype in _NO_RESULT else as_dtype(dtype)
    values, pointers, writes = [], [], []
    for k, arg in enumerate(args):
        if isinstance(arg, Buffer):
            arg = AccessPtr(Load(arg, tuple(Const(INDEX, 0) for _ in arg.shape)), True)
        if isinstance(arg, AccessPtr):
            pointers.append(k)
            writes.extend([k] if arg.write else [])
            values.append(arg.element)
            continue
        try:
            value = ops.as_expr(arg)
        except ExprError:
            value = None
        if value is None or value.dtype.lanes != 1:
            raise ExprError(f"call_extern {func_name}: argument {k} must be an access pointer "
                            f"(view.access_ptr(...)), a buffer or a scalar, got "
                            f"{type(arg).__name__} {arg!r}")
        values.append(value)
    return ExternCall(func_name, tuple(values), tuple(pointers), tuple(writes), result)


@dataclass(frozen=True)
class _Allocation:
    """Where `IRBuilder.allocate` was called: the statements after it see `buffer`."""

    buffer: Buffer


class IRBuilder:
    """Statements in order, with loops and branches opened by `with` blocks.
    TVM: `tvm.tir.ir_builder.IRBuilder`."""

    def __init__(self):
        self._scopes: list[list] = [[]]

    def emit(self, stmt):
        """Append the statement `stmt` (a `call_extern`, a store, ...)."""
        if not isinstance(stmt, Stmt):
            raise ExprError(f"IRBuilder.emit: expected a statement (tex.tir.call_extern(...), "
                            f"a store), got {type(stmt).__name__} {stmt!r}")
        self._scopes[-1].append(stmt)

    def get(self) -> Stmt:
        """What was emitted, as one statement."""
        if len(self._scopes) != 1:
            raise ExprError("IRBuilder.get: a for_range or if_scope block is still open")
        return _block(self._scopes[0])

    @contextmanager
    def _scope(self):
        """Collect the statements emitted in a `with` block; yields the list they go to."""
        self._scopes.append([])
        try:
            yield self._scopes[-1]
        finally:
            self._scopes.pop()

    @contextmanager
    def for_range(self, begin, end, name: str = "i", dtype=None, kind: str = "serial"):
        """A loop over [begin, end) around the statements of the block; yields its variable.
        `kind`: "serial", "parallel", "vectorize" or "unroll"."""
        if kind not in _LOOP_KINDS:
            raise ExprError(f"for_range {name}: kind must be one of {sorted(_LOOP_KINDS)}, "
                            f"got {kind!r}")
        var = Var(name, INDEX if dtype is None else as_dtype(dtype))
        begin = ops.cast(var.dtype, ops.as_expr(begin, var.dtype))
        extent = ops.binary("sub", ops.cast(var.dtype, ops.as_expr(end, var.dtype)), begin)
        with self._scope() as body:
            yield var
        self.emit(For(var, begin, extent, _LOOP_KINDS[kind], _block(body)))

    @contextmanager
    def if_scope(self, cond):
        """The statements of the block, run when `cond` holds."""
        with self._scope() as body:
            yield
        self.emit(IfThenElse(ops.as_expr(cond), _block(body)))

    @contextmanager
    def else_scope(self):
        """The statements of the block, run when the `if_scope` just before did not."""
        scope = self._scopes[-1]
        if not scope or not isinstance(scope[-1], IfThenElse) or scope[-1].else_body:
            raise ExprError("IRBuilder.else_scope must follow an if_scope block")
        with self._scope() as body:
            yield
        branch = scope.pop()
        scope.append(IfThenElse(branch.cond, branch.then_body, _block(body)))

    def allocate(self, dtype, shape, name: str = "buf", scope: str = "local") -> BufferPointer:
        """A new buffer, alive for the statements emitted after this call in this block;
        returns element access to it."""
        shape = tuple(ops.as_expr(d, INDEX) for d in
                      (shape if isinstance(shape, (tuple, list)) else (shape,)))
        buffer = Buffer(name, as_dtype(dtype), shape, scope)
        self._scopes[-1].append(_Allocation(buffer))
        return self.buffer_ptr(buffer)

    def buffer_ptr(self, buffer) -> BufferPointer:
        """Element access to `buffer`: one this builder allocated, or a tile view
        (`p[i, j]` is its element (i, j))."""
        return BufferPointer(self, buffer)


class BufferView:
    """A tile of a buffer that a tensor intrinsic's statements are given
    (`tex.schedule.tensorize.TileView`): `pointer()` is a scalar `Load` of its first
    element, `shape` its extents, `strides` its strides in elements."""

    def pointer(self) -> Load:
        raise NotImplementedError


class BufferPointer:
    """`p[index]` reads an element, `p[index] = value` emits a store of it."""

    def __init__(self, builder: IRBuilder, buffer):
        self.builder, self.buffer = builder, buffer

    def _index(self, index) -> tuple:
        index = tuple(index) if isinstance(index, (tuple, list)) else (index,)
        rank = len(self.buffer.shape)
        if len(index) != rank:
            raise ExprError(f"{self.buffer.name}: {rank} index(es) expected, got {len(index)}")
        return tuple(ops.as_expr(i, INDEX) for i in index)

    def __getitem__(self, index):
        if isinstance(self.buffer, Buffer):
            return Load(self.buffer, self._index(index))
        return self.buffer.load(*self._index(index))

    def __setitem__(self, index, value):
        if isinstance(self.buffer, Buffer):
            value = ops.cast(self.buffer.dtype, ops.as_expr(value, self.buffer.dtype))
            self.builder.emit(Store(self.buffer, value, self._index(index)))
        else:
            self.builder.emit(self.buffer.store(value, *self._index(index)))


def _block(items: list) -> Stmt:
    """The statements `items` in order, each allocation around those after it."""
    body = seq()
    for item in reversed(items):
        body = Allocate(item.buffer, body) if isinstance(item, _Allocation) else seq(item, body)
    return body


def create() -> IRBuilder:
    """A new, empty IR builder. TVM: `tvm.tir.ir_builder.create()`."""
    return IRBuilder()
