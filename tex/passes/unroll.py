"""Unrolling: an `unrolled` loop becomes one copy of its body per iteration.

Assumes: unrolled loops have a constant extent (lowering checks it).
Guarantees: no `unrolled` loop is left; copy k has the loop variable
replaced by `min + k`, and every variable defined inside the body (inner
loops, lets) is a fresh variable in each copy, so definitions stay unique.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.expr import Const
from tex.ir import For, Stmt, seq
from tex.visitor import fresh_copy, transform


def unroll_loops(stmt: Stmt) -> Stmt:
    """`stmt` with every unrolled loop expanded."""
    def visit(node):
        if isinstance(node, For) and node.kind == "unrolled":
            if not isinstance(node.extent, Const):
                return dataclasses.replace(node, kind="serial")
            return seq(*(fresh_copy(node.body, {node.var: ops.binary("add", node.min, k)})
                         for k in range(node.extent.value)))
        return None
    return transform(stmt, visit)


