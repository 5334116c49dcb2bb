"""The sampled estimator: accuracy against exact, cost, memoisation, determinism, dispatch."""

import numpy as np
import pytest

from edgetune.contribution import (
    PlayersError,
    ShapleyConfig,
    UtilityValueError,
    exact_shapley,
    monte_carlo_shapley,
    shapley_values,
)

from .games import random_averaging_game, saturating_game


def max_relative_error(estimate: dict[int, float], exact: dict[int, float]) -> float:
    """Largest absolute error, as a fraction of the largest exact |phi|."""
    errors = [abs(estimate[p] - exact[p]) for p in exact]
    return max(errors) / max(abs(v) for v in exact.values())


@pytest.mark.parametrize("game_seed", [0, 1, 2])
def test_sampled_estimate_within_5_percent_of_exact_n8(game_seed: int) -> None:
    # Standard errors within 1% of the largest score: the error stays well inside 5%.
    game = random_averaging_game(8, seed=game_seed)
    exact = exact_shapley(range(8), game).values
    result = monte_carlo_shapley(range(8), game, ShapleyConfig(seed=0, convergence_tolerance=0.01))
    assert result.method == "monte_carlo"
    assert result.converged
    assert max_relative_error(result.values, exact) < 0.05


def test_sampling_spends_fewer_evaluations_on_a_saturating_game() -> None:
    game = saturating_game(12)
    exact = exact_shapley(range(12), game)
    sampled = monte_carlo_shapley(range(12), game)
    assert exact.evaluations == 2**12 - 1
    assert sampled.evaluations < exact.evaluations / 10
    assert max_relative_error(sampled.values, exact.values) < 0.05


def test_gtg_truncation_reduces_evaluations() -> None:
    game = saturating_game(10, seed=4)
    fixed_budget = {"max_permutations": 100, "convergence_tolerance": 0.0, "seed": 1}
    full = monte_carlo_shapley(
        range(10), game, ShapleyConfig(truncation_tolerance=0.0, **fixed_budget)
    )
    cut = monte_carlo_shapley(
        range(10), game, ShapleyConfig(truncation_tolerance=0.05, **fixed_budget)
    )
    assert full.permutations == cut.permutations == 100
    assert cut.evaluations < full.evaluations / 2
    exact = exact_shapley(range(10), game).values
    assert max_relative_error(cut.values, exact) < 0.05


def test_each_coalition_is_evaluated_once() -> None:
    game = random_averaging_game(10)
    config = ShapleyConfig(max_permutations=300, convergence_tolerance=0.0)
    result = monte_carlo_shapley(range(10), game, config)
    assert result.permutations == 300
    assert max(game.calls.values()) == 1
    assert result.evaluations == len(game.calls)
    assert frozenset() not in game.calls


def test_exact_evaluates_every_nonempty_coalition_once() -> None:
    game = random_averaging_game(7)
    result = exact_shapley(range(7), game)
    assert result.evaluations == len(game.calls) == 2**7 - 1
    assert set(game.calls.values()) == {1}


def test_deterministic_given_the_seed_whatever_the_player_order() -> None:
    game = random_averaging_game(10)
    config = ShapleyConfig(seed=5, max_permutations=200)
    first = monte_carlo_shapley(range(10), game, config)
    again = monte_carlo_shapley(reversed(range(10)), game, config)
    other_seed = monte_carlo_shapley(range(10), game, ShapleyConfig(seed=6, max_permutations=200))
    assert first == again
    assert first.values != other_seed.values


def test_stops_at_the_permutation_cap_and_says_it_did_not_converge() -> None:
    game = random_averaging_game(9)
    result = monte_carlo_shapley(range(9), game, ShapleyConfig(max_permutations=12))
    assert result.permutations == 12
    assert not result.converged


def test_converges_early_when_tolerance_allows() -> None:
    game = saturating_game(9)
    result = monte_carlo_shapley(range(9), game, ShapleyConfig(max_permutations=1000))
    assert result.converged
    assert result.permutations < 1000
    assert result.permutations % 9 == 0  # convergence is only tested after whole cycles


@pytest.mark.parametrize(("n", "method"), [(8, "exact"), (9, "monte_carlo")])
def test_shapley_values_picks_exact_up_to_the_limit(n: int, method: str) -> None:
    result = shapley_values(range(n), random_averaging_game(n), ShapleyConfig(exact_max_players=8))
    assert result.method == method
    assert sorted(result.values) == list(range(n))


def test_no_players_no_scores() -> None:
    assert exact_shapley([], lambda s: 1.0).values == {}
    assert monte_carlo_shapley([], lambda s: 1.0).values == {}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "high", None])
def test_non_finite_utility_is_rejected_naming_the_coalition(bad: object) -> None:
    with pytest.raises(UtilityValueError, match=r"coalition \[0\]"):
        exact_shapley([0], lambda s: bad)


def test_numpy_utility_values_are_accepted() -> None:
    assert exact_shapley([0, 1], lambda s: np.float32(len(s))).values == {0: 1.0, 1: 1.0}


def test_players_must_be_distinct_integers() -> None:
    with pytest.raises(PlayersError, match=r"repeated: \[1\]"):
        shapley_values([0, 1, 1], lambda s: 1.0)
    with pytest.raises(PlayersError, match="integers"):
        shapley_values([0, "a"], lambda s: 1.0)


def test_guided_sampling_lets_every_player_lead_once_per_cycle() -> None:
    game = random_averaging_game(6)
    monte_carlo_shapley(range(6), game, ShapleyConfig(max_permutations=6, truncation_tolerance=0))
    singletons = {c for c in game.calls if len(c) == 1}
    assert singletons == {frozenset({i}) for i in range(6)}


def test_exact_refuses_more_players_than_enumeration_can_afford() -> None:
    def never(coalition: frozenset[int]) -> float:
        raise AssertionError("no coalition may be evaluated")

    with pytest.raises(PlayersError, match="21 players"):
        exact_shapley(range(21), never)
