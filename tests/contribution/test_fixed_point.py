"""Scores to the chain's int32 fixed point and back."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetune.contribution import FixedPointError, from_fixed, to_fixed
from edgetune.contribution.fixed_point import INT32_MAX, INT32_MIN


@pytest.mark.parametrize(
    ("phi", "fixed"),
    [
        (0.0, 0),
        (1.0, 1_000_000),
        (0.1234564999, 123456),
        (2.5e-6, 3),  # halves round away from zero, as printed (not to even, not binary-down)
        (-2.5e-6, -3),
        (5e-7, 1),
        (-5e-7, -1),
        (4.999e-7, 0),
        (-0.75, -750_000),
        (np.float64(2.5e-6), 3),
    ],
)
def test_rounds_half_away_from_zero(phi: float, fixed: int) -> None:
    assert to_fixed(phi) == fixed


def test_scale_argument() -> None:
    assert [to_fixed(x, scale=1) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]


@pytest.mark.parametrize(
    ("phi", "fixed"),
    [
        (2147.483647, INT32_MAX),
        (2147.4836475, INT32_MAX),
        (1e9, INT32_MAX),
        (1e300, INT32_MAX),
        (-2147.483648, INT32_MIN),
        (-1e9, INT32_MIN),
    ],
)
def test_clamps_to_int32(phi: float, fixed: int) -> None:
    assert to_fixed(phi) == fixed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_rejected(bad: float) -> None:
    with pytest.raises(FixedPointError, match="finite"):
        to_fixed(bad)


@pytest.mark.parametrize("scale", [0, -1, 1.5, True])
def test_scale_must_be_a_positive_integer(scale: object) -> None:
    with pytest.raises(FixedPointError, match=f"got {scale!r}"):
        to_fixed(1.0, scale=scale)  # type: ignore[arg-type]
    with pytest.raises(FixedPointError, match=f"got {scale!r}"):
        from_fixed(1, scale=scale)  # type: ignore[arg-type]


@given(st.floats(min_value=-2147.0, max_value=2147.0))
def test_round_trip_is_within_half_a_unit(phi: float) -> None:
    assert abs(from_fixed(to_fixed(phi)) - phi) <= 0.5e-6 + 1e-12


def test_from_fixed() -> None:
    assert from_fixed(123456) == 0.123456
    assert from_fixed(-3, scale=1) == -3.0
