"""Model-guided evolutionary search: which configurations to measure next.

Each round starts from a population of the fastest configurations measured
so far plus random ones, and for a few generations breeds children
(mutation of one knob, or crossover of two parents) from the parents the cost
model ranks highest, keeping the best-scored. The batch to measure is the
top of the final population that has not been measured, plus an exploration
share of random unmeasured configurations, so that a wrong model cannot
starve the search. Random configurations are drawn and the invalid ones
rejected (`RANDOM_TRIES`). Before the model has learned anything, the whole batch is
random; while it knows other workloads only (nothing of this one is measured
yet), it breeds one generation, not trusting it further. Configurations whose
schedule cannot be made or lowered (their features are None) are never proposed.
Given the same seed, measurements and model, the proposals are the same.

Three searches without a model sit beside it, for AutoTVM's tuners
(`autotune.autotvm.tuner`): `RandomSearch` (uniform draws), `GridSearch`
(configurations in index order) and `GeneticSearch` (children of the
measured configurations, parents drawn by speed). All four share
`next_batch(count, measured, model_ready)`; `make_search` picks one by name.
"""
from __future__ import annotations

import math
import random

import numpy as np

from autotune.errors import TuneError
from autotune.space import Config, ConfigSpace

#: Draws per wanted configuration: generated spaces hold many invalid ones
#: (a few percent are valid), which are rejected in well under a millisecond.
RANDOM_TRIES = 100


def random_valid(space: ConfigSpace, features, rng: random.Random, count: int, exclude: set,
                 tries: int) -> list[Config]:
    """Up to `count` distinct configurations drawn uniformly from `space`, none in
    `exclude` and each valid (`features(config)` is not None), in at most `tries` draws."""
    found: list[Config] = []
    for _ in range(tries):
        if len(found) >= count or len(exclude) + len(found) >= len(space):
            break
        config = space.random(rng)
        if config in exclude or config in found or features(config) is None:
            continue
        found.append(config)
    return found


class EvolutionarySearch:
    """Proposes batches of unmeasured configurations of `space`.

    `features(config)` returns the feature vector of a configuration or None
    when it is invalid; the caller caches it. `model` has `predict(rows)`.
    """

    def __init__(self, space: ConfigSpace, features, model, seed: int = 0,
                 population: int = 48, generations: int = 4, exploration: float = 0.2):
        self.space, self.features, self.model = space, features, model
        self.population, self.generations, self.exploration = population, generations, exploration
        self.rng = random.Random(seed)

    def _random_valid(self, count: int, exclude: set, tries: int) -> list[Config]:
        return random_valid(self.space, self.features, self.rng, count, exclude, tries)

    def _scores(self, configs: list[Config]) -> np.ndarray:
        return np.asarray(self.model.predict(np.stack([self.features(c) for c in configs])))

    def next_batch(self, count: int, measured: dict, model_ready: bool) -> list[Config]:
        """Up to `count` configurations not in `measured` (a dict config -> seconds)."""
        taken = set(measured)
        if not model_ready:
            return self._random_valid(count, taken, tries=count * RANDOM_TRIES)
        fastest = sorted((c for c, t in measured.items() if np.isfinite(t)),
                         key=lambda c: measured[c])[: self.population // 2]
        pool = list(dict.fromkeys(fastest + self._random_valid(
            self.population - len(fastest), taken | set(fastest),
            tries=self.population * RANDOM_TRIES)))
        if not pool:
            return []
        scores = dict(zip(pool, self._scores(pool)))
        for _ in range(self.generations if measured else min(self.generations, 1)):
            ranked = sorted(scores, key=scores.get, reverse=True)[: self.population]
            children = []
            for _ in range(self.population * RANDOM_TRIES // 4):
                if len(children) >= self.population:
                    break
                a = ranked[min(int(self.rng.expovariate(4 / len(ranked))), len(ranked) - 1)]
                if self.rng.random() < 0.3 and len(ranked) > 1:
                    child = self.space.crossover(a, self.rng.choice(ranked), self.rng)
                else:
                    child = self.space.mutate(a, self.rng)
                if child not in scores and child not in children and \
                        self.features(child) is not None:
                    children.append(child)
            if children:
                scores.update(zip(children, self._scores(children)))
        ranked = [c for c in sorted(scores, key=scores.get, reverse=True) if c not in taken]
        exploit = ranked[: max(1, round(count * (1 - self.exploration)))][:count]
        explore = self._random_valid(count - len(exploit), taken | set(exploit),
                                     tries=count * RANDOM_TRIES)
        batch = exploit + explore
        if len(batch) < count:  # few random ones left: fill from the ranked list
            batch += [c for c in ranked if c not in batch][: count - len(batch)]
        return batch


class RandomSearch:
    """Unmeasured valid configurations drawn uniformly (AutoTVM's RandomTuner)."""

    def __init__(self, space: ConfigSpace, features, model=None, seed: int = 0):
        self.space, self.features = space, features
        self.rng = random.Random(seed)

    def next_batch(self, count: int, measured: dict, model_ready: bool) -> list[Config]:
        """Up to `count` configurations not in `measured`; the model is not asked."""
        return random_valid(self.space, self.features, self.rng, count, set(measured),
                            tries=count * RANDOM_TRIES)


class GridSearch:
    """Unmeasured valid configurations in index order (AutoTVM's GridSearchTuner)."""

    def __init__(self, space: ConfigSpace, features, model=None, seed: int = 0):
        self.space, self.features = space, features
        self.next_index = 0

    def next_batch(self, count: int, measured: dict, model_ready: bool) -> list[Config]:
        """The next `count` valid configurations after those already proposed."""
        batch: list[Config] = []
        while len(batch) < count and self.next_index < len(self.space):
            config = self.space.get(self.next_index)
            self.next_index += 1
            if config not in measured and self.features(config) is not None:
                batch.append(config)
        return batch


class GeneticSearch:
    """Children of the fastest measured configurations (AutoTVM's GATuner).

    Parents are the `population` fastest configurations measured, each drawn
    with a weight proportional to its speed; a child takes each knob from one
    of two parents and is then mutated (one knob changed) with probability
    `mutation`. Until two configurations have run, and wherever breeding
    finds too few new children, the batch is filled with random ones.
    """

    def __init__(self, space: ConfigSpace, features, model=None, seed: int = 0,
                 population: int = 100, mutation: float = 0.1):
        if not (isinstance(population, int) and population >= 2):
            raise TuneError(f"GeneticSearch: population must be an int >= 2, got {population!r}")
        if not 0 <= mutation <= 1:
            raise TuneError(f"GeneticSearch: mutation must be a probability, got {mutation!r}")
        self.space, self.features = space, features
        self.population, self.mutation = population, mutation
        self.rng = random.Random(seed)

    def next_batch(self, count: int, measured: dict, model_ready: bool) -> list[Config]:
        """Up to `count` children not in `measured`, topped up with random ones."""
        parents = sorted((c for c, t in measured.items() if math.isfinite(t)),
                         key=measured.get)[: self.population]
        children: list[Config] = []
        if len(parents) >= 2:
            weights = [1.0 / max(measured[c], 1e-12) for c in parents]
            for _ in range(count * RANDOM_TRIES):
                if len(children) >= count:
                    break
                a, b = self.rng.choices(parents, weights, k=2)
                child = self.space.crossover(a, b, self.rng)
                if self.rng.random() < self.mutation:
                    child = self.space.mutate(child, self.rng)
                if child not in measured and child not in children and \
                        self.features(child) is not None:
                    children.append(child)
        return children + random_valid(self.space, self.features, self.rng,
                                       count - len(children), set(measured) | set(children),
                                       tries=count * RANDOM_TRIES)


#: The searches by name, as `autotune.tune(search=...)` takes them.
SEARCHES = {"evolutionary": EvolutionarySearch, "random": RandomSearch, "grid": GridSearch,
            "genetic": GeneticSearch}


def make_search(search, space: ConfigSpace, features, model, seed: int):
    """The search named `search` (a key of SEARCHES), or made by calling `search` (a
    function of (space, features, model, seed=...)) for `space`."""
    if isinstance(search, str):
        if search not in SEARCHES:
            raise TuneError(f"search must be one of {sorted(SEARCHES)} or a function making "
                            f"a search, got {search!r}")
        search = SEARCHES[search]
    elif not callable(search):
        raise TuneError(f"search must be one of {sorted(SEARCHES)} or a function making a "
                        f"search, got {search!r}")
    return search(space, features, model, seed=seed)
