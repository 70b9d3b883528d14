"""The arithmetic of one statement, counted per lane by category, and its loads.

The categories are `ARITH` (autotune/features/layout.py). A 16-lane vector
add counts 16, so vectorizing a loop does not change the totals. Index
arithmetic is not counted (codegen hoists and strength-reduces it).
"""
from __future__ import annotations

from autotune.features.layout import ARITH
from tex.expr import Binary, Call, Cast, Expr, Var
from tex.ir import Load, Ramp
from tex.visitor import Visitor

_ARITH_INDEX = {name: k for k, (name, _) in enumerate(ARITH)}
_FLOAT_CATEGORY = {"add": "float_addsub", "sub": "float_addsub", "mul": "float_mul",
                   "div": "float_div", "floordiv": "float_div", "floormod": "float_div",
                   "min": "float_minmax", "max": "float_minmax"}
_CHEAP_CALLS = ("abs", "floor", "ceil", "trunc", "round", "nearbyint", "copysign")


class Scan(Visitor):
    """Counts the arithmetic of a stored value per lane and collects its loads.

    Loads inside indices (gathers) are collected too, their index arithmetic
    is not counted. A variable bound by a LetStmt counts its value's arithmetic
    and loads at its first use. `lanes` is the widest vector met.
    """

    def __init__(self, lets: dict):
        self.lets = lets   # let-bound variable -> its value, counted where the variable is used
        self.counts = [0.0] * len(ARITH)
        self.nodes = 0
        self.loads: list[Load] = []
        self.lanes = 1
        self.counting = True

    def count(self, category: str, e: Expr, amount: int | None = None):
        self.lanes = max(self.lanes, e.dtype.lanes)
        if self.counting:
            self.counts[_ARITH_INDEX[category]] += e.dtype.lanes if amount is None else amount
            self.nodes += 1

    def visit_Binary(self, e: Binary):
        if not e.dtype.is_float:
            self.count("int_arith", e)
            return self.generic_visit(e)
        if e.op in ("add", "sub"):
            for mul, other in ((e.a, e.b), (e.b, e.a)):
                if isinstance(mul, Binary) and mul.op == "mul":
                    self.count("float_fma", e)
                    for child in (mul.a, mul.b, other):
                        self.visit(child)
                    return None
        self.count(_FLOAT_CATEGORY[e.op], e)
        return self.generic_visit(e)

    def visit_Call(self, e: Call):
        if not e.dtype.is_float:
            self.count("int_arith", e)
        else:
            self.count("float_addsub" if e.name in _CHEAP_CALLS else "float_math", e)
        return self.generic_visit(e)

    visit_PureExternCall = visit_Call

    def _compare(self, e):
        self.count("compare_select", e)
        return self.generic_visit(e)

    visit_Compare = visit_Logical = visit_Not = visit_Select = _compare

    def visit_Cast(self, e: Cast):
        self.count("cast", e)
        return self.generic_visit(e)

    def visit_VectorReduce(self, e):
        self.lanes = max(self.lanes, e.value.dtype.lanes)
        self.count("vector_reduce", e, e.value.dtype.lanes - 1)
        return self.generic_visit(e)

    def visit_Load(self, e: Load):
        self.lanes = max(self.lanes, e.dtype.lanes)
        self.loads.append(e)
        self.indices(e.indices)

    def visit_Var(self, v: Var):
        value = self.lets.pop(v, None)   # counted once per statement, as if inlined
        if value is not None:
            self.visit(value)

    def visit_Ramp(self, e: Ramp):
        self.lanes = max(self.lanes, e.lanes)
        return self.generic_visit(e)

    visit_Broadcast = visit_Ramp

    def indices(self, indices):
        """Collect the loads of an index without counting its arithmetic."""
        counting, self.counting = self.counting, False
        for index in indices:
            self.visit(index)
        self.counting = counting

