"""Buffers as TE declares them for tensor intrinsics: `decl_buffer`.

    Bb = tex.tir.decl_buffer(b.shape, b.dtype, name="B", offset_factor=1,
                             strides=[tex.var("s1"), 1])
    gemv = tex.decl_tensor_intrin(c.op, intrin_func, binds={b: Bb, ...})

A declaration says what an intrinsic assumes of the memory one of its
tensors lies in; it is not memory itself. When a tile is tensorized,
lowering checks each declaration against the tile's view of the tensor
(`tex.lower.tile_binds`): a constant stride or offset must be the tile's, a
variable is bound to the tile's value (the intrinsic's statements then see
that value wherever they used the variable), `offset_factor` and
`data_alignment` must divide the tile's offset where lowering can tell, and
a non-empty `scope` must be the tile's memory scope.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.dtype import INDEX, DType, as_dtype, float32
from tex.errors import ExprError
from tex.expr import Expr
from tex.tensor import _shape

@dataclass(frozen=True, eq=False)
class BufferDecl:
    """A buffer as `decl_buffer` declares it (see the module docstring). `strides` is
    None for compact row-major storage; `elem_offset` None for "wherever the tile is"."""

    name: str
    dtype: DType
    shape: tuple[Expr, ...]
    strides: tuple[Expr, ...] | None
    elem_offset: Expr | None
    scope: str
    data_alignment: int
    offset_factor: int

    def __repr__(self):
        return f"decl_buffer({self.name})"


def decl_buffer(shape, dtype=None, name: str = "buffer", data=None, strides=None,
                elem_offset=None, scope: str = "", data_alignment: int = -1,
                offset_factor: int = 0, buffer_type: str = "", axis_separators=None,
                span=None) -> BufferDecl:
    """Declare the memory layout an intrinsic expects of one of its tensors, for
    `decl_tensor_intrin(..., binds={tensor: declaration})`.

    `strides` (elements; None: compact row-major) and `elem_offset` (elements from
    the buffer's start; None: any) may hold variables, bound to the tile's values at
    lowering, or constants, checked against them. `offset_factor` (elements) and
    `data_alignment` (bytes) must divide the tile's offset where lowering can tell
    (a kernel argument's own address is not checked). `scope` "" accepts any memory.
    `data`, `buffer_type` and `axis_separators` are refused (tex places buffers
    itself); `span` is ignored.
    TVM: `tvm.tir.decl_buffer`.
    """
    where = f"decl_buffer {name}"
    if data is not None or buffer_type or axis_separators:
        raise ExprError(f"{where}: data, buffer_type and axis_separators are not supported "
                        "(tex places the memory itself); leave them out")
    shape = _shape(shape, where)
    dtype = float32 if dtype is None else as_dtype(dtype)
    if strides is not None and len(strides) == 0:
        strides = None  # TVM's [] means compact too
    if strides is not None:
        strides = tuple(_index_expr(s, f"{where}: stride") for s in strides)
        if len(strides) != len(shape):
            raise ExprError(f"{where}: {len(shape)} dimension(s) but {len(strides)} stride(s)")
    if elem_offset is not None:
        elem_offset = _index_expr(elem_offset, f"{where}: elem_offset")
    for what, value in (("offset_factor", offset_factor), ("data_alignment", data_alignment)):
        if not isinstance(value, int) or isinstance(value, bool) or value < -1:
            raise ExprError(f"{where}: {what} must be an int (0 or -1: none), got {value!r}")
    if not isinstance(scope, str):
        raise ExprError(f"{where}: scope must be a string, got {scope!r}")
    return BufferDecl(name, dtype, shape, strides, elem_offset, scope, data_alignment,
                      offset_factor)


def _index_expr(value, what: str) -> Expr:
    expr = ops.as_expr(value, INDEX)
    if not expr.dtype.is_int or expr.dtype.lanes != 1:
        raise ExprError(f"{what} must be an integer expression, got {expr} ({expr.dtype})")
    return expr
