"""LLVM vector constants whose lanes are all alike, written in LLVM's short form.

llvmlite prints a vector constant lane by lane, so a 64-lane splat is 1.5 KB
of IR text to format and for LLVM to parse again; a kernel with a few dozen
of them spends milliseconds on that. These constants print as
`zeroinitializer`, `poison` or `splat (float 1.0)` instead.
"""
from __future__ import annotations

from llvmlite import ir


class _Uniform(ir.Constant):
    """A vector constant of `lane` in every lane, printed as `text`. Its `constant`
    holds the lanes, as llvmlite's own vector constants do (shufflevector checks its
    mask's lanes)."""

    def __init__(self, vt: ir.VectorType, lane: ir.Constant, text: str):
        self.type, self.constant, self._text = vt, (lane,) * vt.count, text

    def _get_reference(self):
        return self._text


def zeros(vt: ir.VectorType) -> ir.Constant:
    return _Uniform(vt, ir.Constant(vt.element, None), "zeroinitializer")


def poison(vt: ir.VectorType) -> ir.Constant:
    """A vector whose lanes are all to be overwritten or never read."""
    return _Uniform(vt, ir.Constant(vt.element, ir.Undefined), "poison")


def splat_constant(value: ir.Constant, lanes: int) -> ir.Constant:
    """The vector constant with `lanes` lanes equal to the scalar constant `value`."""
    return _Uniform(ir.VectorType(value.type, lanes), value, f"splat ({value})")


def uniform(t: ir.Type, value) -> ir.Constant:
    """The constant `value` of type `t`: a scalar, or every lane of a vector."""
    if isinstance(t, ir.VectorType):
        return splat_constant(ir.Constant(t.element, value), t.count)
    return ir.Constant(t, value)
