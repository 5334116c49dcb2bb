"""Small cooperative games for the Shapley tests.

`AveragingGame` mirrors the agent's utility: the players are updates (vectors), a coalition's
model is the base plus its members' changes each weighted 1/n, n = all players (normalised over
the valid set, not over the coalition, as `learning.coalition_adapter` does), and the metric is
higher-is-better (negative squared distance to a target the validator would like).
"""

from collections import Counter
from collections.abc import Callable

import numpy as np


class AveragingGame:
    """v(S) = metric(base + sum_{j in S} u_j / n) - metric(base), n = len(updates)."""

    def __init__(self, updates: np.ndarray, target: np.ndarray) -> None:
        self.updates = updates
        self.target = target
        self.calls: Counter[frozenset[int]] = Counter()

    def metric(self, change: np.ndarray) -> float:
        return -float(np.sum((self.target - change) ** 2))

    def __call__(self, coalition: frozenset[int]) -> float:
        self.calls[coalition] += 1
        members = sorted(coalition)
        change = self.updates[members].sum(axis=0) / len(self.updates)
        return self.metric(change) - self.metric(np.zeros_like(self.target))


def random_averaging_game(n: int, seed: int = 0, dim: int = 16) -> AveragingGame:
    """Updates of mixed quality: mostly helpful steps toward the target, one harmful one."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    quality = rng.uniform(0.2, 1.2, size=n)
    quality[n // 2] = -0.8
    updates = quality[:, None] * target + rng.normal(scale=0.6, size=(n, dim))
    return AveragingGame(updates, target)


def table_game(values: dict[frozenset[int], float]) -> Callable[[frozenset[int]], float]:
    """A game given by its table of coalition values (missing coalitions are worth 0)."""
    return lambda coalition: values.get(coalition, 0.0)


class SaturatingGame(AveragingGame):
    """v(S) = metric(mean of S's updates) - metric(base): each coalition's own average.

    Not the agent's utility (that is normalised over all players) but a plain saturating game
    for the sampler's mechanics: with similar updates, any few already give almost all of v(N),
    the shape GTG truncation and early stopping are made for.
    """

    def __call__(self, coalition: frozenset[int]) -> float:
        self.calls[coalition] += 1
        change = self.updates[sorted(coalition)].mean(axis=0)
        return self.metric(change) - self.metric(np.zeros_like(self.target))


def saturating_game(n: int, seed: int = 0, dim: int = 16) -> SaturatingGame:
    """Similar, helpful updates: a few of them already give most of what all of them give."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    updates = rng.uniform(0.8, 1.0, size=n)[:, None] * target
    updates += rng.normal(scale=0.1, size=(n, dim))
    return SaturatingGame(updates, target)
