"""A tensor intrinsic's declared buffers (TE's `binds`) checked against a tile's views.

An intrinsic may declare, with `tex.tir.decl_buffer`, what it assumes of the
memory each of its tensors lies in (`TensorIntrin.binds`). `bind_buffers`
checks each declaration against the view of that tensor in the tile being
tensorized and returns the values of the variables the declarations hold:

* a stride or `elem_offset` that is a variable not yet bound is bound to the
  view's value (a variable in two declarations is bound once, then checked);
  any other must equal the view's, or LoweringError names both;
* strides left out (None) declare compact row-major storage of the declared
  shape (dimensions of extent 1 aside, whose stride never matters);
* `offset_factor` (elements) and `data_alignment` (bytes) must divide the
  view's offset when the simplifier can tell; when it cannot, they are
  accepted;
* a non-empty `scope` must be the memory scope of the view's buffer.
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.buffer_decl import BufferDecl
from tex.dtype import INDEX
from tex.errors import LoweringError
from tex.expr import Const, Expr, Var
from tex.schedule.tensorize import TileView
from tex.visitor import substitute


def bind_buffers(tile, views: dict, ranges: dict, sizes: dict) -> dict:
    """{variable: value} for the variables of `tile.intrin`'s declared buffers, and the
    intrinsic's variable extents (`sizes`, bound already), after checking each
    declaration against `views[tensor]` (see the module docstring); `ranges` are the
    loop variables' intervals, for the simplifier."""
    binder = _Binder(ranges)
    binder.bindings.update(sizes)
    for tensor, decl in tile.intrin.binds.items():
        view = views[tensor]
        where = (f"{tile.where}: the tile of intrinsic tensor {tensor.name} (in "
                 f"{view.buffer.name})")
        _check_scope(decl, view, where)
        strides = _declared_strides(decl, binder.bindings)
        for d, (declared, actual) in enumerate(zip(strides, view.strides)):
            if declared is not None:
                binder.bind(declared, actual, decl,
                            what=f"{where} has stride `{actual}` along dimension {d}")
        if decl.elem_offset is not None:
            binder.bind(decl.elem_offset, view.offset, decl,
                        what=f"{where} starts at element `{view.offset}`")
        binder.check_multiple(view.offset, decl.offset_factor, "offset_factor", where)
        alignment = decl.data_alignment
        if alignment > 0 and alignment % view.dtype.itemsize == 0:
            binder.check_multiple(view.offset, alignment // view.dtype.itemsize,
                                  f"data_alignment {alignment} (bytes)", where)
    return binder.bindings


def _check_scope(decl: BufferDecl, view: TileView, where: str):
    if decl.scope and decl.scope != view.scope:
        raise LoweringError(f"{where} is in {view.scope!r} memory, where decl_buffer "
                            f"{decl.name} declares {decl.scope!r}")


def _declared_strides(decl: BufferDecl, sizes: dict) -> list:
    """The declared stride of each dimension; compact row-major when none are declared
    (over the shape with the variables of `sizes` bound), with None for the dimensions
    of extent 1 (any stride will do)."""
    if decl.strides is not None:
        return list(decl.strides)
    strides, size = [], Const(INDEX, 1)
    for extent in reversed(decl.shape):
        extent = simplify(ops.cast(INDEX, substitute(extent, sizes)))
        one = isinstance(extent, Const) and extent.value == 1
        strides.insert(0, None if one else size)
        size = simplify(ops.binary("mul", size, extent))
    return strides


class _Binder:
    """The values bound so far to the declarations' variables, and the loop variables'
    intervals the checks simplify with."""

    def __init__(self, ranges: dict):
        self.bindings: dict[Var, Expr] = {}
        self.ranges = ranges

    def bind(self, declared: Expr, actual: Expr, decl: BufferDecl, *, what: str):
        """Bind `declared` to `actual` if it is an unbound variable, else check they
        agree (`what` says what `actual` is, for the message)."""
        if isinstance(declared, Var) and declared not in self.bindings:
            self.bindings[declared] = ops.cast(declared.dtype, actual)
            return
        declared = substitute(declared, self.bindings)
        difference = simplify(ops.binary("sub", actual, ops.cast(INDEX, declared)),
                              self.ranges)
        if not (isinstance(difference, Const) and difference.value == 0):
            raise LoweringError(f"{what}, where decl_buffer {decl.name} declares `{declared}`")

    def check_multiple(self, offset: Expr, factor: int, what: str, where: str):
        """`offset` is a multiple of `factor`, unless the simplifier cannot tell."""
        if factor <= 1:
            return
        remainder = simplify(ops.binary("floormod", offset, factor), self.ranges)
        if isinstance(remainder, Const) and remainder.value != 0:
            raise LoweringError(f"{where} starts at element `{offset}`, which is not a "
                                f"multiple of {factor}, as its {what} requires")
