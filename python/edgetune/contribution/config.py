"""What the Shapley estimators may spend and when they stop.

Every validator runs the same estimator with the same settings, so the settings live in one
frozen dataclass that checks itself on construction and names the field and value it rejects.
"""

from dataclasses import dataclass

from edgetune.contribution.errors import ShapleyConfigError

# Exact enumeration evaluates 2^n - 1 coalitions; past this it is never what anyone wants.
EXACT_PLAYERS_LIMIT = 20


@dataclass(frozen=True)
class ShapleyConfig:
    """Settings for `shapley_values` and `monte_carlo_shapley`.

    Attributes:
        exact_max_players: enumerate all coalitions exactly up to this many players; sample above.
            12, measured on the validator's real utility (bench/bench_shapley.py --real,
            docs/contribution.md): from 8 to 11 players the sampler needed nearly every
            coalition to come within 5% of exact; at 12 its default settings saved 10% of the
            evaluations at 3.6% error. Exact is never much dearer there, and it has no error.
        max_permutations: cap on sampled permutations (the sampler's hard budget).
        min_permutations: permutations sampled before the convergence test may stop the sampler,
            so the standard errors it relies on come from more than a handful of samples (and
            never fewer than two per player). `max_permutations` still caps the total.
        convergence_tolerance: stop once every player's standard error is at most this fraction
            of the largest estimated |phi|. 0 disables early stopping.
        truncation_tolerance: GTG-Shapley within-permutation truncation: stop scanning a
            permutation once |v(all) - v(prefix)| < truncation_tolerance * |v(all)| / n, a
            fraction of the average player's share; the remaining players' marginals count as 0.
            Measured against the share, not v(all), because what the remaining players lose is
            an error in each one's score. 0 disables truncation.
        seed: seed of the permutation sampler; equal seeds give equal results.
    """

    exact_max_players: int = 12
    max_permutations: int = 2000
    min_permutations: int = 32
    convergence_tolerance: float = 0.02
    truncation_tolerance: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("exact_max_players", self.exact_max_players, 0, EXACT_PLAYERS_LIMIT)
        _check_int("max_permutations", self.max_permutations, 1, None)
        _check_int("min_permutations", self.min_permutations, 1, None)
        _check_fraction("convergence_tolerance", self.convergence_tolerance)
        _check_fraction("truncation_tolerance", self.truncation_tolerance)
        _check_int("seed", self.seed, 0, None)


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    """Reject non-integers (bool included) and integers outside [low, high]."""
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ShapleyConfigError(f"{name} must be an integer {bound}, got {value!r}")


def _check_fraction(name: str, value: object) -> None:
    """Reject anything but a real number in [0, 1) (NaN fails the comparison)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ShapleyConfigError(f"{name} must be a number in [0, 1), got {value!r}")
