"""The Shapley axioms and known closed forms, on the exact method (and null player on both)."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetune.contribution import (
    ShapleyConfig,
    exact_shapley,
    monte_carlo_shapley,
    to_fixed,
)

from .games import AveragingGame, random_averaging_game, table_game


def all_coalitions(players: list[int]) -> list[frozenset[int]]:
    return [
        frozenset(c) for k in range(len(players) + 1) for c in itertools.combinations(players, k)
    ]


def test_efficiency_scores_add_up_to_the_grand_coalition() -> None:
    game = random_averaging_game(8)
    values = exact_shapley(range(8), game).values
    grand = game(frozenset(range(8)))
    assert math.fsum(values.values()) == pytest.approx(grand, rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda n: st.lists(
            st.floats(min_value=-100, max_value=100), min_size=2**n, max_size=2**n
        ).map(lambda table: (n, table))
    )
)
def test_efficiency_holds_on_any_game(n_and_table: tuple[int, list[float]]) -> None:
    n, table = n_and_table
    coalitions = all_coalitions(list(range(n)))
    game = table_game(dict(zip(coalitions, table, strict=True)))
    values = exact_shapley(range(n), game).values
    grand = table[-1]  # the last coalition listed is the grand one
    assert math.fsum(values.values()) == pytest.approx(grand, abs=1e-9)


def test_symmetry_identical_updates_score_equally() -> None:
    game = random_averaging_game(6)
    game.updates[1] = game.updates[0]
    game.samples[1] = game.samples[0]
    values = exact_shapley(range(6), game).values
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    assert values[0] != pytest.approx(values[2], rel=1e-3)


def test_symmetry_is_exact_on_an_integer_game() -> None:
    values = exact_shapley(range(5), lambda s: float(len(s) ** 2)).values
    assert set(values.values()) == {5.0}


def ignoring(player: int, game: AveragingGame):
    """The game with `player` added as a null player: its presence never changes the utility."""

    def utility(coalition: frozenset[int]) -> float:
        rest = coalition - {player}
        return game(rest) if rest else 0.0

    return utility


def test_null_player_scores_exactly_zero_exact() -> None:
    game = random_averaging_game(6)
    values = exact_shapley(range(7), ignoring(6, game)).values
    assert values[6] == 0.0
    assert all(values[i] != 0.0 for i in range(6))


def test_null_player_scores_exactly_zero_sampled() -> None:
    game = random_averaging_game(10)
    config = ShapleyConfig(max_permutations=200, seed=3)
    values = monte_carlo_shapley(range(11), ignoring(10, game), config).values
    assert values[10] == 0.0
    assert all(values[i] != 0.0 for i in range(10))


def test_additivity_and_scaling() -> None:
    rng = np.random.default_rng(7)
    coalitions = all_coalitions(list(range(5)))
    v = dict(zip(coalitions, rng.normal(size=len(coalitions)), strict=True))
    w = dict(zip(coalitions, rng.normal(size=len(coalitions)), strict=True))
    phi_v = exact_shapley(range(5), table_game(v)).values
    phi_w = exact_shapley(range(5), table_game(w)).values
    phi_sum = exact_shapley(range(5), table_game({s: v[s] + w[s] for s in coalitions})).values
    phi_scaled = exact_shapley(range(5), table_game({s: 3.0 * v[s] for s in coalitions})).values
    for i in range(5):
        assert phi_sum[i] == pytest.approx(phi_v[i] + phi_w[i], abs=1e-12)
        assert phi_scaled[i] == pytest.approx(3.0 * phi_v[i], abs=1e-12)


def test_additive_game_pays_each_player_its_own_worth() -> None:
    worth = {10: 1.5, 20: -0.25, 30: 4.0}
    values = exact_shapley(worth, lambda s: sum(worth[p] for p in s)).values
    assert values == pytest.approx(worth)


def test_glove_game_closed_form() -> None:
    """One left glove (0), two right gloves (1, 2); a pair is worth 1."""
    values = exact_shapley(range(3), lambda s: float(min(0 in s, len(s - {0})))).values
    assert values == pytest.approx({0: 2 / 3, 1: 1 / 6, 2: 1 / 6}, abs=1e-15)


def test_empty_coalition_is_worth_zero_and_never_asked_for() -> None:
    def utility(coalition: frozenset[int]) -> float:
        assert coalition, "the empty coalition must not reach the caller's utility"
        return 5.0

    assert exact_shapley(range(4), utility).values == {i: 1.25 for i in range(4)}
    sampled = monte_carlo_shapley(range(4), utility, ShapleyConfig(max_permutations=8)).values
    assert sampled == pytest.approx({i: 1.25 for i in range(4)})


def zero_update_game(rng: np.random.Generator, n: int) -> AveragingGame:
    """n helpful updates and, as player n, a zero update with a real sample count.

    Every helpful update lies in the ball {u : u.t >= |u|^2} (centre t/2, radius |t|/2), where
    moving from 0 toward u never overshoots the target; so does any weighted average of them.
    """
    target = rng.normal(size=8)
    radius = np.linalg.norm(target) / 2
    noise = rng.normal(size=(n, 8))
    noise *= 0.9 * radius * rng.uniform(size=(n, 1)) / np.linalg.norm(noise, axis=1, keepdims=True)
    updates = np.vstack([target / 2 + noise, np.zeros(8)])
    samples = rng.integers(50, 500, size=n + 1).astype(np.float64)
    return AveragingGame(updates, samples, target)


def test_zero_update_is_not_a_null_player_it_dilutes_and_scores_below_zero() -> None:
    game = zero_update_game(np.random.default_rng(11), n=5)
    players = list(range(6))
    for s in all_coalitions(players[:5]):
        with_zero = game(s | {5})
        assert with_zero <= (game(s) if s else 0.0)  # premise: the zero update never helps
    phi = exact_shapley(players, game).values[5]
    assert phi < 0.0
    assert to_fixed(phi) < 0


def test_zero_update_scores_above_zero_when_the_others_overshoot() -> None:
    """The spec's 'a zero update scores <= 0' needs helpful updates: shrinking overshoot helps."""
    target = np.ones(4)
    game = AveragingGame(np.array([3.0 * target, np.zeros(4)]), np.array([100.0, 100.0]), target)
    assert exact_shapley(range(2), game).values[1] > 0.0
