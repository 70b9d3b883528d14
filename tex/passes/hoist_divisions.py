"""Compute each integer division by a variable once, outside the loops it does not depend on.

An index such as `(k + 2) % n` inside inner, guarded loops is a division
LLVM will not move out of a branch or a loop by itself: in its view a
division by a variable may fault (tex's never does, `x // 0` being 0).
So it stays in the innermost loop, 20-40 cycles an iteration, and where the
loop vectorizer if-converts the branch around it, LLVM 22 computes such a
division, uniform across lanes, under the first lane's mask only, handing
the other lanes a poison address (a crash, found by the fuzzer).

Guarantees: the program computes the same values; every integer
floordiv/floormod whose divisor is not a constant, that reads no memory and
does not depend on a loop (or on anything defined inside it) is bound by a
`LetStmt` just outside that loop, repeatedly, so it ends outside every
serial, unrolled or vectorized loop it is invariant in. It never crosses a
parallel loop or one bound to GPU threads (their bodies become functions or
kernels of their own), nor leaves the loops whose variables it uses.
"""
from __future__ import annotations

import dataclasses

from tex.expr import Binary, Const, Var, structurally_equal
from tex.ir import INLINE_LOOP_KINDS, For, LetStmt, Load, Stmt
from tex.visitor import Rewriter, collect, defined_vars, substitute, transform



def hoist_divisions(stmt: Stmt) -> Stmt:
    """`stmt` with loop-invariant integer divisions by variables computed before their loops."""
    return _Hoist().rewrite(stmt)


class _Hoist(Rewriter):
    def __init__(self):
        self.names = 0

    def rewrite_For(self, loop: For):
        body = self.rewrite(loop.body)
        if loop.kind in INLINE_LOOP_KINDS:
            inside = {id(loop.var)} | {id(v) for v in defined_vars(body)}
            hoisted = []
            for division in collect(body, _is_variable_division):
                if any(structurally_equal(division, d) for d, _ in hoisted) or collect(
                        division, lambda n: isinstance(n, Load) or id(n) in inside):
                    continue
                self.names += 1
                hoisted.append((division, Var(f"quotient{self.names}", division.dtype)))
            for division, var in hoisted:
                body = transform(body, lambda n, d=division, v=var:
                                 v if structurally_equal(n, d) else None)
            # a division hoisted before an inner loop is now `quotient1 = quotient2`
            body = transform(body, lambda n: substitute(n.body, {n.var: n.value})
                             if isinstance(n, LetStmt) and isinstance(n.value, Var) else None)
            result = dataclasses.replace(loop, body=body) if body is not loop.body else loop
            for division, var in reversed(hoisted):
                result = LetStmt(var, division, result)
            return result
        return loop if body is loop.body else dataclasses.replace(loop, body=body)


def _is_variable_division(node) -> bool:
    return (isinstance(node, Binary) and node.op in ("floordiv", "floormod")
            and not node.dtype.is_float and node.dtype.lanes == 1
            and not isinstance(node.b, Const))

