"""Near-copy detection on flat update changes (pure numpy, no model)."""

import numpy as np
import pytest

from edgetune.contribution import (
    COPY_THRESHOLD,
    CopyThresholdError,
    near_copies,
    relative_distance,
)
from edgetune.errors import EdgetuneError


def noisy(delta: np.ndarray, eps: float, seed: int = 0) -> np.ndarray:
    """`delta` plus noise of norm exactly-ish eps * ||delta||."""
    noise = np.random.default_rng(seed).normal(size=delta.shape)
    return delta + noise * (eps * np.linalg.norm(delta) / np.linalg.norm(noise))


def test_relative_distance_is_measured_against_the_reference() -> None:
    assert relative_distance(np.array([3.0, 4.0]), np.array([0.0, 4.0])) == 0.75
    assert relative_distance(np.array([0.0, 4.0]), np.array([3.0, 4.0])) == 0.6
    assert relative_distance(np.zeros(2), np.zeros(2)) == 0.0
    assert relative_distance(np.ones(2), np.zeros(2)) == float("inf")


def test_relative_distance_does_not_depend_on_summation_order() -> None:
    rng = np.random.default_rng(1)
    delta, reference = rng.normal(size=10_001), rng.normal(size=10_001)
    order = rng.permutation(10_001)
    # fsum is exactly rounded: every validator gets the same bits whatever its BLAS.
    assert relative_distance(delta, reference) == relative_distance(delta[order], reference[order])


def test_small_noise_copies_are_caught_and_distant_updates_are_not() -> None:
    rng = np.random.default_rng(2)
    original = rng.normal(size=500)
    deltas = {
        0: original,
        1: noisy(original, COPY_THRESHOLD / 2, seed=3),
        2: rng.normal(size=500),  # an independent update, relative distance ~1.4
        3: noisy(original, 2 * COPY_THRESHOLD, seed=4),
    }
    assert near_copies(deltas) == {1: 0}


def test_the_threshold_is_inclusive() -> None:
    deltas = {0: np.array([4.0, 0.0]), 1: np.array([4.0, 1.0])}  # distance 1 / 4 = 0.25
    assert near_copies(deltas, 0.25) == {1: 0}
    assert near_copies(deltas, 0.2499) == {}


def test_zero_changes() -> None:
    zero, other = np.zeros(3), np.array([1.0, -1.0, 0.5])
    assert near_copies({0: zero, 1: zero.copy()}) == {1: 0}  # two free riders: one is a copy
    assert near_copies({0: other, 1: zero}) == {}  # a zero update copies nothing nonzero
    assert near_copies({0: zero, 1: other}) == {}  # and nothing nonzero copies a zero update


def test_only_earlier_originals_count_the_earliest_wins_and_dict_order_does_not_matter() -> None:
    base = np.array([1.0, 0.0, 0.0])
    deltas = {
        4: base * 1.08,  # 0.04 from the copy at 2, 0.08 from the original 0: not a copy
        2: base * 1.04,  # 0.04 from 0: a copy
        0: base,
        7: base * 1.01,  # within reach of 0 and 4: attributed to the earliest, 0
    }
    assert near_copies(deltas, 0.05) == {2: 0, 7: 0}
    assert near_copies(dict(sorted(deltas.items())), 0.05) == {2: 0, 7: 0}


def test_updates_of_different_sizes_are_never_copies() -> None:
    assert near_copies({0: np.ones(3), 1: np.ones(4)}) == {}


@pytest.mark.parametrize("bad", [-0.01, 1.0, 2, float("nan"), "0.1", True])
def test_threshold_must_be_a_number_in_zero_one(bad: object) -> None:
    with pytest.raises(CopyThresholdError, match=r"copy_threshold .*got"):
        near_copies({0: np.ones(2)}, bad)  # type: ignore[arg-type]
    assert issubclass(CopyThresholdError, EdgetuneError)
