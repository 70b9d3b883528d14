"""Extern stages: tensors computed by a statement tex runs as it is, at the root.

* `extern(shape, inputs, fcompute, name)` declares the tensors (an `ExternOp`);
  `fcompute(ins, outs)` receives the buffers of its inputs and outputs and
  returns the statement.
* `call_packed(name, *args)` is that statement, usually: a call of the Python
  function registered as `name` (`tex.register_func`, in
  `tex.codegen.packed_func`), which gets the buffers as NumPy arrays (with
  TVM NDArray's `numpy()`, `copyfrom`, `copyto`).

    @tex.register_func("my.add_one")
    def add_one(x, y):
        y[:] = x + 1

    B = tex.extern(A.shape, [A], lambda ins, outs: tex.call_packed("my.add_one",
                                                                   ins[0], outs[0]))
"""
from __future__ import annotations

from tex import ops
from tex.arith import simplify
from tex.dtype import INDEX, DType, as_dtype, float64
from tex.errors import ExprError
from tex.expr import Const, Expr, TensorRead
from tex.ir import Buffer, Load, PackedCall, Stmt, Store, seq, strides_of
from tex.ir_builder import AccessPtr, BufferView
from tex.tensor import ExternOp, Tensor, _shape
from tex.visitor import collect


def extern(shape, inputs, fcompute, name: str = "extern", dtype=None, in_buffers=None,
           out_buffers=None, tag: str = ""):
    """Tensors computed by the statement `fcompute(ins, outs)` returns.

    `shape` is the output's shape, or a list of shapes for several outputs;
    `dtype` a dtype or a list of them (default: the first input's, else float32).
    `fcompute` receives the buffers of `inputs` and of the outputs (each with
    `.name`, `.dtype` and `.shape`) and returns a statement, usually
    `tex.call_packed("my.func", *ins, *outs)`, or a list of them. Other
    computes read the outputs like any tensor. The stage runs at the root,
    whole, after the stages it reads and before those reading it; schedule
    primitives on it raise ScheduleError (compute_root aside). Returns a
    Tensor, or a list of them for several outputs.
    TVM: `te.extern` (tex picks the buffers itself: no in_buffers/out_buffers).
    """
    if in_buffers is not None or out_buffers is not None:
        raise ExprError(f"extern {name}: tex chooses the buffers itself (compact, row-major); "
                        "leave in_buffers and out_buffers out")
    shapes = _extern_shapes(shape, name)
    inputs = _extern_inputs(inputs, name)
    dtypes = _extern_dtypes(dtype, len(shapes), inputs, name)
    for what, t in [*((f"input {t.name}", t.dtype) for t in inputs),
                    *(("output", t) for t in dtypes)]:
        if t.lanes > 1:
            raise ExprError(f"extern {name}: its {what} is of the vector dtype {t}, which "
                            "extern stages do not take")
    ins = [Buffer(t.name, t.dtype, t.shape) for t in inputs]
    outs = [Buffer(name if len(shapes) == 1 else f"{name}_v{k}", t, s)
            for k, (s, t) in enumerate(zip(shapes, dtypes))]
    statement = _extern_statement(fcompute(ins, outs), ins + outs, name)
    op = ExternOp(name, inputs, ins, outs, statement, tag)
    return op.outputs[0] if op.num_outputs == 1 else list(op.outputs)


def _extern_shapes(shape, name: str) -> list[tuple[Expr, ...]]:
    """One shape, or a list of shapes (a non-empty list whose items are all lists)."""
    several = isinstance(shape, (tuple, list)) and len(shape) > 0 and \
        all(isinstance(s, (tuple, list)) for s in shape)
    return [_shape(s, f"extern {name}") for s in (shape if several else [shape])]


def _extern_inputs(inputs, name: str) -> list[Tensor]:
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise ExprError(f"extern {name}: input {k} must be a tensor, got "
                            f"{type(t).__name__} {t!r}")
    return inputs


def _extern_dtypes(dtype, count: int, inputs, name: str) -> list[DType]:
    if dtype is None:
        return [inputs[0].dtype if inputs else as_dtype("float32")] * count
    dtypes = list(dtype) if isinstance(dtype, (tuple, list)) else [dtype] * count
    if len(dtypes) != count:
        raise ExprError(f"extern {name}: {count} output shape(s) but {len(dtypes)} dtype(s)")
    return [as_dtype(t) for t in dtypes]


def _extern_statement(result, buffers: list, name: str) -> Stmt:
    """What fcompute returned, as one statement that accesses only `buffers`."""
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    for item in items:
        if not isinstance(item, Stmt):
            raise ExprError(f"extern {name}: fcompute must return a statement such as "
                            f"tex.call_packed(...), got {type(item).__name__} {item!r}")
    statement = seq(*items)
    known = set(buffers)
    for access in collect(statement, lambda n: isinstance(n, (Load, Store))):
        if access.buffer not in known:
            raise ExprError(f"extern {name}: the statement uses buffer {access.buffer.name}, "
                            "which is none of the buffers fcompute received (ins, outs)")
    return statement


def call_packed(name: str, *args) -> PackedCall:
    """A call of the Python function registered as `name` (`tex.register_func`), as the
    statement of an extern stage; the function is looked up when the kernel runs.

    Each argument is a buffer that `extern`'s fcompute received (or its
    `.data`), which the function gets as a NumPy array of the buffer's dtype
    and shape viewing its memory (no copy; write the outputs in place) that
    also has TVM NDArray's `numpy()`, `copyfrom` and `copyto`, or a scalar: a
    Python int or float, or a scalar expression over the kernel's sizes (`n`,
    `n * 2`), which the function gets as a Python int, bool or float. An
    access pointer (`view.access_ptr(mode)`, `view.data` in a tensor
    intrinsic's lower_fn) is passed as a 1-d array from that element to the
    end of its buffer, and a compact tile a lower_fn received as an array of
    its shape. TVM: `tvm.tir.call_packed`.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise ExprError(f"call_packed: the first argument is the registered name of the "
                        f"function, a non-empty string, got {name!r}")
    values, buffer_args, shapes, ranks = [], [], [], []
    for k, arg in enumerate(args):
        if isinstance(arg, Buffer):
            values.append(Load(arg, tuple(Const(INDEX, 0) for _ in arg.shape)))
            buffer_args.append(k)
            shapes.extend(arg.shape)
            ranks.append(len(arg.shape))
        elif isinstance(arg, BufferView):
            values.append(arg.pointer())
            buffer_args.append(k)
            shapes.extend(_compact_shape(name, k, arg))
            ranks.append(len(arg.shape))
        elif isinstance(arg, AccessPtr):
            values.append(arg.element)
            buffer_args.append(k)
            shapes.append(_elements_from(arg.element))
            ranks.append(1)
        else:
            values.append(_packed_scalar(name, k, arg))
    return PackedCall(name, tuple(values), tuple(buffer_args), tuple(shapes), tuple(ranks))


def _compact_shape(name: str, k: int, view: BufferView) -> tuple:
    """The shape of `view`, checked to be compact (row-major strides), as a NumPy array
    of that shape over its first element must be."""
    size = Const(INDEX, 1)
    for d in reversed(range(len(view.shape))):
        extent = ops.cast(INDEX, view.shape[d])
        difference = simplify(ops.binary("sub", view.strides[d], size))
        one = simplify(extent)
        if not (isinstance(difference, Const) and difference.value == 0) and \
                not (isinstance(one, Const) and one.value == 1):
            raise ExprError(f"call_packed {name!r}: argument {k}, the tile of "
                            f"{view.buffer.name}, has strides "
                            f"({', '.join(map(str, view.strides))}), not those of a compact "
                            f"array of shape ({', '.join(map(str, view.shape))}); pass "
                            "access_ptr(...) and the strides instead")
        size = ops.binary("mul", size, extent)
    return tuple(view.shape)


def _elements_from(element: Load):
    """How many elements a buffer's memory holds from `element` on: from its first
    element to one past its last, `1 + sum((extent - 1) * stride)` (padded strides
    included), less `element`'s offset."""
    size, offset = Const(INDEX, 1), Const(INDEX, 0)
    for extent, index, stride in zip(element.buffer.shape, element.indices,
                                     strides_of(element.buffer)):
        last = ops.binary("sub", extent, Const(INDEX, 1))
        size = ops.binary("add", size, ops.binary("mul", last, stride))
        offset = ops.binary("add", offset, ops.binary("mul", index, stride))
    return ops.binary("sub", size, offset)


def _packed_scalar(name: str, k: int, arg) -> Expr:
    """Argument `k` of call_packed as a scalar expression (Python floats as float64)."""
    if isinstance(arg, Tensor):
        raise ExprError(f"call_packed {name!r}: argument {k} is the tensor {arg.name}; pass "
                        "the buffer fcompute received for it (ins[i] or outs[i])")
    try:
        value = ops.as_expr(arg, float64 if isinstance(arg, float) else None)
    except ExprError:
        raise ExprError(f"call_packed {name!r}: argument {k} must be a buffer, a number or "
                        f"a scalar expression, got {type(arg).__name__} {arg!r}") from None
    if value.dtype.lanes != 1 or collect(value, lambda n: isinstance(n, (TensorRead, Load))):
        raise ExprError(f"call_packed {name!r}: argument {k} must be a scalar that reads no "
                        f"tensor, got {value}; pass tensors as buffers")
    return value
