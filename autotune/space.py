"""Knobs, configuration spaces and configurations.

A *space* is an ordered list of named knobs, each with a finite list of
candidate values; a *configuration* picks one candidate per knob. The space
numbers its configurations in mixed radix (the first knob varies slowest), so
a configuration is also an index in `range(len(space))`.

Four kinds of knob, as AutoTVM users know them:

* `define_split(name, axis, num_outputs=n)`: split an axis into n loops; the
  value is a `SplitChoice` whose `size` lists the extents, outermost first,
  the outermost given as -1 (whatever is left, rounded up). Extents need not
  divide the axis: tex guards the last tile.
* `define_reorder(name, axes, candidates)`: one of the given orders of the
  axes; the value is a `ReorderChoice` (a permutation of positions).
* `define_annotate(name, axes, policy)`: per axis, "none", "unroll" or
  "vectorize"; the value is an `AnnotateChoice`.
* `define_knob(name, candidates)`: any JSON value; the value is an
  `OptionChoice` whose `val` is the candidate.

A configuration serialises to a dict {knob name: JSON value}; `from_json`
checks every value against its knob and replays exactly.

A template (see `autotune.task`) calls the `define_*` methods on a `cfg`
object and reads the choices with `cfg["name"]`. While the space is being
collected, `cfg` is the `ConfigSpace` itself and `cfg["name"]` returns the
knob's first candidate, so the template runs through once; while a schedule is
being made, `cfg` is a `Config`, whose `define_*` calls only check that the
knob exists. Knobs must be defined on every run of the template, whatever
the other knobs chose. `cfg.add_flop(n)` declares the workload's floating-point
operations, for templates whose count tex cannot make from the computes.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from autotune.errors import TuneError

ANNOTATIONS = ("none", "unroll", "vectorize")
_ANNOTATE_POLICIES = {"try_unroll": ("none", "unroll"),
                      "try_vectorize": ("none", "vectorize"),
                      "try_unroll_vectorize": ANNOTATIONS}


# --- the value of each kind of knob ------------------------------------------------------

@dataclass(frozen=True)
class SplitChoice:
    """Loop extents of a split, outermost first; `size[0]` is -1 (what is left)."""

    size: tuple[int, ...]

    def apply(self, stage, axis) -> list:
        """Split `axis` of `stage` into len(size) loops; returns them, outermost first."""
        loops = []
        for factor in _inner_products(self.size[1:]):
            outer, axis = stage.split(axis, factor=factor)
            loops.append(outer)
        return loops + [axis]

    def to_json(self):
        return list(self.size)


def _inner_products(factors):
    """[f1, f2, f3] -> [f1*f2*f3, f2*f3, f3]: the successive inner extents of the splits."""
    return [math.prod(factors[i:]) for i in range(len(factors))]


@dataclass(frozen=True)
class ReorderChoice:
    """An order of a knob's axes, as positions in the list the template passes."""

    perm: tuple[int, ...]

    def apply(self, stage, axes) -> list:
        """Reorder `axes` of `stage` into this order; returns them in the new order."""
        ordered = [axes[p] for p in self.perm]
        stage.reorder(*ordered)
        return ordered

    def to_json(self):
        return list(self.perm)


@dataclass(frozen=True)
class AnnotateChoice:
    """One of "none", "unroll", "vectorize" per axis."""

    anns: tuple[str, ...]

    def apply(self, stage, axes) -> None:
        """Unroll or vectorize each axis of `stage` as chosen."""
        for axis, ann in zip(axes, self.anns):
            if ann == "unroll":
                stage.unroll(axis)
            elif ann == "vectorize":
                stage.vectorize(axis)

    def to_json(self):
        return list(self.anns)


@dataclass(frozen=True)
class OptionChoice:
    """A plain value; read it as `.val`."""

    val: object

    def to_json(self):
        return _as_json(self.val)


def _as_json(value):
    """The JSON form of a knob value: tuples become lists."""
    if isinstance(value, (tuple, list)):
        return [_as_json(v) for v in value]
    return value


# --- knobs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knob:
    """A named list of candidate choices."""

    name: str
    kind: str  # "split", "reorder", "annotate" or "option"
    candidates: tuple

    def __len__(self):
        return len(self.candidates)

    def choice_from_json(self, value):
        """The candidate whose JSON form is `value`; TuneError if there is none."""
        for candidate in self.candidates:
            if candidate.to_json() == value:
                return candidate
        raise TuneError(f"knob {self.name!r} ({self.kind}) has no candidate {value!r}; "
                        f"it has {len(self)}, e.g. {self.candidates[0].to_json()!r}")


def split_candidates(extent: int, num_outputs: int, policy: str = "all",
                     max_factor: int | None = None) -> tuple[SplitChoice, ...]:
    """The splits of an axis of `extent` into `num_outputs` loops.

    Inner extents are drawn from the divisors of `extent` ("factors"), the
    powers of two up to it ("power2"), or both ("all"); their product never
    exceeds `extent`, and none exceeds `max_factor` when it is given.
    """
    if not isinstance(extent, int) or extent <= 0:
        raise TuneError(f"define_split needs a constant positive extent, got {extent!r} "
                        "(tuning needs static shapes)")
    if num_outputs < 2:
        raise TuneError(f"define_split needs num_outputs >= 2, got {num_outputs}")
    divisors = {d for d in range(1, extent + 1) if extent % d == 0}
    powers = {1 << p for p in range(extent.bit_length()) if 1 << p <= extent}
    try:
        values = {"factors": divisors, "power2": powers, "all": divisors | powers}[policy]
    except KeyError:
        raise TuneError(f"define_split policy must be 'factors', 'power2' or 'all', "
                        f"got {policy!r}") from None
    if max_factor is not None:
        values = {v for v in values if v <= max_factor}
    values = sorted(values)
    choices = []
    for inner in itertools.product(values, repeat=num_outputs - 1):
        if math.prod(inner) <= extent:
            choices.append(SplitChoice((-1,) + inner))
    return tuple(choices)


def axis_extent(axis) -> int:
    """The constant extent of an axis (an IterVar of a compute) or an int given as it."""
    if isinstance(axis, int):
        return axis
    dom = getattr(axis, "dom", None)
    value = getattr(getattr(dom, "extent", None), "value", None)
    if not isinstance(value, int):
        raise TuneError(f"define_split: axis {getattr(axis, 'name', axis)!r} has no constant "
                        "extent (tuning needs static shapes); give the extent as an int")
    return value


# --- spaces and configurations ------------------------------------------------------------

class _Definer:
    """The `define_*` methods shared by ConfigSpace (which records) and Config (which checks)."""

    def define(self, knob: Knob):
        """Define a knob whose candidates the caller made (e.g. a filtered list of splits)."""
        return self._define(knob)

    def define_split(self, name, axis, num_outputs=2, policy="all", max_factor=None):
        extent = axis_extent(axis)
        return self._define(Knob(name, "split",
                                 split_candidates(extent, num_outputs, policy, max_factor)))

    def define_reorder(self, name, axes, candidates=None):
        """Candidates are lists of positions into `axes`; all orders when not given."""
        n = len(axes)
        perms = (itertools.permutations(range(n)) if candidates is None else candidates)
        choices = []
        for perm in perms:
            perm = tuple(perm)
            if sorted(perm) != list(range(n)):
                raise TuneError(f"define_reorder {name!r}: {list(perm)} is not an order of "
                                f"positions 0..{n - 1}")
            choices.append(ReorderChoice(perm))
        return self._define(Knob(name, "reorder", tuple(choices)))

    def define_annotate(self, name, axes, policy="try_unroll_vectorize"):
        try:
            per_axis = _ANNOTATE_POLICIES[policy]
        except KeyError:
            raise TuneError(f"define_annotate {name!r}: policy must be one of "
                            f"{sorted(_ANNOTATE_POLICIES)}, got {policy!r}") from None
        choices = tuple(AnnotateChoice(anns)
                        for anns in itertools.product(per_axis, repeat=len(axes)))
        return self._define(Knob(name, "annotate", choices))

    def define_knob(self, name, candidates):
        candidates = list(candidates)
        if not candidates:
            raise TuneError(f"define_knob {name!r}: give at least one candidate")
        return self._define(Knob(name, "option", tuple(OptionChoice(c) for c in candidates)))


class ConfigSpace(_Definer):
    """The knobs of a template, in the order they were defined.

    `make_schedule(config) -> (schedule, tensors)` is set by whoever collected
    the space (a template, or `autotune.generate`); `instantiate(config)`
    calls it.
    """

    def __init__(self):
        self.knobs: dict[str, Knob] = {}
        self.make_schedule = None
        self.declared_flops = 0.0

    def add_flop(self, flops) -> None:
        """Declare floating-point operations of the workload (a template may know better
        than the count `autotune.task.flop_count` makes); declarations add up."""
        if not isinstance(flops, (int, float)) or flops < 0:
            raise TuneError(f"add_flop needs a non-negative number, got {flops!r}")
        self.declared_flops += flops

    def _define(self, knob: Knob):
        if knob.name in self.knobs:
            if self.knobs[knob.name] != knob:
                raise TuneError(f"knob {knob.name!r} is defined twice with different candidates")
            return
        if not knob.candidates:
            raise TuneError(f"knob {knob.name!r} has no candidates")
        self.knobs[knob.name] = knob

    def __getitem__(self, name):
        """While collecting: the knob's first candidate, so the template runs through."""
        try:
            return self.knobs[name].candidates[0]
        except KeyError:
            raise TuneError(f"knob {name!r} is read before it is defined") from None

    def __len__(self):
        return math.prod(len(k) for k in self.knobs.values())

    def __repr__(self):
        lines = [f"ConfigSpace({len(self)} configurations)"]
        lines += [f"  {k.name}: {k.kind}, {len(k)} candidates" for k in self.knobs.values()]
        return "\n".join(lines)

    def get(self, index: int) -> "Config":
        """The configuration numbered `index` (mixed radix, first knob slowest)."""
        if not 0 <= index < len(self):
            raise TuneError(f"configuration index {index} is outside the space of {len(self)}")
        picks = []
        for knob in reversed(self.knobs.values()):
            index, pick = divmod(index, len(knob))
            picks.append(pick)
        return Config(self, tuple(reversed(picks)))

    def random(self, rng: random.Random) -> "Config":
        """A configuration drawn uniformly."""
        return Config(self, tuple(rng.randrange(len(k)) for k in self.knobs.values()))

    def mutate(self, config: "Config", rng: random.Random) -> "Config":
        """`config` with one knob (that has a choice) set to a different candidate."""
        choosable = [i for i, k in enumerate(self.knobs.values()) if len(k) > 1]
        if not choosable:
            return config
        at = rng.choice(choosable)
        size = len(list(self.knobs.values())[at])
        picks = list(config.picks)
        picks[at] = (picks[at] + rng.randrange(1, size)) % size
        return Config(self, tuple(picks))

    def crossover(self, a: "Config", b: "Config", rng: random.Random) -> "Config":
        """Each knob's pick taken from `a` or `b` at random."""
        return Config(self, tuple(x if rng.random() < 0.5 else y
                                  for x, y in zip(a.picks, b.picks)))

    def first_valid(self, tries: int = 2000) -> "Config":
        """The first configuration (index 0, else random ones, seeded) that instantiates."""
        rng = random.Random(0)
        candidates = itertools.chain([self.get(0)], (self.random(rng) for _ in range(tries)))
        for config in candidates:
            try:
                self.instantiate(config)
                return config
            except TuneError:
                continue
        raise TuneError(f"no configuration of the space instantiates (tried {tries + 1})")

    def from_json(self, values: dict) -> "Config":
        """The configuration a `Config.to_json()` dict describes; checks every knob."""
        if not isinstance(values, dict):
            raise TuneError(f"a configuration is a dict of knob values, got {values!r}")
        unknown = set(values) - set(self.knobs)
        missing = set(self.knobs) - set(values)
        if unknown or missing:
            raise TuneError(f"configuration does not fit this space: unknown knobs "
                            f"{sorted(unknown)}, missing knobs {sorted(missing)}")
        picks = tuple(knob.candidates.index(knob.choice_from_json(values[name]))
                      for name, knob in self.knobs.items())
        return Config(self, picks)

    def instantiate(self, config: "Config"):
        """(schedule, tensors) of `config`, from the template that defined this space."""
        if self.make_schedule is None:
            raise TuneError("this space was not collected from a template, so it cannot make "
                            "schedules")
        if config.space is not self:
            raise TuneError("the configuration belongs to another space")
        return self.make_schedule(config)


class Config(_Definer):
    """One candidate per knob of a space; hashable, ordered by index."""

    __slots__ = ("space", "picks")

    def __init__(self, space: ConfigSpace, picks: tuple[int, ...]):
        self.space = space
        self.picks = picks

    def add_flop(self, flops) -> None:
        """Nothing: the space counted the template's declarations when it was collected."""

    def _define(self, knob: Knob):
        if self.space.knobs.get(knob.name) != knob:
            raise TuneError(f"knob {knob.name!r} was not defined the same way when the space "
                            "was collected (knobs must not depend on other knobs' choices)")

    def __getitem__(self, name):
        try:
            at = list(self.space.knobs).index(name)
        except ValueError:
            raise TuneError(f"no knob named {name!r}; the space has "
                            f"{list(self.space.knobs)}") from None
        return self.space.knobs[name].candidates[self.picks[at]]

    @property
    def index(self) -> int:
        """This configuration's number in its space."""
        index = 0
        for knob, pick in zip(self.space.knobs.values(), self.picks):
            index = index * len(knob) + pick
        return index

    def to_json(self) -> dict:
        """{knob name: JSON value of the chosen candidate}, in definition order."""
        return {name: knob.candidates[pick].to_json()
                for (name, knob), pick in zip(self.space.knobs.items(), self.picks)}

    def __eq__(self, other):
        return (isinstance(other, Config) and other.space is self.space
                and other.picks == self.picks)

    def __hash__(self):
        return hash(self.picks)

    def __repr__(self):
        return f"Config({self.to_json()})"
