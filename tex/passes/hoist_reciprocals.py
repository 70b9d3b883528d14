"""Divide by a loop-invariant value once: `x / y` in a loop becomes `x * r`, `r = 1 / y`
computed before the loop, where the schedule asks for it.

A softmax divides every element of a row by the row's sum: a full IEEE division
per element (on a GPU a reciprocal estimate refined by several fused
multiply-adds, with a slow path), where one reciprocal per row and a multiply per
element would do. `x * (1 / y)` may differ from `x / y` in the last bit, so no
compiler makes the change without fast-math; here the schedule opts in, loop by
loop, with `stage.pragma(axis, "reciprocal")`.

Guarantees: in the body of each loop with the "reciprocal" pragma, every float
division whose divisor does not depend on the loop (its variable, what the body
defines, or a buffer the body stores to) and whose dividend does, is a
multiplication by the divisor's reciprocal, bound by a `LetStmt` just outside
the loop (one per distinct divisor; at the top of its body for a parallel loop or
one bound to GPU threads, once per thread). Divisions invariant as a whole are left as
they are (exact; compilers compute them once), as is every division outside
such loops. Runs on flat storage, before loops are unrolled.
"""
from __future__ import annotations

import dataclasses

from tex import ops
from tex.expr import Binary, Const, Var, structurally_equal
from tex.ir import INLINE_LOOP_KINDS, For, LetStmt, Load, Stmt, Store
from tex.visitor import Rewriter, collect, defined_vars, transform

#: The loop pragma that asks for it.
RECIPROCAL_PRAGMA = "reciprocal"


def hoist_reciprocals(stmt: Stmt) -> Stmt:
    """`stmt` with the loop-invariant divisors of "reciprocal" loops' divisions inverted
    once before the loop."""
    return _Hoist().rewrite(stmt)


class _Hoist(Rewriter):
    def __init__(self):
        self.names = 0

    def rewrite_For(self, loop: For):
        body = self.rewrite(loop.body)
        if not any(key == RECIPROCAL_PRAGMA for key, _ in loop.pragmas):
            return loop if body is loop.body else dataclasses.replace(loop, body=body)
        body, lets = self._invert(loop, body)
        inside = loop.kind not in INLINE_LOOP_KINDS
        for var, value in reversed(lets if inside else []):
            body = LetStmt(var, value, body)
        result = dataclasses.replace(loop, body=body) if body is not loop.body else loop
        for var, value in reversed([] if inside else lets):
            result = LetStmt(var, value, result)
        return result

    def _invert(self, loop: For, body: Stmt):
        """`body` with each invariant divisor's divisions made multiplications; the
        (variable, reciprocal) pairs to bind before the loop."""
        inside = {id(loop.var)} | {id(v) for v in defined_vars(body)}
        stored = {id(s.buffer) for s in collect(body, lambda n: isinstance(n, Store))}

        def invariant(expr) -> bool:
            return not collect(expr, lambda n: id(n) in inside or (
                isinstance(n, Load) and id(n.buffer) in stored))

        lets: list[tuple[Var, object]] = []
        for division in collect(body, _is_float_division):
            divisor = division.b
            if invariant(division) or not invariant(divisor) or any(
                    structurally_equal(divisor, d) for d, _ in lets):
                continue
            self.names += 1
            lets.append((divisor, Var(f"reciprocal{self.names}", divisor.dtype)))

        def rewrite(node):
            if _is_float_division(node) and not invariant(node):
                for divisor, var in lets:
                    if structurally_equal(node.b, divisor):
                        return ops.binary("mul", node.a, var)
            return None
        body = transform(body, rewrite) if lets else body
        return body, [(var, ops.binary("div", Const(divisor.dtype, 1.0), divisor))
                      for divisor, var in lets]


def _is_float_division(node) -> bool:
    return isinstance(node, Binary) and node.op == "div" and node.dtype.is_float

