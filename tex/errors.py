"""The exceptions tex raises on bad input.

Every error a user can cause is a `TexError`. Messages name the thing at fault
(stage, axis, argument), what was expected and what came.
"""


class TexError(RuntimeError):
    """Base class of every error tex raises on bad input. A RuntimeError, as TVM's
    `TVMError` is, so that TE code catching RuntimeError catches it; the subclasses are
    also the ValueError or TypeError that says what was wrong."""


#: TVM's name for its errors, so that `except tvm.TVMError` ports as `except tex.TVMError`.
TVMError = TexError


class ExprError(TexError, TypeError):
    """An expression was built from operands that do not fit (dtype, arity, kind)."""


class ScheduleError(TexError, ValueError):
    """A schedule primitive was called in a way that cannot be honoured."""


class ConfigError(TexError, ValueError):
    """An environment variable tex reads (`tex.config`), or a `tex.PassContext`'s config,
    holds a key or value it cannot use."""


class LoweringError(TexError, ValueError):
    """A schedule turned out illegal once bounds were known (e.g. a symbolic vector width)."""


class ArgumentError(TexError, ValueError):
    """A kernel was called with an argument that does not match its signature."""


class BuildError(TexError, RuntimeError):
    """The backend could not compile a lowered program (or the target is unknown)."""


class DeviceError(TexError, RuntimeError):
    """A kernel needs a device that is missing or failed (no GPU or driver, a CUDA error,
    a CPU unit such as AMX that this machine lacks or the OS refuses)."""


class PackedFuncError(TexError, RuntimeError):
    """A packed function (`tex.register_func`, `tex.call_packed`) is registered twice, is
    missing when a kernel calls it, or raised there (its exception is the `__cause__`)."""


class OutOfBoundsError(TexError, IndexError):
    """A kernel built with bound checks (`tir.instrument_bound_checkers`, see
    `tex.PassContext`) accessed a buffer outside its extent."""
