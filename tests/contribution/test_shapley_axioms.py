"""The Shapley axioms and known closed forms, on the exact method (and null player on both),
and on the agent's real utility shape: a zero update among others scores exactly 0."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetune.contribution import (
    ShapleyConfig,
    exact_shapley,
    monte_carlo_shapley,
    to_fixed,
)
from edgetune.learning import adapter_to_bytes, coalition_adapter

from .games import AveragingGame, random_averaging_game, table_game

A, B = "m.lora_A.weight", "m.lora_B.weight"


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


def test_efficiency_grand_coalition_is_the_whole_valid_set_average() -> None:
    """Normalised over V, v(V) is the gain of the FedAvg of all the updates."""
    game = random_averaging_game(5, seed=3)
    values = exact_shapley(range(5), game).values
    fedavg = game.updates.mean(axis=0)
    gain = game.metric(fedavg) - game.metric(np.zeros_like(fedavg))
    assert math.fsum(values.values()) == pytest.approx(gain, rel=1e-12)


def zero_update_among(updates: list[torch.Tensor]) -> tuple[dict, list[dict]]:
    """A global adapter and the updates `G + u` for each u, then a zero update (U = G) last."""
    previous = {A: torch.full((2, 3), 0.5), B: torch.tensor([[0.25, -0.0], [1.0, -2.0]])}
    ups = [{B: previous[B] + u} for u in updates]
    return previous, [*ups, {B: previous[B].clone()}]


def adapter_metric(target: torch.Tensor):
    """A nonlinear validation stand-in on the adapter as the model would see it (float32)."""

    def metric(adapter: dict) -> float:
        product = (adapter[B] @ adapter[A]).double()
        return -float(torch.log1p(((product - target) ** 2).sum()))

    return metric


def real_shape_utility(previous: dict, updates: list[dict], metric) -> object:
    """The agent's utility: metric(coalition_adapter(G, V, S)) - metric(G)."""
    baseline = metric(previous)
    return lambda s: metric(coalition_adapter(previous, updates, s)) - baseline


@pytest.mark.parametrize("method", ["exact", "monte_carlo"])
def test_zero_update_among_others_scores_exactly_zero_on_the_real_utility(method: str) -> None:
    g = torch.Generator().manual_seed(4)
    # Helpful, overshooting and harmful changes: v1's per-coalition normalisation paid a zero
    # update for diluting the overshoot and charged it for diluting the helpful ones.
    changes = [torch.randn(2, 2, generator=g) * scale for scale in (0.3, 3.0, 1.0, -2.0)]
    previous, updates = zero_update_among(changes)
    target = torch.randn(2, 3, generator=g).double()
    utility = real_shape_utility(previous, updates, adapter_metric(target))
    if method == "exact":
        values = exact_shapley(range(5), utility).values
    else:
        values = monte_carlo_shapley(range(5), utility, ShapleyConfig(max_permutations=40)).values
    assert values[4] == 0.0
    assert all(values[i] != 0.0 for i in range(4))
    assert to_fixed(values[4]) == 0


def test_zero_update_leaves_every_coalition_model_byte_identical() -> None:
    """Why the zero update is exactly null: adding it never changes a byte (-0.0 included)."""
    previous, updates = zero_update_among([torch.ones(2, 2), -torch.ones(2, 2)])
    for s in all_coalitions([0, 1]):
        with_zero = coalition_adapter(previous, updates, s | {2})
        assert adapter_to_bytes(with_zero) == adapter_to_bytes(
            coalition_adapter(previous, updates, s)
        )
