"""Index arithmetic: evaluation, interval analysis and a simplifier.

Lowering writes indices such as `(i_outer*32 + i_inner) // 32` and guards
such as `i_outer*32 + i_inner < n`; this module proves what it can about them
and rewrites them into the short forms that readers and codegen want.

* `evaluate` computes a scalar expression for given variable values with
  tex's semantics (floor division, C-like integer wrap, float32 rounding).
* `bound` gives an `Interval` holding every value an integer expression takes
  while its variables stay within their ranges.
* `simplify` rewrites an expression into an equal, canonical one. Algebraic
  identities are the rule table `RULES`; sums are normalised as linear forms
  `sum(coef*atom) + const`; division, min/max and comparisons are decided from
  intervals where the ranges allow.

Assumptions: integer index arithmetic never overflows. Only scalar signed
integer and bool expressions are rewritten; floats and unsigned integers are
only constant-folded (never reassociated). Vector `Ramp`/`Broadcast`
arithmetic is pushed into its scalar parts.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tex import ops
from tex.dtype import DType, INDEX, bool_
from tex.expr import (Binary, Call, Cast, Compare, Const, Expr, Let, Logical, Not, Select, Var,
                      _int_range, structurally_equal)
from tex.ir import Broadcast, Ramp
from tex.visitor import Rewriter, child_fields, substitute

_COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
            "gt": operator.gt, "ge": operator.ge}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
_OTHER = {"min": "max", "max": "min"}
_MAX_DEPTH = 60  # nested re-simplifications; a safety net, rules terminate on their own


def _is_index(e: Expr) -> bool:
    """A scalar signed integer: the expressions whose arithmetic is reasoned about."""
    return e.dtype.kind == "int" and e.dtype.lanes == 1


def _fits(value: int, dtype: DType) -> bool:
    lo, hi = _int_range(dtype)
    return lo <= value <= hi


# --- intervals -------------------------------------------------------------------------

def _as_bound(value) -> Expr | None:
    return value if value is None or isinstance(value, Expr) else Const(INDEX, int(value))


@dataclass(frozen=True, eq=False, slots=True)
class Interval:
    """The inclusive range `[lo, hi]` of an integer expression; None is an open end.

    Bounds are expressions, possibly over variables left symbolic; ints are
    accepted and become int64 constants, so `Interval(0, n - 1)` reads as written.
    """

    lo: Expr | None
    hi: Expr | None

    def __post_init__(self):
        object.__setattr__(self, "lo", _as_bound(self.lo))
        object.__setattr__(self, "hi", _as_bound(self.hi))

    @staticmethod
    def point(e) -> Interval:
        e = ops.as_expr(e)
        return Interval(e, e)

    @staticmethod
    def everything() -> Interval:
        return Interval(None, None)

    @staticmethod
    def from_extent(min_, extent) -> Interval:
        """The values of a loop variable running over `[min_, min_ + extent)`."""
        lo = ops.as_expr(min_)
        return Interval(lo, simplify(lo + extent - 1))

    @property
    def const_lo(self) -> int | None:
        return self.lo.value if isinstance(self.lo, Const) else None

    @property
    def const_hi(self) -> int | None:
        return self.hi.value if isinstance(self.hi, Const) else None

    @property
    def is_const(self) -> bool:
        return self.const_lo is not None and self.const_hi is not None

    @property
    def is_point(self) -> bool:
        return self.lo is not None and structurally_equal(self.lo, self.hi)

    def __eq__(self, other):
        return (isinstance(other, Interval) and structurally_equal(self.lo, other.lo)
                and structurally_equal(self.hi, other.hi))

    def __hash__(self):
        return hash((self.lo, self.hi))

    def __str__(self):
        lo = "-inf" if self.lo is None else str(self.lo)
        return f"[{lo}, {'inf' if self.hi is None else self.hi}]"

    __repr__ = __str__


# --- evaluation ------------------------------------------------------------------------

_INT_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "min": min,
            "max": max, "floordiv": operator.floordiv, "floormod": operator.mod}
_FLOAT_OPS = {**_INT_OPS, "div": operator.truediv, "floordiv": np.floor_divide,
              "floormod": np.mod}
_CALLS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda v: 1.0 / np.sqrt(v),
          "tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "erf": math.erf,
          "abs": abs, "floor": np.floor, "ceil": np.ceil, "pow": np.power}


def evaluate(expr: Expr, env: dict):
    """The value of the scalar `expr`, `env` giving each free variable's value.

    Semantics match compiled tex code: `//` and `%` floor (`-7 // 2 == -4`),
    integer results wrap to their dtype like C, float-to-int casts truncate
    toward zero, float results round to their dtype (float32 through NumPy),
    and `select` evaluates only the side it picks. Raises KeyError for a
    variable missing from `env`, ZeroDivisionError for an integer division by
    zero, TypeError for a node that is not a scalar expression.
    """
    e = expr
    if e.dtype.lanes != 1:
        raise TypeError(f"evaluate: {e} is a vector of {e.dtype}; only scalars evaluate")
    if isinstance(e, Const):
        return _convert(e.value, e.dtype)
    if isinstance(e, Var):
        if e not in env:
            raise KeyError(f"evaluate: no value given for variable {e.name!r}")
        return _convert(env[e], e.dtype)
    if isinstance(e, Binary):
        return _binary_value(e.op, evaluate(e.a, env), evaluate(e.b, env), e.dtype)
    if isinstance(e, Compare):
        return bool(_COMPARE[e.op](evaluate(e.a, env), evaluate(e.b, env)))
    if isinstance(e, Logical):
        a = evaluate(e.a, env)
        return (a and evaluate(e.b, env)) if e.op == "and" else (a or evaluate(e.b, env))
    if isinstance(e, Not):
        return not evaluate(e.a, env)
    if isinstance(e, Select):
        return evaluate(e.true_value if evaluate(e.cond, env) else e.false_value, env)
    if isinstance(e, Cast):
        return _convert(evaluate(e.value, env), e.dtype)
    if isinstance(e, Call):
        return _call_value(e, [evaluate(a, env) for a in e.args])
    if isinstance(e, Let):
        return evaluate(e.body, {**env, e.var: evaluate(e.value, env)})
    raise TypeError(f"evaluate: cannot evaluate a {type(e).__name__} ({e})")


def _binary_value(op: str, a, b, dtype: DType):
    if dtype.is_float:
        with np.errstate(all="ignore"):
            return _round_float(_FLOAT_OPS[op](np.float64(a), np.float64(b)), dtype)
    return _wrap(_INT_OPS[op](a, b), dtype)


def _call_value(e: Call, args):
    if not e.dtype.is_float:
        return _wrap(abs(args[0]), e.dtype)
    with np.errstate(all="ignore"):
        return _round_float(_CALLS[e.name](*(np.float64(a) for a in args)), e.dtype)


def _convert(value, dtype: DType):
    """`value` as a Python value of `dtype`, converted like a C cast."""
    if dtype.is_bool:
        return bool(value)
    if dtype.is_float:
        return _round_float(value, dtype)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"evaluate: cannot convert {value} to {dtype}")
        value = math.trunc(value)
    return _wrap(int(value), dtype)


def _round_float(value, dtype: DType) -> float:
    return float(value) if dtype.bits == 64 else float(np.float64(value).astype(dtype.numpy))


def _wrap(value: int, dtype: DType) -> int:
    bits = dtype.bits
    value &= (1 << bits) - 1
    return value - (1 << bits) if dtype.kind == "int" and value >> (bits - 1) else value


# --- linear forms ----------------------------------------------------------------------

class _Key:
    """An expression as a dict key, compared structurally (variables by identity)."""

    __slots__ = ("expr", "_hash")

    def __init__(self, expr: Expr):
        self.expr = expr
        self._hash = hash(expr)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return structurally_equal(self.expr, other.expr)


@dataclass
class _Linear:
    """`sum(coef * atom) + const`; atoms keep first-appearance order, no zero coefs."""

    terms: dict
    const: int = 0

    def plus(self, other: _Linear, scale: int = 1) -> _Linear:
        terms = dict(self.terms)
        for key, coef in other.terms.items():
            total = terms.get(key, 0) + coef * scale
            if total:
                terms[key] = total
            else:
                terms.pop(key, None)
        return _Linear(terms, self.const + other.const * scale)

    def scaled(self, k: int) -> _Linear:
        if k == 0:
            return _Linear({}, 0)
        return _Linear({key: c * k for key, c in self.terms.items()}, self.const * k)


def _linear(e: Expr) -> _Linear:
    """The linear form of an index expression, looking through + - and * by constants."""
    if isinstance(e, Const):
        return _Linear({}, e.value)
    if isinstance(e, Binary):
        if e.op in ("add", "sub"):
            return _linear(e.a).plus(_linear(e.b), 1 if e.op == "add" else -1)
        if e.op == "mul" and isinstance(e.b, Const):
            return _linear(e.a).scaled(e.b.value)
        if e.op == "mul" and isinstance(e.a, Const):
            return _linear(e.b).scaled(e.a.value)
    return _Linear({_Key(e): 1}, 0)


def _from_linear(lin: _Linear, dtype: DType) -> Expr | None:
    """`lin` as an expression: positive terms, then negative ones, then the constant.

    None when a coefficient does not fit `dtype`.
    """
    values = [abs(c) for c in lin.terms.values()] + [lin.const, -lin.const]
    if not all(_fits(v, dtype) for v in values):
        return None

    def term(atom, k):
        return atom if k == 1 else Binary("mul", atom, Const(dtype, k))

    result, const = None, lin.const
    for key, k in lin.terms.items():
        if k > 0:
            t = term(key.expr, k)
            result = t if result is None else Binary("add", result, t)
    if result is None:
        result, const = Const(dtype, const), 0
    for key, k in lin.terms.items():
        if k < 0:
            result = Binary("sub", result, term(key.expr, -k))
    if const:
        result = Binary("add" if const > 0 else "sub", result, Const(dtype, abs(const)))
    return result


def _merge_div_mod(lin: _Linear) -> _Linear:
    """`(x // c)*c + x % c` -> `x` and `x - (x // c)*c` -> `x % c`, times any k."""
    for key, k in lin.terms.items():
        e = key.expr
        if not (isinstance(e, Binary) and e.op in ("floordiv", "floormod")
                and isinstance(e.b, Const)):
            continue
        c, x = e.b.value, _Key(e.a)
        if e.op == "floormod":
            div = _Key(Binary("floordiv", e.a, e.b))
            if lin.terms.get(div) == k * c:
                merged = lin.plus(_Linear({key: k, div: k * c}), -1).plus(_linear(e.a), k)
                return _merge_div_mod(merged)
        elif x in lin.terms and k == -lin.terms[x] * c:
            mod = _Linear({_Key(Binary("floormod", e.a, e.b)): lin.terms[x]})
            return _merge_div_mod(lin.plus(_Linear({key: k, x: lin.terms[x]}), -1).plus(mod))
    return lin


# --- the rule table --------------------------------------------------------------------

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


# --- the simplifier --------------------------------------------------------------------

def _fold(e: Expr) -> Expr:
    """`e` with constant operands computed and constant conditions decided."""
    if isinstance(e, Select) and isinstance(e.cond, Const):
        return e.true_value if e.cond.value else e.false_value
    if isinstance(e, Logical) and (isinstance(e.a, Const) or isinstance(e.b, Const)):
        return ops.logical(e.op, e.a, e.b)
    if (isinstance(e, (Binary, Compare, Not, Cast)) and e.dtype.lanes == 1
            and all(isinstance(getattr(e, f), Const) for f in child_fields(type(e)))):
        try:
            return Const(e.dtype, evaluate(e, {}))
        except (ZeroDivisionError, ValueError, OverflowError):
            return e
    return e


class _Simplifier(Rewriter):
    """Bottom-up simplification under one `ranges` map, memoised by node identity."""

    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.memo: dict[int, tuple] = {}
        self.depth = 0
        self._bounder = None

    def rewrite(self, node):
        hit = self.memo.get(id(node))
        if hit is not None:
            return hit[1]
        if isinstance(node, Let):
            result = self._let(node)
        else:
            new = self.generic_rewrite(node)
            result = self._node(new) if isinstance(new, Expr) else new
            if result is not node and structurally_equal(result, node):
                result = node
        self.memo[id(node)] = (node, result)
        return result

    def _node(self, e: Expr) -> Expr:
        """Simplify `e`, whose children are simplified already."""
        e = _fold(e)
        new = _apply_rules(e)
        if new is None:
            new = self._arith(e)
        if new is None or self.depth >= _MAX_DEPTH:
            return e if new is None else new
        self.depth += 1
        try:
            return self.rewrite(new)
        finally:
            self.depth -= 1

    def _arith(self, e: Expr) -> Expr | None:
        """A rewrite from linear forms and intervals, or None."""
        if e.dtype.lanes > 1:
            return _vector(e)
        if isinstance(e, Var) and e in self.ranges:
            r = self.ranges[e]
            return Const(e.dtype, r.const_lo) if r.is_const and r.const_lo == r.const_hi else None
        if isinstance(e, Binary) and _is_index(e):
            if e.op in ("add", "sub", "mul"):
                return self._sum(e)
            if e.op in ("floordiv", "floormod"):
                return self._divmod(e)
            if e.op in ("min", "max"):
                return self._minmax(e)
        if isinstance(e, Compare) and _is_index(e.a):
            return self._compare(e)
        return None

    def _const_bound(self, e: Expr) -> tuple[int | None, int | None]:
        if isinstance(e, Const):
            return e.value, e.value
        if not self.ranges:
            return None, None
        if self._bounder is None:
            self._bounder = _Bounder(self.ranges)
        iv = self._bounder.bound(e)
        return iv.const_lo, iv.const_hi

    def _sum(self, e: Binary) -> Expr | None:
        """Canonical linear form: `(a + 3) + (b - 3)` -> `a + b`, `i*4 + i*2` -> `i*6`."""
        lin = _merge_div_mod(_linear(e))
        new = self._absorb_minmax(lin, e.dtype)
        if new is None:
            new = _from_linear(lin, e.dtype)
        return None if new is None or structurally_equal(new, e) else new

    def _absorb_minmax(self, lin: _Linear, dtype: DType) -> Expr | None:
        """`min(a, b) + rest` -> `min(a + rest, b + rest)` where that cancels terms.

        E.g. `min(io*32 + 32, n) - io*32` -> `min(32, n - io*32)`.
        """
        for key, coef in lin.terms.items():
            m = key.expr
            if coef not in (1, -1) or not (isinstance(m, Binary) and m.op in _OTHER):
                continue
            rest = _Linear({k: c for k, c in lin.terms.items() if k is not key})
            la, lb = _linear(m.a).scaled(coef), _linear(m.b).scaled(coef)
            na, nb = la.plus(rest), lb.plus(rest)
            if len(na.terms) + len(nb.terms) >= len(la.terms) + len(lb.terms) + len(rest.terms):
                continue
            a, b = _from_linear(na, dtype), _from_linear(nb, dtype)
            if a is None or b is None:
                continue
            inner = Binary(m.op if coef == 1 else _OTHER[m.op], a, b)
            return Binary("add", inner, Const(dtype, lin.const)) if lin.const else inner
        return None

    def _divmod(self, e: Binary) -> Expr | None:
        """`//` and `%` by a positive constant c, splitting the dividend's linear form.

        Tries `_divmod_split` with g = c, then with the gcds of c and the
        coefficients; otherwise moves out the part divisible by c:
        `(x*c + y) // c` -> `x + y // c`, `(x*c + y) % c` -> `y % c`.
        """
        if not isinstance(e.b, Const) or e.b.value <= 0:
            return None
        c, lin = e.b.value, _linear(e.a)
        gcds = {math.gcd(c, k) for k in lin.terms.values()} - {1, c}
        for g in [c] + sorted(gcds, reverse=True):
            new = self._divmod_split(e, lin, g)
            if new is not None:
                return new
        moved = lin.const - lin.const % c if lin.const >= c else 0
        m = _Linear({key: k // c for key, k in lin.terms.items() if k % c == 0}, moved // c)
        r = _Linear({key: k for key, k in lin.terms.items() if k % c}, lin.const - moved)
        m_expr, r_expr = _from_linear(m, e.dtype), _from_linear(r, e.dtype)
        if (not m.terms and not m.const) or m_expr is None or r_expr is None:
            return None
        rest = Binary(e.op, r_expr, e.b)
        return rest if e.op == "floormod" else Binary("add", m_expr, rest)

    def _divmod_split(self, e: Binary, lin: _Linear, g: int) -> Expr | None:
        """With `L = g*M + R`, g dividing c, and R provably in `[k*g, (k+1)*g)`:
        `L // c = (M + k) // (c/g)` and `L % c = g*((M + k) % (c/g)) + R - k*g`."""
        c, dtype = e.b.value, e.dtype
        m = _Linear({key: k // g for key, k in lin.terms.items() if k % g == 0})
        r = _Linear({key: k for key, k in lin.terms.items() if k % g}, lin.const)
        r_expr = _from_linear(r, dtype)
        lo, hi = self._const_bound(r_expr) if r_expr is not None else (None, None)
        if lo is None or hi is None or lo // g != hi // g:
            return None
        k = lo // g
        mk = _from_linear(m.plus(_Linear({}, k)), dtype)
        rem = _from_linear(r.plus(_Linear({}, -k * g)), dtype)
        if mk is None or rem is None:
            return None
        if g == c:
            return mk if e.op == "floordiv" else rem
        periods = Const(dtype, c // g)
        if e.op == "floordiv":
            return Binary("floordiv", mk, periods)
        return Binary("add", Binary("mul", Binary("floormod", mk, periods), Const(dtype, g)), rem)

    def _minmax(self, e: Binary) -> Expr | None:
        """min/max decided when the interval of `a - b` has a known sign."""
        diff = _from_linear(_linear(e.a).plus(_linear(e.b), -1), e.dtype)
        lo, hi = self._const_bound(diff) if diff is not None else (None, None)
        if hi is not None and hi <= 0:
            return e.a if e.op == "min" else e.b
        if lo is not None and lo >= 0:
            return e.b if e.op == "min" else e.a
        return None

    def _compare(self, e: Compare) -> Expr | None:
        """Decide `a op b` from the interval of `a - b`, else move terms: `x + 3 < 5` -> `x < 2`."""
        d = _linear(e.a).plus(_linear(e.b), -1)
        diff = _from_linear(d, e.a.dtype)
        lo, hi = self._const_bound(diff) if diff is not None else (None, None)
        decided = _decide(e.op, -math.inf if lo is None else lo, math.inf if hi is None else hi)
        if decided is not None:
            return Const(bool_, decided)
        d = _divide_by_gcd(e.op, d)
        if isinstance(d, bool):
            return Const(bool_, d)
        pos = _Linear({k: c for k, c in d.terms.items() if c > 0})
        neg = _Linear({k: -c for k, c in d.terms.items() if c < 0})
        if pos.terms:
            lhs, rhs, op = pos, neg.plus(_Linear({}, -d.const)), e.op
        else:
            lhs, rhs, op = neg, _Linear({}, d.const), _FLIP[e.op]
        a, b = _from_linear(lhs, e.a.dtype), _from_linear(rhs, e.a.dtype)
        if a is None or b is None:
            return None
        new = Compare(op, a, b)
        return None if structurally_equal(new, e) else new

    def _let(self, e: Let) -> Expr:
        value = self.rewrite(e.value)
        if isinstance(value, (Const, Var)):
            return self.rewrite(substitute(e.body, {e.var: value}))
        ranges = self.ranges
        if _is_index(value):
            ranges = {**ranges, e.var: bound(value, ranges)}
        body = _Simplifier(ranges).rewrite(e.body)
        return e if value is e.value and body is e.body else Let(e.var, value, body)


#: op -> (holds when a - b lies in [lo, hi], fails when it lies there)
_DECISIONS = {
    "lt": (lambda lo, hi: hi < 0, lambda lo, hi: lo >= 0),
    "le": (lambda lo, hi: hi <= 0, lambda lo, hi: lo > 0),
    "gt": (lambda lo, hi: lo > 0, lambda lo, hi: hi <= 0),
    "ge": (lambda lo, hi: lo >= 0, lambda lo, hi: hi < 0),
    "eq": (lambda lo, hi: lo == hi == 0, lambda lo, hi: lo > 0 or hi < 0),
    "ne": (lambda lo, hi: lo > 0 or hi < 0, lambda lo, hi: lo == hi == 0),
}


def _decide(op: str, lo, hi) -> bool | None:
    """True/False when `d op 0` holds/fails for every d in [lo, hi]; None when unknown."""
    holds, fails = _DECISIONS[op]
    return True if holds(lo, hi) else False if fails(lo, hi) else None


def _divide_by_gcd(op: str, d: _Linear) -> _Linear | bool:
    """`d op 0` with d's coefficients divided by their gcd: `x*2 - 8 < 0` -> `x - 4 < 0`.

    A bool when the division decides it (`x*4 - 6 == 0` is False).
    """
    g = math.gcd(*d.terms.values())
    if g == 1:
        return d
    if op in ("eq", "ne") and d.const % g:
        return op == "ne"
    # lt/ge round the constant down, le/gt up (eq/ne divide exactly)
    const = d.const // g if op in ("lt", "ge", "eq", "ne") else -(-d.const // g)
    return _Linear({key: c // g for key, c in d.terms.items()}, const)


def _vector(e: Expr) -> Expr | None:
    """Push arithmetic on Ramp/Broadcast into their scalar parts."""
    if isinstance(e, Ramp) and isinstance(e.stride, Const) and e.stride.value == 0:
        return Broadcast(e.base, e.lanes)
    if not isinstance(e, (Binary, Compare)):
        return None
    a, b = e.a, e.b
    if isinstance(a, Broadcast) and isinstance(b, Broadcast):
        return Broadcast(type(e)(e.op, a.value, b.value), a.lanes)
    if not isinstance(e, Binary) or e.dtype.kind != "int":
        return None
    vectors = (Ramp, Broadcast)
    if e.op in ("add", "sub") and isinstance(a, vectors) and isinstance(b, vectors):
        (base_a, stride_a), (base_b, stride_b) = _ramp_parts(a), _ramp_parts(b)
        return Ramp(Binary(e.op, base_a, base_b), Binary(e.op, stride_a, stride_b), e.dtype.lanes)
    if e.op == "mul":
        for r, s in ((a, b), (b, a)):
            if isinstance(r, Ramp) and isinstance(s, Broadcast):
                scale = s.value
                return Ramp(Binary("mul", r.base, scale), Binary("mul", r.stride, scale), r.lanes)
    return None


def _ramp_parts(v: Expr) -> tuple[Expr, Expr]:
    """(base, stride) of a Ramp, or of a Broadcast seen as a ramp of stride 0."""
    if isinstance(v, Ramp):
        return v.base, v.stride
    return v.value, Const(v.value.dtype, 0)


# --- interval analysis -----------------------------------------------------------------

def _children(e: Expr):
    for name in child_fields(type(e)):
        value = getattr(e, name)
        if isinstance(value, tuple):
            yield from value
        elif value is not None:
            yield value


def _const_point(iv: Interval) -> int | None:
    lo = iv.const_lo
    return lo if lo is not None and lo == iv.const_hi else None


def _at_least(iv: Interval, value: int) -> bool:
    return iv.const_lo is not None and iv.const_lo >= value


def _widens(src: DType, dst: DType) -> bool:
    """Whether every value of integer dtype `src` is a value of `dst`."""
    if src.kind == dst.kind:
        return dst.bits >= src.bits
    return src.kind == "uint" and dst.kind == "int" and dst.bits > src.bits


class _Bounder:
    """Interval analysis under one `ranges` map; endpoints are simplified expressions.

    A variable with a range is replaced by its range, relaxed in turn (a
    variable met again while its own range is being relaxed is unbounded);
    every other variable stays symbolic. Results are memoised by node identity.
    """

    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.plain = _Simplifier({})
        self.memo: dict[int, tuple] = {}
        self.uses: dict[int, tuple] = {}
        self.relaxing: set = set()
        self.cycle = False

    def bound(self, e: Expr) -> Interval:
        hit = self.memo.get(id(e))
        if hit is not None:
            return hit[1]
        iv = self._bound(e)
        if not self.cycle:
            self.memo[id(e)] = (e, iv)
        return iv

    def _uses_ranged(self, e: Expr) -> bool:
        if isinstance(e, Var):
            return e in self.ranges
        hit = self.uses.get(id(e))
        if hit is None:
            hit = (e, any(self._uses_ranged(c) for c in _children(e)))
            self.uses[id(e)] = hit
        return hit[1]

    def _bound(self, e: Expr) -> Interval:
        if isinstance(e, Var) and e in self.ranges:
            return self._var(e)
        if not self._uses_ranged(e):
            return Interval.point(self.plain.rewrite(e))
        if isinstance(e, Binary) and _is_index(e):
            return getattr(self, "_" + e.op)(self.bound(e.a), self.bound(e.b))
        if isinstance(e, Select) and _is_index(e):
            return self._union(self.bound(e.true_value), self.bound(e.false_value))
        if isinstance(e, Cast) and e.dtype.is_int and e.dtype.lanes == 1:
            return self._cast(e)
        if isinstance(e, Broadcast):
            return self.bound(e.value)
        if isinstance(e, Ramp):
            last = ops.binary("add", e.base, ops.binary("mul", e.stride, e.lanes - 1))
            return self._union(self.bound(e.base), self.bound(last))
        if isinstance(e, Let) and _is_index(e):
            inner = {**self.ranges, e.var: self.bound(e.value)}
            return _Bounder(inner).bound(e.body)
        return Interval.everything()

    def _var(self, v: Var) -> Interval:
        if v in self.relaxing:
            self.cycle = True
            return Interval.everything()
        r = self.ranges[v]
        self.relaxing.add(v)
        try:
            lo = None if r.lo is None else self.bound(r.lo).lo
            hi = None if r.hi is None else self.bound(r.hi).hi
        finally:
            self.relaxing.discard(v)
        return Interval(lo, hi)

    def _op(self, op: str, a, b) -> Expr | None:
        """`a op b` simplified, None (unbounded) if either is None."""
        if a is None or b is None:
            return None
        return self.plain.rewrite(ops.binary(op, a, b))

    def _add(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("add", a.lo, b.lo), self._op("add", a.hi, b.hi))

    def _sub(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("sub", a.lo, b.hi), self._op("sub", a.hi, b.lo))

    def _mul(self, a: Interval, b: Interval) -> Interval:
        for x, y in ((a, b), (b, a)):
            c = _const_point(y)
            if c == 0:
                return Interval(0, 0)
            if c is not None:
                lo, hi = self._op("mul", x.lo, c), self._op("mul", x.hi, c)
                return Interval(lo, hi) if c > 0 else Interval(hi, lo)
        if a.is_const and b.is_const:
            corners = [i * j for i in (a.const_lo, a.const_hi) for j in (b.const_lo, b.const_hi)]
            return Interval(min(corners), max(corners))
        if _at_least(a, 0) and _at_least(b, 0):
            return Interval(self._op("mul", a.lo, b.lo), self._op("mul", a.hi, b.hi))
        return Interval.everything()

    def _floordiv(self, a: Interval, b: Interval) -> Interval:
        c = _const_point(b)
        if c is not None and c != 0:
            lo, hi = self._op("floordiv", a.lo, c), self._op("floordiv", a.hi, c)
            return Interval(lo, hi) if c > 0 else Interval(hi, lo)
        if _at_least(b, 1) and _at_least(a, 0):
            return Interval(0, self._op("floordiv", a.hi, b.lo))
        return Interval.everything()

    def _floormod(self, a: Interval, b: Interval) -> Interval:
        """`[0, c-1]`, or `[lo % c, hi % c]` when the operand stays within one period."""
        c = _const_point(b)
        if c is not None and c > 0:
            if a.lo is not None and a.hi is not None and structurally_equal(
                    self._op("floordiv", a.lo, c), self._op("floordiv", a.hi, c)):
                return Interval(self._op("floormod", a.lo, c), self._op("floormod", a.hi, c))
            hi = Const(INDEX, c - 1)
        elif c is not None and c < 0:
            return Interval(c + 1, 0)
        elif _at_least(b, 1):
            hi = self._op("sub", b.hi, 1)
        else:
            return Interval.everything()
        if _at_least(a, 0) and a.hi is not None:
            hi = a.hi if hi is None else self._op("min", a.hi, hi)
        return Interval(0, hi)

    def _min(self, a: Interval, b: Interval) -> Interval:
        hi = b.hi if a.hi is None else a.hi if b.hi is None else self._op("min", a.hi, b.hi)
        return Interval(self._op("min", a.lo, b.lo), hi)

    def _max(self, a: Interval, b: Interval) -> Interval:
        lo = b.lo if a.lo is None else a.lo if b.lo is None else self._op("max", a.lo, b.lo)
        return Interval(lo, self._op("max", a.hi, b.hi))

    def _union(self, a: Interval, b: Interval) -> Interval:
        return Interval(self._op("min", a.lo, b.lo), self._op("max", a.hi, b.hi))

    def _cast(self, e: Cast) -> Interval:
        src, dst = e.value.dtype, e.dtype
        if src.is_bool:
            return Interval(Const(dst, 0), Const(dst, 1))
        if src.is_int:
            inner = self.bound(e.value)
            if _widens(src, dst):
                lo, hi = (None if x is None else self.plain.rewrite(ops.cast(dst, x))
                          for x in (inner.lo, inner.hi))
                return Interval(lo, hi)
            if inner.is_const and _fits(inner.const_lo, dst) and _fits(inner.const_hi, dst):
                return Interval(Const(dst, inner.const_lo), Const(dst, inner.const_hi))
        lo, hi = _int_range(dst)
        return Interval(Const(dst, lo), Const(dst, hi))


# --- the public functions --------------------------------------------------------------

def _as_ranges(ranges) -> dict:
    return {v: r if isinstance(r, Interval) else Interval(*r) for v, r in (ranges or {}).items()}


def simplify(expr: Expr, ranges: dict | None = None) -> Expr:
    """An expression equal to `expr` wherever its variables lie in `ranges`, in canonical form.

    `ranges` maps variables to `Interval`s (or `(lo, hi)` pairs); bounds may
    mention other variables. The dtype never changes, and `expr` itself comes
    back when nothing simplifies. What it does: constant folding; the
    algebraic `RULES`; sums as linear forms (`(io*32 + ii) - io*32` -> `ii`);
    `//` and `%` by positive constants split by ranges (`(io*32 + ii) // 32`
    -> `io` for ii in [0, 31]); min/max and comparisons decided by intervals;
    Ramp/Broadcast arithmetic pushed into scalars. Floats only fold.
    """
    return _Simplifier(_as_ranges(ranges)).rewrite(expr)


def bound(expr: Expr, ranges: dict | None = None) -> Interval:
    """An interval holding every value of integer `expr` while variables stay in `ranges`.

    Variables in `ranges` are relaxed to their (recursively relaxed) ranges;
    others stay symbolic, so bounds may mention them. Endpoints are simplified;
    an end that cannot be bounded soundly is None.
    """
    ranges = _as_ranges(ranges)
    return _Bounder(ranges).bound(simplify(expr, ranges))


def const_bound(expr: Expr, ranges: dict | None = None) -> tuple[int | None, int | None]:
    """Constant lower and upper bounds of `expr` (None where not constant)."""
    iv = bound(expr, ranges)
    return iv.const_lo, iv.const_hi


def prove(cond: Expr, ranges: dict | None = None) -> bool:
    """True only if the bool `cond` provably holds wherever variables lie in `ranges`."""
    result = simplify(cond, ranges)
    return isinstance(result, Const) and result.value is True
