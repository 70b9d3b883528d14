"""A schedule's fingerprint: text that determines its lowered program, computed without lowering.

`fingerprint(sch, args, name)` writes out everything lowering reads: every
stage in order with all its fields (operation, relations, loop order,
annotations, pragmas, attachment, scope, storage alignment), each
operation's shape, axes, dtypes and body, the schedule's outputs, the
argument list and the kernel's name. Variables, axes, operations, stages and
reducers are identities, so each is written as a number given at its first
appearance in this fixed walk, with its own fields listed once in a table at
the end; names appear as well. Two schedules with equal fingerprints
therefore lower to the same program (up to the identity of variables), which
is what lets the kernel caches skip lowering.

The walk is generic over dataclass fields and plain attributes, so a field
added to a node or a stage is covered without touching this module. An
object it does not know raises `Unfingerprintable`; the caller then lowers
as usual.
"""
from __future__ import annotations

import dataclasses

from tex.dtype import DType
from tex.expr import Var
from tex.schedule.stage import Stage
from tex.tensor import CommReducer, ComputeOp, IterVar, PlaceholderOp, Tensor


class Unfingerprintable(Exception):
    """The schedule holds an object the fingerprint cannot write out faithfully."""


#: Identity objects: how each is numbered and which of its attributes define it.
_IDENTITIES = {
    Var: ("v", ("name", "dtype")),
    IterVar: ("iv", ("var", "dom", "kind")),
    PlaceholderOp: ("op", ("name", "shape", "dtypes")),
    ComputeOp: ("op", ("name", "axis", "body", "tag")),
    CommReducer: ("r", ("name", "lhs", "rhs", "results", "identities")),
    Stage: ("st", None),  # every attribute but the back-reference to the schedule
}


class _Writer:
    def __init__(self):
        self.numbers: dict[int, str] = {}
        self.keep: list = []  # holds numbered objects, so no id is reused during the walk
        self.table: list[str] = []
        self.memo: dict[int, str] = {}

    def __call__(self, x) -> str:
        if x is None or isinstance(x, (bool, int, float, str)):
            return repr(x)
        if isinstance(x, DType):
            return str(x)
        if isinstance(x, (tuple, list)):
            return "[" + ",".join(map(self, x)) + "]"
        if isinstance(x, dict):
            return "{" + ",".join(f"{self(k)}:{self(v)}" for k, v in x.items()) + "}"
        if isinstance(x, Tensor):
            return f"{self(x.op)}.{x.value_index}"
        kind = _IDENTITIES.get(type(x))
        if kind is not None:
            return self._identity(x, *kind)
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            known = self.memo.get(id(x))
            if known is None:
                known = self._fields(x, [f.name for f in dataclasses.fields(x)])
                self.memo[id(x)] = known
                self.keep.append(x)
            return known
        raise Unfingerprintable(f"cannot fingerprint a {type(x).__name__}")

    def _identity(self, x, prefix: str, attributes) -> str:
        number = self.numbers.get(id(x))
        if number is None:
            number = f"{prefix}{len(self.numbers)}"
            self.numbers[id(x)] = number
            self.keep.append(x)
            if attributes is None:
                attributes = [a for a in vars(x) if a != "schedule"]
            self.table.append(f"{number} = {self._fields(x, attributes)}")
        return number

    def _fields(self, x, names) -> str:
        return type(x).__name__ + "(" + ",".join(self(getattr(x, n)) for n in names) + ")"


def fingerprint(sch, args, name: str) -> str:
    """The text that determines `lower(sch, args, name)` (see the module docstring).

    Raises `Unfingerprintable` for a schedule holding an object it cannot
    write out.
    """
    write = _Writer()
    lines = [f"kernel {name!r}",
             "args " + write(list(args)),
             "outputs " + write(list(sch.outputs)),
             "stages " + write(list(sch.stages))]
    return "\n".join(lines + write.table)
