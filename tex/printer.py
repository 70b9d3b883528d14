"""The one text form of every IR: expressions, loop IR statements, lowered functions.

The output is Python-like and deterministic. Loop and buffer names are valid
C identifiers (`i_outer`, `C_local`); when two different variables share a
name inside one printed tree, the later ones get a numeric suffix.
"""
from __future__ import annotations

import re

from tex import ops
from tex.arith import simplify
from tex.expr import Const, Var
from tex.ir import LoweredFunc
from tex.visitor import handler

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
    """Prints one tree: one `expr_<Node>` method per expression node, giving its text and
    precedence, and one `stmt_<Node>` method per statement node, appending its lines
    (`tex.visitor.handler` finds them: the dispatch rule of every IR walker)."""

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
        method = handler(self, "expr_", e)
        if method is None:
            raise TypeError(f"no printer for {type(e).__name__}")
        return method(e)

    def exprs(self, items) -> str:
        return ", ".join(self.expr(i) for i in items)

    def expr_Const(self, e):
        if e.dtype.is_bool:
            return ("True" if e.value else "False"), _ATOM
        text = repr(e.value)
        return text, (_ATOM if e.value >= 0 else 7)

    def expr_Var(self, e):
        return self.name(e, e.name), _ATOM

    def expr_Binary(self, e):
        if e.op in ("min", "max"):
            return f"{e.op}({self.expr(e.a)}, {self.expr(e.b)})", _ATOM
        sym, prec = _BINARY[e.op]
        return f"{self.expr(e.a, prec)} {sym} {self.expr(e.b, prec + 1)}", prec

    def expr_Compare(self, e):
        return f"{self.expr(e.a, 5)} {_COMPARE[e.op]} {self.expr(e.b, 5)}", 4

    def expr_Logical(self, e):
        prec = 2 if e.op == "and" else 1
        return f"{self.expr(e.a, prec)} {e.op} {self.expr(e.b, prec + 1)}", prec

    def expr_Not(self, e):
        return f"not {self.expr(e.a, 3)}", 3

    def expr_Select(self, e):
        return (f"select({self.expr(e.cond)}, {self.expr(e.true_value)}, "
                f"{self.expr(e.false_value)})"), _ATOM

    def expr_Cast(self, e):
        return f"{e.dtype}({self.expr(e.value)})", _ATOM

    def expr_Call(self, e):
        return f"{e.name}({', '.join(self.expr(a) for a in e.args)})", _ATOM

    expr_VScale = expr_Call

    def expr_PureExternCall(self, e):
        """`f(x)`, or `f<dtype>(x)` when the declared result's dtype is not the first
        argument's (the printed program keys the compile cache: it must show it)."""
        implied = e.args and e.args[0].dtype == e.dtype
        name = e.name if implied else f"{e.name}<{e.dtype}>"
        return f"{name}({', '.join(self.expr(a) for a in e.args)})", _ATOM

    expr_OpCall = expr_LLVMCall = expr_PureExternCall

    def expr_Let(self, e):
        return (f"(let {self.name(e.var, e.var.name)} = {self.expr(e.value)} in "
                f"{self.expr(e.body)})"), _ATOM

    def expr_TensorRead(self, e):
        return f"{e.tensor.name}[{self.exprs(e.indices)}]", _ATOM

    def expr_Load(self, e):
        return f"{self.name(e.buffer, e.buffer.name)}[{self.exprs(e.indices)}]", _ATOM

    def expr_Reduce(self, e):
        axes = ", ".join(self.name(a.var, a.var.name) for a in e.axes)
        sources = self.exprs(e.sources)
        if len(e.sources) > 1:
            sources = f"({sources})"
        text = f"{e.combiner.name}({sources}, axis=[{axes}]"
        if not (isinstance(e.condition, Const) and e.condition.value):
            text += f", where={self.expr(e.condition)}"
        if len(e.sources) > 1:
            text += f", value_index={e.value_index}"
        return text + ")", _ATOM

    def expr_Ramp(self, e):
        return f"ramp({self.expr(e.base)}, {self.expr(e.stride)}, {e.lanes})", _ATOM

    def expr_Broadcast(self, e):
        return f"broadcast({self.expr(e.value)}, {e.lanes})", _ATOM

    def expr_VectorReduce(self, e):
        return f"reduce_{e.op}({self.expr(e.value)})", _ATOM

    def expr_ThreadIndex(self, e):
        return e.tag, _ATOM

    def expr_WarpShuffle(self, e):
        return (f"shfl_{e.mode}({self.expr(e.value)}, {e.offset}, width={e.width}, "
                f"mask={e.mask:#x})"), _ATOM

    # --- statements --------------------------------------------------
    def stmt(self, s, depth: int):
        method = handler(self, "stmt_", s)
        if method is None:
            raise TypeError(f"no printer for {type(s).__name__}")
        method(s, depth)

    def line(self, depth: int, text: str):
        self.lines.append("  " * depth + text)

    def stmt_Seq(self, s, depth):
        for item in s.stmts:
            self.stmt(item, depth)

    def stmt_For(self, s, depth):
        var = self.name(s.var, s.var.name)
        if isinstance(s.min, Const) and s.min.value == 0:
            bounds = self.expr(s.extent)
        else:  # Python's range(start, stop)
            stop = simplify(ops.binary("add", s.min, s.extent))
            bounds = f"{self.expr(s.min)}, {self.expr(stop)}"
        kind = {"serial": "range", "bound": s.thread_tag}.get(s.kind, s.kind)
        pragmas = "".join(f"  # pragma {k}={v}" for k, v in s.pragmas)
        self.line(depth, f"for {var} in {kind}({bounds}):{pragmas}")
        self.stmt(s.body, depth + 1)

    def stmt_Store(self, s, depth):
        target = self.name(s.buffer, s.buffer.name)
        self.line(depth, f"{target}[{self.exprs(s.indices)}] = {self.expr(s.value)}")

    def stmt_Prefetch(self, s, depth):
        target = self.name(s.buffer, s.buffer.name)
        self.line(depth, f"prefetch({target}[{self.exprs(s.indices)}])")

    def stmt_PrefetchAhead(self, s, depth):
        self.line(depth, f"prefetch_ahead({self.name(s.buffer, s.buffer.name)}, {s.distance}):")
        self.stmt(s.body, depth + 1)

    def stmt_DoubleBuffer(self, s, depth):
        self.line(depth, f"double_buffer({', '.join(self.name(b, b.name) for b in s.buffers)}):")
        self.line(depth + 1, "fill:")
        self.stmt(s.fill, depth + 2)
        self.line(depth + 1, "body:")
        self.stmt(s.body, depth + 2)

    def stmt_Pipeline(self, s, depth):
        names = ", ".join(self.name(b, b.name) for b in s.buffers)
        self.line(depth, f"pipeline({names}, stages={s.stages}):")
        self.line(depth + 1, "fill:")
        self.stmt(s.fill, depth + 2)
        self.line(depth + 1, "body:")
        self.stmt(s.body, depth + 2)

    def stmt_AsyncFill(self, s, depth):
        self.line(depth, "async_fill:")
        self.stmt(s.body, depth + 1)

    def stmt_Allocate(self, s, depth):
        b = s.buffer
        self.line(depth, f"{self.name(b, b.name)} = allocate({b.dtype}"
                         f"[{self.exprs(b.shape)}], {b.scope!r})")
        self.stmt(s.body, depth)

    def stmt_IfThenElse(self, s, depth):
        self.line(depth, f"if {self.expr(s.cond)}:")
        self.stmt(s.then_body, depth + 1)
        if s.else_body is not None:
            self.line(depth, "else:")
            self.stmt(s.else_body, depth + 1)

    def stmt_LetStmt(self, s, depth):
        self.line(depth, f"{self.name(s.var, s.var.name)} = {self.expr(s.value)}")
        self.stmt(s.body, depth)

    def stmt_Barrier(self, s, depth):
        self.line(depth, "sync_threads()")

    def stmt_AtomicUpdate(self, s, depth):
        target = self.name(s.buffer, s.buffer.name)
        self.line(depth, f"atomic_{s.op}({target}[{self.exprs(s.indices)}], "
                         f"{self.expr(s.value)})")

    def stmt_ThreadReduce(self, s, depth):
        results = ", ".join(f"{self.name(b, b.name)}[0]" for b in s.results)
        self.line(depth, f"{results} = thread_reduce_{s.strategy}({s.combiner.name}, "
                         f"({self.exprs(s.values)},), over={s.tag}({s.extent}))")

    def stmt_IntrinsicCall(self, s, depth):
        args = [f"&{self.expr(p)}" for p in s.pointers] + [self.expr(v) for v in s.values]
        self.line(depth, f"{s.name}({', '.join(args)})")

    def stmt_ExternCall(self, s, depth):
        args = [f"&{self.expr(a)}" if k in s.pointers else self.expr(a)
                for k, a in enumerate(s.args)]
        self.line(depth, f"call_extern({', '.join([repr(s.name)] + args)})")

    def stmt_PackedCall(self, s, depth):
        """A buffer argument prints as its name, or as `&A[index]` when it starts at an
        element other than the first (a tile, an access pointer)."""
        args = [self.expr(a) if k not in s.buffer_args else
                self.name(a.buffer, a.buffer.name) if _at_start(a) else f"&{self.expr(a)}"
                for k, a in enumerate(s.args)]
        self.line(depth, f"call_packed({', '.join([repr(s.name)] + args)})")

    def stmt_KernelLaunch(self, s, depth):
        self.line(depth, f"launch {s.name}(grid=({self.exprs(s.grid)}), "
                         f"block=({self.exprs(s.block)})):")
        self.stmt(s.body, depth + 1)

    def func(self, f: LoweredFunc):
        for v in f.size_vars:
            self.name(v, v.name)
        params = ", ".join(f"{self.name(a, a.name)}: {a.dtype}" if isinstance(a, Var) else
                           f"{self.name(a, a.name)}: {a.dtype}[{self.exprs(a.shape)}]"
                           for a in f.call_arguments)
        self.lines.append(f"def {f.name}({params}):")
        if not f.noalias:
            self.line(1, "# buffers may alias (tir.noalias off)")
        if f.bound_checked:
            self.line(1, "# every load and store checked against its buffer's extent")
        for language, text in f.imports:
            self.line(1, f"# import_{language}: {_defined_functions(language, text)}")
        for check in f.checks:
            self.line(1, f'assert {self.expr(check.cond)}, "{check.message}"')
        self.stmt(f.body, 1)


#: The definition of a function in LLVM IR (`define ... @name(`) or C (`name(` at the
#: start of a line, after its type, outside any brace).
_DEFINITIONS = {"llvm": re.compile(r'^define\b[^@\n]*@"?([\w.$]+)"?\(', re.M),
                "c": re.compile(r"^[\w \t*]*?\b(\w+)\s*\([^;{]*\)\s*\{", re.M)}


def _at_start(element) -> bool:
    """Whether the scalar Load `element` is of its buffer's first element."""
    return all(isinstance(i, Const) and i.value == 0 for i in element.indices)


def _defined_functions(language: str, text: str) -> str:
    """What an imported module defines, for the printed program: its functions' names."""
    names = _DEFINITIONS[language].findall(text)
    return f"defines {', '.join(names)}" if names else f"{len(text.splitlines())} lines"


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
