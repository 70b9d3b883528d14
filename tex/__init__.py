"""tex: a tensor-expression compiler.

Declare what to compute (`placeholder`, `compute`, reductions), say how with
a schedule (`create_schedule`, then primitives on `s[T]`), look at the loop
program (`lower`) and compile it (`build`). See README.md and tutorials/.
TVM TE's spellings work too (`tex.tir`, `tex.nd`, `tex.cpu(0)`, `with tex.Target(...)`,
`f.time_evaluator`); README.md's "Coming from TVM" lists them.
"""
from tex import errors as error  # TVM: tvm.error.TVMError
from tex import tir
from tex.codegen.packed_func import get_global_func, register_func
from tex.driver import build, lower
from tex.dtype import DType
from tex.errors import (ArgumentError, BuildError, ConfigError, DeviceError, ExprError,
                        LoweringError, PackedFuncError, ScheduleError, TexError, TVMError)
from tex.expr import Expr, Var
from tex.extern_op import call_packed, extern
from tex.ops import all_ as all  # noqa: A001
from tex.ops import any_ as any  # noqa: A001
from tex.ops import cast, if_then_else
from tex.runtime.cuda_device import DeviceArray, device_array, empty_device
from tex.runtime.host_array import empty
from tex.runtime import nd
from tex.runtime.library import Library, export_library, load_library
from tex.runtime.nd import cpu, cuda, device
from tex.scan_op import scan
from tex.schedule import Schedule, Stage, create_schedule, thread_axis
from tex.schedule.tensorize import decl_tensor_intrin
from tex.target import Target
from tex.tensor import (IterVar, Range, Tensor, comm_reducer, compute, const, max, max_value, min,
                        min_value, placeholder, reduce_axis, size_var, sum, var)
from tex.tir import div, floordiv, floormod, indexdiv, indexmod, truncdiv, truncmod
from tex.version import __version__  # noqa: F401 - re-exported: tex.__version__
from tex import ops as _ops

select = if_then_else


def exp(x): return _ops.call("exp", x)
def log(x): return _ops.call("log", x)
def sqrt(x): return _ops.call("sqrt", x)
def rsqrt(x): return _ops.call("rsqrt", x)
def tanh(x): return _ops.call("tanh", x)
def sigmoid(x): return _ops.call("sigmoid", x)
def erf(x): return _ops.call("erf", x)
def floor(x): return _ops.call("floor", x)
def ceil(x): return _ops.call("ceil", x)
def pow(x, y): return _ops.call("pow", x, y)  # noqa: A001
def fmax(x, y): return _ops.call("fmax", x, y)  # NaN ignored, as np.fmax; tex.max keeps it
def fmin(x, y): return _ops.call("fmin", x, y)  # NaN ignored, as np.fmin; tex.min keeps it
def abs(x): return _ops.abs_(x)  # noqa: A001


__all__ = [
    "abs", "all", "any", "ArgumentError", "build", "BuildError", "call_packed", "cast", "ceil",
    "comm_reducer", "compute", "ConfigError", "const", "cpu", "create_schedule", "cuda",
    "decl_tensor_intrin", "device", "device_array", "DeviceArray", "DeviceError", "div",
    "DType", "empty", "empty_device", "erf", "error", "exp", "export_library", "Expr",
    "ExprError", "extern", "floor", "floordiv", "floormod", "fmax", "fmin", "get_global_func",
    "if_then_else", "indexdiv", "indexmod", "IterVar", "Library", "load_library", "log",
    "lower", "LoweringError", "max", "max_value", "min", "min_value", "nd", "PackedFuncError",
    "placeholder", "pow", "Range", "reduce_axis", "register_func", "rsqrt", "scan", "Schedule",
    "ScheduleError", "select", "sigmoid", "size_var", "sqrt", "Stage", "sum", "tanh", "Target",
    "Tensor", "TexError", "thread_axis", "tir", "truncdiv", "truncmod", "TVMError", "Var",
    "var",
]
