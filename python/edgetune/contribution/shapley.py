"""Shapley values of a round's updates: exact enumeration and sampled estimation.

Why Shapley: an update should be paid for its marginal contribution to the model, averaged over
every order in which the round's updates could have joined. It is the one payout rule that is
efficient (the scores add up to what the whole round gained), symmetric (equal updates score
equally), gives 0 to a null player and is additive across utilities.

Why two estimators: the exact value needs the utility of all 2^n coalitions, and each utility is
a validation pass over a model (`G(r-1) + agg(S)`, built by the caller): 2^n grows past any phase
length. Above `exact_max_players` the value is estimated by sampling permutations (Castro et al.
2009): a player's marginal contribution in a uniformly random order is an unbiased sample of its
Shapley value. On the validator's real utility the sampler only saves passes past about 12
players (measured in bench/bench_shapley.py --real, docs/contribution.md), hence that default.
Three things keep the number of passes down:

- Truncated Monte Carlo (TMC-Shapley, Ghorbani & Zou 2019): sampling stops once the estimates
  have converged, here once every player's standard error is a small fraction of the largest
  estimate, instead of after a fixed number of permutations.
- GTG-Shapley (Liu et al. 2022), made for federated learning, where coalition models are rebuilt
  from the round's updates rather than retrained. Within-round truncation: once a permutation's
  prefix is already worth almost v(all), the players after it can add almost nothing, so their
  marginals count as 0 and their coalitions are never evaluated. (With the utility normalised
  over the valid set each update adds its own share, prefixes rarely saturate, and truncation
  was measured to save almost nothing on real rounds; it costs nothing either.) Guided
  sampling: permutation k starts with player k mod n, so each player's often-largest marginal
  (joining the empty coalition) is sampled equally often. GTG's between-round truncation
  (score nothing when v(all) is about 0) is left out on purpose: here v(all) near 0 can be a
  harmful update cancelling a helpful one, and the harmful one must still be found.
- Memoisation: each distinct coalition is evaluated once per call; permutations share prefixes.

v(empty) = 0 by definition: the caller's utility is never asked about the empty coalition.
Everything here is a pure function of (players, utility, config): no I/O, seeded randomness.
"""

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgetune.contribution.config import EXACT_PLAYERS_LIMIT, ShapleyConfig
from edgetune.contribution.errors import PlayersError, UtilityValueError

Utility = Callable[[frozenset[int]], float]
Method = Literal["exact", "monte_carlo"]


@dataclass(frozen=True)
class ShapleyResult:
    """Scores and what they cost.

    Attributes:
        values: Shapley value (exact or estimated) per player.
        evaluations: distinct non-empty coalitions the utility was called on.
        method: "exact" (all coalitions enumerated) or "monte_carlo" (permutations sampled).
        permutations: permutations sampled; 0 for the exact method.
        converged: False only when sampling hit `max_permutations` before the convergence test
            passed (the values are then less certain than the tolerance asked for).
    """

    values: dict[int, float]
    evaluations: int
    method: Method
    permutations: int
    converged: bool


def shapley_values(
    players: Iterable[int], utility: Utility, config: ShapleyConfig | None = None
) -> ShapleyResult:
    """Score `players`: exactly up to `config.exact_max_players` of them, by sampling above."""
    config = config or ShapleyConfig()
    order = _distinct_players(players)
    if len(order) <= config.exact_max_players:
        return exact_shapley(order, utility)
    return monte_carlo_shapley(order, utility, config)


def exact_shapley(players: Iterable[int], utility: Utility) -> ShapleyResult:
    """Exact Shapley values from all 2^n coalitions (2^n - 1 utility evaluations).

    phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)).
    Each sum is taken with `math.fsum`, so efficiency holds to float rounding and a player whose
    marginals are all exactly 0 scores exactly 0.
    """
    order = _distinct_players(players)
    n = len(order)
    if n > EXACT_PLAYERS_LIMIT:
        raise PlayersError(
            f"exact Shapley of {n} players needs 2^{n} - 1 evaluations; "
            f"at most {EXACT_PLAYERS_LIMIT} players, sample above"
        )
    cached = _CachedUtility(utility)
    masks = np.arange(1 << n)
    table = np.array([cached(_coalition(order, int(mask))) for mask in masks], dtype=np.float64)
    sizes = np.array([int(mask).bit_count() for mask in masks], dtype=np.int64)
    # Python's int / int is correctly rounded, so each weight is the nearest float.
    weights = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    values: dict[int, float] = {}
    for i, player in enumerate(order):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        terms = weights[sizes[without]] * (table[without | bit] - table[without])
        values[player] = math.fsum(terms.tolist())
    return ShapleyResult(values, cached.evaluations, "exact", 0, True)


def monte_carlo_shapley(
    players: Iterable[int], utility: Utility, config: ShapleyConfig | None = None
) -> ShapleyResult:
    """Estimate Shapley values by sampled permutations with GTG truncation (see module doc).

    Deterministic given `config.seed`: the players are sorted first, so the order they are
    passed in does not matter.
    """
    config = config or ShapleyConfig()
    order = _distinct_players(players)
    cached = _CachedUtility(utility)
    if not order:
        return ShapleyResult({}, 0, "monte_carlo", 0, True)
    rng = np.random.default_rng(config.seed)
    grand = cached(frozenset(order))
    cutoff = config.truncation_tolerance * abs(grand) / len(order)
    stats = _StratifiedStats(len(order))
    converged = False
    for k in range(config.max_permutations):
        first = k % len(order)
        permutation = _guided_permutation(rng, len(order), first)
        stats.add(first, _marginals(permutation, order, cached, grand, cutoff))
        if _has_converged(stats, config):
            converged = True
            break
    estimate = stats.estimate()
    values = {player: float(value) for player, value in zip(order, estimate, strict=True)}
    return ShapleyResult(values, cached.evaluations, "monte_carlo", stats.count, converged)


class _CachedUtility:
    """The caller's utility with v(empty) = 0, a finiteness check and one call per coalition."""

    def __init__(self, utility: Utility) -> None:
        self._utility = utility
        self._cache: dict[frozenset[int], float] = {}

    @property
    def evaluations(self) -> int:
        return len(self._cache)

    def __call__(self, coalition: frozenset[int]) -> float:
        if not coalition:
            return 0.0
        if coalition not in self._cache:
            self._cache[coalition] = self._evaluate(coalition)
        return self._cache[coalition]

    def _evaluate(self, coalition: frozenset[int]) -> float:
        raw = self._utility(coalition)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise UtilityValueError(
                f"utility of coalition {sorted(coalition)} is {raw!r}, not a finite number"
            )
        return value


class _StratifiedStats:
    """Running mean and variance of the marginals, kept per stratum (Welford's update).

    Stratum h holds the permutations led by player h. Guided sampling fills the strata equally,
    so the estimate is the average of the stratum means, and its variance is the stratified one:
    the spread between strata (often the largest part, e.g. a leader's marginal v({h}) against
    a late joiner's small gain) is designed out of the estimate and must not count as noise.
    """

    def __init__(self, n: int) -> None:
        self.counts = np.zeros(n, dtype=np.int64)
        self._means = np.zeros((n, n))
        self._m2 = np.zeros((n, n))

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add(self, stratum: int, sample: np.ndarray) -> None:
        self.counts[stratum] += 1
        delta = sample - self._means[stratum]
        self._means[stratum] += delta / self.counts[stratum]
        self._m2[stratum] += delta * (sample - self._means[stratum])

    def estimate(self) -> np.ndarray:
        """Average of the sampled strata's means (all of them once a cycle is complete)."""
        return self._means[self.counts > 0].mean(axis=0)

    def standard_error(self) -> np.ndarray:
        """Standard error of `estimate()`; needs two samples in every stratum."""
        per_stratum = self._m2 / ((self.counts - 1) * self.counts)[:, None]
        return np.sqrt(per_stratum.sum(axis=0)) / len(self.counts)


def _marginals(
    permutation: Sequence[int],
    order: Sequence[int],
    cached: _CachedUtility,
    grand: float,
    cutoff: float,
) -> np.ndarray:
    """Each player's marginal gain in one permutation (indices into `order`), GTG-truncated."""
    marginals = np.zeros(len(order))
    prefix: set[int] = set()
    previous = 0.0
    for index in permutation:
        if abs(grand - previous) < cutoff:
            break  # the prefix is already worth v(all): the rest count as 0, unevaluated
        prefix.add(order[index])
        current = cached(frozenset(prefix))
        marginals[index] = current - previous
        previous = current
    return marginals


def _guided_permutation(rng: np.random.Generator, n: int, first: int) -> list[int]:
    """A random order of range(n) that starts with `first` (GTG-Shapley's guided sampling)."""
    rest = rng.permutation(np.delete(np.arange(n), first))
    return [first, *rest.tolist()]


def _has_converged(stats: _StratifiedStats, config: ShapleyConfig) -> bool:
    """Every player's standard error is within tolerance of the largest |estimate|.

    Tested only after whole cycles (every player has led equally often, at least twice), so the
    strata stay balanced and each has a variance.
    """
    n = len(stats.counts)
    if (
        config.convergence_tolerance == 0.0
        or stats.count < max(2 * n, config.min_permutations)
        or stats.count % n
    ):
        return False
    scale = float(np.max(np.abs(stats.estimate())))
    return float(np.max(stats.standard_error())) <= config.convergence_tolerance * scale


def _distinct_players(players: Iterable[int]) -> tuple[int, ...]:
    """The players as sorted distinct ints; duplicates or non-integers are a caller's bug."""
    try:
        order = [operator.index(player) for player in players]
    except TypeError as error:
        raise PlayersError(f"players must be integers: {error}") from error
    if len(set(order)) != len(order):
        duplicates = sorted({p for p in order if order.count(p) > 1})
        raise PlayersError(f"players must be distinct, repeated: {duplicates}")
    return tuple(sorted(order))


def _coalition(order: Sequence[int], mask: int) -> frozenset[int]:
    """The players whose bit is set in `mask` (bit j is order[j])."""
    return frozenset(player for j, player in enumerate(order) if mask >> j & 1)
