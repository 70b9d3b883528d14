"""AutoTVM templates and tasks, over `autotune.task`.

An AutoTVM template takes only its own arguments and reads its
configuration with `get_config()`; tex's templates take `cfg` first. The
`template` decorator bridges the two: it makes a tex `Template` whose
function sets the configuration `get_config()` returns, then calls the
user's function.

    @autotvm.template("tutorial/matmul")
    def matmul(N, L, M, dtype):
        ...
        cfg = autotvm.get_config()
        cfg.define_split("tile_y", y, num_outputs=2)
        ...
        return s, [A, B, C]

    task = autotvm.task.create("tutorial/matmul", args=(512, 512, 512, "float32"),
                               target="llvm")
    s, tensors = matmul(512, 512, 512, "float32")   # best recorded config, else the fallback

Called directly, a template builds the configuration that the active
`autotvm.apply_history_best` contexts recorded as fastest for its workload
(template name and arguments), for the target of the enclosing
`with tex.Target(...):`, or else the one target those records were measured
on (a TuneError when they hold the workload for several targets). With no
record, the template runs with the fallback configuration: every knob's first
candidate (no split, the given order, no annotation), `cfg.is_fallback` True.

Templates are found by name in a table this module keeps; decorating a
function under a name already taken replaces the older template (a notebook
cell run again).
"""
from __future__ import annotations

import contextvars
import functools
import json

from autotune import task as tex_task
from autotune.autotvm import space
from autotune.autotvm.space import ConfigEntity
from autotune.errors import TuneError
from autotune.history import active_logs, best_record
from tex.target import Target

__all__ = ["Task", "TemplateFunction", "create", "get_config", "space", "template"]

#: The configuration of the template running now (get_config() returns it).
_current_config: contextvars.ContextVar = contextvars.ContextVar("autotvm_config", default=None)
#: Whether the template is running with its fallback configuration.
_fallback: contextvars.ContextVar = contextvars.ContextVar("autotvm_fallback", default=False)

#: The AutoTVM templates by name.
_TEMPLATES: dict[str, "TemplateFunction"] = {}


def get_config() -> ConfigEntity:
    """The configuration of the AutoTVM template running now."""
    config = _current_config.get()
    if config is None:
        raise TuneError("autotvm.get_config() is called outside an AutoTVM template (a "
                        "function decorated with @autotvm.template, being called or tuned)")
    return config


class TemplateFunction:
    """An AutoTVM template: `func(*args) -> (schedule, tensors)` reading `get_config()`."""

    def __init__(self, name: str, func):
        self.name, self.func = name, func
        self.tex_template = tex_task.Template(name, self._with_config)
        functools.update_wrapper(self, func)

    def _with_config(self, tex_config, *args):
        """The tex template's function: `func(*args)` with `get_config()` answering."""
        token = _current_config.set(ConfigEntity(tex_config, is_fallback=_fallback.get()))
        try:
            return self.func(*args)
        finally:
            _current_config.reset(token)

    def __call__(self, *args):
        """(schedule, tensors) of the best recorded configuration, else the fallback."""
        key = tex_task.template_workload_key(self.name, args)
        target = _recorded_target(self.name, key)
        found = best_record(key, target) if target is not None else None
        config_space = self.tex_template.space(*args)
        if found is not None:
            return config_space.instantiate(config_space.from_json(found.config))
        token = _fallback.set(True)
        try:
            return config_space.instantiate(config_space.first_valid())
        finally:
            _fallback.reset(token)

    def __repr__(self):
        return f"autotvm template {self.name!r}"


def _recorded_target(name: str, key: str) -> str | None:
    """The target of the enclosing `with tex.Target(...):`, else the one target the
    active `apply_history_best` contexts hold records of workload `key` for; None when
    they hold none."""
    current = Target.current()
    if current is not None:
        return str(current)
    targets = sorted({t for context in active_logs.get() for w, t in context.best if w == key})
    if len(targets) > 1:
        raise TuneError(f"the tuning logs in effect hold template {name!r} with these "
                        f"arguments for several targets {targets}; give apply_history_best "
                        "the records of one target")
    return targets[0] if targets else None


def template(task_name: str, func=None):
    """Decorator making `func(*args) -> (schedule, tensors)` an AutoTVM template named
    `task_name` (used as `@template(name)` or `template(name, func)`)."""
    if not isinstance(task_name, str) or not task_name:
        raise TuneError(f"autotvm.template needs a template name (a string), got {task_name!r}")

    def register(function):
        if isinstance(function, TemplateFunction) or not callable(function):
            raise TuneError(f"autotvm.template({task_name!r}) decorates a plain function, got "
                            f"{function!r}")
        _TEMPLATES[task_name] = TemplateFunction(task_name, function)
        return _TEMPLATES[task_name]

    return register if func is None else register(func)


def lookup(name) -> TemplateFunction:
    """The template registered as `name` (or `name` itself when it is a template)."""
    if isinstance(name, TemplateFunction):
        return name
    if name not in _TEMPLATES:
        raise TuneError(f"no AutoTVM template named {name!r}; the templates are "
                        f"{sorted(_TEMPLATES)} (decorate a function with "
                        "@autotvm.template(name) and run that code first)")
    return _TEMPLATES[name]


class Task(tex_task.Task):
    """A tuning task of an AutoTVM template: tex's task with AutoTVM's names."""

    @property
    def config_space(self):
        """The space of configurations (tex's `ConfigSpace`)."""
        return self.space

    @property
    def args(self) -> tuple:
        """The template's arguments."""
        return tuple(json.loads(self.workload_key)[2])

    @property
    def flop(self) -> float:
        """Floating-point operations of one run (declared by `cfg.add_flop`, else counted)."""
        return self.flops

    @property
    def workload(self) -> tuple:
        """(template name, *arguments)."""
        return (self.name, *self.args)


def create(task_name, args, target="llvm") -> Task:
    """The task of the template named `task_name` applied to `args` (JSON values) on
    `target` ("llvm", "llvm -mcpu=...", "cuda", or a `tex.Target`)."""
    if not isinstance(args, (tuple, list)):
        raise TuneError(f"autotvm.task.create: args must be a tuple of the template's "
                        f"arguments, got {args!r}")
    return Task.from_template(lookup(task_name).tex_template, tuple(args), target)
