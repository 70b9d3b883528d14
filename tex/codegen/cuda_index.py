"""Which C type a CUDA kernel computes its int64 indices in: `index_fits_int32`.

Loop IR computes every index in int64. On a GPU, 64-bit integer arithmetic
costs two registers per value and several instructions per operation, so
`tex.codegen.cuda` emits a kernel's int64 scalars (loop variables, thread
indices, `Let`s, casts to int64, index arithmetic) as `int` when this module
proves that 32 bits are exact for that kernel, and as `long long` otherwise.

Guarantee: `index_fits_int32(launch)` is True only if every int64 value the
kernel's body computes (each int64 node of each expression, each loop's
start and end) lies in [-2^31, 2^31) for every thread of the launch. The
analysis is interval arithmetic over constant bounds: loop variables range
over their loops, `threadIdx`/`blockIdx` over the launch's block and grid,
`Let` variables over their values. A value it cannot bound by constants (a
size variable, an int64 read from memory, a call) makes the answer False, so
kernels over symbolic sizes keep 64-bit indices: their sizes are known only
at the call, and a kernel compiled once serves every size.
"""
from __future__ import annotations

from tex.dtype import int64
from tex.expr import Binary, Const, Expr, Var
from tex.ir import For, KernelLaunch, LetStmt
from tex.visitor import Visitor, child_fields, handler

_INT32_RANGE = (-2**31, 2**31 - 1)

Bounds = tuple[int, int] | None


def index_fits_int32(launch: KernelLaunch) -> bool:
    """Whether every int64 value `launch`'s body computes fits an int (module docstring)."""
    checker = _Int32Checker(launch)
    checker.visit(launch.body)
    return checker.fits


class _Int32Checker(Visitor):
    """Walks a kernel body with the constant range of every variable in scope; `fits`
    turns False at the first int64 value not proven to fit in 32 bits."""

    def __init__(self, launch: KernelLaunch):
        self.fits = True
        self.ranges: dict[Var, tuple[int, int]] = {}
        self.threads: dict[str, Bounds] = {}
        for prefix, dims in (("blockIdx", launch.grid), ("threadIdx", launch.block)):
            for axis, dim in zip("xyz", dims):
                self.threads[f"{prefix}.{axis}"] = \
                    (0, dim.value - 1) if isinstance(dim, Const) else None

    def visit(self, node):
        if self.fits and isinstance(node, Expr):
            self.bounds(node)
        elif self.fits:
            super().visit(node)

    def visit_For(self, s: For):
        start, extent = self.bounds(s.min), self.bounds(s.extent)
        if start is None or extent is None:
            self.fits = False
            return
        self._check((start[0] + extent[0], start[1] + extent[1]))  # the loop's end
        self.ranges[s.var] = (start[0], start[1] + max(extent[1], 1) - 1)
        self.visit(s.body)

    def visit_LetStmt(self, s: LetStmt):
        value = self.bounds(s.value)
        if value is not None:
            self.ranges[s.var] = value
        self.visit(s.body)

    # --- expressions -----------------------------------------------------
    def bounds(self, e: Expr) -> Bounds:
        """The constant range of scalar (or each lane of vector) `e`, None if unknown;
        an int64 `e` (and each int64 node inside it) must fit in 32 bits."""
        method = handler(self, "bounds_", e)
        if method is not None:
            found = method(e)
        else:
            for name in child_fields(type(e)):
                for child in _as_tuple(getattr(e, name)):
                    self.bounds(child)
            found = None
        if e.dtype.element == int64:
            self._check(found)
        return found

    def _check(self, found: Bounds):
        if found is None or found[0] < _INT32_RANGE[0] or found[1] > _INT32_RANGE[1]:
            self.fits = False

    def bounds_Const(self, e):
        return (int(e.value), int(e.value)) if e.dtype.is_int else None

    def bounds_Var(self, e):
        return self.ranges.get(e)

    def bounds_ThreadIndex(self, e):
        return self.threads[e.tag]

    def bounds_Broadcast(self, e):
        return self.bounds(e.value)

    def bounds_Ramp(self, e):
        base, stride = self.bounds(e.base), self.bounds(e.stride)
        if base is None or stride is None:
            return None
        last = [b + s * (e.lanes - 1) for b in base for s in stride]
        return min(base[0], *last), max(base[1], *last)

    def bounds_Cast(self, e):
        value = self.bounds(e.value)
        if not e.dtype.is_int:
            return None
        if e.value.dtype.is_bool:
            return (0, 1)
        return value if e.value.dtype.is_int else None

    def bounds_Select(self, e):
        self.bounds(e.cond)
        a, b = self.bounds(e.true_value), self.bounds(e.false_value)
        return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))

    def bounds_Let(self, e):
        value = self.bounds(e.value)
        if value is not None:
            self.ranges[e.var] = value
        return self.bounds(e.body)

    def bounds_Binary(self, e: Binary):
        a, b = self.bounds(e.a), self.bounds(e.b)
        if a is None or b is None or not e.dtype.is_int:
            return None
        return _binary(e.op, a, b)


def _binary(op: str, a: tuple[int, int], b: tuple[int, int]) -> Bounds:
    """The range of `a op b` for integer operands in the ranges `a` and `b`."""
    if op in ("add", "sub"):
        return (a[0] + b[0], a[1] + b[1]) if op == "add" else (a[0] - b[1], a[1] - b[0])
    if op in ("mul", "min", "max"):
        fn = {"mul": lambda x, y: x * y, "min": min, "max": max}[op]
        corners = [fn(x, y) for x in a for y in b]
        return min(corners), max(corners)
    if op == "floordiv" and b[0] >= 1:
        corners = [x // y for x in a for y in b]
        return min(corners), max(corners)
    if op == "floormod" and b[0] >= 1:
        return (0, b[1] - 1)
    return None


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else () if value is None else (value,)
