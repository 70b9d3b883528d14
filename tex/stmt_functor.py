"""TVM's `tvm.tir.stmt_functor` walkers over tex's loop IR, for ported TE code.

    from tex.tir import stmt_functor
    loops = []
    stmt_functor.post_order_visit(mod["main"].body,
                                  lambda n: loops.append(n) if isinstance(n, tex.ir.For) else None)

Node kinds are named as TVM names them, `"tir.For"`, or by tex's class
name, `"For"` (`only_enable` of `ir_transform`). Both walk expressions and
statements with the one visitor of `tex.visitor`.
"""
from __future__ import annotations

from tex.visitor import Rewriter, Visitor


class _PostOrder(Visitor):
    def __init__(self, fvisit):
        self.fvisit = fvisit

    def visit(self, node):
        super().visit(node)
        self.fvisit(node)


def post_order_visit(node, fvisit) -> None:
    """Call `fvisit(n)` on every node below and including `node`, children first."""
    _PostOrder(fvisit).visit(node)


class _Transform(Rewriter):
    def __init__(self, preorder, postorder, kinds):
        self.preorder, self.postorder, self.kinds = preorder, postorder, kinds

    def rewrite(self, node):
        enabled = self.kinds is None or type(node).__name__ in self.kinds
        if enabled and self.preorder is not None:
            replaced = self.preorder(node)
            if replaced is not None:
                return replaced
        node = self.generic_rewrite(node)
        if enabled and self.postorder is not None:
            replaced = self.postorder(node)
            if replaced is not None:
                return replaced
        return node


def ir_transform(node, preorder, postorder, only_enable=None):
    """`node` rewritten: `preorder(n)`, called before the children, may return a
    replacement (then the children are not visited); `postorder(n)`, called on `n`
    with its children rewritten, may return one; None keeps the node. `only_enable`
    restricts both calls to the node kinds it names ("tir.For" or "For")."""
    kinds = None if only_enable is None else {k.split(".")[-1] for k in only_enable}
    return _Transform(preorder, postorder, kinds).rewrite(node)
