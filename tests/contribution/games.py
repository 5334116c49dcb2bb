"""Small cooperative games for the Shapley tests.

`AveragingGame` mirrors the agent's utility: the players are updates (vectors) with sample
counts, a coalition's model is the base plus the sample-weighted average of its updates, and the
metric is higher-is-better (negative squared distance to a target the validator would like).
"""

from collections import Counter
from collections.abc import Callable

import numpy as np


class AveragingGame:
    """v(S) = metric(base + sum_{j in S} n_j u_j / sum_{j in S} n_j) - metric(base)."""

    def __init__(self, updates: np.ndarray, samples: np.ndarray, target: np.ndarray) -> None:
        self.updates = updates
        self.samples = samples
        self.target = target
        self.calls: Counter[frozenset[int]] = Counter()

    def metric(self, change: np.ndarray) -> float:
        return -float(np.sum((self.target - change) ** 2))

    def __call__(self, coalition: frozenset[int]) -> float:
        self.calls[coalition] += 1
        members = sorted(coalition)
        weights = self.samples[members] / self.samples[members].sum()
        return self.metric(weights @ self.updates[members]) - self.metric(
            np.zeros_like(self.target)
        )


def random_averaging_game(n: int, seed: int = 0, dim: int = 16) -> AveragingGame:
    """Updates of mixed quality: mostly helpful steps toward the target, one harmful one."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    quality = rng.uniform(0.2, 1.2, size=n)
    quality[n // 2] = -0.8
    updates = quality[:, None] * target + rng.normal(scale=0.6, size=(n, dim))
    samples = rng.integers(50, 500, size=n).astype(np.float64)
    return AveragingGame(updates, samples, target)


def table_game(values: dict[frozenset[int], float]) -> Callable[[frozenset[int]], float]:
    """A game given by its table of coalition values (missing coalitions are worth 0)."""
    return lambda coalition: values.get(coalition, 0.0)


def saturating_game(n: int, seed: int = 0, dim: int = 16) -> AveragingGame:
    """Similar, helpful updates: a few of them already give most of what all of them give."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    updates = rng.uniform(0.8, 1.0, size=n)[:, None] * target
    updates += rng.normal(scale=0.1, size=(n, dim))
    samples = rng.integers(50, 500, size=n).astype(np.float64)
    return AveragingGame(updates, samples, target)
