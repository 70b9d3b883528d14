"""tex: a tensor-expression compiler.

Declare what to compute (`placeholder`, `compute`, reductions), say how with
a schedule (`create_schedule`, then primitives on `s[T]`), look at the loop
program (`lower`) and compile it (`build`). See README.md and tutorials/.
"""
from tex.codegen.packed_func import get_global_func, register_func
from tex.driver import build, lower
from tex.dtype import DType
from tex.errors import (ArgumentError, BuildError, ConfigError, DeviceError, ExprError,
                        LoweringError, PackedFuncError, ScheduleError, TexError)
from tex.expr import Expr, Var
from tex.extern_op import call_packed, extern
from tex.ops import all_ as all  # noqa: A001
from tex.ops import any_ as any  # noqa: A001
from tex.ops import cast, if_then_else
from tex.runtime.cuda_device import DeviceArray, device_array, empty_device
from tex.runtime.host_array import empty
from tex.runtime.library import Library, export_library, load_library
from tex.schedule import Schedule, Stage, create_schedule, thread_axis
from tex.schedule.tensorize import decl_tensor_intrin
from tex.target import Target
from tex.tensor import (IterVar, Range, Tensor, comm_reducer, compute, const, max, max_value, min,
                        min_value, placeholder, reduce_axis, sum, var)
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
def floordiv(a, b): return _ops.binary("floordiv", a, b)
def floormod(a, b): return _ops.binary("floormod", a, b)


__all__ = [
    "ArgumentError", "BuildError", "ConfigError", "DType", "DeviceArray", "DeviceError", "Expr", "ExprError",
    "IterVar", "LoweringError", "Range", "Schedule", "ScheduleError", "Stage", "Target", "Tensor",
    "TexError", "Var", "abs", "all", "any", "build", "cast", "ceil", "comm_reducer", "compute",
    "const", "create_schedule", "decl_tensor_intrin", "device_array", "empty", "empty_device", "erf",
    "exp", "export_library", "floor", "floordiv", "floormod", "fmax", "fmin", "if_then_else",
    "Library",
    "load_library", "log", "lower", "max", "max_value", "min", "min_value", "placeholder", "pow",
    "reduce_axis", "rsqrt", "thread_axis", "select", "sigmoid", "sqrt", "sum", "tanh", "var",
    "PackedFuncError", "call_packed", "extern", "get_global_func", "register_func",
]
