"""Tensors and the operations that produce them: what to compute.

* `placeholder(shape, dtype, name)` declares an input.
* `compute(shape, fcompute, name)` declares `T[i, j, ...] = fcompute(i, j, ...)`;
  the body may be one reduction (`tex.sum(..., axis=k)`) or, for a tuple
  reducer such as argmax, a tuple of reductions giving several outputs.
* `reduce_axis((lo, hi), name)` declares a reduction variable.
* `compute(shape, lambda i: intrin(A[i, 0:16], B[i, 0:16]), name)`, with fewer
  index arguments than dimensions, calls a tensor intrinsic on regions of
  tensors (TE's tensor compute op; `tex.tensor_compute` expands it).
* `comm_reducer(combine, identity, name)` declares a commutative reducer;
  `sum`, `max` and `min` are the built-in ones.
* `ExternOp` holds tensors computed by a statement tex does not look into
  (made by `tex.extern_op.extern`).

Operations and tensors are immutable and compared by identity. Shapes are
int64 expressions, possibly over symbolic sizes made with `var`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from tex import ops
from tex.dtype import DType, INDEX, as_dtype
from tex.errors import ExprError
from tex.expr import Const, Expr, Reduce, TensorRead, Var, structurally_equal
from tex.ir import Stmt
from tex.visitor import collect, substitute


@dataclass(frozen=True, slots=True)
class Range:
    """The integers `[min, min + extent)`."""

    min: Expr
    extent: Expr

    @staticmethod
    def of(value) -> "Range":
        """From a Range, an `(lo, hi)` pair (hi exclusive) or a single extent."""
        if isinstance(value, Range):
            return value
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ExprError(f"a range is (lo, hi), got {value!r}")
            lo, hi = (ops.cast(INDEX, ops.as_expr(v)) for v in value)
            return Range(lo, ops.binary("sub", hi, lo))
        return Range(Const(INDEX, 0), ops.cast(INDEX, ops.as_expr(value)))


def _forward(name):
    def method(self, *args):
        return getattr(self.var, name)(*args)
    method.__name__ = name
    return method


class IterVar:
    """An iteration axis: a variable with its domain.

    `kind` is "data" for the axes of a compute, "reduce" for reduction axes;
    schedules add axes of the same kinds by splitting and fusing (and later
    "thread" axes for GPU binding). Arithmetic on an IterVar acts on its
    variable, so `i + 1` works inside a compute.
    """

    __slots__ = ("var", "dom", "kind")

    #: TVM's iteration types (`IterVar.Vectorized`, ...), as `Stage.iter_var_attrs` gives
    #: them for a leaf axis.
    DataPar, ThreadIndex, CommReduce, Ordered, DimInfo = 0, 1, 2, 3, 4
    Unrolled, Vectorized, Parallelized, Tensorized = 5, 6, 7, 8

    def __init__(self, var: Var, dom: Range | None, kind: str):
        self.var, self.dom, self.kind = var, dom, kind

    @property
    def name(self) -> str:
        return self.var.name

    def __repr__(self):
        return f"IterVar({self.name}, {self.kind})"

    for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                  "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__truediv__",
                  "__rtruediv__", "__neg__", "__lt__", "__le__", "__gt__", "__ge__", "equal"):
        locals()[_name] = _forward(_name)
    del _name


def var(name: str = "n", dtype="int64") -> Var:
    """A variable bound when a kernel is called: a symbolic size (an integer dtype), or
    a scalar parameter passed by value in `build`'s args (a bool, int or float dtype)."""
    dtype = as_dtype(dtype)
    if dtype.lanes != 1 or not (dtype.is_int or dtype.is_float or dtype.is_bool):
        raise ExprError(f"var {name!r}: a variable holds one bool, int or float value, got "
                        f"{dtype}")
    return Var(name, dtype)


def size_var(name: str = "n", dtype="int64") -> Var:
    """A symbolic size known to be >= 0: `var`, since every size variable of a kernel is
    bound by a dimension of an argument, and a dimension is never negative.
    TVM: `te.size_var`."""
    if not as_dtype(dtype).is_int:
        raise ExprError(f"var {name!r}: symbolic sizes are integers, got {as_dtype(dtype)}")
    return var(name, dtype)


def const(value, dtype=None) -> Expr:
    """A constant; ints default to int64, floats to float32."""
    return ops.const(value, dtype)


def reduce_axis(dom, name: str = "k") -> IterVar:
    """A reduction axis over `dom` = (lo, hi) (hi exclusive) or an extent."""
    return IterVar(Var(name), Range.of(dom), "reduce")


class Tensor:
    """One output of an operation. `T[i, j]` reads it inside another compute."""

    __slots__ = ("op", "value_index")

    def __init__(self, op, value_index: int):
        self.op, self.value_index = op, value_index

    @property
    def shape(self) -> tuple[Expr, ...]:
        shapes = getattr(self.op, "shapes", None)  # an extern's or scan's outputs may differ
        return self.op.shape if shapes is None else shapes[self.value_index]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> DType:
        return self.op.dtypes[self.value_index]

    @property
    def name(self) -> str:
        if self.op.num_outputs == 1:
            return self.op.name
        return f"{self.op.name}_v{self.value_index}"

    def __getitem__(self, indices) -> TensorRead:
        """`A[i, j]`; `A[i][j]` too (`A[i]` of a 2-d tensor is a `TensorSlice`); `A[i, 0:16]`
        is a `tex.tensor_compute.TensorRegion`, for a tensor intrinsic's call."""
        if not isinstance(indices, tuple):
            indices = (indices,)
        if any(isinstance(index, slice) for index in indices):
            from tex.tensor_compute import TensorRegion  # builds on this module
            return TensorRegion.of(self, indices)
        if 0 < len(indices) < len(self.shape):
            return TensorSlice(self, indices)
        exprs = []
        for index in indices:
            e = ops.as_expr(index, INDEX)
            exprs.append(ops.cast(INDEX, e) if e.dtype.is_int and e.dtype != INDEX else e)
        return TensorRead(self, tuple(exprs))

    def __call__(self, *indices) -> TensorRead:
        """`A(i, j)` is `A[i, j]`; `A()` reads a 0-d tensor (TVM's spellings)."""
        return self[tuple(indices)]

    def __repr__(self):
        return f"Tensor({self.name}, shape={list(map(str, self.shape))}, {self.dtype})"


class TensorSlice:
    """The first indices of a tensor read, waiting for the rest: `A[i]` in `A[i][j]`."""

    def __init__(self, tensor: Tensor, indices: tuple):
        self.tensor, self.indices = tensor, indices

    def __getitem__(self, more):
        return self.tensor[self.indices + (more if isinstance(more, tuple) else (more,))]

    def __repr__(self):
        return (f"TensorSlice({self.tensor.name}, {len(self.indices)} of "
                f"{len(self.tensor.shape)} indices given)")

    def _incomplete(self, *_):
        raise ExprError(f"tensor {self.tensor.name} has {len(self.tensor.shape)} dimensions but "
                        f"{len(self.indices)} index(es) were given; index it fully "
                        f"({self.tensor.name}[i][j] or {self.tensor.name}[i, j])")


for _operator in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
                  "rfloordiv", "mod", "rmod", "pow", "rpow", "neg", "lt", "le", "gt", "ge",
                  "bool"):
    setattr(TensorSlice, f"__{_operator}__", TensorSlice._incomplete)
del _operator


class PlaceholderOp:
    """An input tensor of a given shape and dtype."""

    def __init__(self, name: str, shape: tuple[Expr, ...], dtype: DType):
        self.name, self.shape, self.dtypes = name, shape, (dtype,)
        self.outputs = (Tensor(self, 0),)

    num_outputs = 1

    def output(self, index: int = 0) -> Tensor:
        return self.outputs[index]

    @property
    def input_tensors(self) -> tuple:
        return ()

    def __repr__(self):
        return f"placeholder {self.name}"


class ComputeOp:
    """`out_k[axis] = body[k]` for every point of the axes' domains.

    `reduce_axis` is non-empty when the body is a reduction; then every body
    element is a `Reduce` over exactly those axes. `tensor_intrin` is set when
    the body is a tensor intrinsic's computation (a
    `tex.tensor_compute.TensorIntrinUse`): the stage's inner axes are then
    tensorized with it.
    """

    def __init__(self, name: str, axis: tuple[IterVar, ...], body: tuple[Expr, ...],
                 tag: str = "", tensor_intrin=None):
        self.name, self.axis, self.body, self.tag = name, axis, body, tag
        self.tensor_intrin = tensor_intrin
        self.reduce_axis = body[0].axes if isinstance(body[0], Reduce) else ()
        self.shape = tuple(iv.dom.extent for iv in axis)
        self.dtypes = tuple(b.dtype for b in body)
        self.outputs = tuple(Tensor(self, k) for k in range(len(body)))

    @property
    def num_outputs(self) -> int:
        return len(self.body)

    def output(self, index: int = 0) -> Tensor:
        return self.outputs[index]

    @property
    def input_tensors(self) -> tuple[Tensor, ...]:
        """The tensors this op reads, in first-use order."""
        seen = {}
        for b in self.body:
            for read in collect(b, lambda n: isinstance(n, TensorRead)):
                seen.setdefault(read.tensor, None)
        return tuple(seen)

    def with_body(self, body: tuple[Expr, ...], axis=None, tensor_intrin=None) -> "ComputeOp":
        """A new op of the same name computing `body` (schedules rewrite dataflow with it);
        it calls no intrinsic unless `tensor_intrin` says so."""
        return ComputeOp(self.name, self.axis if axis is None else axis, body, self.tag,
                         tensor_intrin)

    def __repr__(self):
        return f"compute {self.name}"


def _whole_float_as_int(extent, what: str):
    """A float extent that is a whole number (`N / bn` with N = 1024, bn = 32) as that int,
    as TE accepts it; any other float is an error naming the dimension."""
    value = extent.value if isinstance(extent, Const) and extent.dtype.is_float else extent
    if not isinstance(value, float):
        return extent
    if not value.is_integer():
        raise ExprError(f"{what} must be a whole number, got {value}")
    return int(value)


def _shape(shape, what: str) -> tuple[Expr, ...]:
    if not isinstance(shape, (tuple, list)):
        shape = (shape,)
    result = []
    for d, extent in enumerate(shape):
        e = ops.as_expr(_whole_float_as_int(extent, f"{what}: dimension {d}"), INDEX)
        if not e.dtype.is_int:
            raise ExprError(f"{what}: dimension {d} must be an integer, got {e} ({e.dtype})")
        if isinstance(e, Const) and e.value <= 0:
            raise ExprError(f"{what}: dimension {d} must be positive, got {e.value}")
        result.append(ops.cast(INDEX, e))
    return tuple(result)


def placeholder(shape, dtype="float32", name: str = "placeholder") -> Tensor:
    """An input tensor."""
    return PlaceholderOp(name, _shape(shape, f"placeholder {name}"), as_dtype(dtype)).output(0)


def _axis_names(fcompute, ndim: int) -> list[str]:
    """The lambda's parameter names, to name the axes (i0, i1, ... for `*args`); fewer
    than `ndim` where it takes fewer (an intrinsic call computes the others)."""
    try:
        params = list(inspect.signature(fcompute).parameters.values())
    except (TypeError, ValueError):
        return [f"i{d}" for d in range(ndim)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return [f"i{d}" for d in range(ndim)]
    return [p.name for p in params]


def compute(shape, fcompute, name: str = "compute", tag: str = ""):
    """`T[i, ...] = fcompute(i, ...)`; returns a Tensor, or a list for several outputs.

    A function of fewer indices than the shape has dimensions returns a tensor
    intrinsic's call, `intrin(A[i, 0:16], B[i, 0:16])`; the trailing dimensions are
    the intrinsic's output (see `tex.tensor_compute`). TVM: `te.compute`.
    """
    shape = _shape(shape, f"compute {name}")
    names = _axis_names(fcompute, len(shape))
    if len(names) > len(shape):
        raise ExprError(f"compute {name}: the shape has {len(shape)} dimension(s) but the "
                        f"function takes {len(names)} index argument(s)")
    axis = tuple(IterVar(Var(n), Range(Const(INDEX, 0), e), "data")
                 for n, e in zip(names, shape))
    body = fcompute(*(iv.var for iv in axis))
    from tex.tensor_compute import TensorIntrinCall, intrin_compute  # builds on this module
    if len(names) < len(shape) or isinstance(body, TensorIntrinCall):
        return intrin_compute(name, tag, shape, axis, body)
    body = tuple(body) if isinstance(body, (tuple, list)) else (body,)
    body = tuple(ops.as_expr(b) for b in body)
    _check_body(name, body)
    op = ComputeOp(name, axis, body, tag)
    return op.outputs[0] if op.num_outputs == 1 else list(op.outputs)


def _check_body(name: str, body: tuple[Expr, ...]):
    reduces = [b for b in body if isinstance(b, Reduce)]
    if reduces and len(reduces) != len(body):
        raise ExprError(f"compute {name}: a body that reduces must be all reductions")
    if reduces:
        first = reduces[0]
        for k, r in enumerate(reduces):
            if (r.combiner is not first.combiner or r.axes != first.axes
                    or r.value_index != k or not structurally_equal(r.sources, first.sources)):
                raise ExprError(f"compute {name}: the outputs of a tuple reduction must come "
                                "from one reducer call, in order")
    for b in body:
        inner = b.sources + (b.condition,) if isinstance(b, Reduce) else (b,)
        for e in inner:
            if collect(e, lambda n: isinstance(n, Reduce)):
                raise ExprError(f"compute {name}: a reduction must be the whole body of a "
                                "compute; put the inner reduction in a compute of its own")


class CommReducer:
    """A commutative, associative reducer for given operand dtypes.

    `lhs` and `rhs` are tuples of variables (the accumulator and the new
    value), `results` the combined values, `identities` the initial values.
    """

    def __init__(self, name, lhs, rhs, results, identities):
        self.name, self.lhs, self.rhs = name, lhs, rhs
        self.results, self.identities = results, identities
        self.result_dtypes = tuple(r.dtype for r in results)

    def combine(self, *values):
        """The combined value of a single-value reducer applied to two operands."""
        return substitute(self.results[0], dict(zip(self.lhs + self.rhs, values)))


class Reducer:
    """A reducer family (`tex.sum`, or one made by `comm_reducer`), typed at each call.

    `reducer(expr, axis=k, where=cond)` returns a `Reduce`; for a tuple reducer
    `reducer((e0, e1), axis=k)` returns a tuple of them.
    """

    def __init__(self, fcombine, fidentity, name: str):
        self.fcombine, self.fidentity, self.name = fcombine, fidentity, name
        self._typed: dict[tuple[DType, ...], CommReducer] = {}

    def typed(self, dtypes: tuple[DType, ...]) -> CommReducer:
        if dtypes not in self._typed:
            lhs = tuple(Var(f"x{k}", t) for k, t in enumerate(dtypes))
            rhs = tuple(Var(f"y{k}", t) for k, t in enumerate(dtypes))
            tuple_form = len(dtypes) > 1
            results = self.fcombine(lhs, rhs) if tuple_form else self.fcombine(lhs[0], rhs[0])
            identities = self.fidentity(*dtypes)
            results = results if tuple_form else (results,)
            identities = identities if isinstance(identities, (tuple, list)) else (identities,)
            if len(results) != len(dtypes) or len(identities) != len(dtypes):
                raise ExprError(f"reducer {self.name}: combine and identity must return "
                                f"{len(dtypes)} value(s)")
            results = tuple(ops.cast(t, r) for t, r in zip(dtypes, results))
            identities = tuple(ops.cast(t, ops.as_expr(i, t)) for t, i in zip(dtypes, identities))
            self._typed[dtypes] = CommReducer(self.name, lhs, rhs, results, identities)
        return self._typed[dtypes]

    def __call__(self, source, axis, where=None):
        if where is None and not isinstance(axis, (IterVar, tuple, list)):
            # `tex.max(a, b)`: combine two values elementwise, as TVM's reducers do.
            a, b = ops._operands(source, axis)
            return self.typed((a.dtype,)).combine(a, b)
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        for a in axes:
            if not isinstance(a, IterVar) or a.kind != "reduce":
                raise ExprError(f"{self.name}: axis must be made with tex.reduce_axis, got {a!r}")
        tuple_form = isinstance(source, (tuple, list))
        sources = tuple(ops.as_expr(s) for s in (source if tuple_form else (source,)))
        condition = ops.as_expr(True if where is None else where)
        if not condition.dtype.is_bool:
            raise ExprError(f"{self.name}: `where` must be a bool expression, got "
                            f"{condition.dtype}")
        combiner = self.typed(tuple(s.dtype for s in sources))
        nodes = tuple(Reduce(combiner, sources, axes, condition, k) for k in range(len(sources)))
        return nodes if tuple_form else nodes[0]


def comm_reducer(fcombine, fidentity, name: str = "reduce") -> Reducer:
    """A user-defined commutative reducer.

    `fcombine(x, y)` combines an accumulator with a value (for tuple reducers
    both are tuples and it returns a tuple); `fidentity(*dtypes)` gives the
    initial value(s).
    """
    return Reducer(fcombine, fidentity, name)


def max_value(dtype) -> Expr:
    """The largest value of `dtype` (+inf for floats; of a vector dtype, in every lane)."""
    dtype = as_dtype(dtype)
    if dtype.is_float:
        return ops.const(float("inf"), dtype)
    return ops.const(True if dtype.is_bool else (2 ** dtype.bits - 1 if dtype.kind == "uint"
                                                 else 2 ** (dtype.bits - 1) - 1), dtype)


def min_value(dtype) -> Expr:
    """The smallest value of `dtype` (-inf for floats; of a vector dtype, in every lane)."""
    dtype = as_dtype(dtype)
    if dtype.is_float:
        return ops.const(float("-inf"), dtype)
    return ops.const(False if dtype.is_bool else (0 if dtype.kind == "uint"
                                                  else -(2 ** (dtype.bits - 1))), dtype)


sum = Reducer(lambda x, y: x + y, lambda t: ops.const(0, t), "sum")  # noqa: A001
max = Reducer(ops.maximum, min_value, "max")  # noqa: A001
min = Reducer(ops.minimum, max_value, "min")  # noqa: A001


class ExternOp:
    """Tensors computed by a statement that tex runs as it is: usually `call_packed`, a
    call of a Python function (made by `tex.extern_op.extern`).

    The statement names the buffers `input_placeholders` (one per tensor of `inputs`)
    and `output_placeholders` (one per output, giving its shape and dtype); lowering
    binds them to the buffers the tensors get. An extern op has no axes, so its stage
    is computed whole, at the root, and cannot be scheduled.
    """

    axis = ()
    reduce_axis = ()

    def __init__(self, name: str, inputs, input_placeholders, output_placeholders,
                 statement: Stmt, tag: str = ""):
        self.name, self.inputs, self.tag = name, tuple(inputs), tag
        self.input_placeholders = tuple(input_placeholders)
        self.output_placeholders = tuple(output_placeholders)
        self.statement = statement
        self.shapes = tuple(b.shape for b in self.output_placeholders)
        self.shape = self.shapes[0]
        self.dtypes = tuple(b.dtype for b in self.output_placeholders)
        self.outputs = tuple(Tensor(self, k) for k in range(len(self.dtypes)))

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def output(self, index: int = 0) -> Tensor:
        return self.outputs[index]

    @property
    def input_tensors(self) -> tuple[Tensor, ...]:
        return self.inputs

    def __repr__(self):
        return f"extern {self.name}"

