"""Loop-invariant hoisting of guards (loop unswitching), where it is free.

Guarantees: a loop whose whole body is `if cond: body` with `cond`
independent of the loop (and of nothing defined inside it) becomes
`if cond: loop(body)`, so the test runs once instead of once per iteration.
Everything else is left as it is; LLVM hoists invariant arithmetic itself.
"""
from __future__ import annotations

import dataclasses

from tex.ir import For, IfThenElse, Stmt
from tex.visitor import transform, uses_var


def hoist_invariant_guards(stmt: Stmt) -> Stmt:
    """`stmt` with loop-invariant guards moved out of the loops they wrap."""
    def visit(node):
        if (isinstance(node, For) and isinstance(node.body, IfThenElse)
                and node.body.else_body is None and not uses_var(node.body.cond, node.var)):
            loop = dataclasses.replace(node, body=node.body.then_body)
            return IfThenElse(node.body.cond, visit(loop) or loop)
        return None
    return transform(stmt, visit)
