"""Model-guided evolutionary search: which configurations to measure next.

Each round starts from a population of the fastest configurations measured
so far plus random ones, and for a few generations breeds children
(mutation of one knob, or crossover of two parents) from the parents the cost
model ranks highest, keeping the best-scored. The batch to measure is the
top of the final population that has not been measured, plus an exploration
share of random unmeasured configurations, so that a wrong model cannot
starve the search. Random configurations are drawn and the invalid ones
rejected (`RANDOM_TRIES`). Before the model has learned anything, the whole batch is
random. Configurations whose schedule cannot be made or lowered (their
features are None) are never proposed. Given the same seed, measurements and
model, the proposals are the same.
"""
from __future__ import annotations

import random

import numpy as np

from autotune.space import Config, ConfigSpace

#: Draws per wanted configuration: generated spaces hold many invalid ones
#: (a few percent are valid), which are rejected in well under a millisecond.
RANDOM_TRIES = 100


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
        found: list[Config] = []
        for _ in range(tries):
            if len(found) >= count or len(exclude) + len(found) >= len(self.space):
                break
            config = self.space.random(self.rng)
            if config in exclude or config in found or self.features(config) is None:
                continue
            found.append(config)
        return found

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
        for _ in range(self.generations):
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
