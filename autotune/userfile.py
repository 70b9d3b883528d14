"""Tasks from a function of the user's Python file (`tex-tune --file`, jobs' `file = ...`).

The function is an `@autotune.template`, tuned with the given (JSON)
arguments, or a plain function returning the tensors to build (inputs, then
outputs), called with them and given a generated space. Errors raised by the
user's code propagate with their traceback.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import tex
from autotune.errors import TuneError
from autotune.task import Task, Template


def load_function(path: str, name: str):
    """The attribute `name` of the Python file at `path`, run as a fresh module."""
    if not os.path.isfile(path):
        raise TuneError(f"--file: no Python file at {path!r}")
    module_name = "_tex_tune_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up
    spec.loader.exec_module(module)
    func = getattr(module, name, None)
    if not callable(func):
        found = sorted(k for k, v in vars(module).items()
                       if isinstance(v, Template) or (callable(v) and not k.startswith("_")
                                                      and getattr(v, "__module__", None)
                                                      == module_name))
        raise TuneError(f"{path} defines no function {name!r}; it defines "
                        f"{', '.join(found) or 'none'}")
    return func


def function_task(path: str, name: str, values, target) -> Task:
    """The task of function `name` of the file at `path` applied to `values` (JSON values).

    A plain function's task is named "NAME V1,V2,...", which `task_of_record` reads back.
    """
    values = list(values)
    func = load_function(path, name)
    if isinstance(func, Template):
        return Task.from_template(func, values, target)
    tensors = func(*values)
    if not isinstance(tensors, (list, tuple)) or not all(
            isinstance(t, tex.Tensor) for t in tensors):
        raise TuneError(f"{name}({_joined(values)}) in {path} must return the tensors to "
                        f"build (inputs, then outputs) or be an @autotune.template; it "
                        f"returned {type(tensors).__name__}")
    task_name = " ".join([name] + ([_joined(values)] if values else []))
    return Task.from_compute(tensors, target, name=task_name)


def _joined(values) -> str:
    """JSON values separated by commas, without spaces: `1024,64` or `"NCHW",[3,3]`."""
    return ",".join(json.dumps(v, separators=(",", ":")) for v in values)


def task_of_record(path: str, name: str, target: str, workload: str) -> Task | None:
    """The task of the file at `path` that a log's record names (task `name`, `workload`),
    or None when the file declares it differently now or does not define it."""
    function, _, text = name.partition(" ")
    try:
        kind, _, args = json.loads(workload)
        values = args if kind == "template" else None
    except (ValueError, TypeError):
        values = None
    try:
        if values is None:
            values = json.loads(f"[{text}]")
        task = function_task(path, function, values, target)
    except (ValueError, tex.TexError):
        return None
    return task if task.workload_key == workload else None
