"""Contribution scoring: Shapley values of a round's updates, and their on-chain fixed point.

The caller supplies `utility(coalition) -> float` (in the agent: evaluate G(r-1) plus the
sample-weighted average of the coalition's updates); this package only decides which coalitions
to evaluate and how to combine them. See `shapley` for the estimators and why they look so.
"""

from edgetune.contribution.config import ShapleyConfig
from edgetune.contribution.errors import (
    ContributionError,
    FixedPointError,
    PlayersError,
    ShapleyConfigError,
    UtilityValueError,
)
from edgetune.contribution.fixed_point import DEFAULT_SCALE, from_fixed, to_fixed
from edgetune.contribution.shapley import (
    ShapleyResult,
    Utility,
    exact_shapley,
    monte_carlo_shapley,
    shapley_values,
)

__all__ = [
    "DEFAULT_SCALE",
    "ContributionError",
    "FixedPointError",
    "PlayersError",
    "ShapleyConfig",
    "ShapleyConfigError",
    "ShapleyResult",
    "Utility",
    "UtilityValueError",
    "exact_shapley",
    "from_fixed",
    "monte_carlo_shapley",
    "shapley_values",
    "to_fixed",
]
