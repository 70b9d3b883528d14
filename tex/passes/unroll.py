"""Unrolling: an `unrolled` loop becomes one copy of its body per iteration.

Assumes: unrolled loops have a constant extent (lowering checks it).
Guarantees: no `unrolled` loop is left; copy k has the loop variable
replaced by `min + k`. Variables defined inside the body stay shared between
copies, which is sound because each copy's definitions dominate its uses.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.expr import Const
from tex.ir import For, Stmt, seq
from tex.visitor import substitute, transform


def unroll_loops(stmt: Stmt) -> Stmt:
    """`stmt` with every unrolled loop expanded."""
    def visit(node):
        if isinstance(node, For) and node.kind == "unrolled":
            if not isinstance(node.extent, Const):
                return dataclasses.replace(node, kind="serial")
            return seq(*(substitute(node.body, {node.var: ops.binary("add", node.min, k)})
                         for k in range(node.extent.value)))
        return None
    return transform(stmt, visit)
