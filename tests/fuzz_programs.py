"""Random tex programs with their NumPy references, both as Python source.

`random_program(rng)` returns a `Program`: the lines that declare a small
DAG of computes (`tex_lines`) and the body of a NumPy function computing the
same values (`reference_lines`). The two are written side by side from one
random choice at a time, with the same variable names (a data axis over
dimension d is `i{d}` in both, a reduction axis `k{d}`), so a failing case
reads as a short standalone script (`tests/test_fuzz.py` assembles it).

Programs are float32 (sometimes float64, or int32 without reductions), with
elementwise arithmetic and intrinsics, selects, broadcasts, transposed reads,
reads at moved indices (shifted and guarded, clamped, reversed, halved,
doubled, wrapped around, gathered through an integer input), and sum/max/min
reductions over one or two axes, sometimes restricted by `where=`.

Every expression carries a bound on its magnitude, which keeps values finite
(exp only of bounded arguments, denominators at least 1, integers far from
overflow), and the length of the longest chain of reductions feeding it, which
loosens its tolerance. Constants are dyadic and float conditions only compare
inputs, so no comparison can flip on a rounding difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

SIZES = (1, 3, 7, 13, 37, 64, 100, 129)
MAX_ELEMENTS = 4096
INPUT_MAG = {"float32": 6.0, "float64": 6.0, "int32": 50.0}
MAG_CAP = {"float32": 1e4, "float64": 1e4, "int32": 1e6}
FLOAT_CONSTS = ("0.5", "2.0", "1.5", "-0.25", "3.0")
INT_CONSTS = ("1", "2", "3", "-2")


@dataclass
class Dim:
    """A dimension: a constant, or a `tex.var` bound to `sizes[run]` in each run."""

    index: int
    sizes: tuple[int, ...]
    symbolic: bool

    @property
    def text(self) -> str:
        """The dimension in both languages: its variable's name, or its constant."""
        return f"n{self.index}" if self.symbolic else str(self.sizes[0])


@dataclass
class Value:
    """One expression, as tex source and as NumPy source."""

    tex: str
    np: str
    mag: float          # |value| <= mag
    length: int = 1     # terms summed by the longest chain of reductions feeding it
    reads: bool = False


@dataclass
class TensorInfo:
    """An input or a compute of the program, as the generator tracks it."""

    name: str
    dims: tuple[int, ...]
    mag: float
    length: int = 1
    is_input: bool = False
    readers: int = 0
    dtype: str = ""     # an input's dtype; "" for the program's


@dataclass
class Program:
    """A random program: its declarations, and its NumPy reference's body."""

    dtype: str
    dims: list[Dim]
    inputs: list[TensorInfo]
    stages: list[TensorInfo]
    outputs: list[TensorInfo]
    tex_lines: list[str] = field(default_factory=list)
    reference_lines: list[str] = field(default_factory=list)

    @property
    def symbols(self) -> list[Dim]:
        return [d for d in self.dims if d.symbolic]

    def shape(self, dims) -> str:
        """A shape as source text (in both languages), e.g. `(n0, 37)`."""
        texts = [self.dims[d].text for d in dims]
        return "(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")"

    def longest(self, dims) -> int:
        """The most elements the dimensions `dims` span in any run."""
        return math.prod(max(self.dims[d].sizes) for d in dims)


def random_program(rng) -> Program:
    """A DAG of 2-5 computes over 1-3 inputs, with its NumPy reference."""
    dtype = rng.choices(["float32", "float64", "int32"], [0.75, 0.1, 0.15])[0]
    return _Builder(rng, dtype).build()


class _Builder:
    def __init__(self, rng, dtype):
        self.rng, self.dtype = rng, dtype
        self.is_int = dtype == "int32"
        self.prog = Program(dtype, self._dims(), [], [], [])
        self.zero = "0" if self.is_int else "0.0"

    def _dims(self) -> list[Dim]:
        """1-3 dimensions; a symbolic one gets a second size for a second run."""
        rng = self.rng
        count = rng.choice([1, 2, 2, 3, 3])
        while True:
            symbolic = [rng.random() < 0.35 for _ in range(count)]
            sizes = [tuple(rng.sample(SIZES, 2 if sym else 1)) for sym in symbolic]
            if math.prod(max(n) for n in sizes) <= MAX_ELEMENTS:
                return [Dim(d, n, sym) for d, (n, sym) in enumerate(zip(sizes, symbolic))]

    def build(self) -> Program:
        prog, rng = self.prog, self.rng
        for dim in prog.dims:
            if dim.symbolic:
                prog.tex_lines.append(f'{dim.text} = tex.var("{dim.text}")')
        all_dims = [d.index for d in prog.dims]
        for k in range(rng.choice([1, 1, 2, 3])):
            dims = all_dims[:] if k == 0 else rng.sample(all_dims, rng.randint(1, len(all_dims)))
            if k == 0:
                rng.shuffle(dims)
            self._input("ABX"[k], tuple(dims))
        if not self.is_int and rng.random() < 0.3:   # read through casts and as indices
            self._input("M", tuple(rng.sample(all_dims, rng.randint(1, len(all_dims)))), "int32")
        for k in range(rng.randint(2, 5)):
            self._stage("CDEFG"[k])
        sinks = [t for t in prog.stages if t.readers == 0]
        extra = [t for t in prog.stages if t.readers and rng.random() < 0.1][:1]
        prog.outputs = [t for t in prog.stages if t in sinks or t in extra]
        return prog

    def _input(self, name, dims, dtype=None):
        prog, dtype = self.prog, dtype or self.dtype
        prog.inputs.append(TensorInfo(name, dims, INPUT_MAG[dtype], is_input=True,
                                      dtype="" if dtype == self.dtype else dtype))
        prog.tex_lines.append(f'{name} = tex.placeholder({prog.shape(dims)}, '
                              f'"{dtype}", name="{name}")')

    # --- stages -----------------------------------------------------------
    def _stage(self, name):
        rng, prog = self.rng, self.prog
        tensors = prog.inputs + prog.stages
        primary = prog.stages[-1] if prog.stages and rng.random() < 0.6 else rng.choice(tensors)
        domain = list(primary.dims)
        if rng.random() < 0.3:
            rng.shuffle(domain)                               # a transposed read
        missing = [d.index for d in prog.dims if d.index not in domain]
        if missing and rng.random() < 0.25:
            domain.insert(rng.randint(0, len(domain)), rng.choice(missing))   # a broadcast
        reduce_dims = []
        if not self.is_int and len(domain) >= 2 and rng.random() < 0.4:
            count = 2 if len(domain) == 3 and rng.random() < 0.4 else 1
            reduce_dims = rng.sample(domain, count)
        out_dims = [d for d in domain if d not in reduce_dims]
        self.scope = {d: (f"k{d}" if d in reduce_dims else f"i{d}") for d in domain}
        body = self._expr(rng.randint(1, 3), primary)
        if reduce_dims:
            info = self._reduction(name, out_dims, reduce_dims, body)
        else:
            info = self._elementwise(name, out_dims, body)
        prog.stages.append(info)

    def _elementwise(self, name, out_dims, body: Value) -> TensorInfo:
        prog = self.prog
        params = ", ".join(self.scope[d] for d in out_dims)
        shape = prog.shape(out_dims)
        prog.tex_lines.append(f'{name} = tex.compute({shape}, '
                              f'lambda {params}: {body.tex}, name="{name}")')
        prog.reference_lines += [f"{params}, = grid{shape}",
                                 f"{name} = np.broadcast_to({body.np}, {shape})"]
        return TensorInfo(name, tuple(out_dims), body.mag, body.length)

    def _reduction(self, name, out_dims, reduce_dims, body: Value) -> TensorInfo:
        rng, prog = self.rng, self.prog
        kind = rng.choice(["sum", "sum", "max", "min"])
        axes = [self.scope[d] for d in reduce_dims]
        for d, k in zip(reduce_dims, axes):
            prog.tex_lines.append(f'{k} = tex.reduce_axis((0, {prog.dims[d].text}), name="{k}")')
        where, np_where, tex_where = None, None, ""
        if rng.random() < 0.3:
            where, np_where = self._reduce_condition(kind, out_dims, reduce_dims)
            tex_where = f", where={where}"
        params = ", ".join(self.scope[d] for d in out_dims)
        prog.tex_lines.append(
            f'{name} = tex.compute({prog.shape(out_dims)}, lambda {params}: '
            f'tex.{kind}({body.tex}, axis=[{", ".join(axes)}]{tex_where}), name="{name}")')
        dims = out_dims + reduce_dims
        shape = prog.shape(dims)
        identity = {"sum": "0.0", "max": "-np.inf", "min": "np.inf"}[kind]
        value = body.np if where is None else f"np.where({np_where}, {body.np}, {identity})"
        positions = tuple(range(len(out_dims), len(dims)))
        prog.reference_lines += [
            f"{', '.join(self.scope[d] for d in dims)}, = grid{shape}",
            f"{name} = np.{kind}(np.broadcast_to({value}, {shape}), axis={positions})"]
        length = prog.longest(reduce_dims)
        mag = body.mag * length if kind == "sum" else body.mag
        return TensorInfo(name, tuple(out_dims), mag, body.length * length)

    def _reduce_condition(self, kind, out_dims, reduce_dims) -> tuple[str, str]:
        """A `where=` (tex, NumPy); for max and min one that keeps reduction index 0, so
        that no output reduces nothing (to an infinity)."""
        if kind == "sum" and self.rng.random() < 0.5:
            return self._condition()
        k = self.scope[self.rng.choice(reduce_dims)]
        if out_dims and self.rng.random() < 0.6:
            return (f"({k} <= {self.scope[self.rng.choice(out_dims)]})",) * 2
        return (f"({k} % 2 == 0)",) * 2

    # --- expressions ----------------------------------------------------------
    def _expr(self, depth: int, primary=None) -> Value:
        """A random expression; `primary` (a tensor) is read somewhere in it."""
        rng = self.rng
        if depth == 0:
            return self._leaf(primary)
        if rng.random() < 0.25:
            value = self._unary(self._reading(self._expr(depth - 1, primary)))
        elif rng.random() < 0.2:
            value = self._select(depth, primary)
        else:
            left = rng.random() < 0.5
            a = self._expr(depth - 1, primary if left else None)
            b = self._expr(rng.randint(0, depth - 1), None if left else primary)
            value = self._binary(a if b.reads else self._reading(a), b)
        return value

    def _reading(self, value: Value) -> Value:
        """`value` if it reads a tensor, else a read: an operation on constants alone would
        be folded by Python or typed by tex's defaults (int64, float32), not the program's."""
        return value if value.reads else self._leaf(read=True)

    def _leaf(self, tensor=None, read=False) -> Value:
        rng = self.rng
        if tensor is None and not read and rng.random() < 0.15:
            c = rng.choice(INT_CONSTS if self.is_int else FLOAT_CONSTS)
            return Value(c, c, abs(float(c)))
        candidates = [t for t in self.prog.inputs + self.prog.stages
                      if set(t.dims) <= set(self.scope)]
        return self._read(tensor or rng.choice(candidates))

    def _read(self, t: TensorInfo) -> Value:
        """`t` read at the current axes, one index sometimes moved (see `_moved`)."""
        t.readers += 0 if t.is_input else 1
        tex_index = [self.scope[d] for d in t.dims]
        np_index, guard = list(tex_index), None
        if self.rng.random() < 0.35:
            pos = self.rng.randrange(len(tex_index))
            tex_index[pos], np_index[pos], guard = self._moved(tex_index[pos],
                                                               self.prog.dims[t.dims[pos]])
        value = Value(f"{t.name}[{', '.join(tex_index)}]",
                      f"at({t.name}, {', '.join(np_index)})", t.mag, t.length, reads=True)
        if t.dtype:  # an integer input in a float program
            value.tex = f'tex.cast("{self.dtype}", {value.tex})'
            value.np = f"{value.np}.astype(ftype)"
        if guard:
            value.tex = f"tex.if_then_else({guard}, {value.tex}, {self.zero})"
            value.np = f"np.where({guard}, {value.np}, {self.zero})"
        return value

    def _moved(self, v: str, dim: Dim) -> tuple[str, str, str | None]:
        """(tex index, NumPy index, guard) near axis variable `v` of dimension `dim`.

        Shifted (guarded by an if_then_else, or clamped), reversed, halved, doubled
        (clamped) or wrapped around: each stays inside the dimension.
        """
        n, c = dim.text, self.rng.choice([1, 2])
        style = self.rng.choice(["back", "forward", "clamp_low", "clamp_high", "reverse",
                                 "half", "double", "wrap", "gather"])
        indices = [t for t in self.prog.inputs if (t.dtype or self.dtype) == "int32"
                   and set(t.dims) <= set(self.scope)]
        if style == "gather" and indices:   # at a position read from an integer input
            t = self.rng.choice(indices)
            at = ", ".join(self.scope[d] for d in t.dims)
            return f"{t.name}[{at}] % {n}", f"at({t.name}, {at}) % {n}", None
        return {
            "back": (f"{v} - {c}", f"{v} - {c}", f"({v} >= {c})"),
            "forward": (f"{v} + {c}", f"{v} + {c}", f"({v} + {c} < {n})"),
            "clamp_low": (f"tex.max({v} - {c}, 0)", f"np.maximum({v} - {c}, 0)", None),
            "clamp_high": (f"tex.min({v} + {c}, {n} - 1)", f"np.minimum({v} + {c}, {n} - 1)",
                           None),
            "reverse": (f"{n} - 1 - {v}", f"{n} - 1 - {v}", None),
            "half": (f"{v} // 2", f"{v} // 2", None),
            "double": (f"tex.min({v} * 2, {n} - 1)", f"np.minimum({v} * 2, {n} - 1)", None),
            "wrap": (f"({v} + {c}) % {n}", f"({v} + {c}) % {n}", None),
        }.get(style, (v, v, None))

    def _unary(self, a: Value) -> Value:
        if self.is_int:
            op = self.rng.choice(["neg", "abs"])
        else:
            op = self.rng.choice(["neg", "abs", "sqrt", "exp", "tanh", "sigmoid", "exp_tanh"])
        tex_fmt, np_fmt, mag = {
            "neg": ("(-{})", "(-{})", a.mag),
            "abs": ("tex.abs({})", "np.abs({})", a.mag),
            "sqrt": ("tex.sqrt(tex.abs({}) + 1.0)", "np.sqrt(np.abs({}) + 1.0)",
                     math.sqrt(a.mag + 1)),
            "exp": ("tex.exp(tex.min({}, 2.0))", "np.exp(np.minimum({}, 2.0))", math.exp(2)),
            "tanh": ("tex.tanh({})", "np.tanh({})", 1.0),
            "sigmoid": ("tex.sigmoid({})", "sigmoid({})", 1.0),
            "exp_tanh": ("tex.exp(tex.tanh({}))", "np.exp(np.tanh({}))", math.e),
        }[op]
        return Value(tex_fmt.format(a.tex), np_fmt.format(a.np), mag, a.length, a.reads)

    def _binary(self, a: Value, b: Value) -> Value:
        ops = ["+", "-", "*", "max", "min"] + (["//", "%"] if self.is_int else ["/"])
        op = self.rng.choice(ops)
        if op == "*" and a.mag * b.mag > MAG_CAP[self.dtype]:
            op = "+"
        if op in ("+", "-") and a.mag + b.mag > MAG_CAP[self.dtype]:
            op = "max"
        reads, length = a.reads or b.reads, max(a.length, b.length)
        if op in ("+", "-", "*"):
            mag = a.mag * b.mag if op == "*" else a.mag + b.mag
            return Value(f"({a.tex} {op} {b.tex})", f"({a.np} {op} {b.np})", mag, length, reads)
        if op in ("max", "min"):
            return Value(f"tex.{op}({a.tex}, {b.tex})", f"np.{op}imum({a.np}, {b.np})",
                         max(a.mag, b.mag), length, reads)
        one = "1" if self.is_int else "1.0"
        b = self._reading(b)  # tex.abs(2) would be an int64 (or float32) constant
        mag = a.mag if op in ("/", "//") else b.mag + 1
        return Value(f"({a.tex} {op} (tex.abs({b.tex}) + {one}))",
                     f"({a.np} {op} (np.abs({b.np}) + {one}))",
                     mag, max(a.length, b.length), reads=True)

    def _select(self, depth: int, primary) -> Value:
        cond_tex, cond_np = self._condition()
        a = self._expr(depth - 1, primary)
        b = self._expr(self.rng.randint(0, depth - 1))
        a = a if b.reads else self._reading(a)
        return Value(f"tex.if_then_else({cond_tex}, {a.tex}, {b.tex})",
                     f"np.where({cond_np}, {a.np}, {b.np})",
                     max(a.mag, b.mag), max(a.length, b.length), a.reads or b.reads)

    def _condition(self) -> tuple[str, str]:
        """A comparison of an input with a constant, or of the axes (never of rounded values)."""
        rng = self.rng
        names = list(self.scope.values())
        inputs = [t for t in (self.prog.inputs + (self.prog.stages if self.is_int else []))
                  if set(t.dims) <= set(self.scope)]
        if inputs and rng.random() < 0.6:
            x = self._read(rng.choice(inputs))
            c = rng.choice(["0", "1", "-2"] if self.is_int else ["0.0", "0.5", "-0.25"])
            op = rng.choice(["<", ">", "<=", ">="])
            return f"({x.tex} {op} {c})", f"({x.np} {op} {c})"
        a, b = rng.choice(names), rng.choice(names)
        if a != b and rng.random() < 0.5:
            return (f"({a} < {b})",) * 2
        return (f"({a} % 2 == 0)",) * 2
