"""A tensor intrinsic called inside `compute`: TE's tensor compute op.

With `vadd = tex.decl_tensor_intrin(z, lower_fn)` (z over (16,)),

    C = tex.compute((m, 16), lambda i: vadd(A[i, 0:16], B[i, 0:16]), name="C")

declares `C[i, 0:16] = vadd(A[i, 0:16], B[i, 0:16])`: the function takes
fewer indices than the shape has dimensions, and the trailing dimensions are
the intrinsic's output. Calling the intrinsic (`TensorIntrin.__call__`) gives
a `TensorIntrinCall`; `intrin_compute` turns it into an ordinary compute
whose body is the intrinsic's computation with each of its tensors replaced
by a region (its elements offset by the region's first index), its axes by
new axes of the compute (`ax0`, ...) and its scalar parameters by the call's
scalar inputs. The op carries a `TensorIntrinUse`, so its stage puts those
axes innermost and tensorizes them with the intrinsic: the outer axes stay
free to schedule, and the unscheduled body is what the intrinsic is checked
against.

Rules (each broken one raises ExprError naming the compute):

* One region per tensor of the intrinsic, in `TensorIntrin.inputs` order:
  `A[i, 0:16]` (a slice `lo:hi` per dimension, an index for extent 1),
  `A[i, j]` (extent 1 everywhere) or `A[i]` (the other dimensions whole). A
  tensor of rank r pairs with the last r dimensions of its region; the
  others must have extent 1. Other arguments are the scalar inputs, in
  order, one per scalar parameter (`scalar_inputs=[...]` gives them instead).
* The intrinsic's output pairs with the trailing dimensions of the shape
  the same way (leading extra dimensions of the output have extent 1).
* Extents must agree; where the intrinsic declares a variable (`(n,)`), the
  region binds it.
* `reduce_axis=` names reduction axes outside the intrinsic, which must
  reduce and must index some region with them: the compute reduces over
  them and the intrinsic's own reduction axes, and the tensorized tile
  lowers with the intrinsic's (reset, update).

TVM: `TensorIntrin.__call__` and `TensorComputeOp`.
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX
from tex.errors import ExprError
from tex.expr import Const, Expr, Reduce, TensorRead, Var
from tex.tensor import ComputeOp, IterVar, Range, Tensor, TensorSlice, _check_body
from tex.visitor import free_vars, substitute, transform


class TensorRegion:
    """A box of a tensor, `A[i, 0:16]`: per dimension its first index (`mins`) and its
    extent (1 where an index is given), for a tensor intrinsic's call (`TensorIntrin(...)`
    inside `compute`). TVM: `TensorSlice` with slices."""

    def __init__(self, tensor: Tensor, mins: tuple[Expr, ...], extents: tuple[Expr, ...]):
        self.tensor, self.mins, self.extents = tensor, mins, extents

    @staticmethod
    def of(tensor: Tensor, indices) -> "TensorRegion":
        """The region `tensor[indices]`: each index an expression (extent 1) or a slice
        `lo:hi` (step 1; `lo` defaults to 0, `hi` to the dimension); dimensions not
        given are taken whole."""
        if len(indices) > len(tensor.shape):
            raise ExprError(f"tensor {tensor.name} has {len(tensor.shape)} dimension(s), got "
                            f"{len(indices)} index(es)")
        mins, extents = [], []
        for d, index in enumerate(indices + (slice(None),) * (len(tensor.shape) - len(indices))):
            if not isinstance(index, slice):
                mins.append(_integer(tensor, d, index))
                extents.append(Const(INDEX, 1))
                continue
            if index.step not in (None, 1):
                raise ExprError(f"tensor {tensor.name}: slice {index} of dimension {d} must "
                                "have step 1")
            lo = _integer(tensor, d, 0 if index.start is None else index.start)
            hi = tensor.shape[d] if index.stop is None else _integer(tensor, d, index.stop)
            extent = ops.binary("sub", hi, lo)
            if (isinstance(lo, Const) and lo.value < 0) or \
                    (isinstance(extent, Const) and extent.value <= 0):
                raise ExprError(f"tensor {tensor.name}: slice {lo}:{hi} of dimension {d} must "
                                "run forward from an index >= 0")
            if isinstance(hi, Const) and isinstance(tensor.shape[d], Const) and \
                    hi.value > tensor.shape[d].value:
                raise ExprError(f"tensor {tensor.name}: slice {lo}:{hi} of dimension {d} runs "
                                f"past its extent {tensor.shape[d]}")
            mins.append(lo)
            extents.append(extent)
        return TensorRegion(tensor, tuple(mins), tuple(extents))

    def __repr__(self):
        dims = ", ".join(str(m) if isinstance(e, Const) and e.value == 1
                         else f"{m}:{ops.binary('add', m, e)}"
                         for m, e in zip(self.mins, self.extents))
        return f"{self.tensor.name}[{dims}]"

    def _not_a_value(self, *_):
        raise ExprError(f"{self!r} is a region of tensor {self.tensor.name} (it has slices), "
                        "not a value; pass it to a tensor intrinsic's call, or index every "
                        "dimension")


def _integer(tensor: Tensor, d: int, index) -> Expr:
    """`index` (of dimension `d` of `tensor`, or a slice's bound there) as an index, or
    an ExprError unless it is an integer."""
    e = ops.as_expr(index, INDEX)
    if e.dtype.lanes != 1 or not e.dtype.is_int:
        raise ExprError(f"tensor {tensor.name}: index {d} of a region must be a scalar "
                        f"integer, got {e} of {e.dtype}")
    return ops.cast(INDEX, e)


for _operator in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
                  "rfloordiv", "mod", "rmod", "pow", "rpow", "neg", "lt", "le", "gt", "ge",
                  "bool"):
    setattr(TensorRegion, f"__{_operator}__", TensorRegion._not_a_value)
del _operator


@dataclass(frozen=True)
class TensorIntrinUse:
    """A compute's body is the computation of tensor intrinsic `intrin` (a
    `tex.schedule.tensorize.TensorIntrin`) over its axes `inner` (data axes, then the
    intrinsic's reduction axes): the stage puts those loops innermost and tensorizes
    them with `intrin`. Made by `compute` for an intrinsic call."""

    intrin: object
    inner: tuple[IterVar, ...]
    scalars: tuple = ()  # (scalar parameter, the call's value for it), for what the
    #                      intrinsic's computation does not use itself


class TensorIntrinCall:
    """`intrin(regions..., scalars..., reduce_axis=...)` inside a compute, waiting for
    `compute` to give it its output (see the module doc)."""

    def __init__(self, intrin, regions: tuple[TensorRegion, ...], reduce_axis: tuple,
                 scalar_inputs: tuple[Expr, ...]):
        self.intrin, self.regions = intrin, regions
        self.reduce_axis, self.scalar_inputs = reduce_axis, scalar_inputs

    @staticmethod
    def of(intrin, args, reduce_axis=(), scalar_inputs=None) -> "TensorIntrinCall":
        """The call of `intrin` with `args`: regions of tensors and scalar inputs."""
        where = f"call of intrinsic {intrin.name}"
        regions, scalars = [], []
        for arg in args:
            if isinstance(arg, TensorRegion):
                regions.append(arg)
            elif isinstance(arg, TensorRead):
                regions.append(TensorRegion(arg.tensor, arg.indices,
                                            tuple(Const(INDEX, 1) for _ in arg.indices)))
            elif isinstance(arg, (TensorSlice, Tensor)):
                tensor, given = (arg, ()) if isinstance(arg, Tensor) else (arg.tensor, arg.indices)
                regions.append(TensorRegion.of(tensor, given))
            else:
                scalars.append(_scalar(arg, where))
        if scalar_inputs is not None:
            scalars = [_scalar(x, where) for x in scalar_inputs]
        axes = tuple(reduce_axis) if isinstance(reduce_axis, (tuple, list)) else (reduce_axis,)
        for k in axes:
            if not isinstance(k, IterVar) or k.kind != "reduce":
                raise ExprError(f"{where}: reduce_axis must be axes made with tex.reduce_axis, "
                                f"got {k!r}")
        return TensorIntrinCall(intrin, tuple(regions), axes, tuple(scalars))

    def __repr__(self):
        args = [repr(r) for r in self.regions] + [str(x) for x in self.scalar_inputs]
        return f"{self.intrin.name}({', '.join(args)})"


def _scalar(value, where: str) -> Expr:
    try:
        return ops.as_expr(value)
    except ExprError as e:
        raise ExprError(f"{where}: each argument is a tensor region (A[i, 0:16]) or a scalar "
                        f"input; {e}") from e


def intrin_compute(name: str, tag: str, shape: tuple, axis: tuple, call) -> Tensor:
    """The tensor of `compute(shape, fcompute, name, tag)` whose function, given the outer
    `axis`, returned `call` (see the module doc)."""
    where = f"compute {name}"
    if not isinstance(call, TensorIntrinCall):
        raise ExprError(f"{where}: the shape has {len(shape)} dimension(s) but the function "
                        f"takes {len(axis)} index argument(s) (and returns {call!r}, not a "
                        "tensor intrinsic's call, which alone may fill the others)")
    intrin = call.intrin
    trailing = shape[len(axis):]
    sizes = _bind_sizes(call, trailing, where)
    op = intrin.op
    inner = tuple(IterVar(Var(f"ax{d}"), Range(Const(INDEX, 0), e), "data")
                  for d, e in enumerate(trailing))
    lead = len(op.axis) - len(inner)
    values = dict(sizes)
    values.update({iv.var: Const(INDEX, 0) for iv in op.axis[:lead]})
    values.update({iv.var: new.var for iv, new in zip(op.axis[lead:], inner)})
    reduce = tuple(IterVar(Var(iv.name), Range(substitute(iv.dom.min, sizes),
                                               substitute(iv.dom.extent, sizes)), "reduce")
                   for iv in op.reduce_axis)
    values.update({iv.var: new.var for iv, new in zip(op.reduce_axis, reduce)})
    body = _body(call, values, reduce, where)
    _check_body(name, (body,))
    use = TensorIntrinUse(intrin, inner + reduce,
                          tuple((v, sizes[v]) for v in intrin.scalar_params))
    return ComputeOp(name, tuple(axis) + inner, (body,), tag, use).output(0)


def _bind_sizes(call: TensorIntrinCall, trailing: tuple, where: str) -> dict:
    """{intrinsic variable: value}: its scalar parameters bound to the call's scalar
    inputs, its variable extents to the regions' and the output's; the extents checked."""
    intrin = call.intrin
    if len(call.regions) != len(intrin.inputs):
        raise ExprError(f"{where}: intrinsic {intrin.name} takes {len(intrin.inputs)} tensor "
                        f"region(s) ({', '.join(t.name for t in intrin.inputs)}), got "
                        f"{len(call.regions)}: {call!r}")
    params = intrin.scalar_params
    if len(call.scalar_inputs) != len(params):
        raise ExprError(f"{where}: intrinsic {intrin.name} takes {len(params)} scalar "
                        f"input(s) ({', '.join(v.name for v in params) or 'none'}), got "
                        f"{len(call.scalar_inputs)}: {call!r}")
    sizes = {v: ops.cast(v.dtype, x) for v, x in zip(params, call.scalar_inputs)}
    for p, region in zip(intrin.inputs, call.regions):
        _pair(p.shape, region.extents, sizes,
              f"{where}: region {region!r} for {intrin.name}'s tensor {p.name}")
    out = intrin.output
    if len(trailing) > len(out.shape):
        raise ExprError(f"{where}: {len(trailing)} trailing dimension(s) are left to intrinsic "
                        f"{intrin.name}, whose output {out.name} has {len(out.shape)}")
    ones = (Const(INDEX, 1),) * (len(out.shape) - len(trailing))
    _pair(out.shape, ones + tuple(trailing), sizes,
          f"{where}: the trailing dimensions of its shape, for {intrin.name}'s output {out.name}")
    return sizes


def _pair(declared: tuple, extents: tuple, sizes: dict, what: str):
    """Pair `declared` (an intrinsic tensor's shape) with the last dimensions of `extents`,
    the others of extent 1; bind the variables of `declared` in `sizes`, check the rest."""
    lead = len(extents) - len(declared)
    if lead < 0:
        raise ExprError(f"{what}: it has {len(extents)} dimension(s), the tensor "
                        f"{len(declared)}")
    for d, extent in enumerate(extents[:lead]):
        if not _equal(extent, Const(INDEX, 1)):
            raise ExprError(f"{what}: dimension {d} has extent {extent}; only the last "
                            f"{len(declared)} dimension(s) pair with the tensor's, the others "
                            "must have extent 1")
    for d, (want, extent) in enumerate(zip(declared, extents[lead:])):
        want = substitute(want, sizes)
        if isinstance(want, Var) and want not in sizes:
            sizes[want] = ops.cast(want.dtype, extent)
        elif not _equal(want, extent):
            raise ExprError(f"{what}: dimension {lead + d} has extent {extent}, where the "
                            f"intrinsic's has {want}")


def _equal(a: Expr, b: Expr) -> bool:
    difference = simplify(ops.binary("sub", ops.cast(INDEX, a), ops.cast(INDEX, b)))
    return isinstance(difference, Const) and difference.value == 0


def _body(call: TensorIntrinCall, values: dict, reduce: tuple, where: str) -> Expr:
    """The intrinsic's computation over the call's regions, its variables replaced by
    `values`, reducing over the call's reduce_axis and the new axes `reduce`."""
    intrin = call.intrin
    regions = dict(zip(intrin.inputs, call.regions))

    def rewrite(node):
        if isinstance(node, Var):
            return values.get(node)
        if isinstance(node, TensorRead) and node.tensor in regions:
            region = regions[node.tensor]
            lead = len(region.mins) - len(node.indices)
            index = region.mins[:lead] + tuple(ops.binary("add", m, i) for m, i in
                                               zip(region.mins[lead:], node.indices))
            return TensorRead(region.tensor, index)
        return None
    body = intrin.op.body[0]
    if not isinstance(body, Reduce):
        if call.reduce_axis:
            raise ExprError(f"{where}: reduce_axis is given, but intrinsic {intrin.name} "
                            "does not reduce")
        return transform(body, rewrite)
    used = set().union(*(free_vars(m) for r in call.regions for m in r.mins))
    for k in call.reduce_axis:
        if k.var not in used:
            raise ExprError(f"{where}: reduce_axis {k.name} indexes none of the regions "
                            f"({', '.join(map(repr, call.regions))}); the intrinsic is applied "
                            f"along it, so a region must use it (A[i, {k.name}, 0:16])")
    sources = tuple(transform(s, rewrite) for s in body.sources)
    return Reduce(body.combiner, sources, call.reduce_axis + reduce,
                  transform(body.condition, rewrite), body.value_index)

