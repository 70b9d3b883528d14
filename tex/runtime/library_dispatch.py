"""One entry point of a library over kernels of one declaration, chosen by a call's sizes.

    group = tex.dispatch("matmul", [k64, k96], fallback=k_any)
    tex.export_library([group], "ops.so")       # ops.matmul: k64, k96 or k_any per call

`dispatch` checks that the kernels share an interface and reads the sizes each
specialisation stands for from its constant shapes; `export_library`
(`tex.runtime.library`) compiles the group into one checked entry point whose C
code (`tex.runtime.library_abi`) picks the kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tex.errors import ArgumentError
from tex.expr import Var
from tex.printer import to_text
from tex.runtime.kernel import Kernel, _exact_extent


@dataclass(frozen=True)
class Dispatch:
    """One entry point of a library that dispatches on its sizes (made by `dispatch`).

    `cases` pairs values of the size variables (in `fallback.size_vars` order) with the
    Kernel specialised for them; `fallbacks` holds the Kernels of symbolic sizes: one,
    or one per case, run for the sizes nearest that case's (`distance`)."""

    name: str
    cases: tuple
    fallbacks: tuple

    @property
    def fallback(self) -> Kernel:
        """The first fallback, which gives the entry point its interface."""
        return self.fallbacks[0]

    def __repr__(self):
        sizes = "; ".join(",".join(map(str, values)) for values, _ in self.cases)
        other = "the nearest's fallback" if len(self.fallbacks) > 1 else self.fallback.name
        return f"<tex.Dispatch {self.name}: {sizes or 'no specialisations'}, else {other}>"


def distance(a, b) -> float:
    """How far the sizes `a` are from the sizes `b`, as a dispatch's C code measures it:
    the sum over the size variables of |log(max(x, 1)) - log(max(y, 1))|."""
    return sum(abs(math.log(max(x, 1)) - math.log(max(y, 1))) for x, y in zip(a, b))


def dispatch(name: str, specialized, fallback) -> Dispatch:
    """One entry point `name` of a library, for `export_library`, running the kernel made
    for the sizes of each call: one of `specialized` where its shapes are the ones given,
    else a fallback.

    `fallback` is a CPU Kernel whose shapes are symbolic (size variables) and that takes
    tensors only, or a list of such Kernels of one declaration, one per specialisation
    (built with its schedule, say): a call then runs the one of the specialisation whose
    sizes are nearest its own (`distance`; the first of equals). Each of `specialized` is
    a Kernel of the same declaration at constant shapes (the same parameters, dtypes,
    outputs and argument order), built with its own schedule. The sizes each stands for
    are read from its shapes (each size variable must be a whole dimension of some
    parameter). tex trusts that all these kernels compute the same thing.

    The entry point has the fallback's interface (`lib.NAME` is a Kernel of symbolic
    sizes): it checks a call's sizes as the fallback would, then runs the first
    specialisation whose sizes are those of the call, else a fallback."""
    fallbacks = list(fallback) if isinstance(fallback, (list, tuple)) else [fallback]
    if not fallbacks:
        raise ArgumentError(f"tex.dispatch({name!r}): give a fallback kernel")
    for k, kernel in enumerate(fallbacks):
        _check_fallback(name, kernel, fallbacks[0], k)
    cases, seen = [], {}
    for k, kernel in enumerate(specialized):
        values = _specialized_sizes(name, fallbacks[0], kernel, k)
        if values in seen:
            raise ArgumentError(f"tex.dispatch({name!r}): specialisations #{seen[values]} and "
                                f"#{k} are both for sizes {_sizes_text(fallbacks[0], values)}")
        seen[values] = k
        cases.append((values, kernel))
    if len(fallbacks) > 1 and len(fallbacks) != len(cases):
        raise ArgumentError(f"tex.dispatch({name!r}): {len(fallbacks)} fallbacks for "
                            f"{len(cases)} specialisations; give one, or one per "
                            "specialisation")
    return Dispatch(name, tuple(cases), tuple(fallbacks))


def _check_fallback(name: str, kernel, first, k: int):
    """ArgumentError unless `kernel` (fallback #k of dispatch `name`) is a CPU Kernel of
    symbolic sizes taking tensors only, with the interface of `first`."""
    where = f"tex.dispatch({name!r}): fallback #{k}"
    if not isinstance(kernel, Kernel):
        raise ArgumentError(f"{where} must be a CPU tex.Kernel, got {type(kernel).__name__}")
    if kernel._variables or len(kernel._slots) != len(kernel.size_vars):
        raise ArgumentError(f"{where} ({kernel.name}) takes scalar parameters or variables; "
                            "a dispatch takes tensors only")
    if (_signature(kernel), [v.name for v in kernel.size_vars]) != \
            (_signature(first), [v.name for v in first.size_vars]):
        raise ArgumentError(f"{where} ({kernel.name}) takes {_signature(kernel)}; fallback "
                            f"#0 ({first.name}) takes {_signature(first)}")


def _specialized_sizes(name: str, fallback: Kernel, kernel, k: int) -> tuple[int, ...]:
    """The values of `fallback`'s size variables that make its shapes those of `kernel`
    (specialisation #k of dispatch `name`); ArgumentError when there are none."""
    where = f"tex.dispatch({name!r}): specialisation #{k}"
    if not isinstance(kernel, Kernel):
        raise ArgumentError(f"{where} is a {type(kernel).__name__}, not a CPU tex.Kernel")
    if kernel.size_vars:
        raise ArgumentError(f"{where} ({kernel.name}) has size variables "
                            f"({', '.join(v.name for v in kernel.size_vars)}); a "
                            "specialisation has constant shapes")
    ours, theirs = [p.buffer for p in fallback._params], [p.buffer for p in kernel._params]
    same = len(ours) == len(theirs) and all(
        a.dtype == b.dtype and len(a.shape) == len(b.shape) for a, b in zip(ours, theirs)) \
        and [p.is_output for p in fallback._params] == [p.is_output for p in kernel._params] \
        and [ours.index(a) for a in fallback._arguments] == \
        [theirs.index(a) for a in kernel._arguments]
    if not same:
        raise ArgumentError(f"{where} ({kernel.name}) takes {_signature(kernel)}; the "
                            f"fallback {fallback.name} takes {_signature(fallback)}")
    values = {}
    for a, b in zip(ours, theirs):
        for extent, value in zip(a.shape, b.shape):
            if isinstance(extent, Var):
                values.setdefault(extent, int(value.value))
    unbound = [v.name for v in fallback.size_vars if v not in values]
    if unbound:
        raise ArgumentError(f"tex.dispatch({name!r}): the size variables {', '.join(unbound)} "
                            f"of {fallback.name} are no parameter's whole dimension, so a "
                            "specialisation's shapes do not give their values")
    for a, b in zip(ours, theirs):
        shape = tuple(_exact_extent(e, values) for e in a.shape)
        if shape != tuple(int(d.value) for d in b.shape):
            raise ArgumentError(f"{where} ({kernel.name}) gives {b.name} the shape "
                                f"{[int(d.value) for d in b.shape]}; the fallback's at "
                                f"{_sizes_text(fallback, values)} is {list(shape)}")
    return tuple(values[v] for v in fallback.size_vars)


def _signature(kernel: Kernel) -> str:
    """The kernel's arguments as "A float32[M, K], B float32[K, N] -> C float32[M, N]"."""
    def one(p):
        return f"{p.buffer.name} {p.buffer.dtype}[{', '.join(map(to_text, p.buffer.shape))}]"
    return ", ".join(one(p) for p in kernel._inputs) + " -> " + \
        ", ".join(one(p) for p in kernel._outputs)


def _sizes_text(kernel: Kernel, values) -> str:
    """"M=64, K=32, N=48": the values of `kernel`'s size variables (a dict or a tuple)."""
    if not isinstance(values, dict):
        values = dict(zip(kernel.size_vars, values))
    return ", ".join(f"{v.name}={values[v]}" for v in kernel.size_vars)
