"""Expressions over a kernel's size variables as JSON values, and back.

An expression is a nested list `[node class, field, ...]`; a size variable is
`["Var", k]`, its position among the kernel's size variables; a `dtype` field
is its name. Used by the descriptions the disk cache keeps of CUDA modules
(`tex.codegen.cuda_json`) and by exported libraries (`tex.runtime.library`).
"""
from __future__ import annotations

from dataclasses import fields

from tex import expr as E
from tex.dtype import as_dtype

#: The expression nodes a description may hold (variables aside).
NODES = {cls.__name__: cls for cls in (E.Const, E.Binary, E.Compare, E.Logical, E.Not,
                                       E.Select, E.Cast, E.Call)}


def to_json(e, sizes: dict):
    """`e` as a JSON value; `sizes` maps each size variable to its position."""
    if isinstance(e, E.Var):
        return ["Var", sizes[e]]
    return [type(e).__name__, *(_field(e, name, sizes) for name in _init_fields(e))]


def from_json(value, size_vars: tuple):
    """The expression `value` describes, over `size_vars`; raises ValueError, TypeError,
    KeyError, IndexError or a TexError when it describes none."""
    if value[0] == "Var":
        return size_vars[index(value[1])]
    cls = NODES[value[0]]
    names = _init_fields(cls)
    if len(value) != len(names) + 1:
        raise ValueError(f"{value[0]} takes {len(names)} fields")
    return cls(*(_read_field(name, v, size_vars) for name, v in zip(names, value[1:])))


def index(value) -> int:
    """`value`, which must be a non-negative int (not a bool)."""
    if type(value) is not int or value < 0:
        raise ValueError(f"expected an index, got {value!r}")
    return value


def _init_fields(node) -> tuple[str, ...]:
    return tuple(f.name for f in fields(node) if f.init)


def _field(node, name: str, sizes: dict):
    value = getattr(node, name)
    if name == "dtype":
        return str(value)
    if isinstance(value, tuple):
        return [to_json(v, sizes) for v in value]
    return to_json(value, sizes) if isinstance(value, E.Expr) else value


def _read_field(name: str, value, size_vars: tuple):
    if name == "dtype":
        return as_dtype(value)
    if isinstance(value, list) and value and isinstance(value[0], list):
        return tuple(from_json(v, size_vars) for v in value)
    return from_json(value, size_vars) if isinstance(value, list) else value
