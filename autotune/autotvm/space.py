"""AutoTVM's knob values and its `cfg` object, over `autotune.space`.

Inside an AutoTVM template, `autotvm.get_config()` returns a `ConfigEntity`:
it forwards the `define_*` calls to tex's space or configuration (with
AutoTVM's policies and defaults: splits by "factors" unless told otherwise)
and answers `cfg["name"]` with AutoTVM's entities, whose `apply` takes the
schedule and the operation, as AutoTVM's do:

    yo, yi = cfg["tile_y"].apply(s, C, y)      # tex: cfg["tile_y"].apply(s[C], y)
    cfg["tile_y"].size                          # [-1, 32]: the outer extent is what is left

A fallback configuration (no tuning record) may be changed, as in AutoTVM:
`if cfg.is_fallback: cfg["tile_y"] = SplitEntity([-1, 8])`.
"""
from __future__ import annotations

from dataclasses import dataclass

from autotune.errors import TuneError
from autotune.space import (AnnotateChoice, Knob, OptionChoice, ReorderChoice, SplitChoice,
                            axis_extent, split_candidates)

#: AutoTVM's split policies, as `autotune.space.split_candidates` names them.
_SPLIT_POLICIES = {"factors": "factors", "power2": "power2", "verbose": "all"}


@dataclass
class SplitEntity:
    """A split into len(size) loops, outermost first; `size[0]` is -1 (what is left)."""

    size: list

    def apply(self, sch, op, axis) -> list:
        """Split `axis` of `sch[op]`; returns the loops, outermost first."""
        return SplitChoice(tuple(self.size)).apply(sch[op], axis)


@dataclass
class ReorderEntity:
    """An order of a knob's axes, as positions in the list the template passes."""

    perm: list

    def apply(self, sch, op, axes) -> list:
        """Reorder `axes` of `sch[op]`; returns them in the new order."""
        return ReorderChoice(tuple(self.perm)).apply(sch[op], axes)


@dataclass
class AnnotateEntity:
    """One of "none", "unroll", "vectorize" per axis."""

    anns: list

    def apply(self, sch, op, axes) -> list:
        """Unroll or vectorize each axis of `sch[op]` as chosen; returns the axes."""
        AnnotateChoice(tuple(self.anns)).apply(sch[op], axes)
        return list(axes)


@dataclass
class OtherOptionEntity:
    """A plain value; read it as `.val`."""

    val: object


def entity_of(choice):
    """The AutoTVM entity of a tex knob's choice."""
    if isinstance(choice, SplitChoice):
        return SplitEntity(list(choice.size))
    if isinstance(choice, ReorderChoice):
        return ReorderEntity(list(choice.perm))
    if isinstance(choice, AnnotateChoice):
        return AnnotateEntity(list(choice.anns))
    if isinstance(choice, OptionChoice):
        return OtherOptionEntity(choice.val)
    raise TuneError(f"no AutoTVM entity for a knob value of type {type(choice).__name__}")


class ConfigEntity:
    """AutoTVM's `cfg`: tex's `ConfigSpace` (while the space is collected) or `Config`
    (while a schedule is made) seen through AutoTVM's methods.

    `is_fallback` is True when the template runs with the default configuration
    because no tuning record was found.
    """

    def __init__(self, tex_config, is_fallback: bool = False):
        self.tex_config = tex_config
        self.is_fallback = is_fallback
        self._overrides: dict = {}

    def define_split(self, name, axis, policy="factors", num_outputs=2, max_factor=None,
                     filter=None, candidate=None):  # noqa: A002 (AutoTVM's keyword)
        """Split knob: `policy` "factors" (AutoTVM's default), "power2", "verbose" (both)
        or "candidate" (the sizes listed in `candidate`); `filter(SplitEntity) -> bool`
        keeps some."""
        if policy == "candidate":
            choices = _candidate_splits(name, candidate, num_outputs)
        elif policy in _SPLIT_POLICIES:
            choices = split_candidates(axis_extent(axis), num_outputs, _SPLIT_POLICIES[policy],
                                       max_factor)
        else:
            raise TuneError(f"define_split {name!r}: policy must be one of "
                            f"{sorted(_SPLIT_POLICIES) + ['candidate']}, got {policy!r}")
        if filter is not None:
            choices = tuple(c for c in choices if filter(SplitEntity(list(c.size))))
        self.tex_config.define(Knob(name, "split", choices))

    def define_reorder(self, name, axes, policy="all", candidate=None):
        """Reorder knob: `policy` "all" (every order), "identity" (the given one) or
        "candidate" (the orders listed in `candidate`, each a list of the axes)."""
        axes = list(axes)
        if policy == "all":
            self.tex_config.define_reorder(name, axes)
        elif policy == "identity":
            self.tex_config.define_reorder(name, axes, [list(range(len(axes)))])
        elif policy == "candidate":
            orders = [[_position(name, axes, axis) for axis in order]
                      for order in candidate or ()]
            self.tex_config.define_reorder(name, axes, orders)
        else:
            raise TuneError(f"define_reorder {name!r}: policy must be 'all', 'identity' or "
                            f"'candidate', got {policy!r}")

    def define_annotate(self, name, axes, policy):
        """Annotation knob: `policy` "try_unroll", "try_vectorize" or "try_unroll_vectorize"."""
        self.tex_config.define_annotate(name, list(axes), policy)

    def define_knob(self, name, candidate):
        """A knob whose values are the listed candidates."""
        self.tex_config.define_knob(name, candidate)

    def add_flop(self, flop):
        """Declare the workload's floating-point operations (they make the GFLOPS shown)."""
        self.tex_config.add_flop(flop)

    def __getitem__(self, name):
        if name in self._overrides:
            return self._overrides[name]
        return entity_of(self.tex_config[name])

    def __setitem__(self, name, entity):
        """Change a knob's value of a fallback configuration (to a better default)."""
        if not self.is_fallback:
            raise TuneError(f"cfg[{name!r}] = ...: only a fallback configuration (no tuning "
                            "record found) can be changed")
        if not isinstance(entity, (SplitEntity, ReorderEntity, AnnotateEntity,
                                   OtherOptionEntity)):
            raise TuneError(f"cfg[{name!r}] needs a SplitEntity, ReorderEntity, AnnotateEntity "
                            f"or OtherOptionEntity, got {type(entity).__name__}")
        if name not in self.tex_config.space.knobs:
            raise TuneError(f"cfg[{name!r}] = ...: the template defines no knob {name!r}; it "
                            f"has {list(self.tex_config.space.knobs)}")
        self._overrides[name] = entity

    def __repr__(self):
        fallback = ", fallback" if self.is_fallback else ""
        return f"ConfigEntity({self.tex_config!r}{fallback})"


def _candidate_splits(name, candidate, num_outputs) -> tuple:
    """The SplitChoices of AutoTVM's "candidate" split policy, the outer extent as -1."""
    choices = []
    for sizes in candidate or ():
        sizes = list(sizes)
        inner = sizes[1:]
        if len(sizes) != num_outputs or not all(isinstance(f, int) and f >= 1 for f in inner):
            raise TuneError(f"define_split {name!r}: a candidate is a list of {num_outputs} "
                            f"extents, the inner ones positive ints, got {sizes!r}")
        choices.append(SplitChoice((-1, *inner)))
    return tuple(choices)


def _position(name, axes, axis) -> int:
    """Where `axis` is in `axes` (by identity: IterVars compare into expressions)."""
    for at, known in enumerate(axes):
        if known is axis:
            return at
    raise TuneError(f"define_reorder {name!r}: candidate axis {getattr(axis, 'name', axis)!r} "
                    f"is not one of the knob's axes {[getattr(a, 'name', a) for a in axes]}")
