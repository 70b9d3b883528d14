"""Index arithmetic: evaluation, interval analysis and a simplifier.

Lowering writes indices such as `(i_outer*32 + i_inner) // 32` and guards
such as `i_outer*32 + i_inner < n`; this package proves what it can about them
and rewrites them into the short forms that readers and codegen want.

* `evaluate` (evaluation.py) computes a scalar expression for given variable
  values with tex's semantics (floor division, C-like integer wrap, float32
  rounding).
* `bound` and `const_bound` (bounds.py) give an `Interval` (interval.py)
  holding every value an integer expression takes while its variables stay
  within their ranges.
* `simplify` and `prove` (simplifier.py) rewrite an expression into an equal,
  canonical one. Algebraic identities are the rule table `RULES` (rules.py);
  sums are normalised as linear forms `sum(coef*atom) + const` (linear.py);
  division, min/max and comparisons are decided from intervals where the
  ranges allow. `scope_simplifier` is `simplify` for many expressions under
  the same ranges, their shared subexpressions simplified once.

Import order: interval, evaluation, linear, rules, simplifier, bounds; each
imports only modules before it at import time. The simplifier and the
interval analysis call each other, so simplifier.py imports bounds.py inside
the two methods that need it (see its docstring).

Assumptions: integer index arithmetic never overflows. Only scalar signed
integer and bool expressions are rewritten; floats and unsigned integers are
only constant-folded (never reassociated). Vector `Ramp`/`Broadcast`
arithmetic is pushed into its scalar parts.

Names with a leading underscore are private to this package: its modules
share them, nothing outside it uses them.
"""
from tex.arith.bounds import bound, const_bound
from tex.arith.evaluation import evaluate
from tex.arith.interval import Interval
from tex.arith.rules import RULES, Rule
from tex.arith.simplifier import prove, scope_simplifier, simplify

__all__ = ["Interval", "RULES", "Rule", "bound", "const_bound", "evaluate", "prove",
           "scope_simplifier", "simplify"]
