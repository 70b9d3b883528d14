"""`Interval`, the inclusive range of an index expression, and what counts as one.

Guarantees: an `Interval`'s ends are expressions or None (an open end), ints
given for them become int64 constants; intervals compare and hash
structurally. `_is_index` names the expressions the package reasons about
(scalar signed integers), `_fits` whether a value is representable in a dtype.

This module is the package's leaf: it imports no other `tex.arith` module at
import time. Only `Interval.from_extent` simplifies, importing the simplifier
when called (the simplifier imports this module).
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.dtype import DType, INDEX
from tex.expr import Const, Expr, _int_range, structurally_equal


def _is_index(e: Expr) -> bool:
    """A scalar signed integer: the expressions whose arithmetic is reasoned about."""
    return e.dtype.kind == "int" and e.dtype.lanes == 1


def _fits(value: int, dtype: DType) -> bool:
    """Whether `value` is a value of the integer `dtype`."""
    lo, hi = _int_range(dtype)
    return lo <= value <= hi


def _as_bound(value) -> Expr | None:
    return value if value is None or isinstance(value, Expr) else Const(INDEX, int(value))


@dataclass(frozen=True, eq=False, slots=True)
class Interval:
    """The inclusive range `[lo, hi]` of an integer expression; None is an open end.

    Bounds are expressions, possibly over variables left symbolic; ints are
    accepted and become int64 constants, so `Interval(0, n - 1)` reads as written.
    """

    lo: Expr | None
    hi: Expr | None

    def __post_init__(self):
        object.__setattr__(self, "lo", _as_bound(self.lo))
        object.__setattr__(self, "hi", _as_bound(self.hi))

    @staticmethod
    def point(e) -> Interval:
        e = ops.as_expr(e)
        return Interval(e, e)

    @staticmethod
    def everything() -> Interval:
        return Interval(None, None)

    @staticmethod
    def from_extent(min_, extent, ranges: dict | None = None) -> Interval:
        """The values of a loop variable running over `[min_, min_ + extent)`.

        The upper end is simplified, knowing `ranges` of the variables in it.
        """
        from tex.arith.simplifier import simplify  # simplifier.py imports this module

        lo = ops.as_expr(min_)
        return Interval(lo, simplify(lo + extent - 1, ranges))

    @property
    def const_lo(self) -> int | None:
        return self.lo.value if isinstance(self.lo, Const) else None

    @property
    def const_hi(self) -> int | None:
        return self.hi.value if isinstance(self.hi, Const) else None

    @property
    def is_const(self) -> bool:
        return self.const_lo is not None and self.const_hi is not None

    def __eq__(self, other):
        return (isinstance(other, Interval) and structurally_equal(self.lo, other.lo)
                and structurally_equal(self.hi, other.hi))

    def __hash__(self):
        return hash((self.lo, self.hi))

    def __str__(self):
        lo = "-inf" if self.lo is None else str(self.lo)
        return f"[{lo}, {'inf' if self.hi is None else self.hi}]"

    __repr__ = __str__
