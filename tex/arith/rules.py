"""The algebraic rewrite rules `RULES` and the matcher that applies them.

Each `Rule` is one line, `lhs -> rhs` under an optional condition on its
constants; rules need no variable ranges. Guarantees: `_apply_rules(e)` is
None or an expression of `e`'s dtype equal to `e` for every value of its
variables (tests/test_arith.py checks every rule on random integers), and
rules are tried in table order, the first that applies winning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tex import ops
from tex.arith.interval import _is_index
from tex.dtype import bool_
from tex.expr import Binary, Compare, Const, Expr, Logical, Not, Select, Var, structurally_equal
from tex.visitor import child_fields


@dataclass(frozen=True, eq=False)
class Rule:
    """The rewrite `lhs -> rhs`, allowed where `when(**constants)` holds.

    Patterns are ordinary expressions over wildcard variables: a bool variable
    matches any scalar bool expression, a variable named `c...` matches an
    integer constant, any other variable a scalar signed-integer expression.
    `when` takes the constant wildcards it names, as ints.
    """

    lhs: Expr
    rhs: Expr
    when: Callable[..., bool] | None = None

    def __post_init__(self):
        object.__setattr__(self, "rhs", ops.as_expr(self.rhs))

    def allows(self, constants: dict[str, int]) -> bool:
        if self.when is None:
            return True
        code = self.when.__code__
        return bool(self.when(**{n: constants[n] for n in code.co_varnames[:code.co_argcount]}))


def _rules() -> list[Rule]:
    x, y, z = Var("x"), Var("y"), Var("z")
    c1, c2 = Var("c1"), Var("c2")
    p, q = Var("p", bool_), Var("q", bool_)
    mn, mx, sel = ops.minimum, ops.maximum, ops.if_then_else
    return [
        # floordiv / floormod by constants (sums are split by _Simplifier._divmod)
        Rule(x // c1 // c2, x // (c1 * c2), lambda c1, c2: c1 > 0 and c2 > 0),
        Rule(x * c1 // c2, x * (c1 // c2), lambda c1, c2: c2 > 0 and c1 % c2 == 0),
        Rule(x * c1 // c2, x // (c2 // c1), lambda c1, c2: c1 > 0 and c2 > 0 and c2 % c1 == 0),
        Rule(x * c1 % c2, 0, lambda c1, c2: c2 != 0 and c1 % c2 == 0),
        Rule(x % c1 % c2, x % c2, lambda c1, c2: c1 != 0 and c2 > 0 and c1 % c2 == 0),
        Rule(x % c1 // c1, 0, lambda c1: c1 != 0),
        Rule(x % 1, 0),
        Rule(x // c1 < c2, x < c2 * c1, lambda c1: c1 > 0),
        Rule(x // c1 >= c2, x >= c2 * c1, lambda c1: c1 > 0),
        # min / max
        Rule(mn(x, x), x),
        Rule(mx(x, x), x),
        Rule(mn(c1, x), mn(x, c1)),
        Rule(mx(c1, x), mx(x, c1)),
        Rule(mn(mn(x, c1), c2), mn(x, mn(c1, c2))),
        Rule(mx(mx(x, c1), c2), mx(x, mx(c1, c2))),
        Rule(mn(mn(x, y), x), mn(x, y)),
        Rule(mn(mn(x, y), y), mn(x, y)),
        Rule(mx(mx(x, y), x), mx(x, y)),
        Rule(mx(mx(x, y), y), mx(x, y)),
        Rule(mn(x, mx(x, y)), x),
        Rule(mn(x, mx(y, x)), x),
        Rule(mn(mx(x, y), x), x),
        Rule(mn(mx(y, x), x), x),
        Rule(mx(x, mn(x, y)), x),
        Rule(mx(x, mn(y, x)), x),
        Rule(mx(mn(x, y), x), x),
        Rule(mx(mn(y, x), x), x),
        Rule(mn(x * c1, y * c1), mn(x, y) * c1, lambda c1: c1 > 0),
        Rule(mx(x * c1, y * c1), mx(x, y) * c1, lambda c1: c1 > 0),
        # logic
        Rule(p & p, p),
        Rule(p | p, p),
        Rule(p & ~p, False),
        Rule(~p & p, False),
        Rule(p | ~p, True),
        Rule(~p | p, True),
        Rule(p & (p | q), p),
        Rule((p | q) & p, p),
        Rule(p | (p & q), p),
        Rule((p & q) | p, p),
        Rule(~~p, p),
        Rule(~(x < y), y <= x),
        Rule(~(x <= y), y < x),
        Rule(~(x > y), x <= y),
        Rule(~(x >= y), x < y),
        Rule(~(x == y), x != y),
        Rule(~(x != y), x == y),
        Rule((x < c1) & (x < c2), x < mn(c1, c2)),
        Rule((x < c1) | (x < c2), x < mx(c1, c2)),
        Rule((x > c1) & (x > c2), x > mx(c1, c2)),
        Rule((x > c1) | (x > c2), x > mn(c1, c2)),
        Rule((x < c1) & (x > c2), False, lambda c1, c2: c1 <= c2 + 1),
        Rule((x > c2) & (x < c1), False, lambda c1, c2: c1 <= c2 + 1),
        # select
        Rule(sel(p, x, x), x),
        Rule(sel(~p, x, y), sel(p, y, x)),
        Rule(sel(p, sel(p, x, y), z), sel(p, x, z)),
        Rule(sel(p, x, sel(p, y, z)), sel(p, x, z)),
        Rule(sel(p, True, False), p),
        Rule(sel(p, False, True), ~p),
    ]


#: The algebraic rewrite rules (no ranges needed), each checked by tests/test_arith.py.
RULES: tuple[Rule, ...] = tuple(_rules())


def _rule_key(e: Expr):
    return type(e), getattr(e, "op", None)


_RULES_BY_ROOT: dict = {}
for _rule in RULES:
    _RULES_BY_ROOT.setdefault(_rule_key(_rule.lhs), []).append(_rule)


def _wildcard_accepts(w: Var, e: Expr) -> bool:
    if w.dtype.is_bool:
        return e.dtype == bool_
    if w.name.startswith("c"):
        return isinstance(e, Const) and _is_index(e)
    return _is_index(e)


def _match(pattern: Expr, e: Expr, env: dict) -> bool:
    """Bind the wildcards of `pattern` so that it equals `e`; False if impossible."""
    if isinstance(pattern, Var):
        if pattern in env:
            return structurally_equal(env[pattern], e)
        if not _wildcard_accepts(pattern, e):
            return False
        env[pattern] = e
        return True
    if isinstance(pattern, Const):
        return (isinstance(e, Const) and e.dtype.kind == pattern.dtype.kind
                and e.dtype.lanes == 1 and e.value == pattern.value)
    if type(pattern) is not type(e) or getattr(pattern, "op", None) != getattr(e, "op", None):
        return False
    return all(_match(getattr(pattern, f), getattr(e, f), env) for f in child_fields(type(e)))


_BUILD = {Binary: ops.binary, Compare: ops.compare, Logical: ops.logical}


def _instantiate(pattern: Expr, env: dict):
    """`pattern` with wildcards replaced; literals adopt their neighbour's dtype."""
    if isinstance(pattern, Var):
        return env[pattern]
    if isinstance(pattern, Const):
        return pattern.value
    if isinstance(pattern, Not):
        return ops.logical_not(_instantiate(pattern.a, env))
    if isinstance(pattern, Select):
        return ops.if_then_else(*(_instantiate(getattr(pattern, f), env)
                                  for f in ("cond", "true_value", "false_value")))
    return _BUILD[type(pattern)](pattern.op, _instantiate(pattern.a, env),
                                 _instantiate(pattern.b, env))


def _apply_rules(e: Expr) -> Expr | None:
    """The first rule rewrite of `e`'s root, or None when no rule applies."""
    for rule in _RULES_BY_ROOT.get(_rule_key(e), ()):
        env = {}
        if not _match(rule.lhs, e, env):
            continue
        constants = {w.name: v.value for w, v in env.items() if w.name.startswith("c")}
        if not rule.allows(constants):
            continue
        result = ops.as_expr(_instantiate(rule.rhs, env), e.dtype)
        if result.dtype == e.dtype:
            return result
    return None
