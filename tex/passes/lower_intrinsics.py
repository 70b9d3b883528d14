"""The user's intrinsic lowering rules, applied for the target being built for.

`lower_intrinsics(body, target)` runs when `tex.lower` or `tex.build` has a
target, before every other pass, so that what a rule makes (a C function's
call, other arithmetic) is simplified, vectorized and emitted like the rest.

Assumes: the rules of `tex.intrin_rules` return expressions (checked here).

Guarantees:

* each math intrinsic (`Call`) or declared intrinsic (`OpCall`) whose
  operator has a rule for the target's kind (its own rule first, then the
  "default" one) is replaced by what the first rule that changes it returns,
  with the call's arguments lowered first; the result is lowered again, so a
  rule may make calls that other rules lower (up to `MAX_DEPTH` levels);
* no `OpCall` is left: one that no rule lowers is a BuildError naming the
  intrinsic and the target, as is a rule's result of another dtype;
* an `LLVMCall` is left for CPU targets only (a BuildError for a GPU).

The program is returned unchanged (the same object) when no call matches.
"""
from __future__ import annotations

from tex.errors import BuildError
from tex.expr import Expr, LLVMCall, OpCall, structurally_equal
from tex.intrin_rules import declared_any, rules_for
from tex.ir import Stmt
from tex.target import Target
from tex.visitor import Rewriter

#: How many times a call's lowered form may itself be lowered by a rule.
MAX_DEPTH = 8


def lower_intrinsics(body: Stmt, target: Target) -> Stmt:
    """`body` with the intrinsic calls lowered for `target` (see the module docstring).
    For a CPU target with no rule and no declared intrinsic (so no `OpCall` either:
    `call_intrin` needs a declaration) there is nothing to do, and the body is not
    walked."""
    if str(target.kind) == "llvm" and not rules_for("llvm") and not declared_any():
        return body
    return _Lowering(target).rewrite(body)


class _Lowering(Rewriter):
    def __init__(self, target: Target):
        self.kind = str(target.kind)
        self.rules = rules_for(self.kind)
        self.depth = 0

    def rewrite_Call(self, e):
        return self._lower(self.generic_rewrite(e))

    rewrite_OpCall = rewrite_Call

    def rewrite_LLVMCall(self, e: LLVMCall):
        if self.kind != "llvm":
            raise BuildError(f"call_llvm_intrin {e.name}: LLVM intrinsics are called in CPU "
                             f"kernels (target 'llvm'), not for target {self.kind!r}")
        return self.generic_rewrite(e)

    def _lower(self, call: Expr) -> Expr:
        name = call.op.name
        for rule in self.rules.get(name, ()):
            result = rule(call)
            if not isinstance(result, Expr):
                raise BuildError(f"the lowering rule {_rule_name(rule)} of {name} for target "
                                 f"{self.kind!r} returned {result!r}, not an expression")
            if result is call or structurally_equal(result, call):
                continue
            if result.dtype != call.dtype:
                raise BuildError(f"the lowering rule {_rule_name(rule)} of {name} for target "
                                 f"{self.kind!r} made {result.dtype} of a {call.dtype} call "
                                 f"({result}); it must keep the dtype (cast it)")
            return self._again(name, result)
        if isinstance(call, OpCall):
            raise BuildError(f"intrinsic {name} has no lowering rule for target {self.kind!r} "
                             f"(in {call}); register one with tex.register_intrin_lowering("
                             f"{name!r}, target={self.kind!r}, f=...)")
        return call

    def _again(self, name: str, result: Expr) -> Expr:
        """`result`, a rule's output, with its own calls lowered."""
        if self.depth == MAX_DEPTH:
            raise BuildError(f"lowering {name} for target {self.kind!r}: the rules' results "
                             f"still hold calls that rules rewrite after {MAX_DEPTH} rounds "
                             f"({result}); does a rule make the call it lowers?")
        self.depth += 1
        try:
            return self.rewrite(result)
        finally:
            self.depth -= 1


def _rule_name(rule) -> str:
    return getattr(rule, "__qualname__", None) or repr(rule)
