"""Unrolling: an `unrolled` loop becomes one copy of its body per iteration.

Assumes: unrolled loops have a constant extent (lowering checks it).
Guarantees: no `unrolled` loop is left; copy k has the loop variable
replaced by `min + k`, and every variable defined inside the body (inner
loops, lets) is a fresh variable in each copy, so definitions stay unique.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.expr import Const, Var
from tex.ir import For, Stmt, seq
from tex.visitor import Rewriter, transform


class _Copy(Rewriter):
    """A copy of a statement with `mapping` applied and its own definitions renamed."""

    def __init__(self, mapping: dict):
        self.mapping = dict(mapping)

    def rewrite_Var(self, v: Var):
        return self.mapping.get(v, v)

    def _fresh(self, node):
        self.mapping[node.var] = Var(node.var.name, node.var.dtype)
        return dataclasses.replace(self.generic_rewrite(node), var=self.mapping[node.var])

    rewrite_For = rewrite_LetStmt = rewrite_Let = _fresh


def unroll_loops(stmt: Stmt) -> Stmt:
    """`stmt` with every unrolled loop expanded."""
    def visit(node):
        if isinstance(node, For) and node.kind == "unrolled":
            if not isinstance(node.extent, Const):
                return dataclasses.replace(node, kind="serial")
            return seq(*(_Copy({node.var: ops.binary("add", node.min, k)}).rewrite(node.body)
                         for k in range(node.extent.value)))
        return None
    return transform(stmt, visit)


