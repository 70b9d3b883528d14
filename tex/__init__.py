"""tex: a tensor-expression compiler.

Declare what to compute (`placeholder`, `compute`, reductions), say how with
a schedule (`create_schedule`, then primitives on `s[T]`), look at the loop
program (`lower`) and compile it (`build`). See README.md and tutorials/.
TVM TE's spellings work too (`tex.tir`, `tex.nd`, `tex.cpu(0)`, `with tex.Target(...)`,
`f.time_evaluator`); README.md's "Coming from TVM" lists them.
"""
from tex import errors as error  # TVM: tvm.error.TVMError
from tex import container, contrib, tir
from tex.codegen.packed_func import get_global_func, register_func
from tex.driver import build, lower, schedule_to_module
from tex.dtype import DType
from tex.errors import (ArgumentError, BuildError, ConfigError, DeviceError, ExprError,
                        LoweringError, OutOfBoundsError, PackedFuncError, ScheduleError, TexError,
                        TVMError)
from tex.expr import Expr, Var
from tex.extern_op import call_packed, extern
from tex.intrin_rules import register_intrin_lowering, register_op_attr
from tex.lower.introspect import InferBound, ScheduleOps
from tex.pass_context import PassContext
from tex.ops import all_ as all  # noqa: A001
from tex.ops import any_ as any  # noqa: A001
from tex.ops import call_pure_extern, cast, if_then_else, ldexp
from tex.runtime.cuda_device import DeviceArray, device_array, empty_device, synchronize
from tex.runtime.host_array import empty
from tex.runtime import nd
from tex.runtime.library import Library, export_library, load_library
from tex.runtime.library_dispatch import dispatch
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
def floor(x): return _ops.rounding("floor", x)
def ceil(x): return _ops.rounding("ceil", x)
def pow(x, y): return _ops.call("pow", x, y)  # noqa: A001
power = pow  # TE's name
def fmax(x, y): return _ops.call("fmax", x, y)  # NaN ignored, as np.fmax; tex.max keeps it
def fmin(x, y): return _ops.call("fmin", x, y)  # NaN ignored, as np.fmin; tex.min keeps it
def abs(x): return _ops.abs_(x)  # noqa: A001
def nearbyint(x): return _ops.rounding("nearbyint", x)  # to nearest, ties to even, as np.rint
def round(x): return _ops.rounding("round", x)  # noqa: A001 - ties to even, as np.round
def trunc(x): return _ops.rounding("trunc", x)
def exp2(x): return _ops.call("exp2", x)
def exp10(x): return _ops.call("exp10", x)
def log2(x): return _ops.call("log2", x)
def log10(x): return _ops.call("log10", x)
def log1p(x): return _ops.call("log1p", x)
def sin(x): return _ops.call("sin", x)
def cos(x): return _ops.call("cos", x)
def tan(x): return _ops.call("tan", x)
def sinh(x): return _ops.call("sinh", x)
def cosh(x): return _ops.call("cosh", x)
def asin(x): return _ops.call("asin", x)
def acos(x): return _ops.call("acos", x)
def atan(x): return _ops.call("atan", x)
def asinh(x): return _ops.call("asinh", x)
def acosh(x): return _ops.call("acosh", x)
def atanh(x): return _ops.call("atanh", x)
def atan2(y, x): return _ops.call("atan2", y, x)
def hypot(x, y): return _ops.call("hypot", x, y)
def copysign(x, y): return _ops.call("copysign", x, y)
def nextafter(x, y): return _ops.call("nextafter", x, y)
def fmod(x, y): return _ops.call("fmod", x, y)  # the sign of x, as np.fmod (not np.mod)
def clz(x): return _ops.cast("int32", _ops.bit_count("clz", x))  # leading zero bits, int32
def popcount(x): return _ops.bit_count("popcount", x)  # one bits (two's complement)
def isnan(x): return _ops.classify("isnan", x)
def isinf(x): return _ops.classify("isinf", x)
def isfinite(x): return _ops.classify("isfinite", x)


__all__ = [
    "abs", "acos", "acosh", "all", "any", "ArgumentError", "asin", "asinh", "atan", "atan2",
    "atanh", "build", "BuildError", "call_packed", "call_pure_extern", "cast", "ceil", "clz",
    "comm_reducer", "compute", "ConfigError", "const", "container", "contrib", "copysign", "cos",
    "cosh", "cpu", "create_schedule", "cuda", "decl_tensor_intrin", "device", "device_array",
    "DeviceArray", "DeviceError", "dispatch", "div", "DType", "empty", "empty_device", "erf",
    "error", "exp", "exp10", "exp2", "export_library", "Expr", "ExprError", "extern", "floor",
    "floordiv", "floormod", "fmax", "fmin", "fmod", "get_global_func", "hypot", "if_then_else",
    "indexdiv", "indexmod", "InferBound", "isfinite", "isinf", "isnan", "IterVar", "ldexp",
    "Library", "load_library", "log", "log10", "log1p", "log2", "lower", "LoweringError", "max",
    "max_value", "min", "min_value", "nd", "nearbyint", "nextafter", "OutOfBoundsError",
    "PackedFuncError", "PassContext", "placeholder", "popcount", "pow", "power", "Range",
    "reduce_axis", "register_func", "register_intrin_lowering", "register_op_attr", "round",
    "rsqrt", "scan", "Schedule", "schedule_to_module", "ScheduleError", "ScheduleOps", "select",
    "sigmoid", "sin", "sinh",
    "size_var", "sqrt", "Stage", "sum", "synchronize", "tan", "tanh", "Target", "Tensor",
    "TexError", "thread_axis", "tir", "trunc", "truncdiv", "truncmod", "TVMError", "Var", "var",
]
