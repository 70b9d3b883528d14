"""Declared intrinsics and the user's rules for lowering math calls, per target.

TVM keeps attributes on its operators; tex keeps the two that TE programs set:

* `register_op_attr("tir.mylog", "TCallEffectKind", CallEffectKind.Pure)`
  declares a new intrinsic, which `tex.tir.call_intrin(dtype, "tir.mylog", x)`
  then calls (an `OpCall`: it has no code until a rule gives it some);
* `register_intrin_lowering("tir.exp", target="cuda", f=rule, level=10)` (or
  `register_op_attr("tir.exp", "cuda.FLowerIntrinsic", rule, level)`) gives a
  rule for building for that target: `rule(call)` sees the call (`call.op.name`,
  `call.dtype`, `call.args`) and returns the expression to use instead, or the
  call itself to keep it. Rules apply to tex's math intrinsics (`tex.exp` is
  "tir.exp") and to declared ones; target is "llvm", "cuda", or "default" for
  both (a rule for the target itself is tried first).

Building a schedule applies the rules before vectorization, so a rule sees
scalar calls; a program lowered without a target and built later
(`build(tex.lower(s, args), "llvm")`) shows them the calls as they are then,
vectors in vectorized loops (`call.dtype == "float32x8"`).

A rule replaces the one registered for the same operator and target unless
that one has a higher level (then the new rule is ignored, as in TVM). The
pass that applies the rules is `tex.passes.lower_intrinsics`; this module is
only the table, which the user fills and `build` reads (the rules' version is
part of every kernel's cache key).
"""
from __future__ import annotations

import enum
import itertools
from typing import Callable

from tex.errors import ExprError

#: The targets a rule may be registered for ("default": every target, after its own rule).
TARGETS = ("llvm", "cuda", "default")


class CallEffectKind(enum.IntEnum):
    """What a call does besides returning its value. TVM: `tir.CallEffectKind`."""

    ExprAnnotation = 0
    Pure = 1
    ReadState = 2
    UpdateState = 3
    Opaque = 4


_declared: dict[str, CallEffectKind] = {}
_rules: dict[tuple[str, str], tuple[int, Callable]] = {}  # (op, target) -> (level, rule)
_versions = itertools.count(1)
_version = 0


def register_op_attr(op_name: str, attr_key: str, value=None, level: int = 10):
    """Set the attribute `attr_key` of the operator `op_name`: "TCallEffectKind" (a
    `CallEffectKind`) declares an intrinsic; "<target>.FLowerIntrinsic" registers a
    lowering rule (as `register_intrin_lowering`). Without `value`, a decorator.
    TVM: `tvm.ir.register_op_attr`."""
    if value is None:
        return lambda f: register_op_attr(op_name, attr_key, f, level) or f
    _check_name(op_name)
    if attr_key == "TCallEffectKind":
        if not isinstance(value, CallEffectKind):
            raise ExprError(f"register_op_attr {op_name}: TCallEffectKind must be a "
                            f"tex.tir.CallEffectKind, got {value!r}")
        _declared[op_name] = value
    elif attr_key.endswith(".FLowerIntrinsic"):
        register_intrin_lowering(op_name, attr_key.split(".")[0], f=value, level=level)
    else:
        raise ExprError(f"register_op_attr {op_name}: tex keeps the attributes "
                        f"'TCallEffectKind' and '<target>.FLowerIntrinsic', got {attr_key!r}")
    return None


def register_intrin_lowering(op_name: str, target: str, *, f: Callable | None = None,
                             level: int = 10):
    """Register `f` as the rule lowering calls of `op_name` ("tir.exp") when building for
    `target` ("llvm", "cuda" or "default"). Without `f`, a decorator.
    TVM: `tvm.ir.register_intrin_lowering`."""
    if f is None:
        return lambda rule: register_intrin_lowering(op_name, target, f=rule, level=level) or rule
    _check_name(op_name)
    if target not in TARGETS:
        raise ExprError(f"register_intrin_lowering {op_name}: target must be one of "
                        f"{', '.join(TARGETS)} (the kinds tex builds for), got {target!r}")
    if not callable(f):
        raise ExprError(f"register_intrin_lowering {op_name}: f must be a function of the "
                        f"call, got {f!r}")
    if not isinstance(level, int):
        raise ExprError(f"register_intrin_lowering {op_name}: level must be an int, got "
                        f"{level!r}")
    current = _rules.get((op_name, target))
    if current is not None and current[0] > level:
        return None
    global _version
    _rules[(op_name, target)] = (level, f)
    _version = next(_versions)
    return None


def _check_name(op_name):
    if not isinstance(op_name, str) or not op_name:
        raise ExprError(f"an operator name such as 'tir.exp' is expected, got {op_name!r}")


def declared_any() -> bool:
    """Whether any intrinsic was declared (`register_op_attr`)."""
    return bool(_declared)


def effect_kind(op_name: str) -> CallEffectKind | None:
    """The effect kind `op_name` was declared with (None: not declared)."""
    return _declared.get(op_name)


def rules_for(target: str) -> dict[str, tuple[Callable, ...]]:
    """The rules of each operator that has some for `target`: its own, then the default."""
    found: dict[str, tuple[Callable, ...]] = {}
    for kind in (target, "default"):
        for (op, rule_kind), (_, rule) in _rules.items():
            if rule_kind == kind:
                found[op] = found.get(op, ()) + (rule,)
    return found


def version() -> int:
    """A number that changes whenever a rule is registered (0: none ever was)."""
    return _version
