"""Simplify every expression of a loop program, knowing the range of each loop.

Guarantees: the program computes the same values; every expression is in the
simplifier's canonical form (`tex.arith.simplify`) given the ranges of the
enclosing loops; branches whose condition is provably true or false are
replaced by the side taken; a serial loop whose whole body is guarded by
`var < end` stops at `end` (when that is a constant); a loop that runs once
becomes its body with the variable replaced by the start, unless it is
parallel or bound to a GPU thread axis (a thread loop of one iteration in a
wider block says that only its first thread runs the body); loops that never
run disappear.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.arith import Interval, scope_simplifier
from tex.expr import Compare, Const, Expr, Logical
from tex.ir import For, IfThenElse, LetStmt, Stmt, seq
from tex.visitor import Rewriter, substitute, uses_var


class _Simplify(Rewriter):
    def __init__(self):
        self.ranges: dict = {}
        self._scope = None  # scope_simplifier(self.ranges), made when first needed

    def rewrite(self, node):
        if isinstance(node, Expr):
            return self.simplify(node)
        return super().rewrite(node)

    def simplify(self, expr: Expr) -> Expr:
        """`expr` simplified under the current ranges, shared work remembered per scope."""
        if self._scope is None:
            self._scope = scope_simplifier(self.ranges)
        return self._scope(expr)

    def rewrite_For(self, loop: For):
        lo, extent = self.simplify(loop.min), self.simplify(loop.extent)
        body = loop.body
        if loop.kind in ("serial", "parallel"):
            extent, body = self._tighten(loop.var, lo, extent, body)
        if isinstance(extent, Const) and extent.value <= 0:
            return seq()
        if isinstance(extent, Const) and extent.value == 1 and \
                loop.kind not in ("parallel", "bound"):
            return self.rewrite(substitute(body, {loop.var: lo}))
        outer_scope, self._scope = self._scope, None
        self.ranges[loop.var] = Interval.from_extent(lo, extent, self.ranges)
        body = self.rewrite(body)
        del self.ranges[loop.var]
        self._scope = outer_scope
        if lo is loop.min and extent is loop.extent and body is loop.body:
            return loop
        return dataclasses.replace(loop, min=lo, extent=extent, body=body)

    def _tighten(self, var, lo, extent, body):
        """(extent, body) with a guard `var < end` around the whole body folded into the extent.

        Such a guard holds for a prefix of the iterations, so the loop can stop
        where it first fails; done when the new extent is a constant.
        """
        if not isinstance(body, IfThenElse) or body.else_body is not None:
            return extent, body
        kept = []
        for cond in _conjuncts(self.simplify(body.cond)):
            end = _exclusive_end(cond, var)
            if end is not None:
                shorter = self.simplify(ops.minimum(extent, ops.binary("sub", end, lo)))
                if isinstance(shorter, Const):
                    extent = Const(extent.dtype, max(shorter.value, 0))
                    continue
            kept.append(cond)
        if len(kept) == len(_conjuncts(body.cond)):
            return extent, body
        return extent, (IfThenElse(ops.all_(*kept), body.then_body) if kept else body.then_body)

    def rewrite_IfThenElse(self, node: IfThenElse):
        cond = self.simplify(node.cond)
        if isinstance(cond, Const) and cond.dtype.lanes == 1:
            taken = node.then_body if cond.value else node.else_body
            return seq() if taken is None else self.rewrite(taken)
        then_body = self.rewrite(node.then_body)
        else_body = None if node.else_body is None else self.rewrite(node.else_body)
        return IfThenElse(cond, then_body, else_body)

    def rewrite_LetStmt(self, node: LetStmt):
        value = self.simplify(node.value)
        if isinstance(value, Const):
            return self.rewrite(substitute(node.body, {node.var: value}))
        return LetStmt(node.var, value, self.rewrite(node.body))


def _conjuncts(cond: Expr) -> list[Expr]:
    if isinstance(cond, Logical) and cond.op == "and":
        return _conjuncts(cond.a) + _conjuncts(cond.b)
    return [cond]


def _exclusive_end(cond: Expr, var) -> Expr | None:
    """`end` when `cond` is `var < end` or `var <= end - 1` with `end` free of `var`."""
    if isinstance(cond, Compare) and cond.a is var and not uses_var(cond.b, var):
        if cond.op == "lt":
            return cond.b
        if cond.op == "le":
            return ops.binary("add", cond.b, 1)
    return None


def simplify_stmt(stmt: Stmt) -> Stmt:
    """`stmt` with every expression simplified under the ranges of its loops."""
    return _Simplify().rewrite(stmt)
