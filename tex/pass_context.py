"""`PassContext`: build options for the code inside a `with` block, as TVM's.

    with tex.PassContext(config={"tir.noalias": False, "tir.instrument_bound_checkers": True}):
        f = tex.build(s, [A, B])

The innermost `with PassContext(...)` being run (a context variable, so each
thread and asyncio task sees its own) is `PassContext.current()`; outside every
block it is a context with no config. As in TVM, an inner context replaces an
outer one whole: its config is all that holds inside it. What a context says is
read when a schedule is created (`te.keep_schedule_record`) or when a kernel is
lowered and built (the others); a kernel keeps what it was built with.

| key                           | value              | effect                                 |
|-------------------------------|--------------------|----------------------------------------|
| te.keep_schedule_record       | bool (False)       | schedules created inside keep a frozen |
|                               |                    | snapshot per primitive applied         |
|                               |                    | (`Schedule.schedule_record`,           |
|                               |                    | `primitive_record`)                    |
| tir.noalias                   | bool (True)        | False: the code claims no `noalias`    |
|                               |                    | (LLVM IR) or `__restrict__` (CUDA C)   |
|                               |                    | of the kernel's parameters             |
| tir.instrument_bound_checkers | bool (False)       | CPU kernels check every load and store |
|                               |                    | against its buffer's extent, skip an   |
|                               |                    | access out of bounds, and the call     |
|                               |                    | raises OutOfBoundsError naming it      |
| tir.disable_assert            | bool (False)       | True: no bound checks, even where      |
|                               |                    | instrument_bound_checkers asks         |
| tir.add_lower_pass            | [(phase, fn), ...] | user passes `fn(stmt) -> stmt` that    |
|                               |                    | `lower` runs at `phase` 0..3           |
|                               |                    | (`tex.driver`)                         |
| cuda.kernels_output_dir       | a directory        | CUDA builds write `<name>.cu` there    |

Bound checks are for CPU targets (`tex.codegen.llvm_bounds`): lowering for a GPU
under them raises BuildError. User passes (`tir.add_lower_pass`) run at the
points `tex.driver.USER_PHASES` names: phase 0 before tex's pipeline, on
multi-dimensional buffers; 1 after storage flattening; 2 after vectorizing and
unrolling; 3 at the end. A pass is a function from tex's loop-IR statement to
a statement. The build caches key on what changes the code
(`PassContext.code_key`); a build with user passes is not cached by its
schedule's fingerprint, nor kept on disk.

`tir.disable_assert`: the only checks tex puts inside a kernel are the bound
checks above, so that is what it removes. The checks every call makes on its
arguments (dtype, rank, shape, layout, alignment, overlap: `tex.runtime.kernel`)
stay: they are what keeps a kernel inside its arrays, not assertions a program
states. `opt_level` and `disabled_pass` are kept (`ctx.opt_level`,
`ctx.disabled_pass`) and change nothing: tex runs its whole pipeline at every
level, and none of its passes goes by a TVM pass's name.
TVM: `tvm.transform.PassContext`.
"""
from __future__ import annotations

import contextvars
import os
from types import MappingProxyType
from typing import Callable

from tex.errors import ConfigError


def _boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"PassContext config {key!r} is True or False, got "
                          f"{type(value).__name__} {value!r}")
    return value


def _lower_passes(key: str, value) -> tuple[tuple[int, Callable], ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"PassContext config {key!r} is a list of (phase, pass) pairs, got "
                          f"{type(value).__name__} {value!r}")
    found = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise ConfigError(f"PassContext config {key!r}: each item is a (phase, pass) pair, "
                              f"got {item!r}")
        phase, run = item
        if type(phase) is not int or not 0 <= phase <= 3:
            raise ConfigError(f"PassContext config {key!r}: the phase is an int 0..3 (0 before "
                              f"storage flattening, 3 at the end), got {phase!r}")
        if not callable(run):
            raise ConfigError(f"PassContext config {key!r}: the pass of phase {phase} is a "
                              f"function from a statement to a statement, got {run!r}")
        found.append((phase, run))
    return tuple(found)


def _directory(key: str, value) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"PassContext config {key!r} is a directory's path, got {value!r}")
    return os.fspath(value)


#: Each config key tex knows: (its default, the check that gives its value).
KEYS: dict[str, tuple[object, Callable]] = {
    "te.keep_schedule_record": (False, _boolean),
    "tir.noalias": (True, _boolean),
    "tir.instrument_bound_checkers": (False, _boolean),
    "tir.disable_assert": (False, _boolean),
    "tir.add_lower_pass": ((), _lower_passes),
    "cuda.kernels_output_dir": (None, _directory),
}

_entered: contextvars.ContextVar = contextvars.ContextVar("pass_contexts", default=())


class PassContext:
    """Build options for the code run inside `with PassContext(...):` (module docstring).

    `config` maps the keys of `KEYS` to values; an unknown key or a value of the
    wrong kind raises ConfigError naming it. `ctx.config` is what was given,
    `ctx.get(key)` a key's value or its default.
    TVM: `tvm.transform.PassContext(opt_level=2, config={...}, disabled_pass=[...])`.
    """

    def __init__(self, opt_level: int = 2, required_pass=None, disabled_pass=None,
                 instruments=None, config=None):
        if type(opt_level) is not int or not 0 <= opt_level <= 4:
            raise ConfigError(f"PassContext: opt_level is an int 0..4, got {opt_level!r}")
        for name, names in (("required_pass", required_pass), ("disabled_pass", disabled_pass)):
            if names is not None and not (isinstance(names, (list, tuple, set)) and
                                          all(isinstance(n, str) for n in names)):
                raise ConfigError(f"PassContext: {name} is a list of pass names, got {names!r}")
        if instruments:
            raise ConfigError("PassContext: tex takes no pass instruments (instruments=); "
                              "TEX_PRINT_AFTER and TEX_VERIFY show what each pass did")
        self.opt_level = opt_level
        self.required_pass = tuple(required_pass or ())
        self.disabled_pass = tuple(disabled_pass or ())
        self.config = MappingProxyType(_checked(config or {}))

    def get(self, key: str):
        """The value of config `key`: the one given, else its default."""
        if key not in KEYS:
            raise ConfigError(_unknown(key))
        return self.config.get(key, KEYS[key][0])

    @property
    def bound_checks(self) -> bool:
        """Whether kernels built here check their accesses (instrument_bound_checkers and not
        disable_assert)."""
        return self.get("tir.instrument_bound_checkers") and not self.get("tir.disable_assert")

    def code_key(self) -> tuple:
        """What of this context changes a kernel's code: part of the build caches' keys."""
        passes = tuple((phase, id(run)) for phase, run in self.get("tir.add_lower_pass"))
        return (self.get("tir.noalias"), self.bound_checks, passes)

    def __enter__(self) -> "PassContext":
        _entered.set(_entered.get() + (self,))
        return self

    def __exit__(self, *exc_info):
        _entered.set(_entered.get()[:-1])

    @staticmethod
    def current() -> "PassContext":
        """The innermost `with PassContext(...)` being run, else one with no config.
        TVM: `PassContext.current()`."""
        entered = _entered.get()
        return entered[-1] if entered else _DEFAULT

    def __repr__(self):
        return f"PassContext(opt_level={self.opt_level}, config={dict(self.config)!r})"


def _unknown(key) -> str:
    return (f"PassContext: unknown config key {key!r}; tex knows "
            + ", ".join(map(repr, KEYS)))


def _checked(config) -> dict:
    """`config` with each value checked (and normalised) by its key's check."""
    if not hasattr(config, "items"):
        raise ConfigError(f"PassContext: config is a dict of options, got "
                          f"{type(config).__name__} {config!r}")
    checked = {}
    for key, value in config.items():
        if key not in KEYS:
            raise ConfigError(_unknown(key))
        checked[key] = KEYS[key][1](key, value)
    return checked


_DEFAULT = PassContext()
