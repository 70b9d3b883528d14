"""The one text form of every IR: expressions, loop IR statements, lowered functions.

The output is Python-like and deterministic. Loop and buffer names are valid
C identifiers (`i_outer`, `C_local`); when two different variables share a
name inside one printed tree, the later ones get a numeric suffix.
"""
from __future__ import annotations

from tex import ops
from tex.expr import (Binary, Call, Cast, Compare, Const, Let, Logical, Not, Reduce, Select,
                      TensorRead, Var)
from tex.ir import (Allocate, AtomicUpdate, Barrier, Broadcast, DoubleBuffer, For, IfThenElse,
                    IntrinsicCall, KernelLaunch, LetStmt, Load, LoweredFunc, Prefetch,
                    PrefetchAhead, Ramp, Seq, Store, ThreadIndex, ThreadReduce, VectorReduce,
                    WarpShuffle)

_BINARY = {"add": ("+", 5), "sub": ("-", 5), "mul": ("*", 6), "div": ("/", 6),
           "floordiv": ("//", 6), "floormod": ("%", 6)}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ATOM = 9


class UniqueNames:
    """C-valid identifiers from name hints, each given out once: characters that are
    not letters, digits or `_` become `_`, and a taken name gets a numeric suffix."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "v"
        if base[0].isdigit():
            base = "_" + base
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name


class _Printer:
    def __init__(self):
        self.names: dict[object, str] = {}
        self.unique = UniqueNames()
        self.lines: list[str] = []

    def name(self, obj, hint: str) -> str:
        """A unique printable name for a variable or buffer."""
        if obj not in self.names:
            self.names[obj] = self.unique.fresh(hint)
        return self.names[obj]

    # --- expressions -------------------------------------------------
    def expr(self, e, parent: int = 0) -> str:
        text, prec = self._expr(e)
        return f"({text})" if prec < parent else text

    def _expr(self, e):
        if isinstance(e, Const):
            if e.dtype.is_bool:
                return ("True" if e.value else "False"), _ATOM
            text = repr(e.value)
            return text, (_ATOM if e.value >= 0 else 7)
        if isinstance(e, Var):
            return self.name(e, e.name), _ATOM
        if isinstance(e, Binary):
            if e.op in ("min", "max"):
                return f"{e.op}({self.expr(e.a)}, {self.expr(e.b)})", _ATOM
            sym, prec = _BINARY[e.op]
            return f"{self.expr(e.a, prec)} {sym} {self.expr(e.b, prec + 1)}", prec
        if isinstance(e, Compare):
            return f"{self.expr(e.a, 5)} {_COMPARE[e.op]} {self.expr(e.b, 5)}", 4
        if isinstance(e, Logical):
            prec = 2 if e.op == "and" else 1
            return f"{self.expr(e.a, prec)} {e.op} {self.expr(e.b, prec + 1)}", prec
        if isinstance(e, Not):
            return f"not {self.expr(e.a, 3)}", 3
        if isinstance(e, Select):
            return (f"select({self.expr(e.cond)}, {self.expr(e.true_value)}, "
                    f"{self.expr(e.false_value)})"), _ATOM
        if isinstance(e, Cast):
            return f"{e.dtype}({self.expr(e.value)})", _ATOM
        if isinstance(e, Call):
            return f"{e.name}({', '.join(self.expr(a) for a in e.args)})", _ATOM
        if isinstance(e, Let):
            return (f"(let {self.name(e.var, e.var.name)} = {self.expr(e.value)} in "
                    f"{self.expr(e.body)})"), _ATOM
        if isinstance(e, TensorRead):
            return f"{e.tensor.name}[{self.exprs(e.indices)}]", _ATOM
        if isinstance(e, Load):
            return f"{self.name(e.buffer, e.buffer.name)}[{self.exprs(e.indices)}]", _ATOM
        if isinstance(e, Reduce):
            return self._reduce(e), _ATOM
        if isinstance(e, Ramp):
            return f"ramp({self.expr(e.base)}, {self.expr(e.stride)}, {e.lanes})", _ATOM
        if isinstance(e, Broadcast):
            return f"broadcast({self.expr(e.value)}, {e.lanes})", _ATOM
        if isinstance(e, VectorReduce):
            return f"reduce_{e.op}({self.expr(e.value)})", _ATOM
        if isinstance(e, ThreadIndex):
            return e.tag, _ATOM
        if isinstance(e, WarpShuffle):
            return (f"shfl_{e.mode}({self.expr(e.value)}, {e.offset}, width={e.width}, "
                    f"mask={e.mask:#x})"), _ATOM
        raise TypeError(f"no printer for {type(e).__name__}")

    def _reduce(self, e: Reduce) -> str:
        axes = ", ".join(self.name(a.var, a.var.name) for a in e.axes)
        sources = self.exprs(e.sources)
        if len(e.sources) > 1:
            sources = f"({sources})"
        text = f"{e.combiner.name}({sources}, axis=[{axes}]"
        if not (isinstance(e.condition, Const) and e.condition.value):
            text += f", where={self.expr(e.condition)}"
        if len(e.sources) > 1:
            text += f", value_index={e.value_index}"
        return text + ")"

    def exprs(self, items) -> str:
        return ", ".join(self.expr(i) for i in items)

    # --- statements --------------------------------------------------
    def stmt(self, s, depth: int):
        pad = "  " * depth
        if isinstance(s, Seq):
            for item in s.stmts:
                self.stmt(item, depth)
        elif isinstance(s, For):
            var = self.name(s.var, s.var.name)
            if isinstance(s.min, Const) and s.min.value == 0:
                bounds = self.expr(s.extent)
            else:  # Python's range(start, stop)
                bounds = f"{self.expr(s.min)}, {self.expr(ops.binary('add', s.min, s.extent))}"
            kind = {"serial": "range", "bound": s.thread_tag}.get(s.kind, s.kind)
            pragmas = "".join(f"  # pragma {k}={v}" for k, v in s.pragmas)
            self.lines.append(f"{pad}for {var} in {kind}({bounds}):{pragmas}")
            self.stmt(s.body, depth + 1)
        elif isinstance(s, Store):
            target = self.name(s.buffer, s.buffer.name)
            self.lines.append(f"{pad}{target}[{self.exprs(s.indices)}] = {self.expr(s.value)}")
        elif isinstance(s, Prefetch):
            target = self.name(s.buffer, s.buffer.name)
            self.lines.append(f"{pad}prefetch({target}[{self.exprs(s.indices)}])")
        elif isinstance(s, PrefetchAhead):
            target = self.name(s.buffer, s.buffer.name)
            self.lines.append(f"{pad}prefetch_ahead({target}, {s.distance}):")
            self.stmt(s.body, depth + 1)
        elif isinstance(s, DoubleBuffer):
            names = ", ".join(self.name(b, b.name) for b in s.buffers)
            self.lines.append(f"{pad}double_buffer({names}):")
            self.lines.append(f"{pad}  fill:")
            self.stmt(s.fill, depth + 2)
            self.lines.append(f"{pad}  body:")
            self.stmt(s.body, depth + 2)
        elif isinstance(s, Allocate):
            b = s.buffer
            self.lines.append(f"{pad}{self.name(b, b.name)} = allocate({b.dtype}"
                              f"[{self.exprs(b.shape)}], {b.scope!r})")
            self.stmt(s.body, depth)
        elif isinstance(s, IfThenElse):
            self.lines.append(f"{pad}if {self.expr(s.cond)}:")
            self.stmt(s.then_body, depth + 1)
            if s.else_body is not None:
                self.lines.append(f"{pad}else:")
                self.stmt(s.else_body, depth + 1)
        elif isinstance(s, LetStmt):
            self.lines.append(f"{pad}{self.name(s.var, s.var.name)} = {self.expr(s.value)}")
            self.stmt(s.body, depth)
        elif isinstance(s, Barrier):
            self.lines.append(f"{pad}sync_threads()")
        elif isinstance(s, AtomicUpdate):
            target = self.name(s.buffer, s.buffer.name)
            self.lines.append(f"{pad}atomic_{s.op}({target}[{self.exprs(s.indices)}], "
                              f"{self.expr(s.value)})")
        elif isinstance(s, ThreadReduce):
            results = ", ".join(f"{self.name(b, b.name)}[0]" for b in s.results)
            self.lines.append(f"{pad}{results} = thread_reduce_{s.strategy}({s.combiner.name}, "
                              f"({self.exprs(s.values)},), over={s.tag}({s.extent}))")
        elif isinstance(s, IntrinsicCall):
            args = [f"&{self.expr(p)}" for p in s.pointers] + [self.expr(v) for v in s.values]
            self.lines.append(f"{pad}{s.name}({', '.join(args)})")
        elif isinstance(s, KernelLaunch):
            self.lines.append(f"{pad}launch {s.name}(grid=({self.exprs(s.grid)}), "
                              f"block=({self.exprs(s.block)})):")
            self.stmt(s.body, depth + 1)
        else:
            raise TypeError(f"no printer for {type(s).__name__}")

    def func(self, f: LoweredFunc):
        for v in f.size_vars:
            self.name(v, v.name)
        params = ", ".join(f"{self.name(b, b.name)}: {b.dtype}[{self.exprs(b.shape)}]"
                           for b in f.params)
        self.lines.append(f"def {f.name}({params}):")
        self.stmt(f.body, 1)


def to_text(node) -> str:
    """The printed form of an expression, a statement or a lowered function."""
    p = _Printer()
    if isinstance(node, LoweredFunc):
        p.func(node)
    elif hasattr(node, "dtype"):
        return p.expr(node)
    else:
        p.stmt(node, 0)
    return "\n".join(p.lines)
