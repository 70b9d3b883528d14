"""tex.arith: each rule checked on random integers, the simplifier and the
interval analysis checked against `evaluate` on random expressions, and
before/after cases in printed form (one concept per test)."""
import random
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tex import ops
from tex.arith import RULES, Interval, bound, const_bound, evaluate, prove, simplify
from tex.dtype import INDEX, bool_, float32, int8, int32
from tex.expr import Binary, Cast, Const, Let, Var, structurally_equal
from tex.ir import Broadcast, Ramp
from tex.visitor import collect, substitute

# --- the rule table ---------------------------------------------------------------------


def _wildcards(rule):
    return {v for side in (rule.lhs, rule.rhs) for v in collect(side, lambda n: isinstance(n, Var))}


def _random_value(w, rng):
    if w.dtype.is_bool:
        return rng.random() < 0.5
    if w.name.startswith("c"):
        return rng.randint(-12, 12)
    return rng.randint(-60, 60)


def _rule_envs(rule, count):
    """Random bindings of the rule's wildcards that satisfy its condition."""
    rng, wildcards, found = random.Random(str(rule.lhs)), _wildcards(rule), []
    for _ in range(20000):
        env = {w: _random_value(w, rng) for w in wildcards}
        if rule.allows({w.name: v for w, v in env.items() if w.name.startswith("c")}):
            found.append(env)
            if len(found) == count:
                break
    return found


def _rule_id(rule):
    return f"{rule.lhs} -> {rule.rhs}"


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_rule_preserves_value(rule):
    envs = _rule_envs(rule, 300)
    assert len(envs) >= 50, "the rule's condition is too rarely met to be tested"
    for env in envs:
        assert evaluate(rule.lhs, env) == evaluate(rule.rhs, env), env


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_rule_fires_in_simplify(rule):
    env = _rule_envs(rule, 1)[0]
    consts = {w: Const(INDEX, v) for w, v in env.items() if w.name.startswith("c")}
    lhs = substitute(rule.lhs, consts)
    assert lhs.dtype == rule.rhs.dtype
    assert not structurally_equal(simplify(lhs), lhs)


# --- random expressions -----------------------------------------------------------------

A, B, C, N = Var("a"), Var("b"), Var("c"), Var("n")
RANGES = {A: Interval(0, 7), B: Interval(-4, 12), C: Interval(0, N - 1)}


def _envs(seed, count=25, free=False):
    """Values inside RANGES (n is free, in [1, 20]), or anywhere when `free`."""
    rng, envs = random.Random(seed), []
    for _ in range(count):
        if free:
            envs.append({v: rng.randint(-30, 30) for v in (A, B, C, N)})
        else:
            n = rng.randint(1, 20)
            envs.append({A: rng.randint(0, 7), B: rng.randint(-4, 12), C: rng.randint(0, n - 1),
                         N: n})
    return envs


def _int_exprs():
    leaves = st.sampled_from([A, B, C, N]) | st.integers(-10, 10).map(lambda v: Const(INDEX, v))
    pos = st.integers(1, 9)

    def extend(kids):
        two = st.tuples(kids, kids)
        return st.one_of(
            two.map(lambda t: t[0] + t[1]), two.map(lambda t: t[0] - t[1]),
            two.map(lambda t: t[0] * t[1]), st.tuples(kids, st.integers(-5, 5)).map(
                lambda t: t[0] * t[1]),
            st.tuples(kids, pos).map(lambda t: t[0] // t[1]),
            st.tuples(kids, pos).map(lambda t: t[0] % t[1]),
            two.map(lambda t: t[0] // ops.maximum(t[1], 1)),
            two.map(lambda t: t[0] % ops.maximum(t[1], 1)),
            two.map(lambda t: ops.minimum(*t)), two.map(lambda t: ops.maximum(*t)),
            st.tuples(kids, kids, kids, kids).map(
                lambda t: ops.if_then_else(t[0] < t[1], t[2], t[3])))
    return st.recursive(leaves, extend, max_leaves=10)


def _bool_exprs():
    ops_ = st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"])
    leaves = st.tuples(ops_, _int_exprs(), _int_exprs()).map(lambda t: ops.compare(*t))

    def extend(kids):
        two = st.tuples(kids, kids)
        return st.one_of(two.map(lambda t: t[0] & t[1]), two.map(lambda t: t[0] | t[1]),
                         kids.map(lambda p: ~p))
    return st.recursive(leaves, extend, max_leaves=4)


FAST = settings(max_examples=150, deadline=None, derandomize=True)


@FAST
@given(e=_int_exprs(), seed=st.integers(0, 10**9))
def test_simplify_with_ranges_preserves_value(e, seed):
    s = simplify(e, RANGES)
    assert s.dtype == e.dtype
    for env in _envs(seed):
        assert evaluate(s, env) == evaluate(e, env), (str(e), str(s), env)


@FAST
@given(e=_int_exprs(), seed=st.integers(0, 10**9))
def test_simplify_without_ranges_preserves_value_everywhere(e, seed):
    s = simplify(e)
    for env in _envs(seed, free=True):
        assert evaluate(s, env) == evaluate(e, env), (str(e), str(s), env)


@FAST
@given(e=_int_exprs(), seed=st.integers(0, 10**9))
def test_bound_contains_every_value(e, seed):
    iv = bound(e, RANGES)
    for env in _envs(seed):
        value = evaluate(e, env)
        assert iv.lo is None or evaluate(iv.lo, env) <= value, (str(e), str(iv), env)
        assert iv.hi is None or value <= evaluate(iv.hi, env), (str(e), str(iv), env)


@FAST
@given(e=_bool_exprs(), seed=st.integers(0, 10**9))
def test_simplify_conditions_preserves_value(e, seed):
    s = simplify(e, RANGES)
    assert s.dtype == bool_
    for env in _envs(seed):
        assert evaluate(s, env) == evaluate(e, env), (str(e), str(s), env)


@FAST
@given(e=_int_exprs())
def test_simplify_is_idempotent(e):
    once = simplify(e, RANGES)
    assert simplify(once, RANGES) is once


# --- simplify: before and after -----------------------------------------------------------

io, ii, i, j, x, y, f, n = (Var(s) for s in ("io", "ii", "i", "j", "x", "y", "f", "n"))


def test_split_index_divides_back_to_outer():
    assert str(simplify((io * 32 + ii) // 32, {ii: Interval(0, 31)})) == "io"


def test_split_index_mod_gives_inner():
    assert str(simplify((io * 32 + ii) % 32, {ii: Interval(0, 31)})) == "ii"


def test_linear_terms_cancel():
    assert str(simplify((io * 32 + ii) - io * 32)) == "ii"


def test_constants_cancel():
    assert str(simplify((x + 3) + (y - 3))) == "x + y"


def test_like_terms_merge_constant_last():
    assert str(simplify(i * 4 + j + i * 2 + 3)) == "i * 6 + j + 3"


def test_negative_constant_prints_as_subtraction():
    assert str(simplify(x + 2 - 5)) == "x - 3"
    assert str(simplify(3 - x)) == "3 - x"


def test_self_difference_is_zero():
    assert str(simplify(ops.minimum(x, y) - ops.minimum(x, y))) == "0"


def test_constant_multiple_distributes():
    assert str(simplify((x + 3) * 4 - 12)) == "x * 4"


def test_nested_division_by_constants_combines():
    assert str(simplify(x // 4 // 8)) == "x // 32"


def test_division_of_small_value_is_zero():
    assert str(simplify(x // 8, {x: Interval(0, 7)})) == "0"
    assert str(simplify(x % 8, {x: Interval(0, 7)})) == "x"


def test_division_moves_out_multiple_without_ranges():
    assert str(simplify((x * 32 + y) // 32)) == "x + y // 32"
    assert str(simplify((x * 32 + y) % 32)) == "y % 32"


def test_division_by_common_factor():
    assert str(simplify((x * 4 + ii) // 8, {ii: Interval(0, 3)})) == "x // 2"


def test_remainder_written_as_difference_becomes_mod():
    assert str(simplify(x - (x // 4) * 4)) == "x % 4"


def test_fused_index_recombines():
    assert str(simplify((f // n) * n + f % n)) == "f // n * n + f % n"  # n symbolic: kept
    assert str(simplify((f // 7) * 7 + f % 7)) == "f"


def test_the_digits_of_a_fused_index_recombine():
    """A loop fused from three (c, r, s of 512 x 3 x 3) indexes a buffer laid out the same:
    its digits put back together give the fused index, and the middle digit with the
    lowest one a wider remainder; each value kept for negative indices too."""
    digits = (f // 9) * 9 + (f // 3 % 3) * 3 + f % 3
    assert str(simplify(digits)) == "f"
    assert str(simplify((f // 3 % 3) * 6 + f % 3 * 2)) == "f % 9 * 2"
    assert str(simplify((f // 3 % 4) * 3 + f % 3)) == "f % 12"
    assert str(simplify((f // 3 % 3) * 3 + f % 4)) == "f // 3 % 3 * 3 + f % 4"  # kept
    for expr in (digits, (f // 3 % 4) * 3 + f % 3):
        for value in range(-40, 40):
            assert evaluate(simplify(expr), {f: value}) == evaluate(expr, {f: value})


def test_min_of_constant_offsets():
    assert str(simplify(ops.minimum(x, x + 3))) == "x"
    assert str(simplify(ops.maximum(x, x + 3))) == "x + 3"


def test_min_folded_by_range():
    assert str(simplify(ops.minimum(i, 31), {i: Interval(0, 15)})) == "i"


def test_tail_extent_pulls_offset_into_min():
    assert str(simplify(ops.minimum(io * 32 + 32, n) - io * 32)) == "min(n - io * 32, 32)"


def test_min_constant_goes_right():
    assert str(simplify(ops.minimum(5, x))) == "min(x, 5)"


def test_compare_decided_by_symbolic_range():
    assert str(simplify(i < n, {i: Interval(0, n - 1)})) == "True"


def test_compare_decided_by_constant_ranges():
    ranges = {io: Interval(0, 3), ii: Interval(0, 31)}
    assert str(simplify(io * 32 + ii < 128, ranges)) == "True"
    assert str(simplify(io * 32 + ii < 100, ranges)) == "io * 32 + ii < 100"


def test_compare_moves_constant_right():
    assert str(simplify(x + 3 < 5)) == "x < 2"
    assert str(simplify(i + 1 < n)) == "i < n - 1"


def test_compare_divides_by_common_factor():
    assert str(simplify(x * 2 < 7)) == "x < 4"
    assert str(simplify(x * 4 == 6)) == "False"


def test_compare_of_equal_sides():
    assert str(simplify(x + 1 <= x + 1)) == "True"


def test_not_of_compare_flips():
    assert str(simplify(~(x < y))) == "y <= x"


def test_logic_duplicates_and_constants():
    p = x < y
    assert str(simplify(p & p)) == "x < y"
    assert str(simplify(Const(bool_, True) & p)) == "x < y"
    assert str(simplify((x < 5) & (x < 3))) == "x < 3"


def test_select_with_decided_condition():
    assert str(simplify(ops.if_then_else(i < 16, x, y), {i: Interval(0, 7)})) == "x"


def test_floats_are_folded_not_reassociated():
    g = Var("g", float32)
    e = (g + 1.0) - 1.0
    assert simplify(e) is e
    assert str(simplify(Binary("mul", Const(float32, 2.0), Const(float32, 3.0)))) == "6.0"


def test_dtype_is_kept():
    x32 = Var("x32", int32)
    s = simplify((x32 + 3) - 3)
    assert str(s) == "x32" and s.dtype == int32
    assert simplify(Binary("add", Const(int32, 2), Const(int32, 3))).dtype == int32


def test_unchanged_expression_is_returned_as_is():
    e = x // n + y
    assert simplify(e) is e


def test_variable_with_single_value_range_becomes_constant():
    assert str(simplify(x * 2 + y, {x: Interval(3, 3)})) == "y + 6"


def test_let_with_constant_is_substituted():
    t = Var("t")
    assert str(simplify(Let(t, Const(INDEX, 4), t * 2 + x))) == "x + 8"


def test_broadcasts_combine():
    e = Binary("add", Broadcast(x, 4), Broadcast(y, 4))
    assert str(simplify(e)) == "broadcast(x + y, 4)"


def test_ramp_plus_broadcast_moves_base():
    e = Binary("add", Ramp(x, Const(INDEX, 1), 4), Broadcast(y, 4))
    assert str(simplify(e)) == "ramp(x + y, 1, 4)"


def test_ramp_times_broadcast_scales():
    e = Binary("mul", Ramp(x, Const(INDEX, 1), 4), Broadcast(Const(INDEX, 2), 4))
    assert str(simplify(e)) == "ramp(x * 2, 2, 4)"


def test_simplify_is_fast_on_large_indices():
    start = time.perf_counter()
    total = sum((Var(f"v{k}") * (k + 1) for k in range(200)), Const(INDEX, 0))
    simplify(total - total)
    nested = x
    for k in range(40):
        nested = ops.minimum(nested + 1, y * k) // 2
    simplify(nested, {x: Interval(0, 100), y: Interval(0, 7)})
    index = ((io * 8 + ii) * 4 + j) // 4 % 8
    simplify(index, {ii: Interval(0, 7), j: Interval(0, 3)})
    assert time.perf_counter() - start < 2.0


# --- bound / const_bound / prove ------------------------------------------------------------

def test_bound_of_split_index():
    assert str(bound(io * 32 + ii, {io: Interval(0, 3), ii: Interval(0, 31)})) == "[0, 127]"


def test_bound_keeps_free_variables_symbolic():
    assert str(bound(i + 1, {i: Interval(0, n - 1)})) == "[1, n]"


def test_bound_relaxes_ranges_recursively():
    ranges = {i: Interval(0, j), j: Interval(0, 9)}
    assert str(bound(i * 2, ranges)) == "[0, 18]"


def test_bound_survives_cyclic_ranges():
    ranges = {i: Interval(0, j), j: Interval(0, i)}
    assert str(bound(i, ranges)) == "[0, inf]"


def test_bound_of_mod_within_one_period():
    assert str(bound(x % 32, {x: Interval(io * 32 + 4, io * 32 + 9)})) == "[4, 9]"


def test_bound_of_mod_across_periods():
    assert str(bound(x % 32, {x: Interval(0, 100)})) == "[0, 31]"


def test_bound_of_unknown_product_is_unbounded():
    assert str(bound(x * y, {x: Interval(-1, n)})) == "[-inf, inf]"


def test_bound_of_cast_to_narrower_type():
    assert str(bound(Cast(int8, x), {x: Interval(0, 1000)})) == "[-128, 127]"


def test_const_bound_treats_free_variables_as_unbounded():
    assert const_bound(i + n, {i: Interval(0, 9)}) == (None, None)
    assert const_bound(ops.minimum(i, 4), {i: Interval(0, 9)}) == (0, 4)


def test_interval_from_extent():
    assert str(Interval.from_extent(2, n)) == "[2, n + 1]"


def test_prove():
    ranges = {i: Interval(0, n - 1)}
    assert prove(i < n, ranges)
    assert prove(i >= 0, ranges)
    assert not prove(i < n - 1, ranges)
    assert not prove(x < y)


# --- evaluate ---------------------------------------------------------------------------------

def test_evaluate_floors():
    assert evaluate(x // 2, {x: -7}) == -4
    assert evaluate(x % 2, {x: -7}) == 1


def test_evaluate_int_cast_wraps_like_c():
    assert evaluate(Cast(int8, x), {x: 300}) == 44
    g = Var("g", float32)
    assert evaluate(Cast(int32, g), {g: -2.7}) == -2


def test_evaluate_rounds_float32():
    g, h = Var("g", float32), Var("h", float32)
    expected = float(np.float32(0.1) + np.float32(0.2))
    assert evaluate(g + h, {g: 0.1, h: 0.2}) == expected


def test_evaluate_select_takes_one_side():
    assert evaluate(ops.if_then_else(x > 0, 10 // ops.maximum(x, 0), -1), {x: 0}) == -1


def test_evaluate_let():
    t = Var("t")
    assert evaluate(Let(t, x + 1, t * t), {x: 2}) == 9


def test_evaluate_missing_variable_names_it():
    with pytest.raises(KeyError, match="'x'"):
        evaluate(x + 1, {})
