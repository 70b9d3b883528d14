"""tex kernels as PyTorch operators: `torch.ops.NS.NAME`, eager, compiled and trained.

    op = tex.torch.register("mylib::matmul", kernel)       # a CPU or CUDA kernel
    c = op(a, b)                                            # torch.ops.mylib.matmul(a, b)
    torch.compile(f, fullgraph=True)                        # traces through it, no graph break

`register` defines the operator's schema from the kernel's inputs and outputs
(a kernel with several outputs returns a tuple), an implementation for the
kernel's device that allocates the outputs with `torch.empty` and runs the
kernel on the tensors' memory, without copies (a CPU kernel through NumPy views
of it; a CUDA kernel, a `CudaKernel` or a loaded library's, on the tensors
themselves, queued on PyTorch's current stream), and a fake implementation that computes the
outputs' shapes from the inputs' shapes and the declaration's size
expressions, so that `torch.compile` traces it with static or dynamic shapes.
With `backward=`, a function `(inputs, outputs, grad_outputs) -> grad_inputs`
(tuples of tensors; None for an input without a gradient), the operator is
differentiable (`torch.library.register_autograd`). Make the backward of torch
ops and registered operators: `torch.compile` traces it, and a direct call of a
tex kernel cannot be traced (register the gradient's kernel too).

Every call checks its tensors first, in PyTorch's words: on the kernel's device, the
kernel's dtype (tex does not cast: `.float()`), contiguous (`.contiguous()`),
and, where no backward is registered, not requiring grad (`.detach()`); then
the kernel checks the shapes as it checks every call (ArgumentError).

This module imports torch; `import tex` does not import it.
"""
from __future__ import annotations

import keyword
import re

import torch

from tex.errors import ArgumentError, DeviceError
from tex.expr import Binary, Cast, Const, Var
from tex.printer import to_text
from tex.runtime.kernel import Kernel, Signature

_TORCH_DTYPES = {"bool": torch.bool, "int8": torch.int8, "int16": torch.int16,
                 "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
                 "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float32": torch.float32, "float64": torch.float64}
_CASTS = {torch.bool: ".bool()", torch.int8: ".char()", torch.int16: ".short()",
          torch.int32: ".int()", torch.int64: ".long()", torch.uint8: ".byte()",
          torch.float16: ".half()", torch.bfloat16: ".bfloat16()",
          torch.float32: ".float()", torch.float64: ".double()"}
#: Distinct input shapes whose output shapes an operator remembers.
_SHAPES = 32

_SYMBOLIC = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
             "floordiv": lambda a, b: a // b, "floormod": lambda a, b: a % b,
             "min": lambda a, b: torch.sym_min(a, b), "max": lambda a, b: torch.sym_max(a, b)}


def register(qualname: str, kernel: Kernel, *, backward=None):
    """Define the operator `qualname` ("namespace::name") running `kernel` (from
    `tex.build` for "llvm" or "cuda", or a loaded library's) on tensors of its device, and
    return it (`torch.ops.namespace.name`). `backward(inputs, outputs, grad_outputs) ->
    grad_inputs` makes it differentiable. See the module docstring."""
    namespace, name = _split(qualname)
    if not isinstance(kernel, Signature):
        raise ArgumentError(f"tex.torch.register({qualname!r}): expected a kernel of "
                            f"tex.build or tex.load_library, got {type(kernel).__name__}")
    if kernel._variables:
        raise ArgumentError(f"tex.torch.register({qualname!r}): kernel {kernel.name} takes "
                            f"the variable {kernel._variables[0].var.name} in its arguments; "
                            "an operator takes tensors only: build it without variables "
                            "in args")
    _check_dtypes(qualname, kernel)
    torch.library.define(qualname, _schema(kernel))
    trains = backward is not None
    operator = _Operator(qualname, kernel, trains)
    if kernel.device_kind == "cpu":
        torch.library.impl(qualname, "cpu")(operator.run)
    else:  # CPU tensors get the check's own words (".cuda()"), not the dispatcher's
        torch.library.impl(qualname, "cuda")(operator.run_cuda)
        torch.library.impl(qualname, "cpu")(operator.check_only)
    torch.library.register_fake(qualname)(operator.fake)
    if trains:
        torch.library.register_autograd(qualname, _backward_of(kernel, backward),
                                        setup_context=_save_for_backward)
    return getattr(getattr(torch.ops, namespace), name)


def _split(qualname: str) -> tuple[str, str]:
    """("namespace", "name") of "namespace::name", or an ArgumentError."""
    match = re.fullmatch(r"([A-Za-z_]\w*)::([A-Za-z_]\w*)", qualname)
    if match is None:
        raise ArgumentError(f"tex.torch.register: expected a name 'namespace::name' made of "
                            f"identifiers, got {qualname!r}")
    return match.group(1), match.group(2)


def _check_dtypes(qualname: str, kernel: Kernel):
    """Refuse a kernel with a parameter dtype that PyTorch lacks."""
    for p in kernel._params:
        if str(p.buffer.dtype) not in _TORCH_DTYPES:
            raise ArgumentError(f"tex.torch.register({qualname!r}): parameter {p.buffer.name} "
                                f"is {p.buffer.dtype}, which PyTorch has no dtype for")


def _schema(kernel: Kernel) -> str:
    """The operator schema of `kernel`: "(Tensor A, Tensor B) -> Tensor"."""
    names, seen = [], set()
    for k, p in enumerate(kernel._inputs):
        name = p.buffer.name
        if not name.isidentifier() or keyword.iskeyword(name) or name in seen:
            name = f"input{k}"
        seen.add(name)
        names.append(f"Tensor {name}")
    outputs = "Tensor" if len(kernel._outputs) == 1 else \
        "(" + ", ".join("Tensor" for _ in kernel._outputs) + ")"
    return f"({', '.join(names)}) -> {outputs}"


class _Operator:
    """The implementations of one registered operator: its tensors checked in PyTorch's
    words (`check`), then the kernel run (`run`, `run_cuda`) or the outputs' shapes
    computed (`fake`). What every call compares against (the inputs' torch dtypes) is
    read once, and the outputs' shapes (on the CPU the sizes too) once per distinct
    input shapes."""

    def __init__(self, qualname: str, kernel, trains: bool):
        self.qualname, self.kernel, self.trains = qualname, kernel, trains
        self.wanted = [_TORCH_DTYPES[str(p.buffer.dtype)] for p in kernel._inputs]
        self.made = [_TORCH_DTYPES[str(p.buffer.dtype)] for p in kernel._outputs]
        self.known: dict = {}  # input shapes -> (output shapes, sizes: CPU only), _SHAPES

    def check(self, tensors: tuple):
        """Refuse, in PyTorch's words, a tensor the kernel cannot take as it is."""
        kernel, device = self.kernel, self.kernel.device_kind
        if len(tensors) != len(self.wanted):
            raise ArgumentError(f"{self.qualname} takes {len(self.wanted)} tensors, got "
                                f"{len(tensors)}")
        grad = None
        for p, t, wanted in zip(kernel._inputs, tensors, self.wanted):
            if not isinstance(t, torch.Tensor):
                raise ArgumentError(f"{self._label(p)}: expected a torch.Tensor, got "
                                    f"{type(t).__name__}")
            if t.device.type != device:
                where, move = (("the CPU", ".cpu()") if device == "cpu" else
                               ("a CUDA GPU", ".cuda()"))
                raise DeviceError(f"{self._label(p)} is on {t.device}; this kernel runs on "
                                  f"{where}: pass {move} of it")
            if t.dtype != wanted:
                raise ArgumentError(f"{self._label(p)}: expected dtype {wanted}, got "
                                    f"{t.dtype}; tex does not cast: pass {_CASTS[wanted]} "
                                    "of it")
            if not t.is_contiguous():
                raise ArgumentError(f"{self._label(p)} is not contiguous (strides "
                                    f"{tuple(t.stride())}); pass .contiguous() of it")
            if t.requires_grad and not self.trains:
                grad = torch.is_grad_enabled() if grad is None else grad
                if grad:
                    raise ArgumentError(f"{self._label(p)} requires grad, but "
                                        f"{self.qualname} was registered without a "
                                        "backward: pass .detach() of it, or register it "
                                        "with backward=...")

    def check_only(self, *tensors):
        """For tensors of a device the kernel does not run on: the check's error."""
        self.check(tensors)
        raise DeviceError(f"{self.qualname} runs its CUDA kernel on CUDA tensors only")

    def _label(self, p) -> str:
        return f"{self.qualname}: argument {p.buffer.name} (#{p.position})"

    def run(self, *tensors):
        """The CPU implementation: outputs from torch.empty, written by the kernel in
        place, the tensors' pointers passed straight to the kernel's entry. The kernel
        checks each distinct input shape once, through NumPy views of the tensors, which
        gives the sizes and output shapes then remembered (`known`)."""
        self.check(tensors)
        kernel = self.kernel
        key = tuple([t.shape for t in tensors])
        known = self.known.get(key)
        if known is None:
            env = kernel._check(kernel._inputs, [t.detach() for t in tensors])[1]
            known = self._remember(key, [kernel._output_shape(p, env) for p in kernel._outputs],
                                   env)
        shapes, env = known
        outputs = [torch.empty(*shape, dtype=dtype) for shape, dtype in zip(shapes, self.made)]
        kernel.run_at(kernel._in_param_order([t.data_ptr() for t in tensors],
                                             [o.data_ptr() for o in outputs]), env)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def run_cuda(self, *tensors):
        """The CUDA implementation: outputs from torch.empty on the inputs' device (their
        shapes remembered per input shapes), the kernel queued on PyTorch's current stream
        there, reading and writing the tensors."""
        self.check(tensors)
        kernel = self.kernel
        inputs = [t.detach() for t in tensors]
        key = tuple([t.shape for t in inputs])
        known = self.known.get(key)
        if known is None:
            outputs = _empty_outputs(kernel, inputs)
            self._remember(key, [tuple(o.shape) for o in outputs], None)
        else:
            device = inputs[0].device
            outputs = [torch.empty(*shape, dtype=dtype, device=device)
                       for shape, dtype in zip(known[0], self.made)]
        stream = torch.cuda.current_stream(inputs[0].device if inputs else None)
        kernel(*kernel._in_param_order(inputs, outputs), stream=stream.cuda_stream)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _remember(self, key, shapes: list, env) -> tuple:
        """(output shapes, sizes) of input shapes `key`, kept for the last _SHAPES."""
        if len(self.known) >= _SHAPES:
            self.known.pop(next(iter(self.known)))
        self.known[key] = (shapes, env)
        return shapes, env

    def fake(self, *tensors):
        """The fake implementation: outputs of the shapes and dtypes the kernel would give
        (symbolic under torch.compile's dynamic shapes)."""
        self.check(tensors)
        outputs = _empty_outputs(self.kernel, tensors)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _empty_outputs(kernel: Kernel, inputs) -> list:
    """Uninitialised output tensors for `inputs` (shapes may be symbolic), on their device."""
    sizes = _bind_sizes(kernel, inputs)
    device = inputs[0].device if inputs else torch.device("cpu")
    return [torch.empty([_evaluate(e, sizes) for e in p.buffer.shape],
                        dtype=_TORCH_DTYPES[str(p.buffer.dtype)], device=device)
            for p in kernel._outputs]


def _bind_sizes(kernel: Kernel, inputs) -> dict:
    """{size Var: int or SymInt} from the dimensions of `inputs` that are size variables."""
    sizes = {}
    for p, t in zip(kernel._inputs, inputs):
        if t.dim() != p.ndim:
            raise p.rank_error(tuple(t.shape))
        for dim, slot in p.binds:
            sizes.setdefault(kernel.size_vars[slot], t.shape[dim])
    for var in kernel.size_vars:
        if var not in sizes:
            raise ArgumentError(f"{kernel.name}: the size {var.name} is not a dimension of "
                                "any input, so the outputs' shapes are unknown")
    return sizes


def _evaluate(extent, sizes: dict):
    """The size expression `extent` for `sizes` (ints or SymInts)."""
    if isinstance(extent, Const):
        return int(extent.value)
    if isinstance(extent, Var):
        return sizes[extent]
    if isinstance(extent, Cast):
        return _evaluate(extent.value, sizes)
    if isinstance(extent, Binary) and extent.op in _SYMBOLIC:
        return _SYMBOLIC[extent.op](_evaluate(extent.a, sizes), _evaluate(extent.b, sizes))
    raise ArgumentError(f"the output dimension {to_text(extent)} has no form PyTorch's "
                        "shape arithmetic can evaluate")


def _save_for_backward(ctx, inputs, output):
    """setup_context: keep the inputs and outputs for the user's backward."""
    outputs = output if isinstance(output, tuple) else (output,)
    ctx.input_count = len(inputs)
    ctx.save_for_backward(*inputs, *outputs)


def _backward_of(kernel: Kernel, backward):
    """The autograd backward calling `backward(inputs, outputs, grad_outputs)`, with
    contiguous gradients, and returning one gradient (or None) per input."""
    def autograd_backward(ctx, *grad_outputs):
        saved = ctx.saved_tensors
        inputs, outputs = saved[:ctx.input_count], saved[ctx.input_count:]
        grads = backward(tuple(inputs), tuple(outputs),
                         tuple(g.contiguous() for g in grad_outputs))
        grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
        if len(grads) != len(kernel._inputs):
            raise ArgumentError(f"the backward of {kernel.name} returned {len(grads)} "
                                f"gradients; it takes {len(kernel._inputs)} inputs")
        return grads
    return autograd_backward
