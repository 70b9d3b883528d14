"""`Kernel`: a compiled LoweredFunc you call with arrays.

    kernel(a, b, c)      # every parameter, destination passing; returns None
    c = kernel(a, b)     # inputs only: outputs are allocated (`tex.empty`) and returned

Every call checks each argument against its parameter: an ndarray (or a CPU
object with `__dlpack__`), the exact dtype (no silent casts), the rank,
C-contiguity, alignment of the data to the element size (NumPy's
`flags.aligned`; the compiled loads and stores claim it, `tex.codegen.llvm`),
and the shape. Shape dimensions are expressions: a constant must match; a
bare size variable is bound by the first argument that has it and must agree
everywhere else; any other expression (`n + 2`) is evaluated once the
variables are bound. Outputs must be writable and must not overlap any
other argument. A mismatch raises `ArgumentError` naming the argument (buffer
name and position), the dimension, what was expected and what came.

A kernel built with variables among its arguments (`tex.build(s, [A, B, alpha])`)
takes their values at those positions, in both forms of the call (`f(a, b, 2.5)`,
`b = f(a, 2.5)`): Python or NumPy bools, ints and floats (`Variable`). A size
variable's value must equal the size the arrays give it (or, when no array gives
it, sets it); a scalar parameter's must fit its dtype: an int in range, a float
that stays finite. Calls of kernels without variables skip all of this.
A kernel whose loops rely on the values bound (a split by a symbolic factor: at
least 1, and, with `disable_predication`, no longer than its axis) tests its
`RuntimeCheck`s before it runs, an ArgumentError naming the stage and axis where
one fails; one of `vscale()` reads this host's SVE vector length.

The compiled entry point is `void f(void** buffers, int64* sizes)` (see
`tex.codegen.llvm`); the call goes through one prebuilt ctypes prototype. A
kernel of a loaded library calls its checking entry point instead, which
returns a status: nonzero is raised as the code's `failure()`.
A packed call (`tex.call_packed`) that failed in it is raised afterwards as
`PackedFuncError`, from the Python function's exception. A kernel built with
bound checks (`tir.instrument_bound_checkers`, `tex.PassContext`) gets two more
`sizes` slots, zero, where its code reports the first load or store out of
bounds (`tex.codegen.llvm_bounds`); the call then raises `OutOfBoundsError`
naming the access, its buffer and the index.
The checks live in `Signature` and `Param`, which `tex.runtime.cuda_args` and
`tex.runtime.cuda_kernel` share.
"""
from __future__ import annotations

import ctypes
import functools
import operator
import platform
import sys
import time
from typing import Callable

import numpy as np

from tex.arith import evaluate
from tex.codegen import packed_func
from tex.errors import ArgumentError, BuildError, DeviceError, OutOfBoundsError
from tex.expr import Binary, Cast, Const, Var, VScale, _int_range
from tex.ir import Buffer, KernelInterface, LoweredFunc
from tex.printer import to_text
from tex.runtime.cache import compile_cached
from tex.runtime.host_array import allocate, data_pointer
from tex.runtime.timing import time_evaluator
from tex.visitor import collect, free_vars

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
#: Linux's prctl option that reads the SVE vector length (bytes, in the low 16 bits).
_PR_SVE_GET_VL, _PR_SVE_VL_LEN_MASK = 51, 0xffff
SOURCE_FORMATS = ("tex", "ll", "asm")



def _refuse(reason: str):
    """An entry point that raises DeviceError(reason) instead of running machine code."""
    def entry(pointers, sizes):
        raise DeviceError(reason)
    return entry


def _unbound(extent, values: dict) -> str:
    """The names of the size variables in `extent` that `values` does not bind."""
    return ", ".join(v.name for v in collect(extent, lambda n: isinstance(n, Var))
                     if v not in values)


def _exact_extent(extent, values: dict) -> int | None:
    """The value of the size expression `extent` in Python's unbounded integers (where the
    compiled code's int64 would wrap), or None when it divides by zero."""
    if isinstance(extent, Const):
        return int(extent.value)
    if isinstance(extent, Var):
        return int(values[extent])
    if isinstance(extent, Cast):
        return _exact_extent(extent.value, values)
    if isinstance(extent, Binary) and extent.op in _EXACT:
        a, b = (_exact_extent(x, values) for x in (extent.a, extent.b))
        if a is None or b is None or extent.op in ("floordiv", "floormod") and b == 0:
            return None
        return _EXACT[extent.op](a, b)
    try:
        return evaluate(extent, values)
    except ZeroDivisionError:
        return None


_EXACT = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "min": min,
          "max": max, "floordiv": operator.floordiv, "floormod": operator.mod}


class Param:
    """What a call must check about one parameter, precomputed.

    `as_array` is the CPU check; the `*_error` methods build the messages, so that
    other runtimes (`tex.runtime.cuda_args.CudaParam`) check their arguments the same way.
    """

    def __init__(self, position: int, buffer: Buffer, slots: dict, is_output: bool):
        self.position, self.buffer, self.is_output = position, buffer, is_output
        self.label = f"argument {buffer.name} (#{position})"
        self.ndim = len(buffer.shape)
        self.dtype = buffer.dtype.numpy
        self.consts = []  # (dim, value)
        self.binds = []  # (dim, slot)
        self.exprs = []  # (dim, expr)
        for dim, extent in enumerate(buffer.shape):
            for var in collect(extent, lambda n: isinstance(n, Var)):
                if var not in slots:
                    raise BuildError(f"the shape of {buffer.name} uses {var.name}, which is "
                                     "not a size variable of the kernel")
            size_var = extent.value if isinstance(extent, Cast) and \
                isinstance(extent.value, Var) and extent.value.dtype.is_int else extent
            if isinstance(extent, Const):
                self.consts.append((dim, int(extent.value)))
            elif isinstance(size_var, Var):  # `n`, or an int32 `n` widened to an index
                self.binds.append((dim, slots[size_var]))
            else:
                self.exprs.append((dim, extent))
        self.shape_text = "(" + ", ".join(to_text(d) for d in buffer.shape) + \
            ("," if self.ndim == 1 else "") + ")"

    def as_array(self, value) -> np.ndarray:
        """`value` as an ndarray with the right rank, dtype and layout, or an ArgumentError."""
        if type(value) is not np.ndarray:
            value = self._convert(value)
        if value.dtype != self.dtype:
            raise self.dtype_error(value.dtype)
        if value.ndim != self.ndim:
            raise self.rank_error(value.shape)
        if not value.flags.c_contiguous:
            raise self.layout_error(value.strides)
        if not value.flags.aligned:
            raise self.alignment_error(value)
        if self.is_output and not value.flags.writeable:
            raise self.read_only_error()
        return value

    def dtype_error(self, got) -> ArgumentError:
        return ArgumentError(f"{self.label}: expected dtype {self.dtype}, got {got}; "
                             f"tex does not cast, use .astype('{self.dtype}')")

    def rank_error(self, shape: tuple) -> ArgumentError:
        return ArgumentError(f"{self.label}: expected {self.ndim} dimension(s), shape "
                             f"{self.shape_text}, got {len(shape)} (shape {shape})")

    def layout_error(self, strides, remedy="pass np.ascontiguousarray(...) of it"):
        return ArgumentError(f"{self.label} is not C-contiguous (strides {strides}); {remedy}")

    def alignment_error(self, value: np.ndarray) -> ArgumentError:
        return ArgumentError(f"{self.label}: its data at {hex(data_pointer(value))} is not "
                             f"aligned to its element size ({value.itemsize} bytes); the "
                             "compiled code assumes it is, pass a copy (.copy())")

    def read_only_error(self) -> ArgumentError:
        return ArgumentError(f"{self.label} is an output but its array is read-only")

    def _convert(self, value) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        view = _torch_cpu_view(value, self.dtype)
        if view is not None:
            return view
        if not hasattr(value, "__dlpack__"):
            raise ArgumentError(f"{self.label}: expected a numpy.ndarray or an object with "
                                f"__dlpack__, got {type(value).__name__}")
        try:
            device = getattr(value, "__dlpack_device__", lambda: (1, 0))()
        except Exception as err:  # the object's own code: whatever it raises is its fault
            raise ArgumentError(f"{self.label}: its __dlpack_device__ raised "
                                f"{type(err).__name__}: {err}") from err
        if device[0] != 1:  # kDLCPU
            raise ArgumentError(f"{self.label} lives on DLPack device {tuple(device)}; this "
                                "kernel runs on the CPU")
        try:
            return np.from_dlpack(value)
        except Exception as err:  # numpy's refusal, or the object's __dlpack__ failing
            raise ArgumentError(f"{self.label}: cannot view it as an array: "
                                f"{type(err).__name__}: {err}") from err


def _torch_cpu_view(value, dtype) -> np.ndarray | None:
    """A CPU PyTorch tensor's memory as an ndarray, by `Tensor.numpy()` (a fifth of the
    cost of `np.from_dlpack`); a bfloat16 tensor, which NumPy lacks, through its bits as
    `dtype` (a NumPy dtype) when that is ml_dtypes' bfloat16. None for anything else,
    and for a tensor `numpy()` refuses (one that requires grad), which the DLPack path
    then reports."""
    if not type(value).__module__.startswith("torch"):
        return None
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor) or value.device.type != "cpu":
        return None
    try:
        if value.dtype == torch.bfloat16 and dtype.name == "bfloat16":
            return value.view(torch.int16).numpy().view(dtype)
        return value.numpy()
    except (RuntimeError, TypeError):
        return None


class Variable:
    """A variable among a kernel's arguments, passed by value at `position` of the call
    with all its arguments: a size variable (`is_size`) or a scalar parameter; `slot` is
    its index in the entry's `sizes`. `encode` checks a value and gives that slot's int64
    (the convention of `tex.codegen.llvm`)."""

    def __init__(self, position: int, var: Var, slot: int, is_size: bool):
        self.position, self.var, self.slot, self.is_size = position, var, slot, is_size
        kind = "size variable" if is_size else "scalar parameter"
        self.label = f"{kind} {var.name} (argument #{position})"

    def encode(self, value) -> int:
        """`value` as the int64 of this variable's slot, or an ArgumentError."""
        dtype = self.var.dtype
        if dtype.is_bool:
            return self._encode_int(value, (0, 1))
        if dtype.is_float:
            return self._encode_float(value)
        return self._encode_int(value, _int_range(dtype))

    def _encode_int(self, value, bounds: tuple[int, int]) -> int:
        if not isinstance(value, (int, np.integer, np.bool_)):
            raise ArgumentError(f"{self.label}: expected an int of dtype {self.var.dtype}, "
                                f"got {type(value).__name__} {value!r}")
        low, high = bounds
        if not low <= int(value) <= high:
            raise ArgumentError(f"{self.label}: {int(value)} does not fit its dtype "
                                f"{self.var.dtype} ([{low}, {high}])")
        return int(value) - 2**64 if int(value) >= 2**63 else int(value)

    def _encode_float(self, value) -> int:
        if not isinstance(value, (int, float, np.integer, np.floating)):
            raise ArgumentError(f"{self.label}: expected a float of dtype {self.var.dtype}, "
                                f"got {type(value).__name__} {value!r}")
        numpy_type = self.var.dtype.numpy
        with np.errstate(over="ignore"):
            converted = np.array(value).astype(numpy_type)
        if np.isfinite(float(value)) and not np.isfinite(float(converted)):
            raise ArgumentError(f"{self.label}: {value!r} does not fit its dtype "
                                f"{self.var.dtype} (it would be {float(converted)})")
        bits = int(converted.view(f"uint{8 * numpy_type.itemsize}"))
        return bits - 2**64 if bits >= 2**63 else bits


class Signature:
    """A kernel's parameters and the checks every call makes on its arguments.

    The base of `Kernel` and of `tex.runtime.cuda_kernel.CudaKernel`. `param_class`
    (`Param` here) turns each argument into an array-like with `.shape` and
    `.nbytes`; the checks of shapes against constants, size variables and
    expressions, the shapes of allocated outputs and the overlap check are the
    same for every runtime, and so are their messages. So are the parts of TVM's
    runtime module that TE code calls: `entry_name`, `imported_modules`,
    `time_evaluator`.
    """

    #: The kind of device the kernel runs on, as in `tex.cpu(0)` / `tex.cuda(0)`.
    device_kind = "cpu"

    def __init__(self, func: LoweredFunc | KernelInterface, param_class=Param):
        self.name = func.name
        self.size_vars = func.size_vars
        outputs = func.outputs or func.params[-1:]
        for out in outputs:
            if out not in func.params:
                raise BuildError(f"output {out.name} of {func.name} is not one of its params")
        self._arguments = func.arguments
        shape_vars = {v for b in func.params for e in b.shape
                      for v in collect(e, lambda n: isinstance(n, Var))}
        self._slots = {var: k for k, var in enumerate(func.size_vars) if var in shape_vars}
        self._params = [param_class(k, b, self._slots, b in outputs)
                        for k, b in enumerate(func.params)]
        self._inputs = [p for p in self._params if not p.is_output]
        self._outputs = [p for p in self._params if p.is_output]
        self._written = {p.buffer for p in self._outputs}
        self._variables = self._variables_of(func)
        self._check_sizes_bindable()
        self._runtime_checks = func.checks

    def _variables_of(self, func) -> list[Variable]:
        """The variables among the call's arguments; every size variable that is not a
        shape's must be one of them (a scalar parameter)."""
        slots = {var: k for k, var in enumerate(func.size_vars)}
        found = [Variable(k, a, slots.get(a, -1), a in self._slots)
                 for k, a in enumerate(func.arguments) if isinstance(a, Var)]
        for v in found:
            if v.slot < 0:
                raise BuildError(f"argument {v.var.name} of {self.name} is a variable that is "
                                 "not among its size variables")
        scalars = {v.var for v in found if not v.is_size}
        for var in func.size_vars:
            if var not in self._slots and var not in scalars:
                raise BuildError(f"size variable {var.name} of {self.name} is neither a "
                                 "dimension of a parameter nor an argument, so no call can "
                                 "bind it")
        return found

    def _check_sizes_bindable(self):
        bound = {slot for p in self._params for _, slot in p.binds}
        bound |= {v.slot for v in self._variables if v.is_size}
        for var, slot in self._slots.items():
            if slot not in bound:
                raise BuildError(f"size variable {var.name} of {self.name} is not a "
                                 "dimension of any parameter, so no call can bind it")

    @property
    def entry_name(self) -> str:
        """The name of the function to call: the kernel's. TVM: `Module.entry_name`."""
        return self.name

    @property
    def imported_modules(self) -> list:
        """The device code's modules (none for a CPU kernel). TVM: `imported_modules`."""
        return []

    def time_evaluator(self, func_name: str, dev, number: int = 10, repeat: int = 1,
                       min_repeat_ms: float = 0):
        """A function that calls the kernel with its arguments and returns their timing
        (`.mean`, `.median`, `.results`, in seconds); see `tex.runtime.timing`.
        TVM: `f.time_evaluator(f.entry_name, dev, number=10)`."""
        return time_evaluator(self, func_name, dev, number, repeat, min_repeat_ms)

    def time_calls(self, args, calls: int) -> float:
        """Seconds that `calls` back-to-back calls `self(*args)` take, by the wall clock
        (a CPU kernel's calls are synchronous). `time_evaluator` times with it."""
        start = time.perf_counter()
        for _ in range(calls):
            self(*args)
        return time.perf_counter() - start

    def _arity_error(self, count: int) -> ArgumentError:
        every = [a.name for a in self._arguments] or [p.buffer.name for p in self._params]
        outputs = {p.buffer.name for p in self._outputs}
        inputs = [name for name in every if name not in outputs]
        return ArgumentError(
            f"{self.name} takes {len(every)} arguments (" + ", ".join(every)
            + f") or its {len(inputs)} inputs (" + ", ".join(inputs)
            + f") with outputs returned; got {count}")

    def _separate(self, args) -> tuple[list, list]:
        """The arrays among `args` (all the arguments, or the inputs only), and each
        variable with the value given for it."""
        if len(args) == len(self._arguments):
            outputs_given = True
        elif len(args) == len(self._arguments) - len(self._outputs):
            outputs_given = False
        else:
            raise self._arity_error(len(args))
        arrays, values = [], []
        given = iter(args)
        for a in self._arguments:
            if isinstance(a, Var):
                values.append(next(given))
            elif outputs_given or a not in self._written:
                arrays.append(next(given))
        return arrays, list(zip(self._variables, values))

    def _bind_variables(self, env: list, values: list):
        """Each variable's slot of `env` set from its value: a size variable checked
        against the arrays' value for it (or setting it when no array gave one)."""
        for v, value in values:
            encoded = v.encode(value)
            if v.is_size:
                if encoded < 0:
                    raise ArgumentError(f"{v.label}: a size cannot be negative, got {encoded}")
                if env[v.slot] is not None and env[v.slot] != encoded:
                    raise ArgumentError(f"{v.label} is {encoded}, but the arrays give "
                                        f"{v.var.name} = {env[v.slot]}")
            env[v.slot] = encoded

    def _check_runtime(self, env: list):
        """Raise ArgumentError where one of the kernel's `RuntimeCheck`s fails for the
        values bound in `env` (a check of `vscale` only on a host that has it: elsewhere
        the kernel, built for scalable vectors, does not run)."""
        if not self._runtime_checks:
            return
        values = {var: env[k] for k, var in enumerate(self.size_vars)
                  if env[k] is not None and var.dtype.is_int}
        scalable = host_vscale()
        if scalable is not None:
            values[VScale()] = scalable
        for check in self._runtime_checks:
            scaled = bool(collect(check.cond, lambda n: isinstance(n, VScale)))
            if scaled and scalable is None:
                continue
            if not evaluate(check.cond, values):
                given = [f"{v.name} = {values[v]}"
                         for v in sorted(free_vars(check.cond), key=lambda v: v.name)]
                given += [f"vscale() = {scalable}"] if scaled else []
                raise ArgumentError(f"kernel {self.name}: {check.message}; "
                                    f"{to_text(check.cond)} fails with {', '.join(given)}")

    def _in_param_order(self, inputs: list, outputs: list) -> list:
        """`inputs` and `outputs` (each in parameter order) merged into one list."""
        it_in, it_out = iter(inputs), iter(outputs)
        return [next(it_out) if p.is_output else next(it_in) for p in self._params]

    def _check(self, params, args, *context) -> tuple[list, list]:
        """The arguments as arrays (`p.as_array(value, *context)`), and the size
        variables' values (None: unbound)."""
        env = [None] * len(self.size_vars)
        arrays = []
        for p, value in zip(params, args):
            a = p.as_array(value, *context)
            shape = a.shape
            for dim, expected in p.consts:
                if shape[dim] != expected:
                    raise ArgumentError(f"{p.label}: dimension {dim} should be {expected}, got "
                                        f"{shape[dim]} (shape {shape}, expected {p.shape_text})")
            for dim, slot in p.binds:
                if env[slot] is None:
                    self._check_fits(p, dim, shape[dim], self.size_vars[slot])
                    env[slot] = shape[dim]
                elif env[slot] != shape[dim]:
                    self._disagree(list(zip(params, arrays)) + [(p, a)], p, dim, slot)
            arrays.append(a)
        for p, a in zip(params, arrays):
            for dim, extent in p.exprs:
                self._check_expression(p, a, dim, extent, env)
        return arrays, env

    @staticmethod
    def _check_fits(p, dim: int, value: int, var: Var):
        """A size variable narrower than int64 must hold the dimension that binds it."""
        low, high = _int_range(var.dtype)
        if not low <= value <= high:
            raise ArgumentError(f"{p.label}: dimension {dim} is {var.name} = {value}, which "
                                f"does not fit {var.name}'s dtype {var.dtype}")

    def _check_expression(self, p, a, dim, extent, env):
        values = self._values(env)
        unbound = _unbound(extent, values)
        if unbound:
            raise ArgumentError(f"{p.label}: dimension {dim} is {to_text(extent)}, but "
                                f"{unbound} is not set by the arguments given; "
                                "pass the outputs too")
        try:
            expected = evaluate(extent, values)
        except ZeroDivisionError:
            raise ArgumentError(f"{p.label}: dimension {dim} is {to_text(extent)}, which "
                                "divides by zero for these arguments") from None
        if a.shape[dim] != expected:
            raise ArgumentError(f"{p.label}: dimension {dim} should be {to_text(extent)} = "
                                f"{expected}, got {a.shape[dim]} (shape {a.shape})")

    def _disagree(self, checked, p, dim, slot):
        """Raise for dimension `dim` of `p` disagreeing with the first binding of `slot`."""
        var, got = self.size_vars[slot], checked[-1][1].shape[dim]
        q, d, a = next((q, d, a) for q, a in checked for d, s in q.binds if s == slot)
        raise ArgumentError(f"{p.label}: dimension {dim} is {var.name} = {got}, but {q.label} "
                            f"dimension {d} set {var.name} = {a.shape[d]}")

    def _values(self, env: list) -> dict:
        """The bound size variables of `env`, as `{Var: int}`."""
        return {var: env[slot] for var, slot in self._slots.items() if env[slot] is not None}

    def _output_shape(self, p: Param, env: list) -> tuple[int, ...]:
        values = self._values(env)
        for extent in p.buffer.shape:
            unbound = _unbound(extent, values)
            if unbound:
                raise ArgumentError(f"cannot allocate output {p.buffer.name} of shape "
                                    f"{p.shape_text}: {unbound} is not set by the inputs; "
                                    "pass the output array too")
        shape = tuple(_exact_extent(extent, values) for extent in p.buffer.shape)
        if any(d is None or d < 0 or d >= 2**63 for d in shape) or \
                np.prod(shape, dtype=object) * p.dtype.itemsize >= 2**63:
            sizes = ", ".join(f"{v.name} = {n}" for v, n in values.items())
            raise ArgumentError(f"cannot allocate output {p.buffer.name} of shape "
                                f"{p.shape_text} with {sizes}: that is "
                                f"({', '.join(map(str, shape))}), a negative or too large "
                                "size")
        return shape

    def _check_overlap(self, arrays, pointers):
        for p in self._outputs:
            k = p.position
            lo, hi = pointers[k], pointers[k] + arrays[k].nbytes
            for q in self._params:
                j = q.position
                if j != k and arrays[j].nbytes and lo < pointers[j] + arrays[j].nbytes \
                        and pointers[j] < hi:
                    raise ArgumentError(f"output {p.label} overlaps {q.label} in memory; "
                                        "pass a separate array (outputs must not alias)")


class Kernel(Signature):
    """A compiled kernel; call it with arrays (see the module docstring).

    `target` is its Target, `func` the LoweredFunc it was built from.
    """

    def __init__(self, func: LoweredFunc | KernelInterface, compiled, *,
                 lower: Callable[[], LoweredFunc] | None = None, tex_source: str | None = None):
        """`func` is the LoweredFunc of `compiled`, or, for code loaded from the disk
        cache, its KernelInterface, with `lower` giving the LoweredFunc when asked
        for and `tex_source` its printed form."""
        if not isinstance(func, LoweredFunc) and lower is None:
            raise BuildError("a Kernel made from a KernelInterface needs `lower`")
        super().__init__(func)
        self.target = compiled.target
        self._func = func if isinstance(func, LoweredFunc) else None
        self._lower = lower
        self._tex_source = tex_source
        self._compiled = compiled
        # a library's entry point returns a status (`tex.runtime.library`), the JIT's nothing
        entry_type = getattr(compiled, "entry_type", _ENTRY)
        self._entry = entry_type(compiled.address) if compiled.cannot_run is None else \
            _refuse(f"kernel {self.name} cannot run here: {compiled.cannot_run}")
        self._pointers = ctypes.c_void_p * len(self._params)
        # a bound-checked kernel reports an access out of bounds in two more slots
        self._report_slot = len(func.size_vars) if func.bound_checked else None
        self._sizes = ctypes.c_int64 * (len(func.size_vars) + 2 if func.bound_checked
                                        else max(1, len(func.size_vars)))

    @property
    def func(self) -> LoweredFunc:
        """The loop program this kernel was compiled from (lowered now if it came from disk)."""
        if self._func is None:
            self._func = self._lower()
        return self._func

    @property
    def bound_checked(self) -> bool:
        """Whether the kernel checks its loads and stores against its buffers' extents
        (built under `tir.instrument_bound_checkers`, `tex.PassContext`)."""
        return self._report_slot is not None

    @property
    def loaded_from_disk(self) -> bool:
        """Whether the machine code came from the disk cache rather than a compile."""
        return self._compiled.loaded_from_disk

    def __call__(self, *args):
        values = None
        if self._variables:
            args, values = self._separate(args)
        if len(args) == len(self._params):
            arrays, env = self._check(self._params, args)
            if values:
                self._bind_variables(env, values)
            self._run(arrays, env)
            return None
        if len(args) == len(self._inputs):
            given, env = self._check(self._inputs, args)
            if values:
                self._bind_variables(env, values)
            out = [allocate(self._output_shape(p, env), p.dtype) for p in self._outputs]
            self._run(self._in_param_order(given, out), env, check_overlap=False)
            return out[0] if len(out) == 1 else tuple(out)
        raise self._arity_error(len(args))

    def _run(self, arrays, env, check_overlap=True):
        pointers = [data_pointer(a) for a in arrays]
        if check_overlap:
            self._check_overlap(arrays, pointers)
        self.run_at(pointers, env)

    def run_at(self, pointers: list, env: list):
        """Run the kernel on the data at `pointers` (one per parameter, in order) with
        `env` the size variables' values, which the caller has checked as a call checks
        its arrays (`tex.torch`, for tensors whose shapes it has seen before); the
        kernel's `RuntimeCheck`s are made here."""
        self._check_runtime(env)
        sizes = self._sizes(*env)
        if self._entry(self._pointers(*pointers), sizes):
            raise self._compiled.failure()
        packed_func.raise_failure(self.name)
        if self._report_slot is not None and sizes[self._report_slot]:
            access = ctypes.string_at(sizes[self._report_slot]).decode()
            raise OutOfBoundsError(f"kernel {self.name}: {access} at flat index "
                                   f"{sizes[self._report_slot + 1]}, outside the buffer; "
                                   "the access was skipped (bound checks of "
                                   "tir.instrument_bound_checkers)")

    def get_source(self, fmt: str = "tex") -> str:
        """The kernel as text: "tex" (the loop nest), "ll" (optimised LLVM IR), "asm"."""
        if fmt == "tex":
            return self._tex_source if self._tex_source is not None else str(self.func)
        if fmt in ("ll", "asm"):
            return self._compiled.get_source(fmt)
        raise ArgumentError(f"unknown source format {fmt!r}; expected one of {SOURCE_FORMATS}")

    def __repr__(self):
        return f"<tex.Kernel {self.name} for {self.target}>"


@functools.lru_cache(maxsize=1)
def host_vscale() -> int | None:
    """The SVE vector length multiplier of this host's threads (Linux on aarch64 with
    SVE: the vector length `prctl(PR_SVE_GET_VL)` gives, over 128 bits), else None."""
    if sys.platform != "linux" or platform.machine() != "aarch64":
        return None
    length = ctypes.CDLL(None, use_errno=True).prctl(_PR_SVE_GET_VL, 0, 0, 0, 0)
    return (length & _PR_SVE_VL_LEN_MASK) // 16 if length >= 0 else None


def build_kernel(func: LoweredFunc, target="llvm") -> Kernel:
    """Compile `func` for `target` (once per distinct program) and wrap it in a `Kernel`."""
    return Kernel(func, compile_cached(func, target))
