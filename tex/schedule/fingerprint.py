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

A tensorize intrinsic is written as its name, its declaration (the
operation, canonical like any other) and its lowering function, the one
part whose output the walk cannot see; lowering calls it on the tile's
views, and it is assumed to depend on nothing else. A function of tex's own
modules, defined at module level (no closure), is written by its qualified
name: tex's sources fix what it does, and the disk cache's key covers them.
Any other function (the user's, a closure, a partial) is written as its
identity within this process: a serial number given at first sight, never
reused, tagged with a token unique to the process. Two intrinsics with the
same function object then share kernels in this process, and their kernels
are not written to the disk cache (`process_local`): the same name in another
process may well mean different code.

The user's intrinsic lowering rules (`tex.intrin_rules`) are not part of
the schedule; `build` appends `lowering_rules(kind, sch)`, their functions written
as `lowering_identity` writes an intrinsic's, so that a kernel built under a
rule for a call it makes is never taken for one built without it.

An extern operation is written with its statement and the buffers it names
(buffers, like variables, are identities). A packed call in it names its
Python function by the registered name, which is data: the kernel looks the
name up each time it runs, in the process running it, so such kernels are
kept on disk like any other.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
import threading
import types
import uuid
import weakref

from tex import intrin_rules
from tex.dtype import DType
from tex.expr import Call, OpCall, Var
from tex.ir import Buffer
from tex.scan_op import ScanOp
from tex.schedule.extern_stage import ExternStage
from tex.schedule.scan import ScanStage
from tex.schedule.stage import Stage
from tex.schedule.tensorize import TensorIntrin
from tex.tensor import CommReducer, ComputeOp, ExternOp, IterVar, PlaceholderOp, Tensor
from tex.visitor import collect


class Unfingerprintable(Exception):
    """The schedule holds an object the fingerprint cannot write out faithfully."""


#: Identity objects: how each is numbered and which of its attributes define it.
_IDENTITIES = {
    Var: ("v", ("name", "dtype")),
    IterVar: ("iv", ("var", "dom", "kind")),
    PlaceholderOp: ("op", ("name", "shape", "dtypes")),
    ComputeOp: ("op", ("name", "axis", "body", "tag")),
    ScanOp: ("op", ("name", "axis", "init", "update", "state_placeholder", "inputs")),
    ExternOp: ("op", ("name", "inputs", "input_placeholders", "output_placeholders",
                      "statement", "tag")),
    Buffer: ("b", ("name", "dtype", "shape", "scope", "strides")),
    CommReducer: ("r", ("name", "lhs", "rhs", "results", "identities")),
    # lower_fn: see `lowering_identity`
    TensorIntrin: ("ti", ("name", "op", "lower_fn", "binds", "scalar_params")),
    Stage: ("st", None),  # every attribute but the back-reference to the schedule
    ScanStage: ("st", None),
    ExternStage: ("st", None),
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
        return type(x).__name__ + "(" + ",".join(self._field(x, n) for n in names) + ")"

    def _field(self, x, name: str) -> str:
        value = getattr(x, name)
        if isinstance(x, TensorIntrin) and name == "lower_fn":
            return lowering_identity(value)
        return self(value)


def lowering_identity(fn) -> str:
    """How the fingerprint names an intrinsic's lowering function `fn` (see the module
    docstring): `function('tex.intrin.cuda_wmma._lower')` for a module-level function of
    tex, else `function(local,'<process token>',<serial>)` for this object in this process."""
    module = getattr(fn, "__module__", None) or ""
    if isinstance(fn, types.FunctionType) and fn.__closure__ is None and \
            (module == "tex" or module.startswith("tex.")) and \
            _resolve(sys.modules.get(module), fn.__qualname__) is fn:
        return f"function({module + '.' + fn.__qualname__!r})"
    return f"{_LOCAL}{_PROCESS!r},{_local_serial(fn)})"


def lowering_rules(target_kind: str, sch) -> str:
    """The intrinsic lowering rules that apply for `target_kind` ("llvm", "cuda") to the
    calls `sch`'s computations make, for appending to a fingerprint: each such
    operator's rules by `lowering_identity` (a user's rule makes the kernel
    process-local). Empty when there are none. (A rule may make calls that other rules
    lower, but only from a call that has a rule, which already makes the kernel
    process-local; the in-memory cache keys on the rules' version besides.)"""
    rules = intrin_rules.rules_for(target_kind)
    if not rules:
        return ""
    used = {node.op.name for stage in sch.stages for body in getattr(stage.op, "body", ())
            for node in collect(body, lambda n: isinstance(n, (Call, OpCall)))}
    return "".join(f"|rules({op!r}:{','.join(map(lowering_identity, fns))})"
                   for op, fns in sorted(rules.items()) if op in used)


def process_local(text: str) -> bool:
    """Whether the fingerprint `text` names an object by its identity in this process, so
    that no other process can ever have it (its kernel is not worth keeping on disk)."""
    return _LOCAL in text


def _resolve(module, qualname: str):
    """The object `module.<qualname>` names now (None when it names nothing)."""
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


_LOCAL = "function(local,"
#: Identifies this process in process-local names: no other process, now or later, has it.
_PROCESS = uuid.uuid4().hex
_serials = itertools.count()
_local_lock = threading.RLock()  # re-entrant: a weak reference callback may run under it
_local: dict[int, tuple] = {}  # id(fn) -> (weak reference to fn, or fn itself; serial)


def _local_serial(fn) -> int:
    """A number for the object `fn`, the same while it lives and never given to another."""
    key = id(fn)
    with _local_lock:
        entry = _local.get(key)
        if entry is not None:
            held, serial = entry
            if (held() if isinstance(held, weakref.ref) else held) is fn:
                return serial
        try:
            held = weakref.ref(fn, lambda ref: _forget(key, ref))
        except TypeError:  # cannot be referred to weakly: keep it, so its id stays its own
            held = fn
        serial = next(_serials)
        _local[key] = (held, serial)
        return serial


def _forget(key: int, ref):
    with _local_lock:
        if _local.get(key, (None,))[0] is ref:
            del _local[key]


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
