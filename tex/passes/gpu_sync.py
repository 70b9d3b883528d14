"""Barriers: `__syncthreads()` wherever threads hand shared memory to each other.

Assumes: `split_host_device` and `lower_thread_reduce` ran.
Guarantees, in each kernel:

1. A barrier is never under code that only some threads run. A branch whose
   condition depends on the thread (a threadIdx loop variable, a
   `ThreadIndex`, anything defined from them) is pushed down into the
   statements it guards wherever those statements read shared memory that
   other statements under it write (`if c: (A; B)` becomes
   `if c: A; if c: B`; `if c: for k: S` becomes `for k: if c: S`), which is
   exact because guard conditions read no memory. A loop bound to threadIdx
   with fewer iterations than the block has threads is such a branch too.
2. Between a statement that writes a shared buffer and a later one that
   reads it (or that reads it and a later one that writes it), a barrier
   runs, also across iterations of an enclosing loop. Barriers already
   there (from reductions) count; no barrier is placed where none is needed
   by this rule.

An `IntrinsicCall` or `ExternCall` counts as reading the buffer of every
one of its pointers and writing those of its `writes`, whole (the pass does
not know which elements the call touches).

The stores of an `AsyncFill` (a pipeline's fill, see `inject_pipeline`) count
as no access: the pipeline's own wait and barrier order them. The pass
removes the marks, leaving their bodies.
"""
from __future__ import annotations

import dataclasses

from tex.expr import Const, Var
from tex.ir import (Allocate, AsyncFill, AtomicUpdate, Barrier, ExternCall, For, IfThenElse,
                    IntrinsicCall, KernelLaunch, LetStmt, Load, Seq, Stmt, Store, ThreadIndex,
                    seq)
from tex.visitor import Rewriter, child_fields, collect, free_vars, fresh_copy


def insert_barriers(stmt):
    """`stmt` with guards pushed down and barriers inserted (see the module docstring)."""
    return _Kernels().rewrite(stmt)


class _Kernels(Rewriter):
    def rewrite_KernelLaunch(self, launch: KernelLaunch):
        block = dict(zip(("threadIdx.x", "threadIdx.y", "threadIdx.z"), launch.block))
        body = _Distribute(block, _Divergence(launch.body), _SharedAccesses()).rewrite(launch.body)
        body, _ = _Sync(block, _Divergence(body), _SharedAccesses()).visit(body, _State())
        return launch if body is launch.body else dataclasses.replace(launch, body=body)


class _SharedAccesses:
    """What each statement does with shared memory, found once per statement object:
    `(reads, writes, has_barrier)`, the shared buffers it reads and writes anywhere
    inside and whether a barrier is among its statements. Stores, atomics and
    intrinsic calls write; loads read (an IntrinsicCall's pointers are loads: it
    reads them). A statement's answer is made from its children's, so asking about
    every statement of a nest costs one walk of it."""

    def __init__(self):
        self._memo: dict[int, tuple] = {}  # id -> (stmt, answer): the stmt keeps its id

    def __call__(self, stmt: Stmt) -> tuple[frozenset, frozenset, bool]:
        hit = self._memo.get(id(stmt))
        if hit is not None:
            return hit[1]
        if isinstance(stmt, AsyncFill):  # ordered by its pipeline
            return frozenset(), frozenset(), False
        reads, writes, has_barrier = set(), set(), isinstance(stmt, Barrier)
        if isinstance(stmt, (Store, AtomicUpdate)):
            writes.add(stmt.buffer)
        elif isinstance(stmt, IntrinsicCall):
            writes.update(stmt.pointers[w].buffer for w in stmt.writes)
        elif isinstance(stmt, ExternCall):
            writes.update(stmt.args[w].buffer for w in stmt.writes)
        for name in child_fields(type(stmt)):
            value = getattr(stmt, name)
            for child in value if isinstance(value, tuple) else (value,):
                if isinstance(child, Stmt):
                    child_reads, child_writes, child_barrier = self(child)
                    reads |= child_reads
                    writes |= child_writes
                    has_barrier = has_barrier or child_barrier
                elif child is not None:
                    reads.update(n.buffer for n in collect(child, lambda n: isinstance(n, Load)))
        answer = (frozenset(b for b in reads if b.scope == "shared"),
                  frozenset(b for b in writes if b.scope == "shared"), has_barrier)
        self._memo[id(stmt)] = (stmt, answer)
        return answer

    def needs_barrier_inside(self, stmt: Stmt) -> bool:
        """Whether `stmt` writes a shared buffer that it also reads, or holds a barrier."""
        reads, writes, has_barrier = self(stmt)
        return bool(reads & writes) or has_barrier


def _is_partial_thread_loop(loop: For, block: dict) -> bool:
    """A loop bound to threadIdx that fewer threads run than the block has."""
    if loop.kind != "bound" or not loop.thread_tag.startswith("threadIdx"):
        return False
    launch = block[loop.thread_tag]
    return not (isinstance(launch, Const) and isinstance(loop.extent, Const)
                and launch.value == loop.extent.value)


class _Divergence:
    """Which variables differ between the threads of a block."""

    def __init__(self, stmt):
        definitions = collect(stmt, lambda n: isinstance(n, (For, LetStmt)))
        self.vars = {node.var for node in definitions if isinstance(node, For)
                     and node.kind == "bound" and node.thread_tag.startswith("threadIdx")}
        changed = True
        while changed:  # anything computed from a thread-dependent value depends on the thread
            changed = False
            for node in definitions:
                source = node.value if isinstance(node, LetStmt) else node.extent
                if node.var not in self.vars and self.depends(source):
                    self.vars.add(node.var)
                    changed = True

    def depends(self, expr) -> bool:
        """Whether `expr` may differ between threads (a load is assumed to)."""
        if free_vars(expr) & self.vars:
            return True
        return bool(collect(expr, lambda n: isinstance(n, Load) or isinstance(n, ThreadIndex)
                            and n.tag.startswith("threadIdx")))


class _Distribute(Rewriter):
    """Push thread-dependent guards below the statements that need a barrier between them."""

    def __init__(self, block: dict, divergence: _Divergence, accesses: _SharedAccesses):
        self.block, self.divergence, self.accesses = block, divergence, accesses

    def rewrite_IfThenElse(self, node: IfThenElse):
        node = self.generic_rewrite(node)
        if node.else_body is not None or not self.divergence.depends(node.cond) or \
                not self.accesses.needs_barrier_inside(node.then_body) or \
                collect(node.cond, lambda n: isinstance(n, Load)):
            return node
        pushed = _push_down(node.then_body, lambda body: IfThenElse(node.cond, body))
        return node if pushed is None else self.rewrite(pushed)

    def rewrite_For(self, node: For):
        node = self.generic_rewrite(node)
        if not _is_partial_thread_loop(node, self.block) or \
                not self.accesses.needs_barrier_inside(node.body):
            return node

        def wrap(body):
            var = Var(node.var.name, node.var.dtype)
            return dataclasses.replace(node, var=var, body=fresh_copy(body, {node.var: var}))
        pushed = _push_down(node.body, wrap)
        return node if pushed is None else self.rewrite(pushed)


def _push_down(body, wrap):
    """`wrap` (a guard) applied below the structure of `body` instead of around it
    (None when `body` has no structure to go below)."""
    if isinstance(body, Seq):
        return seq(*(wrap(s) for s in body.stmts))
    serial = isinstance(body, For) and (body.kind in ("serial", "unrolled")
                                        or body.thread_tag == "vthread")
    value_safe = isinstance(body, LetStmt) and not collect(body.value,
                                                           lambda n: isinstance(n, Load))
    if serial or value_safe or isinstance(body, Allocate):
        return dataclasses.replace(body, body=wrap(body.body))
    return None


@dataclasses.dataclass(frozen=True)
class _State:
    """Shared buffers written and read since the last barrier."""

    written: frozenset = frozenset()
    read: frozenset = frozenset()

    def conflicts(self, reads, writes) -> bool:
        return bool(reads & self.written or writes & self.read)

    def then(self, reads, writes) -> "_State":
        return _State(self.written | writes, self.read | reads)

    def union(self, other: "_State") -> "_State":
        return _State(self.written | other.written, self.read | other.read)


class _Sync:
    """Walks a kernel body in program order, placing barriers (see the module docstring).

    A barrier goes as high as it can: before the outermost loop or branch
    that conflicts with what ran since the last barrier, so a loop that
    reads a tile another statement wrote waits once, not once per iteration.
    """

    def __init__(self, block: dict, divergence: _Divergence, accesses: _SharedAccesses):
        self.block, self.divergence, self.accesses = block, divergence, accesses

    def visit(self, stmt, state: _State):
        if isinstance(stmt, Barrier):
            return stmt, _State()
        if isinstance(stmt, AsyncFill):
            return stmt.body, state
        if isinstance(stmt, Seq):
            out = []
            for s in stmt.stmts:
                s, state = self.visit(s, state)
                out.append(s)
            return seq(*out), state
        if isinstance(stmt, (LetStmt, Allocate)):  # not steps in time: look inside
            body, state = self.visit(stmt.body, state)
            return _with_body(stmt, body), state
        reads, writes, _ = self.accesses(stmt)
        barrier = None
        if state.conflicts(reads, writes):
            barrier, state = Barrier(), _State()
        stmt, state = self._inside(stmt, state, reads, writes)
        return seq(barrier, stmt), state

    def _inside(self, stmt, state: _State, reads, writes):
        """`stmt` with the barriers it needs inside, entered from `state` (no conflict)."""
        uniform_if = isinstance(stmt, IfThenElse) and not self.divergence.depends(stmt.cond)
        if uniform_if:
            then, after_then = self.visit(stmt.then_body, state)
            other, after_else = None, state
            if stmt.else_body is not None:
                other, after_else = self.visit(stmt.else_body, state)
            return IfThenElse(stmt.cond, then, other), after_then.union(after_else)
        if isinstance(stmt, For) and stmt.kind == "bound" and stmt.thread_tag != "vthread" \
                and not _is_partial_thread_loop(stmt, self.block):
            body, state = self.visit(stmt.body, state)  # all threads at once: no iterations
            return _with_body(stmt, body), state
        if isinstance(stmt, For) and not _is_partial_thread_loop(stmt, self.block) and \
                not self.divergence.depends(stmt.extent) and \
                not self.divergence.depends(stmt.min):
            return self._loop(stmt, state)
        return stmt, state.then(reads, writes)

    def _loop(self, loop: For, state: _State):
        """The loop's body synced for entry from `state` and from its own end state."""
        entry = state
        while True:  # the sets only grow, so this ends (after two rounds at most)
            body, end = self.visit(loop.body, entry)
            if entry.union(end) == entry:
                return _with_body(loop, body), state.union(end)
            entry = entry.union(end)


def _with_body(stmt, body):
    """`stmt` (a loop, let or allocation) around `body` instead of its own."""
    return stmt if body is stmt.body else dataclasses.replace(stmt, body=body)
