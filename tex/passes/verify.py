"""The loop-IR verifier, run after every pass when `TEX_VERIFY` is on (always in the tests).

Checks what the node constructors cannot see on their own: every variable is
defined before it is used (a size parameter, an enclosing loop or let), no
variable is defined twice, every buffer accessed is a parameter or an
enclosing allocation (or double-buffer mark), and (when `flat` is set) every access has one index.
GPU loop IR: a kernel's buffers and a thread reduction's results are allocated.
"""
from __future__ import annotations

from tex.errors import TexError
from tex.expr import Let, Var
from tex.ir import Allocate, DoubleBuffer, For, LetStmt, LoweredFunc
from tex.visitor import Visitor


class VerifyError(TexError, AssertionError):
    """A pass produced malformed loop IR (a bug in tex, not in the user's program)."""


class _Verifier(Visitor):
    def __init__(self, func: LoweredFunc, flat: bool, after: str):
        self.scope = set(func.size_vars)
        self.defined = set(func.size_vars)
        self.buffers = set(func.params)
        self.flat, self.after = flat, after

    def fail(self, message):
        raise VerifyError(f"invalid loop IR after {self.after}: {message}")

    def define(self, var, node, body):
        if var in self.defined:
            self.fail(f"variable {var.name} is defined twice")
        self.defined.add(var)
        self.scope.add(var)
        self.visit(body)
        self.scope.discard(var)

    def visit_Var(self, v: Var):
        if v not in self.scope:
            self.fail(f"variable {v.name} is used outside the loop or let that defines it")

    def visit_For(self, s: For):
        self.visit(s.min), self.visit(s.extent)
        self.define(s.var, s, s.body)

    def visit_LetStmt(self, s: LetStmt):
        self.visit(s.value)
        self.define(s.var, s, s.body)

    def visit_Let(self, e: Let):
        self.visit(e.value)
        self.define(e.var, e, e.body)

    def visit_Allocate(self, s: Allocate):
        for e in s.buffer.shape:
            self.visit(e)
        self.buffers.add(s.buffer)
        self.visit(s.body)
        self.buffers.discard(s.buffer)

    def visit_DoubleBuffer(self, s: DoubleBuffer):
        self.buffers.update(s.buffers)
        self.generic_visit(s)
        self.buffers.difference_update(s.buffers)

    visit_Pipeline = visit_DoubleBuffer

    def _access(self, node):
        if node.buffer not in self.buffers:
            self.fail(f"buffer {node.buffer.name} is accessed outside its allocation")
        if self.flat and len(node.indices) != 1:
            self.fail(f"access to {node.buffer.name} has {len(node.indices)} indices after "
                      "flattening")
        self.generic_visit(node)

    visit_Load = visit_Store = visit_AtomicUpdate = visit_Prefetch = _access

    def visit_ThreadReduce(self, node):
        for b in node.results:
            if b not in self.buffers:
                self.fail(f"thread reduction writes {b.name} outside its allocation")
        self.generic_visit(node)

    def visit_KernelLaunch(self, node):
        for b in node.params:
            if b not in self.buffers:
                self.fail(f"kernel {node.name} takes buffer {b.name}, which is not allocated")
        self.generic_visit(node)


def verify(func: LoweredFunc, flat: bool = False, after: str = "lowering") -> None:
    """Raise VerifyError if `func` breaks an invariant of the loop IR."""
    _Verifier(func, flat, after).visit(func.body)
