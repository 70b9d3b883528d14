"""Cost models: predict which configurations run fastest from their program features.

Both models share one interface:

* `fit(features, seconds, groups=None)`: learn from measured configurations
  (`features` one row per configuration, `seconds` its median time, infinity
  for a failed one; `groups` names the workload of each row when rows of
  several workloads are mixed).
* `predict(features) -> scores`: higher means expected faster. Only the order
  of the scores means something.
* `trained`: whether the scores mean anything yet (until then the search
  proposes random configurations).
* optionally `prime() -> bool`: train on what the model knows of other
  workloads alone, before the first measurement of this one; whether it knew
  anything (the search then follows it from the first batch).

`XGBoostModel` is a gradient-boosted tree ranker (XGBoost `rank:pairwise`):
within each workload the label is the throughput relative to the best
measured (best_time / time, 0 for failures), so workloads of different size
can train one model. `add_prior(...)` keeps rows from earlier logs (other
shapes of the same operator, say) that are fitted together with the new
ones: a tuning job starts with a model that already knows something
(transfer), and `prime()` fits them before the first measurement.
`RandomModel` scores at random, for tests and as a baseline.
"""
from __future__ import annotations

import numpy as np

from autotune.errors import TuneError


def relative_throughput(seconds: np.ndarray) -> np.ndarray:
    """best / seconds per row, in (0, 1]; 0 for failures (infinite time)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    ok = np.isfinite(seconds) & (seconds > 0)
    labels = np.zeros(len(seconds))
    if ok.any():
        labels[ok] = seconds[ok].min() / seconds[ok]
    return labels


class RandomModel:
    """Scores configurations at random (deterministic given the seed)."""

    trained = True  # it needs no data to score

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)

    def fit(self, features, seconds, groups=None) -> None:
        pass

    def predict(self, features) -> np.ndarray:
        return self._rng.random(len(features))


class XGBoostModel:
    """A pairwise ranking model over program features (see the module docstring)."""

    def __init__(self, seed: int = 0, rounds: int = 80, max_depth: int = 6):
        try:  # imported here: loading it costs ~0.3 s, and only tuning needs it
            import xgboost
        except ImportError:
            raise TuneError("the XGBoost cost model needs tex's tune extra: "
                            "pip install 'tex[tune]' (or pip install xgboost-cpu, "
                            "or use model='random')") from None
        self._xgb = xgboost
        self.seed, self.rounds = seed, rounds
        self.params = {"objective": "rank:pairwise", "eta": 0.2, "max_depth": max_depth,
                       "min_child_weight": 1, "subsample": 0.8, "colsample_bytree": 0.8,
                       "lambda": 1.0, "seed": seed, "nthread": 1, "verbosity": 0}
        self._prior: list[tuple[np.ndarray, np.ndarray]] = []
        self._booster = None

    def add_prior(self, features, seconds) -> None:
        """Rows of one earlier workload, fitted along with every later `fit`."""
        features = np.asarray(features, dtype=np.float32)
        if len(features):
            self._prior.append((features, relative_throughput(seconds)))

    def prime(self) -> bool:
        """Fit the earlier workloads' rows alone; whether there were any to fit."""
        self.fit(np.zeros((0, 0), np.float32), np.zeros(0))
        return self.trained

    def fit(self, features, seconds, groups=None) -> None:
        features = np.asarray(features, dtype=np.float32)
        seconds = np.asarray(seconds, dtype=np.float64)
        groups = np.zeros(len(features), dtype=np.int64) if groups is None else np.asarray(groups)
        parts = list(self._prior)
        for g in np.unique(groups):
            rows = groups == g
            parts.append((features[rows], relative_throughput(seconds[rows])))
        parts = [(x, y) for x, y in parts if len(x) >= 2 and np.ptp(y) > 0]
        if not parts:
            return  # nothing to rank yet: keep the previous model (or none)
        data = self._xgb.DMatrix(np.concatenate([x for x, _ in parts]),
                                 label=np.concatenate([y for _, y in parts]))
        data.set_group([len(x) for x, _ in parts])
        self._booster = self._xgb.train(self.params, data, num_boost_round=self.rounds)

    @property
    def trained(self) -> bool:
        return self._booster is not None

    def predict(self, features) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if self._booster is None:
            return np.zeros(len(features))
        return self._booster.predict(self._xgb.DMatrix(features))
