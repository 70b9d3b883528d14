"""One visitor and one rewriter for every IR node, and the dispatch rule of every IR walker.

The dispatch rule. A walker of the IR handles a node of class `C` with its
method `<prefix>C`, the prefix naming what the walker does with the node:
`visit_For`, `rewrite_Load`, the code generators' `expr_Binary` and
`stmt_Store`, the printer's `expr_Ramp` and `stmt_Allocate`. `handler(walker,
prefix, node)` finds that method: `Visitor`, `Rewriter`, the printer
(`tex.printer`) and the code generators (`tex.codegen.llvm`, `llvm_expr`,
`cuda`, `cuda_expr`) all dispatch through it, and a new walker should too,
rather than test the node's class in a chain of `isinstance`. Where a walker
has no method for a class, it decides what happens: the visitor and the
rewriter walk the node's children, the printer and the code generators raise
an error naming the class.

Both the visitor and the rewriter otherwise walk the node's child fields,
found once per class from the dataclass annotations: fields holding an
`Expr`, a `Stmt` or a tuple of them. Fields that *define* a variable
(`For.var`, `Let.var`) are not children: a rewrite of uses never touches a
definition.

The rewriter returns the very same object when nothing below changed, so
`rewritten is original` tells whether a pass did anything.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

from tex.expr import Var


def handler(walker, prefix: str, node):
    """The method of `walker` that handles `node`, `<prefix><class name of node>` (bound),
    or None when `walker` has none: the dispatch rule of every IR walker."""
    return getattr(walker, prefix + type(node).__name__, None)


@lru_cache(maxsize=None)
def child_fields(cls) -> tuple[str, ...]:
    """Names of the fields of `cls` that hold child nodes (in declaration order)."""
    names = []
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        if f.init and kind != "Var" and ("Expr" in kind or "Stmt" in kind):
            names.append(f.name)
    return tuple(names)


class Visitor:
    """Walks a tree; override `visit_<Class>` and call `self.generic_visit(node)` to recurse."""

    def visit(self, node):
        method = handler(self, "visit_", node)
        if method is not None:
            return method(node)
        return self.generic_visit(node)

    def generic_visit(self, node):
        for name in child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, tuple):
                for item in value:
                    self.visit(item)
            elif value is not None:
                self.visit(value)


class Rewriter:
    """Rebuilds a tree bottom-up; override `rewrite_<Class>` to replace nodes.

    An override usually calls `self.generic_rewrite(node)` first to rewrite
    the children, then inspects the result.
    """

    def rewrite(self, node):
        method = handler(self, "rewrite_", node)
        if method is not None:
            return method(node)
        return self.generic_rewrite(node)

    def generic_rewrite(self, node):
        changes = {}
        for name in child_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, tuple):
                new = tuple(self.rewrite(item) for item in value)
                if any(a is not b for a, b in zip(new, value)):
                    changes[name] = new
            elif value is not None:
                new = self.rewrite(value)
                if new is not value:
                    changes[name] = new
        return dataclasses.replace(node, **changes) if changes else node


class _PostOrder(Rewriter):
    def __init__(self, post):
        self.post = post

    def rewrite(self, node):
        node = self.generic_rewrite(node)
        result = self.post(node)
        return node if result is None else result


def transform(node, post):
    """Rewrite bottom-up with `post(node) -> replacement or None` (None keeps the node)."""
    return _PostOrder(post).rewrite(node)


class _Substitute(Rewriter):
    def __init__(self, mapping):
        self.mapping = mapping

    def rewrite_Var(self, var):
        return self.mapping.get(var, var)


def substitute(node, mapping: dict):
    """`node` with every use of a variable in `mapping` replaced by its value."""
    if not mapping:
        return node
    return _Substitute(mapping).rewrite(node)


class _FreshCopy(Rewriter):
    def __init__(self, mapping):
        self.mapping = dict(mapping)

    def rewrite_Var(self, v):
        return self.mapping.get(v, v)

    def _fresh(self, node):
        self.mapping[node.var] = Var(node.var.name, node.var.dtype)
        return dataclasses.replace(self.generic_rewrite(node), var=self.mapping[node.var])

    rewrite_For = rewrite_LetStmt = rewrite_Let = _fresh


def fresh_copy(node, mapping: dict | None = None):
    """A copy of `node` with `mapping` substituted and every variable it defines renamed.

    Use it whenever a statement is duplicated (unrolling, loop versioning), so
    that each variable keeps exactly one definition.
    """
    return _FreshCopy(mapping or {}).rewrite(node)


class _UniqueDefinitions(Rewriter):
    def __init__(self):
        self.seen: set = set()
        self.mapping: dict = {}

    def rewrite_Var(self, v):
        return self.mapping.get(v, v)

    def _define(self, node):
        if node.var not in self.seen:
            self.seen.add(node.var)
            return self.generic_rewrite(node)
        previous = self.mapping.get(node.var)
        self.mapping[node.var] = Var(node.var.name, node.var.dtype)
        new = dataclasses.replace(self.generic_rewrite(node), var=self.mapping[node.var])
        self.seen.add(self.mapping[node.var])
        if previous is None:
            del self.mapping[node.var]
        else:
            self.mapping[node.var] = previous
        return new

    rewrite_For = rewrite_LetStmt = rewrite_Let = _define


def unique_definitions(node):
    """`node` with every variable defined at most once (later definitions renamed)."""
    return _UniqueDefinitions().rewrite(node)


class _Collect(Visitor):
    def __init__(self, predicate):
        self.predicate = predicate
        self.found = []

    def visit(self, node):
        if self.predicate(node):
            self.found.append(node)
        return super().visit(node)


def collect(node, predicate) -> list:
    """Every node below (and including) `node` for which `predicate` holds, in visit order."""
    c = _Collect(predicate)
    c.visit(node)
    return c.found


def defined_vars(node) -> set:
    """Variables defined inside `node`: loop variables and let-bound names."""
    return {n.var for n in collect(node, lambda n: isinstance(getattr(n, "var", None), Var)
                                   and not isinstance(n, Var))}


def free_vars(node) -> set:
    """Variables used in `node` (definitions by For/Let inside it are excluded)."""
    return {v for v in collect(node, lambda n: isinstance(n, Var))} - defined_vars(node)


def uses_var(node, var: Var) -> bool:
    return bool(collect(node, lambda n: n is var))
