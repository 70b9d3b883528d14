"""Simplify every expression of a loop program, knowing the range of each loop.

Guarantees: the program computes the same values; every expression is in the
simplifier's canonical form (`tex.arith.simplify`) given the ranges of the
enclosing loops; branches whose condition is provably true or false are
replaced by the side taken; a (non-parallel) loop that runs once becomes its
body with the variable replaced by the start; loops that never run disappear.
"""
from __future__ import annotations

import dataclasses

from tex.arith import Interval, simplify
from tex.expr import Const, Expr
from tex.ir import For, IfThenElse, LetStmt, Stmt, seq
from tex.visitor import Rewriter, substitute


class _Simplify(Rewriter):
    def __init__(self):
        self.ranges: dict = {}

    def rewrite(self, node):
        if isinstance(node, Expr):
            return simplify(node, self.ranges)
        return super().rewrite(node)

    def rewrite_For(self, loop: For):
        lo, extent = simplify(loop.min, self.ranges), simplify(loop.extent, self.ranges)
        if isinstance(extent, Const) and extent.value <= 0:
            return seq()
        if isinstance(extent, Const) and extent.value == 1 and loop.kind != "parallel":
            return self.rewrite(substitute(loop.body, {loop.var: lo}))
        self.ranges[loop.var] = Interval(lo, simplify(lo + extent - 1, self.ranges))
        body = self.rewrite(loop.body)
        del self.ranges[loop.var]
        if lo is loop.min and extent is loop.extent and body is loop.body:
            return loop
        return dataclasses.replace(loop, min=lo, extent=extent, body=body)

    def rewrite_IfThenElse(self, node: IfThenElse):
        cond = simplify(node.cond, self.ranges)
        if isinstance(cond, Const) and cond.dtype.lanes == 1:
            taken = node.then_body if cond.value else node.else_body
            return seq() if taken is None else self.rewrite(taken)
        then_body = self.rewrite(node.then_body)
        else_body = None if node.else_body is None else self.rewrite(node.else_body)
        return IfThenElse(cond, then_body, else_body)

    def rewrite_LetStmt(self, node: LetStmt):
        value = simplify(node.value, self.ranges)
        if isinstance(value, Const):
            return self.rewrite(substitute(node.body, {node.var: value}))
        return LetStmt(node.var, value, self.rewrite(node.body))


def simplify_stmt(stmt: Stmt) -> Stmt:
    """`stmt` with every expression simplified under the ranges of its loops."""
    return _Simplify().rewrite(stmt)
