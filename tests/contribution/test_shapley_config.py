"""ShapleyConfig checks itself and names the field and value it rejects."""

import re

import pytest

from edgetune.contribution import ShapleyConfig, ShapleyConfigError
from edgetune.errors import EdgetuneError


def test_defaults_follow_the_measurement() -> None:
    config = ShapleyConfig()
    assert config.exact_max_players == 12  # docs/contribution.md: sampler vs exact
    assert 0 < config.convergence_tolerance < 1
    assert 0 <= config.truncation_tolerance < 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exact_max_players", -1),
        ("exact_max_players", 21),
        ("exact_max_players", 8.0),
        ("max_permutations", 0),
        ("max_permutations", True),
        ("min_permutations", 0),
        ("convergence_tolerance", -0.1),
        ("convergence_tolerance", 1.0),
        ("convergence_tolerance", float("nan")),
        ("truncation_tolerance", 1.5),
        ("truncation_tolerance", "0.1"),
        ("seed", -3),
    ],
)
def test_bad_values_are_rejected_by_name(field: str, value: object) -> None:
    with pytest.raises(ShapleyConfigError, match=rf"^{field} .*got {re.escape(repr(value))}$"):
        ShapleyConfig(**{field: value})


def test_config_errors_are_edgetune_and_value_errors() -> None:
    assert issubclass(ShapleyConfigError, EdgetuneError)
    assert issubclass(ShapleyConfigError, ValueError)
